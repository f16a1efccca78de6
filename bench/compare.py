"""Statistical quality of `evalx compare`: false alarms on A/A runs, power on a small regression.

A benchmark, not a test: it prints figures and PASS/MISS per target and always exits 0.

    python bench/compare.py [--reps 200] [--requests 2000] [--power-reps 50]
                            [--power-requests 10000] [--workers N] [--json FILE]

1. False alarms (A/A, unpaired). `--reps` pairs of runs of scenarios/support.yaml at
   `--requests` requests that differ only in their seed, so nothing but chance separates
   them, compared as independent samples with the default gates but every tolerance 0
   (only significance decides). Reported: the share of repetitions with any regression
   (the family-wise false-alarm rate Holm controls; target <= alpha + 3pp, about two
   Monte Carlo standard errors at 200 repetitions) and, per test (route x metric with
   data), the share with an unadjusted two-sided p < alpha (the size of each test;
   same target) and the share flagged after Holm.
2. Power (paired). `--power-reps` seeds; for each, the suite at `--power-requests`
   requests and a candidate whose premium-tier models are 1 percentage point less
   accurate on every task class (`--set models.<name>.quality.<class>=...`), compared
   paired with the default gates and success_rate at "0pp". Reported: the share of
   repetitions flagging a success_rate regression on `all` or any route (target >= 90%).
   For contrast, the same change against a candidate run with another seed, compared
   unpaired: what the same number of requests detects without common random numbers.

Runs are simulated in memory and compared with `compare_tables`; repetitions are
spread over `--workers` processes and seeded by their index, so the figures do not
depend on the worker count.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import scipy
from _common import print_targets, write_json  # bench/_common.py, beside this script

from harness.compare import (
    DEFAULT_TOLERANCES,
    Comparison,
    Gates,
    compare_tables,
    parse_tolerances,
)
from harness.metrics import ALL, wilson
from harness.run import simulate
from harness.spec import Suite, load_suite

SUITE = Path(__file__).resolve().parents[1] / "scenarios" / "support.yaml"
AA_SEED, POWER_SEED = 10_000, 20_000
MARGIN = 0.03
TARGET_POWER = 0.90
R = TypeVar("R")

AA_GATES = Gates(tolerances=parse_tolerances(dict.fromkeys(DEFAULT_TOLERANCES, "0")))
POWER_GATES = Gates(tolerances={**DEFAULT_TOLERANCES, **parse_tolerances({"success_rate": "0pp"})})


def suite(requests: int, seed: int, extra: Sequence[str] = ()) -> Suite:
    """The support suite at `requests` requests and `seed`, with extra overrides."""
    overrides = [f"traffic.requests={requests}", f"seed={seed}", *extra]
    return load_suite(SUITE, overrides).suite


def weaker_premium(base: Suite, points: float = 0.01) -> list[str]:
    """Overrides lowering every premium-tier model's quality by `points` on every class."""
    return [
        f"models.{name}.quality.{task}={max(0.0, quality - points):.6g}"
        for name, model in base.models.items()
        if model.tier == "premium"
        for task, quality in model.quality.items()
    ]


def aa_rep(args: tuple[int, int]) -> dict[str, Any]:
    """One A/A repetition: two seeds, unpaired; every test's p-values and verdict."""
    index, requests = args
    seeds = (AA_SEED + 2 * index, AA_SEED + 2 * index + 1)
    a, b = (simulate(suite(requests, s)).requests.to_pandas() for s in seeds)
    result = compare_tables(a, b, AA_GATES, paired=False)
    tests = [
        (r.route, r.metric, r.p_value, r.p_adjusted, r.worse * r.delta > 0, r.verdict)
        for r in result.results
        if r.verdict != "insufficient data"
    ]
    return {"seeds": seeds, "tests": tests}


def power_rep(args: tuple[int, int]) -> dict[str, Any]:
    """One power repetition: baseline and weaker-premium candidate, same seed, paired."""
    index, requests = args
    seed = POWER_SEED + index
    base_suite = suite(requests, seed)
    cand_suite = suite(requests, seed, weaker_premium(base_suite))
    base = simulate(base_suite).requests.to_pandas()
    cand = simulate(cand_suite).requests.to_pandas()
    result = compare_tables(base, cand, POWER_GATES, paired=True)
    other = simulate(suite(requests, seed + 10_000, weaker_premium(base_suite))).requests
    unpaired = compare_tables(base, other.to_pandas(), POWER_GATES, paired=False)
    success = [r for r in result.results if r.metric == "success_rate"]
    at_all = next(r for r in success if r.route == ALL)
    changed = base["success"].to_numpy() != cand["success"].to_numpy()
    return {
        "seed": seed,
        "flagged": any(r.verdict == "regression" for r in success),
        "flagged_all": at_all.verdict == "regression",
        "flagged_routes": sorted(r.route for r in success if r.verdict == "regression"),
        "delta_all": at_all.delta,
        "p_adjusted_all": at_all.p_adjusted,
        "discordant": int(changed.sum()),
        "unpaired_flagged": any(
            r.verdict == "regression" for r in unpaired.results if r.metric == "success_rate"
        ),
        "other_regressions": sorted(f"{r.route}:{r.metric}" for r in _other_regressions(result)),
    }


