"""Failures cost what they cost: timed-out calls are billed, a human handoff is a server."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pytest

from harness.engine._servers import billed_tokens
from harness.run import simulate
from harness.spec import Suite, SweepSpec
from harness.sweep import probe, screen
from harness.sweep._sweep import METRICS
from harness.traffic import sample_requests
from harness.world import sample_tape
from tests.unit.test_engine import make_suite
from tests.unit.test_sweep import calm

FLAT = {"routine": {"weight": 1, "token_spread": 0}}  # 500 tokens in, 200 out


def timed_out(suite: Suite) -> pd.DataFrame:
    df = simulate(suite).spans.to_pandas()
    return df[(df.kind == "chat") & (df.status == "timeout")].reset_index(drop=True)


def slow_small(**over: Any) -> Suite:
    """The fast model takes 2 s, its caller waits 1.5 s; the premium one answers for free."""
    over = {
        "traffic__mix": FLAT,
        "models__small__latency": {"dist": "constant", "p50_ms": 2000},
        "stack__routes": {"routine": {"tier": "fast", "max_retries": 0}},
        "stack__timeouts": {"model_call_ms": 1500},
    } | over
    return make_suite(**over)


def test_a_timed_out_call_is_billed_for_the_tokens_generated_by_the_cutoff() -> None:
    spans = timed_out(slow_small())
    assert len(spans) == 1
    # 1.5 s of a 2 s call: the prompt and 3/4 of the 200-token answer
    tin, tout = spans.loc[0, ["gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens"]]
    assert (tin, tout) == (500, 150)
    assert spans.loc[0, "cost_usd"] == pytest.approx((500 * 1.0 + 150 * 2.0) / 1e6)
    row = simulate(slow_small()).requests.to_pylist()[0]
    assert row["outcome"] == "success"  # the premium tier answered, at price 0
    assert row["cost_usd"] == pytest.approx((500 * 1.0 + 150 * 2.0) / 1e6)
    assert (row["input_tokens"], row["output_tokens"]) == (500 + 500, 150 + 200)


def test_token_aware_timeouts_bill_the_tokens_streamed_after_the_first() -> None:
    latency = {"ttft": {"dist": "constant", "p50_ms": 250},
               "per_output_token": {"dist": "constant", "p50_ms": 15.625}}  # fmt: skip
    spans = timed_out(slow_small(models__small__latency=latency))
    # first token at 0.25 s, then one every 1/64 s: 80 tokens by the 1.5 s cutoff
    assert spans.loc[0, "gen_ai.usage.output_tokens"] == (1.5 - 0.25) * 64 == 80
    assert spans.loc[0, "cost_usd"] == pytest.approx((500 * 1.0 + 80 * 2.0) / 1e6)


def test_billing_rule_off_bills_a_timeout_nothing() -> None:
    spans = timed_out(slow_small(models__small__bill_timeouts=False))
    assert len(spans) == 1
    tokens = spans.loc[0, ["gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens"]]
    assert tokens.tolist() == [0, 0]
    assert spans.loc[0, "cost_usd"] == 0.0
    row = simulate(slow_small(models__small__bill_timeouts=False)).requests.to_pylist()[0]
    assert row["cost_usd"] == 0.0


def test_a_call_still_queued_at_its_timeout_generated_nothing() -> None:
    suite = slow_small(
        traffic__requests=2,
        traffic__rate_per_s=1000.0,
        models__small__capacity=1,
        models__small__latency={"dist": "constant", "p50_ms": 1000},
        stack__timeouts={"model_call_ms": 500},
    )
    spans = timed_out(suite).query("tier == 'fast'").sort_values("request_id")
    assert spans.queue_ms.tolist()[0] == 0.0 and spans.queue_ms.tolist()[1] > 0.0
    assert spans["gen_ai.usage.input_tokens"].tolist() == [500, 0]
    assert spans["gen_ai.usage.output_tokens"].tolist() == [100, 0]  # half of 1 s; nothing
    assert spans.cost_usd.tolist()[1] == 0.0


def test_billed_tokens_by_hand() -> None:
    assert billed_tokens(500, 200, 0.0, 2.0, 2.0, math.nan) == (0, 0)  # never served
    assert billed_tokens(500, 200, 1.0, 2.0, 2.0, math.nan) == (500, 100)
    assert billed_tokens(500, 200, 0.2, 2.3, 0.3, 0.01) == (500, 0)  # before the first token
    assert billed_tokens(500, 200, 1.3, 2.3, 0.3, 0.01) == (500, 100)
    assert billed_tokens(500, 200, 9.0, 2.3, 0.3, 0.01) == (500, 200)  # at most all of it
    assert billed_tokens(500, 200, 0.5, 0.3, 0.3, 0.0) == (500, 200)


# --------------------------------------------------------------------------- handoff


def all_down(n: int, **over: Any) -> Suite:
    """Every model down: each request is handed off, one human, 10 s a case."""
    over = {
        "traffic__requests": n,
        "traffic__rate_per_s": 1000.0,
        "faults": [{"kind": "outage", "target": "fast"}, {"kind": "outage", "target": "premium"}],
        "stack__routes": {"routine": {"tier": "fast", "max_retries": 0}},
        "handoff": {"capacity": 1, "latency": {"dist": "constant", "p50_ms": 10000},
                    "cost_usd": 2.5, "quality": 1.0},
    } | over  # fmt: skip
    return make_suite(**over)


def test_a_handoff_queue_builds_under_a_spike_and_shows_in_latency() -> None:
    suite = all_down(6)
    result = simulate(suite)
    rows = result.requests.to_pandas()
    assert rows.outcome.eq("handoff").all() and rows.served_by.eq("human").all()
    wait = rows.handoff_wait_ms.to_numpy()
    assert wait[0] == 0.0
    assert np.all(np.diff(wait) > 9000.0)  # each waits for the cases before it, 10 s each
    np.testing.assert_allclose(rows.latency_ms - wait, rows.latency_ms.iloc[0], atol=50.0)
    assert rows.latency_ms.iloc[-1] > 5 * 10000.0
    spans = result.spans.to_pandas()
    human = spans[spans.kind == "handoff"].sort_values("request_id")
    assert human.name.eq("last_resort").all()
    np.testing.assert_allclose(human.queue_ms.to_numpy(), wait)
    np.testing.assert_allclose(human.duration_ms - human.queue_ms, 10000.0)
    assert human.cost_usd.eq(2.5).all()


def test_more_humans_no_queue() -> None:
    rows = simulate(all_down(6, handoff={"capacity": None})).requests.to_pandas()
    assert rows.handoff_wait_ms.eq(0.0).all()


def test_the_humans_price_is_in_the_requests_cost() -> None:
    rows = simulate(all_down(3)).requests.to_pandas()
    assert rows.cost_usd.tolist() == [2.5, 2.5, 2.5]  # the models failed fast, unbilled
    summary = simulate(all_down(3)).summary.to_pandas().set_index("route").loc["all"]
    assert summary.cost_per_success_usd == pytest.approx(2.5)


def test_success_counts_the_handoffs_the_human_got_right() -> None:
    assert simulate(all_down(4)).requests.to_pandas().success.all()
    assert not simulate(all_down(4, handoff={"quality": 0.0})).requests.to_pandas().success.any()
    suite = all_down(200, handoff={"capacity": None, "quality": 0.7})
    rows = simulate(suite).requests.to_pandas()
    tape = sample_tape(suite, sample_requests(suite))
    assert rows.success.tolist() == (tape.handoff_u < 0.7).tolist()
    assert 0.5 < rows.success.mean() < 0.9


def test_without_the_stacks_handoff_no_human_is_involved() -> None:
    rows = simulate(all_down(3, stack__handoff=False)).requests.to_pandas()
    assert rows.outcome.eq("error").all()
    assert rows.cost_usd.eq(0.0).all() and rows.handoff_wait_ms.eq(0.0).all()


def test_failure_costs_are_deterministic() -> None:
    team = {"latency": {"p50_ms": 60000, "p99_ms": 600000}, "quality": 0.9}
    for suite in (all_down(20, handoff=team), slow_small(traffic__requests=30)):
        one, two = simulate(suite), simulate(suite)
        assert one.requests.to_pandas().equals(two.requests.to_pandas())
        assert one.spans.to_pandas().equals(two.spans.to_pandas())


# --------------------------------------------------------------------------- sweep


def test_the_sweep_minimises_cost_per_success_by_default() -> None:
    assert SweepSpec().objective == "min cost_per_success_usd"
    assert "cost_per_success_usd" in METRICS


@pytest.mark.parametrize("theta", [0.0, 0.6, 0.9])
def test_screen_prices_approval_handoffs_exactly(theta: float) -> None:
    """High-impact requests start on the fast tier, so an accepted cheap answer goes to a
    human for approval: the screen must add the human's time, price and verdict."""
    base = calm().model_dump()
    base["traffic"]["edge_cases"]["evasive"] = 0.0
    base["traffic"]["edge_cases"]["high_impact"] = 0.2
    base["stack"]["escalation"]["high_impact_route"] = None
    suite = Suite.model_validate(base)
    pr = probe(suite)
    metrics = screen(pr.attempts, np.array([theta]), (50.0, 95.0, 99.0))
    base["stack"]["escalation"]["confidence_threshold"] = theta
    full = simulate(Suite.model_validate(base)).summary.to_pandas().set_index("route")
    assert full.loc["all", "handoff_rate"] > 0.02
    for g, route in enumerate([*pr.routes, "all"]):
        for metric in METRICS:
            got = float(metrics[metric][0, g])
            want = float(full.loc[route, metric])
            assert got == pytest.approx(want, rel=1e-12, abs=1e-12), (route, metric)
