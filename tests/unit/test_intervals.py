"""Dependence-aware intervals: block length, coverage with known truth, Wilson fallback,
and the summary columns that carry them."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from scipy.stats import binom

from harness.intervals import (
    BATCH_MEANS,
    IID_T,
    MIN_BLOCKS,
    PW_FACTOR,
    WILSON,
    block_length,
    interval,
    politis_white,
    wilson,
)
from harness.metrics import ALL, SUMMARY_COLUMNS, summarize, summary_table


def ar1_bernoulli(rho: float, n: int, rng: np.random.Generator) -> np.ndarray:
    """0/1 series thresholding a stationary Gaussian AR(1) with coefficient `rho`."""
    e = rng.standard_normal(n)
    z = np.empty(n)
    z[0] = e[0]
    scale = math.sqrt(1 - rho * rho)
    for i in range(1, n):  # test helper only; the library never loops per value
        z[i] = rho * z[i - 1] + scale * e[i]
    return (z > 0.3).astype(np.float64)


def markov_chains(
    p01: float, p10: float, n: int, series: int, rng: np.random.Generator
) -> tuple[np.ndarray, float]:
    """`series` two-state Markov chains of success (1) and failure (0), started from the
    stationary law, and their exact stationary success rate p01 / (p01 + p10)."""
    pi = p01 / (p01 + p10)
    u = rng.random((series, n))
    x = np.empty((series, n))
    x[:, 0] = u[:, 0] < pi
    for t in range(1, n):  # vectorised across series
        stay_up = x[:, t - 1] == 1
        x[:, t] = np.where(stay_up, u[:, t] >= p10, u[:, t] < p01)
    return x, pi


# --------------------------------------------------------------------------- block length


def test_more_autocorrelation_gives_longer_blocks() -> None:
    rng = np.random.default_rng(7)
    n = 4000
    series = [ar1_bernoulli(rho, n, rng) for rho in (0.0, 0.5, 0.9, 0.99)]
    pw = [politis_white(x) for x in series]
    assert pw[0] < 1.0 and pw == sorted(pw) and pw[-1] > 5 * pw[1], pw
    floor = math.ceil(n**0.6)
    for x, b in zip(series, pw, strict=True):
        assert block_length(x) == min(max(floor, math.ceil(PW_FACTOR * b)), n // MIN_BLOCKS)


def test_block_length_never_leaves_fewer_than_min_blocks() -> None:
    rng = np.random.default_rng(3)
    for n in (100, 250, 1000):
        x = ar1_bernoulli(0.999, n, rng)
        assert n // block_length(x) >= MIN_BLOCKS


# --------------------------------------------------------------------------- coverage


def test_batch_means_covers_a_markov_chain_at_95_percent() -> None:
    """Sticky success (lag-1 correlation 0.88): Wilson under-covers, batch means does not."""
    rng = np.random.default_rng(20261201)
    series, n = 300, 2000
    x, truth = markov_chains(0.1, 0.02, n, series, rng)
    cis = [interval(row) for row in x]
    assert {ci.method for ci in cis} == {BATCH_MEANS}
    hits = sum(ci.low <= truth <= ci.high for ci in cis)
    lo, hi = binom.ppf([0.001, 0.999], series, 0.95)
    assert lo <= hits <= hi, hits / series
    naive = sum(
        w[0] <= truth <= w[1] for w in (wilson(float(row.sum()), n) for row in x)
    )  # the independent interval misses far more often
    assert naive < lo


def test_independent_series_is_not_made_much_wider() -> None:
    rng = np.random.default_rng(11)
    x = (rng.random(8000) < 0.9).astype(np.float64)
    ci = interval(x)
    w = wilson(float(x.sum()), x.size)
    assert ci.method == BATCH_MEANS
    assert (ci.high - ci.low) < 1.5 * (w[1] - w[0])


# --------------------------------------------------------------------------- fallbacks


def test_tiny_route_falls_back_to_wilson() -> None:
    x = np.array([1.0] * 40 + [0.0] * 9)
    ci = interval(x)
    assert ci.method == WILSON and ci.block == 1
    assert (ci.low, ci.high) == pytest.approx(wilson(40, 49))


def test_no_variation_between_blocks_falls_back_to_wilson() -> None:
    ci = interval(np.ones(500))
    assert ci.method == WILSON and ci.high == 1.0 and ci.low < 1.0


def test_empty_and_shares_clipped() -> None:
    empty = interval(np.zeros(0))
    assert math.isnan(empty.low) and empty.block == 0
    x = np.zeros(1000)
    x[:3] = 1.0  # three early successes: the t-interval would dip below 0
    ci = interval(x)
    assert ci.method == BATCH_MEANS and ci.low == 0.0


def test_mean_interval_for_costs() -> None:
    rng = np.random.default_rng(5)
    cost = rng.gamma(2.0, 0.001, 5000)
    ci = interval(cost, share=False)
    assert ci.method == BATCH_MEANS and ci.low < cost.mean() < ci.high
    small = interval(cost[:20], share=False)
    assert small.method == IID_T and small.block == 1


# --------------------------------------------------------------------------- summary


def routes_frame(n: int = 600) -> pd.DataFrame:
    """`n` requests on two routes (one tiny), in shuffled row order with arrival times."""
    rng = np.random.default_rng(1)
    route = np.where(np.arange(n) % 20 == 0, "guardrail", "routine")
    frame = pd.DataFrame({
        "request_id": np.arange(n), "arrival_s": np.arange(n) * 0.1, "route": route,
        "outcome": "success", "success": rng.random(n) < 0.9, "latency_ms": 100.0,
        "cost_usd": 0.001, "input_tokens": 500, "output_tokens": 100, "escalated": False,
        "retries": 0, "fallbacks": 0, "handoff": False, "violations": 0, "prevented": 0,
    })  # fmt: skip
    return frame.sample(frac=1.0, random_state=2).reset_index(drop=True)


def test_summary_carries_method_and_block_length() -> None:
    frame = routes_frame()
    rows = summarize(frame).set_index("route")
    assert rows.loc["guardrail", "ci_method"] == WILSON  # 30 requests
    assert rows.loc["guardrail", "ci_block_requests"] == 1
    for route in ("routine", ALL):
        assert rows.loc[route, "ci_method"] == BATCH_MEANS
        assert rows.loc[route, "ci_block_requests"] > 1
    ordered = frame.sort_values("arrival_s")
    expect = interval(ordered["success"].to_numpy(dtype=np.float64))  # arrival order, not rows
    assert (rows.loc[ALL, "success_ci_low"], rows.loc[ALL, "success_ci_high"]) == (
        expect.low,
        expect.high,
    )
    assert rows.loc[ALL, "ci_block_requests"] == expect.block


def test_summary_table_types_of_the_new_columns() -> None:
    table = summary_table(pa.Table.from_pandas(routes_frame(), preserve_index=False))
    assert table.schema.field("ci_method").type == pa.string()
    assert table.schema.field("ci_block_requests").type == pa.int64()
    docs = {c.name: c.doc for c in SUMMARY_COLUMNS}
    assert "batch means" in docs["ci_method"] and docs["ci_block_requests"]
