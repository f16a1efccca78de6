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

import json
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


def _verified(parts: Path, unit: Unit, suite_hash: str) -> bool:
    """A part from an earlier attempt that is complete and belongs to this plan."""
    d = part_dir(parts, unit.replication)
    try:
        meta = json.loads((d / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (
        meta.get("seed") == unit.seed
        and meta.get("suite_hash") == suite_hash
        and all((d / f).exists() for f in ("requests.parquet", "spans.parquet", "summary.parquet"))
    )


def t_interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float, float, float]:
    """(mean, std, low, high): Student-t interval of a mean across replications."""
    from scipy import stats

    v = values[~np.isnan(values)]
    if v.size == 0:
        return (math.nan,) * 4
    mean = float(v.mean())
    if v.size == 1:
        return mean, math.nan, math.nan, math.nan
    std = float(v.std(ddof=1))
    half = float(stats.t.ppf(0.5 + level / 2, v.size - 1)) * std / math.sqrt(v.size)
    return mean, std, mean - half, mean + half


def across(summary: Any) -> Any:
    """Across-replication statistics per route and metric, from the stacked summaries."""
    import pandas as pd

    rows = []
    for route, g in summary.groupby("route", sort=True):
        for metric in METRICS:
            mean, std, lo, hi = t_interval(g[metric].to_numpy(dtype=np.float64))
            rows.append({"route": route, "metric": metric, "replications": len(g),
                         "mean": mean, "std": std, "ci_low": lo, "ci_high": hi})  # fmt: skip
    return pd.DataFrame(rows)


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
    import pyarrow.parquet as pq

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
    for name in ("requests.parquet", "spans.parquet", "summary.parquet"):
        pieces = [pq.read_table(part_dir(parts, u.replication) / name) for u in units]
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
