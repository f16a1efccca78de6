"""Confirmation under uncertainty: full runs over replications, constraints judged at their
confidence bounds, and CI's gates against a baseline.

Replications. A finalist runs R times through the engine with the seeds
`harness.replicate.replication_seed(root, r)`, r = 0..R-1: the worlds `evalx run
--replications R` simulates, so its numbers can be reproduced one for one. It also runs
once at the suite's own seed: the run `evalx run SUITE --set ...` gives, which is what CI
compares and what the screen saw.

Constraints. For each threshold of the suite, the R values give a Student-t interval of
the mean (`harness.replicate.t_interval`, level 95%, clipped to the metric's range: [0, 1]
for rates, [0, inf) otherwise). A `<` or `<=` threshold holds when the interval's upper
bound meets it, a `>` or `>=` one when the lower bound does; `==` and `!=` must hold in
every replication. The margin is limit - mean (or mean - limit), positive when there is
slack, with the interval carried over. With one replication there is no interval: the
point value is judged, and said to be.

P(holds at another seed). The chance that one more replication meets the threshold, from
the t predictive distribution of a new value given R values with mean m and standard
deviation s: (X - m) / (s sqrt(1 + 1/R)) ~ t(R - 1), so for `X < limit`

    P = F_t(R-1)((limit - m) / (s sqrt(1 + 1/R)))

(and 1 - F for `>`). When the values do not vary (s = 0), for one replication, and for
`==` / `!=`, it is Laplace's rule of succession over the replications that met the
threshold: (k + 1) / (R + 2).

Gates. `evalx sweep --gates FILE [--baseline RUN_DIR]` applies what `evalx compare
BASELINE CANDIDATE --gates FILE` would: the finalist's run at the suite's seed is compared
with the baseline by `harness.compare.compare_tables` (paired when both are the same
suite, seed and requests; independent samples otherwise, which is said), and it fails
on a regression, a failed absolute gate, or a threshold failed in that run. Without
`--baseline` the baseline is the suite as it stands, run at its seed.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from harness.errors import EvalxError
from harness.spec import load_suite
from harness.thresholds import OPERATORS, Threshold, as_records, compile_thresholds, evaluate

if TYPE_CHECKING:
    import pandas as pd

    from harness.compare import Gates

LEVEL = 0.95
"""Confidence level of every across-replication interval the sweep reports."""
RATE_BOUNDS = (0.0, 1.0)
AMOUNT_BOUNDS = (0.0, math.inf)


class SweepError(EvalxError):
    """A sweep that cannot run as asked."""


# --------------------------------------------------------------------------- full runs


@dataclass(frozen=True)
class Unit:
    """A full run to do: the suite file, its flags (seed included) and the setting's flags."""

    path: str
    flags: tuple[str, ...]
    policy: str | None
    requests: bool = False
    """Also return the requests table's comparison columns (a baseline)."""
    gate: tuple[Baseline, Gates, str, int] | None = field(default=None, compare=False)
    """Gate the run (`gate`'s baseline, gates, suite name and seed) where it ran."""


def full_run(unit: Unit) -> dict[str, Any]:
    """Simulate one setting through the engine; summary rows and threshold outcomes (and
    the gate's verdict, with `unit.gate`)."""
    from harness.compare import REQUIRED_COLUMNS
    from harness.run import simulate

    loaded = load_suite(unit.path, list(unit.flags), unit.policy)
    result = simulate(loaded.suite)
    outcomes = evaluate(compile_thresholds(loaded), result.requests)
    out: dict[str, Any] = {
        "summary": result.summary.to_pylist(),
        "thresholds": as_records(outcomes),
    }
    if unit.requests:
        out["requests"] = result.requests.select(list(REQUIRED_COLUMNS))
    if unit.gate is not None:
        base, gates, suite, seed = unit.gate
        table = result.requests.select(list(REQUIRED_COLUMNS)).to_pandas()
        out["gate"] = gate(base, table, out["thresholds"], gates, suite, seed)
    return out


# --------------------------------------------------------------------------- statistics


