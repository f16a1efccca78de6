"""Deterministic guardrails: PII redaction, tool-argument validation, injection containment.

Everything here is pure: no I/O, no clock, no randomness, and the same input always
gives the same answer. Patterns are compiled once at import; a `PiiDetector` or a
`ToolArgsValidator` compiles what it needs once, at construction, and can then be used
for every request of a simulation.

What `PiiDetector` reports (`Finding`s never carry the matched text, so they can be
logged; a reason from `ToolArgsValidator` names argument paths, never values):

- **email**: a practical RFC 5322 subset, any case: a local part of letters, digits and
  `._%+-`, an `@`, dot-separated domain labels and a TLD of 2+ letters. It must not be
  glued to a word character on either side (`mail:jane@example.com` is found).
- **card**: 13 to 19 digits passing the Luhn check, not starting with 0 (no issuer
  number does; `00` starts an international phone number), either ungrouped or grouped
  with one separator used throughout, as 4-4-4-(1..4), 4-4-4-4-(1..3) or 4-6-(4..5).
- **iban**: two letters, two check digits (02 to 98) and the rest of the account,
  ungrouped or in groups of 4, any case, passing the ISO 13616 mod-97 check and, for
  the countries in `IBAN_LENGTHS`, the registry length.
- **phone** (precision first): `+CC` or `00CC` followed by 9 to 15 digits in groups
  (a `(0)` trunk is not counted) and, for `00`, not shaped like a card (a card-shaped
  number is a card or nothing); or a national number in a phone grouping:
  `(555) 010-4477`, `555.010.4477` (3-3-4), or a leading `0` trunk then groups of 2+
  digits with one separator, 9 to 15 digits in all (`020 7946 0958`, `06 12 34 56 78`).

Numbers are read whole: a number is a maximal run of digit groups joined by single
separators (space, `-`, `.`, NBSP, thin, narrow and ideographic spaces, Unicode hyphens;
parentheses around an area code) and is classified as one card, one phone, or
nothing. Hence dates (`2024-01-31`), times, amounts (`1,250.00`, `12 500 000 000`),
digits glued to letters (`ORD-2024-000123`) and Luhn near misses are never phones, and
a card directly followed by another group (`4111 1111 1111 1111 2`) is read as one
number that is not a card. Digits may be any Unicode decimal digits (fullwidth too).

Not handled, by design or for now: spelled-out or obfuscated values ("jane at example
dot com", "jane @ example.com", digits as words), quoted local parts and
internationalised domain names, plain national numbers without any separator
(`5550104477`), national numbers grouped like thousands (`912 345 678`) unless written
with a country code, and names, addresses or other free-text personal data.

`find_many` gives, for many texts, exactly what `find` gives for each, from one scan of
the texts joined by a line break: no built-in detector matches a line break or reads
across one, so each text is read as if alone; a custom detector that could (one with a
line break, a whitespace or non-word class, a negated class, `.` under DOTALL, or an
anchor other than a word boundary) scans text by text.

Injection containment is decided by provenance (`contained`), never by how a text looks;
`looks_injected` is only a cheap signal to record.
"""

from __future__ import annotations

import bisect
import importlib
import re
import string
import unicodedata
import warnings
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import accumulate
from types import MappingProxyType
from typing import Any, Final

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError, ValidationError, best_match
from referencing import Registry
from referencing.exceptions import Unresolvable
from referencing.jsonschema import DRAFT202012

__all__ = [
    "IBAN_LENGTHS",
    "PII_KINDS",
    "ActionRecognizer",
    "Finding",
    "PiiDetector",
    "ToolArgsValidator",
    "contained",
    "iban_ok",
    "looks_injected",
    "luhn_ok",
    "schema_problem",
]

PII_KINDS: Final = ("email", "phone", "card", "iban")
"""The built-in detectors, the default `kinds` of a `PiiDetector`."""

IBAN_LENGTHS: Final[Mapping[str, int]] = MappingProxyType(
    {
        "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22,
        "BH": 22, "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22,
        "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FO": 18, "FR": 27,
        "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28,
        "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20,
        "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MD": 24,
        "ME": 22, "MK": 19, "MR": 27, "MT": 31, "MU": 30, "NL": 18, "NO": 15, "PK": 24,
        "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "SA": 24, "SC": 31,
        "SE": 24, "SI": 19, "SK": 24, "SM": 27, "ST": 25, "SV": 28, "TL": 23, "TN": 24,
        "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
    }
)  # fmt: skip
"""IBAN length per country (SWIFT IBAN registry). Other country codes: 15 to 34."""


