"""Per-route service metrics: the numbers a routing change is judged by.

One row per route plus one for `all`, computed from the requests table. Percentiles
are exact (linear interpolation between order statistics, numpy's default), success
rates carry a 95% interval that respects dependence in time (batch means over
arrival-time blocks, `harness.intervals`).

Computed on numpy arrays taken from the Arrow columns, rows grouped by route once; sums
and means reduce each route's values in row order, as pandas did, so the figures are
bit-identical to a pandas groupby's. `summarize` is the entry point for DataFrames.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import TYPE_CHECKING, NamedTuple

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


NUMBERS = ("latency_ms", "success", "cost_usd", "escalated", "fallbacks", "handoff", "retries",
           "violations", "prevented")  # fmt: skip
"""Request columns a summary row reads as they are."""
NEEDED = ("request_id", "route", "outcome", "input_tokens", "output_tokens", *NUMBERS)
"""Request columns the summary reads."""
OPTIONAL = ("arrival_s", "ttft_ms", "escalation_harm")
"""Request columns the summary reads when they are there."""
OUTCOMES = ("timeout", "error", "budget_exhausted")
"""Outcomes with a share of their own (`<outcome>_rate`)."""
MARK_KINDS = tuple(
    (mark, kind, f"{column}_{kind}")
    for mark, column in (("violation", "violations"), ("prevented", "prevented"))
    for kind in VIOLATION_KINDS
)
"""Counts of marks by kind: marks column, kind, summary column."""


class _Groups(NamedTuple):
    """Rows grouped by a key column: group `g` is `names[g]`, its rows are
    `order[bounds[g]:bounds[g + 1]]`, in row order. Rows with a null key are in no group."""

    names: list[str]
    order: np.ndarray
    bounds: np.ndarray
    code: np.ndarray
    """Per row: its group, or -1 for a null key."""

    def slices(self) -> Iterator[tuple[str, slice]]:
        """Each group's name and its rows' positions in `order`."""
        for g, name in enumerate(self.names):
            yield name, slice(int(self.bounds[g]), int(self.bounds[g + 1]))


def _groups(keys: pa.ChunkedArray | pa.Array) -> _Groups:
    """Group rows by a string column, names sorted (as pandas' `groupby(sort=True)`)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(keys, pa.ChunkedArray):
        keys = keys.combine_chunks()
    encoded = pc.dictionary_encode(keys)
    found = [str(v) for v in encoded.dictionary.to_pylist()]
    rank = np.full(len(found) + 1, -1, dtype=np.int64)  # index -1 (a null key) reads the last: -1
    rank[sorted(range(len(found)), key=found.__getitem__)] = np.arange(len(found))
    code = rank[pc.fill_null(encoded.indices, -1).to_numpy()]
    small = code.astype(np.int16) if len(found) < 2**15 else code  # radix sort
    bounds = np.cumsum(np.bincount(code + 1, minlength=len(found) + 1))  # nulls sort first
    return _Groups(sorted(found), np.argsort(small, kind="stable"), bounds, code)


def _columns(requests: pa.Table) -> dict[str, np.ndarray]:
    """The request columns a summary row reads, as numpy arrays in row order: NUMBERS,
    those of OPTIONAL that are there, `tokens` (input plus output) and, for each of
    OUTCOMES, whether a request ended so."""
    import pyarrow.compute as pc

    def column(name: str) -> np.ndarray:
        values: np.ndarray = requests.column(name).to_numpy()
        return values

    present = [c for c in OPTIONAL if c in requests.column_names]
    cols = {c: column(c) for c in (*NUMBERS, *present)}
    cols["tokens"] = column("input_tokens") + column("output_tokens")
    outcome = requests.column("outcome")
    for name in OUTCOMES:
        cols[name] = pc.fill_null(pc.equal(outcome, name), False).to_numpy()
    return cols


def _positions(ids: np.ndarray, among: np.ndarray) -> np.ndarray:
    """Where each of `ids` is in `among` (its first row, if repeated); -1 where it is not."""
    if not among.size:
        return np.full(ids.size, -1, dtype=np.int64)
    order = np.argsort(among, kind="stable")  # ascending ids (a run's) sort in linear time
    at = order[np.minimum(np.searchsorted(among, ids, sorter=order), among.size - 1)]
    return np.where(among[at] == ids, at, -1)


def _mark_counts(marks: pa.Table | None, requests: pa.Table, by: _Groups) -> np.ndarray:
    """Marks of each kind (`violations_<kind>` then `prevented_<kind>`, as columns) per
    group, then in all (a last row, which counts marks whose request is not in `requests`)."""
    import pyarrow.compute as pc

    counts = np.zeros((len(by.names) + 1, len(MARK_KINDS)), dtype=np.int64)
    if marks is None or not marks.num_rows:
        return counts
    row = _positions(
        marks.column("request_id").to_numpy(), requests.column("request_id").to_numpy()
    )
    code = np.append(by.code, -1)[row]  # -1: not a request of the table
    for j, (column, kind, _) in enumerate(MARK_KINDS):
        hit = pc.fill_null(pc.equal(marks.column(column), kind), False).to_numpy()
        counts[:-1, j] = np.bincount(code[hit & (code >= 0)], minlength=len(by.names))
        counts[-1, j] = int(hit.sum())
    return counts


def _row(route: str, cols: dict[str, np.ndarray], marks: np.ndarray) -> dict[str, object]:
    """One summary row from its requests' columns (row order) and mark counts."""
    lat = cols["latency_ms"]
    n = lat.size
    succ = int(cols["success"].sum())
    cost = float(np.nansum(cols["cost_usd"]))  # NaN skipped, as pandas' sum
    p50, p95, p99 = np.percentile(lat, [50, 95, 99]) if n else (math.nan,) * 3
    ttft = cols["ttft_ms"] if "ttft_ms" in cols else np.zeros(0)
    ttft = ttft[~np.isnan(ttft)]
    t50, t95 = np.percentile(ttft, [50, 95]) if ttft.size else (math.nan, math.nan)
    ok = cols["success"].astype(np.float64)
    arrival = cols.get("arrival_s")
    ci = interval(ok if arrival is None else ok[np.argsort(arrival, kind="stable")])

    def mean(values: np.ndarray) -> float:
        return float(values.mean()) if n else math.nan

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
        "mean_latency_ms": mean(lat),
        "p50_ttft_ms": float(t50),
        "p95_ttft_ms": float(t95),
        "cost_per_request_usd": cost / n if n else math.nan,
        "cost_per_success_usd": cost / succ if succ else math.nan,
        "total_cost_usd": cost,
        "tokens_per_request": mean(cols["tokens"]),
        "escalation_rate": mean(cols["escalated"]),
        "escalation_harm_rate": mean(cols["escalation_harm"])
        if "escalation_harm" in cols
        else math.nan,
        "fallback_rate": mean(cols["fallbacks"] > 0),
        "handoff_rate": mean(cols["handoff"]),
        "retries_per_request": mean(cols["retries"]),
        **{f"{o}_rate": mean(cols[o]) for o in OUTCOMES},
        "violations": int(cols["violations"].sum()),
        "prevented": int(cols["prevented"].sum()),
        **{name: int(v) for (_, _, name), v in zip(MARK_KINDS, marks, strict=True)},
    }


