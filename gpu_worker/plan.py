"""Split one natural prompt into a visual prompt and an audio plan.

`plan_prompt("A lighthouse in a storm, soft piano building to a crescendo")` gives a
visual prompt for the video model ("A lighthouse in a storm") and an `AudioPlan`: music
(instruments, genre, mood, tempo, a MusicGen description), ambience (environment, sounds,
an AudioGen description), sound effects tied to actions, and dynamics (shape + silences).

Sound effects and the setting are phrases in the prompt's own words ("two knights clash
swords", "busy kitchen", see :mod:`gpu_worker.sound_phrases`): AudioGen reads text, so it
gets those, not a label from a list. Explicit audio phrases win over inference; a prompt
with no audio words still gets music and an ambience inferred from its scene. Music, mood,
dynamics and silence words in Spanish, French, German, Italian and Portuguese are read
through :mod:`gpu_worker.plan_glossary`. The taxonomy below is plain data: extend it freely.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from gpu_worker.plan_glossary import gloss
from gpu_worker.sound_phrases import SoundPhrase, find_place, sound_phrases

# ---------------------------------------------------------------- dataclasses

DYNAMIC_SHAPES = ("steady", "crescendo", "starts_quiet", "decrescendo", "fade_out")


@dataclass(frozen=True)
class MusicPlan:
    enabled: bool
    instruments: tuple[str, ...]
    genre: str | None
    mood: str
    tempo_bpm: int
    description: str  # text for MusicGen
    explicit: bool  # the user named music, an instrument or a genre


@dataclass(frozen=True)
class AmbiencePlan:
    enabled: bool
    environment: str | None
    sounds: tuple[str, ...]
    description: str  # text for AudioGen
    place: str | None = None  # the prompt's own words for the setting, e.g. "busy kitchen"


@dataclass(frozen=True)
class SfxCue:
    label: str  # the word that makes the sound, as a lemma, e.g. "clash"
    description: str  # text for AudioGen: the prompt's own phrase, e.g. "two knights clash swords"
    trigger: str  # the prompt words that asked for it
    event_kind: str  # visual event it fits best: "impact", "flash", "cut" or "any"


@dataclass(frozen=True)
class SilenceSpan:
    """Where the mix is silent: fractions of the clip, or seconds ("2 s of silence at the start").

    With ``seconds``, ``start`` and ``end`` are seconds from the clip's start, or back from
    its end when ``from_end`` ("the last 2 s": start 2.0, end 0.0).
    """

    start: float  # fraction of the clip (0..1), or seconds
    end: float
    seconds: bool = False
    from_end: bool = False

    def bounds(self, clip_seconds: float) -> tuple[float, float]:
        """(start, end) in seconds within a clip of ``clip_seconds``."""
        if not self.seconds:
            a, b = self.start * clip_seconds, self.end * clip_seconds
        elif self.from_end:
            a, b = clip_seconds - self.start, clip_seconds - self.end
        else:
            a, b = self.start, self.end
        return max(0.0, min(a, clip_seconds)), max(0.0, min(b, clip_seconds))


@dataclass(frozen=True)
class Dynamics:
    shape: str  # one of DYNAMIC_SHAPES
    silences: tuple[SilenceSpan, ...] = ()


@dataclass(frozen=True)
class AudioPlan:
    prompt: str
    visual_prompt: str
    music: MusicPlan
    ambience: AmbiencePlan
    sfx: tuple[SfxCue, ...]
    dynamics: Dynamics


# ---------------------------------------------------------------- taxonomy

# (regex, canonical name); longer phrases first.
INSTRUMENTS: list[tuple[str, str]] = [
    (r"acoustic guitars?", "acoustic guitar"),
    (r"electric guitars?", "electric guitar"),
    (r"bass guitars?|electric bass|double bass|upright bass|basslines?", "bass"),
    (r"synth(?:esi[sz]er)? pads?|pads", "synth pads"),
    (r"electric pianos?|rhodes", "electric piano"),
    (r"(?:grand )?pianos?", "piano"),
    (r"guitars?", "guitar"),
    (r"synth(?:esi[sz]er)?s?|arpeggiators?", "synthesizer"),
    (r"string quartet|strings|violins?|violas?|cellos?", "strings"),
    (r"drum ?kits?|drums?|drumbeats?|percussion|taiko", "drums"),
    (r"808s?|sub ?bass|bass", "bass"),
    (r"flutes?", "flute"),
    (r"sax(?:ophone)?s?", "saxophone"),
    (r"trumpets?|brass|horn section|french horns?", "brass"),
    (r"harps?", "harp"),
    (r"choir|choral|chants?", "choir"),
    (r"(?:church |pipe )?organs?", "organ"),
    (r"ukuleles?", "ukulele"),
    (r"banjos?", "banjo"),
    (r"harmonicas?", "harmonica"),
    (r"accordions?", "accordion"),
    (r"marimbas?|xylophones?|vibraphones?", "mallets"),
    (r"music ?box|bells|chimes|glockenspiel", "bells"),
]

GENRES: dict[str, str] = {  # regex -> canonical genre
    r"lo-?fi": "lo-fi",
    r"jazz(?:y)?": "jazz",
    r"blues(?:y)?": "blues",
    r"rock (?:music|band|song|track|guitar)|hard rock|punk rock|rock ?(?:'n'|and|n) ?roll": "rock",
    r"heavy metal|metal (?:music|band|song)|metalcore": "metal",
    r"classical": "classical",
    r"orchestral|orchestra|symphonic": "orchestral",
    r"cinematic (?:music|score|soundtrack)|film score": "cinematic",
    r"electronic|edm|electro": "electronic",
    r"techno": "techno",
    r"house music|deep house": "house",
    r"trance": "trance",
    r"drum and bass|drum ?n ?bass|dnb": "drum and bass",
    r"hip[- ]?hop|trap (?:beat|music)|rap (?:music|beat)|rapping": "hip hop",
    r"ambient": "ambient",
    r"synthwave|retrowave|80s synth": "synthwave",
    r"folk(?:sy)?": "folk",
    r"country (?:music|song)": "country",
    r"reggae": "reggae",
    r"funk(?:y)?": "funk",
    r"pop (?:music|song)|synth-?pop|k-?pop|pop": "pop",
    r"chiptune|8-bit": "chiptune",
    r"waltz": "waltz",
}

MOODS: dict[str, str] = {  # word regex -> canonical mood
    r"calm(?:ing)?|meditative|meditation|peaceful|serene|relax(?:ing|ed)?|tranquil|soothing|"
    r"chill|gentle|soft|mellow|lullaby": "calm",
    r"tense|tension|suspense(?:ful)?|ominous|anxious|nervous|thriller|foreboding": "tense",
    r"energetic|energy|driving|upbeat|pumping|frantic|intense|powerful|fast-paced|action": "energetic",
    r"happy|joyful|joyous|cheerful|playful|fun|whimsical|festive": "happy",
    r"sad|melanchol(?:y|ic)|somber|sombre|mournful|tragic|wistful|lonely|grief": "sad",
    r"epic|heroic|triumphant|majestic": "epic",
    r"myster(?:y|ious)|eerie|haunting|spooky|creepy|uncanny": "mysterious",
    r"dark|sinister|menacing|brooding|gloomy": "dark",
    r"romantic|tender|loving|love": "romantic",
    r"dreamy|ethereal|floating|hazy|nostalgic|magical": "dreamy",
    r"uplifting|hopeful|inspiring|inspirational|bright": "uplifting",
}

MOOD_DEFAULTS: dict[str, tuple[int, str | None, tuple[str, ...]]] = {
    # mood -> (tempo bpm, genre, instruments) used when the prompt names none
    "calm": (70, "ambient", ("piano", "synth pads")),
    "tense": (90, "cinematic", ("strings", "drums")),
    "energetic": (128, "electronic", ("drums", "bass", "synthesizer")),
    "happy": (112, "pop", ("acoustic guitar", "ukulele", "drums")),
    "sad": (66, "classical", ("piano", "strings")),
    "epic": (100, "orchestral", ("strings", "brass", "drums")),
    "mysterious": (80, "ambient", ("synth pads", "bells")),
    "dark": (80, "cinematic", ("synthesizer", "strings")),
    "romantic": (76, "classical", ("piano", "strings")),
    "dreamy": (74, "ambient", ("synth pads", "electric piano")),
    "uplifting": (110, "cinematic", ("piano", "strings", "drums")),
    "neutral": (100, "cinematic", ("piano", "strings")),
}

GENRE_MOOD: dict[str, str] = {
    "lo-fi": "calm", "ambient": "calm", "classical": "calm", "jazz": "happy", "folk": "happy",
    "pop": "happy", "funk": "happy", "reggae": "happy", "country": "happy", "waltz": "romantic",
    "rock": "energetic", "metal": "energetic", "electronic": "energetic", "techno": "energetic",
    "house": "energetic", "trance": "energetic", "drum and bass": "energetic",
    "hip hop": "energetic", "synthwave": "dreamy", "chiptune": "happy", "orchestral": "epic",
    "blues": "sad", "cinematic": "neutral",
}
GENRE_TEMPO: dict[str, int] = {
    "lo-fi": 80, "jazz": 110, "blues": 84, "rock": 120, "metal": 140, "classical": 90,
    "orchestral": 96, "electronic": 124, "techno": 130, "house": 124, "trance": 138,
    "drum and bass": 174, "hip hop": 90, "ambient": 70, "synthwave": 100, "folk": 96,
    "country": 104, "reggae": 80, "funk": 108, "pop": 116, "chiptune": 140, "waltz": 90,
    "cinematic": 90,
}
GENRE_INSTRUMENTS: dict[str, tuple[str, ...]] = {
    "lo-fi": ("electric piano", "drums", "bass"), "jazz": ("piano", "bass", "drums", "saxophone"),
    "blues": ("guitar", "harmonica"), "rock": ("electric guitar", "bass", "drums"),
    "metal": ("electric guitar", "drums"), "classical": ("piano", "strings"),
    "orchestral": ("strings", "brass", "drums"), "electronic": ("synthesizer", "drums", "bass"),
    "techno": ("synthesizer", "drums"), "house": ("synthesizer", "drums", "bass"),
    "trance": ("synthesizer", "synth pads"), "drum and bass": ("drums", "bass"),
    "hip hop": ("drums", "bass", "piano"), "ambient": ("synth pads",),
    "synthwave": ("synthesizer", "drums"), "folk": ("acoustic guitar",),
    "country": ("acoustic guitar", "banjo"), "reggae": ("guitar", "bass", "drums"),
    "funk": ("bass", "guitar", "drums"), "pop": ("synthesizer", "drums"),
    "chiptune": ("synthesizer",), "waltz": ("strings", "piano"), "cinematic": ("strings", "piano"),
}

# "a girl waves goodbye" is not the sea.
_NOT_WAVING = r"(?! (?:goodbye|hello|hi|at|to|back|his|her|their|its|a|an|the)\b)"

# Ambience sounds the user may name directly: regex -> sound description.
SOUNDS: list[tuple[str, str]] = [
    (rf"waves?{_NOT_WAVING}|surf", "waves"),
    (r"seagulls?|gulls?", "seagulls"),
    (r"thunder(?:storm)?s?|lightning", "thunder"),
    (r"rain(?:drops?|fall|ing|y|s)?|drizzl\w*|downpour", "rain"),
    (r"wind(?:y|s)?|breeze|gusts?", "wind"),
    (r"(?:tall )?grass(?:es)?|meadows?|fields? of", "rustling grass"),
    (r"leaves", "rustling leaves"),
    (r"birds?(?:ong)?s?|birdsong|chirping", "birdsong"),
    (r"crickets?", "crickets"),
    (r"traffic|cars?|honking", "traffic"),
    (r"crowds?|people|chatter", "crowd chatter"),
    (r"streams?|rivers?|brooks?|creeks?", "flowing water"),
    (r"waterfalls?", "waterfall"),
    (r"fire(?:place)?|campfire|flames?|bonfire", "crackling fire"),
    (r"bubbles?", "bubbles"),
    (r"clock ticking|ticking", "clock ticking"),
    (r"machines?|machinery|factory", "machinery hum"),
]

# Scenes: regex -> (environment, ambience sounds, default mood, genre or None)
SCENES: list[tuple[str, tuple[str, tuple[str, ...], str, str | None]]] = [
    (r"underwater|under the sea|coral reef|scuba|submarine|deep sea",
     ("underwater", ("underwater rumble", "bubbles"), "dreamy", "ambient")),
    (r"outer space|space ?station|spaceship|astronaut|in space|galaxy|nebula|planets?|orbit",
     ("space", ("low spaceship hum", "soft electronic drone"), "dreamy", "ambient")),
    (r"thunderstorm|storm(?:y)?|lighthouse|hurricane|tempest",
     ("storm", ("rain", "thunder", "wind"), "tense", "cinematic")),
    (rf"beach|ocean|sea(?:side|shore)?|coast(?:al)?|shore|waves?{_NOT_WAVING}|cliffs?",
     ("beach", ("waves", "seagulls"), "calm", None)),
    (r"forest|woods?|jungle|trees|woodland",
     ("forest", ("birdsong", "wind", "rustling leaves"), "calm", None)),
    (r"meadows?|(?:tall )?grass(?:es|land)?|prairie|fields?|savanna",
     ("meadow", ("wind", "rustling grass", "insects buzzing"), "calm", None)),
    (r"city|street|downtown|traffic|new york|tokyo|urban|highway|intersection",
     ("city", ("traffic", "crowd chatter", "distant horns"), "energetic", "lo-fi")),
    (r"caf[eé]|coffee ?shop|restaurant|bar|diner|pub",
     ("cafe", ("crowd chatter", "clinking cups"), "happy", "jazz")),
    (r"desert|dunes?|sahara|canyon",
     ("desert", ("dry wind", "sand blowing"), "mysterious", None)),
    (r"rain(?:y|ing|fall|drops?)?|drizzl\w*|downpour",
     ("rain", ("rain", "distant thunder"), "sad", None)),
    (r"campfire|bonfire|fireplace|fire ?pit|flames|burning",
     ("campfire", ("crackling fire", "crickets"), "calm", "folk")),
    (r"snow(?:y|fall)?|blizzard|winter|arctic|frozen|ice",
     ("snow", ("cold wind", "crunching snow"), "calm", None)),
    (r"mountains?|peaks?|summit|valley",
     ("mountains", ("wind", "distant birds"), "epic", "orchestral")),
    (r"river|stream|waterfall|lake|pond",
     ("river", ("flowing water", "birdsong"), "calm", None)),
    (r"battle|war|battlefield|army|soldiers|sword fight",
     ("battlefield", ("distant explosions", "shouting"), "epic", "orchestral")),
    (r"night|midnight|moonlit|moon",
     ("night", ("crickets", "soft wind"), "mysterious", None)),
    (r"party|club|concert|festival|dance floor",
     ("party", ("crowd cheering",), "energetic", "electronic")),
    (r"factory|workshop|laboratory|lab|engine room",
     ("factory", ("machinery hum",), "dark", None)),
    (r"train|subway|station|airport",
     ("station", ("crowd chatter", "train rumble"), "energetic", None)),
    (r"farm|barn|countryside|village",
     ("countryside", ("birdsong", "distant animals"), "happy", "folk")),
]

# Dynamics, checked in this order (first match wins). The third item is False for
# words that are ambiguous in a visual clause ("a tall building", "the rising sun"):
# those count only in audio clauses.
SHAPE_PATTERNS: list[tuple[str, str, bool]] = [
    (r"start(?:s|ing)? (?:out )?(?:very )?(?:quiet|soft|calm|slow|gentle)\w*|"
     r"begin(?:s|ning)? (?:very )?(?:quiet|soft|calm|gentle)\w*|quiet (?:at first|then)|"
     r"(?:soft|calm|gentle) (?:at first|then)|from (?:quiet|soft|silence) to loud", "starts_quiet", True),
    (r"fad(?:e|es|ed|ing) (?:out|away|to silence|to black)|dies away|slowly fad(?:es|ing)",
     "fade_out", True),
    (r"decrescendo|diminuendo|getting quieter|grow(?:s|ing)? quieter|quieter and quieter|"
     r"softer and softer|dying down|dies down|winding down|from loud to (?:quiet|soft)",
     "decrescendo", True),
    (r"calm(?:s|ing)? down|receding|settl(?:es|ing) down|falling", "decrescendo", False),
    (r"crescendo|grow(?:s|ing)? louder|gets? louder|getting louder|louder and louder|"
     r"intensif(?:y|ies|ying)|escalat\w+|ramp(?:s|ing)? up", "crescendo", True),
    (r"build(?:s|ing)?(?: up)?|swell(?:s|ing)?|rising|rises|climax", "crescendo", False),
]

# Explicit silences: regex -> (start, end) as fractions of the clip.
SILENCE_PATTERNS: list[tuple[str, tuple[float, float]]] = [
    (r"silen(?:ce|t) at the (?:very )?(?:end|close)|ends? (?:in|with) (?:a )?silence|"
     r"(?:then|into|before) (?:total |complete )?silence$|followed by silence|"
     r"silent ending|(?:cuts?|drops?) to silence", (0.82, 1.0)),
    (r"silen(?:ce|t) at the (?:start|beginning)|(?:starts?|begins?|opens?) (?:in|with) (?:a )?silence|"
     r"silent (?:opening|intro)", (0.0, 0.15)),
    (r"(?:a )?moments? of silence|silent pause|pause of silence|sudden silence|brief silence|"
     r"beat of silence|silence in the middle|dramatic pause|(?:a )?pause", (0.45, 0.6)),
]

# Silences in seconds; each regex's groups are named: dur (seconds), at ("start" or "end"),
# a and b (from/to, seconds), from ("first"/"last"). Checked before the fractional ones.
_N = r"(\d+(?:[.,]\d+)?)"
_S = r"\s*-?\s*(?:s|secs?|seconds?)\b"
ABSOLUTE_SILENCES: list[str] = [
    rf"silence (?:from|between) (?P<a>{_N[1:-1]})(?:{_S})? (?:to|and|until) (?P<b>{_N[1:-1]}){_S}",
    rf"(?P<dur>{_N[1:-1]}){_S} (?:of )?silence (?:at|from|after) (?P<a>{_N[1:-1]}){_S}",
    rf"(?P<dur>{_N[1:-1]}){_S} (?:of |long )?(?:silence|silent pause|pause)"
    rf"(?: (?:at|in) the (?:very )?(?P<at>start|beginning|opening|end|close))?",
    rf"silence (?:for|during|in) the (?P<from>first|last|final|opening|closing) (?P<dur>{_N[1:-1]}){_S}",
    rf"(?:the )?(?P<from>first|last|final|opening|closing) (?P<dur>{_N[1:-1]}){_S} (?:are |is )?(?:of )?silen(?:t|ce)",
]

# Words that make a clause audio-only (it is then dropped from the visual prompt).
AUDIO_MARKERS = (
    r"music(?:al)?|soundtrack|score|melod(?:y|ies|ic)|tunes?|songs?|sounds?|audio|ambience|"
    r"ambient noise|noises?|silence|silent pause|crescendo|decrescendo|diminuendo|bpm|tempo|"
    r"beats?|rhythm|hear(?:ing)?|volume"
)
# Words allowed in a clause that is still "just audio" (besides instruments, genres, moods).
AUDIO_FILLER = (
    r"a|an|the|and|or|with|of|some|very|slow(?:ly)?|fast|loud|quiet(?:ly)?|soft(?:ly)?|"
    r"low|high|deep|light|warm|heavy|subtle|building|build(?:s)?|rising|intensifying|"
    r"intensifies|starting|starts|start|begins?|beginning|then|to|into|up|gradually|"
    r"playing|plays|in|background|gentle|slowly|growing|louder|fading|fades?|out|away|"
    r"minimal|lush|sparse|atmospheric|moody|pads?|plucked|strummed|layered|at|first|end|"
    r"moment|pause|long|short|brief|sudden|dramatic|little|bit|more|less|sound|by|"
    r"accompanied|backed|over|under|underneath|behind|set|feel|vibe|style|tone|loudly"
)

_CLAUSE_SPLIT = re.compile(
    r"((?:[;!?]|[.,](?!\d))+|\s+(?:with|while|and then|then|and|over|as|accompanied by|backed by|set to|"
    r"featuring|plus|to the sound of)\s+)",
    re.IGNORECASE,
)
_NO_MUSIC = re.compile(r"\b(?:no|without)\s+(?:any\s+)?(?:music|soundtrack|score)\b", re.I)
_NO_AMBIENCE = re.compile(r"\b(?:no|without)\s+(?:any\s+)?(?:ambience|background (?:noise|sound))\b", re.I)
_EXPLICIT_AMBIENCE = re.compile(
    r"\b(?:sounds? of|noises? of|ambience of|hear(?:ing)?|to the sound of|ambience:?)\s+([^,;.!?]+)",
    re.I,
)
_BPM = re.compile(r"\b(\d{2,3})\s*bpm\b", re.I)


# ---------------------------------------------------------------- helpers

def _find(pattern: str, text: str) -> re.Match[str] | None:
    return re.search(rf"\b(?:{pattern})\b", text, re.IGNORECASE)


def _all_matches(table: list[tuple[str, object]], text: str) -> list[tuple[int, str, object]]:
    """(position, matched text, value) for each table entry found, first occurrence, by position."""
    found = []
    taken: list[tuple[int, int]] = []
    for pattern, value in table:
        for m in re.finditer(rf"\b(?:{pattern})\b", text, re.IGNORECASE):
            if any(m.start() < e and s < m.end() for s, e in taken):
                continue  # a longer phrase earlier in the table already owns these words
            taken.append(m.span())
            found.append((m.start(), m.group(0), value))
            break
    return sorted(found, key=lambda f: f[0])


def _unique(items: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def _is_audio_clause(clause: str) -> bool:
    text = clause.strip()
    if not text:
        return True
    if _find(AUDIO_MARKERS, text) or any(_find(p, text) for p, _, strong in SHAPE_PATTERNS if strong):
        return True
    rest = text
    vocab = [p for p, _ in INSTRUMENTS] + list(GENRES) + list(MOODS) + [p for p, _, _ in SHAPE_PATTERNS]
    for pattern in vocab + [AUDIO_FILLER]:
        rest = re.sub(rf"\b(?:{pattern})\b", " ", rest, flags=re.IGNORECASE)
    return not re.sub(r"[\s\W]+", "", rest)


def _split_prompt(prompt: str) -> tuple[str, str]:
    """(visual text, audio text): clauses that are only about sound go to the audio text.

    A clause is judged in its English gloss; the visual side keeps the user's words.
    """
    parts = _CLAUSE_SPLIT.split(prompt)
    sides: dict[bool, list[str]] = {True: [], False: []}
    glossed: dict[bool, list[str]] = {True: [], False: []}
    for i in range(0, len(parts), 2):
        english = gloss(parts[i])
        audio = _is_audio_clause(english)
        if sides[audio] and i:
            sides[audio].append(parts[i - 1])
            glossed[audio].append(gloss(parts[i - 1]))
        sides[audio].append(parts[i])
        glossed[audio].append(english)
    visual = re.sub(r"\s+", " ", "".join(sides[False]).strip(" ,;"))
    return visual, re.sub(r"\s+", " ", "".join(glossed[True]).strip(" ,;"))


# ---------------------------------------------------------------- the plan

def _number(text: str | None) -> float:
    return float((text or "0").replace(",", "."))


def _absolute_silences(text: str) -> tuple[list[SilenceSpan], str]:
    """Silences given in seconds, and the text without them (so no fraction counts them twice)."""
    spans = []
    for pattern in ABSOLUTE_SILENCES:
        for m in re.finditer(rf"\b(?:{pattern})", text, re.IGNORECASE):
            g = m.groupdict()
            dur = _number(g.get("dur"))
            if g.get("b"):
                spans.append(SilenceSpan(_number(g["a"]), _number(g["b"]), seconds=True))
            elif g.get("a"):
                spans.append(SilenceSpan(_number(g["a"]), _number(g["a"]) + dur, seconds=True))
            elif (g.get("at") or "") in ("end", "close") or g.get("from") in ("last", "final", "closing"):
                spans.append(SilenceSpan(dur, 0.0, seconds=True, from_end=True))
            elif g.get("at") or g.get("from") or not re.search(r"\bthen\b", text[: m.start()]):
                spans.append(SilenceSpan(0.0, dur, seconds=True))  # "2 s of silence": first
            else:
                spans.append(SilenceSpan(dur, 0.0, seconds=True, from_end=True))  # "... then 2 s of silence"
        text = re.sub(rf"\b(?:{pattern})", " ", text, flags=re.IGNORECASE)
    return [s for s in spans if s.start != s.end], text


def _ordered_silence(text: str) -> list[SilenceSpan]:
    """A bare "silence" placed by where it stands: "eerie silence then a scream" opens silent."""
    if not _find(r"silence", text) or _find(r"(?:no|without) (?:any )?silence", text):
        return []
    parts = [p for p in re.split(r"\bthen\b|\bfollowed by\b|[,;.!?]", text) if p.strip()]
    where = next(i for i, p in enumerate(parts) if _find(r"silence", p))
    if len(parts) < 2:
        return []
    start, end = (0.0, 0.15) if where == 0 else (0.82, 1.0) if where == len(parts) - 1 else (0.45, 0.6)
    return [SilenceSpan(start, end)]


def _dynamics(text: str, audio_text: str) -> Dynamics:
    """Shape and silences; ambiguous words and fractional silences count only in audio clauses."""
    shape = next((s for p, s, _ in SHAPE_PATTERNS if _find(p, audio_text)), None)
    shape = shape or next((s for p, s, strong in SHAPE_PATTERNS if strong and _find(p, text)), "steady")
    silences, rest = _absolute_silences(text)
    _, audio_rest = _absolute_silences(audio_text)
    fractions = [SilenceSpan(a, b) for p, (a, b) in SILENCE_PATTERNS if _find(p, audio_rest)]
    if not silences and not fractions:
        fractions = _ordered_silence(rest)
    return Dynamics(shape, tuple(sorted(silences + fractions, key=lambda s: (s.seconds, s.start))))


def _scenes(text: str) -> list[tuple[str, tuple[str, ...], str, str | None]]:
    """Scenes named in the text, most specific first (table order: storm before night)."""
    order = {id(value): i for i, (_, value) in enumerate(SCENES)}
    found = [value for _, _, value in _all_matches(SCENES, text)]
    return sorted(found, key=lambda v: order[id(v)])  # type: ignore[return-value]


_MUSIC_NOUNS = r"music|soundtrack|score|melody|tune|song|theme|ballad|beat"


def _own_music_words(text: str) -> list[str]:
    """Describing words the tables don't know, taken as written: "bittersweet music"."""
    known = [p for p, _ in INSTRUMENTS] + list(GENRES) + list(MOODS) + [AUDIO_FILLER, AUDIO_MARKERS]
    words = []
    for m in re.finditer(rf"\b([a-z][a-z-]{{3,}})\s+(?:{_MUSIC_NOUNS})\b", text, re.IGNORECASE):
        if not any(re.fullmatch(p, m.group(1), re.IGNORECASE) for p in known):
            words.append(m.group(1).lower())
    return words