@dataclass(frozen=True, slots=True)
class Finding:
    """One detected value: its kind and `text[start:end]`. Never the value itself."""

    kind: str
    start: int
    end: int


# --- numbers: cards and phones ----------------------------------------------------------

_SEP = "[ .\\-\u00a0\u2007\u2009\u202f\u3000\u2010\u2011]"


def _compile(template: str) -> re.Pattern[str]:
    """Compile a pattern in which `~` stands for one separator character."""
    return re.compile(template.replace("~", _SEP))


# A maximal run of digit groups joined by single separators; a group may be an area code
# in parentheses. Not glued to a word, `+`, `#` or `@`, and not a tail of digits glued to
# a word (`ORD-2024-000123`) or of an IBAN (`DE89 3704 ...`). Written to start with a
# character class, which lets the regex engine skip quickly to candidate positions: the
# lookbehinds therefore look past the first character.
_NUMBER = _compile(
    r"[+(\d](?<![\w+#@].)(?<!\d~\d)(?<!\w[-.]\d)"
    r"(?:(?<=\+)(?:\(\d{1,5}\)|\d++)|(?<=\()\d{1,5}\)|(?<=\d)\d*+)"
    r"(?:~?(?:\(\d{1,5}\)|\d++))*+"
    r"(?![\w@])"
)
_CARD_SHAPE = _compile(
    r"\d{13,19}"
    r"|\d{4}(~)\d{4}\1\d{4}\1(?:\d{1,4}|\d{4}\1\d{1,3})"
    r"|\d{4}(~)\d{6}\2\d{4,5}"
)
_NATIONAL_PHONE = _compile(
    r"\(\d{3}\)~?\d{3}~\d{4}"
    r"|\d{3}(~)\d{3}\1\d{4}"
    r"|(?:\(0\d{1,4}\)~?|0\d{1,4}~)\d{2,8}(?:(~)\d{2,8}(?:\2\d{2,8})*)?"
)

# --- IBAN ---------------------------------------------------------------------------------

_IBAN_SEP = "[ \u00a0\u2009\u202f]"
# Matches from the check digits on (a leading character class is fast to search for);
# the IBAN starts two characters before the match.
_IBAN_FROM_CHECK = re.compile(
    r"[0-9][0-9](?<=(?<!\w)[A-Za-z]{2}..)"
    rf"(?:{_IBAN_SEP}?[A-Za-z0-9]{{4}})*+(?:{_IBAN_SEP}?[A-Za-z0-9]{{1,3}})?"
    r"(?!\w)"
)
_IBAN_COMPACT = re.compile(r"[A-Z]{2}[0-9]{2}[A-Z0-9]{11,30}")

# --- email --------------------------------------------------------------------------------

_EMAIL = re.compile(
    r"(?<![\w.%+\-])[A-Z0-9._%+\-]+@"
    r"(?:[A-Z0-9](?:[A-Z0-9\-]{0,61}[A-Z0-9])?\.)+[A-Z]{2,63}"
    r"(?![\w@])",
    re.IGNORECASE,
)

_LOCAL_CHARS = frozenset(string.ascii_letters + string.digits + "._%+-")
_LUHN_KEPT = bytes.maketrans(b"0123456789", bytes(range(10)))
_LUHN_DOUBLED = bytes.maketrans(b"0123456789", bytes((0, 2, 4, 6, 8, 1, 3, 5, 7, 9)))
_IBAN_AS_DIGITS = {ord(c): str(int(c, 36)) for c in string.ascii_uppercase}
_FIRST_DIGIT = re.compile(r"\d")
_FIRST_ASCII_DIGIT = re.compile(r"[0-9]")
_NO_CUSTOM: Final[Mapping[str, str]] = MappingProxyType({})
_CUSTOM_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_\-]*")


def luhn_ok(digits: str) -> bool:
    """True when `digits` (decimal digits only, any script, non-empty) passes Luhn."""
    if not digits.isdecimal():
        return False
    if not digits.isascii():
        digits = "".join(str(int(d)) for d in digits)
    raw = digits.encode("ascii")
    total = sum(raw[-1::-2].translate(_LUHN_KEPT)) + sum(raw[-2::-2].translate(_LUHN_DOUBLED))
    return total % 10 == 0


