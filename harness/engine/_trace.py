"""What a run records while it runs: interned strings, span rows and per-request columns.

The loop writes column buffers (`Trace`): one preallocated slot per request, and
growing typed arrays for spans, with strings interned to small integer codes.
`records` turns a finished `Trace` into the documented tables.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from harness.spec import STAGES, VIOLATION_KINDS


class Codes:
    """Interns strings to small integer codes for a column; code 0 is always ''."""

    __slots__ = ("index", "values")

    def __init__(self) -> None:
        self.values: list[str] = [""]
        self.index: dict[str, int] = {"": 0}

    def __call__(self, value: str) -> int:
        code = self.index.get(value)
        if code is None:
            code = self.index[value] = len(self.values)
            self.values.append(value)
        return code

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """Codes back to an object array of strings."""
        out: np.ndarray = np.asarray(self.values, dtype=object)[codes]
        return out


SPAN_FIELDS: tuple[tuple[str, str], ...] = (
    ("request_id", "q"),
    ("index", "h"),
    ("kind", "b"),
    ("name", "h"),
    ("target", "h"),
    ("tier", "h"),
    ("call_index", "h"),
    ("start_s", "d"),
    ("end_s", "d"),
    ("queue_s", "d"),
    ("status", "b"),
    ("http_status", "h"),
    ("input_tokens", "q"),
    ("output_tokens", "q"),
    ("cost_usd", "d"),
    ("fault", "h"),
    ("detail", "h"),
    ("stage", "b"),
    ("guards", "b"),
    ("caught", "b"),
    ("acted", "b"),
    ("violation", "b"),
    ("first_token_s", "d"),
    ("cache_read", "q"),
)
"""Span row layout: (column, array typecode). Strings are codes into `Trace.codes`.
`first_token_s` is the virtual time the first output token arrived (NaN: no token);
`cache_read` the input tokens a model call read from its prompt cache."""

CHUNK: Final = 1 << 16
"""Span rows buffered as bytes before they are joined into a chunk."""

_NUMPY_CODES = {"q": "i8", "h": "i2", "b": "i1", "d": "f8"}
SPAN_DTYPE = np.dtype([(name, _NUMPY_CODES[code]) for name, code in SPAN_FIELDS])
"""One packed span row."""
SPAN_ROW = struct.Struct("=" + "".join(code for _, code in SPAN_FIELDS))
"""One span row as bytes in `SPAN_DTYPE`'s layout (native order, no padding): packing a row
as it comes costs less than one tuple per row turned into a structured array later, and
leaves no object for the garbage collector to track."""
assert SPAN_ROW.size == SPAN_DTYPE.itemsize
pack_span: Final = SPAN_ROW.pack
"""`pack_span(*row)`: one span row (values in `SPAN_FIELDS` order) as bytes."""
HEAD_FIELDS: Final = 7
"""A call's span starts with a head known before the call is served: request_id, index,
kind, name, target, tier, call_index; `pack_head(*head) + pack_tail(*rest)` is the row."""
pack_head: Final = struct.Struct("=" + "".join(code for _, code in SPAN_FIELDS[:HEAD_FIELDS])).pack
pack_tail: Final = struct.Struct("=" + "".join(code for _, code in SPAN_FIELDS[HEAD_FIELDS:])).pack

NAN: Final = float("nan")


class SpanBuffers:
    """Span rows: appended as packed bytes (cheap), joined into structured chunks (fast).

    Reading a column copies the chunks into one array per column and drops them, so that
    `pop` can free each column as the records take it: a million-request run never holds
    its spans twice over while the Arrow columns are built."""

    __slots__ = ("chunks", "parts", "rows")

    def __init__(self) -> None:
        self.rows: list[bytes] = []
        """Rows not yet in a chunk, each `pack_span(*row)`."""
        self.chunks: list[np.ndarray] = []
        self.parts: dict[str, list[np.ndarray]] = {name: [] for name, _ in SPAN_FIELDS}
        """Column-major: each column's pieces, in row order, before any chunk still packed."""

    def emit(self, row: tuple[float | int, ...]) -> None:
        """Append one span row (a tuple in `SPAN_FIELDS` order)."""
        self.add(pack_span(*row))

    def add(self, row: bytes) -> None:
        """Append one span row packed by `pack_span` (the engine's way: no tuple per row)."""
        rows = self.rows
        rows.append(row)
        if len(rows) >= CHUNK:
            self.flush()

    def flush(self) -> None:
        """Join pending rows into a structured chunk (read-only: `_split` copies it out)."""
        if self.rows:
            self.chunks.append(np.frombuffer(b"".join(self.rows), dtype=SPAN_DTYPE))
            self.rows.clear()

    def _split(self) -> dict[str, list[np.ndarray]]:
        """Every row so far, as column pieces: each column copied out of the packed chunks
        into one array, then the chunks dropped (large arrays, so their memory goes back)."""
        self.flush()
        chunks = self.chunks
        if chunks:
            n = sum(len(c) for c in chunks)
            for name, parts in self.parts.items():
                out = np.empty(n, dtype=SPAN_DTYPE[name])
                i = 0
                for chunk in chunks:
                    out[i : i + len(chunk)] = chunk[name]
                    i += len(chunk)
                parts.append(out)
            chunks.clear()
        return self.parts

    def column(self, name: str) -> np.ndarray:
        """One column as a contiguous numpy array."""
        parts = self._split()[name]
        if not parts:
            return np.zeros(0, dtype=SPAN_DTYPE[name])
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def pop(self, name: str) -> np.ndarray:
        """One column, as `column`, then removed from the buffers (its memory freed); the
        column reads empty afterwards."""
        out = self.column(name)
        self.parts[name] = []
        return out

    def __len__(self) -> int:
        packed = sum(len(c) for c in self.chunks) + len(self.rows)
        return packed + sum(len(p) for p in self.parts[SPAN_FIELDS[0][0]])


