"""Observed model calls (LLMPerf results, OTLP traces, any latency table) as one table.

Latency, error and token fits and back-tests read calls from many places; each reader
here maps its source to the same columns (`CALLS_SCHEMA`), so what comes after never
needs to know where a call was measured.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from harness.data._common import (
    FORMAT_TEXT,
    NUMBER_FIX,
    PathLike,
    RawFile,
    Source,
    Where,
    as_count,
    as_epoch_seconds,
    as_float,
    as_text,
    check_columns,
    check_fields,
    did_you_mean,
    first_true,
    load,
    numeric,
    plain,
    read_table,
    require,
    seconds_from_ns,
    show,
    table_format,
)
from harness.data._errors import DataError

CALLS_SCHEMA = pa.schema(
    [
        pa.field("model", pa.string(), nullable=False),
        pa.field("start_s", pa.float64()),
        pa.field("ttft_s", pa.float64()),
        pa.field("latency_s", pa.float64()),
        pa.field("input_tokens", pa.int64()),
        pa.field("output_tokens", pa.int64()),
        pa.field("status", pa.string(), nullable=False),
        pa.field("error", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("row", pa.int64(), nullable=False),
    ]
)
"""The columns of `Calls.table`, in order; see `Calls` for what each holds."""

CALL_FORMATS = ("llmperf", "otlp", "csv")
CALL_FIELDS = (
    "model",
    "start",
    "ttft_s",
    "ttft_ms",
    "latency_s",
    "latency_ms",
    "input_tokens",
    "output_tokens",
    "status",
    "error",
)
"""The keys a ``csv`` column mapping may use; each value names a column of the file."""

STATUSES = ("ok", "error", "timeout")
TIMEOUT_CODES = (408, 504)
_TIMEOUT_TEXT = r"(?i)timeout|timed out"
_STATUS_FIX = "write ok, error or timeout, or an HTTP status code"
TIME_SLACK_S = 1e-6
"""Rounding allowed when a first token and the last arrive together (timestamps in ns)."""
_LATENCY_FIX = "a latency runs from sending the request to its last token; fix or drop the row"

LLMPERF_TEXT = "an LLMPerf individual-results file (a JSON array of request records)"
_LLMPERF = pa.struct(
    [
        ("error_code", pa.float64()),
        ("error_msg", pa.string()),
        ("ttft_s", pa.float64()),
        ("end_to_end_latency_s", pa.float64()),
        ("number_input_tokens", pa.float64()),
        ("number_output_tokens", pa.float64()),
    ]
)
OTLP_TEXT = "OTLP/JSON traces (an ExportTraceServiceRequest, or one a line)"
_STATUS_ERROR = (2, "STATUS_CODE_ERROR")
_ANY_VALUE = ("stringValue", "intValue", "doubleValue", "boolValue")


@dataclass(frozen=True)
class Calls:
    """Observed model calls, one row each, in file order and files in the order given.

    `table` has exactly the columns of `CALLS_SCHEMA`:

    - ``model`` string: from the data, else the ``model`` argument;
    - ``start_s`` float64, null when the source has no times: epoch seconds of the start;
    - ``ttft_s`` float64, null when not measured: time to first token, seconds;
    - ``latency_s`` float64, seconds end to end; null only for a failed call without one;
    - ``input_tokens``, ``output_tokens`` int64, null when not recorded;
    - ``status`` string: ``ok``, ``error`` or ``timeout``;
    - ``error`` string: ``""`` when ok, else the message (or code) the source gave;
    - ``source`` string: the path of the file, as in `sources`;
    - ``row`` int64: the 0-based record in that file (data row of a table, record of an
      LLMPerf array, span of an OTLP export counting every span), to trace a call back.

    Latencies and ttft are never negative, and ttft is never longer than the latency.
    """

    table: pa.Table
    sources: tuple[Source, ...]


def read_calls(
    paths: Sequence[PathLike] | PathLike,
    *,
    format: str,
    model: str | None = None,
    columns: Mapping[str, str] | None = None,
) -> Calls:
    """Read observed calls from `paths`, all in one `format`:

    - ``llmperf``: LLMPerf's per-request JSON array. The model is `model`, else the file's
      stem (``anyscale_13b``). A record with an error code or message failed: ``timeout``
      for code 408 or 504 or a message saying "timeout" or "timed out", else ``error``.
      The zeros LLMPerf writes as latency and ttft of a failed call become null.
    - ``otlp``: OTLP/JSON traces (``evalx export-traces``, a collector's file exporter;
      one export a file, or one a line). Only chat spans count (``gen_ai.operation.name``
      is ``chat``, or, without it, the span name starts with "chat"). Latency is end minus
      start; ttft from ``gen_ai.server.time_to_first_token``; status ERROR or an
      ``error.type`` attribute is a failure (``timeout`` when it says so).
    - ``csv``: a CSV, JSON lines or Parquet table (by suffix); `columns` maps
      `CALL_FIELDS` to the file's columns (None: each of those names the file has, and
      ``*_s`` over ``*_ms``). ``latency_s`` or ``latency_ms`` is needed. ``status`` is
      ok/error/timeout or an HTTP code (2xx ok, 408 and 504 timeout, else error); without
      it a non-empty ``error`` marks a failure. ``start`` is read as log timestamps are.

    Raises DataError naming the file, line, record or span and the column of the first
    bad value, or asking for ``--model`` when neither the data nor `model` names one.
    """
    files = [paths] if isinstance(paths, str | os.PathLike) else list(paths)
    if format not in CALL_FORMATS:
        raise DataError(
            f"format: unknown call format {format!r}; {did_you_mean(format, CALL_FORMATS)}"
            f"use one of {', '.join(CALL_FORMATS)}"
        )
    if columns is not None and format != "csv":
        raise DataError(f"columns: only the csv format maps columns, not {format}; drop them")
    if not files:
        raise DataError("no call files given; pass at least one")
    pieces: list[pa.Table] = []
    sources: list[Source] = []
    for path in files:
        if format == "llmperf":
            raw = load(path, LLMPERF_TEXT)
            piece = _llmperf(raw, model)
        elif format == "otlp":
            raw = load(path, OTLP_TEXT)
            piece = _otlp(raw, model)
        else:
            fmt = table_format(os.fspath(path), None)
            raw = load(path, f"a table of calls ({FORMAT_TEXT[fmt]})")
            piece = _table(raw, fmt, model, columns)
        pieces.append(piece)
        sources.append(Source(raw.path, raw.sha256, piece.num_rows))
    return Calls(pa.concat_tables(pieces).combine_chunks(), tuple(sources))


def _llmperf(raw: RawFile, model: str | None) -> pa.Table:
    """LLMPerf's individual responses: a JSON array of one record per request."""
    try:
        records = json.loads(raw.data)
    except ValueError as exc:
        raise DataError(f"{raw.path}: not valid JSON ({exc}); expected {LLMPERF_TEXT}") from None
    if not isinstance(records, list) or not records:
        what = "an empty array" if records == [] else f"a JSON {type(records).__name__}"
        raise DataError(f"{raw.path}: {what}; expected {LLMPERF_TEXT}")
    if not isinstance(records[0], dict) or "end_to_end_latency_s" not in records[0]:
        raise DataError(
            f"{raw.path}: record 0 has no end_to_end_latency_s; expected {LLMPERF_TEXT}"
        )
    where = Where(raw.path, "record")
    try:
        arr = pa.array(records, type=_LLMPERF)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):
        raise _bad_record(records, where) from None

    code = arr.field("error_code")
    message = arr.field("error_msg").fill_null("")
    said = pc.not_equal(message, "")
    failed = pc.or_(pc.is_valid(code), said).to_numpy(zero_copy_only=False)
    codes = code.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
    n = len(records)
    return _assemble(
        where,
        model=pa.array([model or PurePath(raw.path).stem] * n, pa.string()),
        start=pa.nulls(n, pa.float64()),
        ttft=_no_zeros(as_float(arr.field("ttft_s"), where, "ttft_s", nullable=True), failed),
        latency=_no_zeros(
            as_float(
                arr.field("end_to_end_latency_s"), where, "end_to_end_latency_s", nullable=True
            ),
            failed,
        ),
        input_tokens=as_count(
            arr.field("number_input_tokens"), where, "number_input_tokens", nullable=True
        ),
        output_tokens=as_count(
            arr.field("number_output_tokens"), where, "number_output_tokens", nullable=True
        ),
        failed=failed,
        timeout=failed & (np.isin(codes, TIMEOUT_CODES) | _says_timeout(message)),
        error=pc.if_else(said, message, pa.array(codes.astype(str))),
        names={"ttft": "ttft_s", "latency": "end_to_end_latency_s"},
    )


