"""Loading a suite end to end: file -> overrides -> validation -> cross references.

`load_suite` is the one entry point the CLI and tests use. It returns the frozen
`Suite` together with where every parameter came from (default, suite file or --set),
which the manifest records.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import Problem, SpecError
from harness.spec._load import (
    LineMap,
    apply_overrides,
    load_suite_data,
    locate_key,
    suggest,
    validate,
)
from harness.spec._models import Suite, reference_problems


@dataclass(frozen=True)
class LoadedSuite:
    """A validated suite and the provenance of its values."""

    suite: Suite
    path: Path
    data: dict[str, Any]
    """The raw mapping after overrides (what the user wrote)."""
    overrides: dict[tuple[str | int, ...], str]
    """Overridden paths and the override text."""

    @property
    def suite_hash(self) -> str:
        """sha256 of the resolved suite (defaults filled in), stable across key order."""
        canon = json.dumps(self.suite.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(canon.encode()).hexdigest()

    def parameters(self) -> dict[str, dict[str, Any]]:
        """Every leaf parameter, dotted, with its value and source (default, suite or --set)."""
        out: dict[str, dict[str, Any]] = {}
        _flatten(self.suite.model_dump(mode="json"), (), self.data, self.overrides, out)
        return out


def _flatten(
    value: Any,
    path: tuple[str | int, ...],
    raw: Any,
    overrides: dict[tuple[str | int, ...], str],
    out: dict[str, dict[str, Any]],
) -> None:
    if isinstance(value, dict) and value:
        for k, v in value.items():
            sub = raw.get(k) if isinstance(raw, dict) else None
            _flatten(v, (*path, k), sub, overrides, out)
        return
    if isinstance(value, list) and value and isinstance(value[0], dict):
        for i, v in enumerate(value):
            sub = raw[i] if isinstance(raw, list) and i < len(raw) else None
            _flatten(v, (*path, i), sub, overrides, out)
        return
    if any(path[:j] in overrides for j in range(1, len(path) + 1)):
        source = "--set"
    elif raw is not None:
        source = "suite"
    else:
        source = "default"
    out[".".join(str(p) for p in path)] = {"value": value, "source": source}


def load_suite(path: str | Path, overrides: Sequence[str] = ()) -> LoadedSuite:
    """Load, override, validate and cross-check a suite; raise SpecError listing every problem."""
    p = Path(path)
    data, lines = load_suite_data(p)
    data, overridden = apply_overrides(data, overrides, Suite)
    suite = validate(data, Suite, file=str(p), lines=lines, overridden=overridden)
    problems = [
        _problem(str(p), lines, overridden, key, message, options)
        for key, message, options in reference_problems(suite)
    ]
    if problems:
        raise SpecError(sorted(problems, key=lambda q: (q.line or 0, q.key)))
    return LoadedSuite(suite=suite, path=p, data=data, overrides=overridden)


def _problem(
    file: str,
    lines: LineMap,
    overridden: dict[tuple[str | int, ...], str],
    key: tuple[str | int, ...],
    message: str,
    options: list[str],
) -> Problem:
    """A cross-reference problem located like a validation problem, with a did-you-mean."""
    where, line = locate_key(key, file=file, lines=lines, overridden=overridden)
    bad = message.split("'")[1] if message.count("'") >= 2 else str(key[-1])
    close = suggest(bad, options) if options else None
    if close:
        hint: str | None = f"did you mean {close}?"
    elif options:
        hint = "valid: " + ", ".join(options)
    else:
        hint = None
    return Problem(
        file=where,
        line=line,
        key=".".join(str(k) for k in key),
        message=message,
        hint=hint,
    )
