"""Across-replication intervals: clipped to the metric's range, a rule for rates that are
the same in every replication, coverage with known truth, and the tail-percentile warning."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from harness.intervals import interval, wilson
from harness.replicate import (
    METRICS,
    POISSON,
    POOLED_WILSON,
    T,
    across,
    design_effect,
    replication_warnings,
    t_interval,
)


def summary(route: str, **columns: list[float]) -> pd.DataFrame:
    """Stacked per-replication summary rows of one route; unnamed metrics are 0.5."""
    r = len(next(iter(columns.values())))
    base = {m: [0.5] * r for m in METRICS}
    base.update({"requests": [1000] * r, "success_ci_low": [math.nan] * r,
                 "success_ci_high": [math.nan] * r, "ci_method": ["wilson"] * r})  # fmt: skip
    base.update(columns)
    return pd.DataFrame({"route": [route] * r, **base})


def row(stats: pd.DataFrame, metric: str) -> dict[str, object]:
    out: dict[str, object] = stats[stats["metric"] == metric].iloc[0].to_dict()
    return out


def test_t_interval_is_clipped_to_the_range() -> None:
    mean, _, lo, hi = t_interval(np.array([0.99, 1.0, 0.97]), bounds=(0.0, 1.0))
    assert hi == 1.0 and lo < mean < hi
    _, _, lo, _ = t_interval(np.array([0.001, 0.0, 0.02]), bounds=(0.0, math.inf))
    assert lo == 0.0
    _, _, raw_lo, raw_hi = t_interval(np.array([0.99, 1.0, 0.97]))
    assert raw_hi > 1.0 and raw_lo < lo + 1  # unclipped without bounds


def test_rates_are_clipped_and_costs_stay_non_negative() -> None:
    stats = across(summary("r", success_rate=[0.999, 1.0, 0.99],
                           cost_per_request_usd=[0.0, 0.0001, 0.02]))  # fmt: skip
    s, c = row(stats, "success_rate"), row(stats, "cost_per_request_usd")
    assert s["ci_high"] == 1.0 and s["method"] == T
    assert c["ci_low"] == 0.0


def test_all_zero_rate_gets_a_pooled_wilson_interval_not_a_point() -> None:
    stats = across(summary("r", handoff_rate=[0.0, 0.0, 0.0]))
    h = row(stats, "handoff_rate")
    assert h["method"] == POOLED_WILSON and h["ci_low"] == 0.0
    assert h["ci_high"] == pytest.approx(wilson(0, 3000)[1])  # design effect 1 here
    ones = row(across(summary("r", success_rate=[1.0, 1.0, 1.0])), "success_rate")
    assert ones["method"] == POOLED_WILSON and ones["ci_high"] == 1.0 and ones["ci_low"] < 1.0


def test_design_effect_widens_the_pooled_interval() -> None:
    # a route whose success interval is twice as wide as Wilson's: design effect 4
    lo, hi = wilson(900, 1000)
    mid, half = (lo + hi) / 2, hi - lo
    rows = summary("r", success_rate=[0.9] * 3, handoff_rate=[0.0] * 3,
                   success_ci_low=[mid - half] * 3, success_ci_high=[mid + half] * 3,
                   ci_method=["batch means"] * 3)  # fmt: skip
    assert design_effect(rows) == pytest.approx(4.0)
    h = row(across(rows), "handoff_rate")
    assert h["design_effect"] == pytest.approx(4.0)
    assert h["ci_high"] == pytest.approx(wilson(0, 750)[1])


def test_zero_violations_get_the_poisson_bound() -> None:
    v = row(across(summary("r", violations=[0, 0, 0, 0])), "violations")
    assert v["method"] == POISSON and v["ci_low"] == 0.0
    assert v["ci_high"] == pytest.approx(-math.log(0.025) / 4)


def test_pooled_rule_covers_a_rare_rate_that_often_shows_zero() -> None:
    """Truth 1e-4 per request, 1,000 requests a run, 5 runs: all-zero 60% of the time."""
    rng = np.random.default_rng(0)
    hits = 0
    for _ in range(400):
        x = rng.binomial(1000, 1e-4, 5) / 1000
        h = row(across(summary("r", handoff_rate=list(x))), "handoff_rate")
        hits += h["ci_low"] <= 1e-4 <= h["ci_high"]
    assert hits / 400 >= 0.9


def test_across_replication_success_interval_covers_on_a_correlated_world() -> None:
    """Replications of a world whose requests come in correlated episodes: the t-interval
    over replications covers the exact mean ~95% of the time."""
    rng = np.random.default_rng(1)
    hits = 0
    trials = 300
    for _ in range(trials):
        rates = []
        for _r in range(5):
            p = np.repeat(rng.beta(9.0, 1.0, 20), 50)  # 20 episodes of 50 requests
            ok = (rng.random(1000) < p).astype(float)
            ci = interval(ok)
            rates.append((ok.mean(), ci.low, ci.high, ci.method))
        frame = summary("r", success_rate=[r[0] for r in rates],
                        success_ci_low=[r[1] for r in rates],
                        success_ci_high=[r[2] for r in rates],
                        ci_method=[r[3] for r in rates])  # fmt: skip
        s = row(across(frame), "success_rate")
        hits += s["ci_low"] <= 0.9 <= s["ci_high"]
    assert 0.91 <= hits / trials <= 0.99


def test_too_few_replications_are_warned_about() -> None:
    big = summary("all", p95_latency_ms=[1.0, 2.0, 3.0], requests=[8000] * 3)
    small = summary("escalation", p95_latency_ms=[1.0, 2.0, 3.0], requests=[60] * 3)
    stats = across(pd.concat([big, small]))
    assert replication_warnings(stats) == [
        "3 replications are too few for intervals across them: with a spike or an outage per "
        "run they under-cover; use --replications 5 or more",
        "3 replications are too few for a t-interval on all p95, all p99: "
        "use --replications 10 or more",
        "3 replications are too few for a t-interval on escalation p95, escalation p99: "
        "use --replications 20 or more",
    ]
    assert set(stats[stats["metric"] == "success_rate"]["min_replications"]) == {5}
    six = across(summary("all", p95_latency_ms=list(range(6)), requests=[8000] * 6))
    assert replication_warnings(six) == [
        "6 replications are too few for a t-interval on all p95, all p99: "
        "use --replications 10 or more"
    ]
    ten = across(summary("all", p95_latency_ms=list(range(10)), requests=[8000] * 10))
    assert replication_warnings(ten) == []
