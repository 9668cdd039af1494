"""Which English words make a sound: plain data for :mod:`gpu_worker.sound_phrases`.

Entries are lemmas (``lemminflect`` maps "clashing", "rang", "geese" to them). Nothing here
is the text AudioGen gets: the phrase around a matched word, in the prompt's own words, is.
The tables only decide *that* something sounds and which visual event it should land on
("impact", "flash" or "any"). Extend them freely.
"""

from __future__ import annotations


def _kinds(**groups: str) -> dict[str, str]:
    """{"impact": "hit kick", ...} -> {"hit": "impact", "kick": "impact", ...}."""
    return {word: kind for kind, words in groups.items() for word in words.split()}


# Verbs that make a sound whoever does them: "knights clash", "a chef chops", "a door creaks".
SOUND_VERBS: dict[str, str] = _kinds(
    impact="""clash chop slam knock hit punch kick crash smash bang stomp hammer bounce drop
        collide shatter break snap crack thud slap pound stab strike tap thump whack dribble
        chisel slice dice split smack stamp tumble topple fall land splash dive plunge pop
        burst bump crunch squash shoot fire bomb collapse hurl throw kick spike serve volley
        thwack wallop clobber batter bash slash fence spar box wrestle tackle""",
    flash="explode blast detonate erupt zap thunder boom electrocute",
    any="""laugh giggle chuckle scream shout yell cry sob whisper sing hum whistle cheer clap
        applaud cough sneeze snore gasp sigh shriek wail moan groan howl roar growl bark meow
        purr hiss chirp tweet crow cluck moo neigh whinny bleat oink quack honk caw hoot buzz
        croak squeak squeal snarl yelp whimper bellow chatter babble coo cackle grunt pant
        slurp chew munch gulp burp talk speak argue chant recite
        gallop trot walk run march tiptoe sprint jog stampede skate skid screech rattle
        clatter clink clang clank jingle jangle tinkle ring chime toll beep ding click clack
        tick tock creak rustle crinkle crumple flutter flap whoosh swoosh swish whiz whizz
        zoom rev zip drip gurgle bubble pour trickle sizzle fry boil crackle whir whirr drone
        rumble blare toot type scribble launch blow swim paddle row dig shovel sweep scrub
        saw drill weld grind blend vacuum flush spray pump tear rip shred unzip fizz stir
        whisk grill patter splatter lap gush surge clink toast flip shuffle riffle
        dance tap-dance stomp skateboard bike pedal race chase fight battle duel swing
        slide scrape scratch screech shake jiggle wobble rock creak groan shudder vibrate
        crumble smash sputter chug puff hoot honk beep clap snap crackle spark fizzle
        squelch slosh sprinkle hose mow chainsaw nail rivet bulldoze demolish
        cheer celebrate party bustle yodel rap beatbox jingle ring ping clunk clonk thunk
        plop plink boing twang snip clip""",
)

# Nouns that are a sound or a sound event: "a scream", "footsteps", "a distant explosion".
SOUND_NOUNS: dict[str, str] = _kinds(
    impact="""gunshot gunfire bang thud crash clash slam knock punch kick collision impact
        smash splash crack snap pop thump smack whack shatter fight swordfight gunfight brawl
        duel battle skirmish clunk""",
    flash="explosion blast boom thunder thunderclap firework fireworks eruption detonation",
    any="""footstep footsteps scream shout yell laughter laugh giggle applause cheer cheering
        whistle siren alarm roar growl howl honk beep chime squeak creak rumble whoosh
        swoosh sneeze cough gasp sigh whisper click clatter clang heartbeat stampede
        avalanche earthquake landslide gallop hoofbeat hoofbeats chatter ticking
        ringing buzzing crackling sizzle gurgle splashing clapping laughing screaming
        shouting barking growling chirping engine motor ping plop""",
)

# Things that sound when they do anything at all (not "sit" or "wait"):
# "a rocket launches", "pages turning", "a train passes", "she opens the creaky gate".
SOURCES: frozenset[str] = frozenset("""
    rocket page door gate window horse pony car truck bus motorcycle motorbike scooter engine
    train tram locomotive helicopter plane airplane aeroplane jet drone boat ship ferry yacht
    tractor chainsaw drill hammer typewriter keyboard phone telephone clock alarm kettle pan
    pot blender microwave fan printer elevator escalator skateboard wheel tire tyre chain lock
    key coin glass bottle cork balloon paper book envelope wrapper zipper umbrella drawer
    cupboard lid chair log tree rock boulder domino ball racket puck arrow sword blade knife
    axe whip gun rifle pistol cannon tank dog puppy cat kitten cow sheep lamb goat pig chicken
    rooster hen duck goose owl wolf lion tiger bear elephant monkey frog bee mosquito baby
    toddler kid child fountain faucet shower toilet volcano glacier ice hail robot machine
    vacuum motor siren bell whistle horn gong firework spaceship ufo missile bomb grenade
    jackhammer bulldozer excavator crane sled sleigh carriage wagon cart bicycle bike
    trumpet tractor mill windmill waterwheel cauldron candle match lighter fuse spray
    dragon dinosaur t-rex monster zombie ghost witch crowd audience orchestra band choir
    crow raven parrot seagull gull eagle hawk pigeon dove woodpecker cricket cicada snake
    whale dolphin seal horse donkey mule camel bull ox mouse rat squirrel hamster
""".split())

