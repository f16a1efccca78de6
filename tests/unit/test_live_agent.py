"""The live agent loop: tools on the wire, calls checked by the same guardrails as in
simulation, results back to the model, the step cap, route system prompts, confidence."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.live import live_run
from harness.live.devserver import DevServer
from harness.run import RunResult
from harness.spec import load_suite

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "scenarios" / "replay-demo.yaml"
TOOL = "def order_status(args):\n    CALLS.append(args)\n    return {'status': 'shipped'}\n"


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[DevServer]:
    monkeypatch.setenv("EVALX_DEMO_KEY", "k")
    (tmp_path / "agent_tools.py").write_text(f"CALLS = []\n{TOOL}", encoding="utf-8")
    (tmp_path / "asks.jsonl").write_text(
        '{"text": "What is the order_status of C1042?", "task_class": "moderate", '
        '"assert": [{"type": "icontains", "value": "shipped"}]}\n',
        encoding="utf-8",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("agent_tools", None)
    with DevServer(api_key="k") as srv:
        yield srv


def agent(srv: DevServer, tmp_path: Path, *extra: str, schema: str = "") -> RunResult:
    schema = schema or "{type: object, properties: {id: {type: string}}, required: [id]}"
    flags = [*(f"models.{m}.base_url={srv.base_url}" for m in ("small", "medium", "large")),
             "models.medium.model=dev-medium",
             f"tools={{order_status: {{function: 'agent_tools:order_status', "
             f"description: 'Look an order up', args_schema: {schema}}}}}",
             f"traffic.file={tmp_path / 'asks.jsonl'}", *extra]  # fmt: skip
    return live_run(load_suite(DEMO, flags).suite)


def chat_bodies(srv: DevServer) -> list[dict[str, object]]:
    return [r.body for r in srv.requests if r.path.endswith("/chat/completions")]


def test_a_two_step_request_sends_tools_runs_the_call_and_ends(
    server: DevServer, tmp_path: Path
) -> None:
    result = agent(server, tmp_path)
    [row] = result.requests.to_pandas().to_dict("records")
    assert row["outcome"] == "success" and row["tool_calls"] == 1
    first, *_, last = chat_bodies(server)
    tool = first["tools"][0]["function"]  # type: ignore[index]
    assert tool["name"] == "order_status" and tool["description"] == "Look an order up"
    assert tool["parameters"]["required"] == ["id"]
    roles = [m["role"] for m in last["messages"]]  # type: ignore[index]
    assert roles == ["system", "user", "assistant", "tool"]
    call = last["messages"][2]["tool_calls"][0]  # type: ignore[index]
    assert last["messages"][3]["tool_call_id"] == call["id"]  # type: ignore[index]
    assert "shipped" in last["messages"][3]["content"]  # type: ignore[index]
    assert sys.modules["agent_tools"].CALLS == [{"id": "order_status"}]
    spans = result.spans.to_pandas()
    assert spans.loc[spans["kind"] == "chat", "name"].tolist()[:2] == ["step", "answer"]


def test_arguments_the_schema_refuses_are_not_run_and_the_model_is_told(
    server: DevServer, tmp_path: Path
) -> None:
    strict = "{type: object, properties: {id: {type: string, pattern: '^C[0-9]+$'}}, " \
             "required: [id]}"  # fmt: skip
    result = agent(server, tmp_path, schema=strict)
    spans = result.spans.to_pandas()
    checks = spans[(spans["kind"] == "policy_check") & (spans["name"] == "tool_args")]
    assert len(checks) >= 1 and checks["acted"].all()
    assert (
        "CALLS" not in dir(sys.modules.get("agent_tools")) or not sys.modules["agent_tools"].CALLS
    )  # never ran
    told = chat_bodies(server)[-1]["messages"][-1]  # type: ignore[index]
    assert told["role"] == "tool" and told["content"].startswith("not run: tool_args:")


def test_the_step_cap_ends_the_loop(server: DevServer, tmp_path: Path) -> None:
    result = agent(server, tmp_path, "stack.budgets.max_steps=0")
    [row] = result.requests.to_pandas().to_dict("records")
    assert row["outcome"] == "budget_exhausted" and row["tool_calls"] == 0


def test_a_route_system_prompt_goes_on_the_wire(server: DevServer, tmp_path: Path) -> None:
    agent(
        server, tmp_path, "stack.routes.routine={tier: fast, system_prompt: You are Acme support.}"
    )
    system = chat_bodies(server)[0]["messages"][0]  # type: ignore[index]
    assert system["role"] == "system" and system["content"].startswith("You are Acme support.")
    assert "confidence: <p>" in system["content"]


def test_the_anthropic_agent_loop(server: DevServer, tmp_path: Path) -> None:
    providers = [f"models.{m}.provider=anthropic" for m in ("small", "medium", "large")]
    result = agent(server, tmp_path, *providers)
    [row] = result.requests.to_pandas().to_dict("records")
    assert row["outcome"] == "success" and row["tool_calls"] == 1
    last = next(r.body for r in reversed(server.requests) if r.path.endswith("/messages"))
    assert last["messages"][-1]["content"][0]["type"] == "tool_result"
    assert "confidence" in last["system"]


def test_low_stated_confidence_escalates(server: DevServer) -> None:
    flags = [*(f"models.{m}.base_url={server.base_url}" for m in ("small", "medium", "large")),
             "models.medium.model=dev-medium",
             "stack.escalation.confidence_threshold=0.8"]  # fmt: skip
    result = live_run(load_suite(DEMO, flags).suite)
    requests = result.requests.to_pandas()
    spans = result.spans.to_pandas()
    answers = spans[(spans["kind"] == "chat") & (spans["status"] == "ok")]
    assert answers["detail"].str.contains("confidence=self_report").all()
    assert requests["escalated"].sum() > 0  # dev-small states 0.45-0.75: below 0.8


def test_a_tool_call_that_is_a_high_impact_action_needs_approval(
    server: DevServer, tmp_path: Path
) -> None:
    (tmp_path / "asks.jsonl").write_text(
        '{"text": "Please refund order C1042", "task_class": "moderate"}\n', encoding="utf-8"
    )
    flags = [*(f"models.{m}.base_url={server.base_url}" for m in ("small", "medium", "large")),
             "models.medium.model=dev-medium",
             "tools={refund: {function: 'agent_tools:order_status'}}",
             "stack.escalation.high_impact_route=null",  # stays on the fast tier
             f"traffic.file={tmp_path / 'asks.jsonl'}"]  # fmt: skip
    result = live_run(load_suite(DEMO, flags).suite)
    [row] = result.requests.to_pandas().to_dict("records")
    assert row["outcome"] == "handoff" and row["tool_calls"] == 0  # a human approves first
    spans = result.spans.to_pandas()
    assert "high_impact_approval" in set(spans.loc[spans["kind"] == "policy_check", "name"])