def iban_ok(text: str) -> bool:
    """True when `text` is a valid IBAN: spaces allowed, any case.

    Valid means: two letters, check digits 02 to 98, 11 to 30 more letters or digits,
    the registry length for the countries in `IBAN_LENGTHS`, and the ISO 13616 mod-97
    remainder 1.
    """
    compact = "".join(text.split()).upper()
    if not compact.isascii() or _IBAN_COMPACT.fullmatch(compact) is None:
        return False
    if IBAN_LENGTHS.get(compact[:2], len(compact)) != len(compact):
        return False
    if compact[2:4] in ("00", "01", "99"):
        return False
    return int((compact[4:] + compact[:4]).translate(_IBAN_AS_DIGITS)) % 97 == 1


def _iban_end(shaped: str) -> int | None:
    """The length of the valid IBAN that an IBAN-shaped text starts with, if any.

    For a country of known length, the IBAN is its first that-many letters and digits
    when they end a group (a following word of 4 letters may have been taken as a group).
    """
    length = IBAN_LENGTHS.get(shaped[:2].upper())
    end = len(shaped)
    if length is not None and length != len("".join(shaped.split())):
        seen = end = 0
        while seen < length and end < len(shaped):
            seen += shaped[end].isalnum()
            end += 1
        if seen < length or (end < len(shaped) and shaped[end].isalnum()):
            return None
    return end if iban_ok(shaped[:end]) else None


def _emails(text: str) -> Iterator[tuple[int, int]]:
    """Email spans, searched for from each `@` (much faster than scanning every word)."""
    at = text.find("@")
    while at != -1:
        start = at
        while start and text[start - 1] in _LOCAL_CHARS:
            start -= 1
        m = _EMAIL.match(text, start)
        if m is not None:
            yield m.span()
        at = text.find("@", m.end() if m is not None else at + 1)


def _number_kind(number: str) -> str | None:
    """Classify one whole number (a `_NUMBER` match) as "card", "phone" or neither."""
    digits = "".join(filter(str.isdecimal, number))
    if not digits.isascii():
        digits = "".join(str(int(d)) for d in digits)
    if number[0] == "+":
        counted = len(digits) - number.count("(0)")
        ok = number[1].isdecimal() and digits[0] != "0" and 9 <= counted <= 15
        return "phone" if ok else None
    if _CARD_SHAPE.fullmatch(number):  # a card, or else nothing: never a phone
        return "card" if digits[0] != "0" and luhn_ok(digits) else None
    if digits.startswith("00") and number[0] != "(" and digits[2] != "0":
        counted = len(digits) - 2 - number.count("(0)")
        if 9 <= counted <= 15:
            return "phone"
    if 9 <= len(digits) <= 15 and _NATIONAL_PHONE.fullmatch(number):
        return "phone"
    return None


_Span = tuple[int, int, int]  # (start, end, rank of the kind)

# The same patterns for ASCII text, where they find exactly the same (`\d` and `\w` then
# match the same characters either way) without looking characters up in Unicode tables.
_NUMBER_ASCII = re.compile(_NUMBER.pattern, re.ASCII)
_IBAN_FROM_CHECK_ASCII = re.compile(_IBAN_FROM_CHECK.pattern, re.ASCII)

_JOIN: Final = "\n"
"""What `find_many` joins texts with: a character no built-in detector matches."""
_PARSER: Any = importlib.import_module("re._parser")  # the stdlib's own regex parser
_NEWLINE_CATEGORIES: Final = {
    "CATEGORY_SPACE": True, "CATEGORY_NOT_WORD": True, "CATEGORY_NOT_DIGIT": True,
    "CATEGORY_LINEBREAK": True, "CATEGORY_DIGIT": False, "CATEGORY_NOT_SPACE": False,
    "CATEGORY_WORD": False, "CATEGORY_NOT_LINEBREAK": False,
}  # fmt: skip
"""Whether each class escape (`\\s`, `\\W`, `\\D`, ...) matches a line break."""
_EDGE_FREE: Final = ("AT_BOUNDARY", "AT_NON_BOUNDARY")
"""Anchors that hold at a line break exactly as at the start or end of a text."""


def _joinable(pattern: re.Pattern[str]) -> bool:
    """True when `pattern` finds in texts joined by `_JOIN` exactly what it finds in each.

    So when no part of it, lookarounds included, can match a line break, and it anchors
    on nothing but word boundaries: a match then never reaches the joint, and whatever
    looks at the joint sees what it would see at the start or end of a text alone (no
    character to match). Conservative: anything not understood counts as not joinable.
    """
    try:
        with warnings.catch_warnings():  # compiling it already warned of anything amiss
            warnings.simplefilter("ignore")
            tree = _PARSER.parse(pattern.pattern, pattern.flags)
        return _never_newline(tree, int(tree.state.flags))
    except Exception:  # an unfamiliar parse: scan text by text
        return False


