"""Prompt ban-list matching that sees through the usual disguises.

Both the prompt and each rule are reduced to a plain form first (:func:`plain`): Unicode
compatibility forms (full-width, ligatures, math letters), accents dropped, case folded,
zero-width characters and soft hyphens removed, and a few Cyrillic/Greek look-alikes of Latin
letters mapped to them. A rule then matches as whole words, where each of its letters may
also be written

* as a common leetspeak stand-in (``4``/``@`` for a, ``3`` for e, ``1``/``!`` for i and l,
  ``0`` for o, ``5``/``$`` for s, ``7``/``+`` for t, ...),
* repeated (``nuuude``),
* with up to :data:`MAX_GAP` separators between letters (``n u d e``, ``n.u.d.e``,
  ``n-u-d-e``).

"Whole words" means no letter or digit right before the first letter or right after the
last one, so ``ass`` does not match *class* or *assassin*; a plural ``s``/``es`` is allowed
after the last letter. A rule ending in ``*`` matches as a prefix (``nud*``: *nudity*).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

MAX_GAP = 3
INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad\u180e\u034f"), None)
LOOKALIKES = str.maketrans({
    "\u0430": "a", "\u0435": "e", "\u043e": "o", "\u0440": "p", "\u0441": "c", "\u0445": "x",
    "\u0443": "y", "\u0456": "i", "\u0458": "j", "\u0455": "s", "\u03bf": "o", "\u03b1": "a",
    "\u03b5": "e", "\u03b9": "i", "\u03ba": "k", "\u03bd": "v", "\u03c1": "p", "\u03c4": "t",
})
LEET: dict[str, str] = {
    "a": "4@", "b": "8", "e": "3", "g": "96", "i": "1!|", "l": "1|", "o": "0", "s": "5$",
    "t": "7+", "z": "2",
}
GAP = rf"(?:[^\w@$!|+]|_){{0,{MAX_GAP}}}"  # separators between letters (not leet stand-ins)
BEFORE = r"(?<![^\W_])"  # no letter or digit right before
AFTER = r"(?![^\W_])"  # ... nor right after


def plain(text: str) -> str:
    """The text as matching sees it (see the module docstring)."""
    text = text.translate(INVISIBLE)
    decomposed = unicodedata.normalize("NFKD", text)
    bare = "".join(c for c in decomposed if not unicodedata.combining(c))
    return bare.casefold().translate(LOOKALIKES)


def _letter(char: str) -> str:
    return f"[{re.escape(char + LEET.get(char, ''))}]+"


@lru_cache(maxsize=1024)
def compile_rule(term: str) -> re.Pattern[str] | None:
    """The pattern of one rule; None for a rule with no letters or digits."""
    prefix = term.rstrip().endswith("*")
    chars = [c for c in plain(term.rstrip().rstrip("*")) if c.isalnum()]
    if not chars:
        return None
    body = GAP.join(_letter(c) for c in chars)
    tail = "" if prefix else rf"(?:{GAP}e?[s5$])?{AFTER}"
    return re.compile(BEFORE + body + tail)


@dataclass(frozen=True)
class Rule:
    """One ban-list entry as users are told about it (``label``), never the term itself."""

    label: str  # e.g. "rule #12 of this server's ban list"
    term: str


def first_match(prompt: str, rules: list[Rule]) -> Rule | None:
    """The first rule the prompt matches, or None."""
    text = plain(prompt)
    for rule in rules:
        pattern = compile_rule(rule.term)
        if pattern is not None and pattern.search(text):
            return rule
    return None


def check_term(term: str) -> str | None:
    """Why a proposed rule is unusable (None when it is fine)."""
    if compile_rule(term) is None:
        return "A ban-list rule needs at least one letter or digit."
    if len(term) > 100:
        return "A ban-list rule can be at most 100 characters long."
    return None
