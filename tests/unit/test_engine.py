"""Golden traces of the engine: exact spans and request rows for tiny, fully known worlds.

Latencies are constant, so every time below is computed by hand; only backoff jitter
comes from the tape, and the expectation reads it from the same tape.
"""

from __future__ import annotations

from typing import Any

import pytest

from harness.run import simulate
from harness.spec import Suite
from harness.traffic import sample_requests
from harness.world import sample_tape


def make_suite(**over: Any) -> Suite:
    """One fast and one premium model with constant latency; no classifier, no tools."""
    base: dict[str, Any] = {
        "name": "golden",
        "seed": 7,
        "traffic": {"requests": 1, "rate_per_s": 1.0, "mix": {"routine": {"weight": 1}}},
        "models": {
            "small": {
                "tier": "fast",
                "latency": {"dist": "constant", "p50_ms": 100},
                "quality": {"routine": 1.0},
                "price": {"input_per_mtok": 1.0, "output_per_mtok": 2.0},
            },
            "big": {
                "tier": "premium",
                "latency": {"dist": "constant", "p50_ms": 1000},
                "quality": {"routine": 1.0},
            },
        },
        "stack": {
            "tiers": ["fast", "premium"],
            "classifier": {"enabled": False},
            "routes": {"routine": {"tier": "fast", "max_retries": 1}},
            "class_routes": {"routine": "routine"},
            "escalation": {"confidence_threshold": 0.0, "high_impact_route": None},
            "retry_budget": None,
            "breaker": {"enabled": False},
        },
    }
    return Suite.model_validate(with_overrides(base, over))


