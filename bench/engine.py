"""Engine throughput, compiled and pure, vs a bare SimPy model; peak memory; `evalx --help`.

A benchmark, not a test: it prints figures and PASS/MISS per target and always exits 0.

    python bench/engine.py [--requests N] [--memory-requests N] [--repeats N] [--rounds N]
                           [--json FILE]

For each suite (support and sessions scaled to N requests; azure-code, the log replay, at
its log's size) fresh interpreters run one pass of sampling (requests + world tape), the
engine loop (`Engine(...).run()`, repeated) and records (requests/spans tables + summary),
each timed with `time.perf_counter`; end to end is that first pass, as `simulate()` runs
it. Pure Python (EVALX_PURE=1) and the compiled build (`python -m harness.build`) run in
turns, `--rounds` times each, so both see the same machine load; the best round counts.
Then a bare SimPy model doing the same number of timed waits per request as the support
run, a full `simulate()` at `--memory-requests` in a fresh subprocess for peak RSS, and
the wall time of `evalx --help`.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
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

from harness.engine import COMPILED, PATH, Engine, Trace
from harness.faults import phases, schedule
from harness.metrics import summary_table
from harness.records import arrivals as arrival_times
from harness.records import requests_table, spans_table
from harness.run import simulate
from harness.spec import Suite, load_suite
from harness.stack import make_stack
from harness.traffic import Requests, sample_requests
from harness.world import Tape, sample_tape

SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"
SUITES = {"support": True, "azure-code": False, "sessions": True}
"""Suites benchmarked -> whether `--requests` scales them (a log replays at its own size)."""
TARGET_ENGINE_RPS = 50_000.0
TARGET_E2E_RPS = 35_000.0
TARGET_OVER_PURE = 3.0
TARGET_PEAK_GIB = 1.5
TARGET_HELP_S = 0.25
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


def load(requests: int, name: str = "support") -> Suite:
    """A benchmarked suite, scaled to `requests` if it scales (rates and spikes unchanged)."""
    sets = [f"traffic.requests={requests}"] if SUITES.get(name, True) else []
    return load_suite(SCENARIOS / f"{name}.yaml", sets).suite


def timed(fn: Callable[[], T]) -> tuple[T, float]:
    """Call `fn` after a full GC; return its result and wall seconds."""
    gc.collect()
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def run_engine(suite: Suite, reqs: Requests, tape: Tape) -> Trace:
    """Build the engine as `harness.run.simulate` does and run it."""
    return Engine(suite, reqs, tape, schedule(suite), make_stack(suite)).run()


def sample(suite: Suite) -> tuple[Requests, Tape]:
    """The requests and the world tape, as `simulate` samples them."""
    reqs = sample_requests(suite)
    return reqs, sample_tape(suite, reqs)


def records(suite: Suite, trace: Trace, reqs: Requests) -> None:
    """The requests and spans tables and the summary, as `simulate` builds them."""
    table = requests_table(trace, reqs, phases(suite, arrival_times(trace, reqs)))
    summary_table(table, spans_table(trace))


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
    sojourn = float(np.nanmean(trace.end_s - arrival_times(trace, reqs)))
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
        "compiled": COMPILED,
    }
    print(json.dumps(out))


def child(cmd: list[str], pure: bool) -> dict[str, Any]:
    """Run this script's `cmd` in a fresh interpreter on one path; its JSON line."""
    env = {**os.environ, "EVALX_PURE": "1" if pure else "0"}
    proc = subprocess.run([sys.executable, __file__, *cmd], capture_output=True, text=True,
                          check=True, env=env)  # fmt: skip
    out: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


def bench_memory(requests: int) -> dict[str, Any]:
    """Peak RSS of a full run in a fresh interpreter (on the active path).

    Linux carries the parent's peak RSS over fork+exec into the child's `ru_maxrss`, so
    this must run while the parent is still small (before the throughput passes); the
    child's /proc VmHWM, which exec resets, is reported alongside as a cross-check.
    """
    parent_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = child(["--memory-child", str(requests)], pure=not COMPILED)
    out["parent_rss_kib"] = parent_kib
    out["peak_rss_gib"] = out["peak_rss_kib"] / KIB_PER_GIB
    out["requests_per_s"] = out["requests"] / out["wall_s"]
    return out


