"""Per-route metrics: the Wilson interval and the summary rows."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import binomtest

from harness.metrics import ALL, SUMMARY_COLUMNS, summarize, summary_table, wilson
from harness.records import SCHEMA_VERSION

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
