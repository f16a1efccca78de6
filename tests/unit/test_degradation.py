"""Bounded degradation: routes act on degraded retrieval, tools have breakers, and
`evalx validate` warns about settings that can never act."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.run import simulate
from harness.spec import Breaker, Suite, advisories
from tests.unit.test_engine import make_suite

STALE = {"kind": "degraded_retrieval", "target": "kb", "quality_penalty": 0.5}


def retrieval_suite(on: str, **over: Any) -> Suite:
    base: dict[str, Any] = {
        "traffic__requests": 30,
        "traffic__mix": {"routine": {"weight": 1, "tool_steps": 1, "tools": ["kb"]}},
        "tools": {
            "kb": {
                "kind": "retrieval",
                "latency": {"dist": "constant", "p50_ms": 50},
                "args_example": {"q": "x"},
            }
        },
        "faults": [STALE],
        "stack__routes": {"routine": {"tier": "fast", "on_degraded_retrieval": on}},
        "models__small__invalid_tool_args_rate": 0.0,
        "models__big__invalid_tool_args_rate": 0.0,
    }
    return make_suite(**{**base, **over})


def test_caveat_answers_on_the_same_tier() -> None:
    req = simulate(retrieval_suite("caveat")).requests.to_pandas()
    assert (req["served_by"] == "fast").all() and not req["handoff"].any()


def test_handoff_hands_every_degraded_request_to_a_human() -> None:
    req = simulate(retrieval_suite("handoff")).requests.to_pandas()
    assert (req["outcome"] == "handoff").all()


def test_escalate_answers_from_the_next_tier() -> None:
    result = simulate(retrieval_suite("escalate"))
    req = result.requests.to_pandas()
    assert (req["served_by"] == "premium").all() and req["escalated"].all()
    notes = result.spans.to_pandas().query("name == 'degraded_retrieval'")
    assert len(notes) == 30 and set(notes["detail"]) == {"escalate"}


def test_a_failing_tool_opens_its_breaker() -> None:
    flaky = {"kind": "flaky_tool", "target": "kb"}
    suite = retrieval_suite("caveat", faults=[flaky], traffic__requests=60,
                            stack__breaker={"enabled": True, "minimum_calls": 5,
                                            "window_size": 10})  # fmt: skip
    spans = simulate(suite).spans.to_pandas()
    rejected = spans.query("kind == 'breaker' and name == 'kb'")
    assert len(rejected) > 0


def test_default_slow_call_threshold_is_below_the_default_timeouts() -> None:
    from harness.spec import Timeouts

    assert Breaker().slow_call_ms < Timeouts().model_call_ms


def test_validate_warns_about_settings_that_never_act(tmp_path: Path, evalx: Any) -> None:
    suite = retrieval_suite(
        "caveat",
        stack__breaker={"slow_call_ms": 20000},
        tools={"kb": {"latency": {"p50_ms": 6000, "p99_ms": 9000}}},
    )
    found = {".".join(map(str, k)): m for k, m in advisories(suite)}
    assert "can never open its breaker" in found["stack.breaker.slow_call_ms"]
    assert "most calls will time out" in found["tools.kb.latency.p50_ms"]
    assert "not validated" in found["tools.kb"]
    path = tmp_path / "s.yaml"
    path.write_text(
        "name: w\ntraffic: {mix: {routine: {weight: 1}}}\n"
        "models:\n  a: {tier: fast, quality: {}}\n  b: {tier: balanced, quality: {}}\n"
        "  c: {tier: premium, quality: {}}\n"
        "stack:\n  class_routes: {}\n  breaker: {slow_call_ms: 20000}\n"
    )
    done = evalx("validate", path)
    assert done.returncode == 0
    assert f"warning: {path}:9: stack.breaker.slow_call_ms: 20000 ms is not below" in done.stderr