def suite_child(name: str, requests: int, repeats: int) -> None:
    """One suite's first pass and engine repeats, as JSON (subprocess side)."""
    tm, reqs, events, sojourn = bench_engine(load(requests, name), repeats)
    out = {"requests": len(reqs), "timings": asdict(tm), "events": events, "sojourn_s": sojourn,
           "compiled": COMPILED, "path": PATH}  # fmt: skip
    print(json.dumps(out))


def bench_suites(requests: int, repeats: int, rounds: int) -> dict[str, dict[str, Any]]:
    """suite -> path ('pure', 'compiled') -> best loop and end-to-end rates over `rounds`,
    the paths taking turns so that both see the same load."""
    paths = ["pure", "compiled"] if COMPILED else ["pure"]
    figs: dict[str, dict[str, Any]] = {}
    for name in SUITES:
        runs: dict[str, list[dict[str, Any]]] = {p: [] for p in paths}
        for _ in range(rounds):
            for path in paths:
                cmd = ["--suite-child", name, "--requests", str(requests), "--repeats",
                       str(repeats)]  # fmt: skip
                out = child(cmd, pure=path == "pure")
                if out["compiled"] != (path == "compiled"):
                    raise RuntimeError(f"{name}: asked for {path}, ran {out['path']}")
                runs[path].append(out)
        figs[name] = {}
        for path, outs in runs.items():
            n = outs[0]["requests"]
            loops = [s for o in outs for s in o["timings"]["engine_s"]]
            totals = [o["timings"]["total_s"] for o in outs]
            figs[name][path] = {
                "requests": n,
                "events": outs[0]["events"],
                "sojourn_s": outs[0]["sojourn_s"],
                "loop_s": loops,
                "total_s": totals,
                "sampling_s": [o["timings"]["sampling_s"] for o in outs],
                "records_s": [o["timings"]["records_s"] for o in outs],
                "loop_rps": n / min(loops),
                "loop_rps_median": n / statistics.median(loops),
                "end_to_end_rps": n / min(totals),
            }
        print(f"  {name}: " + ", ".join(
            f"{p} loop {f['loop_rps']:,.0f} req/s, end to end {f['end_to_end_rps']:,.0f} req/s"
            for p, f in figs[name].items()), flush=True)  # fmt: skip
    return figs


def help_seconds(repeats: int = 5) -> list[float]:
    """Wall seconds of `evalx --help` (the installed console script), `repeats` times."""
    exe = Path(sys.executable).parent / "evalx"
    cmd = [str(exe), "--help"] if exe.exists() else [sys.executable, "-m", "harness.cli", "--help"]
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run(cmd, capture_output=True, check=True)
        out.append(time.perf_counter() - t0)
    return out


