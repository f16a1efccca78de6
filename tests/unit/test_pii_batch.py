"""`PiiDetector.find_many`: one scan of many texts, exactly what `find` gives for each.

The batch joins the texts by a line break and maps matches back, so the properties here
throw at it what could tell a joined scan from a lone one: values at the very start and
end of a text, separators and line breaks inside texts, `+(` before a number, Unicode
digits, and custom detectors that can or cannot read across a line break.
"""

from __future__ import annotations

import re
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.content import card, email, evasive_pii, iban, phone
from harness.guardrails import (
    _EMAIL,
    _IBAN_FROM_CHECK,
    _IBAN_FROM_CHECK_ASCII,
    _NUMBER,
    _NUMBER_ASCII,
    PII_KINDS,
    Finding,
    PiiDetector,
    _joinable,
    luhn_ok,
)

NBSP = "\u00a0"

JOINABLE = {
    "order": r"A\d{6}",
    "ref": r"\bORD-\d+\b",
    "nonboundary": r"\B\d{2}\B",
    "look": r"(?<![\w@])[a-z]{2}\d(?!\w)",
    "dots": r"x.{1,3}y",
    "either": r"(?i:id|no)[:#]\d+",
    "behind_not": r"(?<!\S)\d{2}",  # \S never matches a line break: as at a text's start
}
"""Custom detectors that read no line break: scanned joined."""
NOT_JOINABLE = {
    "space_digits": r"\s\d+",
    "start": r"^\d+",
    "end": r"\d+$",
    "dotall": r"(?s)x.{1,3}y",
    "negated": r"[^a-z]{3}\d",
    "lines": r"(?m)^\w+$",
    "ahead": r"\d(?=\s)",
    "nonword": r"\W\d\d",
}
"""Custom detectors that could read across a line break or anchor on a text's ends."""


def batch(detector: PiiDetector, texts: list[str]) -> list[list[Finding]]:
    """`find_many` as one list per text (it leaves out texts without findings)."""
    many = detector.find_many(texts)
    assert all(0 <= k < len(texts) and found for k, found in many.items())
    return [many.get(k, []) for k in range(len(texts))]


def test_the_built_in_patterns_can_be_scanned_joined() -> None:
    builtins = (_NUMBER, _NUMBER_ASCII, _IBAN_FROM_CHECK, _IBAN_FROM_CHECK_ASCII, _EMAIL)
    assert all(_joinable(p) for p in builtins)


@pytest.mark.parametrize("pattern", list(JOINABLE.values()))
def test_patterns_that_read_no_line_break_are_joinable(pattern: str) -> None:
    assert _joinable(re.compile(pattern))


@pytest.mark.parametrize("pattern", list(NOT_JOINABLE.values()))
def test_patterns_that_could_read_a_line_break_are_scanned_alone(pattern: str) -> None:
    assert not _joinable(re.compile(pattern))


def test_a_pattern_python_warns_about_is_judged_without_warning_again() -> None:
    with pytest.warns(FutureWarning):
        pattern = re.compile(r"[[a]\d")  # "possible nested set"
    assert _joinable(pattern)  # `[`, `a` and digits: never a line break


def test_each_text_is_read_as_if_alone() -> None:
    texts = [
        "mail jane@example.com",
        "4111 1111 1111 1111",  # a card right after a text's end is not glued to it
        "x+(44) 20 7946 0958",
        "+(44) 20 7946 0958",  # `+(` before the first digit: the text is scanned alone
        "",
        "DE89 3704 0044 0532 0130 00\n+44 20 7946 0958",
        "ORD-2024-000123 A123456",
    ]
    detector = PiiDetector(custom={"order": r"A\d{6}", "lead": r"^\d+"})
    assert batch(detector, texts) == [detector.find(t) for t in texts]
    assert detector.find_many([]) == {}


def test_redact_with_findings_at_hand_is_redact() -> None:
    detector = PiiDetector()
    text = "card 4111-1111-1111-1111, mail jane@example.com, tel +44 20 7946 0958"
    found = detector.find(text)
    assert len(found) == 3
    assert detector.redact(text, found) == detector.redact(text)
    assert detector.redact("nothing here", []) == ("nothing here", [])


# --- properties ----------------------------------------------------------------------------

SEEDS = st.integers(0, 2**31 - 1)


@st.composite
def pii_values(draw: st.DrawFn) -> str:
    """A value some detector finds (or, for an evasive one, deliberately misses)."""
    a, b, fmt = draw(SEEDS), draw(SEEDS), draw(st.integers(0, 3))
    kind = draw(st.sampled_from(["email", "phone", "card", "iban", "evasive", "luhn"]))
    if kind == "email":
        return email(a, b, fmt % 3)
    if kind == "phone":
        return phone(a, fmt)
    if kind == "card":
        return card(a, fmt)
    if kind == "iban":
        return iban(a, fmt)
    if kind == "evasive":
        return evasive_pii(fmt, a, b)
    digits = draw(st.text(string.digits, min_size=12, max_size=19))
    return digits if luhn_ok(digits) or fmt else digits[::-1]  # near misses too


UNICODE = "\u2009\u3000\uff11\uff12\u0663"  # thin and ideographic spaces, fullwidth digits
NOISE = st.text(
    string.ascii_letters + string.digits + " .-+()#@:,\n\x00" + NBSP + UNICODE, max_size=12
)
GLUE = st.sampled_from(["", " ", "\n", "+(", "(", "+", "#", "@", "A", "00", NBSP, "\x00", ":"])


@st.composite
def texts(draw: st.DrawFn) -> str:
    """Fragments (PII values, noise) glued by characters that sit at a match's edges."""
    parts = draw(st.lists(st.one_of(pii_values(), NOISE), max_size=5))
    return "".join(draw(GLUE) + part for part in parts) + draw(GLUE)


DETECTORS = [
    PiiDetector(),
    PiiDetector(("card", "email")),
    PiiDetector(("iban", "phone"), custom=JOINABLE),
    PiiDetector(custom=NOT_JOINABLE),
    PiiDetector((), custom={**JOINABLE, **NOT_JOINABLE}),
]


@settings(max_examples=60, deadline=None, derandomize=True)
@given(st.lists(texts(), max_size=8), st.sampled_from(range(len(DETECTORS))))
def test_find_many_is_find_on_each_text(texts: list[str], which: int) -> None:
    detector = DETECTORS[which]
    assert batch(detector, texts) == [detector.find(text) for text in texts]


@settings(max_examples=40, deadline=None, derandomize=True)
@given(st.lists(pii_values(), min_size=1, max_size=6), GLUE)
def test_values_at_the_edges_of_texts_are_found_as_alone(values: list[str], glue: str) -> None:
    texts = [*values, *(glue + v for v in values), *(v + glue for v in values)]
    detector = PiiDetector(PII_KINDS, custom=JOINABLE)
    assert batch(detector, texts) == [detector.find(text) for text in texts]
