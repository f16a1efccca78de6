"""Live runs end to end: record against a real OpenAI-compatible server on loopback, replay
offline, and get identical records; keys never reach a cassette; faults are outcomes."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pandas.testing as pdt
import pyarrow.parquet as pq
import pytest

from harness.live.devserver import DevServer

RunEvalx = Callable[..., subprocess.CompletedProcess[str]]
ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "scenarios" / "replay-demo.yaml"
KEY = "sk-test-secret-4c1f"


def base(url: str) -> list[str]:
    return [
        a for m in ("small", "medium", "large") for a in ("--set", f"models.{m}.base_url={url}")
    ]


def tables(run: Path) -> dict[str, object]:
    return {
        f: pq.read_table(run / f"{f}.parquet").to_pandas() for f in ("requests", "spans", "summary")
    }


@pytest.fixture(scope="module")
def recorded(evalx: RunEvalx, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    root = tmp_path_factory.mktemp("live")
    with DevServer(api_key=KEY) as srv:
        flags = base(srv.base_url)
        proc = evalx(
            "record",
            DEMO,
            *flags,
            "--cassettes",
            root / "cassettes",
            "--out",
            root / "rec",
            env={"EVALX_DEMO_KEY": KEY},
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert len(srv.requests) > 12  # really went over HTTP, retries included
    return root, flags


def test_replay_offline_gives_the_recorded_records_exactly(
    evalx: RunEvalx, recorded: tuple[Path, list[str]]
) -> None:
    root, flags = recorded  # the server is stopped now: nothing answers on that port
    proc = evalx(
        "run",
        DEMO,
        *flags,
        "--replay",
        root / "cassettes",
        "--out",
        root / "rep",
        "-q",
        env={"EVALX_DEMO_KEY": ""},
    )
    assert proc.returncode == 0, proc.stderr
    rec, rep = tables(root / "rec"), tables(root / "rep")
    for name in rec:
        pdt.assert_frame_equal(rec[name], rep[name], check_exact=True)  # type: ignore[arg-type]


def test_cassettes_contain_no_key(recorded: tuple[Path, list[str]]) -> None:
    root, _ = recorded
    files = list((root / "cassettes").iterdir())
    assert {f.suffix for f in files} == {".yaml", ".json"}
    for f in files:
        text = f.read_text(encoding="utf-8")
        assert KEY not in text and "Bearer" not in text


def test_a_retried_identical_request_replays_the_right_response(
    recorded: tuple[Path, list[str]],
) -> None:
    root, _ = recorded
    spans = tables(root / "rec")["spans"]
    medium = spans[(spans["gen_ai.request.model"] == "medium")]  # type: ignore[index]
    per_request = medium.groupby("request_id")["status"].apply(list)
    limited = [s for s in per_request if s[0] == "rate_limited"]
    assert limited  # the server answers 429 to the first call of each distinct body
    assert all(s[1] == "ok" for s in limited)  # the identical retry got the recorded 200


def test_replaying_an_unrecorded_call_is_a_clear_error(
    evalx: RunEvalx, recorded: tuple[Path, list[str]], tmp_path: Path
) -> None:
    root, flags = recorded
    proc = evalx(
        "run",
        DEMO,
        *flags,
        "--set",
        "seed=9",
        "--set",
        "stack.retry.base_ms=60",
        "--set",
        "models.large.model=other-model",
        "--replay",
        root / "cassettes",
        "--out",
        tmp_path / "x",
    )
    assert proc.returncode == 2
    assert "replay: no recorded response" in proc.stderr and "Traceback" not in proc.stderr


def test_a_malformed_response_is_a_recorded_outcome_not_a_crash(
    evalx: RunEvalx, tmp_path: Path
) -> None:
    with DevServer(api_key=KEY) as srv:
        proc = evalx(
            "run",
            DEMO,
            *base(srv.base_url),
            "--set",
            "models.small.model=dev-small-malformed",
            "--out",
            tmp_path / "run",
            "-q",
            env={"EVALX_DEMO_KEY": KEY},
        )
    assert proc.returncode == 0, proc.stderr
    spans = tables(tmp_path / "run")["spans"]
    small = spans[spans["gen_ai.request.model"] == "small"]  # type: ignore[index]
    assert (small["status"] == "malformed").all() and len(small) > 0


def test_the_committed_replay_demo_runs_offline(evalx: RunEvalx, tmp_path: Path) -> None:
    proc = evalx(
        "run",
        DEMO,
        "--replay",
        ROOT / "fixtures" / "cassettes",
        "--out",
        tmp_path / "r",
        env={"EVALX_DEMO_KEY": ""},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    requests = tables(tmp_path / "r")["requests"]
    assert len(requests) == 12  # type: ignore[arg-type]
    assert set(requests["outcome"]) <= {"success", "wrong", "blocked", "handoff"}  # type: ignore[index]


def test_load_mode_paces_arrivals_in_real_time(evalx: RunEvalx, tmp_path: Path) -> None:
    with DevServer(api_key=KEY) as srv:
        proc = evalx(
            "run",
            DEMO,
            *base(srv.base_url),
            "--live",
            "--pace",
            "real",
            "--concurrency",
            "2",
            "--set",
            "traffic.rate_per_s=8",
            "--out",
            tmp_path / "load",
            "-q",
            env={"EVALX_DEMO_KEY": KEY},
        )
        seen = len(srv.requests)
    assert proc.returncode == 0, proc.stderr
    assert seen >= 12
    requests = tables(tmp_path / "load")["requests"]
    arrivals = requests["arrival_s"]  # type: ignore[index]
    assert arrivals.is_monotonic_increasing and arrivals.iloc[-1] > 0.5
    manifest = json.loads((tmp_path / "load" / "manifest.json").read_text())
    assert manifest["wall_seconds"] >= arrivals.iloc[-1]  # sent at their arrival times


def test_live_without_endpoints_and_a_bad_pace_are_usage_errors(
    evalx: RunEvalx, tmp_path: Path
) -> None:
    sim = evalx("run", ROOT / "scenarios" / "support.yaml", "--live", "--out", tmp_path / "a")
    assert sim.returncode == 2 and "--live" in sim.stderr and "names no endpoint" in sim.stderr
    bad = evalx(
        "run",
        DEMO,
        "--pace",
        "fast",
        "--replay",
        ROOT / "fixtures" / "cassettes",
        "--out",
        tmp_path / "b",
    )
    assert bad.returncode == 2 and "choose asap or real" in bad.stderr


def test_anthropic_streamed_record_and_replay_through_the_cli(
    evalx: RunEvalx, tmp_path: Path
) -> None:
    sets = [
        f"models.{m}.{k}"
        for m in ("small", "medium", "large")
        for k in ("provider=anthropic", "stream=true")
    ]
    extra = [a for s in sets for a in ("--set", s)]
    with DevServer(api_key=KEY, token_s=0.005) as srv:
        flags = [*base(srv.base_url), *extra]
        rec = evalx(
            "record",
            DEMO,
            *flags,
            "--cassettes",
            tmp_path / "c",
            "--out",
            tmp_path / "rec",
            env={"EVALX_DEMO_KEY": KEY},
        )
        assert rec.returncode == 0, rec.stderr
        assert any(r.path == "/v1/messages" for r in srv.requests)
    rep = evalx(
        "run",
        DEMO,
        *flags,
        "--replay",
        tmp_path / "c",
        "--out",
        tmp_path / "rep",
        "-q",
        env={"EVALX_DEMO_KEY": ""},
    )
    assert rep.returncode == 0, rep.stderr
    a, b = tables(tmp_path / "rec"), tables(tmp_path / "rep")
    for name in a:
        pdt.assert_frame_equal(a[name], b[name], check_exact=True)  # type: ignore[arg-type]
    spans = a["spans"]
    chats = spans[(spans["kind"] == "chat") & (spans["status"] == "ok")]  # type: ignore[index]
    assert len(chats) > 0 and (chats["ttft_ms"] < chats["duration_ms"]).all()


def test_requests_file_ids_and_assertion_verdicts_are_columns(
    evalx: RunEvalx, tmp_path: Path
) -> None:
    """Each request carries its id in the requests file and what its assertions said."""
    proc = evalx(
        "run",
        DEMO,
        "--replay",
        ROOT / "fixtures" / "cassettes",
        "--out",
        tmp_path / "r",
        env={"EVALX_DEMO_KEY": ""},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    req = pq.read_table(tmp_path / "r" / "requests.parquet").to_pandas()
    lines = (ROOT / "fixtures" / "requests" / "replay-demo.jsonl").read_text().splitlines()
    ids = [json.loads(line)["id"] for line in lines if line.strip()]
    assert list(req["source_id"]) == ids
    judged = req[req["assertions"] != ""]
    assert len(judged) >= 10
    assert ((judged["assertions"] == "pass") == judged["success"]).all()
    assert (req.loc[req["assertions"] == "", "outcome"] != "success").all()


def test_failed_assertions_are_described(tmp_path: Path) -> None:
    from harness.requests_file import failed_assertions, load, verdict_text

    path = tmp_path / "asserts.jsonl"
    row = {
        "id": "x",
        "text": "hi",
        "task_class": "routine",
        "assert": [{"type": "contains", "value": "A123"}, {"type": "regex", "value": "^ok"}],
    }
    path.write_text(json.dumps(row) + "\n", encoding="utf-8")
    (request,) = load(path, ["routine"])
    assert failed_assertions(request, "ok, A123") == []
    assert verdict_text(failed_assertions(request, "nope")) == "fail: contains 'A123'; regex '^ok'"
    assert verdict_text(failed_assertions(request, "ok")) == "fail: contains 'A123'"
