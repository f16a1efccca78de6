"""Live runs with vcrpy: record every HTTP interaction once, replay it offline in CI.

Cassettes live in a directory, one per suite: `<suite name>.yaml` (vcrpy, with API keys
and authorization headers filtered out) and `<suite name>.timings.json` (the latency
measured for each interaction, in order per identical request, so a replay reproduces the
recording's records exactly).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from harness.errors import EvalxError
from harness.faults import schedule
from harness.limits import DATA_BYTES, check_input, read_text
from harness.live._driver import CALL_HEADER, FILTERED_HEADERS, LiveDriver
from harness.run import RunResult, tables
from harness.spec import Suite
from harness.stack import make_stack
from harness.traffic import sample_requests
from harness.world import sample_tape


def _same_call(r1: Any, r2: Any) -> None:
    """vcrpy matcher: the same call of the same request (see CALL_HEADER)."""
    assert r1.headers.get(CALL_HEADER) == r2.headers.get(CALL_HEADER)


def cassette_paths(directory: Path, suite: Suite) -> tuple[Path, Path]:
    """(cassette, timings) of a suite in a cassette directory."""
    return directory / f"{suite.name}.yaml", directory / f"{suite.name}.timings.json"


def _timings(path: Path) -> dict[str, list[float]]:
    """The timings recorded beside a cassette: call name -> latencies in seconds."""
    text = read_text(path, limit=DATA_BYTES, what="timings file")
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as err:
        raise EvalxError(f"{path}: not valid JSON ({type(err).__name__}); re-record the "
                         "cassette with evalx record") from None  # fmt: skip
    ok = isinstance(data, dict) and all(
        isinstance(v, list) and all(isinstance(x, int | float) and not isinstance(x, bool)
                                    and math.isfinite(x) and x >= 0 for x in v)
        for v in data.values()
    )  # fmt: skip
    if not ok:
        raise EvalxError(f"{path}: expected a mapping of call names to lists of latencies "
                         "(seconds); re-record the cassette with evalx record")  # fmt: skip
    return {str(k): [float(x) for x in v] for k, v in data.items()}


def live_run(
    suite: Suite,
    *,
    record: Path | None = None,
    replay: Path | None = None,
    concurrency: int = 8,
) -> RunResult:
    """Run a suite against its real endpoints (recording), or from recorded cassettes."""
    import vcr

    t0 = time.perf_counter()
    reqs = sample_requests(suite)
    tape = sample_tape(suite, reqs)
    directory = record or replay
    timings: dict[str, list[float]] = {}
    if replay is not None:
        cassette, timing_file = cassette_paths(replay, suite)
        if not cassette.exists():
            raise EvalxError(f"{cassette}: no cassette to replay; record one with evalx record")
        check_input(cassette, limit=DATA_BYTES, what="cassette")
        if timing_file.exists():
            timings = _timings(timing_file)
    driver = LiveDriver(
        suite, reqs, tape, schedule(suite), make_stack(suite), concurrency=concurrency,
        timings=timings, replaying=replay is not None,
    )  # fmt: skip
    if directory is None:
        trace = driver.run()
    else:
        directory.mkdir(parents=True, exist_ok=True)
        cassette, timing_file = cassette_paths(directory, suite)
        recorder = vcr.VCR(
            record_mode="none" if replay is not None else "all",
            match_on=["method", "scheme", "host", "port", "path", "query", "body", "evalx_call"],
            filter_headers=list(FILTERED_HEADERS),
            filter_query_parameters=["api_key", "key"],
            decode_compressed_response=True,
        )
        recorder.register_matcher("evalx_call", _same_call)
        with recorder.use_cassette(str(cassette), allow_playback_repeats=False):
            trace = driver.run()
        if record is not None:
            timing_file.write_text(
                json.dumps(driver.timings, indent=1, sort_keys=True) + "\n", encoding="utf-8"
            )
    return tables(suite, reqs, trace, t0)