SPAN_KINDS = (
    "router", "chat", "execute_tool", "retrieval", "policy_check", "backoff", "breaker", "respond",
    "handoff",
)  # fmt: skip
STATUSES = ("ok", "error", "timeout", "rate_limited", "malformed", "rejected")
K_ROUTER: Final = 0
K_CHAT: Final = 1
K_TOOL: Final = 2
K_RETRIEVAL: Final = 3
K_POLICY: Final = 4
K_BACKOFF: Final = 5
K_BREAKER: Final = 6
K_RESPOND: Final = 7
K_HANDOFF: Final = 8
KINDS = ("", *VIOLATION_KINDS)
"""Violation kinds by code (0: none), for the `guards` and `violation` span columns."""
KIND: Final = {k: i for i, k in enumerate(KINDS)}
STAGE_NAMES = ("", *STAGES)
STAGE: Final = {k: i for i, k in enumerate(STAGE_NAMES)}
NO_MARK: Final = (0, 0)
"""(stage, violation) codes of a span that records no violation."""
STATUS: Final = {s: i for i, s in enumerate(STATUSES)}
REJECTED: Final = STATUS["rejected"]


CODE_COLUMNS = ("route", "tier", "tiers_tried", "name", "target", "fault", "detail",
                "violation_kinds")  # fmt: skip
"""Columns whose strings are interned (`Trace.codes`)."""


