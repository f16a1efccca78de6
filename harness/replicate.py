"""Replications: R independent worlds of one suite, on any executor, bit-identical results.

The work plan is built from the suite alone (never from the worker count): unit r runs
the suite with seed `SeedSequence(root seed, spawn_key=(r,))`. Each unit writes its own
part (requests, spans and summary with a `replication` column) through a temporary
directory and an atomic rename, so a retried unit is harmless and `--resume` can skip the
parts that exist and verify. The reduce reads the parts in unit order, so the final
Parquet files are the same bytes whatever executor or worker count produced them.
Timestamps and hosts go to the manifest only.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness.errors import EvalxError
from harness.executor import Executor, InlineExecutor

METRICS = ("success_rate", "p50_latency_ms", "p95_latency_ms", "p99_latency_ms",
           "cost_per_request_usd", "escalation_rate", "handoff_rate", "violations")  # fmt: skip
"""Per-route metrics reported with across-replication confidence intervals."""


class ReplicationError(EvalxError):
    """A replicated run that cannot proceed as asked."""


def replication_seed(root: int, r: int) -> int:
    """The seed of replication r: derived with SeedSequence from stable integer ids."""
    return int(np.random.SeedSequence(root, spawn_key=(r,)).generate_state(1)[0])


@dataclass(frozen=True)
class Unit:
    """One replication to run: everything a worker needs, nothing about the worker."""

    path: str
    flags: tuple[str, ...]
    policy: str | None
    replication: int
    seed: int
    parts: str  # directory holding every unit's part


def part_dir(parts: Path, r: int) -> Path:
    return parts / f"replication={r:04d}"


def run_unit(unit: Unit) -> dict[str, Any]:
    """Simulate one replication and write its part atomically; returns its key figures."""
    import pyarrow as pa

    from harness.run import simulate
    from harness.spec import load_suite
    from harness.storage import REQUESTS, SESSIONS, SPANS, SUMMARY, write_run

    loaded = load_suite(unit.path, [*unit.flags, f"seed={unit.seed}"], unit.policy)
    result = simulate(loaded.suite)
    target = part_dir(Path(unit.parts), unit.replication)
    tables = {}
    for name, table in ((REQUESTS, result.requests), (SPANS, result.spans),
                        (SUMMARY, result.summary), (SESSIONS, result.sessions)):  # fmt: skip
        column = pa.array(np.full(table.num_rows, unit.replication, dtype=np.int32))
        tables[name] = table.add_column(0, "replication", column)
    if target.exists():  # a retried unit: the earlier attempt finished; replace it
        shutil.rmtree(target)
    meta = {"replication": unit.replication, "seed": unit.seed, "suite_hash": loaded.suite_hash}
    write_run(target, tables, meta)
    return meta


PART_TABLES = ("requests.parquet", "spans.parquet", "summary.parquet")


def _verified(parts: Path, unit: Unit, suite_hash: str) -> bool:
    """A part from an earlier attempt that belongs to this plan and whose files match
    their hashes; False when there is none (or it belongs to another plan). A damaged
    part is refused (`IntegrityError`) rather than silently run again."""
    from harness.integrity import IntegrityError, read_manifest, verify

    d = part_dir(parts, unit.replication)
    if not d.is_dir():
        return False
    try:
        meta = read_manifest(d)
        if meta.get("seed") != unit.seed or meta.get("suite_hash") != suite_hash:
            return False
        verify(d, meta, PART_TABLES)
    except IntegrityError as err:
        raise err.with_fix(f"remove {d} and rerun with --resume to run it again") from None
    return True


RATE_METRICS = frozenset({"success_rate", "escalation_rate", "handoff_rate"})
"""Shares of requests: bounded to [0, 1]; an all-zero (or all-one) series gets Wilson."""
TAIL_METRICS = {"p95_latency_ms": 95.0, "p99_latency_ms": 99.0}
MIN_REPLICATIONS = 5
"""Fewest replications for an across-replication t-interval that covers: runs whose outcome
hinges on one episode (an outage tipping a queue) give skewed per-run values, and a
t-interval on 3 of them covers 74-89% on the support suite (bench/coverage.py)."""
TAIL_MIN_REPLICATIONS = 10
"""Fewest replications for an across-replication interval on a tail percentile."""
TAIL_MIN_EXCEEDANCES = 10.0
"""Below this many requests per run above the percentile, a tail needs 2x the replications."""
T = "t"
POOLED_WILSON = "wilson (pooled, design effect)"
POISSON = "poisson (pooled, zero count)"


def _read_part(d: Path, name: str) -> Any:
    """A part's table, verified and checked (`harness.integrity`)."""
    from harness.integrity import IntegrityError, read_manifest, read_table

    try:
        return read_table(d, name, read_manifest(d))
    except IntegrityError as err:
        raise err.with_fix(f"remove {d} and rerun with --resume to run it again") from None


