"""Observed model calls as a run directory of evalx's own schema (`evalx import`).

A simulation is only worth what it predicts; to say where it differs from reality,
the observed calls (LLMPerf results, OTLP traces, a latency table: `harness.data`'s
canonical calls table) are written as a run that `evalx compare OBSERVED SIMULATED
--unpaired` and `evalx report` read like any other. The manifest says
``"observed": true`` and lists the source files with their sha256.

One request per observed call, with one chat span:

- ``route`` and ``tiers_tried``: the model's name (``observed`` when it has none);
  ``served_by``: the model for a successful call, ``""`` for a failed one;
- ``outcome``: ``success`` / ``error`` / ``timeout`` from the call's status, and
  ``success`` true exactly when the call was ok (observed calls carry no correctness);
- ``latency_ms`` and ``ttft_ms`` as measured (ttft null when not measured); a failed call
  without a latency (LLMPerf writes none) gets ``0``;
- ``arrival_s``: start time relative to the first call when every call has one, else
  the call's index in file order (seconds), since closed-loop data has no arrival times;
- tokens as recorded (``0`` when not); ``cost_usd`` from `Prices` (0 without them).

Every other column gets its neutral value (`NEUTRAL`): no escalation, retries,
fallbacks, handoffs, violations or tool calls; task class ``observed``; confidence NaN;
phase ``baseline``; empty prompt and answer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from harness.data import Calls
from harness.metrics import summary_table
from harness.records import REQUEST_COLUMNS, SCHEMA_VERSION, SPAN_COLUMNS, Column, schema
from harness.storage import MANIFEST, REQUESTS, SPANS, SUMMARY

__all__ = [
    "NEUTRAL",
    "OBSERVED_ROUTE",
    "Prices",
    "arrivals",
    "observed_manifest",
    "observed_run",
    "observed_tables",
]

OBSERVED_ROUTE = "observed"
"""Route (and tier) of calls whose model has no name."""
OBSERVED_CLASS = "observed"
"""Task class of every observed request."""
NEUTRAL: Mapping[str, Any] = {
    "task_class": OBSERVED_CLASS,
    "tenant": "",
    "escalated": False,
    "escalation_harm": False,
    "retries": 0,
    "fallbacks": 0,
    "cached_input_tokens": 0,
    "handoff": False,
    "handoff_wait_ms": 0.0,
    "violations": 0,
    "violation_kinds": "",
    "prevented": 0,
    "prevented_kinds": "",
    "confidence": float("nan"),
    "model_calls": 1,
    "tool_calls": 0,
    "pii": False,
    "prompt_injection": False,
    "prohibited_action": False,
    "high_impact": False,
    "evasive": False,
    "phase": "baseline",
    "prompt": "",
    "answer": "",
}
"""Values of the request columns that observed calls do not have."""
_HTTP = {"ok": 200, "error": 500, "timeout": 0}

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Prices:
    """USD per million input and output tokens, to cost observed calls (0: free)."""

    input_per_mtok: float = 0.0
    output_per_mtok: float = 0.0

    def cost(self, input_tokens: npt.ArrayLike, output_tokens: npt.ArrayLike) -> FloatArray:
        """Cost of calls with these token counts."""
        inp = np.asarray(input_tokens, dtype=np.float64)
        out = np.asarray(output_tokens, dtype=np.float64)
        return np.asarray(
            (inp * self.input_per_mtok + out * self.output_per_mtok) / 1e6, dtype=np.float64
        )


def _floats(table: pa.Table, name: str) -> FloatArray:
    values = pc.cast(table[name], pa.float64()).to_numpy(zero_copy_only=False)
    return np.asarray(values, dtype=np.float64)


def _counts(table: pa.Table, name: str) -> npt.NDArray[np.int64]:
    return np.asarray(pc.fill_null(table[name], 0).to_numpy(zero_copy_only=False), np.int64)


def _texts(table: pa.Table, name: str) -> npt.NDArray[np.object_]:
    return np.asarray(pc.fill_null(table[name], "").to_numpy(zero_copy_only=False), dtype=object)


def arrivals(calls: pa.Table) -> tuple[FloatArray, bool]:
    """(arrival seconds, whether they are real times): start times relative to the first
    when every call has one, else the call's index (closed-loop data has no times)."""
    start = _floats(calls, "start_s")
    if start.size and np.isfinite(start).all():
        return start - start.min(), True
    return np.arange(start.size, dtype=np.float64), False


def _table(columns: tuple[Column, ...], values: Mapping[str, Any], n: int) -> pa.Table:
    sch = schema(columns)
    arrays = []
    for field in sch:
        v = values[field.name]
        if np.ndim(v) == 0:
            v = np.full(n, v, dtype=object if isinstance(v, str) else None)
        arrays.append(pa.array(v, type=field.type, from_pandas=field.name == "ttft_ms"))
    return pa.Table.from_arrays(arrays, schema=sch)