def report(fig: dict[str, Any]) -> dict[str, bool]:
    """Print the tables and the targets; return target name -> met."""
    n, suites, mem = fig["requests"], fig["suites"], fig["memory"]
    print(f"\n{'suite':<12}{'path':<10}{'requests':>10}{'loop req/s':>12}{'(median)':>10}"
          f"{'end to end':>12}{'sampling s':>11}{'records s':>10}")  # fmt: skip
    for name, paths in suites.items():
        for path, f in paths.items():
            print(f"{name:<12}{path:<10}{f['requests']:>10,}{f['loop_rps']:>12,.0f}"
                  f"{f['loop_rps_median']:>10,.0f}{f['end_to_end_rps']:>12,.0f}"
                  f"{min(f['sampling_s']):>11.2f}{min(f['records_s']):>10.2f}")  # fmt: skip
        if "compiled" in paths:
            c, p = paths["compiled"], paths["pure"]
            print(f"{'':<12}compiled / pure: loop {c['loop_rps'] / p['loop_rps']:.2f}x, end to "
                  f"end {c['end_to_end_rps'] / p['end_to_end_rps']:.2f}x")  # fmt: skip
    sp = fig["simpy_s"]
    print(
        f"\nsupport: heap events {fig['heap_events']:,} ({fig['waits_per_request']:.3f} waits/"
        f"request, mean sojourn {fig['mean_sojourn_s']:.2f} s simulated); bare SimPy model: "
        f"best {n / min(sp):,.0f} req/s, median {n / statistics.median(sp):,.0f} req/s "
        f"({', '.join(f'{s:.2f}' for s in sp)} s)"
    )
    for path, f in suites["support"].items():
        print(f"engine ({path}) / SimPy: {f['loop_rps'] / (n / min(sp)):.2f}x (best vs best)")
    print(f"note: {CAVEAT}")
    hs = fig["help_s"]
    print(f"evalx --help: best {min(hs):.3f} s, median {statistics.median(hs):.3f} s")
    sup = suites["support"]
    best = sup.get("compiled", sup["pure"])
    targets = {
        f"engine loop >= {TARGET_ENGINE_RPS:,.0f} req/s (support, {n:,}, best path)": (
            best["loop_rps"] >= TARGET_ENGINE_RPS
        ),
        f"end to end >= {TARGET_E2E_RPS:,.0f} req/s (support, {n:,}, best path)": (
            best["end_to_end_rps"] >= TARGET_E2E_RPS
        ),
        f"compiled loop >= {TARGET_OVER_PURE}x pure (support)": (
            "compiled" in sup
            and sup["compiled"]["loop_rps"] >= TARGET_OVER_PURE * sup["pure"]["loop_rps"]
        ),
        f"compiled end to end >= {TARGET_OVER_PURE}x pure (support)": (
            "compiled" in sup
            and sup["compiled"]["end_to_end_rps"]
            >= TARGET_OVER_PURE * sup["pure"]["end_to_end_rps"]
        ),
        f"evalx --help <= {TARGET_HELP_S} s (best)": min(hs) <= TARGET_HELP_S,
    }
    if mem is not None:
        base = mem["baseline_rss_kib"] / KIB_PER_GIB
        hwm = "" if mem["vm_hwm_kib"] is None else f", VmHWM {mem['vm_hwm_kib'] / KIB_PER_GIB:.3f}"
        path = "compiled" if mem["compiled"] else "pure"
        print(
            f"memory ({path}, subprocess, simulate()): {mem['requests']:,} requests, "
            f"{mem['spans']:,} spans: peak RSS {mem['peak_rss_gib']:.3f} GiB (ru_maxrss{hwm}; "
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
    p.add_argument("--repeats", type=int, default=2, help="engine loops per child, SimPy repeats")
    p.add_argument("--rounds", type=int, default=2, help="turns of pure and compiled children")
    p.add_argument("--json", type=Path, help="write every figure to this file")
    p.add_argument("--memory-child", type=int, help=argparse.SUPPRESS)
    p.add_argument("--suite-child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.memory_child is not None:
        memory_child(args.memory_child)
        return 0
    if args.suite_child is not None:
        suite_child(args.suite_child, args.requests, max(1, args.repeats))
        return 0
    n, repeats = args.requests, max(1, args.repeats)
    host = machine(simpy=simpy.__version__)
    print(
        f"machine: {host['cpu_count']} cpus ({host['cpu_model']}), python {host['python']}, "
        f"numpy {host['numpy']}, simpy {host['simpy']}; load average "
        f"{', '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    print(f"paths: {PATH}")
    print(f"suites: {', '.join(SUITES)} at traffic.requests={n:,} (azure-code: its log), "
          f"{args.rounds} rounds x {repeats} loops", flush=True)  # fmt: skip

    mem = bench_memory(args.memory_requests) if args.memory_requests > 0 else None
    suites = bench_suites(n, repeats, max(1, args.rounds))
    sup = suites["support"]["pure"]
    events = sup["events"]
    waits = events - n  # heap events the engine processed, arrivals excluded
    per_req = waits / n
    mean_wait = sup["sojourn_s"] / per_req if per_req else 1.0  # SimPy's in-flight count alike
    counts = wait_counts(n, waits)
    arrivals = sample_requests(load(n)).arrival_s.tolist()
    sp = [bench_simpy(arrivals, counts, mean_wait) for _ in range(repeats)]
    fig: dict[str, Any] = {
        "machine": host,
        "load_average": os.getloadavg(),
        "command": [sys.executable, *sys.argv],
        "path": PATH,
        "requests": n,
        "repeats": repeats,
        "rounds": args.rounds,
        "suites": suites,
        "heap_events": events,
        "waits_per_request": per_req,
        "mean_sojourn_s": sup["sojourn_s"],
        "simpy_mean_wait_s": mean_wait,
        "simpy_s": sp,
        "help_s": help_seconds(),
        "memory": mem,
        "note": CAVEAT,
    }
    targets = report(fig)
    write_json(args.json, fig, targets)
    return 0


if __name__ == "__main__":
    sys.exit(main())
