"""Observed calls: LLMPerf, OTLP from a real evalx run, and latency tables, to one table."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from conftest import RunEvalx

from harness.data import CALLS_SCHEMA, Calls, DataError, Source, read_calls

ROOT = Path(__file__).resolve().parents[3]
LLMPERF = ROOT.parent / "shared" / "data" / "llmperf-2023"
needs_data = pytest.mark.skipif(not LLMPERF.is_dir(), reason="shared data sets not present")


def error_of(call: Callable[..., Any], *args: Any, **kwargs: Any) -> str:
    with pytest.raises(DataError) as info:
        call(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


def write_json(path: Path, value: Any) -> Path:
    path.write_text(json.dumps(value), encoding="utf-8")
    return path


# ------------------------------------------------------------------ LLMPerf


@needs_data
def test_llmperf_files_read_exactly_in_argument_order() -> None:
    paths = sorted(LLMPERF.glob("*.json"))
    calls = read_calls(paths, format="llmperf")

    assert isinstance(calls, Calls)
    assert calls.table.schema == CALLS_SCHEMA
    assert calls.table.num_rows == 150 * len(paths) == 1350
    assert [s.path for s in calls.sources] == [str(p) for p in paths]
    assert calls.sources[0] == Source(
        str(paths[0]), hashlib.sha256(paths[0].read_bytes()).hexdigest(), 150
    )
    assert pc.unique(calls.table.column("model")).to_pylist() == [p.stem for p in paths]
    assert calls.table.column("source").to_pylist() == [str(p) for p in paths for _ in range(150)]
    assert calls.table.column("row").to_pylist() == list(range(150)) * len(paths)
    assert calls.table.column("start_s").null_count == 1350

    first = json.loads(paths[0].read_text())[0]
    assert calls.table.slice(0, 1).to_pylist()[0] == {
        "model": "anyscale_13b",
        "start_s": None,
        "ttft_s": first["ttft_s"],
        "latency_s": first["end_to_end_latency_s"],
        "input_tokens": first["number_input_tokens"],
        "output_tokens": first["number_output_tokens"],
        "status": "ok",
        "error": "",
        "source": str(paths[0]),
        "row": 0,
    }


@needs_data
def test_the_one_failed_llmperf_request_is_an_error_without_latency() -> None:
    path = LLMPERF / "together_13b.json"
    raw = json.loads(path.read_text())
    failed = [i for i, r in enumerate(raw) if r["error_code"] is not None or r["error_msg"]]
    assert failed == [60]
    assert raw[60]["error_code"] == -1 and raw[60]["end_to_end_latency_s"] == 0

    table = read_calls([path], format="llmperf", model="llama-2-13b").table
    assert pc.value_counts(table.column("status")).to_pylist() == [
        {"values": "ok", "counts": 149},
        {"values": "error", "counts": 1},
    ]
    row = table.slice(60, 1).to_pylist()[0]
    assert row["model"] == "llama-2-13b"
    assert (row["status"], row["error"], row["latency_s"], row["ttft_s"]) == (
        "error",
        "-1",
        None,
        None,
    )
    assert table.column("latency_s").null_count == 1


def _record(**changes: Any) -> dict[str, Any]:
    record = {
        "error_code": None,
        "error_msg": "",
        "inter_token_latency_s": 0.01,
        "ttft_s": 0.25,
        "end_to_end_latency_s": 1.5,
        "request_output_throughput_token_per_s": 100,
        "number_total_tokens": 700,
        "number_output_tokens": 150,
        "number_input_tokens": 550,
    }
    return {**record, **changes}


def test_llmperf_failures_become_error_or_timeout(tmp_path: Path) -> None:
    path = write_json(
        tmp_path / "p_7b.json",
        [
            _record(),
            _record(error_code=408, error_msg="", end_to_end_latency_s=0, ttft_s=0),
            _record(error_code=500, error_msg="Request timed out after 60s"),
            _record(error_code=None, error_msg="connection reset", end_to_end_latency_s=2.0),
            _record(error_code=504, error_msg="Gateway Timeout", end_to_end_latency_s=60),
        ],
    )
    table = read_calls(path, format="llmperf").table
    assert table.select(["model", "status", "error", "latency_s", "ttft_s"]).to_pylist() == [
        {"model": "p_7b", "status": "ok", "error": "", "latency_s": 1.5, "ttft_s": 0.25},
        {"model": "p_7b", "status": "timeout", "error": "408", "latency_s": None, "ttft_s": None},
        {"model": "p_7b", "status": "timeout", "error": "Request timed out after 60s",
         "latency_s": 1.5, "ttft_s": 0.25},
        {"model": "p_7b", "status": "error", "error": "connection reset", "latency_s": 2.0,
         "ttft_s": 0.25},
        {"model": "p_7b", "status": "timeout", "error": "Gateway Timeout", "latency_s": 60.0,
         "ttft_s": 0.25},
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("record", "message"),
    [
        (_record(end_to_end_latency_s=-1.0),
         "record 1: column end_to_end_latency_s: negative latency -1.0 s; a latency runs"),
        (_record(ttft_s=2.0),
         "record 1: column ttft_s: time to first token 2.0 s is longer than the latency 1.5 s;"),
        (_record(end_to_end_latency_s="fast"),
         "record 1: column end_to_end_latency_s: 'fast' is not a number; write a number"),
        (_record(number_output_tokens=1.5),
         "record 1: column number_output_tokens: 1.5 is not a count; write a non-negative whole"),
        (_record(end_to_end_latency_s=None),
         "record 1: column end_to_end_latency_s: a successful call without a latency; give it"),
        ([1, 2], "record 1: a JSON list, not a record; expected an LLMPerf"),
    ],
)  # fmt: skip
def test_bad_llmperf_records_are_located(tmp_path: Path, record: Any, message: str) -> None:
    path = write_json(tmp_path / "bad.json", [_record(), record])
    assert error_of(read_calls, [path], format="llmperf").startswith(f"{path}:{message}")


def test_files_that_are_not_llmperf(tmp_path: Path) -> None:
    expected = "expected an LLMPerf individual-results file (a JSON array of request records)"
    obj = write_json(tmp_path / "summary.json", {"mean": 1})
    assert error_of(read_calls, [obj], format="llmperf") == f"{obj}: a JSON dict; {expected}"
    other = write_json(tmp_path / "other.json", [{"latency": 1}])
    assert error_of(read_calls, [other], format="llmperf") == (
        f"{other}: record 0 has no end_to_end_latency_s; {expected}"
    )
    broken = tmp_path / "broken.json"
    broken.write_text("[{", encoding="utf-8")
    assert error_of(read_calls, [broken], format="llmperf").startswith(f"{broken}: not valid JSON")
    missing = tmp_path / "missing.json"
    assert (
        error_of(read_calls, [missing], format="llmperf") == f"{missing}: no such file; {expected}"
    )


def test_format_and_argument_errors(tmp_path: Path) -> None:
    assert error_of(read_calls, [], format="llmperf") == "no call files given; pass at least one"
    assert error_of(read_calls, [tmp_path / "x"], format="llmpref").startswith(
        "format: unknown call format 'llmpref'; did you mean llmperf?"
    )
    assert error_of(read_calls, [tmp_path / "x"], format="otlp", columns={}).startswith(
        "columns: only the csv format maps columns"
    )


# --------------------------------------------------------------------- OTLP


@pytest.fixture(scope="module")
def traced_run(tmp_path_factory: pytest.TempPathFactory, evalx: RunEvalx) -> Path:
    """A short run of the example suite with an outage and timeouts, and its OTLP export."""
    out = tmp_path_factory.mktemp("otlp")
    suite = ROOT / "scenarios" / "support.yaml"
    overrides = [
        "traffic.requests=300",
        "faults.0.start_s=0",
        "faults.1.kind=timeout",
        "faults.1.target=balanced",
        "faults.1.start_s=0",
        "faults.1.probability=0.2",
    ]
    sets = [arg for o in overrides for arg in ("--set", o)]
    ran = evalx("run", suite, *sets, "--out", out / "run", "--quiet")
    assert ran.returncode in (0, 1), ran.stderr
    exported = evalx("export-traces", out / "run", "--out", out / "traces.json")
    assert exported.returncode == 0, exported.stderr
    return out


def test_otlp_export_of_a_run_matches_its_chat_spans(traced_run: Path) -> None:
    path = traced_run / "traces.json"
    calls = read_calls([path], format="otlp")
    spans = pq.read_table(traced_run / "run" / "spans.parquet")
    chat = spans.filter(pc.equal(spans.column("kind"), "chat"))
    table = calls.table

    assert table.schema == CALLS_SCHEMA
    assert table.num_rows == chat.num_rows
    assert calls.sources == (
        Source(str(path), hashlib.sha256(path.read_bytes()).hexdigest(), chat.num_rows),
    )
    for model in pc.unique(chat.column("gen_ai.request.model")).to_pylist():
        mine = table.filter(pc.equal(table.column("model"), model))
        theirs = chat.filter(pc.equal(chat.column("gen_ai.request.model"), model))
        assert mine.num_rows == theirs.num_rows
        for column in ("input_tokens", "output_tokens"):
            assert (
                pc.sum(mine.column(column)).as_py()
                == pc.sum(theirs.column(f"gen_ai.usage.{column}")).as_py()
            )
        assert sorted(mine.column("latency_s").to_pylist()) == pytest.approx(
            sorted(x / 1e3 for x in theirs.column("duration_ms").to_pylist()), abs=2e-9
        )
    statuses = dict(zip(*np.unique(chat.column("status").to_numpy(zero_copy_only=False),
                                   return_counts=True), strict=True))  # fmt: skip
    got = dict(zip(*np.unique(table.column("status").to_numpy(zero_copy_only=False),
                              return_counts=True), strict=True))  # fmt: skip
    assert got["timeout"] == statuses["timeout"] > 0
    assert got["ok"] == statuses["ok"]
    assert got["error"] == chat.num_rows - statuses["ok"] - statuses["timeout"] > 0
    assert set(
        table.filter(pc.equal(table.column("status"), "ok")).column("error").to_pylist()
    ) == {""}
    # the export carries gen_ai.server.time_to_first_token for calls that produced tokens
    theirs_ttft = chat.column("ttft_ms").to_numpy(zero_copy_only=False)
    assert table.column("ttft_s").null_count == int(np.isnan(theirs_ttft).sum()) > 0
    assert sorted(v for v in table.column("ttft_s").to_pylist() if v is not None) == pytest.approx(
        sorted(theirs_ttft[~np.isnan(theirs_ttft)] / 1e3), abs=1e-9
    )
    starts = table.column("start_s").to_numpy()
    assert np.all((starts >= 1.7e9) & (starts < 1.7e9 + 3600))

    document = json.loads(path.read_text())
    every = document["resourceSpans"][0]["scopeSpans"][0]["spans"]
    for row in table.column("row").to_pylist()[:20]:
        assert every[row]["name"].startswith("chat ")


def test_otlp_json_lines_read_each_export(traced_run: Path, tmp_path: Path) -> None:
    text = (traced_run / "traces.json").read_text()
    lines = tmp_path / "traces.jsonl"
    lines.write_text(text + "\n\n" + text + "\n", encoding="utf-8")
    one = read_calls(traced_run / "traces.json", format="otlp").table
    two = read_calls(lines, format="otlp").table
    assert two.num_rows == 2 * one.num_rows
    assert (
        two.slice(one.num_rows)
        .drop_columns(["source", "row"])
        .equals(one.drop_columns(["source", "row"]))
    )


def _attr(key: str, kind: str, value: Any) -> dict[str, Any]:
    return {"key": key, "value": {kind: value}}


def _span(name: str, start: int, end: int, *attrs: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "startTimeUnixNano": str(start),
        "endTimeUnixNano": end,
        "attributes": list(attrs),
        **extra,
    }


def _export(*spans: dict[str, Any]) -> dict[str, Any]:
    return {"resourceSpans": [{"scopeSpans": [{"spans": list(spans)}]}]}


T0 = 1_700_000_000_000_000_000


def test_otlp_chat_spans_from_other_instrumentations(tmp_path: Path) -> None:
    path = write_json(
        tmp_path / "t.json",
        _export(
            _span("request", T0, T0 + 9 * 10**9),
            _span(
                "chat gpt-4o", T0, T0 + 2_500_000_000,
                _attr("gen_ai.operation.name", "stringValue", "chat"),
                _attr("gen_ai.request.model", "stringValue", "gpt-4o"),
                _attr("gen_ai.response.model", "stringValue", "gpt-4o-2024-08-06"),
                _attr("gen_ai.usage.input_tokens", "intValue", 120),
                _attr("gen_ai.usage.output_tokens", "intValue", "30"),
                _attr("gen_ai.server.time_to_first_token", "doubleValue", 0.4),
            ),
            _span("chat", T0 + 10**9, T0 + 2 * 10**9,
                  status={"code": "STATUS_CODE_ERROR", "message": "upstream 503"}),
            _span("embeddings x", T0, T0 + 1,
                  _attr("gen_ai.operation.name", "stringValue", "embeddings")),
            _span("call", T0, T0 + 3 * 10**9,
                  _attr("gen_ai.operation.name", "stringValue", "chat"),
                  _attr("error.type", "stringValue", "timeout"),
                  _attr("gen_ai.request.model", "stringValue", "small")),
        ),
    )  # fmt: skip
    table = read_calls(path, format="otlp", model="fallback").table
    assert table.drop_columns(["source"]).to_pylist() == [
        {"model": "gpt-4o-2024-08-06", "start_s": 1.7e9, "ttft_s": 0.4, "latency_s": 2.5,
         "input_tokens": 120, "output_tokens": 30, "status": "ok", "error": "", "row": 1},
        {"model": "fallback", "start_s": 1.7e9 + 1, "ttft_s": None, "latency_s": 1.0,
         "input_tokens": None, "output_tokens": None, "status": "error",
         "error": "upstream 503", "row": 2},
        {"model": "small", "start_s": 1.7e9, "ttft_s": None, "latency_s": 3.0,
         "input_tokens": None, "output_tokens": None, "status": "timeout", "error": "timeout",
         "row": 4},
    ]  # fmt: skip


def test_bad_otlp_spans_are_located(tmp_path: Path) -> None:
    chat = _attr("gen_ai.operation.name", "stringValue", "chat")
    model = _attr("gen_ai.request.model", "stringValue", "m")
    no_model = write_json(tmp_path / "a.json", _export(_span("x", T0, T0), _span("chat", T0, T0)))
    assert error_of(read_calls, no_model, format="otlp") == (
        f"{no_model}:span 1: column gen_ai.request.model: a chat span without a model; "
        "pass --model to name it"
    )
    backwards = write_json(tmp_path / "b.json", _export(_span("c", T0, T0 - 5, chat, model)))
    assert error_of(read_calls, backwards, format="otlp").startswith(
        f"{backwards}:span 0: column endTimeUnixNano: negative latency -5e-09 s;"
    )
    tokens = _attr("gen_ai.usage.input_tokens", "intValue", "many")
    bad = write_json(tmp_path / "c.json", _export(_span("c", T0, T0, chat, model, tokens)))
    assert error_of(read_calls, bad, format="otlp") == (
        f"{bad}:span 0: column gen_ai.usage.input_tokens: 'many' is not a number; "
        "write a non-negative whole number"
    )
    none = write_json(tmp_path / "d.json", _export(_span("request", T0, T0)))
    assert error_of(read_calls, none, format="otlp").startswith(
        f"{none}: no chat spans among 1 spans;"
    )
    other = write_json(tmp_path / "e.json", {"data": []})
    assert error_of(read_calls, other, format="otlp").startswith(f"{other}: no resourceSpans;")


# --------------------------------------------------------------- latency tables

CALL_ROWS: list[dict[str, Any]] = [
    {"model": "a", "start": "2024-03-01T12:00:00Z", "ttft_ms": 120.0, "latency_ms": 900.0,
     "input_tokens": 10, "output_tokens": 5, "status": "200", "error": None},
    {"model": "a", "start": "2024-03-01T12:00:01Z", "ttft_ms": None, "latency_ms": 30000.0,
     "input_tokens": 11, "output_tokens": None, "status": "504", "error": None},
    {"model": "b", "start": "2024-03-01T12:00:02Z", "ttft_ms": 80.0, "latency_ms": 400.0,
     "input_tokens": 12, "output_tokens": 7, "status": "error", "error": "bad gateway"},
    {"model": None, "start": "2024-03-01T12:00:03Z", "ttft_ms": None, "latency_ms": None,
     "input_tokens": 13, "output_tokens": None, "status": "429", "error": ""},
]  # fmt: skip
CALL_EXPECTED = [
    {"model": "a", "start_s": 1709294400.0, "ttft_s": 0.12, "latency_s": 0.9,
     "input_tokens": 10, "output_tokens": 5, "status": "ok", "error": "", "row": 0},
    {"model": "a", "start_s": 1709294401.0, "ttft_s": None, "latency_s": 30.0,
     "input_tokens": 11, "output_tokens": None, "status": "timeout", "error": "504", "row": 1},
    {"model": "b", "start_s": 1709294402.0, "ttft_s": 0.08, "latency_s": 0.4,
     "input_tokens": 12, "output_tokens": 7, "status": "error", "error": "bad gateway", "row": 2},
    {"model": "x", "start_s": 1709294403.0, "ttft_s": None, "latency_s": None,
     "input_tokens": 13, "output_tokens": None, "status": "error", "error": "429", "row": 3},
]  # fmt: skip


def _write_tables(tmp_path: Path, rows: list[dict[str, Any]]) -> list[Path]:
    names = list(rows[0])
    cell = lambda v: "" if v is None else str(v)  # noqa: E731
    csv_path = tmp_path / "calls.csv"
    csv_path.write_text(
        "\n".join([",".join(names), *(",".join(cell(r[n]) for n in names) for r in rows)]) + "\n",
        encoding="utf-8",
    )
    jsonl = tmp_path / "calls.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    parquet = tmp_path / "calls.parquet"
    pq.write_table(pa.Table.from_pylist(rows), parquet)
    return [csv_path, jsonl, parquet]


def test_latency_tables_in_three_formats_read_alike(tmp_path: Path) -> None:
    for path in _write_tables(tmp_path, CALL_ROWS):
        table = read_calls([path], format="csv", model="x").table
        assert table.schema == CALLS_SCHEMA
        got = table.drop_columns(["source"]).to_pylist()
        for row, want in zip(got, CALL_EXPECTED, strict=True):
            assert row.keys() == want.keys()
            for key, value in want.items():
                assert row[key] == (pytest.approx(value) if isinstance(value, float) else value)
        assert table.column("source").to_pylist() == [str(path)] * 4


def test_latency_table_with_a_mapping_and_numeric_status(tmp_path: Path) -> None:
    path = tmp_path / "obs.parquet"
    pq.write_table(
        pa.table({"llm": ["m", "m", "m"], "e2e": [1.0, 2.0, 3.0], "code": [200, 408, 500]}), path
    )
    table = read_calls(
        path, format="csv", columns={"model": "llm", "latency_s": "e2e", "status": "code"}
    ).table
    assert table.select(["status", "error", "latency_s"]).to_pylist() == [
        {"status": "ok", "error": "", "latency_s": 1.0},
        {"status": "timeout", "error": "408", "latency_s": 2.0},
        {"status": "error", "error": "500", "latency_s": 3.0},
    ]


def test_latency_table_without_status_fails_on_error_text(tmp_path: Path) -> None:
    path = tmp_path / "obs.csv"
    path.write_text("latency_s,error\n1.0,\n2.0,read timed out\n3.0,boom\n", encoding="utf-8")
    table = read_calls(path, format="csv", model="m").table
    assert table.column("status").to_pylist() == ["ok", "timeout", "error"]


def test_bad_latency_tables(tmp_path: Path) -> None:
    path = tmp_path / "obs.csv"
    path.write_text("model,latency_s,ttft_s,status\nm,1.0,0.5,ok\nm,1.0,1.5,ok\n", encoding="utf-8")
    assert error_of(read_calls, path, format="csv") == (
        f"{path}:3: column ttft_s: time to first token 1.5 s is longer than the latency 1.0 s; "
        "a latency runs from sending the request to its last token; fix or drop the row"
    )
    path.write_text("model,latency_ms,status\nm,-4,ok\n", encoding="utf-8")
    assert error_of(read_calls, path, format="csv").startswith(
        f"{path}:2: column latency_ms: negative latency -0.004 s;"
    )
    path.write_text("model,latency_ms,status\nm,4,fine\n", encoding="utf-8")
    assert error_of(read_calls, path, format="csv") == (
        f"{path}:2: column status: 'fine' is not a status; "
        "write ok, error or timeout, or an HTTP status code"
    )
    path.write_text("model,latency_ms,status\nm,,ok\n", encoding="utf-8")
    assert error_of(read_calls, path, format="csv").startswith(
        f"{path}:2: column latency_ms: a successful call without a latency;"
    )
    path.write_text("model,ms\nm,4\n", encoding="utf-8")
    assert error_of(read_calls, path, format="csv") == (
        f"{path}: columns: no latency column; map latency_s or latency_ms to one of the "
        "file's columns (model, ms)"
    )
    assert error_of(
        read_calls, path, format="csv", columns={"latency_s": "ms", "latency_ms": "ms"}
    ) == (f"{path}: columns: both latency_s and latency_ms are mapped; map one")
    assert error_of(read_calls, path, format="csv", columns={"latency": "ms"}).startswith(
        f"{path}: columns: unknown field 'latency'; did you mean"
    )
    assert error_of(read_calls, path, format="csv", columns={"latency_ms": "msec"}) == (
        f"{path}: latency_ms: no column 'msec' in the file; did you mean ms? "
        "its columns are model, ms"
    )
    path.write_text("latency_ms\n4\n", encoding="utf-8")
    assert error_of(read_calls, path, format="csv") == (
        f"{path}: no model column and no model given; pass --model"
    )
    path.write_text("model,latency_ms\nm,4\n,5\n", encoding="utf-8")
    assert error_of(read_calls, path, format="csv") == (
        f"{path}:3: column model: empty model; pass --model for calls without one"
    )
