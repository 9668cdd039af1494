"""Find what makes a sound in an English prompt, as phrases in the prompt's own words.

``sound_phrases("two knights clash swords in a medieval castle")`` gives one
:class:`SoundPhrase` whose ``text`` is "two knights clash swords": the sound-making word
(a verb or noun from :mod:`gpu_worker.sound_lexicon`, matched through its lemma, so
"clashing", "rang" and "geese" count) with the subject before it and the object or
direction after it, up to where the setting starts ("in a medieval castle"). That text is
what AudioGen gets. :func:`find_place` gives the setting the same way ("medieval castle").

There is no parser (spaCy's English model is not installed): the lexicon decides *that*
something sounds, and the phrase is cut at punctuation, conjunctions, setting prepositions
and other sounds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from gpu_worker.sound_lexicon import (
    ACTION_MOODS,
    ALWAYS_AMBIENT,
    AMBIENT_SOURCES,
    AUXILIARIES,
    BOUNDARIES,
    DETERMINERS,
    FLASH_WORDS,
    KEEP_PREPS,
    MASS_NOUNS,
    PLACES,
    SETTING_PREPS,
    SILENT_VERBS,
    SOUND_NOUNS,
    SOUND_VERBS,
    SOURCES,
)

MAX_BEFORE = 5  # words of subject kept before the sound word
MAX_AFTER = 8  # words of object and direction kept after it
_TOKEN = re.compile(r"[^\W\d_][\w'’-]*|\d+(?:[.,]\d+)?|[^\w\s]")
_PRONOUNS = frozenset("i you he she it we they someone somebody everyone people".split())
_MODALS = frozenset("to will would can could may might must should shall does do did".split())
_PREPOSITIONS = KEEP_PREPS | SETTING_PREPS | {"of"}
_PARTICLES = frozenset("away off up down out past by open shut closed apart around back over".split())
_NOT_VERB_FORMS = ("saw",)  # "she saw a bird": the lemma would be "saw" as well as "see"


@dataclass(frozen=True)
class SoundPhrase:
    text: str  # the prompt's words for the sound, e.g. "two knights clash swords"
    head: str  # lemma of the word that makes the sound, e.g. "clash"
    kind: str  # visual event it fits: "impact", "flash" or "any"
    ambient: bool  # an ongoing sound of many or of a mass ("waves crashing"): ambience
    mood: str | None  # mood the action implies (ACTION_MOODS), if any


@dataclass(frozen=True)
class _Token:
    text: str
    lower: str
    start: int
    end: int
    verbs: frozenset[str]
    nouns: frozenset[str]

    @property
    def plural(self) -> bool:
        return bool(self.nouns) and self.lower not in self.nouns and self.lower.endswith("s")


@lru_cache(maxsize=4096)
def _lemmas(word: str) -> tuple[frozenset[str], frozenset[str]]:
    """(verb lemmas, noun lemmas) of one lower-case word."""
    import lemminflect  # loads its tables (0.4 s) on first use

    found = lemminflect.getAllLemmas(word)
    verbs = set(found.get("VERB", ())) if word not in _NOT_VERB_FORMS else set()
    if not verbs and word.endswith(("s", "ed", "ing")):  # "swooshes": not in its dictionary
        verbs = {v for v in lemminflect.getAllLemmasOOV(word, "VERB").get("VERB", ()) if v in SOUND_VERBS}
    nouns = set(found.get("NOUN", ()))
    if not found and word.replace("-", "").isalpha():  # unknown words: "hailstones", "pom-poms"
        nouns = set(lemminflect.getAllLemmasOOV(word, "NOUN").get("NOUN", (word,)))
    return frozenset(verbs), frozenset(nouns)


def _tokens(text: str) -> list[_Token]:
    out = []
    for m in _TOKEN.finditer(text):
        lower = m.group(0).lower()
        verbs, nouns = _lemmas(lower) if lower[0].isalpha() else (frozenset(), frozenset())
        out.append(_Token(m.group(0), lower, m.start(), m.end(), verbs, nouns))
    return out


def _segments(tokens: list[_Token]) -> list[list[_Token]]:
    """Runs of words between punctuation and conjunctions, each a candidate clause."""
    segments: list[list[_Token]] = [[]]
    for tok in tokens:
        if not tok.lower[0].isalnum() or tok.lower in BOUNDARIES:
            segments.append([])
        else:
            segments[-1].append(tok)
    return [s for s in segments if s]


def _verbal(seg: list[_Token], i: int) -> bool:
    """Is seg[i] used as a verb? Without a tagger: its form and the word before it."""
    tok = seg[i]
    prev = seg[i - 1].lower if i else ""
    if prev in DETERMINERS and tok.lower.endswith("ing") and i + 1 < len(seg) \
            and seg[i + 1].nouns & SOURCES:
        return True  # "a creaking door", "a ticking clock"
    if prev in DETERMINERS or prev in _PREPOSITIONS:
        return False  # "the bark", "a crash", "on rocks"
    if tok.lower not in tok.verbs:
        return True  # inflected: "clashing", "rang", "chops"
    return i == 0 or prev in _PRONOUNS or prev in _MODALS or seg[i - 1].plural


def _sound_verb(tok: _Token) -> str | None:
    return next((v for v in sorted(tok.verbs) if v in SOUND_VERBS), None)


def _active_verb(tok: _Token) -> str | None:
    """A verb lemma that is not silent ("launches", "turning"; not "parked", "sleeping")."""
    verbs = [v for v in sorted(tok.verbs) if v not in SILENT_VERBS and v not in AUXILIARIES]
    if not verbs or tok.lower in DETERMINERS or tok.lower in _PREPOSITIONS:
        return None
    return verbs[0] if not tok.verbs & SILENT_VERBS else None


def _heads(seg: list[_Token]) -> dict[int, tuple[str, str]]:
    """{index: (lemma, "verb" or "noun")} of the words that make a sound in one segment."""
    heads: dict[int, tuple[str, str]] = {}
    for i, tok in enumerate(seg):
        verb = _sound_verb(tok)
        if verb and _verbal(seg, i) and not tok.verbs & SILENT_VERBS:
            heads[i] = (verb, "verb")
            continue
        noun = next((n for n in sorted(tok.nouns | {tok.lower}) if n in SOUND_NOUNS), None)
        if noun:
            heads[i] = (noun, "noun")
    for i, tok in enumerate(seg):  # a sound source doing anything: "a rocket launches"
        if not tok.nouns & SOURCES or i in heads:
            continue
        for j in (i + 1, i + 2):
            if j >= len(seg) or j in heads or seg[j].nouns & (SOURCES | SOUND_NOUNS.keys() | PLACES):
                break  # "glass bottles clink": a noun, not the verb
            if verb := _active_verb(seg[j]):
                if seg[j].lower not in seg[j].verbs or (j == i + 1 and tok.plural):
                    heads[j] = (verb, "verb")
                break
        for j in range(max(0, i - 3), i - 1):  # ... or something done to it: "turns the page"
            between = seg[j + 1:i]
            if j not in heads and (verb := _active_verb(seg[j])) and seg[j].lower not in seg[j].verbs \
                    and between[0].lower in DETERMINERS and all(not t.verbs for t in between[1:]):
                heads[j] = (verb, "verb")
                break
    return _merge(seg, heads)


def _merge(seg: list[_Token], heads: dict[int, tuple[str, str]]) -> dict[int, tuple[str, str]]:
    """One sound per subject and verb: "thunder rumbles", "an alarm clock buzzes",
    "a truck reverses beeping" are one phrase each, named by the last verb."""
    order = sorted(heads)
    for h, nxt in zip(order, order[1:]):  # "jumps into the lake with a splash": one event
        if h not in heads:
            continue
        lead = seg[max(h + 1, nxt - 3):nxt]
        withs = [n for n, t in enumerate(lead) if t.lower == "with"]
        if heads[h][1] == "verb" and heads[nxt][1] == "noun" and withs and nxt - h <= MAX_AFTER + 1 \
                and all(t.lower in DETERMINERS or not t.verbs for t in lead[withs[-1] + 1:]):
            lemma, _ = heads.pop(nxt)
            if _kind(heads[h][0]) == "any":
                heads[h] = (lemma, "verb")
    order = sorted(heads)
    for h, nxt in zip(order, order[1:]):
        between = seg[h + 1:nxt]
        if heads[nxt][1] == "verb" and nxt - h <= 2 and not any(
                t.lower in _PREPOSITIONS or t.lower in DETERMINERS for t in between):
            lemma, _ = heads.pop(h)
            if _kind(heads[nxt][0]) == "any" and _kind(lemma) != "any":
                heads[nxt] = (lemma, heads[nxt][1])  # keep the hit's kind: "an avalanche thunders"
    return heads


def _kind(lemma: str) -> str:
    return SOUND_VERBS.get(lemma) or SOUND_NOUNS.get(lemma, "any")


def _before(seg: list[_Token], h: int, heads: dict[int, tuple[str, str]], limit: int) -> int:
    """First index of the subject (or adjectives) kept before the head at h."""
    k = h
    while k > 0 and h - (k - 1) <= limit:
        tok = seg[k - 1]
        if k - 1 in heads or (tok.lower in _PREPOSITIONS and tok.lower != "of"):
            break
        k -= 1
        if tok.lower in DETERMINERS or tok.lower in _PRONOUNS:
            break
    return k


def _after(seg: list[_Token], h: int, heads: dict[int, tuple[str, str]]) -> int:
    """Index just past the object and direction kept after the head at h."""
    k = h + 1
    while k < len(seg) and k in range(h + 1, h + 1 + MAX_AFTER):
        if k in heads or seg[k].lower in SETTING_PREPS:
            break
        k += 1
    if k == h + 1 + MAX_AFTER and k < len(seg) and seg[k].lower not in SETTING_PREPS:
        cut = [j for j in range(h + 2, k) if seg[j].lower in _PREPOSITIONS]
        k = cut[-1] if cut else k  # cut at a whole phrase, not inside one
    stopped_by_head = k < len(seg) and k in heads
    if stopped_by_head and heads[k][1] == "noun":
        k = max(h + 1, _before(seg, k, heads, 3))  # "with a loud bang": the adjectives are the bang's
    while k > h + 1 and (stopped_by_head or seg[k - 1].lower not in _PARTICLES) and (
            seg[k - 1].lower in _PREPOSITIONS or seg[k - 1].lower in DETERMINERS):
        k -= 1  # never end on "the" or "into"
    return k


def _ambient(words: list[_Token], kind: str) -> bool:
    """Many of an ambient source, or a mass of it: "birds chirping", "rain pattering".

    Hits are events, not ambience ("dry leaves crunch"), except for water and weather
    ("waves crashing on rocks").
    """
    for n, tok in enumerate(words):
        source = tok.nouns & AMBIENT_SOURCES
        if not source:
            continue
        singular = n and words[n - 1].lower in {"a", "an", "one", "single", "this", "that"}
        if not singular and (tok.plural or source & MASS_NOUNS) and (
                kind != "impact" or source & ALWAYS_AMBIENT):
            return True
    return False


def sound_phrases(text: str) -> list[SoundPhrase]:
    """Every sound-making action or sound in ``text``, in order, as prompt phrases."""
    found: dict[str, SoundPhrase] = {}
    subject = ""
    for seg in _segments(_tokens(text)):
        heads = _heads(seg)
        for h, (lemma, part) in sorted(heads.items()):
            a = _before(seg, h, heads, MAX_BEFORE if part == "verb" else 3)
            b = _after(seg, h, heads)
            words = seg[a:b]
            phrase = text[words[0].start:words[-1].end]
            if part == "verb" and a == h and subject:
                phrase = f"{subject} {phrase}"  # "a man slams the door and walks away"
            elif part == "verb" and a < h:
                subject = text[seg[a].start:seg[h - 1].end]
            lemmas = {n for t in words for n in t.nouns | {t.lower}}
            kind = "flash" if lemmas & FLASH_WORDS else _kind(lemma)
            found.setdefault(phrase.lower(), SoundPhrase(
                phrase, lemma, kind, _ambient(seg[a:h] if part == "verb" else words, kind),
                ACTION_MOODS.get(lemma)))
    return list(found.values())


def find_place(text: str) -> tuple[str, str] | None:
    """(the prompt's words for the setting, its head noun), e.g. ("busy kitchen", "kitchen")."""
    tokens = _tokens(text)
    candidates = []
    for i, tok in enumerate(tokens):
        place = next((n for n in sorted(tok.nouns | {tok.lower}) if n in PLACES), None)
        if place is None or tok.lower.endswith(("ed", "ing")):
            continue
        if i + 1 < len(tokens) and tokens[i + 1].nouns & PLACES:
            continue  # "city street": the last of the run is the head
        a = i
        while a > 0 and i - a < 3:
            prev = tokens[a - 1]
            if not prev.lower[0].isalnum() or prev.lower in DETERMINERS | _PREPOSITIONS | BOUNDARIES \
                    or prev.lower in _PRONOUNS or _sound_verb(prev) \
                    or prev.lower.endswith(("ed", "es")) and prev.lower not in prev.nouns:
                break
            a -= 1
        located = a > 0 and tokens[a - 1].lower in _PREPOSITIONS | DETERMINERS
        candidates.append((not located, a, i, place))
    if not candidates:
        return None
    _, a, i, head = min(candidates)
    for _, a2, i2, _ in sorted(candidates, key=lambda c: c[1]):  # "storm at sea", "cabin in the woods"
        gap = tokens[i + 1:a2]
        if a2 > i and gap and all(t.lower in _PREPOSITIONS | DETERMINERS for t in gap) \
                and gap[0].lower in SETTING_PREPS | {"on", "by", "of", "over"}:
            i = i2
    return text[tokens[a].start:tokens[i].end], head
