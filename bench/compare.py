"""Statistical quality of `evalx compare` on the full support suite: false alarms and power.

A benchmark, not a test: it prints figures and PASS/MISS per target and always exits 0.

    python bench/compare.py [--pool 400] [--pairs 200] [--replications 5]
                            [--power-reps 100] [--workers N] [--json FILE]

Every run is the whole scenarios/support.yaml (8,000 requests; the crm slowdown, the
spike, the premium outage and the stale index included), as users run it.

1. A pool of `--pool` runs that differ only in their seed. Nothing but chance separates
   them, so every comparison between them is an A/A test.
2. A/A, one run per side: `--pairs` disjoint pairs from the pool compared unpaired
   (`compare_tables(..., paired=False)`) with the default gates but every tolerance 0, so
   only significance decides. Reported per metric: the share of tests (route x metric) with
   unadjusted p < alpha (target: inside the binomial 95% band of 5% for that many tests),
   and the share flagged after Holm.
3. A/A, `--replications` runs per side: `--pairs` random pairs of disjoint sets drawn from
   the pool, each side stacked with a `replication` column as `evalx run --replications`
   writes it, compared unpaired (Welch on per-replication values). Same figures and target.
   The sets of different pairs overlap, so these figures are estimates with somewhat more
   spread than independent pairs would have.
4. Power: for the first `--power-reps` pool seeds, candidates whose premium-tier models
   are 1 and 2 percentage points less accurate on every task class; compared paired with
   their pool run (same seed: common random numbers) with the default gates and
   success_rate at "0pp"; and unpaired with replications on both sides (the candidate's
   replications against pool runs of other seeds). Reported: the share flagging a
   success_rate regression on any route.

Runs are written to a temporary directory by worker processes and read back per
comparison; every figure is seeded by its index, so it does not depend on the worker count.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd
import scipy
from _common import print_targets, write_json  # bench/_common.py, beside this script

from harness.compare import (
    DEFAULT_TOLERANCES,
    REQUIRED_COLUMNS,
    Gates,
    compare_tables,
    parse_tolerances,
)
from harness.metrics import wilson
from harness.run import simulate
from harness.spec import Suite, load_suite

SUITE = Path(__file__).resolve().parents[1] / "scenarios" / "support.yaml"
POOL_SEED = 10_000
AA_GATES = Gates(tolerances=parse_tolerances(dict.fromkeys(DEFAULT_TOLERANCES, "0")))
POWER_GATES = Gates(tolerances={**DEFAULT_TOLERANCES, **parse_tolerances({"success_rate": "0pp"})})
DROPS = (0.01, 0.02)
T = TypeVar("T")
COLUMNS = [*REQUIRED_COLUMNS]


def suite(seed: int, extra: Sequence[str] = ()) -> Suite:
    """The full support suite at `seed`, with extra overrides."""
    return load_suite(SUITE, [f"seed={seed}", *extra]).suite


def weaker_premium(base: Suite, points: float) -> list[str]:
    """Overrides lowering every premium-tier model's quality by `points` on every class."""
    return [
        f"models.{name}.quality.{task}={max(0.0, quality - points):.6g}"
        for name, model in base.models.items()
        if model.tier == "premium"
        for task, quality in model.quality.items()
    ]


def write(job: tuple[str, int, float]) -> str:
    """Simulate the suite at a seed (with a premium quality drop) and store its requests."""
    folder, seed, drop = job
    s = suite(seed)
    if drop:
        s = suite(seed, weaker_premium(s, drop))
    path = Path(folder) / f"{seed}-{drop:g}.parquet"
    simulate(s).requests.select(COLUMNS).to_pandas().to_parquet(path)
    return str(path)


def read(folder: str, seed: int, drop: float = 0.0, replication: int | None = None) -> Any:
    frame = pd.read_parquet(Path(folder) / f"{seed}-{drop:g}.parquet")
    if replication is not None:
        frame["replication"] = replication
    return frame


def stack(folder: str, seeds: Sequence[int], drop: float = 0.0) -> Any:
    """Runs stacked as one replicated run: replication r is the r-th seed."""
    return pd.concat([read(folder, s, drop, r) for r, s in enumerate(seeds)], ignore_index=True)