def _otlp(raw: RawFile, model: str | None) -> pa.Table:
    """OTLP/JSON: walk the spans once for the attributes a call needs, then convert columns.

    The document is nested JSON that `json` has already turned into Python objects, so
    one pass picks a few values from each span; every check and conversion after it
    works on whole columns.
    """
    spans = _otlp_spans(raw)
    rows: list[int] = []
    picked: dict[str, list[Any]] = {
        key: [] for key in ("model", "start", "end", "input", "output", "ttft", "reason")
    }
    failed: list[bool] = []
    for index, span in enumerate(spans):
        attrs = _attributes(span)
        operation = attrs.get("gen_ai.operation.name")
        is_chat = (
            operation == "chat"
            if operation is not None
            else str(span.get("name", "")).startswith("chat")
        )
        if not is_chat:
            continue
        status = span.get("status") or {}
        error_type = attrs.get("error.type")
        rows.append(index)
        picked["model"].append(
            _text(attrs.get("gen_ai.response.model") or attrs.get("gen_ai.request.model") or model)
        )
        picked["start"].append(_text(span.get("startTimeUnixNano")))
        picked["end"].append(_text(span.get("endTimeUnixNano")))
        picked["input"].append(_text(attrs.get("gen_ai.usage.input_tokens")))
        picked["output"].append(_text(attrs.get("gen_ai.usage.output_tokens")))
        picked["ttft"].append(_text(attrs.get("gen_ai.server.time_to_first_token")))
        picked["reason"].append(str(error_type or status.get("message") or ""))
        failed.append(status.get("code") in _STATUS_ERROR or error_type is not None)
    if not rows:
        raise DataError(
            f"{raw.path}: no chat spans among {len(spans)} spans; expected chat spans "
            f"(gen_ai.operation.name chat) in {OTLP_TEXT}"
        )

    where = Where(raw.path, "span", index=np.asarray(rows))
    col = {key: pa.array(values, pa.string()) for key, values in picked.items()}
    require(
        col["model"],
        where,
        "gen_ai.request.model",
        "pass --model to name it",
        problem="a chat span without a model",
    )
    start = _nanoseconds(col["start"], where, "startTimeUnixNano")
    end = _nanoseconds(col["end"], where, "endTimeUnixNano")
    failed_mask = np.asarray(failed, dtype=bool)
    reason = col["reason"]
    return _assemble(
        where,
        model=col["model"],
        start=seconds_from_ns(start, np.ones(len(rows), dtype=bool)),
        ttft=as_float(col["ttft"], where, "gen_ai.server.time_to_first_token", nullable=True),
        latency=pa.array((end - start) / 1e9),
        input_tokens=as_count(col["input"], where, "gen_ai.usage.input_tokens", nullable=True),
        output_tokens=as_count(col["output"], where, "gen_ai.usage.output_tokens", nullable=True),
        failed=failed_mask,
        timeout=failed_mask & _says_timeout(reason),
        error=pc.if_else(pc.equal(reason, ""), pa.scalar("error"), reason),
        names={"ttft": "gen_ai.server.time_to_first_token", "latency": "endTimeUnixNano"},
    )


