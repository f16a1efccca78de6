"""Coverage of evalx's intervals on the full support suite: per run and across replications.

A benchmark, not a test: it prints figures and PASS/MISS per target and always exits 0.

    python bench/coverage.py [--runs R] [--groups G] [--workers W] [--json FILE]

Runs the full scenarios/support.yaml (spike and outage included) R times with seeds
1..R (default 100).

Per run: the summary's success interval (`success_ci_*`: batch means over arrival-time
blocks, `harness.intervals`) is checked against the truth, the rate pooled over all R
runs. Target: 93-97% on every route (at least 93% where the truth is exactly 0 or 1, where
any interval reaching the bound covers). For comparison: the Wilson interval on the same
counts, and what a batch-means interval on cost per request would cover if a run stored
one (it does not: see the README; the cost of a run is driven by one episode, whether the
outage tips the human queue, that a single run cannot see vary).

Across replications: G random sets of r runs (r = 3, 5, 10) drawn from the R, each
reduced with `harness.replicate.across` as `evalx run --replications r` does; the truth
of a metric is its mean over all R runs (what the across-replication mean estimates).
Reported: coverage for success, p95, p99 and cost per request per route, and whether
evalx warned that r is too few (`min_replications`). The sets share runs, so these figures are
estimates with more spread than G independent sets would have.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from _common import machine, print_targets, write_json  # bench/_common.py, beside this script

from harness.intervals import interval, wilson
from harness.metrics import ALL
from harness.replicate import across
from harness.run import simulate
from harness.spec import load_suite

SUITE = Path(__file__).resolve().parents[1] / "scenarios" / "support.yaml"
TARGET = (0.93, 0.97)
PER_RUN = {
    "success": ("success_rate", "success_ci_low", "success_ci_high"),
    "cost (not stored)": ("cost_per_request_usd", "cost_ci_low", "cost_ci_high"),
}
ACROSS = {
    "success": "success_rate",
    "p95": "p95_latency_ms",
    "p99": "p99_latency_ms",
    "cost": "cost_per_request_usd",
}
SIZES = (3, 5, 10)


def one_run(seed: int) -> list[dict[str, Any]]:
    """One seeded run: its summary rows, with a batch-means interval on cost added."""
    suite = load_suite(SUITE, [f"seed={seed}"]).suite
    result = simulate(suite)
    summary = result.summary.to_pandas()
    req = result.requests.select(["route", "arrival_s", "cost_usd"]).to_pandas()
    req = req.sort_values("arrival_s", kind="stable")
    costs = {str(r): g["cost_usd"].to_numpy(np.float64) for r, g in req.groupby("route")}
    costs[ALL] = req["cost_usd"].to_numpy(np.float64)
    rows = summary.to_dict("records")
    for row in rows:
        ci = interval(costs[str(row["route"])], share=False)
        row["cost_ci_low"], row["cost_ci_high"] = ci.low, ci.high
    return rows


def covered(lo: float, hi: float, truth: float) -> bool:
    """`truth` inside the closed interval (a NaN interval does not cover)."""
    return not math.isnan(lo) and lo <= truth <= hi


def per_run(summaries: pd.DataFrame) -> dict[str, Any]:
    """Per route and metric: truth, coverage, mean width; Wilson for success."""
    out: dict[str, Any] = {}
    for route, g in summaries.groupby("route", sort=False):
        n = g["requests"].to_numpy(np.float64)
        succ = np.round(g["success_rate"].to_numpy() * n)
        truths = {
            "success": float(succ.sum() / n.sum()),
            "cost (not stored)": float(g["total_cost_usd"].sum() / n.sum()),
        }
        row: dict[str, Any] = {"runs": len(g), "mean_requests": float(n.mean())}
        for name, (_, lo, hi) in PER_RUN.items():
            ok = [covered(a, b, truths[name]) for a, b in zip(g[lo], g[hi], strict=True)]
            row[name] = {
                "truth": truths[name],
                "coverage": float(np.mean(ok)),
                "mean_width": float(np.nanmean(g[hi] - g[lo])),
            }
        w = [wilson(s, k) for s, k in zip(succ, n, strict=True)]
        row["success_wilson"] = float(np.mean([covered(a, b, truths["success"]) for a, b in w]))
        row["block"] = float(np.median(g["ci_block_requests"]))
        out[str(route)] = row
    return out


def across_replications(summaries: pd.DataFrame, groups: int, runs: int) -> dict[str, Any]:
    """Per replication count r, route and metric: coverage of `across` and its warnings."""
    rng = np.random.default_rng(0)
    truth = summaries.groupby("route")[list(ACROSS.values())].mean()
    by_seed = dict(iter(summaries.groupby("seed")))
    seeds = sorted(by_seed)
    out: dict[str, Any] = {}
    for r in SIZES:
        hits: dict[tuple[str, str], list[bool]] = {}
        warned: dict[tuple[str, str], list[bool]] = {}
        for _ in range(groups):
            pick = rng.choice(len(seeds), size=r, replace=False)
            stats = across(pd.concat([by_seed[seeds[i]] for i in pick]))
            for rec in stats.to_dict("records"):
                for name, metric in ACROSS.items():
                    if rec["metric"] != metric:
                        continue
                    key = (str(rec["route"]), name)
                    t = float(truth.loc[rec["route"], metric])
                    hits.setdefault(key, []).append(covered(rec["ci_low"], rec["ci_high"], t))
                    warned.setdefault(key, []).append(rec["min_replications"] > r)
        out[str(r)] = {
            f"{route}/{name}": {
                "coverage": float(np.mean(v)),
                "warned": float(np.mean(warned[(route, name)])),
            }
            for (route, name), v in hits.items()
        }
    return out


def binomial_band(p: float, runs: int) -> tuple[float, float]:
    """Where a coverage of `p` measured over `runs` runs lands 95% of the time."""
    half = 1.959963984540054 * math.sqrt(p * (1 - p) / runs)
    return p - half, p + half


def main() -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--runs", type=int, default=100, help="independent runs (seeds 1..R)")
    p.add_argument("--groups", type=int, default=400, help="replication sets per size")
    p.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1), help="processes")
    p.add_argument("--json", type=Path, help="write every figure to this file")
    args = p.parse_args()
    t0 = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        results = list(pool.map(one_run, range(1, args.runs + 1)))
    wall = time.perf_counter() - t0
    frames = [pd.DataFrame(rows).assign(seed=i) for i, rows in enumerate(results)]
    summaries = pd.concat(frames, ignore_index=True)
    table = per_run(summaries)
    lo, hi = binomial_band(0.95, args.runs)
    print(f"{args.runs} runs of {SUITE.name} in {wall:.0f} s ({args.workers} workers)")
    print(
        f"a true 95% measures {100 * lo:.1f}-{100 * hi:.1f}% over {args.runs} runs, 95% of "
        "the time\n\nper-run intervals: coverage (mean width)"
    )
    print(
        f"{'route':<12}{'requests':>9}{'block':>6}{'success':>16}{'Wilson':>8}"
        f"{'cost/request (not stored)':>28}"
    )
    for route, f in table.items():
        s, c = f["success"], f["cost (not stored)"]
        print(
            f"{route:<12}{f['mean_requests']:>9.0f}{f['block']:>6.0f}"
            f"{100 * s['coverage']:>6.0f}% ({100 * s['mean_width']:4.1f}pp)"
            f"{100 * f['success_wilson']:>7.0f}%"
            f"{100 * c['coverage']:>12.0f}% ({c['mean_width']:>9.4f} $)"
        )
    rep = across_replications(summaries, args.groups, args.runs)
    print(
        f"\nacross replications ({args.groups} random sets per size): coverage, "
        "'w' where evalx warns that r is too few"
    )
    keys = list(rep[str(SIZES[0])])
    print(f"{'route/metric':<22}" + "".join(f"{'r=' + str(r):>10}" for r in SIZES))
    for key in keys:
        cells = []
        for r in SIZES:
            f = rep[str(r)][key]
            cells.append(f"{100 * f['coverage']:>8.0f}%{'w' if f['warned'] > 0.5 else ' '}")
        print(f"{key:<22}" + "".join(cells))
    targets = {}
    for route, f in table.items():
        for name in ("success",):
            cov, truth = f[name]["coverage"], f[name]["truth"]
            if name == "success" and truth in (0.0, 1.0):
                targets[
                    f"{route} {name}: per-run interval covers {100 * cov:.0f}% (truth at "
                    f"the bound: target >= {100 * TARGET[0]:.0f}%)"
                ] = cov >= TARGET[0]
            else:
                targets[
                    f"{route} {name}: per-run interval covers {100 * cov:.0f}% "
                    f"(target {100 * TARGET[0]:.0f}-{100 * TARGET[1]:.0f}%)"
                ] = TARGET[0] <= cov <= TARGET[1]
    for r in SIZES:
        for key, f in rep[str(r)].items():
            if f["warned"] > 0.5:
                continue
            targets[
                f"r={r} {key}: across-replication interval covers {100 * f['coverage']:.0f}% "
                f"(unwarned: target >= {100 * TARGET[0]:.0f}%)"
            ] = f["coverage"] >= TARGET[0]
    print_targets(targets)
    fig = {"machine": machine(), "runs": args.runs, "wall_s": wall, "per_run": table, "across": rep}
    write_json(args.json, fig, targets)


if __name__ == "__main__":
    main()
