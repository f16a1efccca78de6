"""Per-route service metrics: the numbers a routing change is judged by.

One row per route plus one for `all`, computed from the requests table. Percentiles
are exact (linear interpolation between order statistics, numpy's default), success
rates carry a 95% interval that respects dependence in time (batch means over
arrival-time blocks, `harness.intervals`).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from harness.intervals import interval
from harness.intervals import wilson as wilson  # re-exported: callers import it from here
from harness.records import Column
from harness.spec import VIOLATION_KINDS

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

ALL = "all"

SUMMARY_COLUMNS: tuple[Column, ...] = (
    Column("route", "string", "Route name, or 'all' for every request."),
    Column("requests", "int64", "Requests on the route."),
    Column(
        "success_rate",
        "float64",
        "Share of requests with success (requests.success: judged by ground truth).",
    ),
    Column(
        "success_ci_low",
        "float64",
        "95% interval of success_rate, lower bound; method in ci_method (harness.intervals).",
    ),
    Column("success_ci_high", "float64", "95% interval of success_rate, upper bound."),
    Column(
        "ci_method",
        "string",
        "How the success interval was made: 'batch means' (t-interval on the means of "
        "contiguous arrival-time blocks of the route's requests) or 'wilson' (fallback: "
        "under 100 requests, or no variation between blocks).",
    ),
    Column(
        "ci_block_requests", "int64", "Requests per block of the batch-means interval (1: Wilson)."
    ),
    Column("p50_latency_ms", "float64", "Median latency, milliseconds."),
    Column("p95_latency_ms", "float64", "95th percentile latency, milliseconds."),
    Column("p99_latency_ms", "float64", "99th percentile latency, milliseconds."),
    Column("mean_latency_ms", "float64", "Mean latency, milliseconds."),
    Column("p50_ttft_ms", "float64", "Median time to first token of answered requests, ms."),
    Column(
        "p95_ttft_ms", "float64", "95th percentile time to first token of answered requests, ms."
    ),
    Column("cost_per_request_usd", "float64", "Mean token cost per request."),
    Column("cost_per_success_usd", "float64", "Total cost divided by successes (NaN if none)."),
    Column("total_cost_usd", "float64", "Total token cost."),
    Column("tokens_per_request", "float64", "Mean input + output tokens per request."),
    Column("escalation_rate", "float64", "Share of requests escalated to a higher tier."),
    Column(
        "escalation_harm_rate",
        "float64",
        "Share of requests where escalation turned a right answer wrong (NaN: not recorded).",
    ),
    Column("fallback_rate", "float64", "Share of requests that fell back after a failure."),
    Column("handoff_rate", "float64", "Share of requests handed off to a human."),
    Column("retries_per_request", "float64", "Mean retried calls per request."),
    Column("timeout_rate", "float64", "Share of requests ending in timeout."),
    Column("error_rate", "float64", "Share of requests ending in error."),
    Column(
        "budget_exhausted_rate", "float64", "Share of requests stopped by a token or step budget."
    ),
    Column("violations", "int64", "Policy violations let through, all kinds."),
    Column("prevented", "int64", "Violations guardrails caught and acted on, all kinds."),
    *(Column(f"violations_{k}", "int64", f"Violations of kind {k}.") for k in VIOLATION_KINDS),
    *(
        Column(f"prevented_{k}", "int64", f"Prevented violations of kind {k}.")
        for k in VIOLATION_KINDS
    ),
    Column("sessions", "int64", "Sessions (sessions.parquet rows); `all` row only, else null."),
    Column(
        "session_success_rate", "float64", "Share of sessions whose every turn succeeded (`all`)."
    ),
    Column("abandon_rate", "float64", "Share of sessions the user left after a failure (`all`)."),
    Column("turns_per_session", "float64", "Mean turns that arrived per session (`all`)."),
    Column("cost_per_session_usd", "float64", "Mean cost per session (`all`)."),
)


def _ttft(df: pd.DataFrame) -> dict[str, float]:
    """p50 and p95 time to first token over requests that got an answer (NaN: none did)."""
    ttft = df["ttft_ms"].to_numpy(dtype=np.float64) if "ttft_ms" in df else np.zeros(0)
    ttft = ttft[~np.isnan(ttft)]
    p50, p95 = np.percentile(ttft, [50, 95]) if ttft.size else (math.nan, math.nan)
    return {"p50_ttft_ms": float(p50), "p95_ttft_ms": float(p95)}


def _row(route: str, df: pd.DataFrame, marks: pd.DataFrame) -> dict[str, object]:
    n = len(df)
    lat = df["latency_ms"].to_numpy()
    succ = int(df["success"].sum())
    cost = float(df["cost_usd"].sum())
    outcome = df["outcome"].to_numpy()
    p50, p95, p99 = np.percentile(lat, [50, 95, 99]) if n else (math.nan,) * 3
    ok = df["success"].to_numpy(dtype=np.float64)
    ci = interval(
        ok[np.argsort(df["arrival_s"].to_numpy(), kind="stable")] if "arrival_s" in df else ok
    )

    def share(mask: np.ndarray) -> float:
        return float(mask.mean()) if n else math.nan

    return {
        "route": route,
        "requests": n,
        "success_rate": succ / n if n else math.nan,
        "success_ci_low": ci.low,
        "success_ci_high": ci.high,
        "ci_method": ci.method,
        "ci_block_requests": ci.block,
        "p50_latency_ms": float(p50),
        "p95_latency_ms": float(p95),
        "p99_latency_ms": float(p99),
        "mean_latency_ms": float(lat.mean()) if n else math.nan,
        **_ttft(df),
        "cost_per_request_usd": cost / n if n else math.nan,
        "cost_per_success_usd": cost / succ if succ else math.nan,
        "total_cost_usd": cost,
        "tokens_per_request": float((df["input_tokens"] + df["output_tokens"]).mean())
        if n
        else math.nan,
        "escalation_rate": share(df["escalated"].to_numpy()),
        "escalation_harm_rate": share(df["escalation_harm"].to_numpy())
        if "escalation_harm" in df
        else math.nan,
        "fallback_rate": share(df["fallbacks"].to_numpy() > 0),
        "handoff_rate": share(df["handoff"].to_numpy()),
        "retries_per_request": float(df["retries"].mean()) if n else math.nan,
        "timeout_rate": share(outcome == "timeout"),
        "error_rate": share(outcome == "error"),
        "budget_exhausted_rate": share(outcome == "budget_exhausted"),
        "violations": int(df["violations"].sum()),
        "prevented": int(df["prevented"].sum()),
        **{f"violations_{k}": int((marks["violation"] == k).sum()) for k in VIOLATION_KINDS},
        **{f"prevented_{k}": int((marks["prevented"] == k).sum()) for k in VIOLATION_KINDS},
    }


def summarize(requests: pd.DataFrame, marks: pd.DataFrame | None = None) -> pd.DataFrame:
    """Summary rows: one per route, sorted by name, then `all`.

    The success interval reads each route's requests in `arrival_s` order when the
    column is there, else in row order (pooled replications: one replication after another).

    `marks` has one row per span that let a violation through or prevented one:
    `request_id`, `violation` and `prevented` (kind names, '' where not applicable).
    """
    import pandas as pd

    if marks is None or not len(marks):
        marks = pd.DataFrame({"route": [], "violation": [], "prevented": []}, dtype=object)
    else:
        route_of = requests.set_index("request_id")["route"]
        marks = marks.assign(route=marks["request_id"].map(route_of))
    rows = [
        _row(str(route), g, marks[marks["route"] == route])
        for route, g in requests.groupby("route", sort=True)
    ]
    rows.append(_row(ALL, requests, marks))
    return pd.DataFrame(rows, columns=[c.name for c in SUMMARY_COLUMNS])


TENANT_LIMIT_ROUTE = "tenant_limit"
"""Route of a request a tenant limit turned away (rejected, or queued past its deadline)."""


def tenant_summary(requests: pa.Table) -> pd.DataFrame | None:
    """Per tenant: requests, success rate, p95 latency, cost per request, total cost and the
    share turned away by a tenant limit; None when no request has a tenant.

    Kept out of summary.parquet, whose rows are routes (compare pairs them by route); by
    tenant, gate with thresholds (`success{tenant:acme}`) or read requests.parquet.
    """
    import pandas as pd

    if "tenant" not in requests.column_names:
        return None
    cols = ["tenant", "route", "success", "latency_ms", "cost_usd"]
    df = requests.select(cols).to_pandas()
    if not (df["tenant"] != "").any():
        return None
    rows = []
    for tenant, g in df.groupby("tenant", sort=True):
        n = len(g)
        cost = float(g["cost_usd"].sum())
        rows.append({
            "tenant": str(tenant),
            "requests": n,
            "success_rate": float(g["success"].mean()),
            "p95_latency_ms": float(np.percentile(g["latency_ms"].to_numpy(), 95)),
            "cost_per_request_usd": cost / n,
            "total_cost_usd": cost,
            "limited_rate": float((g["route"] == TENANT_LIMIT_ROUTE).mean()),
        })  # fmt: skip
    return pd.DataFrame(rows)


def violation_marks(spans: pa.Table) -> pd.DataFrame:
    """The spans that let a violation through or prevented one, as summarize's `marks`."""
    import pyarrow as pa
    import pyarrow.compute as pc

    df = spans.select(["request_id", "violation", "guards", "caught", "acted"])
    keep = pc.or_(pc.not_equal(df["violation"], pa.scalar("")), pc.and_(df["caught"], df["acted"]))
    sub = df.filter(keep).to_pandas()
    prevented = sub["guards"].where(sub["caught"] & sub["acted"], "")
    out: pd.DataFrame = sub.assign(prevented=prevented)[["request_id", "violation", "prevented"]]
    return out