def t_interval(
    values: np.ndarray, level: float = 0.95, bounds: tuple[float, float] | None = None
) -> tuple[float, float, float, float]:
    """(mean, std, low, high): Student-t interval of a mean across replications.

    `bounds` clips the interval to the metric's range (e.g. (0, 1) for a rate).
    """
    from scipy import stats

    v = values[~np.isnan(values)]
    if v.size == 0:
        return (math.nan,) * 4
    mean = float(v.mean())
    if v.size == 1:
        return mean, math.nan, math.nan, math.nan
    std = float(v.std(ddof=1))
    half = float(stats.t.ppf(0.5 + level / 2, v.size - 1)) * std / math.sqrt(v.size)
    lo, hi = mean - half, mean + half
    if bounds is not None:
        lo, hi = max(bounds[0], lo), min(bounds[1], hi)
    return mean, std, lo, hi


def design_effect(g: Any) -> float:
    """How much wider than independent sampling a route's success interval is, squared:
    the mean over replications of (batch-means width / Wilson width) ** 2, at least 1
    (1 when no replication has a batch-means interval)."""
    from harness.intervals import BATCH_MEANS, wilson

    ratios = []
    for r in g.to_dict("records"):
        n = int(r["requests"])
        if r.get("ci_method") != BATCH_MEANS or n <= 0:
            continue
        lo, hi = wilson(round(float(r["success_rate"]) * n), n)
        if hi > lo:
            ratios.append(
                ((float(r["success_ci_high"]) - float(r["success_ci_low"])) / (hi - lo)) ** 2
            )
    return max(1.0, float(np.mean(ratios))) if ratios else 1.0


def _pooled_rate(values: np.ndarray, requests: np.ndarray, deff: float) -> tuple[float, float]:
    """Wilson on the pooled count of an all-0 or all-1 rate, with n shrunk by `deff`."""
    from harness.intervals import wilson

    n_eff = float(requests.sum()) / deff
    share = float(values.mean())
    return wilson(share * n_eff, n_eff)


def across(summary: Any) -> Any:
    """Across-replication statistics per route and metric, from the stacked summaries.

    t-intervals clipped to the metric's range (rates to [0, 1], the rest to >= 0). A rate
    that is 0 (or 1) in every replication gets a Wilson interval on the pooled count with
    the requests divided by the route's design effect (`design_effect`); a count
    (violations) that is 0 in every replication gets the exact Poisson upper bound per run
    (3.689 / R). `method` says which; `min_replications` is how many the interval needs
    to cover (`min_replications`).
    """
    import pandas as pd

    rows = []
    for route, g in summary.groupby("route", sort=True):
        deff = design_effect(g) if "success_ci_low" in g else 1.0
        requests = g["requests"].to_numpy(dtype=np.float64)
        for metric in METRICS:
            x = g[metric].to_numpy(dtype=np.float64)
            rate = metric in RATE_METRICS
            mean, std, lo, hi = t_interval(x, bounds=(0.0, 1.0) if rate else (0.0, math.inf))
            method = T
            finite = x[~np.isnan(x)]
            constant = finite.size > 1 and float(np.ptp(finite)) == 0.0
            if rate and constant and float(finite[0]) in (0.0, 1.0):
                lo, hi = _pooled_rate(finite, requests[~np.isnan(x)], deff)
                method = POOLED_WILSON
            elif metric == "violations" and constant and float(finite[0]) == 0.0:
                lo, hi = 0.0, -math.log(0.025) / finite.size
                method = POISSON
            need = min_replications(metric, float(np.mean(requests)))
            rows.append({"route": route, "metric": metric, "replications": len(g),
                         "mean": mean, "std": std, "ci_low": lo, "ci_high": hi,
                         "method": method, "design_effect": deff,
                         "min_replications": need})  # fmt: skip
    return pd.DataFrame(rows)