def _never_newline(items: Any, flags: int) -> bool:
    """True when no node of a parsed pattern (`re._parser` items) can match `_JOIN`."""
    nl = ord(_JOIN)
    for op, av in items:
        name = op.name
        if name == "LITERAL":
            ok = av != nl
        elif name == "NOT_LITERAL":
            ok = av == nl
        elif name == "ANY":
            ok = not flags & re.DOTALL
        elif name == "IN":
            ok = _class_matches_newline(av) is False
        elif name == "AT":
            ok = av.name in _EDGE_FREE
        elif name == "GROUPREF":
            ok = True  # the group itself is checked where it is defined
        elif name == "SUBPATTERN":
            ok = _never_newline(av[3], (flags | av[1]) & ~av[2])
        elif name == "BRANCH":
            ok = all(_never_newline(branch, flags) for branch in av[1])
        elif name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
            ok = _never_newline(av[2], flags)
        elif name == "ATOMIC_GROUP":
            ok = _never_newline(av, flags)
        elif name in ("ASSERT", "ASSERT_NOT"):
            ok = _never_newline(av[1], flags)
        elif name == "GROUPREF_EXISTS":
            ok = _never_newline(av[1], flags) and (av[2] is None or _never_newline(av[2], flags))
        else:
            ok = False
        if not ok:
            return False
    return True


def _class_matches_newline(items: Any) -> bool | None:
    """Whether a character class (`re._parser` IN items) matches `_JOIN`; None: unsure."""
    nl = ord(_JOIN)
    negate = False
    hit = False
    for op, av in items:
        name = op.name
        if name == "NEGATE":
            negate = True
        elif name == "LITERAL":
            hit = hit or av == nl
        elif name == "RANGE":
            hit = hit or av[0] <= nl <= av[1]
        elif name == "CATEGORY":
            matches = _NEWLINE_CATEGORIES.get(av.name)
            if matches is None:
                return None
            hit = hit or matches
        else:
            return None
    return hit != negate


def _select(found: list[_Span]) -> list[_Span]:
    """The candidates to report, sorted by start: on overlap the longest, then the earliest,
    then the kind ranked first."""
    if len(found) < 2:
        return found
    found.sort(key=lambda c: (c[0] - c[1], c[0], c[2]))  # longest, earliest, by kind
    kept: list[_Span] = []  # disjoint, sorted by start
    starts: list[int] = []
    for c in found:
        i = bisect.bisect_right(starts, c[0])
        if (i == 0 or kept[i - 1][1] <= c[0]) and (i == len(kept) or c[1] <= starts[i]):
            kept.insert(i, c)
            starts.insert(i, c[0])
    return kept


