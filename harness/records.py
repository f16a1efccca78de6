"""The analysts' contract: the columns of requests and spans, documented once, here.

`requests_table` and `spans_table` turn an engine `Trace` into Arrow tables whose
schema is exactly `REQUEST_COLUMNS` / `SPAN_COLUMNS` (names, types, meaning). Span
attribute names follow the OpenTelemetry GenAI conventions where one exists
(`gen_ai.operation.name`, `gen_ai.request.model`, `gen_ai.usage.input_tokens`, ...).
Bump `SCHEMA_VERSION` whenever a column changes meaning, type or name.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

if TYPE_CHECKING:
    import pyarrow as pa

    from harness.engine import Trace
    from harness.traffic import Requests

SCHEMA_VERSION = 1


class Column(NamedTuple):
    """One documented column: name, Arrow type name, meaning."""

    name: str
    type: str
    doc: str


REQUEST_COLUMNS: tuple[Column, ...] = (
    Column("request_id", "int64", "Index of the request in arrival order; pairs runs of one seed."),
    Column("arrival_s", "float64", "Arrival time, seconds of virtual time after the run start."),
    Column("task_class", "string", "True task class from the traffic mix."),
    Column(
        "tenant",
        "string",
        "Tenant: drawn from traffic.tenants, or a log's tenant column ('' when none).",
    ),
    Column("route", "string", "Routing decision (e.g. routine, reasoning, escalation)."),
    Column("served_by", "string", "Tier that produced the final answer; 'human' on handoff."),
    Column("tiers_tried", "string", "Tiers used, in order, joined by '>' (e.g. fast>balanced)."),
    Column(
        "outcome", "string", "success, wrong, timeout, error, blocked, handoff or budget_exhausted."
    ),
    Column(
        "success",
        "bool",
        "By ground truth: a right answer, or a refusal (blocked) of a request that asked for a "
        "prohibited action, or a handoff the human got right (answer, approval or refusal; "
        "right with chance handoff.quality).",
    ),
    Column(
        "latency_ms",
        "float64",
        "Arrival to final verdict, milliseconds (queueing and a human's time included).",
    ),
    Column(
        "ttft_ms",
        "float64",
        "Arrival to the first token of the answer the user got, milliseconds (null: no answer).",
    ),
    Column(
        "cost_usd",
        "float64",
        "Token cost of every billed model call (timed-out calls billed for what they generated "
        "by the cutoff, see Model.bill_timeouts) plus a human's handoff.cost_usd.",
    ),
    Column("input_tokens", "int64", "Prompt tokens over billed model calls."),
    Column("output_tokens", "int64", "Completion tokens over billed model calls."),
    Column(
        "cached_input_tokens",
        "int64",
        "Of input_tokens, those read from a model's prompt cache (billed at its cached price).",
    ),
    Column("escalated", "bool", "Moved up a tier on low confidence or low classifier confidence."),
    Column(
        "escalation_harm",
        "bool",
        "Escalated, a lower tier had given a right answer, and the final answer is wrong.",
    ),
    Column("retries", "int16", "Retried calls (models and tools)."),
    Column("fallbacks", "int16", "Switches to another model or tier after a failure."),
    Column("handoff", "bool", "Ended with a human (approval or last resort)."),
    Column(
        "handoff_wait_ms",
        "float64",
        "Time queued for a free human, milliseconds (0 without handoff); within latency_ms.",
    ),
    Column("violations", "int16", "Policy violations let through (once per kind and stage)."),
    Column("violation_kinds", "string", "Kinds of those violations, sorted, comma-separated."),
    Column("prevented", "int16", "Violations a guardrail caught and acted on."),
    Column("prevented_kinds", "string", "Kinds of those, sorted, comma-separated."),
    Column("confidence", "float32", "Confidence of the accepted answer (NaN without one)."),
    Column("model_calls", "int16", "Model calls made (attempts included)."),
    Column("tool_calls", "int16", "Tool and retrieval calls made (attempts included)."),
    Column("pii", "bool", "Edge case: the prompt carried personal data."),
    Column("prompt_injection", "bool", "Edge case: a tool result carried an injected instruction."),
    Column("prohibited_action", "bool", "Edge case: the user asked for a prohibited action."),
    Column("high_impact", "bool", "Edge case: the request needed a high-impact action."),
    Column("evasive", "bool", "Edge case: its edge cases were written to escape the detectors."),
    Column("phase", "string", "Fault windows and spikes active at arrival ('baseline' if none)."),
    Column(
        "session_id",
        "int64",
        "Session (conversation) of the request, numbered by first turn; without sessions each "
        "request is its own session (session_id = request_id).",
    ),
    Column("turn", "int16", "Turn within the session, from 0 (0 without sessions)."),
    Column(
        "prompt", "string", "The user's text after input redaction; '' unless retention allows."
    ),
    Column("answer", "string", "The answer after output redaction; '' unless retention allows."),
)

SPAN_COLUMNS: tuple[Column, ...] = (
    Column("request_id", "int64", "Request the span belongs to."),
    Column("span_index", "int16", "Order of the span within its request."),
    Column(
        "kind",
        "string",
        "router, chat, execute_tool, retrieval, policy_check, backoff, breaker, respond or "
        "handoff (a human took the request: name is the reason, queue_ms the wait).",
    ),
    Column(
        "name", "string", "Purpose (classify, step, repair, answer), tool, check or route name."
    ),
    Column(
        "gen_ai.operation.name", "string", "OpenTelemetry GenAI operation (chat, execute_tool)."
    ),
    Column("gen_ai.request.model", "string", "Model called (chat spans)."),
    Column("gen_ai.tool.name", "string", "Tool called (execute_tool and retrieval spans)."),
    Column("tier", "string", "Tier of the model called."),
    Column("call_index", "int16", "k-th call of this request to this model or tool (tape key)."),
    Column("start_s", "float64", "Start, seconds of virtual time."),
    Column("duration_ms", "float64", "Duration including queueing, milliseconds."),
    Column("queue_ms", "float64", "Time waiting for capacity, milliseconds."),
    Column(
        "ttft_ms",
        "float64",
        "Chat: start (queueing included) to first token, milliseconds; a call without token-"
        "aware latency gets its first token with the whole answer (null: no token).",
    ),
    Column("status", "string", "ok, error, timeout, rate_limited, malformed or rejected."),
    Column("http.response.status_code", "int16", "HTTP status of a call (0: none, e.g. timeout)."),
    Column("gen_ai.usage.input_tokens", "int64", "Billed prompt tokens."),
    Column("gen_ai.usage.output_tokens", "int64", "Billed completion tokens."),
    Column(
        "gen_ai.usage.cache_read.input_tokens",
        "int64",
        "Of the prompt tokens, those read from the model's prompt cache (models.*.cache).",
    ),
    Column("cost_usd", "float64", "Cost of the call."),
    Column("fault", "string", "Injected faults that hit the call ('' if none)."),
    Column(
        "detail",
        "string",
        "Router: tier and reason; policy check: what it found or judged; live chat and tool "
        "calls: `key=value` facts joined by '; ' (error type and message, confidence source, "
        "answered_by, usage=estimated, refusal, gateway_fallbacks, tpot_ms, retry_after).",
    ),
    Column("stage", "string", "Where a check ran or a violation passed: input, tool_args, ..."),
    Column("guards", "string", "Policy check: the violation kind it guards against."),
    Column("caught", "bool", "Policy check: the guardrail detected the edge case."),
    Column("acted", "bool", "Policy check: it acted (redacted, blocked, refused, handed off)."),
    Column("violation", "string", "The violation this span let through ('' if none)."),
)


def arrow_type(name: str) -> pa.DataType:
    """The Arrow type of a documented type name."""
    import pyarrow as pa

    types: dict[str, pa.DataType] = {"bool": pa.bool_(), "string": pa.string()}
    t = types.get(name)
    return t if t is not None else getattr(pa, name)()


def schema(columns: tuple[Column, ...]) -> pa.Schema:
    """Arrow schema of a column list, with each column's doc as field metadata."""
    import pyarrow as pa

    return pa.schema(
        [pa.field(c.name, arrow_type(c.type), metadata={"doc": c.doc}) for c in columns],
        metadata={"evalx.schema_version": str(SCHEMA_VERSION)},
    )


