"""Learning the world from data, measured: log replay speed and fitting speed.

A benchmark, not a test: it prints figures and PASS/MISS per target and always exits 0.

    python bench/replay.py [--repeats N] [--fit-rows N] [--json FILE]

1. Replaying the full Azure code trace (scenarios/azure-code.yaml, 8,819 requests with
   their logged arrivals and token counts) end to end with `simulate`, against the same
   suite with Poisson traffic of the same size and mean rate, in the same process;
   best of `--repeats`. Target: replay no slower than 0.8x Poisson.
2. `evalx fit latency` (the real command, in a subprocess) on a CSV of `--fit-rows`
   observed calls (1M by default) with time to first token and token counts drawn from
   known distributions. Target: under 10 s.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
from _common import machine, print_targets, write_json  # bench/_common.py, beside this script

from harness.run import simulate
from harness.spec import Suite, load_suite

ROOT = Path(__file__).resolve().parents[1]


def poisson_twin(suite: Suite, n: int, duration_s: float) -> Suite:
    """The same suite with Poisson arrivals of the same count and mean rate."""
    traffic = suite.traffic.model_copy(
        update={"log": None, "requests": n, "rate_per_s": n / duration_s}
    )
    return suite.model_copy(update={"traffic": traffic})


def best_rate(suite: Suite, repeats: int) -> tuple[float, int]:
    """(best requests per second of `simulate`, requests) over `repeats` runs."""
    best = float("inf")
    n = 0
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = simulate(suite)
        best = min(best, time.perf_counter() - t0)
        n = result.trace.n
    return n / best, n


def calls_csv(path: Path, rows: int) -> None:
    """`rows` observed calls of one model: ttft lognormal, 8-14 ms per token, 50-400 tokens."""
    rng = np.random.default_rng(11)
    out = rng.integers(50, 400, rows)
    ttft = np.exp(np.log(0.35) + 0.4 * rng.standard_normal(rows))
    per_token = rng.uniform(0.008, 0.014, rows)
    table = pa.table({
        "model": pa.array(["m"] * rows),
        "ttft_s": ttft,
        "latency_s": ttft + out * per_token,
        "input_tokens": rng.integers(200, 2000, rows),
        "output_tokens": out,
        "status": pa.array(["ok"] * rows),
    })  # fmt: skip
    pcsv.write_csv(table, path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--fit-rows", type=int, default=1_000_000)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    suite = load_suite(ROOT / "scenarios" / "azure-code.yaml").suite
    replay_rate, n = best_rate(suite, args.repeats)
    duration = float(simulate(suite).requests.column("arrival_s").to_numpy().max())
    twin = poisson_twin(suite, n, duration)
    poisson_rate, _ = best_rate(twin, args.repeats)
    ratio = replay_rate / poisson_rate
    print(f"replay of the Azure trace: {n:,} requests over {duration:,.0f} s of log time")
    print(f"  replay   {replay_rate:10,.0f} requests/s (best of {args.repeats}, end to end)")
    print(f"  poisson  {poisson_rate:10,.0f} requests/s (same suite, same size and mean rate)")
    print(f"  ratio    {ratio:10.2f}x")

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "calls.csv"
        calls_csv(data, args.fit_rows)
        exe = Path(sys.executable).parent / "evalx"
        t0 = time.perf_counter()
        done = subprocess.run(
            [str(exe), "fit", "latency", str(data), "--format", "csv", "--model", "m",
             "--out", str(Path(tmp) / "fit.yaml")],
            capture_output=True, text=True,
        )  # fmt: skip
        fit_s = time.perf_counter() - t0
    fit_ok = done.returncode == 0
    print(f"evalx fit latency on {args.fit_rows:,} calls: {fit_s:.2f} s (exit {done.returncode})")
    if not fit_ok:
        print(done.stderr.strip()[-2000:])

    targets = {
        f"log replay no slower than 0.8x Poisson ({ratio:.2f}x)": ratio >= 0.8,
        f"fit latency on {args.fit_rows:,} calls under 10 s ({fit_s:.1f} s)": fit_ok
        and fit_s < 10.0,
    }
    print_targets(targets)
    figures = {
        "machine": machine(),
        "replay_requests": n,
        "replay_requests_per_s": replay_rate,
        "poisson_requests_per_s": poisson_rate,
        "ratio": ratio,
        "fit_rows": args.fit_rows,
        "fit_seconds": fit_s,
    }
    write_json(args.json, figures, targets)


if __name__ == "__main__":
    main()
