"""A run as OpenTelemetry traces: OTLP/JSON built from the requests and spans tables.

`to_otlp` turns the two tables into one `ExportTraceServiceRequest` in the OTLP/JSON
encoding (https://opentelemetry.io/docs/specs/otlp/#json-protobuf-encoding), so a run can
be loaded into any tracing backend; `write_otlp` does it for a run directory. Plain
`json` only: no OpenTelemetry package is needed to export.

What a caller may rely on:

- One trace per request. Its root span (kind SERVER, named ``request {route}``) covers
  arrival to final verdict; every span row becomes one child of that root.
- Ids are derived, not random: ``traceId`` is the first 32 hex digits of
  ``sha256(f"{run_id}/{request_id}")``, a child's ``spanId`` the first 16 of
  ``sha256(f"{run_id}/{request_id}/{span_index}")`` and the root's the first 16 of
  ``sha256(f"{run_id}/{request_id}/root")``. The same run always gives the same bytes.
- Times are ``epoch_ns`` plus virtual seconds, in integer nanoseconds. A child's end is
  its start plus its duration; the root is widened, if ever needed, to hold its children.
- Names and attributes follow the OpenTelemetry GenAI conventions (``chat {model}``,
  ``execute_tool {tool}``, ``gen_ai.*``); what the conventions lack is under ``evalx.*``.
- Failed calls (status other than ``ok``) and failed requests (outcome timeout, error or
  budget_exhausted) get status ERROR and ``error.type``; others leave the status unset,
  as the conventions ask of instrumentations.
"""

from __future__ import annotations

import gc
import hashlib
import json
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

import harness
from harness.errors import EvalxError
from harness.integrity import read_manifest, read_table
from harness.storage import MANIFEST, REQUESTS, SPANS

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["to_otlp", "write_otlp"]

Attribute = dict[str, Any]

DEFAULT_EPOCH_NS = 1_700_000_000_000_000_000
KIND_INTERNAL, KIND_SERVER, KIND_CLIENT = 1, 2, 3
STATUS_ERROR = 2
FAILED_OUTCOMES = frozenset({"timeout", "error", "budget_exhausted"})
TOOL_KINDS = frozenset({"execute_tool", "retrieval"})

REQUEST_FIELDS = (
    "request_id",
    "arrival_s",
    "latency_ms",
    "route",
    "outcome",
    "task_class",
    "phase",
    "violations",
    "violation_kinds",
    "served_by",
    "tiers_tried",
    "cost_usd",
)
SPAN_FIELDS = (
    "request_id",
    "span_index",
    "kind",
    "name",
    "gen_ai.request.model",
    "gen_ai.tool.name",
    "tier",
    "start_s",
    "duration_ms",
    "queue_ms",
    "status",
    "http.response.status_code",
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.output_tokens",
    "cost_usd",
    "fault",
    "detail",
    "stage",
    "guards",
    "caught",
    "acted",
    "violation",
)


OPTIONAL_SPAN_FIELDS = ("ttft_ms",)
"""Span columns exported when the run has them (newer runs)."""


# Span-table strings exported as evalx.* attributes when non-empty, in this order.
EVALX_STRINGS = ("stage", "guards", "detail", "fault", "violation")


def to_otlp(
    requests: pa.Table,
    spans: pa.Table,
    *,
    service: str,
    run_id: str,
    epoch_ns: int = DEFAULT_EPOCH_NS,
) -> dict[str, Any]:
    """The run as one OTLP/JSON ``ExportTraceServiceRequest`` (see the module docstring).

    Roots come in request-table order, each followed by its children in span order.
    Raises ValueError if a span names a request that is not in `requests`.
    """
    with _no_gc():
        return _to_otlp(requests, spans, service=service, run_id=run_id, epoch_ns=epoch_ns)