class PiiDetector:
    """Finds and redacts personal data; see the module docstring for the exact rules.

    `kinds` selects the built-in detectors; `custom` adds detectors by name (a letter,
    then letters, digits, `_` or `-`) and Python regex, compiled as given (use inline
    flags such as `(?i)`); empty matches are ignored. A number is classified the same
    way whatever the kinds selected: turning "card" off never makes a card a phone.
    """

    __slots__ = ("_custom", "_email", "_iban", "_joined", "_kinds", "_labels", "_numbers",
                 "_rank")  # fmt: skip

    def __init__(
        self, kinds: Sequence[str] = PII_KINDS, custom: Mapping[str, str] = _NO_CUSTOM
    ) -> None:
        if isinstance(kinds, str):
            raise ValueError(f"kinds must be a sequence of kind names, e.g. ({kinds!r},)")
        unknown = [k for k in kinds if k not in PII_KINDS]
        if unknown:
            raise ValueError(
                f"unknown PII kind {unknown[0]!r}; expected some of {', '.join(PII_KINDS)}"
            )
        self._kinds = ("card", "iban", "email", "phone", *custom)
        self._rank = {kind: rank for rank, kind in enumerate(self._kinds)}
        self._labels = tuple(f"[{kind.upper()}]" for kind in self._kinds)
        compiled: list[tuple[int, re.Pattern[str]]] = []
        for name, pattern in custom.items():
            if name in PII_KINDS:
                raise ValueError(f"custom detector {name!r} clashes with a built-in kind")
            if _CUSTOM_NAME.fullmatch(name) is None:
                raise ValueError(
                    f"custom detector {name!r}: a name is a letter then letters, digits, _ or -"
                )
            try:
                compiled.append((self._rank[name], re.compile(pattern)))
            except re.error as e:
                raise ValueError(
                    f"custom detector {name!r}: invalid regex {pattern!r}: {e}"
                ) from None
        self._custom = tuple(compiled)
        self._joined = tuple(_joinable(pattern) for _, pattern in compiled)
        self._email = "email" in kinds
        self._iban = "iban" in kinds
        self._numbers = frozenset(k for k in kinds if k in ("card", "phone"))

    def find(self, text: str) -> list[Finding]:
        """Findings sorted by start, non-overlapping; on overlap the longest wins.

        Among equally long overlapping findings the earlier one wins, then the kind
        first in card, iban, email, phone, then custom detectors in the order given.
        """
        kinds = self._kinds
        return [Finding(kinds[rank], start, end) for start, end, rank in self._spans(text)]

    def find_many(self, texts: Sequence[str]) -> dict[int, list[Finding]]:
        """What `find` gives for each of `texts` that has any findings, by its index.

        The others (`find` gives `[]`) are left out: most texts carry no personal data.
        From one scan of the texts joined, which pays for itself on a batch of texts known
        in advance (a run's generated messages): the regex engine runs once over all of
        them instead of once per text and detector.
        """
        kinds = self._kinds
        return {
            k: [Finding(kinds[rank], start, end) for start, end, rank in spans]
            for k, spans in self._spans_many(texts).items()
        }

    def redact(
        self, text: str, found: Sequence[Finding] | None = None
    ) -> tuple[str, list[Finding]]:
        """`text` with each finding replaced by its label (`[EMAIL]`, `[CARD]`, `[ORDER_ID]`).

        `found`: what `find(text)` gave, if at hand (saves scanning the text again).
        """
        if found is None:
            spans = self._spans(text)
        else:
            rank = self._rank
            spans = [(f.start, f.end, rank[f.kind]) for f in found]
        if not spans:
            return text, []
        parts: list[str] = []
        pos = 0
        for start, end, r in spans:
            parts += (text[pos:start], self._labels[r])
            pos = end
        parts.append(text[pos:])
        kinds = self._kinds
        return "".join(parts), [Finding(kinds[r], start, end) for start, end, r in spans]

    def _spans(self, text: str) -> list[_Span]:
        """The findings to report, sorted by start."""
        return _select(self._candidates(text))

    def _spans_many(self, texts: Sequence[str]) -> dict[int, list[_Span]]:
        """`self._spans(texts[k])` for each k where it is not empty: the ASCII texts in one
        scan (by patterns that need not consult Unicode tables), the others in another."""
        plain = [k for k, text in enumerate(texts) if text.isascii()]
        if len(plain) == len(texts):
            return self._spans_joined(texts, True)
        other = [k for k, text in enumerate(texts) if not text.isascii()]
        out: dict[int, list[_Span]] = {}
        for index, ascii_only in ((plain, True), (other, False)):
            group = self._spans_joined([texts[k] for k in index], ascii_only)
            out.update((index[k], spans) for k, spans in group.items())
        return out

    def _spans_joined(self, texts: Sequence[str], ascii_only: bool) -> dict[int, list[_Span]]:
        """`self._spans(texts[k])` for each k where it is not empty, from one scan of the
        texts joined by `_JOIN`; `ascii_only`: every text is ASCII.

        Matches are mapped back to their text by offset. The one way a joined scan reads a
        text differently: `_candidates` reads numbers from just before the first digit, so
        a number written `+(` before it is read from the `(` there; such a text is scanned
        alone.
        """
        joined = _JOIN.join(texts)
        starts = [0, *accumulate(len(text) + 1 for text in texts)]  # text k: starts[k]...
        found: dict[int, list[_Span]] = {}
        alone: set[int] = set()
        at = bisect.bisect_right
        if self._email and "@" in joined:
            for start, end in _emails(joined):
                k = at(starts, start) - 1
                found.setdefault(k, []).append((start - starts[k], end - starts[k], 2))
        if self._iban or self._numbers:
            ibans: dict[int, list[tuple[int, int]]] = {}  # IBAN-shaped spans per text
            for m in (_IBAN_FROM_CHECK_ASCII if ascii_only else _IBAN_FROM_CHECK).finditer(joined):
                if m.end() - m.start() < 13:
                    continue
                start, end = m.start() - 2, m.end()
                k = at(starts, start) - 1
                ibans.setdefault(k, []).append((start, end))
                length = _iban_end(joined[start:end]) if self._iban else None
                if length is not None:
                    o = starts[k]
                    found.setdefault(k, []).append((start - o, start + length - o, 1))
            numbers = (_NUMBER_ASCII if ascii_only else _NUMBER).finditer(joined)
            for m in numbers if self._numbers else ():
                start, end = m.span()
                k = at(starts, start) - 1
                if joined.startswith("+(", start) and not _FIRST_DIGIT.search(
                    joined, starts[k], start
                ):
                    alone.add(k)  # alone, read from the `(`: see the docstring
                    continue
                if end - start < 9 or any(s < end and start < e for s, e in ibans.get(k, ())):
                    continue
                kind = _number_kind(m.group())
                if kind in self._numbers:
                    o = starts[k]
                    found.setdefault(k, []).append((start - o, end - o, self._rank[kind]))
        for (rank, pattern), together in zip(self._custom, self._joined, strict=True):
            if together:
                for m in pattern.finditer(joined):
                    start, end = m.span()
                    if end > start:
                        k = at(starts, start) - 1
                        found.setdefault(k, []).append((start - starts[k], end - starts[k], rank))
                continue
            for k, text in enumerate(texts):
                spans = [(m.start(), m.end(), rank) for m in pattern.finditer(text)
                         if m.end() > m.start()]  # fmt: skip
                if spans:
                    found.setdefault(k, []).extend(spans)
        out = {k: _select(spans) for k, spans in found.items() if k not in alone}
        for k in sorted(alone):
            spans = self._spans(texts[k])
            if spans:
                out[k] = spans
        return out

    def _candidates(self, text: str) -> list[_Span]:
        """Every detector's matches, overlapping ones included."""
        found: list[_Span] = []
        if self._email and "@" in text:
            found += ((start, end, 2) for start, end in _emails(text))
        first = (_FIRST_ASCII_DIGIT if text.isascii() else _FIRST_DIGIT).search(text)
        if first is not None and (self._iban or self._numbers):
            pos = max(first.start() - 1, 0)  # a number may start with `+` or `(`
            ibans = [
                (m.start() - 2, m.end())
                for m in _IBAN_FROM_CHECK.finditer(text, pos)
                if m.end() - m.start() >= 13
            ]
            for start, end in ibans if self._iban else ():
                length = _iban_end(text[start:end])
                if length is not None:
                    found.append((start, start + length, 1))
            for m in _NUMBER.finditer(text, pos) if self._numbers else ():
                start, end = m.span()
                if end - start < 9 or any(s < end and start < e for s, e in ibans):
                    continue  # too short for a phone or a card, or part of an IBAN
                kind = _number_kind(m.group())
                if kind in self._numbers:
                    found.append((start, end, self._rank[kind]))
        for rank, pattern in self._custom:
            found += (
                (m.start(), m.end(), rank) for m in pattern.finditer(text) if m.end() > m.start()
            )
        return found