def bounds_of(metric: str) -> tuple[float, float]:
    """The range of a summary metric: [0, 1] for shares, [0, inf) for amounts."""
    return RATE_BOUNDS if metric.endswith("_rate") else AMOUNT_BOUNDS


def interval(values: Sequence[float], bounds: tuple[float, float]) -> tuple[float, float, float]:
    """(mean, low, high) across replications; NaN bounds with fewer than two values."""
    from harness.replicate import t_interval

    mean, _, lo, hi = t_interval(np.asarray(values, dtype=np.float64), LEVEL, bounds=bounds)
    return mean, lo, hi


def p_next(values: Sequence[float], passes: Sequence[bool], op: str, limit: float) -> float:
    """P(one more replication meets `op limit`): t predictive, or the rule of succession."""
    v = np.asarray([x for x in values if not math.isnan(x)], dtype=np.float64)
    k, r = sum(bool(p) for p in passes), len(passes)
    if op in ("<", "<=", ">", ">=") and v.size >= 2:
        std = float(v.std(ddof=1))
        if std > 0:
            from scipy import stats

            z = (limit - float(v.mean())) / (std * math.sqrt(1.0 + 1.0 / v.size))
            z = z if op in ("<", "<=") else -z
            return float(stats.t.cdf(z, v.size - 1))
    return (k + 1) / (r + 2)


