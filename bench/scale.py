"""Sweep confirmation at scale: the same full runs inline, on a process pool and on Dask.

A benchmark, not a test: it prints figures and whether every executor returned the same
summaries, and exits 0 (1 only if the results differ, which would be a harness bug).

    python bench/scale.py [--runs 8] [--requests 20000] [--workers 2] [--json FILE]

The stage is what `run_sweep` hands its executor to confirm settings: `--runs` full
engine runs of scenarios/support.yaml with `--requests` requests, one per escalation
confidence threshold spread evenly over [0.5, 0.9]. It runs on

1. `InlineExecutor()`, one run after another;
2. `ProcessExecutor(workers)`;
3. `DaskExecutor(workers)`, which starts and closes a local cluster inside `map` (the
   wall time includes that start-up and shut-down);
4. `DaskExecutor(scheduler=...)` on a cluster of `workers` processes already running,
   which isolates the cost of moving tasks and results through the scheduler.

Results are compared exactly (as canonical JSON, so NaN equals NaN).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from importlib.metadata import version
from pathlib import Path
from typing import Any

from harness.executor import DaskExecutor, Executor, InlineExecutor, ProcessExecutor, local_cluster
from harness.sweep._sweep import Unit, full_run

SUITE = "scenarios/support.yaml"


def units(runs: int, requests: int) -> list[Unit]:
    """One full run per threshold, evenly spaced over [0.5, 0.9]."""
    step = 0.4 / max(1, runs - 1)
    thresholds = [round(0.5 + i * step, 4) for i in range(runs)]
    return [
        Unit(
            path=SUITE,
            flags=(f"traffic.requests={requests}", f"stack.escalation.confidence_threshold={t}"),
            policy=None,
        )
        for t in thresholds
    ]


def timed(ex: Executor, work: list[Unit]) -> tuple[float, str]:
    """Wall seconds for the whole stage and its results as canonical JSON."""
    t0 = time.perf_counter()
    out = list(ex.map(full_run, work))
    return time.perf_counter() - t0, json.dumps(out, sort_keys=True, default=str)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark, print the table, optionally write JSON."""
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--runs", type=int, default=8, help="full runs (thresholds) in the stage")
    p.add_argument("--requests", type=int, default=20_000, help="requests per full run")
    p.add_argument("--workers", type=int, default=2, help="processes for pool and Dask")
    p.add_argument("--json", type=Path, help="write every figure to this file")
    args = p.parse_args(argv)
    print(
        f"machine: {os.cpu_count()} cpus, python {platform.python_version()}, dask "
        f"{version('dask')}, distributed {version('distributed')}; {args.runs} runs of "
        f"{args.requests:,} requests, {args.workers} workers",
        flush=True,
    )
    work = units(args.runs, args.requests)
    cases: list[tuple[str, Callable[[], tuple[float, str]]]] = [
        ("inline", lambda: timed(InlineExecutor(), work)),
        (f"process({args.workers})", lambda: timed(ProcessExecutor(args.workers), work)),
        (f"dask({args.workers}), own cluster", lambda: timed(DaskExecutor(args.workers), work)),
    ]

    def running_cluster() -> tuple[float, str]:
        with local_cluster(args.workers) as cluster:
            return timed(DaskExecutor(scheduler=cluster.scheduler_address), work)

    cases.append((f"dask({args.workers}), running cluster", running_cluster))
    rows: list[dict[str, Any]] = []
    reference: str | None = None
    for name, run in cases:
        seconds, canon = run()
        reference = reference if reference is not None else canon
        rows.append({"executor": name, "seconds": seconds, "identical": canon == reference})
        print(f"  {name}: {seconds:.2f} s", flush=True)
    inline_s = rows[0]["seconds"]
    print(f"\n{'executor':<28}{'wall s':>9}{'s/run':>8}{'speed-up':>10}  same results")
    for row in rows:
        row["speedup"] = inline_s / row["seconds"]
        print(
            f"{row['executor']:<28}{row['seconds']:>9.2f}{row['seconds'] / args.runs:>8.2f}"
            f"{row['speedup']:>9.2f}x  {'yes' if row['identical'] else 'NO'}"
        )
    same = all(row["identical"] for row in rows)
    print(f"\nsummaries identical across executors: {'yes' if same else 'NO'}")
    if args.json is not None:
        fig = {
            "command": [sys.executable, *sys.argv],
            "cpus": os.cpu_count(),
            "runs": args.runs,
            "requests": args.requests,
            "workers": args.workers,
            "rows": rows,
            "identical": same,
        }
        args.json.write_text(json.dumps(fig, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