def requests_table(trace: Trace, requests: Requests, phase: np.ndarray) -> pa.Table:
    """One row per request, in request-id order.

    With closed-loop sessions arrivals are the run's (`Trace.arrival_s`), and turns that
    never came (their user left) have no row, so request ids have gaps.
    """
    codes = trace.codes
    outcomes = trace.outcomes
    arrival = arrivals(trace, requests)
    plan = requests.sessions
    blank = _strings(("",), np.zeros(trace.n, dtype=np.int8))  # not a Python '' per row

    def columns() -> Iterator[np.ndarray | pa.Array]:
        yield np.arange(trace.n, dtype=np.int64)
        yield arrival
        yield _strings(requests.class_names, requests.task_class)
        tenant = requests.extra.get("tenant")
        yield tenant if tenant is not None else blank
        yield _strings(codes["route"].values, trace.route)
        yield _strings(codes["tier"].values, trace.served_by)
        yield _strings(codes["tiers_tried"].values, trace.tiers_tried)
        yield _strings(outcomes, trace.outcome)
        yield trace.success
        yield (trace.end_s - arrival) * 1000.0
        yield (trace.first_token_s - arrival) * 1000.0
        yield trace.cost_usd
        yield trace.input_tokens
        yield trace.output_tokens
        yield trace.cached_input_tokens
        yield trace.escalated
        yield trace.escalation_harm
        yield trace.retries
        yield trace.fallbacks
        yield trace.handoff
        yield trace.handoff_wait_s * 1000.0
        yield trace.violations
        yield _strings(codes["violation_kinds"].values, trace.violation_kinds)
        yield trace.prevented
        yield _strings(codes["violation_kinds"].values, trace.prevented_kinds)
        yield trace.confidence
        yield trace.model_calls
        yield trace.tool_calls
        yield requests.pii
        yield requests.injection
        yield requests.prohibited
        yield requests.high_impact
        yield requests.evasive
        yield phase
        yield np.arange(trace.n, dtype=np.int64) if plan is None else plan.session
        yield np.zeros(trace.n, dtype=np.int16) if plan is None else plan.turn
        yield np.asarray(trace.prompt, dtype=object) if trace.prompt is not None else blank
        yield np.asarray(trace.answer, dtype=object) if trace.answer is not None else blank

    table = _with_log_columns(_table(columns(), REQUEST_COLUMNS), requests)
    return table if trace.arrival_s is None else table.filter(~np.isnan(arrival))


