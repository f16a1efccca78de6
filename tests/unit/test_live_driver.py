"""The live driver in process: tools as Python callables, faults injected on live calls."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.live import live_run
from harness.live.devserver import DevServer
from harness.spec import load_suite

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "scenarios" / "replay-demo.yaml"


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[DevServer]:
    monkeypatch.setenv("EVALX_DEMO_KEY", "k")
    with DevServer(api_key="k") as srv:
        yield srv


def flags(srv: DevServer, *extra: str) -> list[str]:
    return [*(f"models.{m}.base_url={srv.base_url}" for m in ("small", "medium", "large")),
            "models.medium.model=dev-medium", *extra]  # fmt: skip


def test_tools_run_as_python_callables(
    server: DevServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "my_tools.py").write_text(
        "CALLS = []\ndef lookup(args):\n    CALLS.append(args)\n    return {'status': 'shipped'}\n",
        encoding="utf-8",
    )
    (tmp_path / "asks.jsonl").write_text(
        '{"text": "Please lookup order C1", "task_class": "moderate", '
        '"assert": [{"type": "icontains", "value": "shipped"}]}\n',
        encoding="utf-8",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    schema = "{type: object, properties: {id: {type: string}}, required: [id]}"
    suite = load_suite(DEMO, flags(server,
        f"tools={{lookup: {{function: 'my_tools:lookup', args_schema: {schema}}}}}",
        f"traffic.file={tmp_path / 'asks.jsonl'}",
    )).suite  # fmt: skip
    result = live_run(suite)
    spans = result.spans.to_pandas()
    tool_spans = spans[spans["kind"] == "execute_tool"]
    assert len(tool_spans) == 1 and (tool_spans["status"] == "ok").all()
    assert sys.modules["my_tools"].CALLS == [{"id": "please"}]  # the longest word, by the model
    [row] = result.requests.to_pandas().to_dict("records")
    assert row["outcome"] == "success"  # the answer quotes the tool's result
    bodies = [r.body for r in server.requests if r.path.endswith("/chat/completions")]
    assert bodies[0]["tools"][0]["function"]["parameters"]["required"] == ["id"]
    assert [m["role"] for m in bodies[-1]["messages"]] == ["system", "user", "assistant", "tool"]
    assert "shipped" in bodies[-1]["messages"][-1]["content"]


def test_faults_apply_to_live_calls(server: DevServer) -> None:
    suite = load_suite(DEMO, flags(server, "faults=[{kind: outage, target: fast}]")).suite
    spans = live_run(suite).spans.to_pandas()
    small = spans[spans["gen_ai.request.model"] == "small"]
    assert len(small) > 0
    assert (small["status"] == "error").all()
    assert (small["http.response.status_code"] == 503).all()
    assert set(small["fault"]) == {"outage:fast"}


def test_replay_can_take_latency_from_the_suite_model(server: DevServer, tmp_path: Path) -> None:
    base = flags(server)
    recorded = live_run(load_suite(DEMO, base).suite, record=tmp_path)
    model = [*base, *(f"models.{m}.replay_latency=model" for m in ("small", "medium", "large"))]
    replayed = live_run(load_suite(DEMO, model).suite, replay=tmp_path)
    again = live_run(load_suite(DEMO, model).suite, replay=tmp_path)
    a, b = replayed.requests.to_pandas(), again.requests.to_pandas()
    assert a["latency_ms"].tolist() == b["latency_ms"].tolist()  # deterministic
    assert a["latency_ms"].tolist() != recorded.requests.to_pandas()["latency_ms"].tolist()
    assert a["outcome"].tolist() == recorded.requests.to_pandas()["outcome"].tolist()
