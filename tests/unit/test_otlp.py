"""OTLP/JSON export: a real small run, checked as traces and parsed by the OTLP protobufs."""

from __future__ import annotations

import base64
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

import harness
from harness.errors import EvalxError
from harness.otlp import to_otlp, write_otlp
from harness.run import RunResult, simulate, write
from harness.spec import load_suite

ROOT = Path(__file__).resolve().parents[2]
SUITE = ROOT / "scenarios" / "support.yaml"
RUN_ID = "run-1"
EPOCH = 1_700_000_000_000_000_000


@pytest.fixture(scope="module")
def result() -> RunResult:
    return simulate(load_suite(SUITE, ["traffic.requests=300"]).suite)


@pytest.fixture(scope="module")
def doc(result: RunResult) -> dict[str, Any]:
    return to_otlp(result.requests, result.spans, service="support", run_id=RUN_ID)


def spans_of(doc: dict[str, Any]) -> list[dict[str, Any]]:
    (resource,) = doc["resourceSpans"]
    (scope,) = resource["scopeSpans"]
    spans: list[dict[str, Any]] = scope["spans"]
    return spans


def attrs(span: dict[str, Any]) -> dict[str, Any]:
    """Attribute key -> the one typed value (``{"intValue": "3"}`` -> ``"3"``)."""
    return {a["key"]: next(iter(a["value"].values())) for a in span["attributes"]}


def test_parses_as_an_export_trace_service_request(doc: dict[str, Any]) -> None:
    pytest.importorskip("opentelemetry.proto")
    from google.protobuf.json_format import Parse  # type: ignore[import-untyped, unused-ignore]
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    msg = Parse(json.dumps(doc), ExportTraceServiceRequest())
    (rs,) = msg.resource_spans
    assert rs.scope_spans[0].scope.name == "evalx"
    assert rs.scope_spans[0].scope.version == harness.__version__
    resource = {a.key: a.value.string_value for a in rs.resource.attributes}
    assert resource["service.name"] == "support"
    assert resource["evalx.run_id"] == RUN_ID
    spans = rs.scope_spans[0].spans
    assert len(spans) == len(spans_of(doc))
    # OTLP/JSON writes ids as hex where the proto3 mapping expects base64, so the parser
    # reads the hex digits as base64: re-encoding gives back exactly what was written.
    written = spans_of(doc)
    assert [base64.b64encode(s.trace_id).decode() for s in spans] == [s["traceId"] for s in written]
    assert [base64.b64encode(s.span_id).decode() for s in spans] == [s["spanId"] for s in written]
    chat = next(s for s in spans if s.name.startswith("chat "))
    assert chat.kind == chat.SPAN_KIND_CLIENT
    tokens = next(a.value for a in chat.attributes if a.key == "gen_ai.usage.input_tokens")
    assert tokens.WhichOneof("value") == "int_value"
    root = next(s for s in spans if not s.parent_span_id)
    assert root.kind == root.SPAN_KIND_SERVER
    assert root.start_time_unix_nano >= EPOCH


def test_one_trace_per_request_and_one_span_per_row(doc: dict[str, Any], result: RunResult) -> None:
    spans = spans_of(doc)
    roots = [s for s in spans if "parentSpanId" not in s]
    children = [s for s in spans if "parentSpanId" in s]
    assert len(roots) == result.requests.num_rows
    assert len(children) == result.spans.num_rows
    assert len({s["traceId"] for s in roots}) == len(roots)
    assert len({s["spanId"] for s in spans}) == len(spans)
    assert all(len(s["traceId"]) == 32 and len(s["spanId"]) == 16 for s in spans)

    root_of = {s["traceId"]: s for s in roots}
    assert all(c["parentSpanId"] == root_of[c["traceId"]]["spanId"] for c in children)
    per_trace = Counter(c["traceId"] for c in children)
    per_request = Counter(result.spans.column("request_id").to_numpy().tolist())
    by_request = {int(attrs(r)["evalx.request_id"]): r["traceId"] for r in roots}
    assert {by_request[rid]: n for rid, n in per_request.items()} == per_trace


def test_root_attributes_follow_the_request(doc: dict[str, Any], result: RunResult) -> None:
    roots = [s for s in spans_of(doc) if "parentSpanId" not in s]
    for row, root in zip(result.requests.to_pylist(), roots, strict=True):
        a = attrs(root)
        assert root["name"] == f"request {row['route']}"
        assert root["kind"] == 2
        assert a["evalx.request_id"] == str(row["request_id"])
        assert (a["evalx.route"], a["evalx.outcome"]) == (row["route"], row["outcome"])
        assert (a["evalx.task_class"], a["evalx.phase"]) == (row["task_class"], row["phase"])
        assert a["evalx.violations"] == str(row["violations"])


