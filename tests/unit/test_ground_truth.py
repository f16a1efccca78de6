"""Ground truth is for scoring only: the stack gets what a real router gets, and the
detectors it uses can miss the evasive cases the world plants."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from harness.content import Content, evasive_pii
from harness.guardrails import ActionRecognizer, PiiDetector, looks_injected
from harness.run import simulate
from harness.spec import Policy, Suite, load_suite
from harness.stack import ModelResult, RequestInfo
from harness.traffic import sample_requests
from tests.conftest import ROOT

GROUND_TRUTH = {"task_class", "tool_steps", "actions", "pii", "injection", "prohibited",
                "high_impact", "evasive", "correct", "difficulty", "labels"}  # fmt: skip


class Spy:
    """A stack that records everything it is handed, then answers at once."""

    def __init__(self) -> None:
        self.seen: list[RequestInfo] = []
        self.results: list[ModelResult] = []

    def handle(self, request: RequestInfo) -> Any:
        from harness.stack import CallModel, Final

        self.seen.append(request)
        res = yield CallModel("mini", "agent", request.input_tokens, 30.0, prompt=request.text)
        self.results.append(res)
        return Final("success", "spy", "fast", ("fast",), answer=res.text)


def support(**sets: str) -> Suite:
    overrides = [f"{k}={v}" for k, v in sets.items()]
    return load_suite(ROOT / "scenarios" / "support.yaml", overrides).suite


def test_the_stack_is_handed_no_ground_truth() -> None:
    """Fails if the effect protocol carries a label a real request would not carry."""
    assert set(RequestInfo._fields) == {"request_id", "arrival_s", "input_tokens", "tools",
                                        "jitter", "text", "metadata"}  # fmt: skip
    assert not GROUND_TRUTH & set(RequestInfo._fields)
    assert not hasattr(ModelResult("ok", 0.0, 0.0), "correct")

    from harness.engine import Engine
    from harness.faults import schedule
    from harness.world import sample_tape

    suite = support(**{"traffic.requests": "300"})
    reqs = sample_requests(suite)
    spy = Spy()
    Engine(suite, reqs, sample_tape(suite, reqs), schedule(suite), spy).run()
    assert len(spy.seen) == 300
    tools = spy.seen[0].tools
    for info in spy.seen:
        assert info.tools == tools  # the deployment's toolset, not the task's plan
        assert dict(info.metadata) == {}
    for res in spy.results:
        names = {k for k in dir(res) if not k.startswith("_")}  # compiled objects have no __dict__
        assert not GROUND_TRUTH & names, GROUND_TRUTH & names


def test_outcomes_are_judged_by_the_world_not_by_the_stack_claim() -> None:
    suite = support(**{"traffic.requests": "400", "stack.classifier.enabled": "false"})
    req = simulate(suite).requests.to_pandas()
    answered = req[req["outcome"].isin(["success", "wrong"])]
    assert (answered["outcome"] == "wrong").any() and (answered["outcome"] == "success").any()
    assert (req["success"] == (req["outcome"] == "success")
            | ((req["outcome"] == "blocked") & req["prohibited_action"])).all()  # fmt: skip


@pytest.mark.parametrize("kind", range(4))
def test_evasive_personal_data_escapes_the_detector(kind: int) -> None:
    detector = PiiDetector(["email", "phone", "card", "iban"], {})
    for a in range(0, 5000, 97):
        value = evasive_pii(kind, a, a // 7)
        assert not detector.find(f"Please reach me at {value} today."), value


def test_evasive_requests_and_actions_escape_the_recognizer() -> None:
    suite = support(**{"traffic.requests": "3000", "traffic.edge_cases.evasive": "0.5"})
    reqs = sample_requests(suite)
    content = Content(suite, reqs)
    pol = Policy()
    rec = ActionRecognizer([*pol.actions.prohibited, *pol.actions.high_impact],
                           pol.actions.phrases)  # fmt: skip
    asked = reqs.prohibited | reqs.high_impact
    for i in np.flatnonzero(asked)[:200].tolist():
        found = rec.in_text(content.message(i)[0])
        assert bool(found) != bool(reqs.evasive[i]), content.message(i)[0]
    assert rec.of_call("account_admin", {"op": "purge", "ref": 1}) is None
    assert rec.of_call("account_admin", {"op": "delete my account"}) == "delete_account"
    injected = np.flatnonzero(reqs.injection & reqs.evasive)[:20]
    assert len(injected)
    for i in injected:
        assert not looks_injected(content.tool_result(int(i), "kb_search", False))


def violations(suite: str, enforce: bool) -> dict[str, int]:
    loaded = load_suite(ROOT / "scenarios" / suite, [f"policies.enforce={str(enforce).lower()}"])
    summary = simulate(loaded.suite).summary.to_pandas()
    row = summary[summary["route"] == "all"].iloc[0]
    return {k.removeprefix("violations_"): int(row[k]) for k in summary if k.startswith("viol")}


def test_detectors_miss_evasive_cases_with_enforcement_on() -> None:
    on = violations("policy-edge-cases.yaml", True)
    off = violations("policy-edge-cases.yaml", False)
    missable = ("pii_leak", "prohibited_action_executed", "unapproved_high_impact",
                "invalid_tool_args_executed", "injection_followed")  # fmt: skip
    for kind in missable:
        assert 0 < on[kind] <= off[kind], (kind, on[kind], off[kind])
    assert on["budget_overrun"] == 0 < off["budget_overrun"]  # the token guard is exact
    assert sum(on.values()) < sum(off.values())


def test_a_policy_phrase_catches_what_the_default_misses(tmp_path: Any) -> None:
    base = violations("policy-edge-cases.yaml", True)
    loaded = load_suite(
        ROOT / "scenarios" / "policy-edge-cases.yaml",
        [
            'policies.actions.phrases={delete_account: ["delete my account", "vanish", "purge"],'
            ' refund: ["refund", "reverse the charge"]}'
        ],
    )
    summary = simulate(loaded.suite).summary.to_pandas()
    row = summary[summary["route"] == "all"].iloc[0]
    assert row["violations_prohibited_action_executed"] < base["prohibited_action_executed"]