def arrivals(trace: Trace, requests: Requests) -> np.ndarray:
    """When each request arrived: sampled, or decided by the run (closed-loop sessions)."""
    return requests.arrival_s if trace.arrival_s is None else trace.arrival_s


LOG_COLUMNS: tuple[Column, ...] = (
    Column(
        "source_id",
        "string",
        "Log and requests-file runs: the request's id in the log (`columns.id`) or its "
        "`id` in the requests file.",
    ),
    Column(
        "assertions",
        "string",
        "Live requests-file runs: 'pass', or 'fail: ' and the assertions the answer failed "
        "(e.g. \"contains 'A123'\"); empty when the request ended without an answer to judge.",
    ),
    Column("session", "string", "Log runs: the session column of the log (`columns.session`)."),
    Column("label_<column>", "as logged", "Log runs: every log column that is not mapped."),
)
"""Columns that requests.parquet gains when traffic replays a log or a requests file."""


def _with_log_columns(table: pa.Table, requests: Requests) -> pa.Table:
    import pyarrow as pa

    if requests.ids is not None:
        field = pa.field("source_id", pa.string(), metadata={"doc": LOG_COLUMNS[0].doc})
        table = table.append_column(field, pa.array(requests.ids, type=pa.string()))
    for name, values in requests.extra.items():
        if name == "tenant":  # a request column of every run
            continue
        doc = next((c.doc for c in LOG_COLUMNS if c.name == name), LOG_COLUMNS[-1].doc)
        array = pa.array(values.tolist(), from_pandas=True)
        table = table.append_column(pa.field(name, array.type, metadata={"doc": doc}), array)
    return table


def spans_table(trace: Trace, consume: bool = False) -> pa.Table:
    """One row per span, ordered by request id, then span order.

    Built one column at a time so a million-request run never holds every column twice;
    with `consume`, each column leaves the trace's span buffers as it is built (they read
    empty afterwards), which keeps the peak memory of a large run down.
    """
    from harness.engine import KINDS, SPAN_KINDS, STAGE_NAMES, STATUSES

    sp = trace.spans
    codes = trace.codes
    order = np.lexsort((sp.column("index"), sp.column("request_id")))
    take = sp.pop if consume else sp.column

    def col(name: str) -> np.ndarray:
        return take(name)[order]

    kind = col("kind")
    is_chat = kind == SPAN_KINDS.index("chat")
    is_tool = (kind == SPAN_KINDS.index("execute_tool")) | (kind == SPAN_KINDS.index("retrieval"))

    def columns() -> Iterator[np.ndarray | pa.Array]:
        yield col("request_id")
        yield col("index")
        yield _strings(SPAN_KINDS, kind)
        yield _strings(codes["name"].values, col("name"))
        yield _strings(("", "chat", "execute_tool"), np.where(is_chat, 1, np.where(is_tool, 2, 0)))
        target = col("target")
        yield _strings(codes["target"].values, np.where(is_chat, target, 0))
        yield _strings(codes["target"].values, np.where(is_tool, target, 0))
        del target
        yield _strings(codes["tier"].values, col("tier"))
        yield col("call_index")
        start = col("start_s")
        yield start
        yield (col("end_s") - start) * 1000.0
        yield col("queue_s") * 1000.0
        yield (col("first_token_s") - start) * 1000.0
        del start
        yield _strings(STATUSES, col("status"))
        yield col("http_status")
        yield col("input_tokens")
        yield col("output_tokens")
        yield col("cache_read")
        yield col("cost_usd")
        yield _strings(codes["fault"].values, col("fault"))
        yield _strings(codes["detail"].values, col("detail"))
        yield _strings(STAGE_NAMES, col("stage"))
        yield _strings(KINDS, col("guards"))
        yield col("caught").astype(bool)
        yield col("acted").astype(bool)
        yield _strings(KINDS, col("violation"))

    return _table(columns(), SPAN_COLUMNS)