def _to_otlp(
    requests: pa.Table, spans: pa.Table, *, service: str, run_id: str, epoch_ns: int
) -> dict[str, Any]:
    req = {name: requests.column(name).to_pylist() for name in REQUEST_FIELDS}
    sp = {name: spans.column(name).to_pylist() for name in SPAN_FIELDS}
    if "ttft_ms" in spans.column_names:  # runs written before ttft_ms existed lack it
        sp["ttft_ms"] = spans.column("ttft_ms").to_pylist()
    request_ids = np.asarray(req["request_id"], dtype=np.int64)
    span_rids = np.asarray(sp["request_id"], dtype=np.int64)
    span_index = np.asarray(sp["span_index"], dtype=np.int64)

    owner = _owner_rows(request_ids, span_rids)
    child_start = epoch_ns + _ns(np.asarray(sp["start_s"], dtype=np.float64))
    child_end = child_start + _ns(np.asarray(sp["duration_ms"], dtype=np.float64) / 1e3)
    root_start = epoch_ns + _ns(np.asarray(req["arrival_s"], dtype=np.float64))
    root_end = root_start + _ns(np.asarray(req["latency_ms"], dtype=np.float64) / 1e3)
    np.minimum.at(root_start, owner, child_start)
    np.maximum.at(root_end, owner, child_end)

    trace_ids = [_hex(f"{run_id}/{rid}", 32) for rid in request_ids.tolist()]
    root_ids = [_hex(f"{run_id}/{rid}/root", 16) for rid in request_ids.tolist()]
    child_ids = [
        _hex(f"{run_id}/{rid}/{i}", 16)
        for rid, i in zip(span_rids.tolist(), span_index.tolist(), strict=True)
    ]

    children: list[list[int]] = [[] for _ in range(len(request_ids))]
    for row in np.lexsort((span_index, owner)).tolist():
        children[owner[row]].append(row)

    rs, re_ = root_start.tolist(), root_end.tolist()
    cs, ce = child_start.tolist(), child_end.tolist()
    out: list[dict[str, Any]] = []
    for r in range(len(request_ids)):
        out.append(_root_span(req, r, trace_ids[r], root_ids[r], rs[r], re_[r]))
        for row in children[r]:
            out.append(_child_span(sp, row, trace_ids[r], child_ids[row], root_ids[r], cs, ce))

    return {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [_str("service.name", service), _str("evalx.run_id", run_id)]
                },
                "scopeSpans": [
                    {
                        "scope": {"name": "evalx", "version": harness.__version__},
                        "spans": out,
                    }
                ],
            }
        ]
    }


