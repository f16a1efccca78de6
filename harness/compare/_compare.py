"""The comparison itself: per-route tests of each gated metric, the Holm correction, the
verdicts and absolute gates (`compare_tables`), and `compare_runs` over two run
directories.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from harness.compare._errors import CompareError
from harness.compare._gates import Gates, Tolerance
from harness.compare._loading import (
    _manifest_warnings,
    _read_manifest,
    _read_requests,
    _version_key,
    pairing_problem,
)
from harness.compare._metrics import _METRICS, RATES, REQUIRED_COLUMNS, _Metric
from harness.compare._stats import _bootstrap_p, block_bootstrap, holm, mcnemar_exact, welch
from harness.intervals import MIN_BLOCKS, block_length, design_effect
from harness.metrics import ALL
from harness.util import generator, stable_id

if TYPE_CHECKING:
    import pandas as pd

Verdict = Literal["regression", "improvement", "no change", "insufficient data"]
VERDICTS: tuple[Verdict, ...] = ("regression", "improvement", "no change", "insufficient data")


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
    """How the p-value and interval were made (`TESTS`)."""
    n_baseline: int
    n_candidate: int
    relative_delta: float = math.nan
    """delta / |baseline| (NaN when the baseline is 0 or undefined)."""
    worse: int = 1
    """+1 if growth of the metric is the worse direction, -1 if a drop is."""
    block: int = 1
    """Requests per block of a block bootstrap (the longer side's); replications per side
    of a Welch test; 1 otherwise."""
    design_effect: float = 1.0
    """What the discordant counts of a Rao-Scott McNemar test were divided by; 1 otherwise."""


PAIRED_BLOCK = "paired-block-bootstrap"
BLOCK = "block-bootstrap"
MCNEMAR_RS = "mcnemar-rao-scott"
WELCH = "welch-replications"
TESTS: dict[str, str] = {
    PAIRED_BLOCK: "paired circular block bootstrap of per-request differences, blocks of "
    "consecutive arrivals (length from the data, harness.intervals.block_length); p-value "
    "from the bootstrap standard error",
    BLOCK: "circular block bootstrap of each run on its own (unpaired); p-value from the "
    "bootstrap standard error",
    MCNEMAR_RS: "McNemar exact test on discordant counts divided by their design effect "
    "(Rao-Scott; paired rates)",
    WELCH: "Welch t-test on one value per replication (unpaired, replications on both sides)",
    "mcnemar-exact": "McNemar exact test (paired, under 100 requests: independent requests)",
    "paired-bootstrap": "paired bootstrap (under 100 requests: independent requests)",
    "fisher-exact": "Fisher exact test (unpaired, under 100 requests)",
    "bootstrap": "bootstrap (unpaired, under 100 requests)",
}
"""Every test a comparison uses, and what it is."""

SMALL = MIN_BLOCKS * MIN_BLOCKS
"""Under this many requests a side is treated as independent requests (no blocks)."""

TAIL = 90.0
"""Percentiles from here up are not tested between single unpaired runs (`_untestable`)."""


def _untestable(metric: _Metric, paired: bool, replicated: bool) -> bool:
    """A tail percentile of one run per side, unpaired: its spread across seeds comes from
    episodes (an outage tipping a queue) that one run cannot see vary, and no within-run
    resampling measures it (bench/compare.py: A/A pairs flagged p99 44% and p95 12% of the
    time at alpha 5%). Such a test is reported as insufficient data."""
    q = metric.percentile
    return not paired and not replicated and q is not None and q >= TAIL


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


class _Side:
    """One run's requests as numpy arrays, with per-request metric values cached."""

    def __init__(self, requests: pd.DataFrame, name: str) -> None:
        missing = [c for c in REQUIRED_COLUMNS if c not in requests.columns]
        if missing:
            raise CompareError(
                f"{name}: the requests table lacks column{'s' if len(missing) > 1 else ''} "
                f"{', '.join(missing)}; re-run it with this evalx"
            )
        keys = [k for k in ("replication", "arrival_s", "request_id") if k in requests.columns]
        requests = requests.sort_values(keys, kind="stable", ignore_index=True)
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

    def replications(self) -> np.ndarray | None:
        """Replication number per row, when the run holds two or more replications."""
        if "replication" not in self.frame.columns:
            return None
        r = self.frame["replication"].to_numpy()
        return r if len(np.unique(r)) >= 2 else None

    def groups(self) -> dict[str, np.ndarray]:
        """Row positions per route, plus `all`."""
        by_route = self.frame.groupby("route", sort=True).indices
        out = {str(route): np.asarray(rows) for route, rows in by_route.items()}
        out[ALL] = np.arange(self.n)
        return out


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
    block: int = 1
    design_effect: float = 1.0

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
    """Fill in the p-value and interval of `t` (its values are set; nothing if data is short).

    `b` and `c` are in arrival order. From `SMALL` requests on, the bootstrap resamples
    blocks of consecutive arrivals (`block_bootstrap`), so requests that share a queue,
    a breaker or an outage are not counted as independent evidence.
    """
    q = metric.percentile
    enough = min(len(b), len(c)) >= gates.min_requests
    if not (enough and math.isfinite(t.baseline) and math.isfinite(t.candidate)):
        return
    rng = generator(gates.seed, stable_id("compare"), stable_id(t.route), stable_id(t.metric))
    blocks = (_block(b), _block(c))
    if paired:  # means: blocks of the differences; percentiles: of the longer side
        blocks = (_block(c - b),) * 2 if q is None else (max(blocks),) * 2
    deltas = block_bootstrap(b, c, q, paired, gates.bootstrap, rng, blocks)
    lo, hi = np.percentile(deltas, [50 * gates.alpha, 100 - 50 * gates.alpha])
    t.ci_low, t.ci_high = float(lo), float(hi)
    t.block = max(blocks)
    if t.test in ("mcnemar-exact", MCNEMAR_RS):
        deff = design_effect(c - b) if t.test == MCNEMAR_RS else 1.0
        lost = np.count_nonzero((b > 0) & (c <= 0))  # discordant pairs, both ways
        gained = np.count_nonzero((b <= 0) & (c > 0))
        t.p_value = mcnemar_exact(round(lost / deff), round(gained / deff))
        t.design_effect = deff
    elif t.test == "fisher-exact":
        from scipy.stats import fisher_exact

        sb, sc = int(np.count_nonzero(b)), int(np.count_nonzero(c))
        _, p = fisher_exact([[sb, len(b) - sb], [sc, len(c) - sc]])
        t.p_value = float(p)
    elif t.test in (PAIRED_BLOCK, BLOCK):
        blocks_in = min(len(b) // blocks[0], len(c) // blocks[1])
        t.p_value = _t_p(t.delta, float(deltas.std(ddof=1)), max(1, blocks_in - 1))
    else:
        t.p_value = _bootstrap_p(deltas)
    t.sufficient = True


def _t_p(delta: float, se: float, df: int) -> float:
    """Two-sided p-value of 'no difference' for an estimate with standard error `se`, on a
    t distribution with `df` degrees of freedom (blocks - 1 of the side with fewer blocks:
    the standard error is estimated from that many independent pieces)."""
    from scipy.stats import t

    if not se > 0:
        return 1.0 if delta == 0 else 0.0
    return float(2 * t.sf(abs(delta) / se, df))


def _block(x: np.ndarray) -> int:
    """Block length for a series in arrival order: 1 under `SMALL` values."""
    return block_length(x) if len(x) >= SMALL else 1


def _run_welch(
    t: _Test,
    b: tuple[np.ndarray, np.ndarray],
    c: tuple[np.ndarray, np.ndarray],
    metric: _Metric,
    gates: Gates,
) -> None:
    """Fill in `t` from replications on both sides: (values, replication) per side.

    The values are the pooled statistic of each side; the test compares the per-replication
    statistics (a mean or a percentile per replication) with Welch's t-test.
    """
    q = metric.percentile
    per = [_per_replication(*side, q) for side in (b, c)]
    enough = min(len(b[0]), len(c[0])) >= gates.min_requests and min(map(len, per)) >= 2
    if not (enough and math.isfinite(t.baseline) and math.isfinite(t.candidate)):
        return
    t.p_value, low, high = welch(per[0], per[1], gates.alpha)
    shift = t.delta - float(per[1].mean() - per[0].mean())  # centre on the pooled delta
    t.ci_low, t.ci_high = low + shift, high + shift
    t.block = min(map(len, per))
    t.sufficient = True


def _per_replication(values: np.ndarray, replication: np.ndarray, q: float | None) -> np.ndarray:
    """The statistic of each replication with values (mean, or the q-th percentile)."""
    return np.array([_value(values[replication == r], q) for r in np.unique(replication)])


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


def _test_name(metric: str, paired: bool, n: int, replicated: bool) -> str:
    """The test for `metric` on a route with `n` requests on its smaller side."""
    if replicated and not paired:
        return WELCH
    if metric in RATES and n >= SMALL and paired:
        return MCNEMAR_RS
    if n >= SMALL:
        return PAIRED_BLOCK if paired else BLOCK
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
    reps = (base.replications(), cand.replications())
    replicated = reps[0] is not None and reps[1] is not None
    tests: list[_Test] = []
    for route in routes:
        bi, ci = base_groups.get(route, empty), cand_groups.get(route, empty)
        for name, tolerance in gates.tolerances.items():
            metric = _METRICS[name]
            kind = _test_name(name, paired, min(len(bi), len(ci)), replicated)
            t = _Test(route, name, tolerance, kind, len(bi), len(ci))
            b, c = base.values(metric.source)[bi], cand.values(metric.source)[ci]
            t.baseline, t.candidate = _value(b, metric.percentile), _value(c, metric.percentile)
            if kind == WELCH and reps[0] is not None and reps[1] is not None:
                _run_welch(t, (b, reps[0][bi]), (c, reps[1][ci]), metric, gates)
            elif not _untestable(metric, paired, replicated):
                _run_test(t, b, c, metric, paired, gates)
            tests.append(t)
    tested = [i for i, t in enumerate(tests) if t.sufficient]
    adjusted = [math.nan] * len(tests)
    for i, p in zip(tested, holm([tests[i].p_value for i in tested]), strict=True):
        adjusted[i] = p
    results = tuple(_result(t, p, gates.alpha) for t, p in zip(tests, adjusted, strict=True))
    with_data = [tests[i] for i in tested]
    notes = [*warnings, *_resolution_warning(with_data, gates)]
    if not paired and not replicated:
        tails = [n for n in gates.tolerances if _untestable(_METRICS[n], paired, replicated)]
        untested = f"; {' and '.join(tails)} not tested (insufficient data)" if tails else ""
        notes.append(
            "one run per side: the block bootstrap sees the variation within each run, not how "
            "an episode (a spike, an outage tipping a queue) plays out at another seed"
            f"{untested}; run both sides with --replications 5 for tests whose false-alarm "
            "rate holds (bench/compare.py)"
        )
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
        block=t.block,
        design_effect=t.design_effect,
    )


def _resolution_warning(tests: Sequence[_Test], gates: Gates) -> list[str]:
    """Warn when the bootstrap is too coarse to ever pass Holm's first threshold (only the
    percentile p-values of small groups have a floor; block bootstraps use the standard
    error)."""
    m = len(tests)
    if not any(t.test in ("bootstrap", "paired-bootstrap") for t in tests):
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