def test_chat_and_tool_spans_follow_the_genai_conventions(
    doc: dict[str, Any], result: RunResult
) -> None:
    children = [s for s in spans_of(doc) if "parentSpanId" in s]
    rows = result.spans.to_pylist()
    chats = [(r, s) for r, s in zip(rows, children, strict=True) if r["kind"] == "chat"]
    assert chats
    row, span = chats[len(chats) // 2]
    a = attrs(span)
    assert span["name"] == f"chat {row['gen_ai.request.model']}"
    assert span["kind"] == 3
    assert a["gen_ai.operation.name"] == "chat"
    assert a["gen_ai.request.model"] == row["gen_ai.request.model"]
    assert a["gen_ai.usage.input_tokens"] == str(row["gen_ai.usage.input_tokens"])
    assert a["gen_ai.usage.output_tokens"] == str(row["gen_ai.usage.output_tokens"])
    assert "gen_ai.provider.name" not in a

    for row, span in zip(rows, children, strict=True):
        a = attrs(span)
        if row["kind"] in ("execute_tool", "retrieval"):
            assert span["name"] == f"execute_tool {row['gen_ai.tool.name']}"
            assert span["kind"] == 1
            assert a["gen_ai.operation.name"] == "execute_tool"
            assert a["gen_ai.tool.name"] == row["gen_ai.tool.name"]
        elif row["kind"] != "chat":
            assert span["name"] == f"evalx.{row['kind']} {row['name']}"
            assert "gen_ai.operation.name" not in a
        if row["kind"] == "policy_check":
            assert (a["evalx.caught"], a["evalx.acted"]) == (row["caught"], row["acted"])
        code = row["http.response.status_code"]
        assert a.get("http.response.status_code") == (str(code) if code else None)
        failed = row["status"] != "ok"
        assert span.get("status") == ({"code": 2, "message": row["status"]} if failed else None)
        assert a.get("error.type") == (row["status"] if failed else None)


def test_times_are_ordered_and_children_lie_within_their_root(doc: dict[str, Any]) -> None:
    spans = spans_of(doc)
    roots = {s["traceId"]: s for s in spans if "parentSpanId" not in s}
    for s in spans:
        start, end = int(s["startTimeUnixNano"]), int(s["endTimeUnixNano"])
        assert EPOCH <= start <= end
        root = roots[s["traceId"]]
        assert int(root["startTimeUnixNano"]) <= start
        assert end <= int(root["endTimeUnixNano"])


def test_times_are_epoch_plus_virtual_time(doc: dict[str, Any], result: RunResult) -> None:
    first = result.spans.slice(0, 1).to_pylist()[0]
    child = next(s for s in spans_of(doc) if "parentSpanId" in s)
    assert int(child["startTimeUnixNano"]) == EPOCH + round(first["start_s"] * 1e9)
    assert int(child["endTimeUnixNano"]) - int(child["startTimeUnixNano"]) == round(
        first["duration_ms"] * 1e6
    )
    later = to_otlp(result.requests, result.spans, service="s", run_id=RUN_ID, epoch_ns=EPOCH + 7)
    assert (
        int(spans_of(later)[0]["startTimeUnixNano"])
        == int(spans_of(doc)[0]["startTimeUnixNano"]) + 7
    )


def test_ids_are_derived_from_the_run_and_request(result: RunResult) -> None:
    a = spans_of(to_otlp(result.requests, result.spans, service="s", run_id="a"))
    b = spans_of(to_otlp(result.requests, result.spans, service="s", run_id="b"))
    assert a[0]["traceId"] != b[0]["traceId"]
    assert {s["spanId"] for s in a}.isdisjoint(s["spanId"] for s in b)


def test_spans_of_an_unknown_request_are_a_bug(result: RunResult) -> None:
    with pytest.raises(ValueError, match="not in the requests table"):
        to_otlp(result.requests.slice(1), result.spans, service="s", run_id=RUN_ID)


def test_an_empty_run_has_no_spans(result: RunResult) -> None:
    empty = to_otlp(result.requests.slice(0, 0), result.spans.slice(0, 0), service="s", run_id="r")
    assert spans_of(empty) == []


def test_write_otlp_is_deterministic(result: RunResult, tmp_path: Path) -> None:
    loaded = load_suite(SUITE, ["traffic.requests=300"])
    run = write(tmp_path / "run", loaded, result, RUN_ID, ["test"])
    first = write_otlp(run, tmp_path / "a.json")
    second = write_otlp(run, tmp_path / "out" / "b.json")
    assert first.read_bytes() == second.read_bytes()
    expected = to_otlp(result.requests, result.spans, service="support", run_id=RUN_ID)
    assert first.read_bytes() == json.dumps(expected, separators=(",", ":")).encode()
    assert not list(tmp_path.glob("**/*.partial"))


def test_write_otlp_needs_a_run_directory(tmp_path: Path) -> None:
    with pytest.raises(EvalxError, match="not a run directory"):
        write_otlp(tmp_path, tmp_path / "out.json")


def test_to_otlp_accepts_tables_built_in_memory(result: RunResult) -> None:
    requests = pa.Table.from_pylist(result.requests.slice(0, 2).to_pylist())
    spans = pa.Table.from_pylist([r for r in result.spans.to_pylist() if r["request_id"] < 2])
    doc = to_otlp(requests, spans, service="s", run_id=RUN_ID)
    assert len(spans_of(doc)) == 2 + spans.num_rows
