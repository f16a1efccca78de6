"""The reference stack driven by hand: no engine, no clock, just effects and outcomes.

This is the sans-I/O contract: whoever drives the generator decides time and results.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.spec import Suite
from harness.stack import (
    CallModel,
    Final,
    ModelResult,
    Note,
    ReferenceStack,
    RequestInfo,
    RetryBudget,
    Tick,
    Wait,
)


def suite(**stack: Any) -> Suite:
    return Suite.model_validate(
        {
            "name": "hand",
            "traffic": {"mix": {"routine": {"weight": 1}, "hard": {"weight": 1}}},
            "models": {
                "s": {"tier": "fast", "quality": {}},
                "m": {"tier": "balanced", "quality": {}},
                "l": {"tier": "premium", "quality": {}},
            },
            "stack": {
                "class_routes": {"routine": "routine", "hard": "reasoning"},
                "retry_budget": None,
                **stack,
            },
        }
    )


def ok(now: float, confidence: float = 0.9, predicted: str | None = None) -> ModelResult:
    r = ModelResult("ok", now, 0.1)
    r.confidence = confidence
    r.correct = True
    r.predicted_class = predicted
    return r


def drive(gen: Any, outcomes: list[Any]) -> tuple[list[Any], Final]:
    """Send outcomes in order (Tick for notes); return the effects seen and the Final."""
    effects = [next(gen)]
    feed = iter(outcomes)
    try:
        while True:
            eff = effects[-1]
            effects.append(gen.send(Tick(0.0) if isinstance(eff, Note) else next(feed)))
    except StopIteration as stop:
        return effects, stop.value


def request(**kw: Any) -> RequestInfo:
    base: dict[str, Any] = {
        "request_id": 0, "arrival_s": 0.0, "task_class": "routine", "input_tokens": 100,
        "tool_steps": 0, "tools": (),
    }  # fmt: skip
    return RequestInfo(**{**base, **kw})


def test_classifier_picks_the_route_and_the_answer_stays_on_the_cheap_tier() -> None:
    stack = ReferenceStack(suite())
    effects, final = drive(stack.handle(request()), [ok(0.1, 0.95, "routine"), ok(0.5, 0.9)])
    calls = [(e.model, e.purpose) for e in effects if isinstance(e, CallModel)]
    assert calls == [("s", "classify"), ("s", "answer")]
    assert (final.outcome, final.route, final.served_by, final.tiers_tried) == (
        "success", "routine", "fast", ("fast",),
    )  # fmt: skip


def test_low_classifier_confidence_starts_one_tier_higher() -> None:
    stack = ReferenceStack(suite())
    effects, final = drive(stack.handle(request()), [ok(0.1, 0.3, "routine"), ok(0.5)])
    assert [e.model for e in effects if isinstance(e, CallModel)] == ["s", "m"]
    assert final.escalated and final.served_by == "balanced"


def test_low_answer_confidence_escalates_until_the_top_tier_accepts() -> None:
    stack = ReferenceStack(suite(escalation={"confidence_threshold": 0.8}))
    effects, final = drive(
        stack.handle(request()),
        [ok(0.1, 0.95, "routine"), ok(0.5, 0.5), ok(1.0, 0.6), ok(2.0, 0.1)],
    )
    assert [e.model for e in effects if isinstance(e, CallModel)] == ["s", "s", "m", "l"]
    assert final.tiers_tried == ("fast", "balanced", "premium")
    assert final.confidence == 0.1  # the top tier's answer is accepted whatever its confidence


def test_a_failed_call_waits_a_jittered_backoff_then_retries() -> None:
    stack = ReferenceStack(suite(classifier={"enabled": False}))
    failed = ModelResult("error", 0.02, 0.02)
    effects, final = drive(
        stack.handle(request(jitter=lambda j: 0.5)), [failed, Tick(0.12), ok(0.5)]
    )
    waits = [e.seconds for e in effects if isinstance(e, Wait)]
    assert waits == [0.5 * 0.2]  # U * base * 2^0
    assert final.retries == 1 and final.outcome == "success"


def test_retry_budget_caps_retries_in_its_window() -> None:
    budget = RetryBudget(ratio=0.5, min_per_s=0.0, window_s=10.0)
    for t in range(4):
        budget.on_request(float(t))
    assert [budget.try_withdraw(4.0) for _ in range(3)] == [True, True, False]
    assert not budget.try_withdraw(13.5)  # old requests left the window: nothing earned
    budget.on_request(13.0)
    budget.on_request(13.2)
    assert budget.try_withdraw(14.5)  # two new requests earn one; the old retries left


def test_the_stack_reads_no_clock_and_no_generator() -> None:
    import harness.stack._reference as ref

    source = Path(ref.__file__).read_text(encoding="utf-8")
    for forbidden in ("import time", "import random", "numpy", "datetime", "harness.engine"):
        assert forbidden not in source
