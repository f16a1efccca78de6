"""The official `openai` and `anthropic` SDKs against the dev server: chat, tools, streams
and every error type they raise. Code evalx did not write checks the wire format."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import anthropic
import openai
import pytest

from harness.live.devserver import DevServer

KEY = "sk-sdk"
ASK = [{"role": "user", "content": "Where is my replacement order?"}]
TOOLS = [{"type": "function", "function": {
    "name": "order_status", "description": "Look an order up",
    "parameters": {"type": "object", "properties": {"id": {"type": "string"}},
                   "required": ["id"]}}}]  # fmt: skip


@pytest.fixture(scope="module")
def server() -> Iterator[DevServer]:
    with DevServer(api_key=KEY, hang_s=2.0) as srv:
        yield srv


@pytest.fixture
def client(server: DevServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=server.base_url, api_key=KEY, max_retries=0) as c:
        yield c


def test_chat_with_logprobs_and_request_id(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="dev-large", messages=ASK, logprobs=True
    )  # type: ignore[call-overload]
    assert raw.headers["x-request-id"].startswith("req_")
    assert int(raw.headers["x-ratelimit-remaining-requests"]) > 0
    done = raw.parse()
    text = done.choices[0].message.content
    assert done.choices[0].finish_reason == "stop" and text and "replacement" in text
    assert done.usage is not None and done.usage.completion_tokens > 0
    assert done.choices[0].logprobs is not None and done.choices[0].logprobs.content


def test_a_tool_loop_ends_after_the_tool_result(client: openai.OpenAI) -> None:
    messages: list[dict[str, object]] = [
        {"role": "user", "content": "Check order_status for order C1042"}
    ]
    first = client.chat.completions.create(model="dev-large", messages=messages, tools=TOOLS)  # type: ignore[arg-type]
    [call] = first.choices[0].message.tool_calls or []
    assert first.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "order_status"  # type: ignore[union-attr]
    messages += [
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": '{"status": "shipped"}'},
    ]
    second = client.chat.completions.create(model="dev-large", messages=messages, tools=TOOLS)  # type: ignore[arg-type]
    assert second.choices[0].finish_reason == "stop"
    assert "shipped" in (second.choices[0].message.content or "")


def test_streaming_yields_chunks_and_usage(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="dev-small", messages=ASK, stream=True, stream_options={"include_usage": True}
    )  # type: ignore[call-overload]
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len(chunks) > 5 and "replacement" in text
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_streamed_tool_calls_reassemble(client: openai.OpenAI) -> None:
    ask = [{"role": "user", "content": "order_status of C7"}]
    with client.chat.completions.stream(model="dev-small", messages=ask, tools=TOOLS) as s:  # type: ignore[arg-type]
        final = s.get_final_completion()
    [call] = final.choices[0].message.tool_calls or []
    assert call.function.name == "order_status"  # type: ignore[union-attr]
    assert set(json.loads(call.function.arguments)) == {"id"}  # type: ignore[union-attr]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    ("model", "error"),
    [
        ("dev-small-status400", openai.BadRequestError),
        ("dev-small-status403", openai.PermissionDeniedError),
        ("no-such-model", openai.NotFoundError),
        ("dev-small-status409", openai.ConflictError),
        ("dev-small-status422", openai.UnprocessableEntityError),
        ("dev-small-ratelimited", openai.RateLimitError),
        ("dev-small-error", openai.InternalServerError),
        ("dev-small-status504", openai.InternalServerError),
        ("dev-small-reset", openai.APIConnectionError),
    ],
)
def test_every_error_type(client: openai.OpenAI, model: str, error: type[Exception]) -> None:
    with pytest.raises(error) as caught:
        client.chat.completions.create(model=model, messages=ASK)  # type: ignore[arg-type]
    if isinstance(caught.value, openai.APIStatusError):
        assert caught.value.message and caught.value.response.headers["x-request-id"]


def test_auth_timeout_and_connection_errors(server: DevServer) -> None:
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=server.base_url, api_key="wrong", max_retries=0).models.list()
    slow = openai.OpenAI(base_url=server.base_url, api_key=KEY, max_retries=0, timeout=0.2)
    with pytest.raises(openai.APITimeoutError):
        slow.chat.completions.create(model="dev-small-hang", messages=ASK)  # type: ignore[arg-type]
    gone = openai.OpenAI(base_url=f"http://127.0.0.1:{_closed_port()}/v1", api_key=KEY,
                         max_retries=0)  # fmt: skip
    with pytest.raises(openai.APIConnectionError):
        gone.models.list()


def test_the_sdk_retries_a_429_by_its_headers(server: DevServer) -> None:
    sdk = openai.OpenAI(base_url=server.base_url, api_key=KEY, max_retries=1)
    ask = [{"role": "user", "content": "retry after milliseconds, please"}]
    done = sdk.chat.completions.create(model="dev-small-retryms", messages=ask)  # type: ignore[arg-type]
    assert done.choices[0].message.content


# ---------------------------------------------------------------- Anthropic


@pytest.fixture
def claude(server: DevServer) -> Iterator[anthropic.Anthropic]:
    base = server.base_url.removesuffix("/v1")
    with anthropic.Anthropic(base_url=base, api_key=KEY, max_retries=0) as c:
        yield c


def test_anthropic_messages_tools_and_stream(claude: anthropic.Anthropic) -> None:
    msg = claude.messages.create(model="dev-large", max_tokens=200, messages=ASK)  # type: ignore[arg-type]
    assert msg.stop_reason == "end_turn" and msg.usage.output_tokens > 0
    assert "replacement" in msg.content[0].text  # type: ignore[union-attr]
    tools = [{"name": "order_status", "input_schema": TOOLS[0]["function"]["parameters"]}]  # type: ignore[index]
    ask = [{"role": "user", "content": "order_status of C7"}]
    use = claude.messages.create(model="dev-large", max_tokens=200, messages=ask, tools=tools)  # type: ignore[arg-type]
    assert use.stop_reason == "tool_use"
    block = use.content[0]
    assert block.type == "tool_use" and set(block.input) == {"id"}  # type: ignore[arg-type]
    follow = [*ask, {"role": "assistant", "content": use.content},
              {"role": "user", "content": [{"type": "tool_result", "tool_use_id": block.id,
                                            "content": "shipped"}]}]  # fmt: skip
    done = claude.messages.create(model="dev-large", max_tokens=200, messages=follow, tools=tools)  # type: ignore[arg-type]
    assert done.stop_reason == "end_turn" and "shipped" in done.content[0].text  # type: ignore[union-attr]
    with claude.messages.stream(model="dev-small", max_tokens=200, messages=ASK) as s:  # type: ignore[arg-type]
        text = "".join(s.text_stream)
        final = s.get_final_message()
    assert "replacement" in text and final.usage.output_tokens > 0


@pytest.mark.parametrize(
    ("model", "error"),
    [
        ("no-such-model", anthropic.NotFoundError),
        ("dev-small-status400", anthropic.BadRequestError),
        ("dev-small-ratelimited", anthropic.RateLimitError),
        ("dev-small-status529", anthropic.InternalServerError),
    ],
)
def test_anthropic_errors(claude: anthropic.Anthropic, model: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        claude.messages.create(model=model, max_tokens=50, messages=ASK)  # type: ignore[arg-type]
