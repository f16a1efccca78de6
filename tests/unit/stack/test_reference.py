"""The reference stack driven by hand: no engine, no clock, just effects and outcomes.

This is the sans-I/O contract: whoever drives the generator decides time and results.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.spec import Suite
from harness.stack import (
    CallModel,
    CallTool,
    Final,
    ModelResult,
    Note,
    ReferenceStack,
    RequestInfo,
    RetryBudget,
    Tick,
    ToolResult,
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


# --------------------------------------------------------------------------- guardrails


def governed(**policies: Any) -> Suite:
    """One tier per level, a schema'd lookup tool, and a policy (default unless overridden)."""
    return Suite.model_validate(
        {
            "name": "gov",
            "traffic": {"mix": {"routine": {"weight": 1, "tool_steps": 1, "tools": ["lookup"]}}},
            "models": {
                "s": {"tier": "fast", "quality": {}},
                "m": {"tier": "balanced", "quality": {}},
                "l": {"tier": "premium", "quality": {}},
            },
            "tools": {
                "lookup": {
                    "args_schema": {
                        "type": "object",
                        "required": ["id"],
                        "properties": {"id": {"type": "string"}},
                        "additionalProperties": False,
                    },
                    "args_example": {"id": "C1"},
                },
                "refund": {},
            },
            "stack": {
                "classifier": {"enabled": False},
                "class_routes": {"routine": "routine"},
                "retry_budget": None,
                "escalation": {"confidence_threshold": 0.0, "high_impact_route": None},
            },
            "policies": policies,
        }
    )


def step(now: float, args: dict[str, Any], action: str | None = None) -> ModelResult:
    r = ok(now)
    r.proposed_tool = "lookup"
    r.tool_args = args
    r.proposed_action = action
    return r


def tool_ok(now: float) -> ToolResult:
    return ToolResult("ok", now, 0.1)


def answer(now: float, text: str = "done") -> ModelResult:
    r = ok(now)
    r.text = text
    return r


def checks(effects: list[Any]) -> list[tuple[str, str, bool, bool]]:
    return [
        (e.name, e.stage, e.caught, e.acted)
        for e in effects
        if isinstance(e, Note) and e.kind == "policy_check"
    ]


def gov_request(
    text: str = "where is my order?", actions: tuple[str, ...] = ("lookup",)
) -> RequestInfo:
    return request(tool_steps=1, tools=("lookup",), text=text, actions=actions)


def test_personal_data_is_redacted_before_any_model_sees_it() -> None:
    stack = ReferenceStack(governed())
    effects, final = drive(
        stack.handle(gov_request("mail me at jane.doe@example.com please")),
        [step(0.1, {"id": "C1"}), tool_ok(0.2), answer(0.5)],
    )
    prompts = {e.prompt for e in effects if isinstance(e, CallModel)}
    assert prompts == {"mail me at [EMAIL] please"}
    assert checks(effects)[0] == ("pii_redaction", "input", True, True)
    assert final.prompt == "mail me at [EMAIL] please"


def test_leaked_personal_data_is_redacted_from_the_answer() -> None:
    stack = ReferenceStack(governed())
    _, final = drive(
        stack.handle(gov_request()),
        [step(0.1, {"id": "C1"}), tool_ok(0.2), answer(0.5, "call +1 (555) 010-4477 today")],
    )
    assert final.answer == "call [PHONE] today"


def test_invalid_arguments_are_repaired_once_then_the_call_is_refused() -> None:
    stack = ReferenceStack(governed())
    bad = {"id": 7}
    effects, final = drive(stack.handle(gov_request()), [step(0.1, bad), step(0.2, bad)])
    assert [e.purpose for e in effects if isinstance(e, CallModel)] == ["step", "repair"]
    assert not any(isinstance(e, CallTool) for e in effects)  # never executed
    assert checks(effects) == [("tool_args", "tool_args", True, True)] * 2
    assert final.outcome == "handoff"


def test_a_repaired_call_goes_through() -> None:
    stack = ReferenceStack(governed())
    effects, final = drive(
        stack.handle(gov_request()),
        [step(0.1, {"id": 7}), step(0.2, {"id": "C1"}), tool_ok(0.3), answer(0.6)],
    )
    calls = [e for e in effects if isinstance(e, CallTool)]
    assert [(c.tool, c.args) for c in calls] == [("lookup", {"id": "C1"})]
    assert final.outcome == "success"


def test_injected_action_after_untrusted_content_is_contained() -> None:
    stack = ReferenceStack(governed())
    injected = answer(0.5)
    injected.proposed_action = "refund"
    effects, final = drive(
        stack.handle(gov_request()), [step(0.1, {"id": "C1"}), tool_ok(0.2), injected]
    )
    assert [e.tool for e in effects if isinstance(e, CallTool)] == ["lookup"]
    assert ("injection_containment", "action", True, True) in checks(effects)
    assert final.outcome == "success"


def test_with_enforcement_off_the_guardrails_observe_and_the_action_runs() -> None:
    stack = ReferenceStack(governed(enforce=False))
    injected = answer(0.5)
    injected.proposed_action = "refund"
    effects, _ = drive(
        stack.handle(gov_request()),
        [step(0.1, {"id": "C1"}), tool_ok(0.2), injected, tool_ok(0.7)],
    )
    assert [e.tool for e in effects if isinstance(e, CallTool)] == ["lookup", "refund"]
    assert ("injection_containment", "action", True, False) in checks(effects)


def test_high_impact_action_from_an_untrusted_tier_waits_for_a_human() -> None:
    stack = ReferenceStack(governed())
    effects, final = drive(
        stack.handle(gov_request(actions=("lookup", "refund"))),
        [step(0.1, {"id": "C1"}), tool_ok(0.2), answer(0.5)],
    )
    assert ("high_impact_approval", "action", True, True) in checks(effects)
    assert (final.outcome, final.served_by) == ("handoff", "human")
    assert "refund" not in [e.tool for e in effects if isinstance(e, CallTool)]


def test_prohibited_request_is_blocked_at_the_door() -> None:
    stack = ReferenceStack(governed())
    effects, final = drive(stack.handle(gov_request(actions=("delete_account",))), [])
    assert checks(effects) == [("prohibited_action", "input", True, True)]
    assert (final.outcome, final.route) == ("blocked", "guardrail")
