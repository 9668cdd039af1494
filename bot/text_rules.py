"""What user text (prompts, grant reasons) may contain, and how it is normalised.

Refused, because they are never part of real words and can hide or spoof text:
C0/C1 control characters other than tab and line breaks, lone surrogates, and the bidi
embeddings, overrides and isolates (U+202A-U+202E, U+2066-U+2069) that reorder what
others see. Normalised, because they are harmless: NFC; vertical tab, form feed, NEL and
the Unicode line/paragraph separators become spaces; a stray BOM, zero-width space or soft
hyphen (pasted from elsewhere) is dropped; runs of whitespace become one space.
Kept as sent, because real words and emoji need them: ZWJ and ZWNJ (Persian, Hindi, family
emoji), variation selectors, tag characters (England's flag), RLM/LRM/ALM (Hebrew, Arabic)
and private-use characters.
"""

from __future__ import annotations

import unicodedata

BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
AS_SPACE = frozenset("\x0b\x0c\x85\u2028\u2029")
DROPPED = frozenset("\ufeff\u200b\u00ad")
LINE_BREAKS = frozenset("\t\n\r")


class BadText(ValueError):
    """The text holds a character that is refused; ``char`` is the first one found."""

    def __init__(self, char: str, why: str) -> None:
        super().__init__(f"U+{ord(char):04X} ({why})")
        self.char = char
        self.why = why

    @property
    def codepoint(self) -> str:
        return f"U+{ord(self.char):04X}"


def refused_reason(char: str) -> str | None:
    """Why ``char`` is refused in user text, or None when it is allowed."""
    if char in LINE_BREAKS or char in AS_SPACE:
        return None
    if char in BIDI_CONTROLS:
        return "a bidi override that can reorder the text others see"
    category = unicodedata.category(char)
    if category == "Cc":
        return "a control character"
    if category == "Cs":
        return "a lone surrogate, which is not a character"
    return None


def normalise(text: str | None) -> str:
    """The text as it will be stored and shown: refused characters raise :class:`BadText`."""
    raw = text or ""
    for char in raw:
        why = refused_reason(char)
        if why is not None:
            raise BadText(char, why)
    kept = "".join(" " if c in AS_SPACE else c for c in raw if c not in DROPPED)
    return " ".join(unicodedata.normalize("NFC", kept).split())
