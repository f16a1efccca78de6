"""Engine throughput vs a bare SimPy model, and peak memory of a full run.

A benchmark, not a test: it prints figures and PASS/MISS per target and always exits 0.

    python bench/engine.py [--requests N] [--memory-requests N] [--repeats N] [--json FILE]

Phases of one pass over scenarios/support.yaml scaled to N requests, each timed with
`time.perf_counter`: sampling (requests + world tape), the engine loop (`Engine(...).run()`,
repeated; best and median reported), records (requests/spans tables + summary). Then a
bare SimPy model doing the same number of timed waits per request, and a full `simulate()`
at `--memory-requests` in a fresh subprocess for peak RSS.
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import simpy
from _common import machine, print_targets, write_json  # bench/_common.py, beside this script

from harness.engine import Engine, Trace
from harness.faults import phases, schedule
from harness.metrics import summary_table
from harness.records import requests_table, spans_table
from harness.run import simulate
from harness.spec import Suite, load_suite
from harness.stack import ReferenceStack
from harness.traffic import Requests, sample_requests
from harness.world import Tape, sample_tape

SUITE = Path(__file__).resolve().parents[1] / "scenarios" / "support.yaml"
TARGET_ENGINE_RPS = 50_000.0
TARGET_SIMPY_RATIO = 1.5
TARGET_PEAK_GIB = 1.5
KIB_PER_GIB = 1024.0**2
T = TypeVar("T")
CAVEAT = (
    "engine vs SimPy is not apples to apples: the engine runs the full routing stack per "
    "request (classifier, tiers, tools, guardrails, spans); the SimPy model only waits."
)


@dataclass
class Timings:
    """Seconds per phase; `engine_s` holds one entry per repeat."""

    sampling_s: float
    engine_s: list[float]
    records_s: float
    total_s: float  # first pass, sampling + engine + records back to back


def load(requests: int) -> Suite:
    """The support suite scaled to `requests` (rates and spikes unchanged)."""
    return load_suite(SUITE, [f"traffic.requests={requests}"]).suite


def timed(fn: Callable[[], T]) -> tuple[T, float]:
    """Call `fn` after a full GC; return its result and wall seconds."""
    gc.collect()
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def run_engine(suite: Suite, reqs: Requests, tape: Tape) -> Trace:
    """Build the engine as `harness.run.simulate` does and run it."""
    return Engine(suite, reqs, tape, schedule(suite), ReferenceStack(suite)).run()


def sample(suite: Suite) -> tuple[Requests, Tape]:
    """The requests and the world tape, as `simulate` samples them."""
    reqs = sample_requests(suite)
    return reqs, sample_tape(suite, reqs)


def records(suite: Suite, trace: Trace, reqs: Requests) -> None:
    """The requests and spans tables and the summary, as `simulate` builds them."""
    table = requests_table(trace, reqs, phases(suite, reqs.arrival_s))
    spans_table(trace)
    summary_table(table)


def first_pass(suite: Suite) -> tuple[Timings, Requests, Tape, int, float]:
    """Sampling, engine and records back to back, as `simulate` runs them.

    Returns the timings, the requests and tape (for the repeats), the heap events and the
    mean sojourn (arrival to finish, simulated seconds).
    """
    t0 = time.perf_counter()
    (reqs, tape), sampling = timed(lambda: sample(suite))
    trace, engine = timed(lambda: run_engine(suite, reqs, tape))
    _, records_s = timed(lambda: records(suite, trace, reqs))
    total = time.perf_counter() - t0
    sojourn = float(np.mean(trace.end_s - reqs.arrival_s))
    return Timings(sampling, [engine], records_s, total), reqs, tape, trace.events, sojourn


def bench_engine(suite: Suite, repeats: int) -> tuple[Timings, Requests, int, float]:
    """The first pass, then `repeats - 1` more engine runs (checked to be identical)."""
    tm, reqs, tape, events, sojourn = first_pass(suite)
    for _ in range(repeats - 1):
        trace, secs = timed(lambda: run_engine(suite, reqs, tape))
        if trace.events != events:
            raise RuntimeError(f"nondeterministic run: {trace.events} != {events} events")
        tm.engine_s.append(secs)
    return tm, reqs, events, sojourn


def wait_counts(n: int, waits: int) -> list[int]:
    """Split `waits` over `n` requests as floor/ceil of the mean, evenly and deterministically."""
    return [(i + 1) * waits // n - i * waits // n for i in range(n)]


def bench_simpy(arrivals: Sequence[float], counts: Sequence[int], mean_wait_s: float) -> float:
    """Seconds of `env.run()` for requests arriving at `arrivals`, each doing its waits.

    Arrivals come from a source process (SimPy's usual idiom), so the timing includes its
    inter-arrival timeouts and one process start per request; the engine merges arrivals
    outside its heap. Waits are exponential with mean `mean_wait_s`.
    """
    rng = np.random.default_rng(12345)
    durations = rng.exponential(mean_wait_s, sum(counts)).tolist()
    env = simpy.Environment()

    def request(lo: int, hi: int) -> Generator[simpy.Event, Any, None]:
        for d in durations[lo:hi]:
            yield env.timeout(d)

    def source() -> Generator[simpy.Event, Any, None]:
        lo = 0
        for t, k in zip(arrivals, counts, strict=True):
            if t > env.now:
                yield env.timeout(t - env.now)
            env.process(request(lo, lo + k))
            lo += k

    env.process(source())
    _, secs = timed(env.run)
    return secs


def vm_hwm_kib() -> int | None:
    """Peak RSS of this address space from /proc (Linux); None elsewhere."""
    status = Path("/proc/self/status")
    if not status.exists():
        return None
    line = next((ln for ln in status.read_text().splitlines() if ln.startswith("VmHWM:")), "")
    return int(line.split()[1]) if line else None


def memory_child(requests: int) -> None:
    """Run a full `simulate()` and print peak RSS and wall time as JSON (subprocess side)."""
    suite = load(requests)
    base_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    result = simulate(suite)
    wall = time.perf_counter() - t0
    out = {
        "requests": result.trace.n,
        "spans": result.spans.num_rows,
        "wall_s": wall,
        "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "vm_hwm_kib": vm_hwm_kib(),
        "baseline_rss_kib": base_kib,
    }
    print(json.dumps(out))


def bench_memory(requests: int) -> dict[str, Any]:
    """Peak RSS of a full run in a fresh interpreter.

    Linux carries the parent's peak RSS over fork+exec into the child's `ru_maxrss`, so
    this must run while the parent is still small (before the throughput passes); the
    child's /proc VmHWM, which exec resets, is reported alongside as a cross-check.
    """
    parent_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    cmd = [sys.executable, __file__, "--memory-child", str(requests)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    out: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    out["parent_rss_kib"] = parent_kib
    out["peak_rss_gib"] = out["peak_rss_kib"] / KIB_PER_GIB
    out["requests_per_s"] = out["requests"] / out["wall_s"]
    return out


def report(fig: dict[str, Any]) -> dict[str, bool]:
    """Print the table and the targets; return target name -> met."""
    n, tm, rps, mem = fig["requests"], fig["timings"], fig["requests_per_s"], fig["memory"]
    eng, sp = tm["engine_s"], fig["simpy_s"]
    print(
        f"\nheap events {fig['heap_events']:,} ({fig['waits_per_request']:.3f} waits/request, "
        f"mean sojourn {fig['mean_sojourn_s']:.2f} s simulated)"
    )
    rows = [
        ("sampling", tm["sampling_s"], None),
        ("engine best", min(eng), rps["engine_best"]),
        ("engine median", statistics.median(eng), rps["engine_median"]),
        ("records", tm["records_s"], None),
        ("total (1st pass)", tm["total_s"], rps["end_to_end"]),
        ("simpy best", min(sp), rps["simpy_best"]),
        ("simpy median", statistics.median(sp), rps["simpy_median"]),
    ]
    print(f"{'phase':<18}{'seconds':>10}{'req/s':>12}   ({n:,} requests)")
    for name, secs, r in rows:
        print(f"{name:<18}{secs:>10.3f}{'' if r is None else f'{r:,.0f}':>12}")
    print(f"engine runs (s): {', '.join(f'{s:.3f}' for s in eng)}")
    print(f"simpy runs (s):  {', '.join(f'{s:.3f}' for s in sp)}")
    best_ratio = rps["engine_best"] / rps["simpy_best"]
    print(f"engine / simpy: {fig['engine_over_simpy']:.2f}x median, {best_ratio:.2f}x best")
    print(f"note: {CAVEAT}")
    targets = {
        f"engine >= {TARGET_ENGINE_RPS:,.0f} req/s (median)": (
            rps["engine_median"] >= TARGET_ENGINE_RPS
        ),
        f"engine >= {TARGET_SIMPY_RATIO}x SimPy (median)": (
            fig["engine_over_simpy"] >= TARGET_SIMPY_RATIO
        ),
    }
    if mem is not None:
        base = mem["baseline_rss_kib"] / KIB_PER_GIB
        hwm = "" if mem["vm_hwm_kib"] is None else f", VmHWM {mem['vm_hwm_kib'] / KIB_PER_GIB:.3f}"
        print(
            f"memory (subprocess, simulate()): {mem['requests']:,} requests, {mem['spans']:,} "
            f"spans: peak RSS {mem['peak_rss_gib']:.3f} GiB (ru_maxrss{hwm}; "
            f"{base:.3f} GiB before simulate()), wall {mem['wall_s']:.1f} s "
            f"({mem['requests_per_s']:,.0f} req/s end to end)"
        )
        targets[f"peak RSS at {mem['requests']:,} requests <= {TARGET_PEAK_GIB} GiB"] = (
            mem["peak_rss_gib"] <= TARGET_PEAK_GIB
        )
    print_targets(targets)
    return targets


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark, print the report, optionally write JSON. Always returns 0."""
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--requests", type=int, default=200_000, help="requests for the throughput run")
    p.add_argument(
        "--memory-requests",
        type=int,
        default=1_000_000,
        help="requests for the peak-memory run in a subprocess (0 skips it)",
    )
    p.add_argument("--repeats", type=int, default=3, help="engine and SimPy repeats")
    p.add_argument("--json", type=Path, help="write every figure to this file")
    p.add_argument("--memory-child", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.memory_child is not None:
        memory_child(args.memory_child)
        return 0
    n, repeats = args.requests, max(1, args.repeats)
    host = machine(simpy=simpy.__version__)
    print(
        f"machine: {host['cpu_count']} cpus ({host['cpu_model']}), python {host['python']}, "
        f"numpy {host['numpy']}, simpy {host['simpy']}"
    )
    print(f"suite: {SUITE.name} at traffic.requests={n:,}, {repeats} repeats", flush=True)

    mem = bench_memory(args.memory_requests) if args.memory_requests > 0 else None
    tm, reqs, events, sojourn = bench_engine(load(n), repeats)
    waits = events - n  # heap events the engine processed, arrivals excluded
    per_req = waits / n
    mean_wait = sojourn / per_req if per_req else 1.0  # keeps SimPy's in-flight count alike
    counts = wait_counts(n, waits)
    arrivals = reqs.arrival_s.tolist()
    sp = [bench_simpy(arrivals, counts, mean_wait) for _ in range(repeats)]

    eng_best, eng_med = min(tm.engine_s), statistics.median(tm.engine_s)
    rps = {
        "engine_best": n / eng_best,
        "engine_median": n / eng_med,
        "simpy_best": n / min(sp),
        "simpy_median": n / statistics.median(sp),
        "end_to_end": n / tm.total_s,
    }
    fig: dict[str, Any] = {
        "machine": host,
        "command": [sys.executable, *sys.argv],
        "suite": str(SUITE),
        "requests": n,
        "repeats": repeats,
        "heap_events": events,
        "waits_per_request": per_req,
        "mean_sojourn_s": sojourn,
        "simpy_mean_wait_s": mean_wait,
        "timings": asdict(tm),
        "simpy_s": sp,
        "requests_per_s": rps,
        "engine_over_simpy": rps["engine_median"] / rps["simpy_median"],
        "memory": mem,
        "note": CAVEAT,
    }
    targets = report(fig)
    write_json(args.json, fig, targets)
    return 0


if __name__ == "__main__":
    sys.exit(main())