def observed_tables(calls: pa.Table, prices: Prices = Prices()) -> dict[str, pa.Table]:
    """requests, spans and summary tables (by file name) of observed calls, in order."""
    n = calls.num_rows
    model = _texts(calls, "model")
    model[model == ""] = OBSERVED_ROUTE
    status = _texts(calls, "status")
    ok = status == "ok"
    latency = np.nan_to_num(_floats(calls, "latency_s") * 1000.0, nan=0.0)
    ttft = _floats(calls, "ttft_s") * 1000.0
    tin, tout = _counts(calls, "input_tokens"), _counts(calls, "output_tokens")
    cost = prices.cost(tin, tout)
    arrival, _ = arrivals(calls)
    ids = np.arange(n, dtype=np.int64)
    requests = _table(
        REQUEST_COLUMNS,
        {
            **NEUTRAL,
            "request_id": ids,
            "arrival_s": arrival,
            "route": model,
            "served_by": np.where(ok, model, ""),
            "tiers_tried": model,
            "outcome": np.where(ok, "success", status),
            "success": ok,
            "latency_ms": latency,
            "ttft_ms": ttft,
            "cost_usd": cost,
            "input_tokens": tin,
            "output_tokens": tout,
            "session_id": ids,  # each observed call is a session of its own
            "turn": 0,
        },
        n,
    )
    spans = _table(
        SPAN_COLUMNS,
        {
            "request_id": ids,
            "span_index": 0,
            "kind": "chat",
            "name": "answer",
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": model,
            "gen_ai.tool.name": "",
            "tier": model,
            "call_index": 0,
            "start_s": arrival,
            "duration_ms": latency,
            "queue_ms": 0.0,
            "ttft_ms": ttft,
            "status": status,
            "http.response.status_code": np.vectorize(_HTTP.__getitem__, otypes=[np.int16])(status)
            if n
            else np.zeros(0, np.int16),
            "gen_ai.usage.input_tokens": tin,
            "gen_ai.usage.output_tokens": tout,
            "gen_ai.usage.cache_read.input_tokens": 0,
            "cost_usd": cost,
            "fault": "",
            "detail": "",
            "stage": "",
            "guards": "",
            "caught": False,
            "acted": False,
            "violation": "",
        },
        n,
    )
    return {REQUESTS: requests, SPANS: spans, SUMMARY: summary_table(requests, spans)}


def observed_manifest(
    calls: Calls, name: str, argv: Sequence[str], prices: Prices = Prices()
) -> dict[str, Any]:
    """The manifest of an imported run: `observed: true`, sources with sha256."""
    from harness.run import host, versions

    table = calls.table
    arrival, timed = arrivals(table)
    span = float(arrival.max()) if arrival.size else 0.0
    stamp = datetime.now(UTC)
    return {
        "schema_version": SCHEMA_VERSION,
        "observed": True,
        "run_id": f"{stamp.strftime('%Y%m%dT%H%M%SZ')}-observed",
        "suite": name,
        "suite_path": "",
        "suite_hash": "",
        "seed": None,
        "requests": table.num_rows,
        "spans": table.num_rows,
        "events": 0,
        "simulated_seconds": round(span, 6),
        "wall_seconds": 0.0,
        "started_at": stamp.isoformat(timespec="seconds"),
        "command": list(argv),
        "versions": versions(),
        **host(),
        "policy": {"name": "observed", "version": "", "hash": ""},
        "parameters": {},
        "thresholds": [],
        "sources": [{"path": s.path, "sha256": s.sha256, "rows": s.rows} for s in calls.sources],
        "arrivals": "start times" if timed else "file order (no start times in the data)",
        "prices": {
            "input_per_mtok": prices.input_per_mtok,
            "output_per_mtok": prices.output_per_mtok,
        },
        "files": [REQUESTS, SPANS, SUMMARY, MANIFEST],
    }


def observed_run(
    calls: Calls, argv: Sequence[str], prices: Prices = Prices(), name: str | None = None
) -> tuple[dict[str, pa.Table], dict[str, Any]]:
    """(tables by file name, manifest) of observed `calls`, ready for `storage.write_run`.

    `name` is the run's suite name (default: the models' names joined by ``+``).
    """
    tables = observed_tables(calls.table, prices)
    models = list(dict.fromkeys(_texts(calls.table, "model").tolist()))
    label = name or "+".join(m or OBSERVED_ROUTE for m in models) or OBSERVED_ROUTE
    return tables, observed_manifest(calls, label, argv, prices)
