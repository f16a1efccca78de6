"""Compare two runs and gate a change: per-route tests of each metric, Holm-corrected.

`compare_runs` reads two run directories, checks that they can be compared (same
schema version; the same requests, when paired) and hands the requests tables to
`compare_tables`, which does the statistics and never touches the disk (benchmarks and
tests call it with tables simulated in memory).

Pairing. Two runs of one suite name and seed see the same requests and the same world
(common random numbers, DESIGN.md §1), so request i of the baseline and request i of the
candidate differ only by the change under test. Paired tests then detect far smaller
regressions than independent samples would: McNemar's exact test for rates, a paired
bootstrap (one resample of request indices serves both runs) for means and percentiles.
Paired groups follow the *baseline's* route, so both sides of a group are the same
requests. Runs that cannot be paired are compared only when asked (`unpaired=True`):
Fisher's exact test for rates, independent bootstraps otherwise, each run grouped by its
own route.

Verdicts. Each (route, metric) named in `Gates.tolerances` is one test; the p-values of
all tests with enough data are adjusted together (Holm), so the chance of any false
alarm in a comparison stays at or below `alpha`. A test is a *regression* only when the
change is significant and larger than its tolerance in the tolerance's worse direction,
an *improvement* when it is significant and in the better direction, else *no change*.
Absolute gates (any new violation) do not depend on statistics and always apply.

Results are deterministic: every bootstrap draws from its own generator, seeded by
`Gates.seed` and the (route, metric) it serves, so a report never depends on the order
or number of the other tests.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import Field

from harness.errors import EvalxError, Problem, SpecError
from harness.metrics import ALL
from harness.spec._base import Strict
from harness.spec._load import load_suite_data, locate_key, suggest, validate
from harness.storage import MANIFEST, REQUESTS
from harness.util import generator, stable_id

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "DEFAULT_TOLERANCES",
    "METRICS",
    "PAIR_KEYS",
    "RATES",
    "REQUIRED_COLUMNS",
    "VERDICTS",
    "AbsoluteGate",
    "CompareError",
    "Comparison",
    "Gates",
    "Result",
    "Tolerance",
    "compare_runs",
    "compare_tables",
    "holm",
    "load_gates",
    "mcnemar_exact",
    "pairing_problem",
    "parse_tolerance",
    "parse_tolerances",
]


class CompareError(EvalxError):
    """Two runs cannot be compared as asked, or a gate setting is invalid."""


# ---------------------------------------------------------------------------- metrics

Verdict = Literal["regression", "improvement", "no change", "insufficient data"]
VERDICTS: tuple[Verdict, ...] = ("regression", "improvement", "no change", "insufficient data")


@dataclass(frozen=True)
class _Metric:
    """How one metric is computed from per-request values, and which way is worse."""

    source: str  # per-request value, see `_Side.values`
    percentile: float | None  # None: the mean
    worse: int  # +1: worse when it grows; -1: worse when it drops


_METRICS: dict[str, _Metric] = {
    "success_rate": _Metric("success", None, -1),
    "violation_rate": _Metric("violated", None, +1),
    "p50_latency_ms": _Metric("latency_ms", 50.0, +1),
    "p95_latency_ms": _Metric("latency_ms", 95.0, +1),
    "p99_latency_ms": _Metric("latency_ms", 99.0, +1),
    "mean_latency_ms": _Metric("latency_ms", None, +1),
    "cost_per_request_usd": _Metric("cost_usd", None, +1),
    "tokens_per_request": _Metric("tokens", None, +1),
    "escalation_rate": _Metric("escalated", None, +1),
    "handoff_rate": _Metric("handoff", None, +1),
}

METRICS: tuple[str, ...] = tuple(_METRICS)
"""The metrics a gates file may name, in report order."""

RATES: frozenset[str] = frozenset(
    {"success_rate", "violation_rate", "escalation_rate", "handoff_rate"}
)
"""Metrics that are shares of requests: tested with McNemar (paired) or Fisher (unpaired)."""

PAIR_KEYS: tuple[str, ...] = ("request_id", "arrival_s", "task_class")
"""Columns that must be identical for two runs to be paired request by request."""

REQUIRED_COLUMNS: tuple[str, ...] = (
    *PAIR_KEYS,
    "route",
    "success",
    "violations",
    "latency_ms",
    "cost_usd",
    "input_tokens",
    "output_tokens",
    "escalated",
    "handoff",
)
"""The requests.parquet columns a comparison reads."""


# -------------------------------------------------------------------------- tolerances


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


# ------------------------------------------------------------------------------- gates


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
        if self.bootstrap < 1:
            raise CompareError(f"bootstrap must be at least 1, got {self.bootstrap}")
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
    bootstrap: int = Field(2000, ge=1)
    """Bootstrap resamples per test."""
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
    data, lines = load_suite_data(path)
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


# ----------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Result:
    """One test: a metric on a route, baseline vs candidate, and its verdict."""

    route: str
    metric: str
    baseline: float
    candidate: float
    delta: float
    """candidate - baseline."""
    ci_low: float
    """(1 - alpha) bootstrap interval of `delta` (NaN with insufficient data)."""
    ci_high: float
    p_value: float
    """Two-sided p-value of the test (NaN with insufficient data)."""
    p_adjusted: float
    """Holm-adjusted across all tests of the comparison (NaN with insufficient data)."""
    tolerance: str
    verdict: Verdict
    test: str
    """mcnemar-exact, paired-bootstrap, fisher-exact or bootstrap."""
    n_baseline: int
    n_candidate: int
    relative_delta: float = math.nan
    """delta / |baseline| (NaN when the baseline is 0 or undefined)."""
    worse: int = 1
    """+1 if growth of the metric is the worse direction, -1 if a drop is."""


@dataclass(frozen=True)
class AbsoluteGate:
    """A gate that holds or not regardless of statistics (e.g. no new violations)."""

    name: str
    baseline: float
    candidate: float
    limit: float
    passed: bool
    message: str


@dataclass(frozen=True)
class Comparison:
    """Everything a report needs: the tests, the absolute gates and what to warn about."""

    baseline: str
    candidate: str
    paired: bool
    results: tuple[Result, ...]
    absolute: tuple[AbsoluteGate, ...]
    warnings: tuple[str, ...]
    gates: Gates

    @property
    def regressions(self) -> tuple[Result, ...]:
        """The results whose verdict is a regression."""
        return tuple(r for r in self.results if r.verdict == "regression")

    @property
    def failed(self) -> bool:
        """Any regression, or any absolute gate that did not pass."""
        return bool(self.regressions) or any(not g.passed for g in self.absolute)


# -------------------------------------------------------------------------- statistics


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value from the discordant pair counts `b` and `c`.

    The binomial test of min(b, c) successes in b + c trials with p = 1/2, doubled (the
    null distribution is symmetric); 1 when there are no discordant pairs.
    """
    n = b + c
    if n == 0:
        return 1.0
    from scipy.stats import binom

    return float(min(1.0, 2.0 * binom.cdf(min(b, c), n, 0.5)))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the order given.

    Reject test i at level alpha iff its adjusted p-value is below alpha; this controls
    the family-wise error rate under any dependence between the tests.
    """
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


_CELLS = 4_000_000
"""Resampled indices held at once per bootstrap chunk (bounds memory at ~100 MB)."""


def _indices(rng: np.random.Generator, n: int, rows: int) -> np.ndarray:
    """A rows x n matrix of indices drawn with replacement from range(n)."""
    return rng.integers(0, n, size=(rows, n), dtype=_index_type(n))


def _index_type(n: int) -> type[np.signedinteger[Any]]:
    return np.int32 if n < 2**31 else np.int64


def _chunks(total: int, n: int) -> Iterable[tuple[int, int]]:
    """(start, rows) pieces of `total` resamples of size n, within the `_CELLS` budget."""
    rows = max(1, _CELLS // max(n, 1))
    for start in range(0, total, rows):
        yield start, min(rows, total - start)


def _ranks(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`x` sorted, and the rank of each element of `x` in that order (ties by position)."""
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x), dtype=_index_type(len(x)))
    ranks[order] = np.arange(len(x))
    return x[order], ranks


