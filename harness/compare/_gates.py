"""What a comparison tests and how strictly: tolerances and their grammar, `Gates`, the
defaults, and the gates file (`load_gates`, errors as file:line: key: problem; hint).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import Field

from harness.compare._errors import CompareError
from harness.compare._metrics import _METRICS, METRICS, RATES
from harness.errors import Problem, SpecError
from harness.spec._base import Strict
from harness.spec._load import load_suite_data, locate_key, suggest, validate


@dataclass(frozen=True)
class Tolerance:
    """How much worse a metric may get before a significant change is a regression.

    The sign of `value` says which way is worse: ``+10%`` on p95 latency fails when it
    grows by more than 10%; ``-1pp`` on success_rate fails when it drops by more than one
    percentage point. A zero tolerance (``0``, ``+0%``, ``0pp``) means any significant
    worsening fails, the worse direction being the metric's own (success_rate down,
    every other metric up).
    """

    text: str
    """As written, e.g. ``+10%``, ``-1pp``, ``+0.002``."""
    relative: bool
    """``%``: `value` is a fraction of the baseline value; else in the metric's units."""
    value: float
    """Signed limit: ``+10%`` -> +0.10 (relative), ``-1pp`` -> -0.01, ``+0.002`` -> +0.002."""

    def worse(self, metric: str) -> int:
        """+1 if growth of `metric` is the worse direction, -1 if a drop is."""
        if self.value != 0:
            return 1 if self.value > 0 else -1
        return _METRICS[metric].worse

    def __str__(self) -> str:
        return self.text


_NUMBER = r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"
_TOLERANCE = re.compile(rf"\s*(?P<sign>[+-]?)\s*(?P<number>{_NUMBER})\s*(?P<unit>%|pp)?\s*")
_TOLERANCE_FORM = (
    "write a signed change: +10% (relative to the baseline), -1pp (percentage points, "
    "for rates) or +0.002 (in the metric's units); 0 means any significant worsening"
)


class _BadTolerance(Exception):
    def __init__(self, message: str, hint: str | None) -> None:
        super().__init__(message)
        self.message, self.hint = message, hint


def _metric_hint(name: str) -> str:
    close = suggest(name, METRICS)
    return f"did you mean {close}?" if close else f"metrics: {', '.join(METRICS)}"


def _parse_tolerance(text: object, metric: str) -> Tolerance:
    if isinstance(text, bool) or not isinstance(text, str | int | float):
        raise _BadTolerance(f"expected a tolerance such as '+10%', got {text!r}", _TOLERANCE_FORM)
    written = text.strip() if isinstance(text, str) else str(text)
    match = _TOLERANCE.fullmatch(written)
    if match is None:
        raise _BadTolerance(f"cannot read {written!r} as a tolerance", _TOLERANCE_FORM)
    unit = match["unit"]
    if unit == "pp" and metric not in RATES:
        hint = f"{metric} is not a rate: write a relative change (+10%) or one in its units"
        raise _BadTolerance(f"'pp' (percentage points) in {written!r} applies only to rates", hint)
    magnitude = float(match["number"]) / (100.0 if unit else 1.0)
    if not math.isfinite(magnitude):
        raise _BadTolerance(f"tolerance {written!r} is not a finite number", _TOLERANCE_FORM)
    sign = {"+": 1, "-": -1}.get(match["sign"], _METRICS[metric].worse)
    return Tolerance(text=written, relative=unit == "%", value=sign * magnitude)


def parse_tolerance(text: str | float, metric: str) -> Tolerance:
    """Read a tolerance for `metric`, e.g. ``parse_tolerance("+10%", "p95_latency_ms")``.

    Forms: ``+10%`` (relative to the baseline), ``-1pp`` (percentage points; rates only),
    ``+0.002`` (the metric's units). A tolerance written without a sign (YAML reads
    ``+0.002`` as a plain number) takes the metric's own worse direction. Raises
    `CompareError` naming the expected form.
    """
    if metric not in _METRICS:
        raise CompareError(f"unknown metric {metric!r}; {_metric_hint(metric)}")
    try:
        return _parse_tolerance(text, metric)
    except _BadTolerance as bad:
        raise CompareError(f"{metric}: {bad.message}; {bad.hint}") from None


def parse_tolerances(texts: Mapping[str, str | float]) -> dict[str, Tolerance]:
    """`parse_tolerance` over a mapping of metric -> text."""
    return {metric: parse_tolerance(text, metric) for metric, text in texts.items()}


DEFAULT_TOLERANCES: Mapping[str, Tolerance] = parse_tolerances(
    {
        "success_rate": "-1pp",
        "violation_rate": "+0pp",
        "p95_latency_ms": "+10%",
        "p99_latency_ms": "+20%",
        "cost_per_request_usd": "+5%",
        "tokens_per_request": "+10%",
    }
)
"""What `Gates()` tests when no gates file says otherwise."""


