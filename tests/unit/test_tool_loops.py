"""Tool loops: a model that keeps proposing the same call, and the planner's stop condition."""

from __future__ import annotations

from typing import Any

import pandas as pd

from harness.run import simulate
from harness.spec import Suite
from tests.unit.test_engine import make_suite

TOOLS = {
    name: {"latency": {"dist": "constant", "p50_ms": 50}, "args_example": {"q": name}}
    for name in ("kb", "crm")
}


def loop_suite(**over: Any) -> Suite:
    """Every request needs kb then crm; the fast model loops on crm with `tool_loop_rate`."""
    base: dict[str, Any] = {
        "traffic__requests": 10,
        "traffic__mix": {"routine": {"weight": 1, "tool_steps": 2, "tools": ["kb", "crm"]}},
        "tools": TOOLS,
        "models__small__tool_loop_rate": 1.0,
        "models__small__invalid_tool_args_rate": 0.0,
    }
    return make_suite(**{**base, **over})


def run(suite: Suite) -> tuple[pd.DataFrame, pd.DataFrame]:
    result = simulate(suite)
    return result.spans.to_pandas(), result.requests.to_pandas()


def per_request(spans: pd.DataFrame, kind: str, column: str) -> list[list[str]]:
    rows = spans[spans["kind"] == kind]
    return [list(g[column]) for _, g in rows.groupby("request_id")]


def test_the_repeat_rule_stops_a_loop_after_exactly_one_repeat() -> None:
    spans, req = run(loop_suite())
    n = len(req)
    assert per_request(spans, "execute_tool", "gen_ai.tool.name") == [["kb", "crm"]] * n
    # two planned steps, the repeated proposal (not run), then the answer asked for
    assert per_request(spans, "chat", "name") == [["step", "step", "step", "answer"]] * n
    checks = spans[spans["kind"] == "policy_check"]
    assert checks["name"].tolist() == ["tool_loop"] * n
    assert checks["detail"].tolist() == ["crm"] * n
    assert set(req["outcome"]) <= {"success", "wrong"} and (req["tool_calls"] == 2).all()


def test_without_the_rule_the_step_cap_ends_the_loop() -> None:
    spans, req = run(loop_suite(stack__budgets={"max_steps": 5, "stop_on_repeat": False}))
    n = len(req)
    assert per_request(spans, "execute_tool", "gen_ai.tool.name") == [["kb"] + ["crm"] * 4] * n
    assert (req["outcome"] == "budget_exhausted").all() and (req["model_calls"] == 6).all()
    assert not (spans["name"] == "tool_loop").any()


def test_the_rule_may_end_the_request_instead_of_asking_for_an_answer() -> None:
    budgets = {"on_repeat": "budget_exhausted"}
    spans, req = run(loop_suite(stack__budgets=budgets))
    assert (req["outcome"] == "budget_exhausted").all() and (req["tool_calls"] == 2).all()
    assert (spans["name"] == "tool_loop").sum() == len(req)


def test_a_model_that_does_not_loop_answers_after_its_plan() -> None:
    spans, req = run(loop_suite(models__small__tool_loop_rate=0.0))
    assert per_request(spans, "chat", "name") == [["step", "step", "answer"]] * len(req)
    assert not (spans["name"] == "tool_loop").any()


def test_loops_follow_the_rate_and_are_deterministic() -> None:
    suite = loop_suite(traffic__requests=400, models__small__tool_loop_rate=0.3)
    spans, req = run(suite)
    looped = spans.loc[spans["name"] == "tool_loop", "request_id"].nunique()
    assert 80 < looped < 160
    again, req_again = run(suite)
    pd.testing.assert_frame_equal(spans, again)
    pd.testing.assert_frame_equal(req, req_again)


def test_the_loop_roll_moves_no_other_draw() -> None:
    """Requests that do not loop are served exactly as in a world without loops."""
    looping, _ = run(loop_suite(traffic__requests=50, models__small__tool_loop_rate=0.3))
    plain, _ = run(loop_suite(traffic__requests=50, models__small__tool_loop_rate=0.0))
    loopers = set(looping.loc[looping["name"] == "tool_loop", "request_id"])
    assert loopers
    keep = ~looping["request_id"].isin(loopers)
    pd.testing.assert_frame_equal(
        looping[keep].reset_index(drop=True),
        plain[~plain["request_id"].isin(loopers)].reset_index(drop=True),
    )


def test_a_request_without_tool_steps_never_loops() -> None:
    suite = loop_suite(traffic__mix={"routine": {"weight": 1, "tool_steps": 0}})
    spans, req = run(suite)
    assert per_request(spans, "chat", "name") == [["answer"]] * len(req)