# Sources whose sound is the ambience when there are many of them, or it is a mass noun:
# "waves crashing" and "rain pattering on a roof" are ambience; "a wave crashes" is an SFX.
AMBIENT_SOURCES: frozenset[str] = frozenset("""
    rain wind wave bird cricket insect cicada frog traffic crowd people water river stream
    ocean sea leaf surf breeze seagull gull fire flame campfire rainfall drizzle snow hail
    storm thunder brook creek waterfall fountain bee
""".split())
MASS_NOUNS: frozenset[str] = frozenset("rain wind traffic water surf breeze fire rainfall drizzle snow hail thunder".split())
# Sources that are ambience even when they hit something: "waves crashing on rocks".
ALWAYS_AMBIENT: frozenset[str] = MASS_NOUNS | {"wave", "river", "stream", "sea", "ocean"}

# Verbs that make no sound, even for a sound source: "a parked car", "a dog sleeping".
SILENT_VERBS: frozenset[str] = frozenset("""
    sit stand lie rest sleep wait park hang stay remain look watch stare see gaze smile dream
    think wear hold read float glow shine reflect bloom grow be have seem appear sparkle
    shimmer twinkle lay pose live own contain show feature overlook face surround cover frame
    line fill make paint light decorate sunbathe nap doze relax meditate pray listen hover
    drift glide soar gleam loom tower perch nestle peek peer admire enjoy love like want
    need know feel smell taste touch stroke pet hug cuddle kiss hide lurk stand photograph
    film sketch dream wonder ponder imagine remember forget
""".split())

# Words that turn a sound's cue into a flash ("lightning strikes", "a firework bursts").
FLASH_WORDS: frozenset[str] = frozenset("lightning firework fireworks explosion bomb grenade flash volcano".split())

# Moods some actions imply when the prompt names none: a sword fight is not calm music.
ACTION_MOODS: dict[str, str] = {
    **dict.fromkeys("clash fight battle duel fence spar slash stab charge".split(), "epic"),
    **dict.fromkeys("explode detonate blast erupt shoot fire bomb collapse".split(), "tense"),
    **dict.fromkeys("scream shriek howl creak growl snarl wail moan groan".split(), "mysterious"),
    **dict.fromkeys("chase race sprint gallop stampede skid zoom rev launch".split(), "energetic"),
    **dict.fromkeys("laugh giggle chuckle cheer celebrate dance party applaud clap".split(), "happy"),
    **dict.fromkeys("sob cry whimper weep".split(), "sad"),
}

# Places: the prompt's own words for them become the ambience text ("a busy kitchen").
PLACES: frozenset[str] = frozenset("""
    kitchen library office classroom school hospital church cathedral temple mosque gym garage
    workshop factory warehouse market bazaar stadium arena airport station subway museum
    castle palace dungeon cave tunnel bridge harbor harbour port dock pier marina beach ocean
    sea lake river forest jungle wood woods desert mountain valley canyon field meadow farm
    barn village town city street alley road highway park garden playground zoo circus
    carnival mall supermarket shop store bakery restaurant cafe café bar pub diner club
    theater theatre cinema studio ballroom courtroom prison lab laboratory spaceship cockpit
    submarine attic basement cellar bedroom bathroom hallway corridor room house cabin hut tent
    camp campsite lighthouse tower rooftop balcony porch courtyard plaza battlefield
    trench swamp marsh island reef glacier tundra volcano waterfall pond creek orchard vineyard
    greenhouse junkyard graveyard cemetery shrine monastery hangar arcade casino laundromat
    racetrack rink shipyard sawmill quarry ruins forge smithy savanna savannah skatepark
    saloon tavern inn backyard yard pool court site countryside prairie plains hall lobby
    terrace deck platform runway wharf boardwalk promenade avenue boulevard crossroads
    intersection neighborhood neighbourhood suburb apartment loft dormitory sauna spa
    aquarium observatory bunker fortress fort citadel brewery stable pasture ranch
    rainforest grove clearing riverbank shore coast bay lagoon cove fjord cliff hill
    hillside mountainside ridge plateau steppe oasis dune crater square chapel monastery
    carriage cabin compartment hold
    space galaxy storm thunderstorm blizzard
""".split())

# Determiners and other words that start or end a phrase.
DETERMINERS: frozenset[str] = frozenset(
    "a an the this that these those his her its their my our your some two three four five "
    "several many few one each every another".split())
AUXILIARIES: frozenset[str] = frozenset("is are was were be been being gets get got getting".split())
BOUNDARIES: frozenset[str] = frozenset(
    "and then while as but or when before after until so because where which who whose "
    "during meanwhile".split())
# Prepositions whose phrase belongs to the sound ("crashes on rocks", "falls into the water").
KEEP_PREPS: frozenset[str] = frozenset(
    "on onto against into off through across over along down up out past by from with "
    "away open shut closed apart around back".split())
# Prepositions that start a setting, not the sound ("in a busy kitchen", "at night").
SETTING_PREPS: frozenset[str] = frozenset(
    "in at inside during near under beside behind among outside within beneath below above "
    "like for to toward towards at amid amidst".split())