def tests_of(result: Any) -> list[tuple[str, str, float, str, str]]:
    """(route, metric, p, verdict, test) of every test with data."""
    return [
        (r.route, r.metric, r.p_value, r.verdict, r.test)
        for r in result.results
        if r.verdict != "insufficient data"
    ]


def aa_single(job: tuple[str, int, int]) -> list[tuple[str, str, float, str, str]]:
    folder, a, b = job
    return tests_of(compare_tables(read(folder, a), read(folder, b), AA_GATES, paired=False))


def aa_replicated(job: tuple[str, list[int], list[int]]) -> list[tuple[str, str, float, str, str]]:
    folder, a, b = job
    return tests_of(compare_tables(stack(folder, a), stack(folder, b), AA_GATES, paired=False))


def power_paired(job: tuple[str, int, float]) -> bool:
    folder, seed, drop = job
    result = compare_tables(read(folder, seed), read(folder, seed, drop), POWER_GATES)
    return any(r.metric == "success_rate" and r.verdict == "regression" for r in result.results)


def power_replicated(job: tuple[str, list[int], list[int], float]) -> bool:
    folder, base, cand, drop = job
    result = compare_tables(
        stack(folder, base), stack(folder, cand, drop), POWER_GATES, paired=False
    )
    return any(r.metric == "success_rate" and r.verdict == "regression" for r in result.results)