def _table(
    raw: RawFile, fmt: str, model: str | None, columns: Mapping[str, str] | None
) -> pa.Table:
    """A table of calls whose columns `columns` maps to `CALL_FIELDS`."""
    if columns is not None:
        check_fields(raw.path, columns, CALL_FIELDS, "columns")
    texts = (
        [columns[f] for f in ("model", "error") if f in columns] if columns else ["model", "error"]
    )
    table, where = read_table(raw, fmt, text_columns=texts)
    if columns is None:
        columns = {f: f for f in CALL_FIELDS if f in table.column_names}
        for measure in ("ttft", "latency"):
            if f"{measure}_s" in columns:
                columns.pop(f"{measure}_ms", None)
    check_columns(table, raw.path, columns)
    for measure in ("ttft", "latency"):
        if f"{measure}_s" in columns and f"{measure}_ms" in columns:
            raise DataError(
                f"{raw.path}: columns: both {measure}_s and {measure}_ms are mapped; map one"
            )
    if "latency_s" not in columns and "latency_ms" not in columns:
        raise DataError(
            f"{raw.path}: columns: no latency column; map latency_s or latency_ms to one of "
            f"the file's columns ({', '.join(table.column_names)})"
        )
    n = table.num_rows
    names: dict[str, str] = {}

    def seconds(measure: str) -> pa.Array:
        for suffix, per_second in (("_s", 1.0), ("_ms", 1e3)):
            name = columns.get(measure + suffix)
            if name is not None:
                names[measure] = name
                values = as_float(table.column(name), where, name, nullable=True)
                return pc.divide(values, per_second)
        names[measure] = measure + "_s"
        return pa.nulls(n, pa.float64())

    def optional(field: str) -> pa.ChunkedArray | None:
        return table.column(columns[field]) if field in columns else None

    message = pa.array([""] * n, pa.string())
    if (error := optional("error")) is not None:
        message = as_text(error, where, columns["error"], missing="empty")
    if (status := optional("status")) is not None:
        failed, timeout, code_text = _statuses(status, where, columns["status"])
        message = pc.if_else(pc.equal(message, ""), code_text, message)
    else:
        failed = pc.not_equal(message, "").to_numpy(zero_copy_only=False)
        timeout = failed & _says_timeout(message)
    start, tokens_in, tokens_out = (
        optional("start"),
        optional("input_tokens"),
        optional("output_tokens"),
    )
    nothing = pa.nulls(n, pa.int64())
    return _assemble(
        where,
        model=_models(optional("model"), where, columns.get("model"), model, n),
        start=(
            as_epoch_seconds(start, where, columns["start"], nullable=True)
            if start is not None
            else pa.nulls(n, pa.float64())
        ),
        ttft=seconds("ttft"),
        latency=seconds("latency"),
        input_tokens=(
            as_count(tokens_in, where, columns["input_tokens"], nullable=True)
            if tokens_in is not None
            else nothing
        ),
        output_tokens=(
            as_count(tokens_out, where, columns["output_tokens"], nullable=True)
            if tokens_out is not None
            else nothing
        ),
        failed=failed,
        timeout=timeout,
        error=message,
        names=names,
    )


