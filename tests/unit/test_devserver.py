"""The dev server over real loopback HTTP: wire format, determinism, auth and faults."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from harness.live.devserver import CREATED, DEFAULT_MODELS, DevServer, approx_tokens, complete

KEY = "sk-test"
WEATHER = [{"role": "user", "content": "What is the weather forecast for tomorrow?"}]


@pytest.fixture(scope="module")
def server() -> Iterator[DevServer]:
    with DevServer(api_key=KEY, slow_s=0.05) as srv:
        yield srv


@pytest.fixture
def client(server: DevServer) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=server.base_url, headers={"Authorization": f"Bearer {KEY}"}, timeout=5
    ) as c:
        yield c


def chat(client: httpx.Client, model: str = "dev-medium", **extra: Any) -> httpx.Response:
    return client.post("/chat/completions", json={"model": model, "messages": WEATHER, **extra})


def test_base_url_is_loopback_v1_on_an_ephemeral_port(server: DevServer) -> None:
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/v1", server.base_url)
    assert server.port != 0


def test_completion_has_the_openai_wire_format(client: httpx.Client) -> None:
    r = chat(client, temperature=0.7, max_tokens=200)
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert re.fullmatch(r"chatcmpl-[0-9a-f]+", body["id"])
    assert body["object"] == "chat.completion"
    assert body["created"] == CREATED
    assert body["model"] == "dev-medium"
    [choice] = body["choices"]
    assert choice["index"] == 0
    assert choice["finish_reason"] == "stop"
    assert choice["message"]["role"] == "assistant"
    content = choice["message"]["content"]
    assert isinstance(content, str)
    assert "forecast" in content.lower()
    assert re.search(r"\nconfidence: (0\.\d\d|1\.00)$", content)
    usage = body["usage"]
    assert all(isinstance(usage[k], int) and usage[k] >= 1 for k in usage)
    assert usage["prompt_tokens"] == approx_tokens(WEATHER[0]["content"])
    assert usage["completion_tokens"] == approx_tokens(content)
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_same_request_gets_identical_bytes(client: httpx.Client) -> None:
    assert chat(client).content == chat(client).content


def test_answer_depends_on_model_and_messages() -> None:
    other = [{"role": "user", "content": "How do I reset my password?"}]
    first = complete("dev-medium", WEATHER)
    assert complete("dev-medium", other)["id"] != first["id"]
    assert complete("dev-small", WEATHER)["id"] != first["id"]
    assert "password" in complete("dev-medium", other)["choices"][0]["message"]["content"]


def confidence(model: str, question: str) -> float:
    content = complete(model, [{"role": "user", "content": question}])["choices"][0]["message"]
    return float(content["content"].rsplit("confidence: ", 1)[1])


def test_large_and_premium_models_are_more_confident() -> None:
    questions = [f"question number {i} about billing" for i in range(20)]
    for q in questions:
        assert confidence("dev-small", q) < 0.80 <= confidence("dev-large", q)
        assert confidence("dev-premium", q) >= 0.80


def test_behaviour_suffix_does_not_change_the_answer_text() -> None:
    plain = complete("dev-large", WEATHER)["choices"][0]["message"]
    assert complete("dev-large-slow", WEATHER)["choices"][0]["message"] == plain


def test_max_tokens_truncates_with_finish_reason_length(client: httpx.Client) -> None:
    body = chat(client, max_tokens=3).json()
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] <= 3


@pytest.mark.parametrize("auth", [None, "Bearer sk-wrong", KEY])
def test_a_missing_or_wrong_key_is_401(server: DevServer, auth: str | None) -> None:
    headers = {"Authorization": auth} if auth else {}
    r = httpx.post(
        f"{server.base_url}/chat/completions",
        json={"model": "dev-small", "messages": WEATHER},
        headers=headers,
    )
    assert r.status_code == 401
    assert r.json()["error"]["type"] == "invalid_request_error"
    assert r.json()["error"]["code"] == "invalid_api_key"
    assert isinstance(r.json()["error"]["message"], str)


def test_no_key_needed_when_started_without_one() -> None:
    with DevServer() as srv:
        r = httpx.get(f"{srv.base_url}/models")
    assert r.status_code == 200


def test_ratelimited_is_429_with_retry_after_then_200(client: httpx.Client) -> None:
    messages = [{"role": "user", "content": "rate limit me once"}]
    model = "dev-small-ratelimited"
    first = client.post("/chat/completions", json={"model": model, "messages": messages})
    assert first.status_code == 429
    assert first.headers["retry-after"] == "1"
    assert first.json()["error"]["type"] == "rate_limit_error"
    retry = client.post("/chat/completions", json={"model": model, "messages": messages})
    assert retry.status_code == 200
    assert retry.json()["model"] == "dev-small-ratelimited"
    other = [{"role": "user", "content": "a different body"}]
    fresh = client.post("/chat/completions", json={"model": model, "messages": other})
    assert fresh.status_code == 429


def test_error_suffix_is_500_with_error_body(client: httpx.Client) -> None:
    r = chat(client, model="dev-large-error")
    assert r.status_code == 500
    assert r.json()["error"]["type"] == "server_error"


def test_malformed_suffix_is_200_with_truncated_json(client: httpx.Client) -> None:
    r = chat(client, model="dev-large-malformed")
    assert r.status_code == 200
    assert r.content == b'{"choices": ['
    with pytest.raises(json.JSONDecodeError):
        r.json()


def test_slow_suffix_waits_slow_s(client: httpx.Client) -> None:
    start = time.perf_counter()
    assert chat(client, model="dev-small-slow").status_code == 200
    assert time.perf_counter() - start >= 0.05


def test_behaviours_can_be_set_for_the_whole_server() -> None:
    with DevServer(behaviours={"error"}) as srv:
        r = httpx.post(
            f"{srv.base_url}/chat/completions", json={"model": "dev-small", "messages": WEATHER}
        )
    assert r.status_code == 500


def test_unknown_behaviour_is_refused_with_the_choices() -> None:
    with pytest.raises(ValueError, match="choose from"):
        DevServer(behaviours={"flaky"})  # type: ignore[arg-type]


def test_lookup_with_tools_returns_tool_calls(client: httpx.Client) -> None:
    tools = [{"type": "function", "function": {"name": "search_kb", "parameters": {}}}]
    messages = [{"role": "user", "content": "Please lookup the refund policy"}]
    r = client.post(
        "/chat/completions", json={"model": "dev-large", "messages": messages, "tools": tools}
    )
    [choice] = r.json()["choices"]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    [call] = choice["message"]["tool_calls"]
    assert call["type"] == "function"
    assert call["id"].startswith("call_")
    assert call["function"]["name"] == "search_kb"
    assert isinstance(json.loads(call["function"]["arguments"]), dict)


def test_lookup_without_tools_is_a_plain_answer() -> None:
    messages = [{"role": "user", "content": "Please lookup the refund policy"}]
    assert complete("dev-large", messages)["choices"][0]["finish_reason"] == "stop"


def test_models_lists_the_known_models(client: httpx.Client) -> None:
    body = client.get("/models").json()
    assert body["object"] == "list"
    assert [m["id"] for m in body["data"]] == list(DEFAULT_MODELS)
    assert all(m["object"] == "model" for m in body["data"])


@pytest.mark.parametrize(
    "content",
    [b"{not json", b'{"model": "dev-small"}', b'{"model": "m", "messages": [], "max_tokens": 0}'],
)
def test_bad_request_body_is_400(client: httpx.Client, content: bytes) -> None:
    r = client.post(
        "/chat/completions", content=content, headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 400
    assert r.json()["error"]["type"] == "invalid_request_error"


def test_unknown_path_is_404(client: httpx.Client) -> None:
    assert client.get("/nope").status_code == 404


def test_requests_are_recorded_without_the_key() -> None:
    with (
        DevServer(api_key=KEY) as srv,
        httpx.Client(headers={"Authorization": f"Bearer {KEY}", "X-Trace": "t1"}) as c,
    ):
        c.post(f"{srv.base_url}/chat/completions", json={"model": "dev-small", "messages": WEATHER})
        seen = srv.requests
    [(path, headers, body)] = seen
    assert path == "/v1/chat/completions"
    assert headers["x-trace"] == "t1"
    assert "authorization" not in headers
    assert KEY not in json.dumps(headers)
    assert body == {"model": "dev-small", "messages": WEATHER}


def test_stop_releases_the_server_and_is_idempotent() -> None:
    srv = DevServer().start()
    url = srv.base_url
    srv.stop()
    srv.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/models", timeout=1)
