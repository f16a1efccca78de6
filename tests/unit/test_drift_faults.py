"""Drift and price faults, context windows, and per-endpoint timeouts.

Each fault kind runs in a window from 5 s to 10 s of a 20 s run at 10 requests per
second with constant latencies and fixed token counts, so every metric outside the
window is exactly the no-fault value and the change inside is the fault's alone.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest
from pydantic import ValidationError

from harness.run import simulate
from harness.spec import Suite, reference_problems
from harness.stack import ReferenceStack
from harness.traffic import sample_requests
from harness.world import sample_tape
from tests.unit.test_engine import make_suite
from tests.unit.test_outcomes_world import alpaca_suite

WINDOW = {"start_s": 5.0, "duration_s": 5.0}
SHORT, LONG = 100, 1000  # prompt tokens of the two task classes


def drift_suite(*faults: dict[str, Any], **over: Any) -> Suite:
    """200 requests, half short and half long prompts, on `small` (fast) with `big` behind."""
    mix = {
        "short": {"weight": 1, "input_tokens": SHORT, "token_spread": 0},
        "long": {"weight": 1, "input_tokens": LONG, "token_spread": 0},
    }
    base: dict[str, Any] = {
        "traffic__requests": 200,
        "traffic__rate_per_s": 10.0,
        "traffic__mix": mix,
        "models__small__quality": {"short": 1.0, "long": 1.0},
        "models__big__quality": {"short": 1.0, "long": 1.0},
        "stack__class_routes": {"short": "routine", "long": "routine"},
        "faults": [{**WINDOW, **f} for f in faults],
    }
    return make_suite(**{**base, **over})


def run(suite: Suite) -> tuple[pd.DataFrame, pd.DataFrame]:
    result = simulate(suite)
    return result.requests.to_pandas(), result.spans.to_pandas()


def inside(requests: pd.DataFrame) -> pd.Series:
    return (requests.arrival_s >= 5.0) & (requests.arrival_s < 10.0)


def chats(spans: pd.DataFrame, requests: pd.DataFrame) -> pd.DataFrame:
    """Chat spans with the request's class and whether it arrived in the window."""
    df = spans[spans.kind == "chat"].merge(
        requests[["request_id", "task_class", "arrival_s"]], on="request_id"
    )
    return df.assign(inside=inside(df))


@pytest.fixture(scope="module")
def clean() -> pd.DataFrame:
    """The same traffic without faults: what every request outside a window must match."""
    return run(drift_suite())[0]


def same_outside(requests: pd.DataFrame, clean: pd.DataFrame, *columns: str) -> None:
    out = ~inside(requests)
    for col in columns:
        assert requests[col][out].tolist() == pytest.approx(clean[col][out].tolist()), col


# --------------------------------------------------------------------------- quality_drop


def test_quality_drop_lowers_success_inside_its_window_only(clean: pd.DataFrame) -> None:
    requests, spans = run(drift_suite({"kind": "quality_drop", "target": "small", "amount": 0.4}))
    win = inside(requests)
    assert clean.success.all()
    assert requests.success[~win].all()
    assert 0.4 < requests.success[win].mean() < 0.8  # q = 1.0 - 0.4 on ~50 requests
    assert requests.cost_usd.tolist() == pytest.approx(clean.cost_usd.tolist())
    assert requests.latency_ms.tolist() == pytest.approx(clean.latency_ms.tolist())
    assert set(requests.phase[win]) == {"quality_drop:small"}
    assert set(requests.phase[~win]) == {"baseline"}
    chat = chats(spans, requests)
    assert set(chat.fault[chat.inside]) == {"quality_drop:small"}
    assert set(chat.fault[~chat.inside]) == {""}


def test_a_full_quality_drop_makes_every_answer_wrong_on_its_tier_target() -> None:
    requests, _ = run(drift_suite({"kind": "quality_drop", "target": "fast", "amount": 1.0}))
    win = inside(requests)
    assert not requests.success[win].any()
    assert requests.success[~win].all()


