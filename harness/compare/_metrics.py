"""What a comparison can test: each metric, how it is computed from per-request values and
which way is worse; and the requests columns a comparison reads and pairs on.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class _Metric:
    """How one metric is computed from per-request values, and which way is worse."""

    source: str  # per-request value, see `_Side.values`
    percentile: float | None  # None: the mean
    worse: int  # +1: worse when it grows; -1: worse when it drops


_METRICS: dict[str, _Metric] = {
    "success_rate": _Metric("success", None, -1),
    "violation_rate": _Metric("violated", None, +1),
    "p50_latency_ms": _Metric("latency_ms", 50.0, +1),
    "p95_latency_ms": _Metric("latency_ms", 95.0, +1),
    "p99_latency_ms": _Metric("latency_ms", 99.0, +1),
    "mean_latency_ms": _Metric("latency_ms", None, +1),
    "cost_per_request_usd": _Metric("cost_usd", None, +1),
    "tokens_per_request": _Metric("tokens", None, +1),
    "escalation_rate": _Metric("escalated", None, +1),
    "handoff_rate": _Metric("handoff", None, +1),
}


METRICS: tuple[str, ...] = tuple(_METRICS)
"""The metrics a gates file may name, in report order."""


RATES: frozenset[str] = frozenset(
    {"success_rate", "violation_rate", "escalation_rate", "handoff_rate"}
)
"""Metrics that are shares of requests: tested with McNemar (paired) or Fisher (unpaired)."""


PAIR_KEYS: tuple[str, ...] = ("request_id", "arrival_s", "task_class")
"""Columns that must be identical for two runs to be paired request by request."""


REQUIRED_COLUMNS: tuple[str, ...] = (
    *PAIR_KEYS,
    "route",
    "success",
    "violations",
    "latency_ms",
    "cost_usd",
    "input_tokens",
    "output_tokens",
    "escalated",
    "handoff",
)
"""The requests.parquet columns a comparison reads."""