def _music(text: str, scenes: list, dynamics: Dynamics, action_mood: str | None) -> MusicPlan:
    """Music from the whole prompt (mood words in the order written) and the actions' mood."""
    instruments = _unique([v for _, _, v in _all_matches(INSTRUMENTS, text)])  # type: ignore[misc]
    genres = [v for _, _, v in _all_matches(list(GENRES.items()), text)]
    moods = _unique([v for _, _, v in _all_matches(list(MOODS.items()), text)])  # type: ignore[misc]
    genre = genres[0] if genres else None
    explicit = bool(instruments or genre or _find(r"music|soundtrack|score|melody|song", text))
    # explicit words win: mood word > the named genre's mood > an action's > the scene's
    scene_mood = scenes[0][2] if scenes else "neutral"
    mood = moods[0] if moods else GENRE_MOOD.get(genre or "", action_mood or scene_mood)
    if genre is None and not instruments:
        scene_genre = scenes[0][3] if scenes and scenes[0][3] and not action_mood else None
        genre = scene_genre or MOOD_DEFAULTS[mood][1]
    if not instruments:
        instruments = GENRE_INSTRUMENTS.get(genre or "", ()) or MOOD_DEFAULTS[mood][2]
    tempo = _tempo(text, mood if moods or action_mood else None, genre, scene_mood)
    words = list(moods[:2]) or [mood]
    if words == ["neutral"]:
        words = []
    own = _own_music_words(text)[:2]  # the user's words beat a mood inferred from the scene
    words = list(_unique(own + (words if moods or not own else [])))
    desc = " ".join(words + ([genre] if genre else []) + ["music"])
    desc += f" with {', '.join(instruments)}, {tempo} bpm"
    shape_text = {
        "crescendo": ", building to a crescendo", "starts_quiet": ", starting quiet then intensifying",
        "decrescendo": ", gradually calming down", "fade_out": ", fading out at the end",
    }.get(dynamics.shape, "")
    return MusicPlan(
        enabled=not _NO_MUSIC.search(text), instruments=instruments, genre=genre, mood=mood,
        tempo_bpm=tempo, description=desc + shape_text, explicit=explicit,
    )