def test_quality_drop_on_another_model_changes_nothing(clean: pd.DataFrame) -> None:
    requests, _ = run(drift_suite({"kind": "quality_drop", "target": "big", "amount": 1.0}))
    same_outside(requests, clean, "success", "cost_usd", "latency_ms")
    assert requests.success.all()


def test_with_an_outcome_table_a_drop_turns_right_answers_wrong_by_the_tape() -> None:
    drop = {"kind": "quality_drop", "target": "small", "amount": 0.3}
    clean, _ = run(alpaca_suite())
    suite = alpaca_suite(faults=[drop])
    requests, _ = run(suite)
    u = sample_tape(suite, sample_requests(suite)).difficulty
    expect = clean.success.to_numpy() & (u >= 0.3)
    assert (requests.success.to_numpy() == expect).all()
    assert requests.success.sum() < clean.success.sum()


# --------------------------------------------------------------------------- price_change


def test_price_change_multiplies_cost_inside_its_window_only(clean: pd.DataFrame) -> None:
    requests, _ = run(drift_suite({"kind": "price_change", "target": "small", "factor": 3.0}))
    win = inside(requests)
    assert requests.cost_usd[win].tolist() == pytest.approx((3 * clean.cost_usd[win]).tolist())
    same_outside(requests, clean, "cost_usd")
    assert requests.success.tolist() == clean.success.tolist()
    assert requests.latency_ms.tolist() == pytest.approx(clean.latency_ms.tolist())
    assert requests.input_tokens.tolist() == clean.input_tokens.tolist()
    assert set(requests.phase[win]) == {"price_change:small"}


# --------------------------------------------------------------------------- context_limit


def test_context_limit_fails_long_prompts_with_400_inside_its_window_only() -> None:
    limit = {"kind": "context_limit", "target": "small", "max_tokens": 500}
    requests, spans = run(drift_suite(limit))
    chat = chats(spans, requests)
    refused = chat[chat["http.response.status_code"] == 400]
    assert len(refused) > 0
    assert set(refused.task_class) == {"long"}
    assert refused.inside.all()
    assert set(refused.tier) == {"fast"}
    assert refused.duration_ms.tolist() == pytest.approx([20.0] * len(refused))  # fast fail
    assert (refused.status == "error").all()
    assert set(refused.fault) == {"context_limit:small"}
    assert (refused.queue_ms == 0).all()  # no capacity used
    # the window names only the calls it refused: short prompts fit
    short_inside = chat[chat.inside & (chat.task_class == "short")]
    assert set(short_inside.fault) == {""}
    assert set(short_inside.status) == {"ok"}
    # the long requests fall back to the premium tier (or retry after the window) and succeed
    long_inside = requests[inside(requests) & (requests.task_class == "long")]
    assert long_inside.success.all()
    assert set(long_inside.served_by[long_inside.arrival_s < 9.7]) == {"premium"}


def test_context_limit_truncates_and_bills_the_window(clean: pd.DataFrame) -> None:
    limit = {"kind": "context_limit", "target": "small", "max_tokens": 500, "on_exceed": "truncate"}
    requests, spans = run(drift_suite(limit))
    chat = chats(spans, requests)
    long_in = chat[chat.inside & (chat.task_class == "long")]
    assert set(long_in["gen_ai.usage.input_tokens"]) == {500}
    assert set(long_in.status) == {"ok"}
    assert set(long_in.fault) == {"context_limit:small"}
    others = chat[~(chat.inside & (chat.task_class == "long"))]
    assert set(others.fault) == {""}
    win = inside(requests)
    truncated = win & (requests.task_class == "long")
    assert set(requests.input_tokens[truncated]) == {500}
    assert requests.cost_usd[truncated].tolist() == pytest.approx(
        (clean.cost_usd[truncated] - (LONG - 500) * 1.0 / 1e6).tolist()
    )
    assert 0.2 < requests.success[truncated].mean() < 0.8  # chance x 500/1000
    assert requests.success[~truncated].all()
    assert requests.latency_ms.tolist() == pytest.approx(clean.latency_ms.tolist())