@dataclass
class Trace:
    """Everything a run recorded, as columns. `records` turns it into tables."""

    n: int
    finished: np.ndarray  # bool
    end_s: np.ndarray
    outcome: np.ndarray  # int8 code into `outcomes`
    route: np.ndarray  # int16 code into `codes.route`
    served_by: np.ndarray
    tiers_tried: np.ndarray
    escalated: np.ndarray
    escalation_harm: np.ndarray  # bool: escalated, a lower tier was right, final answer wrong
    retries: np.ndarray
    fallbacks: np.ndarray
    handoff: np.ndarray
    handoff_wait_s: np.ndarray  # time queued for a human (0: no handoff, or none waiting)
    confidence: np.ndarray
    cost_usd: np.ndarray
    input_tokens: np.ndarray
    output_tokens: np.ndarray
    cached_input_tokens: np.ndarray  # input tokens read from prompt caches
    model_calls: np.ndarray
    tool_calls: np.ndarray
    violations: np.ndarray
    violation_kinds: np.ndarray  # int16 code into codes.violation_kinds
    prevented: np.ndarray  # violations guardrails caught and acted on
    prevented_kinds: np.ndarray  # int16 code into codes.violation_kinds
    first_token_s: np.ndarray  # first token of the answer the user got (NaN: none)
    success: np.ndarray  # bool: judged by ground truth (a right answer, a due refusal, ...)
    spans: SpanBuffers
    codes: dict[str, Codes]
    outcomes: tuple[str, ...]
    prompt: list[str] | None = None  # kept only when the policy's retention allows it
    answer: list[str] | None = None
    events: int = 0
    arrival_s: np.ndarray | None = None
    """Closed-loop sessions: when each request arrived, decided during the run (NaN: a turn
    that never came, its user having left); None: the sampled arrivals hold."""

    @classmethod
    def empty(cls, n: int, outcomes: tuple[str, ...], keep_text: bool) -> Trace:
        """A trace with a zeroed slot for each of `n` requests."""
        return cls(
            n=n,
            finished=np.zeros(n, bool),
            end_s=np.zeros(n),
            outcome=np.zeros(n, np.int8),
            route=np.zeros(n, np.int16),
            served_by=np.zeros(n, np.int16),
            tiers_tried=np.zeros(n, np.int16),
            escalated=np.zeros(n, bool),
            escalation_harm=np.zeros(n, bool),
            retries=np.zeros(n, np.int16),
            fallbacks=np.zeros(n, np.int16),
            handoff=np.zeros(n, bool),
            handoff_wait_s=np.zeros(n),
            confidence=np.full(n, np.nan, np.float32),
            cost_usd=np.zeros(n),
            input_tokens=np.zeros(n, np.int64),
            output_tokens=np.zeros(n, np.int64),
            cached_input_tokens=np.zeros(n, np.int64),
            model_calls=np.zeros(n, np.int16),
            tool_calls=np.zeros(n, np.int16),
            violations=np.zeros(n, np.int16),
            violation_kinds=np.zeros(n, np.int16),
            prevented=np.zeros(n, np.int16),
            prevented_kinds=np.zeros(n, np.int16),
            first_token_s=np.full(n, np.nan),
            success=np.zeros(n, bool),
            spans=SpanBuffers(),
            codes={k: Codes() for k in CODE_COLUMNS},
            outcomes=outcomes,
            prompt=[""] * n if keep_text else None,
            answer=[""] * n if keep_text else None,
        )


def _view(column: np.ndarray) -> memoryview[Any]:
    """A 1-D column as a memoryview in its own format ('?', 'b', 'h', 'l', 'f', 'd'): `view[i]
    = x` stores what `column[i] = x` stores."""
    view: memoryview[Any] = column.data
    return view


class Columns:
    """Writable views of a trace's per-request columns, for the loop to write a finished
    request's row into: one memoryview store per value, where numpy's `column[i] = x` costs
    several times more. Views, not copies: what they store is in the trace's arrays."""

    __slots__ = ("cached_input_tokens", "confidence", "cost_usd", "end_s", "escalated",
                 "escalation_harm", "fallbacks", "finished", "first_token_s", "handoff",
                 "handoff_wait_s", "input_tokens", "model_calls", "outcome", "output_tokens",
                 "prevented", "prevented_kinds", "retries", "route", "served_by", "success",
                 "tiers_tried", "tool_calls", "violation_kinds", "violations")  # fmt: skip

    def __init__(self, trace: Trace) -> None:
        self.finished = _view(trace.finished)
        self.end_s = _view(trace.end_s)
        self.outcome = _view(trace.outcome)
        self.route = _view(trace.route)
        self.served_by = _view(trace.served_by)
        self.tiers_tried = _view(trace.tiers_tried)
        self.escalated = _view(trace.escalated)
        self.escalation_harm = _view(trace.escalation_harm)
        self.retries = _view(trace.retries)
        self.fallbacks = _view(trace.fallbacks)
        self.handoff = _view(trace.handoff)
        self.handoff_wait_s = _view(trace.handoff_wait_s)
        self.confidence = _view(trace.confidence)
        self.cost_usd = _view(trace.cost_usd)
        self.input_tokens = _view(trace.input_tokens)
        self.output_tokens = _view(trace.output_tokens)
        self.cached_input_tokens = _view(trace.cached_input_tokens)
        self.model_calls = _view(trace.model_calls)
        self.tool_calls = _view(trace.tool_calls)
        self.violations = _view(trace.violations)
        self.violation_kinds = _view(trace.violation_kinds)
        self.prevented = _view(trace.prevented)
        self.prevented_kinds = _view(trace.prevented_kinds)
        self.first_token_s = _view(trace.first_token_s)
        self.success = _view(trace.success)