def _rows(requests: pa.Table, marks: pa.Table | None) -> list[dict[str, object]]:
    """The summary rows (every column but the session ones) of a requests table."""
    by = _groups(requests.column("route"))
    cols = _columns(requests)
    counts = _mark_counts(marks, requests, by)
    grouped = {name: values[by.order] for name, values in cols.items()}
    rows = [
        _row(name, {c: v[at] for c, v in grouped.items()}, counts[g])
        for g, (name, at) in enumerate(by.slices())
    ]
    rows.append(_row(ALL, cols, counts[-1]))
    return rows


def summarize(requests: pd.DataFrame, marks: pd.DataFrame | None = None) -> pd.DataFrame:
    """Summary rows: one per route, sorted by name, then `all`.

    The success interval reads each route's requests in `arrival_s` order when the
    column is there, else in row order (pooled replications: one replication after another).

    `marks` has one row per span that let a violation through or prevented one:
    `request_id`, `violation` and `prevented` (kind names, '' where not applicable).
    The same rows as `summary_table`'s, as a DataFrame (its session columns NaN).
    """
    import pandas as pd
    import pyarrow as pa

    present = [c for c in (*NEEDED, *OPTIONAL) if c in requests.columns or c in NEEDED]
    table = pa.Table.from_pandas(requests[present], preserve_index=False)
    marked = None
    if marks is not None and len(marks):
        columns = ["request_id", "violation", "prevented"]
        marked = pa.Table.from_pandas(marks[columns], preserve_index=False)
    return pd.DataFrame(_rows(table, marked), columns=[c.name for c in SUMMARY_COLUMNS])