def test_a_model_context_window_applies_to_every_call() -> None:
    requests, spans = run(drift_suite(models__small__context_window=500))
    chat = chats(spans, requests)
    refused = chat[chat["http.response.status_code"] == 400]
    assert set(refused.task_class) == {"long"}
    assert refused.inside.any() and (~refused.inside).any()
    assert set(refused.fault) == {""}  # a setting, not a fault
    assert set(requests.served_by[requests.task_class == "long"]) == {"premium"}


def test_a_model_context_window_can_truncate() -> None:
    requests, _ = run(
        drift_suite(models__small__context_window=500, models__small__on_context_exceed="truncate")
    )
    assert set(requests.input_tokens[requests.task_class == "long"]) == {500}
    assert set(requests.input_tokens[requests.task_class == "short"]) == {SHORT}


def test_the_tighter_of_window_and_fault_binds() -> None:
    limit = {"kind": "context_limit", "target": "small", "max_tokens": 200, "on_exceed": "truncate"}
    suite = drift_suite(
        limit,
        models__small__context_window=800,
        models__small__on_context_exceed="truncate",
    )
    requests, _ = run(suite)
    long = requests.task_class == "long"
    assert set(requests.input_tokens[long & inside(requests)]) == {200}
    assert set(requests.input_tokens[long & ~inside(requests)]) == {800}


# --------------------------------------------------------------------------- validation


def test_drift_faults_target_a_model_or_a_tier() -> None:
    suite = make_suite(
        tools={"kb": {"kind": "retrieval"}},
        faults=[
            {"kind": "quality_drop", "target": "kb"},
            {"kind": "price_change", "target": "premium"},
            {"kind": "context_limit", "target": "retrieval", "max_tokens": 10},
        ],
    )
    problems = [(path, msg) for path, msg, _ in reference_problems(suite)]
    assert problems == [
        (("faults", 0, "target"), "a quality_drop fault targets a model or a tier, not 'kb'"),
        (
            ("faults", 2, "target"),
            "a context_limit fault targets a model or a tier, not 'retrieval'",
        ),
    ]


def test_context_limit_needs_max_tokens() -> None:
    with pytest.raises(ValidationError, match="needs max_tokens"):
        make_suite(faults=[{"kind": "context_limit", "target": "small"}])


# --------------------------------------------------------------------------- timeouts


def test_a_model_timeout_overrides_the_stack_default() -> None:
    suite = make_suite(
        faults=[{"kind": "timeout", "target": "fast"}],
        models__small__timeout_ms=700,
        stack__routes={"routine": {"tier": "fast", "max_retries": 0}},
        stack__timeouts={"model_call_ms": 3000},
    )
    _, spans = run(suite)
    chat = spans[spans.kind == "chat"]
    assert chat[["tier", "status"]].values.tolist() == [["fast", "timeout"], ["premium", "ok"]]
    assert chat.duration_ms.tolist() == pytest.approx([700.0, 1000.0])


def test_model_and_tool_timeouts_per_endpoint_with_defaults() -> None:
    suite = make_suite(
        models__small__timeout_ms=700,
        tools={"kb": {"kind": "retrieval", "timeout_ms": 250}, "crm": {}},
        stack__timeouts={"model_call_ms": 3000, "tool_call_ms": 4000},
    )
    stack = ReferenceStack(suite)
    assert stack.model_timeout == {"small": 0.7, "big": 3.0}
    assert stack.tool_timeout == {"kb": 0.25, "crm": 4.0}
    assert stack.default_tool_timeout == 4.0


def test_a_tool_timeout_overrides_the_stack_default() -> None:
    suite = make_suite(
        traffic__mix={"routine": {"weight": 1, "tool_steps": 1, "tools": ["kb"]}},
        tools={"kb": {"latency": {"dist": "constant", "p50_ms": 50}, "timeout_ms": 250}},
        faults=[{"kind": "timeout", "target": "kb"}],
        stack__routes={"routine": {"tier": "fast", "max_retries": 0}},
        stack__timeouts={"tool_call_ms": 4000},
        stack__handoff=False,
    )
    _, spans = run(suite)
    tool = spans[spans.name == "kb"]
    assert len(tool) >= 1
    assert tool.status.iloc[0] == "timeout"
    assert tool.duration_ms.iloc[0] == pytest.approx(250.0)