def _other_regressions(result: Comparison) -> Iterable[Any]:
    return (r for r in result.regressions if r.metric != "success_rate")


def run_all(fn: Callable[[tuple[int, int]], R], reps: int, n: int, workers: int) -> list[R]:
    """`fn` over repetitions 0..reps-1, in order, on `workers` processes."""
    jobs = [(i, n) for i in range(reps)]
    if workers <= 1:
        return [fn(job) for job in jobs]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(fn, jobs, chunksize=max(1, reps // (4 * workers))))


def share(k: int, n: int) -> dict[str, float]:
    """k of n as a rate with its Wilson 95% interval."""
    lo, hi = wilson(k, n)
    return {"k": k, "n": n, "rate": k / n if n else float("nan"), "ci_low": lo, "ci_high": hi}


def summarize_aa(reps: list[dict[str, Any]], alpha: float) -> dict[str, Any]:
    """Family-wise and per-test false-alarm figures of the A/A repetitions."""
    any_regression = sum(any(t[5] == "regression" for t in rep["tests"]) for rep in reps)
    tests = [t for rep in reps for t in rep["tests"]]
    per_metric: dict[str, dict[str, Any]] = {}
    for metric in AA_GATES.tolerances:
        mine = [t for t in tests if t[1] == metric]
        per_metric[metric] = {
            "tests": len(mine),
            "size": share(sum(t[2] < alpha for t in mine), len(mine)),
            "worse_side": share(sum(t[2] < alpha and t[4] for t in mine), len(mine)),
            "flagged": share(sum(t[5] == "regression" for t in mine), len(mine)),
        }
    return {
        "family_wise": share(any_regression, len(reps)),
        "size": share(sum(t[2] < alpha for t in tests), len(tests)),
        "worse_side": share(sum(t[2] < alpha and t[4] for t in tests), len(tests)),
        "flagged": share(sum(t[5] == "regression" for t in tests), len(tests)),
        "tests_per_rep": len(tests) / len(reps) if reps else 0.0,
        "per_metric": per_metric,
        "reps_with_regression": [
            {
                "seeds": rep["seeds"],
                "regressions": [t[:2] for t in rep["tests"] if t[5] == "regression"],
            }
            for rep in reps
            if any(t[5] == "regression" for t in rep["tests"])
        ],
    }


def summarize_power(reps: list[dict[str, Any]]) -> dict[str, Any]:
    """Detection figures of the power repetitions."""
    return {
        "flagged": share(sum(r["flagged"] for r in reps), len(reps)),
        "flagged_all": share(sum(r["flagged_all"] for r in reps), len(reps)),
        "median_delta_all": statistics.median(r["delta_all"] for r in reps),
        "median_p_adjusted_all": statistics.median(r["p_adjusted_all"] for r in reps),
        "max_p_adjusted_all": max(r["p_adjusted_all"] for r in reps),
        "median_changed_requests": statistics.median(r["discordant"] for r in reps),
        "unpaired_flagged": share(sum(r["unpaired_flagged"] for r in reps), len(reps)),
        "reps_with_other_regressions": sum(bool(r["other_regressions"]) for r in reps),
        "other_regressions": sorted({x for r in reps for x in r["other_regressions"]}),
    }


def pct(x: dict[str, float]) -> str:
    """A share as a percentage with its count and interval."""
    ci = f"95% CI {100 * x['ci_low']:.2f}-{100 * x['ci_high']:.2f}"
    return f"{100 * x['rate']:5.2f}% ({x['k']}/{x['n']}, {ci})"


def report(fig: dict[str, Any]) -> dict[str, bool]:
    """Print the figures and the targets; return target name -> met."""
    alpha = fig["alpha"]
    targets: dict[str, bool] = {}
    aa = fig["aa"]
    if aa is not None:
        print(
            f"\nA/A false alarms: {fig['reps']} pairs of seeds, {fig['requests']:,} requests each, "
            f"unpaired, every tolerance 0, alpha {alpha}, {aa['tests_per_rep']:.1f} tests/rep "
            f"({fig['aa_seconds']:.0f} s)"
        )
        print(f"  repetitions with any regression   {pct(aa['family_wise'])}")
        print(f"  per test, unadjusted p < alpha    {pct(aa['size'])}")
        print(f"  per test, p < alpha, worse side   {pct(aa['worse_side'])}")
        print(f"  per test, regression after Holm   {pct(aa['flagged'])}")
        print(f"  {'metric':<22}{'tests':>7}{'p<alpha':>10}{'worse side':>12}{'flagged':>10}")
        for metric, m in aa["per_metric"].items():
            print(
                f"  {metric:<22}{m['tests']:>7}{100 * m['size']['rate']:>9.2f}%"
                f"{100 * m['worse_side']['rate']:>11.2f}%{100 * m['flagged']['rate']:>9.2f}%"
            )
        for rep in aa["reps_with_regression"]:
            print(f"  seeds {rep['seeds']}: {', '.join(':'.join(x) for x in rep['regressions'])}")
        limit = alpha + MARGIN
        targets[f"A/A repetitions with any regression <= {100 * limit:.0f}%"] = (
            aa["family_wise"]["rate"] <= limit
        )
        targets[f"A/A per-test false-positive rate (unadjusted) <= {100 * limit:.0f}%"] = (
            aa["size"]["rate"] <= limit
        )
    pw = fig["power"]
    if pw is not None:
        print(
            f"\nPower: {fig['power_reps']} seeds, {fig['power_requests']:,} paired requests, "
            f"premium models {', '.join(fig['premium_models'])} 1pp less accurate on every "
            f"class, success_rate tolerance 0pp ({fig['power_seconds']:.0f} s)"
        )
        print(f"  success_rate regression flagged (any route)  {pct(pw['flagged'])}")
        print(f"  success_rate regression flagged on all        {pct(pw['flagged_all'])}")
        print(
            f"  on all: median delta {100 * pw['median_delta_all']:+.3f}pp, median adjusted p "
            f"{pw['median_p_adjusted_all']:.2g} (max {pw['max_p_adjusted_all']:.2g}); median "
            f"{pw['median_changed_requests']:.0f} requests changed outcome"
        )
        print(f"  for contrast, unpaired (other seed)           {pct(pw['unpaired_flagged'])}")
        others = ", ".join(pw["other_regressions"]) or "none"
        print(
            f"  repetitions with other regressions: {pw['reps_with_other_regressions']} ({others})"
        )
        targets[f"power >= {100 * TARGET_POWER:.0f}% (success_rate, 1pp weaker premium tier)"] = (
            pw["flagged"]["rate"] >= TARGET_POWER
        )
    print_targets(targets)
    return targets


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark, print the report, optionally write JSON. Always returns 0."""
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--reps", type=int, default=200, help="A/A repetitions (0 skips)")
    p.add_argument("--requests", type=int, default=2000, help="requests per A/A run")
    p.add_argument("--power-reps", type=int, default=50, help="power repetitions (0 skips)")
    p.add_argument("--power-requests", type=int, default=10_000, help="requests per power run")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes")
    p.add_argument("--json", type=Path, help="write every figure to this file")
    args = p.parse_args(argv)
    workers = max(1, args.workers)
    print(
        f"machine: {os.cpu_count()} cpus, python {platform.python_version()}, numpy "
        f"{np.__version__}, scipy {scipy.__version__}; {workers} worker(s)",
        flush=True,
    )
    premium = [
        n for n, m in suite(args.power_requests, POWER_SEED).models.items() if m.tier == "premium"
    ]
    fig: dict[str, Any] = {
        "command": [sys.executable, *sys.argv],
        "suite": str(SUITE),
        "alpha": AA_GATES.alpha,
        "bootstrap": AA_GATES.bootstrap,
        "margin": MARGIN,
        "reps": args.reps,
        "requests": args.requests,
        "power_reps": args.power_reps,
        "power_requests": args.power_requests,
        "premium_models": premium,
        "workers": workers,
        "aa": None,
        "power": None,
    }
    t0 = time.perf_counter()
    if args.reps > 0:
        aa = run_all(aa_rep, args.reps, args.requests, workers)
        fig["aa"] = summarize_aa(aa, AA_GATES.alpha)
    fig["aa_seconds"] = time.perf_counter() - t0
    t1 = time.perf_counter()
    if args.power_reps > 0:
        power = run_all(power_rep, args.power_reps, args.power_requests, workers)
        fig["power"] = summarize_power(power)
        fig["power_runs"] = power
    fig["power_seconds"] = time.perf_counter() - t1
    fig["total_seconds"] = time.perf_counter() - t0
    targets = report(fig)
    print(f"total {fig['total_seconds']:.0f} s")
    write_json(args.json, fig, targets)
    return 0


if __name__ == "__main__":
    sys.exit(main())