def min_replications(metric: str, mean_requests: float) -> int:
    """Fewest replications for a t-interval on `metric` across them that covers.

    `MIN_REPLICATIONS` for every metric. A run's p95/p99 is skewed when few requests lie
    above it, and a t-interval on R skewed values under-covers: a tail needs
    `TAIL_MIN_REPLICATIONS`, twice that when a run has fewer than `TAIL_MIN_EXCEEDANCES`
    requests above the percentile (bench/coverage.py: p95/p99 at 5 replications cover
    90-92% on the support suite, at 10 94-95%).
    """
    q = TAIL_METRICS.get(metric)
    if q is None:
        return MIN_REPLICATIONS
    above = mean_requests * (1 - q / 100)
    return TAIL_MIN_REPLICATIONS * (2 if above < TAIL_MIN_EXCEEDANCES else 1)


def replication_warnings(stats: Any) -> list[str]:
    """What the replications of `stats` (`across`) are too few for, one line per need."""
    short = stats[stats["min_replications"] > stats["replications"]]
    if short.empty:
        return []
    r = int(short["replications"].iloc[0])
    lines = []
    if r < MIN_REPLICATIONS:
        lines.append(
            f"{r} replications are too few for intervals across them: with a spike or an outage "
            f"per run they under-cover; use --replications {MIN_REPLICATIONS} or more"
        )
    tails = short[short["metric"].isin(list(TAIL_METRICS))]
    for need, g in tails.groupby("min_replications", sort=True):
        pairs = zip(g["route"], g["metric"], strict=True)
        names = ", ".join(f"{route} p{TAIL_METRICS[m]:g}" for route, m in pairs)
        lines.append(
            f"{r} replications are too few for a t-interval on {names}: "
            f"use --replications {int(need)} or more"
        )
    return lines


def replicate(
    path: str,
    flags: list[str],
    policy: str | None,
    replications: int,
    out: Path,
    *,
    executor: Executor | None = None,
    resume: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Run every replication, then reduce the parts into `out` (atomically)."""
    import pyarrow as pa

    from harness.records import SCHEMA_VERSION
    from harness.spec import load_suite
    from harness.storage import check_out, write_run

    if replications < 1:
        raise ReplicationError(f"--replications must be at least 1, got {replications}")
    loaded = load_suite(path, flags, policy)
    check_out(out)
    parts = out.parent / f".{out.name.replace('=', '-')}.parts"
    if parts.exists() and not resume:
        raise ReplicationError(
            f"{parts}: parts of an earlier, unfinished run exist; pass --resume to reuse them "
            "or remove the folder"
        )
    parts.mkdir(parents=True, exist_ok=True)
    root = loaded.suite.seed
    units = [Unit(path, tuple(flags), policy, r, replication_seed(root, r), str(parts))
             for r in range(replications)]  # fmt: skip
    base_hash = {u.replication: load_suite(path, [*flags, f"seed={u.seed}"], policy).suite_hash
                 for u in units}  # fmt: skip
    todo = [u for u in units if not (resume and _verified(parts, u, base_hash[u.replication]))]
    done = replications - len(todo)
    if progress is not None:
        progress(done, replications)
    ex = executor or InlineExecutor()
    for _ in ex.map(run_unit, todo):
        done += 1
        if progress is not None:
            progress(done, replications)
    tables: dict[str, pa.Table] = {}
    for name in PART_TABLES:
        pieces = [_read_part(part_dir(parts, u.replication), name) for u in units]
        table = pa.concat_tables(pieces)
        tables[name] = table.replace_schema_metadata(
            {**(pieces[0].schema.metadata or {}), b"evalx.replications": str(replications).encode()}
        )
    summary = tables["summary.parquet"].to_pandas()
    stats_table = pa.Table.from_pandas(across(summary), preserve_index=False)
    tables["replications.parquet"] = stats_table.replace_schema_metadata(
        {b"evalx.schema_version": str(SCHEMA_VERSION).encode()}
    )
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "suite": loaded.suite.name,
        "suite_hash": loaded.suite_hash,
        "seed": root,
        "replications": replications,
        "seeds": [u.seed for u in units],
        "resumed": replications - len(todo),
        "parameters": loaded.parameters(),
        "policy": loaded.policy(),
    }
    write_run(out, tables, manifest)
    shutil.rmtree(parts, ignore_errors=True)
    from harness.metrics import NEEDED, summarize

    pooled = summarize(tables["requests.parquet"].select(list(NEEDED)).to_pandas())
    return {"summary": summary, "across": across(summary), "pooled": pooled, "manifest": manifest}