NULL_WHEN_NAN = frozenset({"ttft_ms"})
"""Float columns whose missing values are null in Parquet (NaN in the engine's buffers)."""


def _strings(values: Sequence[str], codes: np.ndarray) -> pa.Array:
    """The string column of integer `codes` into `values`, made by Arrow (no Python string
    per row: a million-request run's spans have tens of millions of these cells)."""
    import pyarrow as pa

    return pa.array(values, type=pa.string()).take(pa.array(codes))


def _table(columns: Iterator[np.ndarray | pa.Array], spec: tuple[Column, ...]) -> pa.Table:
    """Arrow table from column arrays produced one at a time, in documented order."""
    import pyarrow as pa

    sch = schema(spec)
    arrays = []
    for field, values in zip(sch, columns, strict=True):
        if isinstance(values, pa.Array):
            arrays.append(values)
        else:
            nulls = field.name in NULL_WHEN_NAN  # NaN there means "none": stored as null
            arrays.append(pa.array(values, type=field.type, from_pandas=nulls))
        del values
    return pa.Table.from_arrays(arrays, schema=sch)


def markdown(tables: dict[str, tuple[Column, ...]]) -> str:
    """The column reference as Markdown (the README embeds it; a test keeps it current)."""
    parts = []
    for title, columns in tables.items():
        parts.append(f"#### `{title}`\n\n| column | type | meaning |\n|---|---|---|")
        parts.extend(f"| `{c.name}` | {c.type} | {c.doc} |" for c in columns)
        parts.append("")
    return "\n".join(parts)


SESSION_COLUMNS: tuple[Column, ...] = (
    Column("session_id", "int64", "Session (requests.parquet `session_id`)."),
    Column("tenant", "string", "Tenant of the session's first turn ('' without tenants)."),
    Column("turns", "int64", "Turns that arrived (each has a row in requests.parquet)."),
    Column("planned_turns", "int64", "Turns the session was to have (after the run's cap)."),
    Column("abandoned", "bool", "The user left after a failed turn, before the planned turns."),
    Column("all_success", "bool", "Every planned turn arrived and succeeded."),
    Column("successes", "int64", "Turns that succeeded."),
    Column("input_tokens", "int64", "Prompt tokens over the session's billed model calls."),
    Column("output_tokens", "int64", "Completion tokens over the session's billed model calls."),
    Column("cost_usd", "float64", "Cost of every turn (sum of requests.parquet `cost_usd`)."),
    Column("first_arrival_s", "float64", "Arrival of the first turn, seconds of virtual time."),
    Column("last_end_s", "float64", "Final verdict of the last turn, seconds of virtual time."),
)
"""sessions.parquet: one row per session, by session id, built from requests.parquet."""


def sessions_table(requests: pa.Table, planned: np.ndarray | None = None) -> pa.Table:
    """One row per session of a requests table (`session_id` groups its rows).

    `planned` gives, by request id, the turns its session was to have (`SessionPlan.planned`);
    None: every session had the turns it shows (no abandonment to detect).
    """
    import pyarrow as pa

    cols = ["request_id", "session_id", "tenant", "success", "input_tokens", "output_tokens",
            "cost_usd", "arrival_s", "latency_ms"]  # fmt: skip
    df = requests.select([c for c in cols if c in requests.column_names]).to_pandas()
    df["end_s"] = df["arrival_s"] + df["latency_ms"] / 1000.0
    if "tenant" not in df:
        df["tenant"] = ""
    out = (
        df.groupby("session_id", sort=True)
        .agg(
            tenant=("tenant", "first"),
            turns=("success", "size"),
            first_request=("request_id", "min"),
            successes=("success", "sum"),
            input_tokens=("input_tokens", "sum"),
            output_tokens=("output_tokens", "sum"),
            cost_usd=("cost_usd", "sum"),
            first_arrival_s=("arrival_s", "min"),
            last_end_s=("end_s", "max"),
        )
        .reset_index()
    )
    turns = out["turns"].to_numpy()
    first = out["first_request"].to_numpy()
    out["planned_turns"] = turns if planned is None else planned[first]
    out["abandoned"] = turns < out["planned_turns"].to_numpy()
    out["all_success"] = (out["successes"].to_numpy() == turns) & ~out["abandoned"].to_numpy()
    names = [c.name for c in SESSION_COLUMNS]
    return pa.Table.from_pandas(out[names], schema=schema(SESSION_COLUMNS), preserve_index=False)