def write_otlp(run_dir: str | Path, out: str | Path) -> Path:
    """Write the traces of the run in `run_dir` to `out` as compact OTLP/JSON; returns `out`.

    The service is the manifest's ``suite`` and the run id its ``run_id``. The file is
    written next to `out` and renamed into place, so a failure never leaves half a file.
    """
    run, path = Path(run_dir), Path(out)
    missing = [n for n in (REQUESTS, SPANS, MANIFEST) if not (run / n).is_file()]
    if missing:
        raise EvalxError(
            f"{run}: not a run directory (no {' and no '.join(missing)}); "
            "pass a directory written by evalx run"
        )
    manifest = read_manifest(run)
    if not {"suite", "run_id"} <= manifest.keys():
        raise EvalxError(f"{run / MANIFEST}: not an evalx run manifest (no suite or run_id)")
    requests = read_table(run, REQUESTS, manifest, columns=REQUEST_FIELDS)
    spans = read_table(run, SPANS, manifest, columns=SPAN_FIELDS, optional=OPTIONAL_SPAN_FIELDS)

    doc = to_otlp(requests, spans, service=str(manifest["suite"]), run_id=str(manifest["run_id"]))
    body = json.dumps(doc, separators=(",", ":"), allow_nan=False)
    tmp = path.with_name(f".{path.name}.partial")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(body, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise EvalxError(f"{path}: cannot write ({exc.strerror}); choose another path") from None
    return path


def _root_span(
    req: dict[str, list[Any]], r: int, trace_id: str, span_id: str, start: int, end: int
) -> dict[str, Any]:
    outcome = req["outcome"][r]
    attrs = [
        _str("gen_ai.operation.name", "invoke_agent"),
        _int("evalx.request_id", req["request_id"][r]),
        _str("evalx.route", req["route"][r]),
        _str("evalx.outcome", outcome),
        _str("evalx.task_class", req["task_class"][r]),
        _str("evalx.phase", req["phase"][r]),
        _str("evalx.served_by", req["served_by"][r]),
        _str("evalx.tiers_tried", req["tiers_tried"][r]),
        _int("evalx.violations", req["violations"][r]),
    ]
    if req["violation_kinds"][r]:
        attrs.append(_str("evalx.violation_kinds", req["violation_kinds"][r]))
    attrs.extend(_double("evalx.cost_usd", req["cost_usd"][r]))
    span = _span(trace_id, span_id, None, f"request {req['route'][r]}", KIND_SERVER, start, end)
    return _finish(span, attrs, outcome if outcome in FAILED_OUTCOMES else None)


def _child_span(
    sp: dict[str, list[Any]],
    row: int,
    trace_id: str,
    span_id: str,
    parent_id: str,
    starts: list[int],
    ends: list[int],
) -> dict[str, Any]:
    kind, name = sp["kind"][row], sp["name"][row]
    attrs: list[Attribute] = []
    if kind == "chat":
        model = sp["gen_ai.request.model"][row]
        title, span_kind = f"chat {model}", KIND_CLIENT
        attrs += [
            _str("gen_ai.operation.name", "chat"),
            _str("gen_ai.request.model", model),
            _int("gen_ai.usage.input_tokens", sp["gen_ai.usage.input_tokens"][row]),
            _int("gen_ai.usage.output_tokens", sp["gen_ai.usage.output_tokens"][row]),
            _str("evalx.tier", sp["tier"][row]),
            _str("evalx.name", name),
        ]
        attrs.extend(_double("evalx.cost_usd", sp["cost_usd"][row]))
        ttft = sp["ttft_ms"][row] if "ttft_ms" in sp else None
        if ttft is not None:  # GenAI semantic conventions measure it in seconds
            attrs.extend(_double("gen_ai.server.time_to_first_token", ttft / 1000.0))
    elif kind in TOOL_KINDS:
        tool = sp["gen_ai.tool.name"][row]
        title, span_kind = f"execute_tool {tool}", KIND_INTERNAL
        attrs += [_str("gen_ai.operation.name", "execute_tool"), _str("gen_ai.tool.name", tool)]
    else:
        title, span_kind = f"evalx.{kind} {name}", KIND_INTERNAL
        attrs.append(_str("evalx.name", name))
    attrs.append(_str("evalx.kind", kind))
    code = sp["http.response.status_code"][row]
    if code:
        attrs.append(_int("http.response.status_code", code))
    attrs += [_str(f"evalx.{f}", sp[f][row]) for f in EVALX_STRINGS if sp[f][row]]
    if kind == "policy_check":
        attrs += [_bool("evalx.caught", sp["caught"][row]), _bool("evalx.acted", sp["acted"][row])]
    if sp["queue_ms"][row]:
        attrs.extend(_double("evalx.queue_ms", sp["queue_ms"][row]))
    status = sp["status"][row]
    span = _span(trace_id, span_id, parent_id, title, span_kind, starts[row], ends[row])
    return _finish(span, attrs, None if status == "ok" else status)


def _span(
    trace_id: str, span_id: str, parent: str | None, name: str, kind: int, start: int, end: int
) -> dict[str, Any]:
    span: dict[str, Any] = {"traceId": trace_id, "spanId": span_id}
    if parent is not None:
        span["parentSpanId"] = parent
    span.update(name=name, kind=kind, startTimeUnixNano=str(start), endTimeUnixNano=str(end))
    return span


def _finish(span: dict[str, Any], attrs: list[Attribute], error: str | None) -> dict[str, Any]:
    """Attach attributes and, for a failure, ``error.type`` and an ERROR status."""
    if error is not None:
        attrs.append(_str("error.type", error))
        span["status"] = {"code": STATUS_ERROR, "message": error}
    span["attributes"] = attrs
    return span


@contextmanager
def _no_gc() -> Iterator[None]:
    """Pause the cyclic collector: the document is millions of acyclic small objects, and
    collections triggered while allocating them would take most of the time."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _owner_rows(request_ids: np.ndarray, span_rids: np.ndarray) -> np.ndarray:
    """Row in the requests table of each span's request."""
    if not len(span_rids):
        return np.zeros(0, dtype=np.int64)
    order = np.argsort(request_ids, kind="stable")
    pos = np.searchsorted(request_ids[order], span_rids)
    rows: np.ndarray = order[np.minimum(pos, len(order) - 1)] if len(order) else pos
    if not len(order) or not np.array_equal(request_ids[rows], span_rids):
        raise ValueError("spans name requests that are not in the requests table")
    return rows


def _ns(seconds: np.ndarray) -> np.ndarray:
    out: np.ndarray = np.rint(seconds * 1e9).astype(np.int64)
    return out


def _hex(key: str, digits: int) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:digits]


def _str(key: str, value: str) -> Attribute:
    return {"key": key, "value": {"stringValue": value}}


def _int(key: str, value: int) -> Attribute:
    return {"key": key, "value": {"intValue": str(int(value))}}


def _bool(key: str, value: bool) -> Attribute:
    return {"key": key, "value": {"boolValue": bool(value)}}


def _double(key: str, value: float) -> list[Attribute]:
    """A double attribute, or none for NaN or infinity (not valid in JSON)."""
    return [{"key": key, "value": {"doubleValue": value}}] if math.isfinite(value) else []
