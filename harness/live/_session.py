"""Live runs with vcrpy: record every HTTP interaction once, replay it offline in CI.

Cassettes live in a directory, one per suite: `<suite name>.yaml` (vcrpy, with API keys
and authorization headers filtered out) and `<suite name>.timings.json`: per call, the
latency measured, when each event of a stream arrived, and the transport failures a
cassette cannot hold (timeout, refused connection, reset), so a replay reproduces the
recording's records exactly.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from harness.errors import EvalxError
from harness.faults import schedule
from harness.limits import DATA_BYTES, check_input, read_text
from harness.live._cassette import CassetteTransport, open_cassette
from harness.live._driver import FAILURES, LiveDriver, Timing
from harness.run import RunResult, tables
from harness.spec import Suite
from harness.stack import make_stack
from harness.traffic import sample_requests
from harness.world import sample_tape

ORDER = "__order__"
"""The timings file's key for the interleaving of stack steps (request ids, in order)."""


def cassette_paths(directory: Path, suite: Suite) -> tuple[Path, Path]:
    """(cassette, timings) of a suite in a cassette directory."""
    return directory / f"{suite.name}.yaml", directory / f"{suite.name}.timings.json"


def _number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x) and x >= 0


def _entry(x: Any) -> Timing | None:
    """A timings entry: a latency, or {latency_s, events_s?, failure?, detail?}."""
    if _number(x):
        return Timing(float(x))
    if not isinstance(x, dict) or not _number(x.get("latency_s")):
        return None
    events = x.get("events_s", [])
    failure = x.get("failure", "")
    detail = x.get("detail", "")
    if not (isinstance(events, list) and all(_number(e) for e in events)):
        return None
    if failure not in ("", *FAILURES) or not isinstance(detail, str):
        return None
    return Timing(float(x["latency_s"]), tuple(float(e) for e in events), failure, detail)


def _timings(path: Path) -> dict[str, list[Timing]]:
    """The timings recorded beside a cassette: call name -> one entry per occurrence."""
    text = read_text(path, limit=DATA_BYTES, what="timings file")
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as err:
        raise EvalxError(f"{path}: not valid JSON ({type(err).__name__}); re-record the "
                         "cassette with evalx record") from None  # fmt: skip
    out: dict[str, list[Timing]] = {}
    ok = isinstance(data, dict)
    for k, v in data.items() if ok else ():
        if k == ORDER:
            continue
        entries = [_entry(x) for x in v] if isinstance(v, list) else [None]
        if any(e is None for e in entries):
            ok = False
            break
        out[str(k)] = [e for e in entries if e is not None]
    if not ok:
        raise EvalxError(f"{path}: expected a mapping of call names to lists of latencies "
                         "(seconds) or timing entries; re-record the cassette with evalx "
                         "record")  # fmt: skip
    return out


def _order(path: Path) -> list[int] | None:
    """The recorded interleaving of stack steps (None in a recording made without it)."""
    data = json.loads(read_text(path, limit=DATA_BYTES, what="timings file"))
    order = data.get(ORDER)
    if order is None:
        return None
    if not isinstance(order, list) or not all(type(x) is int and x >= 0 for x in order):
        raise EvalxError(f"{path}: {ORDER} must be a list of request ids; re-record the "
                         "cassette with evalx record")  # fmt: skip
    return order


def _dump(timings: dict[str, list[Timing]], order: list[int]) -> str:
    def one(t: Timing) -> Any:
        if not t.events_s and not t.failure:
            return t.latency_s
        out: dict[str, Any] = {"latency_s": t.latency_s}
        if t.events_s:
            out["events_s"] = list(t.events_s)
        if t.failure:
            out["failure"], out["detail"] = t.failure, t.detail
        return out

    data: dict[str, Any] = {k: [one(t) for t in v] for k, v in timings.items()}
    if not data:
        return json.dumps({ORDER: order}) + "\n"
    text = json.dumps(data, indent=1, sort_keys=True)
    return text[:-2] + f',\n "{ORDER}": {json.dumps(order)}\n}}\n'  # the order on one line


def live_run(
    suite: Suite,
    *,
    record: Path | None = None,
    replay: Path | None = None,
    concurrency: int = 8,
    pace: str = "asap",
) -> RunResult:
    """Run a suite against its real endpoints (recording), or from recorded cassettes.

    `pace="real"` sends each request at its arrival time (seconds after the start, on the
    wall clock), `concurrency` at most in flight: an open-loop load test. A replay ignores
    the pace (it needs no wall clock).
    """
    t0 = time.perf_counter()
    reqs = sample_requests(suite)
    tape = sample_tape(suite, reqs)
    timings: dict[str, list[Timing]] = {}
    order: list[int] | None = None
    transport: CassetteTransport | None = None
    if replay is not None:
        cassette, timing_file = cassette_paths(replay, suite)
        if not cassette.exists():
            raise EvalxError(f"{cassette}: no cassette to replay; record one with evalx record")
        check_input(cassette, limit=DATA_BYTES, what="cassette")
        if timing_file.exists():
            timings = _timings(timing_file)
            order = _order(timing_file)
        transport = CassetteTransport(
            open_cassette(cassette, True), True, httpx.AsyncHTTPTransport()
        )
    elif record is not None:
        record.mkdir(parents=True, exist_ok=True)
        cassette, timing_file = cassette_paths(record, suite)
        limits = httpx.Limits(max_connections=max(1, concurrency))
        transport = CassetteTransport(open_cassette(cassette, False), False,
                                      httpx.AsyncHTTPTransport(limits=limits))  # fmt: skip
    driver = LiveDriver(
        suite, reqs, tape, schedule(suite), make_stack(suite), concurrency=concurrency,
        timings=timings, replaying=replay is not None, transport=transport, pace=pace,
        order=order,
    )  # fmt: skip
    trace = driver.run()
    if record is not None and transport is not None:
        transport.save()
        timing_file.write_text(_dump(driver.timings, driver.order), encoding="utf-8")
    if driver.file_rows is not None:  # what each request's assertions said, as a column
        verdicts = np.array([driver.verdicts.get(i, "") for i in range(len(reqs))], dtype=object)
        reqs = replace(reqs, extra={**reqs.extra, "assertions": verdicts})
    return tables(suite, reqs, trace, t0)