# --- tool arguments -----------------------------------------------------------------------

_NO_RETRIEVAL: Registry[Any] = Registry()
"""Only the JSON Schema metaschemas and the schema itself: remote `$ref`s are never fetched."""

_METASCHEMAS = "https://json-schema.org/"  # bundled with jsonschema
_BOUNDS = {
    "minimum": ">=",
    "maximum": "<=",
    "exclusiveMinimum": ">",
    "exclusiveMaximum": "<",
}
_LENGTHS = {
    "minLength": "is shorter than {} characters",
    "maxLength": "is longer than {} characters",
    "minItems": "has fewer than {} items",
    "maxItems": "has more than {} items",
    "minProperties": "has fewer than {} properties",
    "maxProperties": "has more than {} properties",
}


class ToolArgsValidator:
    """Validates tool-call arguments against one JSON Schema (draft 2020-12) per tool.

    Schemas are checked and compiled once, here; a bad schema or a `$ref` that does not
    resolve within it raises ValueError naming the tool. Remote references are never
    fetched and `format` is an annotation only (its checks depend on optional packages,
    so results would differ between machines).
    """

    __slots__ = ("_validators",)

    def __init__(self, schemas: Mapping[str, Mapping[str, Any]]) -> None:
        self._validators: dict[str, Draft202012Validator] = {}
        for tool, schema in schemas.items():
            problem = schema_problem(schema)
            if problem is not None:
                raise ValueError(f"tool {tool!r}: {problem}")
            self._validators[tool] = Draft202012Validator(schema, registry=_NO_RETRIEVAL)

    def check(self, tool: str, args: Mapping[str, Any]) -> str | None:
        """None when `args` are valid for `tool`, else one short reason.

        Reasons name argument paths and schema constraints, never argument values, so they
        can be logged (arguments may carry personal data).
        """
        validator = self._validators.get(tool)
        if validator is None:
            return f"unknown tool {tool!r}"
        instance = dict(args) if isinstance(args, Mapping) else args
        try:
            error = best_match(validator.iter_errors(instance))
        except Unresolvable as e:
            raise ValueError(f"tool {tool!r}: $ref does not resolve: {e}") from None
        return None if error is None else _reason(error)