NEEDED = ("request_id", "route", "latency_ms", "success", "cost_usd", "outcome", "input_tokens",
          "output_tokens", "escalated", "fallbacks", "handoff", "retries", "violations",
          "prevented")  # fmt: skip
"""Request columns the summary reads."""


def session_metrics(sessions: pa.Table) -> dict[str, float]:
    """The session columns of the `all` row, from a sessions table."""
    n = sessions.num_rows
    if n == 0:
        return {}

    def mean(name: str) -> float:
        return float(sessions.column(name).to_numpy().mean())

    return {
        "sessions": n,
        "session_success_rate": mean("all_success"),
        "abandon_rate": mean("abandoned"),
        "turns_per_session": mean("turns"),
        "cost_per_session_usd": mean("cost_usd"),
    }


def summary_table(
    requests: pa.Table, spans: pa.Table | None = None, sessions: pa.Table | None = None
) -> pa.Table:
    """The summary of a run's tables, as an Arrow table with the documented schema.

    `sessions` (sessions.parquet) fills the session columns; None: built from `requests`
    (without a run's plan, so no session counts as abandoned).
    """
    import pyarrow as pa

    from harness.records import schema, sessions_table

    sch = schema(SUMMARY_COLUMNS)
    optional = [
        c for c in ("arrival_s", "ttft_ms", "escalation_harm") if c in requests.column_names
    ]
    needed = [*NEEDED, *optional]
    df = requests.select(needed).to_pandas()
    marks = violation_marks(spans) if spans is not None else None
    out = summarize(df, marks)
    if "session_id" in requests.column_names:
        per = session_metrics(sessions if sessions is not None else sessions_table(requests))
        for name, value in per.items():
            out.loc[out["route"] == ALL, name] = value
    return pa.Table.from_pandas(out, schema=sch, preserve_index=False)
