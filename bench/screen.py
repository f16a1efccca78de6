"""Threshold screening throughput: exact metrics for many thresholds over a million requests.

A benchmark, not a test: it prints figures and PASS/MISS per target and always exits 0.

    python bench/screen.py [--requests 1000000] [--settings 1000] [--naive-settings 20]
                           [--repeats 3] [--routing-settings 10] [--json FILE]

Attempts are drawn at random, seeded: 3 tiers, 4 routes (40/30/20/10% of requests),
1/2/3 attempts for 10/20/70% of requests, confidences Beta(5, 2), Beta(6, 2), Beta(8, 2)
by tier, latencies cumulative lognormal (medians 400/900/2000 ms), costs cumulative
lognormal, tokens cumulative integers, success 70/80/90% by tier. The thresholds are
`--settings` points evenly spaced over [0, 1].

1. `screen()` with exact p50/p95/p99, `--repeats` calls. The first call of a process
   pays for fresh memory pages (costly in VMs); the target is judged on the median.
2. `screen()` with p95/p99 only, as often.
3. `screen_naive()` on `--naive-settings` of the thresholds, spread over the grid:
   seconds per setting, extrapolated to all of them, and a check that its numbers
   equal screen()'s for those thresholds bit for bit. For context, the same
   recomputation with plain numpy means (not exact; math.fsum makes the reference
   exact and slower).
4. Peak traced memory (tracemalloc) of one screen() call, and `threshold_for_share`.
5. Routing tables on scenarios/support.yaml as shipped: the route probe (one probe run
   per starting tier and route profile), then every setting of a grid over the
   classifier's minimum confidence, the hard class's route and the threshold, screened
   from it; against full engine runs of `--routing-settings` of those settings,
   extrapolated (0 skips this part).
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from _common import machine, print_targets, write_json  # bench/_common.py, beside this script

from harness.spec import load_suite
from harness.sweep._screen import (
    MEANS,
    Attempts,
    accepted_attempt,
    screen,
    screen_naive,
    threshold_for_share,
)

TARGET_SETTINGS_PER_S = 500.0
TIERS = 3
ROUTE_SHARES = (0.4, 0.3, 0.2, 0.1)
FULL = (50.0, 95.0, 99.0)
TAILS = (95.0, 99.0)
R = TypeVar("R")


def attempts(n: int, seed: int = 20_260_101) -> Attempts:
    """Realistic random attempts for `n` requests (see the module docstring)."""
    rng = np.random.default_rng(seed)
    shape = (n, TIERS)
    conf = np.stack([rng.beta(a, 2.0, n) for a in (5.0, 6.0, 8.0)], axis=1)
    latency = np.cumsum(rng.lognormal(np.log([400.0, 900.0, 2000.0]), 0.6, shape), axis=1)
    cost = np.cumsum(rng.lognormal(np.log([1e-4, 1e-3, 1e-2]), 0.5, shape), axis=1)
    tokens = np.cumsum(rng.integers(100, 2000, shape), axis=1)
    success = rng.random(shape) < np.array([0.7, 0.8, 0.9])
    count = rng.choice([1, 2, 3], n, p=[0.1, 0.2, 0.7])
    pad = np.arange(TIERS) >= count[:, None]
    conf[pad] = np.nan
    return Attempts(
        confidence=conf,
        latency_ms=latency,
        cost_usd=cost,
        tokens=tokens,
        success=success,
        tier=np.tile(np.arange(TIERS, dtype=np.int16), (n, 1)),
        count=count,
        group=rng.choice(len(ROUTE_SHARES), n, p=ROUTE_SHARES),
        n_tiers=TIERS,
        n_groups=len(ROUTE_SHARES),
    )


def timed(fn: Callable[[], R]) -> tuple[R, float]:
    """Call `fn` after a full GC; return its result and wall seconds."""
    gc.collect()
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def repeated(fn: Callable[[], object], repeats: int) -> list[float]:
    """Wall seconds of `repeats` calls of `fn`."""
    return [timed(fn)[1] for _ in range(repeats)]


def plain_numpy(att: Attempts, theta: float) -> dict[str, Any]:
    """What a straightforward script recomputes per setting: numpy means, not exact."""
    f = accepted_attempt(att, theta)
    rows = np.arange(att.n)
    out: dict[str, Any] = {}
    latency = att.latency_ms[rows, f]
    for g in [*range(att.n_groups), None]:
        idx = rows if g is None else np.flatnonzero(att.group == g)
        for metric, field in MEANS:
            out[f"{metric}/{g}"] = np.mean(getattr(att, field)[idx, f[idx]])
        out[f"success/{g}"] = np.mean(att.success[idx, f[idx]])
        out[f"tiers/{g}"] = np.bincount(att.tier[idx, f[idx]], minlength=att.n_tiers)
        out[f"pct/{g}"] = np.percentile(latency[idx], FULL)
    return out


def disagreements(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> list[str]:
    """Keys whose arrays differ in any bit."""
    return [
        k for k in want if got[k].shape != want[k].shape or got[k].tobytes() != want[k].tobytes()
    ]


def peak_traced_mib(fn: Callable[[], object]) -> float:
    """Peak memory numpy and Python allocate during `fn`, MiB."""
    gc.collect()
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


SUPPORT = Path(__file__).resolve().parents[1] / "scenarios" / "support.yaml"
MIN_CONFIDENCE = (0.0, 0.3, 0.5, 0.6, 0.7, 0.8, 0.9)
HARD_ROUTES = ("reasoning", "escalation")
ROUTING_THRESHOLDS = tuple(round(0.30 + 0.01 * i, 2) for i in range(61))


def routing(full_runs: int) -> dict[str, Any]:
    """Part 5: screen a routing-table grid from a route probe; time full runs of a few."""
    from harness.run import simulate
    from harness.sweep import route_probe

    keys = ["stack.classifier.min_confidence", "stack.class_routes.hard"]
    base = load_suite(SUPPORT).suite
    rp, probe_s = timed(lambda: route_probe(base, keys))
    combos = [(m, r) for m in MIN_CONFIDENCE for r in HARD_ROUTES]

    def screen_all() -> int:
        for m, r in combos:
            own = load_suite(SUPPORT, [f"{keys[0]}={m}", f"{keys[1]}={r}"]).suite
            screen(rp.probe_for(own).attempts, ROUTING_THRESHOLDS, FULL)
        return len(combos) * len(ROUTING_THRESHOLDS)

    settings, screen_s = timed(screen_all)
    picked = combos[:: max(1, len(combos) // max(1, full_runs))][:full_runs]
    flags = [[f"{keys[0]}={m}", f"{keys[1]}={r}", "stack.escalation.confidence_threshold=0.6"]
             for m, r in picked]  # fmt: skip
    _, runs_s = timed(lambda: [simulate(load_suite(SUPPORT, f).suite) for f in flags])
    per_run = runs_s / max(1, len(picked))
    return {
        "requests": base.traffic.requests,
        "probe_runs": len(rp.variants),
        "probe_s": probe_s,
        "settings": settings,
        "screen_s": screen_s,
        "settings_per_s": settings / (probe_s + screen_s),
        "full_runs": len(picked),
        "full_run_s": per_run,
        "full_runs_extrapolated_s": per_run * settings,
    }


def report(fig: dict[str, Any]) -> dict[str, bool]:
    """Print the table and the targets; return target name -> met."""
    s, n = fig["settings"], fig["requests"]
    print(f"\n{'what':<34}{'seconds':>9}{'settings/s':>13}   ({s:,} thresholds, {n:,} requests)")
    rows = [
        ("screen p50/p95/p99, first call", fig["screen_s"][0]),
        ("screen p50/p95/p99, median", statistics.median(fig["screen_s"])),
        ("screen p50/p95/p99, best", min(fig["screen_s"])),
        ("screen p95/p99, median", statistics.median(fig["tails_s"])),
        ("screen p95/p99, best", min(fig["tails_s"])),
        ("naive (exact), extrapolated", fig["naive_s_per_setting"] * s),
        ("plain numpy (inexact), extrap.", fig["plain_s_per_setting"] * s),
    ]
    for name, secs in rows:
        print(f"{name:<34}{secs:>9.3f}{s / secs:>13,.0f}")
    print(f"screen runs (s): {', '.join(f'{x:.3f}' for x in fig['screen_s'])}")
    print(f"p95/p99 runs (s): {', '.join(f'{x:.3f}' for x in fig['tails_s'])}")
    print(
        f"screen / naive: {fig['speedup_vs_naive']:,.0f}x (median); "
        f"screen / plain numpy: {fig['speedup_vs_plain']:,.0f}x"
    )
    bad = fig["naive_disagreements"]
    print(
        f"naive on {fig['naive_settings']} thresholds: "
        + ("every key equal to screen()'s, bit for bit" if not bad else f"DIFFERS in {bad}")
    )
    print(f"peak traced memory of one screen() call: {fig['peak_traced_mib']:,.0f} MiB")
    share = fig["threshold_for_share"]
    print(
        f"threshold_for_share(premium, 20%): theta {share['theta']:.6g} gives "
        f"{share['share']:.4%} in {share['seconds']:.2f} s"
    )
    targets = {
        f"screen >= {TARGET_SETTINGS_PER_S:,.0f} settings/s (median, exact p50/p95/p99)": (
            fig["settings_per_s"]["screen_median"] >= TARGET_SETTINGS_PER_S
        ),
        f"screen >= {TARGET_SETTINGS_PER_S:,.0f} settings/s (first call)": (
            fig["settings_per_s"]["screen_first"] >= TARGET_SETTINGS_PER_S
        ),
        "screen equals screen_naive bit for bit on the subset": not bad,
    }
    rt = fig.get("routing")
    if rt:
        print(
            f"\nrouting tables ({rt['requests']:,} requests of scenarios/support.yaml): route "
            f"probe of {rt['probe_runs']} runs in {rt['probe_s']:.1f} s;\n{rt['settings']:,} "
            f"settings (min_confidence x class_routes.hard x threshold) screened in "
            f"{rt['screen_s']:.1f} s more:\n{rt['settings_per_s']:,.0f} settings/s all in"
        )
        print(
            f"full engine runs: {rt['full_run_s']:.2f} s each ({rt['full_runs']} timed), "
            f"{rt['full_runs_extrapolated_s'] / 60:,.0f} min for the grid: "
            f"{rt['full_runs_extrapolated_s'] / (rt['probe_s'] + rt['screen_s']):,.0f}x slower"
        )
    print_targets(targets)
    return targets


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark, print the report, optionally write JSON. Always returns 0."""
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--requests", type=int, default=1_000_000, help="requests in the attempts")
    p.add_argument("--settings", type=int, default=1_000, help="thresholds to screen")
    p.add_argument(
        "--naive-settings", type=int, default=20, help="thresholds for screen_naive (the check)"
    )
    p.add_argument("--repeats", type=int, default=3, help="screen() calls per variant")
    p.add_argument(
        "--routing-settings", type=int, default=10, help="full runs timed in part 5 (0: skip)"
    )
    p.add_argument("--json", type=Path, help="write every figure to this file")
    args = p.parse_args(argv)
    n, s, repeats = args.requests, args.settings, max(1, args.repeats)
    host = machine()
    print(
        f"machine: {host['cpu_count']} cpus ({host['cpu_model']}), python {host['python']}, "
        f"numpy {host['numpy']}"
    )
    att, build_s = timed(lambda: attempts(n))
    theta = np.linspace(0.0, 1.0, s)
    print(f"attempts: {n:,} requests, {int(att.count.sum()):,} attempts ({build_s:.1f} s to draw)")
    print(f"thresholds: {s:,} evenly spaced over [0, 1]; {repeats} calls each", flush=True)

    full, first = timed(lambda: screen(att, theta, FULL))
    screen_s = [first, *repeated(lambda: screen(att, theta, FULL), repeats - 1)]
    tails_s = repeated(lambda: screen(att, theta, TAILS), repeats)

    pick = np.unique(np.linspace(0, s - 1, min(s, max(1, args.naive_settings))).astype(int))
    naive, naive_s = timed(lambda: screen_naive(att, theta[pick], FULL))
    bad = disagreements({k: v[pick] for k, v in full.items()}, naive)
    _, plain_s = timed(lambda: [plain_numpy(att, float(t)) for t in theta[pick]])
    peak = peak_traced_mib(lambda: screen(att, theta, FULL))

    target = 0.2
    share_theta, share_s = timed(lambda: threshold_for_share(att, TIERS - 1, target))
    got_share = screen(att, [share_theta], ())["share_tier"][0, -1, TIERS - 1]

    median = statistics.median(screen_s)
    fig: dict[str, Any] = {
        "machine": host,
        "command": [sys.executable, *sys.argv],
        "requests": n,
        "attempts": int(att.count.sum()),
        "settings": s,
        "repeats": repeats,
        "screen_s": screen_s,
        "tails_s": tails_s,
        "naive_settings": len(pick),
        "naive_s_per_setting": naive_s / len(pick),
        "plain_s_per_setting": plain_s / len(pick),
        "naive_disagreements": bad,
        "settings_per_s": {
            "screen_first": s / screen_s[0],
            "screen_median": s / median,
            "screen_best": s / min(screen_s),
            "tails_median": s / statistics.median(tails_s),
            "naive": len(pick) / naive_s,
            "plain_numpy": len(pick) / plain_s,
        },
        "speedup_vs_naive": (naive_s / len(pick)) * s / median,
        "speedup_vs_plain": (plain_s / len(pick)) * s / median,
        "peak_traced_mib": peak,
        "threshold_for_share": {
            "tier": TIERS - 1,
            "target": target,
            "theta": share_theta,
            "share": float(got_share),
            "seconds": share_s,
        },
    }
    if args.routing_settings > 0:
        fig["routing"] = routing(args.routing_settings)
    targets = report(fig)
    write_json(args.json, fig, targets)
    return 0


if __name__ == "__main__":
    sys.exit(main())
