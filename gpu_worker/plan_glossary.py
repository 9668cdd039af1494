"""English for the music, mood, dynamics and silence words of non-English prompts.

The plan reads Spanish, French, German, Italian and Portuguese words for music, moods,
instruments, tempo, dynamics, silence (with "at the start/end" and seconds) and the most
common settings: ``gloss("música alegre, silencio al final")`` is "music happy, silence at
the end". Sound-making actions are English only: "un perro ladra" gets no SFX cue (see the
README). The visual prompt keeps the user's words; only the audio plan reads the gloss.
"""

from __future__ import annotations

import re
import unicodedata

# English -> the words that mean it; phrases before single words. Accents are optional
# ("musica" matches "música"), and words that are also English ("piano") are left out.
_GLOSSARY: dict[str, str] = {
    # where in the clip (for silences)
    "at the end": "al final|a la fin|a la fin du clip|am ende|alla fine|no final|ao final|"
                  "zum schluss|al termine",
    "at the start": "al principio|al inicio|al comienzo|au debut|au commencement|am anfang|"
                    "zu beginn|all'inizio|all inizio|no inicio|no comeco|ao inicio",
    "in the middle": "en medio|en el medio|au milieu|in der mitte|nel mezzo|a meta|no meio",
    "seconds of silence": "segundos de silencio|secondes de silence|sekunden stille|"
                          "secondi di silenzio|segundos de silencio",
    "seconds": "segundos|secondes|sekunden|secondi",
    "silence": "silencio|silenzio|stille|ruhe|silencioso|silencieux|silenzioso|en silence|"
               "sin sonido|sans son",
    "then": "luego|despues|puis|ensuite|dann|danach|poi|depois|entao",
    "no music": "sin musica|sans musique|ohne musik|senza musica|sem musica",
    # music
    "music": "musica|musique|musik|melodia|melodie|cancion|chanson|canzone|cancao|"
             "banda sonora|bande sonore|filmmusik|colonna sonora|trilha sonora",
    "guitar": "guitarra|guitare|gitarre|chitarra|violao",
    "acoustic guitar": "guitarra acustica|guitare acoustique|akustikgitarre|chitarra acustica",
    "electric guitar": "guitarra electrica|guitare electrique|e-gitarre|chitarra elettrica",
    "strings": "violin|violon|geige|violino|violines|violons|geigen|violini|violinos|"
               "violonchelo|violoncelle|cello|violoncello|cuerdas|cordes|streicher|archi",
    "drums": "tambores|tambor|bateria|tambours|batterie|schlagzeug|trommeln|tamburi|"
             "percusion|percussion|percussioni|percussao",
    "flute": "flauta|flute traversiere|flote|flauto",
    "brass": "trompeta|trompette|trompete|tromba|trompetas|trompettes",
    "harp": "arpa|harpe|harfe",
    "choir": "coro|choeur|chor",
    "organ": "organo|orgue|orgel",
    "bells": "campanas|cloches|glocken|campane|sinos",
    "saxophone": "saxofon|saxophon|sassofono|saxofone",
    "accordion": "acordeon|accordeon|akkordeon|fisarmonica|acordeao",
    "synthesizer": "sintetizador|synthetiseur|sintetizzatore",
    "orchestral": "orquesta|orchestre|orchester|orchestra sinfonica|orquestra",
    # moods
    "happy": "alegre|alegres|feliz|felices|joyeuse|joyeux|gaie|gai|frohlich|frohliche|"
             "lustig|lustige|allegra|allegro|felice|gioiosa|animada|animado",
    "sad": "triste|tristes|traurig|traurige|malinconica|melancolica|melancolico|"
           "melancolique|melancholisch|nostalgica",
    "calm": "tranquila|tranquilo|tranquille|calme|ruhig|ruhige|sanft|sanfte|suave|suaves|"
            "douce|doux|tranquilla|calma|calmo|relajante|relaxante|apaisante|entspannend|"
            "rilassante|serena|sereno|serein|sereine",
    "tense": "tensa|tenso|tendue|tendu|angespannt|spannend|inquietante|angoissante",
    "epic": "epica|epico|epique|episch|epische|epiche",
    "mysterious": "misteriosa|misterioso|mysterieuse|mysterieux|geheimnisvoll|"
                  "geheimnisvolle|unheimlich|espeluznante|lugubre",
    "dark": "oscura|oscuro|sombria|sombrio|sombre|dunkel|dunkle|cupa|cupo",
    "romantic": "romantica|romantico|romantique|romantisch",
    "energetic": "energica|energico|energique|energisch|rapida|rapido|rapide|schnell|schnelle|"
                 "veloce|intensa|intenso|intense",
    "dreamy": "sonadora|onirica|onirique|traumerisch|sognante",
    "slow": "lenta|lento|lente|langsam|langsame",
    # dynamics
    "building to a crescendo": "cada vez mas fuerte|de plus en plus fort|immer lauter|"
                               "sempre piu forte|cada vez mais alto",
    "fading out": "desvaneciendose|se desvanece|en fondu|fondu|ausblenden|verklingt|"
                  "sfumando|dissolvenza",
    # settings
    "forest": "bosque|foret|wald|foresta|floresta",
    "beach": "playa|plage|spiaggia|praia",
    "sea": "mar|mer|meer",
    "city": "ciudad|ville|stadt|citta|cidade",
    "rain": "lluvia|pluie|regen|pioggia|chuva",
    "night": "noche|nuit|nacht|notte|noite",
    "storm": "tormenta|tempestad|tempete|orage|sturm|gewitter|tempesta|tempestade",
    "snow": "nieve|neige|schnee|neve",
    "desert": "desierto|desert|wuste|deserto",
    "mountains": "montana|montanas|montagne|montagnes|berge|gebirge|montagna|montanha",
}


def _fold(text: str) -> str:
    """Lower case without accents: "Música" -> "musica"."""
    nfkd = unicodedata.normalize("NFKD", text.lower())
    return "".join(c for c in nfkd if not unicodedata.combining(c))


_ENTRIES = sorted(
    ((_fold(alt), en) for en, alts in _GLOSSARY.items() for alt in alts.split("|")),
    key=lambda e: -len(e[0]),
)
_PATTERN = re.compile(r"\b(?:" + "|".join(re.escape(a) for a, _ in _ENTRIES) + r")\b")
_ENGLISH = dict(_ENTRIES)


def gloss(text: str) -> str:
    """``text`` with the glossary's non-English words in English (accents folded there only)."""
    folded = _fold(text)
    if not _PATTERN.search(folded):
        return text
    return _PATTERN.sub(lambda m: _ENGLISH[m.group(0)], folded)


def glossed(text: str) -> bool:
    """Whether ``text`` has words the glossary translates."""
    return bool(_PATTERN.search(_fold(text)))