def with_overrides(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """`base` with `a__b__c=value` keyword overrides set at that nested path (in place)."""
    for dotted, value in over.items():
        node = base
        *parents, leaf = dotted.split("__")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return base


def spans(suite: Suite) -> list[tuple[Any, ...]]:
    df = simulate(suite).spans.to_pandas()
    return [
        (r.request_id, r.kind, r.name, r.tier, r.start_s, round(r.duration_ms, 6), r.status)
        for r in df.itertuples()
    ]


def test_one_request_routes_and_answers_on_the_fast_tier() -> None:
    suite = make_suite()
    t0 = sample_requests(suite).arrival_s[0]
    result = simulate(suite)
    assert spans(suite) == [
        (0, "router", "routine", "", t0, 0.0, "ok"),
        (0, "chat", "answer", "fast", t0, 100.0, "ok"),
    ]
    row = result.requests.to_pylist()[0]
    assert row["outcome"] == "success"
    assert row["served_by"] == "fast"
    assert row["tiers_tried"] == "fast"
    assert row["latency_ms"] == pytest.approx(100.0)


def test_cost_is_tokens_times_price() -> None:
    result = simulate(make_suite(traffic__mix={"routine": {"weight": 1, "token_spread": 0}}))
    row = result.requests.to_pylist()[0]
    assert (row["input_tokens"], row["output_tokens"]) == (500, 200)
    assert row["cost_usd"] == pytest.approx((500 * 1.0 + 200 * 2.0) / 1e6)


def test_capacity_one_queues_the_second_request_fifo() -> None:
    suite = make_suite(
        traffic__requests=2,
        traffic__rate_per_s=1000.0,
        models__small__capacity=1,
    )
    t = sample_requests(suite).arrival_s
    df = simulate(suite).spans.to_pandas()
    chat = df[df.kind == "chat"].reset_index(drop=True)
    assert chat.queue_ms.tolist() == pytest.approx([0.0, (t[0] + 0.1 - t[1]) * 1000])
    assert chat.duration_ms.tolist() == pytest.approx([100.0, (t[0] + 0.2 - t[1]) * 1000])


def test_outage_retries_with_backoff_then_falls_back_a_tier() -> None:
    suite = make_suite(faults=[{"kind": "outage", "target": "fast"}])
    t0 = sample_requests(suite).arrival_s[0]
    tape = sample_tape(suite, sample_requests(suite))
    backoff = tape.jitter(0, 0) * 0.2  # full jitter on base 200 ms, first retry
    got = spans(suite)
    fast_fail = 0.02
    assert got == [
        (0, "router", "routine", "", t0, 0.0, "ok"),
        (0, "chat", "answer", "fast", t0, 20.0, "error"),
        (0, "backoff", "backoff", "", t0 + fast_fail, round(backoff * 1000, 6), "ok"),
        (0, "chat", "answer", "fast", t0 + fast_fail + backoff, 20.0, "error"),
        (0, "chat", "answer", "premium", t0 + 2 * fast_fail + backoff, 1000.0, "ok"),
    ]
    row = simulate(suite).requests.to_pylist()[0]
    assert (row["outcome"], row["served_by"], row["tiers_tried"]) == (
        "success",
        "premium",
        "fast>premium",
    )
    assert (row["retries"], row["fallbacks"], row["phase"]) == (1, 1, "outage:fast")


def test_hang_times_out_at_the_call_timeout() -> None:
    suite = make_suite(
        faults=[{"kind": "timeout", "target": "small"}],
        stack__routes={"routine": {"tier": "fast", "max_retries": 0}},
        stack__timeouts={"model_call_ms": 3000},
    )
    got = spans(suite)
    assert [(k, tier, d, s) for _, k, _, tier, _, d, s in got] == [
        ("router", "", 0.0, "ok"),
        ("chat", "fast", 3000.0, "timeout"),
        ("chat", "premium", 1000.0, "ok"),
    ]


def test_slow_service_beyond_timeout_frees_the_client_not_the_server() -> None:
    suite = make_suite(
        traffic__requests=2,
        traffic__rate_per_s=1000.0,
        models__small__capacity=1,
        models__small__latency={"dist": "constant", "p50_ms": 5000},
        stack__routes={"routine": {"tier": "fast", "max_retries": 0}},
        stack__timeouts={"model_call_ms": 1000},
        stack__fallback_down=False,
        stack__handoff=False,
        stack__tiers=["fast"],
        models__big__tier="fast",
    )
    df = simulate(suite).spans.to_pandas()
    first = df[(df.request_id == 0) & (df.kind == "chat")].iloc[0]
    assert (first.status, first.duration_ms) == ("timeout", pytest.approx(1000.0))


def test_rate_limit_returns_429_with_retry_after() -> None:
    suite = make_suite(
        traffic__requests=3,
        traffic__rate_per_s=1000.0,
        models__small__rate_limit={"rps": 1, "burst": 1},
        stack__routes={"routine": {"tier": "fast", "max_retries": 0}},
    )
    df = simulate(suite).spans.to_pandas()
    chat = df[(df.kind == "chat") & (df.tier == "fast")]
    assert chat.status.tolist() == ["ok", "rate_limited", "rate_limited"]
    assert chat["http.response.status_code"].tolist() == [200, 429, 429]


def test_low_confidence_escalates_to_the_next_tier() -> None:
    suite = make_suite(stack__escalation={"confidence_threshold": 1.0, "high_impact_route": None})
    row = simulate(suite).requests.to_pylist()[0]
    assert (row["tiers_tried"], row["served_by"], row["escalated"]) == (
        "fast>premium",
        "premium",
        True,
    )


def test_prohibited_action_is_blocked_before_any_model_call() -> None:
    suite = make_suite(traffic__edge_cases={"prohibited_action": 1.0})
    result = simulate(suite)
    row = result.requests.to_pylist()[0]
    assert (row["outcome"], row["success"], row["model_calls"]) == ("blocked", True, 0)
    assert result.spans.column("kind").to_pylist() == ["policy_check"]


def test_guardrails_off_let_the_violation_through_and_count_it() -> None:
    suite = make_suite(
        traffic__edge_cases={"prohibited_action": 1.0, "pii": 1.0},
        policies={"enforce": False},
    )
    row = simulate(suite).requests.to_pylist()[0]
    assert row["outcome"] == "wrong"  # answered, where the request should have been refused
    assert (row["violations"], row["violation_kinds"]) == (2, "pii_leak,prohibited_action_executed")
    assert row["prevented"] == 0


def test_same_seed_same_trace_other_seed_other_trace() -> None:
    a = simulate(make_suite(traffic__requests=50, seed=1))
    b = simulate(make_suite(traffic__requests=50, seed=1))
    c = simulate(make_suite(traffic__requests=50, seed=2))
    assert a.spans.equals(b.spans) and a.requests.equals(b.requests)
    assert not a.requests.equals(c.requests)