def _assemble(
    where: Where,
    *,
    model: pa.Array,
    start: pa.Array,
    ttft: pa.Array,
    latency: pa.Array,
    input_tokens: pa.Array,
    output_tokens: pa.Array,
    failed: np.ndarray,
    timeout: np.ndarray,
    error: pa.Array,
    names: Mapping[str, str],
) -> pa.Table:
    """One source's canonical table, once its latencies agree with each other.

    `names` gives the source's own names for ``ttft`` and ``latency``, for the errors.
    """
    n = len(failed)
    latency_s = latency.fill_null(np.nan).to_numpy(zero_copy_only=False)
    ttft_s = ttft.fill_null(np.nan).to_numpy(zero_copy_only=False)
    row = first_true(latency_s < 0)
    if row is not None:
        raise where.error(
            row, names["latency"], f"negative latency {show(latency_s[row])} s", _LATENCY_FIX
        )
    row = first_true(ttft_s < 0)
    if row is not None:
        raise where.error(
            row, names["ttft"], f"negative time to first token {show(ttft_s[row])} s", _LATENCY_FIX
        )
    row = first_true(ttft_s > latency_s + TIME_SLACK_S)
    if row is not None:
        raise where.error(
            row,
            names["ttft"],
            f"time to first token {show(ttft_s[row])} s is longer than the latency "
            f"{show(latency_s[row])} s",
            _LATENCY_FIX,
        )
    row = first_true(np.isnan(latency_s) & ~failed)
    if row is not None:
        raise where.error(
            row, names["latency"], "a successful call without a latency", "give it its latency"
        )
    is_failed, is_timeout = pa.array(failed), pa.array(timeout)
    status = pc.if_else(is_timeout, "timeout", pc.if_else(is_failed, "error", "ok"))
    rows = where.index if where.index is not None else np.arange(n)
    return pa.Table.from_arrays(
        [
            model,
            start,
            ttft,
            latency,
            input_tokens,
            output_tokens,
            status,
            pc.if_else(is_failed, error, ""),
            pa.array([where.path] * n, pa.string()),
            pa.array(rows, pa.int64()),
        ],
        schema=CALLS_SCHEMA,
    )


