"""Per-route metrics: the Wilson interval and the summary rows."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import binomtest

from harness.intervals import interval
from harness.metrics import (
    ALL,
    SUMMARY_COLUMNS,
    TENANT_LIMIT_ROUTE,
    session_metrics,
    summarize,
    summary_table,
    tenant_summary,
    wilson,
)
from harness.records import SCHEMA_VERSION, schema
from harness.spec import VIOLATION_KINDS

BASELINE = Path(__file__).resolve().parents[2] / "reports" / "baseline"

# --------------------------------------------------------------------------- wilson


@settings(max_examples=200, deadline=None)
@given(
    st.integers(min_value=1, max_value=100_000).flatmap(
        lambda n: st.tuples(st.integers(min_value=0, max_value=n), st.just(n))
    )
)
def test_wilson_matches_scipy(kn: tuple[int, int]) -> None:
    k, n = kn
    ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    lo, hi = wilson(k, n)
    assert lo == pytest.approx(ci.low, rel=1e-9, abs=1e-12)
    assert hi == pytest.approx(ci.high, rel=1e-9, abs=1e-12)
    assert 0.0 <= lo <= k / n + 1e-15  # k == 0 gives ~1e-20, not exactly 0
    assert k / n - 1e-15 <= hi <= 1.0


@pytest.mark.parametrize(
    ("k", "n", "low", "high"),
    [
        (81, 263, 0.2553, 0.3662),  # Newcombe (1998), table I, method 3
        (15, 148, 0.0624, 0.1605),
        (0, 20, 0.0, 0.1611),
        (1, 29, 0.0061, 0.1718),
        (5, 10, 0.2366, 0.7634),
    ],
)
def test_wilson_known_values(k: int, n: int, low: float, high: float) -> None:
    lo, hi = wilson(k, n)
    assert lo == pytest.approx(low, abs=5e-5)
    assert hi == pytest.approx(high, abs=5e-5)


def test_wilson_other_z_and_empty() -> None:
    ci = binomtest(30, 50).proportion_ci(confidence_level=0.99, method="wilson")
    lo, hi = wilson(30, 50, z=2.5758293035489004)
    assert (lo, hi) == (pytest.approx(ci.low), pytest.approx(ci.high))
    assert all(math.isnan(x) for x in wilson(0, 0))


# --------------------------------------------------------------------------- summarize


def requests_frame() -> pd.DataFrame:
    """Five hand-made requests on two routes, rows deliberately not grouped by route."""
    return pd.DataFrame(
        {
            "request_id": [0, 1, 2, 3, 4],
            "route": ["routine", "escalation", "routine", "routine", "escalation"],
            "outcome": ["success", "handoff", "wrong", "timeout", "blocked"],
            "success": [True, False, False, False, True],
            "latency_ms": [100.0, 5000.0, 300.0, 12000.0, 0.0],
            "cost_usd": [0.001, 0.02, 0.002, 0.0, 0.0],
            "input_tokens": [500, 3000, 600, 0, 0],
            "output_tokens": [100, 900, 120, 0, 0],
            "escalated": [False, True, True, False, False],
            "retries": [0, 2, 1, 3, 0],
            "fallbacks": [0, 1, 0, 2, 0],
            "handoff": [False, True, False, False, False],
            "violations": [0, 0, 1, 0, 0],
            "prevented": [0, 1, 0, 0, 2],
        }
    )


def test_summary_columns_and_row_order() -> None:
    summary = summarize(requests_frame())
    assert list(summary.columns) == [c.name for c in SUMMARY_COLUMNS]
    assert summary["route"].tolist() == ["escalation", "routine", ALL]  # routes by name, 'all' last


def test_summary_exact_rates() -> None:
    rows = summarize(requests_frame()).set_index("route")
    routine, escalation, every = rows.loc["routine"], rows.loc["escalation"], rows.loc[ALL]
    assert routine["requests"] == 3 and escalation["requests"] == 2 and every["requests"] == 5
    assert routine["success_rate"] == pytest.approx(1 / 3)
    assert escalation["success_rate"] == 0.5  # blocked counts as success
    assert every["success_rate"] == pytest.approx(2 / 5)
    assert (routine["success_ci_low"], routine["success_ci_high"]) == pytest.approx(wilson(1, 3))
    assert routine["escalation_rate"] == pytest.approx(1 / 3)
    assert routine["fallback_rate"] == pytest.approx(1 / 3)
    assert routine["timeout_rate"] == pytest.approx(1 / 3)
    assert routine["error_rate"] == 0.0
    assert routine["budget_exhausted_rate"] == 0.0
    assert escalation["handoff_rate"] == 0.5
    assert every["handoff_rate"] == pytest.approx(1 / 5)
    assert every["fallback_rate"] == pytest.approx(2 / 5)
    assert routine["retries_per_request"] == pytest.approx(4 / 3)
    assert every["retries_per_request"] == pytest.approx(6 / 5)
    assert every["violations"] == 1 and every["prevented"] == 3
    assert escalation["prevented"] == 3 and routine["violations"] == 1


def test_summary_counts_violations_and_prevented_by_kind_and_route() -> None:
    marks = pd.DataFrame(
        {
            "request_id": [2, 1, 4, 4],
            "violation": ["pii_leak", "", "", ""],
            "prevented": ["", "injection_followed", "pii_leak", "injection_followed"],
        }
    )
    rows = summarize(requests_frame(), marks).set_index("route")
    assert rows.loc["routine", "violations_pii_leak"] == 1
    assert rows.loc["escalation", "violations_pii_leak"] == 0
    assert rows.loc["escalation", "prevented_injection_followed"] == 2
    assert rows.loc[ALL, "prevented_pii_leak"] == 1
    assert rows.loc[ALL, "violations_budget_overrun"] == 0


def test_summary_costs_and_tokens() -> None:
    rows = summarize(requests_frame()).set_index("route")
    routine, every = rows.loc["routine"], rows.loc[ALL]
    assert routine["total_cost_usd"] == pytest.approx(0.003)
    assert routine["cost_per_request_usd"] == pytest.approx(0.001)
    assert routine["cost_per_success_usd"] == pytest.approx(0.003)
    assert every["total_cost_usd"] == pytest.approx(0.023)
    assert every["cost_per_success_usd"] == pytest.approx(0.023 / 2)
    assert routine["tokens_per_request"] == pytest.approx((600 + 720 + 0) / 3)
    assert every["tokens_per_request"] == pytest.approx((600 + 3900 + 720) / 5)


def test_summary_percentiles_equal_numpys() -> None:
    df = requests_frame()
    rows = summarize(df).set_index("route")
    for route in ("routine", "escalation", ALL):
        lat = (
            df["latency_ms"].to_numpy() if route == ALL else df.loc[df.route == route, "latency_ms"]
        )
        p50, p95, p99 = np.percentile(lat, [50, 95, 99])
        assert rows.loc[route, "p50_latency_ms"] == p50
        assert rows.loc[route, "p95_latency_ms"] == p95
        assert rows.loc[route, "p99_latency_ms"] == p99
        assert rows.loc[route, "mean_latency_ms"] == pytest.approx(np.mean(lat))


def test_summary_on_many_requests_matches_numpy() -> None:
    rng = np.random.default_rng(0)
    n = 10_000
    df = requests_frame().sample(n, replace=True, random_state=1).reset_index(drop=True)
    df["latency_ms"] = rng.lognormal(6, 1, n)
    rows = summarize(df).set_index("route")
    lat = df.loc[df.route == "routine", "latency_ms"].to_numpy()
    assert rows.loc["routine", "p95_latency_ms"] == np.percentile(lat, 95)
    assert rows.loc[ALL, "p99_latency_ms"] == np.percentile(df["latency_ms"], 99)
    assert rows.loc[ALL, "success_rate"] == df["success"].mean()


def test_summary_without_successes_has_nan_cost_per_success() -> None:
    df = requests_frame()
    df["success"] = False
    rows = summarize(df).set_index("route")
    assert math.isnan(rows.loc[ALL, "cost_per_success_usd"])
    assert rows.loc[ALL, "success_rate"] == 0.0
    assert rows.loc[ALL, "success_ci_low"] == 0.0


def test_summary_of_no_requests_is_one_nan_row() -> None:
    summary = summarize(requests_frame().iloc[:0])
    assert summary["route"].tolist() == [ALL]
    row = summary.iloc[0]
    assert row["requests"] == 0
    assert math.isnan(row["success_rate"]) and math.isnan(row["p95_latency_ms"])


def test_summary_table_has_the_documented_schema() -> None:
    table = summary_table(pa.Table.from_pandas(requests_frame(), preserve_index=False))
    assert table.column_names == [c.name for c in SUMMARY_COLUMNS]
    assert table.num_rows == 3
    assert table.schema.metadata[b"evalx.schema_version"] == str(SCHEMA_VERSION).encode()
    types = {c.name: c.type for c in SUMMARY_COLUMNS}
    for field in table.schema:
        assert (
            str(field.type)
            == {"string": "string", "int64": "int64", "float64": "double"}[types[field.name]]
        ), field.name
        assert field.metadata[b"doc"]


# ------------------------------------------------- the numpy path against a pandas groupby

OUTCOMES = ("success", "wrong", "timeout", "error", "blocked", "handoff", "budget_exhausted")


def reference_marks(spans: pd.DataFrame) -> pd.DataFrame:
    """violation_marks, the pandas way."""
    acted = spans["caught"] & spans["acted"]
    sub = spans[(spans["violation"] != "") | acted]
    prevented = sub["guards"].where(sub["caught"] & sub["acted"], "")
    return sub.assign(prevented=prevented)[["request_id", "violation", "prevented"]]


def reference(requests: pd.DataFrame, marks: pd.DataFrame | None = None) -> pd.DataFrame:
    """The summary as a plain pandas groupby computes it: the oracle for the numpy path."""
    if marks is None:
        marks = pd.DataFrame({"request_id": [], "violation": [], "prevented": []})
    marks = marks.assign(route=marks["request_id"].map(requests.set_index("request_id")["route"]))

    def pct(values: pd.Series, q: float) -> float:
        return float(np.percentile(values.to_numpy(), q)) if len(values) else math.nan

    def row(route: str, g: pd.DataFrame, m: pd.DataFrame) -> dict[str, object]:
        n = len(g)
        nan_if_empty = (lambda x: float(x)) if n else (lambda x: math.nan)
        succ, cost = int(g["success"].sum()), float(g["cost_usd"].sum())
        ordered = g.sort_values("arrival_s", kind="stable") if "arrival_s" in g else g
        ci = interval(ordered["success"].to_numpy(dtype=np.float64))
        ttft = g["ttft_ms"].dropna() if "ttft_ms" in g else pd.Series([], dtype=float)
        harm = g["escalation_harm"].mean() if "escalation_harm" in g else math.nan
        return {
            "route": route, "requests": n, "success_rate": succ / n if n else math.nan,
            "success_ci_low": ci.low, "success_ci_high": ci.high, "ci_method": ci.method,
            "ci_block_requests": ci.block, "p50_latency_ms": pct(g["latency_ms"], 50),
            "p95_latency_ms": pct(g["latency_ms"], 95), "p99_latency_ms": pct(g["latency_ms"], 99),
            "mean_latency_ms": nan_if_empty(g["latency_ms"].mean()),
            "p50_ttft_ms": pct(ttft, 50), "p95_ttft_ms": pct(ttft, 95),
            "cost_per_request_usd": cost / n if n else math.nan,
            "cost_per_success_usd": cost / succ if succ else math.nan, "total_cost_usd": cost,
            "tokens_per_request": nan_if_empty((g["input_tokens"] + g["output_tokens"]).mean()),
            "escalation_rate": nan_if_empty(g["escalated"].mean()),
            "escalation_harm_rate": nan_if_empty(harm),
            "fallback_rate": nan_if_empty((g["fallbacks"] > 0).mean()),
            "handoff_rate": nan_if_empty(g["handoff"].mean()),
            "retries_per_request": nan_if_empty(g["retries"].mean()),
            **{f"{o}_rate": nan_if_empty((g["outcome"] == o).mean())
               for o in ("timeout", "error", "budget_exhausted")},
            "violations": int(g["violations"].sum()), "prevented": int(g["prevented"].sum()),
            **{f"violations_{k}": int((m["violation"] == k).sum()) for k in VIOLATION_KINDS},
            **{f"prevented_{k}": int((m["prevented"] == k).sum()) for k in VIOLATION_KINDS},
        }  # fmt: skip

    rows = [
        row(str(r), g, marks[marks["route"] == r]) for r, g in requests.groupby("route", sort=True)
    ]
    rows.append(row(ALL, requests, marks))
    return pd.DataFrame(rows, columns=[c.name for c in SUMMARY_COLUMNS])


def random_run(
    seed: int, n: int, routes: list[str], shape: dict[str, bool]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Requests and spans drawn at random: routes of every size (one of a single request
    with `single`), ttft often missing, arrivals out of row order with ties, request ids
    with gaps, and marks on requests that are not in the table."""
    rng = np.random.default_rng(seed)
    route = rng.choice(routes, n, p=rng.dirichlet(np.ones(len(routes)) * 0.5)).astype(object)
    if shape["null_routes"] and n:
        route[rng.random(n) < 0.05] = None
    latency = rng.lognormal(6, 1.5, n)
    requests = pd.DataFrame({
        "request_id": rng.permutation(2 * n + 5)[:n].astype(np.int64),
        "route": route,
        "outcome": rng.choice(OUTCOMES, n),
        "success": rng.random(n) < 0.7,
        "latency_ms": latency,
        "cost_usd": np.where(rng.random(n) < 0.1, 0.0, rng.lognormal(-7, 2, n)),
        "input_tokens": rng.integers(0, 5000, n),
        "output_tokens": rng.integers(0, 900, n),
        "escalated": rng.random(n) < 0.2,
        "retries": rng.integers(0, 4, n).astype(np.int16),
        "fallbacks": rng.integers(0, 3, n).astype(np.int16),
        "handoff": rng.random(n) < 0.05,
        "violations": rng.integers(0, 2, n).astype(np.int16),
        "prevented": rng.integers(0, 3, n).astype(np.int16),
    })  # fmt: skip
    if shape["single"]:
        requests = pd.concat([requests, requests.iloc[:1].assign(route="solo", request_id=-7)])
        requests = requests.reset_index(drop=True) if len(requests) else requests
    m = len(requests)
    if shape["arrival"]:
        requests["arrival_s"] = rng.integers(0, max(m // 3, 1), m) * 0.5
    if shape["ttft"]:
        ttft = requests["latency_ms"].to_numpy() * rng.random(m)
        requests["ttft_ms"] = np.where(rng.random(m) < rng.choice([0.0, 0.3, 1.0]), np.nan, ttft)
    if shape["harm"]:
        requests["escalation_harm"] = rng.random(m) < 0.1
    k = 3 * m + 3
    ids = np.concatenate([requests["request_id"].to_numpy(), [10**6, 10**6 + 1]])
    spans = pd.DataFrame({
        "request_id": rng.choice(ids, k),
        "violation": rng.choice(["", "", "", "", *VIOLATION_KINDS], k),
        "guards": rng.choice(["", *VIOLATION_KINDS], k),
        "caught": rng.random(k) < 0.3,
        "acted": rng.random(k) < 0.6,
    })  # fmt: skip
    return requests, spans


def chunked(df: pd.DataFrame) -> pa.Table:
    """`df` as an Arrow table in up to three chunks (a pooled run's table is chunked)."""
    parts = np.array_split(np.arange(len(df)), 3)
    return pa.concat_tables([pa.Table.from_pandas(df.iloc[p], preserve_index=False) for p in parts])


def assert_same_bits(got: pa.Table, want: pa.Table) -> None:
    """Equal tables, floats to the last bit (NaN stored as null in both)."""
    assert got.schema.equals(want.schema), (got.schema, want.schema)
    for name in got.column_names:
        a, b = got.column(name), want.column(name)
        if pa.types.is_floating(a.type):
            assert a.is_null().equals(b.is_null()), name
            bits = [c.fill_null(0.0).to_numpy().view(np.uint64) for c in (a, b)]
            assert np.array_equal(*bits), (name, a, b)
        else:
            assert a.equals(b), (name, a, b)


run_shapes = st.fixed_dictionaries(
    {k: st.booleans() for k in ("null_routes", "single", "arrival", "ttft", "harm")}
)
route_names = st.lists(
    st.sampled_from(["", "routine", "reasoning", "escalation", "guardrail", "Zeta", "ä"]),
    min_size=1, max_size=4, unique=True,
)  # fmt: skip


@settings(max_examples=20, deadline=None, derandomize=True)
@given(st.integers(0, 2**32 - 1), st.integers(0, 700), route_names, run_shapes)
def test_summarize_equals_a_pandas_groupby(
    seed: int, n: int, routes: list[str], shape: dict[str, bool]
) -> None:
    requests, spans = random_run(seed, n, routes, shape)
    marks = reference_marks(spans)
    pd.testing.assert_frame_equal(
        summarize(requests, marks), reference(requests, marks), check_exact=True
    )


@settings(max_examples=20, deadline=None, derandomize=True)
@given(st.integers(0, 2**32 - 1), st.integers(0, 700), route_names, run_shapes)
def test_summary_table_equals_a_pandas_groupby_to_the_bit(
    seed: int, n: int, routes: list[str], shape: dict[str, bool]
) -> None:
    requests, spans = random_run(seed, n, routes, shape)
    want = reference(requests, reference_marks(spans))
    sch = schema(SUMMARY_COLUMNS)
    got = summary_table(chunked(requests), chunked(spans))
    assert_same_bits(got, pa.Table.from_pandas(want, schema=sch, preserve_index=False))


def test_summary_of_the_shipped_run_is_the_baseline_to_the_bit() -> None:
    """reports/baseline is scenarios/support.yaml's run: its summary again, from its tables,
    and the pandas groupby's summary of them, with the session columns of the `all` row."""
    tables = {name: pq.read_table(BASELINE / f"{name}.parquet") for name in
              ("requests", "spans", "sessions", "summary")}  # fmt: skip
    got = summary_table(tables["requests"], tables["spans"], tables["sessions"])
    assert_same_bits(got, tables["summary"].replace_schema_metadata(got.schema.metadata))
    want = reference(tables["requests"].to_pandas(), reference_marks(tables["spans"].to_pandas()))
    for name, value in session_metrics(tables["sessions"]).items():
        want.loc[want["route"] == ALL, name] = value
    sch = schema(SUMMARY_COLUMNS)
    assert_same_bits(got, pa.Table.from_pandas(want, schema=sch, preserve_index=False))


@settings(max_examples=10, deadline=None, derandomize=True)
@given(st.integers(0, 2**32 - 1), st.integers(1, 500))
def test_tenant_summary_equals_a_pandas_groupby(seed: int, n: int) -> None:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({
        "tenant": rng.choice(["", "acme", "noisy", "b"], n),
        "route": rng.choice(["routine", TENANT_LIMIT_ROUTE], n),
        "success": rng.random(n) < 0.8,
        "latency_ms": rng.lognormal(6, 1, n),
        "cost_usd": rng.lognormal(-7, 2, n),
    })  # fmt: skip
    got = tenant_summary(chunked(df))
    if not (df["tenant"] != "").any():
        assert got is None
        return
    rows = [{
        "tenant": t, "requests": len(g), "success_rate": float(g["success"].mean()),
        "p95_latency_ms": float(np.percentile(g["latency_ms"], 95)),
        "cost_per_request_usd": float(g["cost_usd"].sum()) / len(g),
        "total_cost_usd": float(g["cost_usd"].sum()),
        "limited_rate": float((g["route"] == TENANT_LIMIT_ROUTE).mean()),
    } for t, g in df.groupby("tenant", sort=True)]  # fmt: skip
    pd.testing.assert_frame_equal(got, pd.DataFrame(rows), check_exact=True)