def constraint(t: Threshold, runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One threshold judged over the replications' outcomes (`as_records` rows of `t`)."""
    values = [math.nan if o["value"] is None else float(o["value"]) for o in runs]
    passes = [bool(o["passed"]) for o in runs]
    bounds = RATE_BOUNDS if t.aggregation == "rate" else AMOUNT_BOUNDS
    mean, lo, hi = interval(values, bounds)
    out: dict[str, Any] = {
        "key": t.key, "expression": t.expression, "op": t.op, "limit": t.limit,
        "values": values, "value": mean, "ci_low": lo, "ci_high": hi,
        "replications_passed": sum(passes), "replications": len(runs),
    }  # fmt: skip
    judged = not (math.isnan(lo) or math.isnan(hi))
    if t.op in ("<", "<="):
        out.update(bound="upper", margin=t.limit - mean, margin_low=t.limit - hi,
                   margin_high=t.limit - lo)  # fmt: skip
        passed = OPERATORS[t.op](hi, t.limit) if judged else all(passes)
    elif t.op in (">", ">="):
        out.update(bound="lower", margin=mean - t.limit, margin_low=lo - t.limit,
                   margin_high=hi - t.limit)  # fmt: skip
        passed = OPERATORS[t.op](lo, t.limit) if judged else all(passes)
    else:
        out.update(bound="every replication", margin=None, margin_low=None, margin_high=None)
        passed = all(passes)
    if not judged and t.op not in ("==", "!="):
        out["bound"] = "point value (no interval)"
    out["passed"] = bool(passed) and bool(runs)
    out["p_holds"] = p_next(values, passes, t.op, t.limit)
    out["min_replications"] = _needed(t, runs)
    return out


def _needed(t: Threshold, runs: Sequence[Mapping[str, Any]]) -> int:
    """Replications an interval on this threshold needs to cover (`min_replications`)."""
    from harness.replicate import min_replications

    metric = "mean"
    if t.aggregation in ("p", "med"):
        metric = f"p{t.percentile if t.aggregation == 'p' else 50.0:g}_latency_ms"
    matched = [float(o.get("matched", 0)) for o in runs]
    return min_replications(metric, float(np.mean(matched)) if matched else 0.0)


def constraints(
    thresholds: Sequence[Threshold], replications: Sequence[Sequence[Mapping[str, Any]]]
) -> list[dict[str, Any]]:
    """Every threshold over the replications (each a list of `as_records` rows in order)."""
    return [constraint(t, [rep[i] for rep in replications]) for i, t in enumerate(thresholds)]


def across(
    summaries: Sequence[Sequence[Mapping[str, Any]]], metrics: Sequence[str]
) -> dict[str, dict[str, float]]:
    """Per route: each metric's mean over the replications, with `<metric>_ci_low/high`."""
    by_route: dict[str, dict[str, list[float]]] = {}
    for rows in summaries:
        for summary in rows:
            per = by_route.setdefault(str(summary["route"]), {})
            for m in (*metrics, "requests", "violations"):
                per.setdefault(m, []).append(float(summary.get(m, math.nan)))
    out: dict[str, dict[str, float]] = {}
    for route, per in by_route.items():
        row: dict[str, float] = {"replications": float(len(per["requests"]))}
        for m, values in per.items():
            mean, lo, hi = interval(values, bounds_of(m))
            row[m] = mean
            if m in metrics:
                row[f"{m}_ci_low"], row[f"{m}_ci_high"] = lo, hi
        out[route] = row
    return out


# --------------------------------------------------------------------------- gates


@dataclass(frozen=True)
class Baseline:
    """The requests a finalist is gated against, and whether it could pair with them."""

    name: str
    requests: pd.DataFrame
    suite: str | None
    seed: int | None


def read_baseline(path: str | Path) -> Baseline:
    """A run directory's requests and manifest; one-line errors for what is missing."""
    import pyarrow.parquet as pq

    from harness.compare import REQUIRED_COLUMNS

    run = Path(path)
    manifest, requests = run / "manifest.json", run / "requests.parquet"
    if not run.is_dir():
        raise SweepError(f"--baseline {run}: no such run directory")
    if not (manifest.is_file() and requests.is_file()):
        raise SweepError(f"--baseline {run}: not a run directory (needs manifest.json and "
                         "requests.parquet); pass a directory written by evalx run")  # fmt: skip
    try:
        meta = json.loads(manifest.read_text(encoding="utf-8"))
        names = set(pq.read_schema(requests).names)
        missing = [c for c in REQUIRED_COLUMNS if c not in names]
        if missing:
            raise SweepError(f"--baseline {requests}: lacks {', '.join(missing)}; re-run it")
        frame = pq.read_table(requests, columns=list(REQUIRED_COLUMNS)).to_pandas()
    except (OSError, ValueError) as exc:
        raise SweepError(f"--baseline {run}: cannot read it ({exc})") from None
    return Baseline(str(run), frame, meta.get("suite"), meta.get("seed"))


def _change(metric: str, delta: float, relative: float) -> str:
    if metric.endswith("_rate"):
        return f"{100 * delta:+.2f}pp"
    return f"{100 * relative:+.1f}%" if math.isfinite(relative) else f"{delta:+.4g}"


def gate(
    base: Baseline,
    candidate: pd.DataFrame,
    thresholds: Sequence[Mapping[str, Any]],
    gates: Gates,
    suite: str,
    seed: int,
) -> dict[str, Any]:
    """What `evalx compare BASELINE CANDIDATE --gates` says of a finalist's run at `seed`."""
    from harness.compare import compare_tables, pairing_problem

    reasons = []
    if base.suite != suite:
        reasons.append(f"suites differ ({base.suite!r} vs {suite!r})")
    if base.seed != seed:
        reasons.append(f"seeds differ ({base.seed} vs {seed})")
    if not reasons:
        problem = pairing_problem(base.requests, candidate)
        if problem is not None:
            reasons.append(problem)
    paired = not reasons
    cmp = compare_tables(base.requests, candidate, gates, paired=paired,
                         baseline_name=base.name, candidate_name="finalist")  # fmt: skip
    failures = [
        {"check": f"{r.metric}{{route:{r.route}}}",
         "detail": f"{_change(r.metric, r.delta, r.relative_delta)} (tolerance {r.tolerance})"}
        for r in cmp.regressions
    ]  # fmt: skip
    failures += [{"check": g.name, "detail": g.message} for g in cmp.absolute if not g.passed]
    failures += [{"check": f"{t['key']} {t['expression']}", "detail": f"fails at seed {seed}"}
                 for t in thresholds if not t["passed"]]  # fmt: skip
    return {
        "passed": not failures,
        "paired": paired,
        "unpaired_because": "; ".join(reasons) or None,
        "failures": failures,
        "regressions": len(cmp.regressions),
    }