def _tempo(text: str, mood: str | None, genre: str | None, scene_mood: str) -> int:
    if m := _BPM.search(text):
        return max(40, min(220, int(m.group(1))))
    if mood is not None:
        tempo = MOOD_DEFAULTS[mood][0]
    elif genre in GENRE_TEMPO:
        tempo = GENRE_TEMPO[genre]
    else:
        tempo = MOOD_DEFAULTS[scene_mood][0]
    if _find(r"fast|quick|rapid|uptempo|up-tempo|driving|frantic", text):
        tempo = max(tempo, 128)
    if _find(r"slow(?:ly)?|languid|lazy|meditative", text):
        tempo = min(tempo, 72)
    return tempo


def _ambience(text: str, english: str, scenes: list, phrases: list[SoundPhrase]) -> AmbiencePlan:
    """Scene sounds, named sounds and the prompt's own ambient phrases, in its setting."""
    asked = [v for _, _, v in _all_matches(SOUNDS, " ".join(_EXPLICIT_AMBIENCE.findall(text)))]
    named = [v for _, _, v in _all_matches(SOUNDS, text)]
    inferred = list(scenes[0][1]) if scenes and not asked else []  # explicit sounds win
    sounds = _unique(asked + named + inferred)[:5]  # type: ignore[arg-type]
    own = [p.text for p in phrases if p.ambient]
    place = find_place(english)
    environment = scenes[0][0] if scenes else (place[1] if place else None)
    if not sounds and not own and place is None:
        sounds = ("soft room tone",) if environment is None else ()
    heard = _unique(own + [s for s in sounds if not any(s in o.lower() for o in own)])
    setting = place[0] if place else environment
    description = f"{setting} ambience" if setting else "ambience"
    return AmbiencePlan(
        enabled=not _NO_AMBIENCE.search(text), environment=environment, sounds=sounds,
        description=description + (f": {', '.join(heard)}" if heard else ""),
        place=place[0] if place else None,
    )