MAX_BOOTSTRAP = 100_000
"""Most bootstrap resamples a comparison may ask for: each test holds one float per
resample and draws resamples x requests indices, so a bound keeps a typo (10**12) from
asking for terabytes; 2,000 (the default) to 10,000 is plenty for p-values near 0.05."""


@dataclass(frozen=True)
class Gates:
    """What a comparison tests and how strictly. Validated on construction."""

    alpha: float = 0.05
    """Significance level of the whole comparison (Holm across all its tests)."""
    min_requests: int = 30
    """Requests a route needs in each run to be tested; fewer -> insufficient data."""
    bootstrap: int = 2000
    """Bootstrap resamples per test."""
    seed: int = 0
    """Seed of the bootstrap generators: equal inputs give equal reports."""
    tolerances: Mapping[str, Tolerance] = field(
        default_factory=lambda: dict(DEFAULT_TOLERANCES), hash=False
    )
    """Metric -> tolerance; only these metrics are tested."""
    max_new_violations: int | None = 0
    """Candidate violations minus baseline violations (all routes) allowed; None: no gate."""
    file: str | None = None
    """The gates file these came from, if any."""

    def __post_init__(self) -> None:
        if not 0 < self.alpha < 1:
            raise CompareError(f"alpha must be between 0 and 1, got {self.alpha}")
        if self.min_requests < 1:
            raise CompareError(f"min_requests must be at least 1, got {self.min_requests}")
        if not 1 <= self.bootstrap <= MAX_BOOTSTRAP:
            raise CompareError(
                f"bootstrap must be between 1 and {MAX_BOOTSTRAP:,} (MAX_BOOTSTRAP), "
                f"got {self.bootstrap:,}"
            )
        if self.seed < 0:
            raise CompareError(f"seed must be a non-negative integer, got {self.seed}")
        if self.max_new_violations is not None and self.max_new_violations < 0:
            raise CompareError(
                f"max_new_violations must be >= 0 or None, got {self.max_new_violations}"
            )
        for name, tol in self.tolerances.items():
            if name not in _METRICS:
                raise CompareError(f"unknown metric {name!r} in tolerances; {_metric_hint(name)}")
            if not isinstance(tol, Tolerance):
                raise CompareError(
                    f"tolerance of {name} must be a Tolerance (see parse_tolerance), got {tol!r}"
                )
        ordered = {m: self.tolerances[m] for m in METRICS if m in self.tolerances}
        object.__setattr__(self, "tolerances", ordered)


class _GatesFile(Strict):
    """A gates file: every key optional; tolerances merge onto the defaults."""

    alpha: float = Field(0.05, gt=0, lt=1)
    """Significance level of the whole comparison (Holm across all its tests)."""
    min_requests: int = Field(30, ge=1)
    """Requests a route needs in each run to be tested."""
    bootstrap: int = Field(2000, ge=1, le=MAX_BOOTSTRAP)
    """Bootstrap resamples per test (at most 100,000)."""
    seed: int = Field(0, ge=0)
    """Seed of the bootstrap generators."""
    max_new_violations: int | None = Field(0, ge=0)
    """New violations allowed in the candidate (null: no gate)."""
    tolerances: dict[str, Any] = Field(default_factory=dict)
    """Metric -> tolerance text (``+10%``, ``-1pp``, ``+0.002``), or null/off to not test it."""


def load_gates(path: str | Path) -> Gates:
    """Read a gates file; raise `SpecError` naming file:line:key for every mistake.

    The file's `tolerances` are merged onto `DEFAULT_TOLERANCES`; a metric set to
    ``null`` or ``off`` is not tested. Example::

        alpha: 0.01
        max_new_violations: 0
        tolerances:
          success_rate: -0.5pp
          p95_latency_ms: +15%
          escalation_rate: +2pp
          cost_per_request_usd: off
    """
    file = str(path)
    data, lines = load_suite_data(path, "gates file")
    spec = validate(data, _GatesFile, file=file, lines=lines)
    tolerances = dict(DEFAULT_TOLERANCES)
    problems: list[Problem] = []
    for name, raw in spec.tolerances.items():
        where, line = locate_key(("tolerances", name), file=file, lines=lines)
        key = f"tolerances.{name}"
        if name not in _METRICS:
            problems.append(Problem(where, line, key, "unknown metric", _metric_hint(name)))
        elif raw is None or (isinstance(raw, str) and raw.strip().lower() == "off"):
            tolerances.pop(name, None)
        else:
            try:
                tolerances[name] = _parse_tolerance(raw, name)
            except _BadTolerance as bad:
                problems.append(Problem(where, line, key, bad.message, bad.hint))
    if problems:
        raise SpecError(problems)
    return Gates(
        alpha=spec.alpha,
        min_requests=spec.min_requests,
        bootstrap=spec.bootstrap,
        seed=spec.seed,
        tolerances=tolerances,
        max_new_violations=spec.max_new_violations,
        file=file,
    )