def _percentile_of_ranks(ordered: np.ndarray, ranks: np.ndarray, q: float) -> np.ndarray:
    """The q-th percentile (numpy's linear method) of each row of ranks into `ordered`.

    A resample's order statistics are those of its ranks, so only two values per row are
    looked up: the rows are partitioned in place (integers, no gathered copy of values).
    """
    n = ranks.shape[1]
    position = (n - 1) * (q / 100.0)
    lo = int(position)
    hi = min(lo + 1, n - 1)
    ranks.partition(sorted({lo, hi}), axis=1)
    below, above = ordered[ranks[:, lo]], ordered[ranks[:, hi]]
    return np.asarray(below + (position - lo) * (above - below), dtype=np.float64)


_FEW_VALUES = 64
"""Means of vectors with at most this many distinct values are resampled by counts."""


def _resampled_means(x: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Means of `resamples` bootstrap resamples of `x`.

    With few distinct values (rates are 0/1; paired differences of rates -1/0/+1) the
    counts of each value are drawn from their multinomial: exactly the distribution of
    the mean of n indices drawn with replacement, at O(distinct values) per resample.
    """
    values, counts = np.unique(x, return_counts=True)
    if len(values) <= _FEW_VALUES:
        draws = rng.multinomial(len(x), counts / len(x), size=resamples)
        return np.asarray(draws @ values / len(x), dtype=np.float64)
    out = np.empty(resamples)
    for start, rows in _chunks(resamples, len(x)):
        out[start : start + rows] = x[_indices(rng, len(x), rows)].mean(axis=1)
    return out


def _resampled_percentiles(
    x: np.ndarray, q: float, resamples: int, rng: np.random.Generator
) -> np.ndarray:
    """q-th percentiles of `resamples` bootstrap resamples of `x`."""
    ordered = np.sort(x)
    out = np.empty(resamples)
    for start, rows in _chunks(resamples, len(x)):
        out[start : start + rows] = _percentile_of_ranks(ordered, _indices(rng, len(x), rows), q)
    return out


def _bootstrap(
    b: np.ndarray,
    c: np.ndarray,
    q: float | None,
    paired: bool,
    resamples: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """`resamples` bootstrap replicates of statistic(c) - statistic(b).

    Paired: one resample of request indices serves both runs (for means, the mean of the
    per-request differences: exactly 0 when the runs agree). Unpaired: each run is
    resampled on its own, the baseline first.
    """
    if not paired:
        if q is None:
            base = _resampled_means(b, resamples, rng)
            deltas = _resampled_means(c, resamples, rng)
        else:
            base = _resampled_percentiles(b, q, resamples, rng)
            deltas = _resampled_percentiles(c, q, resamples, rng)
        deltas -= base
        return deltas
    if q is None:
        return _resampled_means(c - b, resamples, rng)
    (b_ordered, b_ranks), (c_ordered, c_ranks) = _ranks(b), _ranks(c)
    out = np.empty(resamples)
    for start, rows in _chunks(resamples, len(b)):
        idx = _indices(rng, len(b), rows)
        out[start : start + rows] = _percentile_of_ranks(
            c_ordered, c_ranks[idx], q
        ) - _percentile_of_ranks(b_ordered, b_ranks[idx], q)
    return out


def _bootstrap_p(deltas: np.ndarray) -> float:
    """Two-sided percentile p-value of 'no difference', with the +1 correction."""
    k = len(deltas) + 1
    below = (1 + np.count_nonzero(deltas <= 0)) / k
    above = (1 + np.count_nonzero(deltas >= 0)) / k
    return float(min(1.0, 2.0 * min(below, above)))


# ------------------------------------------------------------------------- comparison


class _Side:
    """One run's requests as numpy arrays, with per-request metric values cached."""

    def __init__(self, requests: pd.DataFrame, name: str) -> None:
        missing = [c for c in REQUIRED_COLUMNS if c not in requests.columns]
        if missing:
            raise CompareError(
                f"{name}: the requests table lacks column{'s' if len(missing) > 1 else ''} "
                f"{', '.join(missing)}; re-run it with this evalx"
            )
        if not requests["request_id"].is_monotonic_increasing:
            requests = requests.sort_values("request_id", kind="stable")
        self.frame = requests
        self.n = len(requests)
        self._values: dict[str, np.ndarray] = {}

    def values(self, source: str) -> np.ndarray:
        """Per-request values of a metric source, float64."""
        if source not in self._values:
            df = self.frame
            if source == "violated":
                x = df["violations"].to_numpy() > 0
            elif source == "tokens":
                x = df["input_tokens"].to_numpy() + df["output_tokens"].to_numpy()
            else:
                x = df[source].to_numpy()
            self._values[source] = np.asarray(x, dtype=np.float64)
        return self._values[source]

    def groups(self) -> dict[str, np.ndarray]:
        """Row positions per route, plus `all`."""
        by_route = self.frame.groupby("route", sort=True).indices
        out = {str(route): np.asarray(rows) for route, rows in by_route.items()}
        out[ALL] = np.arange(self.n)
        return out


def pairing_problem(baseline: pd.DataFrame, candidate: pd.DataFrame) -> str | None:
    """Why two requests tables are not the same requests, or None if they are.

    Pairs need identical `PAIR_KEYS` columns: the same ids, arrival times and classes.
    """
    if len(baseline) != len(candidate):
        return f"request counts differ ({len(baseline):,} vs {len(candidate):,})"
    for column in PAIR_KEYS:
        if column not in baseline.columns or column not in candidate.columns:
            return f"a requests table lacks the {column} column"
        x, y = baseline[column].to_numpy(), candidate[column].to_numpy()
        differ = np.asarray(x != y)
        if differ.any():
            first = int(np.argmax(differ))
            rid = baseline["request_id"].to_numpy()[first] if column != "request_id" else first
            where = f"request_id {rid}" if column != "request_id" else f"row {first}"
            return f"{column} differs (first at {where})"
    return None


@dataclass
class _Test:
    """A (route, metric) test before the Holm correction."""

    route: str
    metric: str
    tolerance: Tolerance
    test: str
    n_baseline: int
    n_candidate: int
    baseline: float = math.nan
    candidate: float = math.nan
    ci_low: float = math.nan
    ci_high: float = math.nan
    p_value: float = math.nan
    sufficient: bool = False

    @property
    def delta(self) -> float:
        return self.candidate - self.baseline


def _value(x: np.ndarray, q: float | None) -> float:
    if len(x) == 0:
        return math.nan
    return float(np.mean(x) if q is None else np.percentile(x, q))


def _run_test(
    t: _Test, b: np.ndarray, c: np.ndarray, metric: _Metric, paired: bool, gates: Gates
) -> None:
    """Fill in the values, p-value and interval of `t` (values only if data is short)."""
    q = metric.percentile
    t.baseline, t.candidate = _value(b, q), _value(c, q)
    enough = min(len(b), len(c)) >= gates.min_requests
    if not (enough and math.isfinite(t.baseline) and math.isfinite(t.candidate)):
        return
    rng = generator(gates.seed, stable_id("compare"), stable_id(t.route), stable_id(t.metric))
    deltas = _bootstrap(b, c, q, paired, gates.bootstrap, rng)
    lo, hi = np.percentile(deltas, [50 * gates.alpha, 100 - 50 * gates.alpha])
    t.ci_low, t.ci_high = float(lo), float(hi)
    if t.test == "mcnemar-exact":
        lost = int(np.count_nonzero((b > 0) & (c <= 0)))  # discordant pairs, both ways
        gained = int(np.count_nonzero((b <= 0) & (c > 0)))
        t.p_value = mcnemar_exact(lost, gained)
    elif t.test == "fisher-exact":
        from scipy.stats import fisher_exact

        sb, sc = int(np.count_nonzero(b)), int(np.count_nonzero(c))
        _, p = fisher_exact([[sb, len(b) - sb], [sc, len(c) - sc]])
        t.p_value = float(p)
    else:
        t.p_value = _bootstrap_p(deltas)
    t.sufficient = True


def _verdict(t: _Test, p_adjusted: float, alpha: float) -> Verdict:
    if not t.sufficient:
        return "insufficient data"
    if not p_adjusted < alpha or t.delta == 0:
        return "no change"
    worse = t.tolerance.worse(t.metric)
    change = t.delta / abs(t.baseline) if t.tolerance.relative and t.baseline != 0 else t.delta
    if worse * change > abs(t.tolerance.value):
        return "regression"
    return "improvement" if worse * t.delta < 0 else "no change"


def _test_name(metric: str, paired: bool) -> str:
    if metric in RATES:
        return "mcnemar-exact" if paired else "fisher-exact"
    return "paired-bootstrap" if paired else "bootstrap"


def compare_tables(
    baseline_requests: pd.DataFrame,
    candidate_requests: pd.DataFrame,
    gates: Gates | None = None,
    paired: bool = True,
    *,
    baseline_name: str = "baseline",
    candidate_name: str = "candidate",
    warnings: Sequence[str] = (),
) -> Comparison:
    """Compare two requests tables (columns as in requests.parquet).

    `paired` requires the same requests on both sides (`pairing_problem` is None) and
    raises `CompareError` otherwise. The names label the sides in the `Comparison`;
    `warnings` are passed through ahead of the ones raised here.
    """
    gates = gates if gates is not None else Gates()
    base = _Side(baseline_requests, baseline_name)
    cand = _Side(candidate_requests, candidate_name)
    if paired:
        problem = pairing_problem(base.frame, cand.frame)
        if problem is not None:
            raise CompareError(
                f"cannot pair {baseline_name} and {candidate_name}: {problem}; "
                "pass --unpaired to compare them as independent samples"
            )
    base_groups = base.groups()
    cand_groups = base_groups if paired else cand.groups()
    routes = [*sorted((base_groups.keys() | cand_groups.keys()) - {ALL}), ALL]
    empty = np.arange(0)
    tests: list[_Test] = []
    for route in routes:
        bi, ci = base_groups.get(route, empty), cand_groups.get(route, empty)
        for name, tolerance in gates.tolerances.items():
            metric = _METRICS[name]
            t = _Test(route, name, tolerance, _test_name(name, paired), len(bi), len(ci))
            b, c = base.values(metric.source)[bi], cand.values(metric.source)[ci]
            _run_test(t, b, c, metric, paired, gates)
            tests.append(t)
    tested = [i for i, t in enumerate(tests) if t.sufficient]
    adjusted = [math.nan] * len(tests)
    for i, p in zip(tested, holm([tests[i].p_value for i in tested]), strict=True):
        adjusted[i] = p
    results = tuple(_result(t, p, gates.alpha) for t, p in zip(tests, adjusted, strict=True))
    with_data = [tests[i] for i in tested]
    notes = [*warnings, *_resolution_warning(with_data, gates)]
    return Comparison(
        baseline=baseline_name,
        candidate=candidate_name,
        paired=paired,
        results=results,
        absolute=_absolute_gates(base, cand, gates),
        warnings=tuple(notes),
        gates=gates,
    )


def _result(t: _Test, p_adjusted: float, alpha: float) -> Result:
    relative = t.delta / abs(t.baseline) if t.baseline and math.isfinite(t.baseline) else math.nan
    return Result(
        route=t.route,
        metric=t.metric,
        baseline=t.baseline,
        candidate=t.candidate,
        delta=t.delta,
        ci_low=t.ci_low,
        ci_high=t.ci_high,
        p_value=t.p_value,
        p_adjusted=p_adjusted,
        tolerance=t.tolerance.text,
        verdict=_verdict(t, p_adjusted, alpha),
        test=t.test,
        n_baseline=t.n_baseline,
        n_candidate=t.n_candidate,
        relative_delta=relative,
        worse=t.tolerance.worse(t.metric),
    )


def _resolution_warning(tests: Sequence[_Test], gates: Gates) -> list[str]:
    """Warn when the bootstrap is too coarse to ever pass Holm's first threshold."""
    m = len(tests)
    if not any(t.test.endswith("bootstrap") for t in tests):
        return []
    floor, threshold = 2.0 / (gates.bootstrap + 1), gates.alpha / m
    if floor < threshold:
        return []
    need = math.ceil(2.0 / threshold)
    return [
        f"bootstrap={gates.bootstrap} resamples cannot give p-values below {floor:.2g}, the "
        f"Holm threshold for {m} tests is {threshold:.2g}: raise bootstrap to at least {need}"
    ]


def _absolute_gates(base: _Side, cand: _Side, gates: Gates) -> tuple[AbsoluteGate, ...]:
    if gates.max_new_violations is None:
        return ()
    before = int(base.frame["violations"].sum())
    after = int(cand.frame["violations"].sum())
    limit = gates.max_new_violations
    new = after - before
    passed = new <= limit
    message = (
        f"violations let through: {before} -> {after} ({new:+d}); "
        f"{'at most ' + str(limit) + ' new allowed' if limit else 'no new ones allowed'}"
    )
    return (AbsoluteGate("new violations", before, after, limit, passed, message),)


# ------------------------------------------------------------------------------- runs


def _read_manifest(run: Path) -> dict[str, Any]:
    if not run.exists():
        raise CompareError(f"{run}: no such run directory")
    if not run.is_dir():
        raise CompareError(
            f"{run}: not a run directory (a file); pass the directory holding "
            f"{REQUESTS} and {MANIFEST}"
        )
    missing = [name for name in (REQUESTS, MANIFEST) if not (run / name).is_file()]
    if missing:
        raise CompareError(
            f"{run}: not a run directory (no {' and no '.join(missing)}); "
            "pass a directory written by evalx run"
        )
    try:
        manifest = json.loads((run / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CompareError(f"{run / MANIFEST}: cannot read the manifest ({exc})") from None
    if not isinstance(manifest, dict) or "schema_version" not in manifest:
        raise CompareError(f"{run / MANIFEST}: not an evalx run manifest (no schema_version)")
    return manifest


def _read_requests(run: Path) -> pd.DataFrame:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = run / REQUESTS
    try:
        names = set(pq.read_schema(path).names)
        missing = [c for c in REQUIRED_COLUMNS if c not in names]
        if missing:
            raise CompareError(
                f"{path}: lacks column{'s' if len(missing) > 1 else ''} {', '.join(missing)}; "
                "re-run it with this evalx"
            )
        return pq.read_table(path, columns=list(REQUIRED_COLUMNS)).to_pandas()
    except (OSError, pa.ArrowException) as exc:
        raise CompareError(f"{path}: cannot read the requests table ({exc})") from None


def _policy_text(manifest: Mapping[str, Any]) -> str:
    policy = manifest.get("policy") or {}
    digest = str(policy.get("hash", ""))[:8]
    return f"{policy.get('name', '?')} {policy.get('version', '?')} ({digest})"


def _manifest_warnings(base: Mapping[str, Any], cand: Mapping[str, Any]) -> list[str]:
    out = []
    vb = (base.get("versions") or {}).get("evalx")
    vc = (cand.get("versions") or {}).get("evalx")
    if vb != vc:
        out.append(f"harness versions differ: {vb} vs {vc}")
    hb = (base.get("policy") or {}).get("hash")
    hc = (cand.get("policy") or {}).get("hash")
    if hb != hc:
        out.append(f"policies differ: {_policy_text(base)} vs {_policy_text(cand)}")
    return out


def _version_key(version: object) -> tuple[int, str]:
    try:
        return int(str(version)), ""
    except ValueError:
        return -1, str(version)


def compare_runs(
    baseline: str | Path,
    candidate: str | Path,
    gates: Gates | None = None,
    *,
    unpaired: bool = False,
) -> Comparison:
    """Compare two run directories; raise `CompareError` when they cannot be compared.

    Paired iff both manifests name the same suite and seed and the requests tables have
    identical `PAIR_KEYS` columns. Otherwise the comparison is refused unless `unpaired`,
    which also forces independent-sample tests on runs that could be paired.
    """
    gates = gates if gates is not None else Gates()
    base_dir, cand_dir = Path(baseline), Path(candidate)
    mb, mc = _read_manifest(base_dir), _read_manifest(cand_dir)
    vb, vc = mb["schema_version"], mc["schema_version"]
    if vb != vc:
        older = "candidate" if _version_key(vc) < _version_key(vb) else "baseline"
        raise CompareError(f"refusing to compare schema versions {vb} and {vc}; re-run the {older}")
    base_df, cand_df = _read_requests(base_dir), _read_requests(cand_dir)
    reasons = []
    if mb.get("suite") != mc.get("suite"):
        reasons.append(f"suites differ ({mb.get('suite')!r} vs {mc.get('suite')!r})")
    if mb.get("seed") != mc.get("seed"):
        reasons.append(f"seeds differ ({mb.get('seed')} vs {mc.get('seed')})")
    if not reasons:
        problem = pairing_problem(base_df, cand_df)
        if problem is not None:
            reasons.append(problem)
    warnings = _manifest_warnings(mb, mc)
    if reasons and not unpaired:
        raise CompareError(
            f"cannot pair {base_dir} and {cand_dir}: {'; '.join(reasons)}; "
            "pass --unpaired to compare them as independent samples"
        )
    if unpaired:
        why = "; ".join(reasons) if reasons else "pairable, but --unpaired was given"
        warnings.insert(
            0,
            f"unpaired comparison ({why}): runs tested as independent samples, "
            "which detects only larger changes",
        )
    return compare_tables(
        base_df,
        cand_df,
        gates,
        paired=not unpaired,
        baseline_name=str(base_dir),
        candidate_name=str(cand_dir),
        warnings=warnings,
    )