MAX_CUES = 6


# Words that make an action the music's part: "drums pounding", "a choir singing", "a jazz
# band plays". Bells and chants are left out: "church bells ring" and "the crowd chants" are
# sounds of the scene.
_MUSIC_ACTION = "|".join([p for p, name in INSTRUMENTS if name not in ("bells", "choir")] + [
    r"music|melod\w+|songs?|tunes?|beats?|bands?|orchestras?|choirs?|choral|jazz|symphon\w+"])


def _is_music(phrase: str) -> bool:
    return bool(_find(_MUSIC_ACTION, phrase))


def _sfx(phrases: list[SoundPhrase]) -> tuple[SfxCue, ...]:
    """One cue per sound-making action that is not ambience, in the prompt's own words."""
    cues = [SfxCue(p.head, p.text, p.text, p.kind) for p in phrases if not p.ambient]
    return tuple(cues[:MAX_CUES])


def plan_prompt(prompt: str) -> AudioPlan:
    """Split a user's prompt into a visual prompt and an audio plan (see module docstring)."""
    text = " ".join(prompt.split())
    visual, audio = _split_prompt(text)
    english = gloss(text)  # the audio plan reads the English gloss; equal for English prompts
    if not visual:  # only audio words: the video model still needs a prompt
        visual, audio = text, english
    scenes = _scenes(english)
    # Sounds come from visual actions and explicit "sound of ..." phrases, not from audio
    # clauses: "building" there is dynamics, "drums pounding" music.
    sound_text = ", ".join([visual] + _EXPLICIT_AMBIENCE.findall(text))
    phrases = [p for p in sound_phrases(sound_text) if not _is_music(p.text)]
    action_mood = next((p.mood for p in phrases if p.mood and not p.ambient), None)
    dynamics = _dynamics(english, audio)
    return AudioPlan(
        prompt=prompt,
        visual_prompt=visual,
        music=_music(english, scenes, dynamics, action_mood),
        ambience=_ambience(english, sound_text or visual, scenes, phrases),
        sfx=_sfx(phrases),
        dynamics=dynamics,
    )
