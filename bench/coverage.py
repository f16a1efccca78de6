"""Coverage of the per-run success interval: Wilson vs batch means, per route.

A benchmark, not a test: it prints figures and PASS/MISS per target and always exits 0.

    python bench/coverage.py [--runs R] [--workers W] [--json FILE]

Runs the full scenarios/support.yaml (spike and outage included) R times with seeds
1..R. The "true" success rate of a route is the pooled rate over all R runs (successes
/ requests); each run's summary interval (`success_ci_low/high`, batch means with its
Wilson fallback, `harness.intervals`) and the Wilson interval on the same counts are
checked against it. Target: the summary interval covers 93-97% of the time on every
route (at least 93% on a route whose pooled rate is exactly 0 or 1, where any interval
reaching that bound covers). Wilson is shown for comparison only.
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
from _common import machine, print_targets, write_json  # bench/_common.py, beside this script

from harness.intervals import wilson
from harness.run import simulate
from harness.spec import load_suite

SUITE = Path(__file__).resolve().parents[1] / "scenarios" / "support.yaml"
TARGET = (0.93, 0.97)


def one_run(seed: int) -> list[dict[str, Any]]:
    """Per route of one seeded run: requests, successes and both intervals."""
    suite = load_suite(SUITE, [f"seed={seed}"]).suite
    summary = simulate(suite).summary.to_pandas()
    rows = []
    for r in summary.to_dict("records"):
        n, rate = int(r["requests"]), float(r["success_rate"])
        succ = round(rate * n)
        rows.append({
            "route": str(r["route"]), "n": n, "succ": succ,
            "new": (float(r["success_ci_low"]), float(r["success_ci_high"])),
            "method": str(r["ci_method"]), "block": int(r["ci_block_requests"]),
            "wilson": wilson(succ, n),
        })  # fmt: skip
    return rows


def covered(ci: tuple[float, float], truth: float) -> bool:
    """`truth` inside the closed interval (a NaN interval does not cover)."""
    return not math.isnan(ci[0]) and ci[0] <= truth <= ci[1]


def coverage(runs: list[list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Per route: truth (pooled rate), coverage of each method, widths and block lengths."""
    out: dict[str, dict[str, Any]] = {}
    routes = sorted({r["route"] for run in runs for r in run}, key=lambda s: (s == "all", s))
    for route in routes:
        rows = [r for run in runs for r in run if r["route"] == route]
        truth = sum(r["succ"] for r in rows) / sum(r["n"] for r in rows)
        rates = np.array([r["succ"] / r["n"] for r in rows])
        out[route] = {
            "runs": len(rows),
            "mean_requests": float(np.mean([r["n"] for r in rows])),
            "truth": truth,
            "sd_across_runs": float(rates.std(ddof=1)),
            "wilson_coverage": float(np.mean([covered(r["wilson"], truth) for r in rows])),
            "new_coverage": float(np.mean([covered(r["new"], truth) for r in rows])),
            "wilson_mean_width": float(np.mean([r["wilson"][1] - r["wilson"][0] for r in rows])),
            "new_mean_width": float(np.mean([r["new"][1] - r["new"][0] for r in rows])),
            "batch_means_share": float(np.mean([r["method"] == "batch means" for r in rows])),
            "median_block": float(np.median([r["block"] for r in rows])),
        }
    return out


def binomial_band(p: float, runs: int) -> tuple[float, float]:
    """Where a coverage of `p` measured over `runs` runs lands 95% of the time."""
    half = 1.959963984540054 * math.sqrt(p * (1 - p) / runs)
    return p - half, p + half


def main() -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--runs", type=int, default=100, help="independent runs (seeds 1..R)")
    p.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1), help="processes")
    p.add_argument("--json", type=Path, help="write every figure to this file")
    args = p.parse_args()
    t0 = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        runs = list(pool.map(one_run, range(1, args.runs + 1)))
    wall = time.perf_counter() - t0
    table = coverage(runs)
    lo, hi = binomial_band(0.95, args.runs)
    print(f"{args.runs} runs of {SUITE.name} in {wall:.0f} s ({args.workers} workers)")
    print(
        f"a true 95% measures {100 * lo:.1f}-{100 * hi:.1f}% over {args.runs} runs, 95% of the time"
    )
    print(f"{'route':<12}{'requests':>9}{'truth':>8}{'sd':>7}{'Wilson':>8}{'batch':>8}"
          f"{'W width':>9}{'BM width':>9}{'block':>7}{'BM share':>9}")  # fmt: skip
    for route, f in table.items():
        print(f"{route:<12}{f['mean_requests']:>9.0f}{100 * f['truth']:>7.2f}%"
              f"{100 * f['sd_across_runs']:>6.2f}%{100 * f['wilson_coverage']:>7.0f}%"
              f"{100 * f['new_coverage']:>7.0f}%{100 * f['wilson_mean_width']:>8.2f}%"
              f"{100 * f['new_mean_width']:>8.2f}%{f['median_block']:>7.0f}"
              f"{100 * f['batch_means_share']:>8.0f}%")  # fmt: skip
    targets = {}
    for route, f in table.items():
        cov = f["new_coverage"]
        if f["truth"] in (0.0, 1.0):  # every interval reaching the bound covers: no band to hit
            targets[f"{route}: covers {100 * cov:.0f}% (truth {100 * f['truth']:.0f}%: "
                    f"target >= {100 * TARGET[0]:.0f}%)"] = cov >= TARGET[0]  # fmt: skip
        else:
            targets[f"{route}: summary interval covers {100 * cov:.0f}% "
                    f"(target {100 * TARGET[0]:.0f}-{100 * TARGET[1]:.0f}%)"] = (
                TARGET[0] <= cov <= TARGET[1])  # fmt: skip
    print_targets(targets)
    fig = {"machine": machine(), "runs": args.runs, "wall_s": wall, "routes": table}
    write_json(args.json, fig, targets)


if __name__ == "__main__":
    main()
