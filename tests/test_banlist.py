"""The prompt ban-list matcher (bot.banlist): a table of plain hits, evasions and innocent
words that must not match."""

from __future__ import annotations

import pytest

from bot.banlist import Rule, check_term, first_match, plain

RULES = [
    Rule("rule #1", "nude"),
    Rule("rule #2", "gore"),
    Rule("rule #3", "ass"),
    Rule("rule #4", "school shooting"),
    Rule("rule #5", "nud*"),
    Rule("rule #6", "swastika"),
]


@pytest.mark.parametrize(
    ("prompt", "rule"),
    [
        # plain and case
        ("a nude figure on a beach", "rule #1"),
        ("A NUDE figure", "rule #1"),
        ("Nude.", "rule #1"),
        ("two nudes by a lake", "rule #1"),
        # accents, compatibility forms, look-alikes
        ("a n\u00fad\u00e9 statue", "rule #1"),
        ("a \uff4e\uff55\uff44\uff45 statue", "rule #1"),  # full-width letters
        ("a g\u03bfre fest", "rule #2"),  # Greek omicron
        ("a nud\u0435 statue", "rule #1"),  # Cyrillic e
        ("\U0001d427\U0001d42e\U0001d41d\U0001d41e art", "rule #1"),  # math bold letters
        # zero-width characters and soft hyphens
        ("a nu\u200bde statue", "rule #1"),
        ("a n\u200du\u200cd\u2060e statue", "rule #1"),
        ("a nu\u00adde statue", "rule #1"),
        # spacing and separators
        ("a n u d e statue", "rule #1"),
        ("a n.u.d.e statue", "rule #1"),
        ("a n-u-d-e statue", "rule #1"),
        ("a n_u_d_e statue", "rule #1"),
        # leetspeak and repeats
        ("a nud3 statue", "rule #1"),
        ("a g0r3 fest", "rule #2"),
        ("kick @$$", "rule #3"),
        ("kick a55", "rule #3"),
        ("a nuuuuude statue", "rule #1"),
        ("sw4st1ka flag", "rule #6"),
        # several words, with any spacing between them
        ("a school   shooting scene", "rule #4"),
        ("a SCHOOL-shooting scene", "rule #4"),
        ("a sch00l sh00ting scene", "rule #4"),
        # a prefix rule
        ("nudity in art", "rule #5"),
        # innocent words that contain a rule
        ("a class of students", None),
        ("an assassin in the night", None),
        ("a bass guitar solo", None),
        ("the gorge at dawn", None),
        ("a school bus at noon", None),
        ("a storm over a lighthouse, dramatic orchestral score", None),
        ("glass harmonica, passing clouds", None),
    ],
)
def test_ban_list_table(prompt: str, rule: str | None) -> None:
    found = first_match(prompt, RULES)
    assert (found.label if found else None) == rule


def test_rule_terms_are_normalised_too() -> None:
    assert first_match("a nude statue", [Rule("r", "N\u00dcDE")]) is not None
    assert first_match("a nude statue", [Rule("r", "n\u200bude")]) is not None


def test_plain_form() -> None:
    assert plain("\uff2e\u00fa\u200bd\u0435") == "nude"


@pytest.mark.parametrize("term", ["", "   ", "***", "!!"])
def test_rules_without_letters_are_refused(term: str) -> None:
    assert check_term(term) is not None


def test_a_usable_rule_passes() -> None:
    assert check_term("nud*") is None
