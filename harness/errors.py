"""The exceptions a user can cause, under one root.

    EvalxError                 anything the user can fix; printed as one line, exit 2
    ├── SpecError              a suite file or override is invalid (file:line: key: problem; hint)
    │   └── InputError         an input file cannot be read as given (not a regular file,
    │                          larger than a named limit, nested too deep; see harness.limits)
    └── OutputError            the output location cannot be used (exists, not writable)

Anything else that escapes is a harness bug: the CLI prints a traceback and exits 3.
Injected faults are never exceptions; they are outcomes and records.
"""

from __future__ import annotations

from dataclasses import dataclass


class EvalxError(Exception):
    """Root of every error a user can cause and fix."""

    def one_line(self) -> str:
        """The message the CLI prints: one line, no traceback."""
        return str(self)


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a suite: where, which key, what, and how to fix it."""

    file: str
    line: int | None
    key: str
    message: str
    hint: str | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        text = f"{where}: {self.key}: {self.message}" if self.key else f"{where}: {self.message}"
        return f"{text}; {self.hint}" if self.hint else text


class SpecError(EvalxError):
    """A suite (or a --set override) is invalid. Holds every problem found, not just the first."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))

    def one_line(self) -> str:
        first = str(self.problems[0])
        more = len(self.problems) - 1
        return f"{first} (and {more} more problem{'s' if more > 1 else ''})" if more else first


class InputError(SpecError):
    """An input file cannot be read as given: not a regular file, or over a named limit."""

    def __init__(self, problem: Problem) -> None:
        super().__init__([problem])


class OutputError(EvalxError):
    """The output location cannot be used as asked."""