def run_all(fn: Callable[[Any], T], jobs: list[Any], workers: int) -> list[T]:
    """`fn` over `jobs`, in order, on `workers` processes."""
    if workers <= 1:
        return [fn(job) for job in jobs]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(fn, jobs, chunksize=max(1, len(jobs) // (8 * workers))))


def share(k: int, n: int) -> dict[str, float]:
    """k of n as a rate with its Wilson 95% interval."""
    lo, hi = wilson(k, n)
    return {"k": k, "n": n, "rate": k / n if n else math.nan, "ci_low": lo, "ci_high": hi}


def band(p: float, n: int) -> tuple[float, float]:
    """Where a true rate p measured over n independent tests lands 95% of the time."""
    from scipy.stats import binom

    return float(binom.ppf(0.025, n, p) / n), float(binom.ppf(0.975, n, p) / n)


def summarize(reps: list[list[tuple[str, str, float, str, str]]], alpha: float) -> dict[str, Any]:
    """Per metric: tests, share with p < alpha, share flagged after Holm; and overall."""
    tests = [t for rep in reps for t in rep]
    per_metric = {}
    for metric in AA_GATES.tolerances:
        mine = [t for t in tests if t[1] == metric]
        if not mine:
            continue
        per_metric[metric] = {
            "tests": len(mine),
            "size": share(sum(t[2] < alpha for t in mine), len(mine)),
            "flagged": share(sum(t[3] == "regression" for t in mine), len(mine)),
            "band": band(alpha, len(mine)),
            "test": sorted({t[4] for t in mine}),
        }
    return {
        "pairs": len(reps),
        "family_wise": share(
            sum(any(t[3] == "regression" for t in rep) for rep in reps), len(reps)
        ),
        "size": share(sum(t[2] < alpha for t in tests), len(tests)),
        "per_metric": per_metric,
    }


def print_aa(title: str, aa: dict[str, Any], targets: dict[str, bool], alpha: float) -> None:
    print(f"\n{title}: {aa['pairs']} pairs, every tolerance 0, alpha {alpha}")
    fw = aa["family_wise"]
    print(f"  pairs with any regression after Holm: {100 * fw['rate']:.1f}% ({fw['k']}/{fw['n']})")
    print(f"  {'metric':<22}{'tests':>7}{'p<alpha':>9}{'5% band':>14}{'flagged':>9}  test")
    for metric, m in aa["per_metric"].items():
        lo, hi = m["band"]
        print(
            f"  {metric:<22}{m['tests']:>7}{100 * m['size']['rate']:>8.1f}%"
            f"{100 * lo:>7.1f}-{100 * hi:.1f}%{100 * m['flagged']['rate']:>8.1f}%"
            f"  {', '.join(m['test'])}"
        )
        targets[
            f"{title}: {metric} false-alarm rate {100 * m['size']['rate']:.1f}% in the "
            f"band of 5% ({100 * lo:.1f}-{100 * hi:.1f}%)"
        ] = m["size"]["rate"] <= hi


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark, print the report, optionally write JSON. Always returns 0."""
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--pool", type=int, default=400, help="A/A runs (seeds) in the pool")
    p.add_argument("--pairs", type=int, default=200, help="A/A pairs per kind")
    p.add_argument("--replications", type=int, default=5, help="runs per side, replicated")
    p.add_argument("--power-reps", type=int, default=100, help="power seeds per drop")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes")
    p.add_argument("--json", type=Path, help="write every figure to this file")
    args = p.parse_args(argv)
    workers, r = max(1, args.workers), args.replications
    if args.pool < 2 * max(args.pairs, r) or args.power_reps > args.pool // 2:
        p.error("--pool must hold 2 x --pairs runs and 2 x --power-reps")
    print(
        f"machine: {os.cpu_count()} cpus, python {platform.python_version()}, numpy "
        f"{np.__version__}, scipy {scipy.__version__}; {workers} worker(s)",
        flush=True,
    )
    fig: dict[str, Any] = {
        "command": [sys.executable, *sys.argv],
        "suite": str(SUITE),
        "alpha": AA_GATES.alpha,
        "bootstrap": AA_GATES.bootstrap,
        "pool": args.pool,
        "pairs": args.pairs,
        "replications": r,
        "power_reps": args.power_reps,
        "workers": workers,
    }
    seeds = [POOL_SEED + i for i in range(args.pool)]
    power_seeds = seeds[: args.power_reps]
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as folder:
        t0 = time.perf_counter()
        jobs = [(folder, s, 0.0) for s in seeds]
        jobs += [(folder, s, d) for d in DROPS for s in power_seeds]
        run_all(write, jobs, workers)
        fig["simulate_seconds"] = time.perf_counter() - t0
        print(f"{len(jobs)} runs of {SUITE.name} in {fig['simulate_seconds']:.0f} s", flush=True)
        t1 = time.perf_counter()
        singles = [(folder, seeds[2 * i], seeds[2 * i + 1]) for i in range(args.pairs)]
        fig["aa_single"] = summarize(run_all(aa_single, singles, workers), AA_GATES.alpha)
        fig["aa_single_seconds"] = time.perf_counter() - t1
        t2 = time.perf_counter()
        sets = []
        for _ in range(args.pairs):
            pick = rng.choice(len(seeds), size=2 * r, replace=False)
            sets.append((folder, [seeds[i] for i in pick[:r]], [seeds[i] for i in pick[r:]]))
        fig["aa_replicated"] = summarize(run_all(aa_replicated, sets, workers), AA_GATES.alpha)
        fig["aa_replicated_seconds"] = time.perf_counter() - t2
        t3 = time.perf_counter()
        fig["power"] = {}
        others = seeds[args.power_reps :]
        for drop in DROPS:
            paired = run_all(power_paired, [(folder, s, drop) for s in power_seeds], workers)
            groups = [
                (
                    folder,
                    [others[i] for i in rng.choice(len(others), r, replace=False)],
                    list(rng.choice(power_seeds, r, replace=False)),
                    drop,
                )
                for _ in range(args.power_reps)
            ]
            replicated = run_all(power_replicated, groups, workers)
            fig["power"][f"{drop:g}"] = {
                "paired": share(sum(paired), len(paired)),
                "replicated": share(sum(replicated), len(replicated)),
            }
        fig["power_seconds"] = time.perf_counter() - t3
    targets: dict[str, bool] = {}
    print_aa("A/A, one run per side (block bootstrap)", fig["aa_single"], targets, fig["alpha"])
    print_aa(f"A/A, {r} replications per side (Welch)", fig["aa_replicated"], targets, fig["alpha"])
    print(
        f"\nPower: premium-tier models less accurate on every class, success_rate at 0pp, "
        f"{args.power_reps} repetitions"
    )
    for drop, f in fig["power"].items():
        pp, rp = f["paired"], f["replicated"]
        print(
            f"  -{100 * float(drop):.0f}pp: paired (same seed, one run each) "
            f"{100 * pp['rate']:.0f}%; unpaired, {r} replications per side "
            f"{100 * rp['rate']:.0f}%"
        )
    total = sum(v for k, v in fig.items() if k.endswith("_seconds"))
    print(f"total {total:.0f} s")
    print_targets(targets)
    write_json(args.json, fig, targets)
    return 0


if __name__ == "__main__":
    sys.exit(main())
