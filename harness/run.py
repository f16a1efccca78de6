"""One run of a suite: sample the world, drive the stack, build the records, write them.

`simulate` is pure computation (suite in, tables out) and is what sweeps and executors
reuse; `write` puts a result on disk with its manifest.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.engine import Engine, SpanBuffers, Trace
from harness.faults import phases, schedule
from harness.records import SCHEMA_VERSION, arrivals, requests_table, sessions_table, spans_table
from harness.spec import Suite
from harness.stack import make_stack
from harness.storage import MANIFEST, REQUESTS, SESSIONS, SPANS, SUMMARY, write_run
from harness.traffic import Requests, sample_requests
from harness.world import sample_tape

if TYPE_CHECKING:
    import pyarrow as pa

    from harness.spec._suite import LoadedSuite


@dataclass
class RunResult:
    """The tables of one simulated run and how long it took."""

    requests: pa.Table
    spans: pa.Table
    summary: pa.Table
    trace: Trace
    sessions: pa.Table
    sim_seconds: float
    wall_seconds: float


def simulate(suite: Suite, progress: Callable[[int], None] | None = None) -> RunResult:
    """Run `suite` in virtual time and return its tables. Deterministic in `suite.seed`."""
    t0 = time.perf_counter()
    reqs = sample_requests(suite)
    tape = sample_tape(suite, reqs)
    engine = Engine(suite, reqs, tape, schedule(suite), make_stack(suite), progress)
    trace = engine.run()
    del engine, tape  # the tape is half the memory of a large run; records do not need it
    return tables(suite, reqs, trace, t0)


def tables(suite: Suite, reqs: Requests, trace: Trace, t0: float) -> RunResult:
    """The records of a finished run (simulated or live), from its trace."""
    from harness.metrics import summary_table

    requests = requests_table(trace, reqs, phases(suite, arrivals(trace, reqs)))
    spans = spans_table(trace, consume=True)
    trace.spans = SpanBuffers()  # packed into `spans`; free the buffers
    plan = reqs.sessions
    sessions = sessions_table(requests, plan.planned if plan is not None else None)
    summary = summary_table(requests, spans, sessions)
    return RunResult(
        requests=requests,
        spans=spans,
        summary=summary,
        trace=trace,
        sessions=sessions,
        sim_seconds=float(trace.end_s.max()) if trace.n else 0.0,
        wall_seconds=time.perf_counter() - t0,
    )


def run_id(loaded: LoadedSuite) -> str:
    """A sortable, readable id: UTC time, then the suite hash prefix."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{loaded.suite_hash[:8]}"


def versions() -> dict[str, str]:
    """Versions of evalx and of the libraries that shape its numbers."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ("evalx", "numpy", "pandas", "pyarrow", "scipy", "pydantic"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "unknown"
    return out


HOST_ENV = "EVALX_RECORD_HOST"
"""Set to 1 to record the machine's hostname in manifests (off: a committed baseline or a
shared run directory should not say which machine made it)."""


def host() -> dict[str, str]:
    """``{"host": <hostname>}`` when `HOST_ENV` asks for it, else nothing."""
    import os

    return {"host": platform.node()} if os.environ.get(HOST_ENV, "") == "1" else {}


def manifest(
    loaded: LoadedSuite,
    result: RunResult,
    rid: str,
    argv: list[str],
    thresholds: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """What a run was, where its parameters came from, and what produced it."""
    suite = loaded.suite
    return {
        "schema_version": SCHEMA_VERSION,
        "run_id": rid,
        "suite": suite.name,
        "suite_path": str(loaded.path),
        "suite_hash": loaded.suite_hash,
        "seed": suite.seed,
        "requests": result.trace.n,
        "spans": result.spans.num_rows,
        "events": result.trace.events,
        "simulated_seconds": round(result.sim_seconds, 6),
        "wall_seconds": round(result.wall_seconds, 6),
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": argv,
        "versions": versions(),
        **host(),
        "policy": loaded.policy(),
        "parameters": loaded.parameters(),
        "thresholds": thresholds or [],
        "files": [REQUESTS, SPANS, SUMMARY, SESSIONS, MANIFEST],
    }


def write(
    out: Path,
    loaded: LoadedSuite,
    result: RunResult,
    rid: str,
    argv: list[str],
    thresholds: list[dict[str, Any]] | None = None,
) -> Path | str:
    """Write the run directory atomically."""
    return write_run(
        out,
        {
            REQUESTS: result.requests,
            SPANS: result.spans,
            SUMMARY: result.summary,
            SESSIONS: result.sessions,
        },
        manifest(loaded, result, rid, argv, thresholds),
    )