def _statuses(
    column: pa.ChunkedArray, where: Where, name: str
) -> tuple[np.ndarray, np.ndarray, pa.Array]:
    """(failed, timeout, the HTTP code as text or "") from ok/error/timeout or HTTP codes."""
    arr = plain(column)
    if pa.types.is_string(arr.type):
        words = pc.utf8_lower(pc.utf8_trim_whitespace(arr))
        is_word = pc.fill_null(pc.is_in(words, value_set=pa.array(STATUSES)), False)
        is_code = pc.fill_null(pc.match_substring_regex(words, r"^\d{3}$"), False)
        row = first_true(~pc.or_(is_word, is_code).to_numpy(zero_copy_only=False))
        if row is not None:
            value = arr[row].as_py()
            problem = "empty value" if value is None else f"{show(value)} is not a status"
            raise where.error(row, name, problem, _STATUS_FIX)
        code_text = pc.if_else(is_code, words, "")
        codes = numeric(pc.if_else(is_code, words, "0"), where, name, _STATUS_FIX)
        word = words.fill_null("").to_numpy(zero_copy_only=False)
        coded = is_code.to_numpy(zero_copy_only=False)
    else:
        codes = as_count(arr, where, name)
        code_text = codes.cast(pa.string())
        word = np.full(len(arr), "", dtype=object)
        coded = np.ones(len(arr), dtype=bool)
    code = codes.cast(pa.int64()).to_numpy(zero_copy_only=False)
    failed = np.where(coded, (code < 200) | (code > 299), word != "ok")
    timeout = np.where(coded, np.isin(code, TIMEOUT_CODES), word == "timeout")
    return failed, timeout, code_text


def _models(
    column: pa.ChunkedArray | None, where: Where, name: str | None, model: str | None, n: int
) -> pa.Array:
    """The model column, its gaps filled with `model`; an error when neither names one."""
    if column is None or name is None:
        if model is None:
            raise DataError(f"{where.path}: no model column and no model given; pass --model")
        return pa.array([model] * n, pa.string())
    values = as_text(column, where, name, missing="null")
    values = pc.if_else(pc.equal(values, ""), pa.scalar(None, pa.string()), values)
    if model is not None:
        return values.fill_null(model)
    require(values, where, name, "pass --model for calls without one", problem="empty model")
    return values