def schema_problem(schema: Any) -> str | None:
    """Why `schema` is not a usable JSON Schema (draft 2020-12), or None when it is.

    The one check shared by tool `args_schema`s (when a suite loads) and `json_schema`
    assertions of a requests file, so a bad schema fails before any request runs.
    """
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as e:
        return f"invalid JSON Schema at {e.json_path}: {e.message}"
    try:
        dangling = _dangling_ref(schema)
    except Exception as e:  # referencing rejects a malformed $id in its own ways
        return f"invalid JSON Schema: {type(e).__name__}: {e}"
    if dangling is not None:
        return (
            f"$ref {dangling!r} does not resolve within the schema "
            "(remote references are not fetched)"
        )
    return None


def _dangling_ref(schema: Any) -> str | None:
    """The first `$ref` in `schema` that resolves neither within it nor to a metaschema.

    A best-effort walk (`$dynamicRef` is left to validation time) so that a dangling
    reference fails when the suite loads rather than on some request mid-run.
    """
    root = DRAFT202012.create_resource(schema)
    uri = root.id() or "urn:evalx:tool-schema"
    resolver = _NO_RETRIEVAL.with_resource(uri, root).resolver(uri)
    stack: list[tuple[Any, Any]] = [(schema, resolver)]  # (subschema, its Resolver)
    while stack:
        node, resolver = stack.pop()
        if isinstance(node, list):
            stack.extend((item, resolver) for item in node)
        elif isinstance(node, dict):
            if isinstance(node.get("$id"), str):
                resolver = resolver.in_subresource(DRAFT202012.create_resource(node))
            ref = node.get("$ref")
            if isinstance(ref, str) and not ref.startswith(_METASCHEMAS):
                try:
                    resolver.lookup(ref)
                except Unresolvable:
                    return ref
            stack.extend(
                (value, resolver)
                for key, value in node.items()
                if key not in ("enum", "const", "default", "examples")
            )
    return None


def _reason(error: ValidationError) -> str:
    """A short, value-free reason for one validation error."""
    where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
    where = where.lstrip(".")
    subject = repr(where) if where else "arguments"
    keyword = str(error.validator)
    value: Any = error.validator_value
    instance: Any = error.instance
    if keyword in ("required", "dependentRequired"):
        if keyword == "dependentRequired":
            value = [n for k, names in value.items() if k in instance for n in names]
        missing = next((n for n in value if n not in instance), "?")
        return f"missing required {_child(where, missing)!r}"
    if keyword == "type":
        types = [value] if isinstance(value, str) else list(value)
        return f"{subject} is not of type " + " or ".join(repr(t) for t in types)
    if keyword == "additionalProperties":
        schema: Any = error.schema
        known, patterns = schema.get("properties", {}), schema.get("patternProperties", {})
        extra = next(
            (n for n in instance if n not in known and not any(re.search(p, n) for p in patterns)),
            "?",
        )
        return f"unexpected argument {_child(where, extra)!r}"
    if keyword == "enum":
        return f"{subject} is not one of {value!r}"
    if keyword == "const":
        return f"{subject} must be {value!r}"
    if keyword in _BOUNDS:
        return f"{subject} must be {_BOUNDS[keyword]} {value!r}"
    if keyword in _LENGTHS:
        return f"{subject} {_LENGTHS[keyword].format(value)}"
    if keyword == "pattern":
        return f"{subject} does not match {value!r}"
    return f"{subject} fails {keyword!r}"