TENANT_LIMIT_ROUTE = "tenant_limit"
"""Route of a request a tenant limit turned away (rejected, or queued past its deadline)."""


def tenant_summary(requests: pa.Table) -> pd.DataFrame | None:
    """Per tenant: requests, success rate, p95 latency, cost per request, total cost and the
    share turned away by a tenant limit; None when no request has a tenant.

    Kept out of summary.parquet, whose rows are routes (compare pairs them by route); by
    tenant, gate with thresholds (`success{tenant:acme}`) or read requests.parquet.
    """
    import pandas as pd
    import pyarrow.compute as pc

    if "tenant" not in requests.column_names:
        return None
    tenant = requests.column("tenant")
    if not pc.any(pc.not_equal(tenant, "")).as_py():
        return None
    by = _groups(tenant)
    success = requests.column("success").to_numpy()[by.order]
    latency = requests.column("latency_ms").to_numpy()[by.order]
    cost_usd = requests.column("cost_usd").to_numpy()[by.order]
    limited = pc.fill_null(pc.equal(requests.column("route"), TENANT_LIMIT_ROUTE), False)
    limited = limited.to_numpy()[by.order]
    rows = []
    for name, at in by.slices():
        n = at.stop - at.start
        cost = float(np.nansum(cost_usd[at]))
        rows.append({
            "tenant": name,
            "requests": n,
            "success_rate": float(success[at].mean()),
            "p95_latency_ms": float(np.percentile(latency[at], 95)),
            "cost_per_request_usd": cost / n,
            "total_cost_usd": cost,
            "limited_rate": float(limited[at].mean()),
        })  # fmt: skip
    return pd.DataFrame(rows)


def violation_marks(spans: pa.Table) -> pa.Table:
    """The spans that let a violation through or prevented one, the marks a summary counts
    by kind: `request_id`, `violation` and `prevented` (kind names, '' where not applicable)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    acted = pc.and_(spans["caught"], spans["acted"])
    keep = pc.or_(pc.not_equal(spans["violation"], pa.scalar("")), acted)
    sub = spans.select(["request_id", "violation", "guards"]).filter(keep)
    prevented = pc.if_else(acted.filter(keep), sub["guards"], pa.scalar(""))
    return pa.table({
        "request_id": sub["request_id"], "violation": sub["violation"], "prevented": prevented
    })  # fmt: skip


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
    rows = _rows(requests, violation_marks(spans) if spans is not None else None)
    if "session_id" in requests.column_names:
        rows[-1].update(
            session_metrics(sessions if sessions is not None else sessions_table(requests))
        )
    arrays = [
        pa.array([row.get(f.name) for row in rows], type=f.type, from_pandas=True) for f in sch
    ]
    return pa.Table.from_arrays(arrays, schema=sch)