def _otlp_spans(raw: RawFile) -> list[dict[str, Any]]:
    """Every span of the export(s) in the file, in document order."""
    try:
        documents = [json.loads(raw.data)]
    except ValueError as exc:
        if "Extra data" not in str(exc):
            raise DataError(f"{raw.path}: not valid JSON ({exc}); expected {OTLP_TEXT}") from None
        documents = []
        for line, text in enumerate(raw.data.split(b"\n"), start=1):
            if not text.strip():
                continue
            try:
                documents.append(json.loads(text))
            except ValueError as err:
                raise DataError(
                    f"{raw.path}:{line}: not valid JSON ({err}); expected {OTLP_TEXT}"
                ) from None
    spans: list[dict[str, Any]] = []
    for document in documents:
        if not isinstance(document, dict) or not isinstance(document.get("resourceSpans"), list):
            raise DataError(f"{raw.path}: no resourceSpans; expected {OTLP_TEXT}")
        for resource in document["resourceSpans"]:
            for scope in (resource or {}).get("scopeSpans") or ():
                spans.extend(s for s in (scope or {}).get("spans") or () if isinstance(s, dict))
    if not spans:
        raise DataError(f"{raw.path}: no spans; expected {OTLP_TEXT}")
    return spans


def _attributes(span: dict[str, Any]) -> dict[str, Any]:
    """A span's attributes as {key: value}, each OTLP AnyValue unwrapped."""
    out: dict[str, Any] = {}
    for attribute in span.get("attributes") or ():
        value = attribute.get("value") or {}
        out[attribute.get("key")] = next(
            (value[kind] for kind in _ANY_VALUE if kind in value), None
        )
    return out


def _text(value: object) -> str | None:
    """A scalar as text (OTLP/JSON writes 64-bit integers as strings, numbers otherwise)."""
    return None if value is None else str(value)


def _nanoseconds(column: pa.Array, where: Where, name: str) -> np.ndarray:
    values = numeric(column, where, name, "write integer nanoseconds since the epoch")
    require(values, where, name, "every span needs its start and end time", problem="missing")
    ns: np.ndarray = values.cast(pa.int64()).to_numpy(zero_copy_only=False)
    return ns


def _no_zeros(values: pa.Array, failed: np.ndarray) -> pa.Array:
    """Null where a failed call shows 0 (LLMPerf's placeholder for "never measured")."""
    zero = pc.fill_null(pc.equal(values, 0.0), False)
    return pc.if_else(pc.and_(zero, pa.array(failed)), pa.scalar(None, pa.float64()), values)


def _says_timeout(message: pa.Array) -> np.ndarray:
    said: np.ndarray = pc.fill_null(
        pc.match_substring_regex(message, _TIMEOUT_TEXT), False
    ).to_numpy(zero_copy_only=False)
    return said


def _bad_record(records: list[Any], where: Where) -> DataError:
    """The first LLMPerf record that pyarrow could not convert, and the field at fault."""
    for row, record in enumerate(records):
        if not isinstance(record, dict):
            return DataError(
                f"{where.at(row)}: a JSON {type(record).__name__}, not a record; "
                f"expected {LLMPERF_TEXT}"
            )
        for field in _LLMPERF:
            value = record.get(field.name)
            try:
                pa.array([value], field.type)
            except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):
                what, fix = (
                    ("text", "write text")
                    if field.type == pa.string()
                    else (
                        "a number",
                        NUMBER_FIX,
                    )
                )
                return where.error(row, field.name, f"{show(value)} is not {what}", fix)
    return DataError(f"{where.path}: cannot read the records; expected {LLMPERF_TEXT}")