def _child(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


# --- actions ---------------------------------------------------------------------------------


class ActionRecognizer:
    """Which policed actions a text asks for, and which one a proposed call performs.

    An action is recognised by its own name (`delete_account`, or with spaces) or by one of
    the policy's phrases for it, as a case-insensitive substring of the user's text or of
    a call's tool name and argument values. A request phrased otherwise, or a call made
    through another tool with arguments that name no phrase, is not recognised: that is
    the detector's blind spot, and what `edge_cases.evasive` exercises.
    """

    def __init__(self, actions: Iterable[str], phrases: Mapping[str, Iterable[str]]) -> None:
        self.phrases = {
            a: tuple(dict.fromkeys([a.lower(), a.replace("_", " ").lower(),
                                    *(p.lower() for p in phrases.get(a, ()))]))
            for a in actions
        }  # fmt: skip

    def in_text(self, text: str) -> tuple[str, ...]:
        """The actions `text` asks for, in policy order."""
        lower = text.lower()
        return tuple(a for a, ps in self.phrases.items() if any(p in lower for p in ps))

    def of_call(self, tool: str, args: Mapping[str, Any] | None) -> str | None:
        """The policed action a call performs, or None when nothing marks it as one."""
        if tool in self.phrases:
            return tool
        words = " ".join([tool, *(str(v) for v in (args or {}).values())]).lower()
        words = words.replace("_", " ")
        for action, ps in self.phrases.items():
            if any(p.replace("_", " ") in words for p in ps):
                return action
        return None


# --- prompt injection ---------------------------------------------------------------------


def contained(
    proposed_action: str, requested_actions: Collection[str], read_untrusted: bool
) -> bool:
    """True (block) when untrusted content was read and the action was not requested.

    Provenance, not text: once a request has read tool or retrieval output, it may only
    take actions the user's own request asked for (names compared exactly). Whether the
    untrusted text *looks* injected does not matter.
    """
    return read_untrusted and proposed_action not in requested_actions


_W = r"[\W_]+"  # between two words: any spaces, punctuation or quotes
_STRONG = r"(?:all|any|every|previous|prior|above|earlier|preceding|former|original|system|your)"
_WEAK = r"(?:the|of|my|these|those|and)"
_RULES = (
    r"(?:instructions?|prompts?|rules|directions|directives|guidelines|guardrails"
    r"|constraints|polic(?:y|ies)|context)"
)
# (substrings one of which must occur in the lower-cased text, the pattern then searched):
# the substring test is much cheaper than any regex search, and usually fails.
_PHRASES: Final = (
    (
        ("ignore", "disregard", "forget", "override"),
        re.compile(
            rf"(?:ignore|disregard|forget|override){_W}(?:{_WEAK}{_W})*{_STRONG}"
            rf"(?:{_W}(?:{_STRONG}|{_WEAK}))*{_W}{_RULES}\b"
        ),
    ),
    (
        ("now",),
        re.compile(
            rf"you{_W}are{_W}now{_W}(?:a|an|in|acting|operating|no{_W}longer|free"
            r"|unrestricted|jailbroken|dan|developer|my)\b"
        ),
    ),
    (("system",), re.compile(r"system[\W_]*prompt")),
    (("developer",), re.compile(rf"developer{_W}mode\b")),
    (("<!--", "display"), re.compile(r"<!--|display\s*:\s*none")),
    (
        ("<|", "inst]", "sys>>"),
        re.compile(r"<\|(?:im_start|im_end|system|endoftext)\|>|\[/?inst\]|<</?sys>>"),
    ),
)
_ZERO_WIDTH = "\u200b\u200c\u200d\u2060\ufeff\u180e"
_HIDDEN_CHARS = re.compile(
    rf"[{_ZERO_WIDTH}](?=[\x21-\x7e])|(?<=[\x21-\x7e])[{_ZERO_WIDTH}]"
    "|[\u202a-\u202e\u2066-\u2069\U000e0000-\U000e007f]"
)
_BLOB = re.compile(r"(?<![\w+/\-])[A-Za-z0-9+/\-_]{40,}+={0,2}(?![\w+/=\-])")


def looks_injected(text: str) -> bool:
    """A cheap text signal of a prompt injection; NOT the containment decision.

    True for: "ignore/disregard/forget/override ... all/previous/prior/above/your ...
    instructions/rules/prompt/..." (any case, any spaces, line breaks, quotes or
    punctuation between the words); "you are now a/an/in/DAN/..."; "system prompt";
    "developer mode"; hidden HTML (`<!--`, `display:none`); chat-template tokens;
    zero-width characters next to visible ASCII, bidi overrides and Unicode tag
    characters; base64-looking blobs of 40+ characters mixing upper case, lower case and
    digits. Fullwidth and other compatibility forms are folded (NFKC) first.

    Deliberately not flagged: a bare "disregard" ("please disregard my last email") and
    "you are now subscribed". Not caught: letters spaced out or in leetspeak
    ("i g n o r e", "1gn0re"), paraphrases, other languages.
    """
    if not text.isascii():
        if _HIDDEN_CHARS.search(text.removeprefix("\ufeff")):  # a leading BOM is harmless
            return True
        text = unicodedata.normalize("NFKC", text)
    lower = text.lower()
    for triggers, pattern in _PHRASES:
        for trigger in triggers:
            if trigger in lower:
                if pattern.search(lower):
                    return True
                break
    return any(
        blob != blob.lower() and blob != blob.upper() and _FIRST_ASCII_DIGIT.search(blob)
        for blob in _BLOB.findall(text)
    )
