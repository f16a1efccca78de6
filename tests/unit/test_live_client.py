"""The live client: every documented reply shape parses, every crash case of issue 16 is a
recorded outcome, failures replay identically offline, streams and Anthropic calls record
time to first token and usage."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pandas.testing as pdt
import pytest

from harness.live import _anthropic, _openai, live_run
from harness.live._wire import retry_after, same_model, self_report
from harness.live.devserver import DevServer
from harness.spec import load_suite

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "scenarios" / "replay-demo.yaml"


def ok_body(message: dict[str, object], usage: object = "missing") -> bytes:
    data: dict[str, object] = {"model": "m", "choices": [{"message": message,
                                                          "finish_reason": "stop"}]}  # fmt: skip
    if usage != "missing":
        data["usage"] = usage
    return json.dumps(data).encode()


# ---------------------------------------------------------------- shapes, pure


def test_content_parts_and_null_usage_parse_with_estimated_usage() -> None:
    parts = {"role": "assistant", "content": [{"type": "text", "text": "Hello there."}]}
    reply = _openai.parse(200, {}, ok_body(parts, None), False, "a prompt of some length")
    assert reply.status == "ok" and reply.text == "Hello there."
    assert reply.input_tokens == 6 and reply.output_tokens == 3
    assert "usage=estimated" in reply.notes


def test_missing_usage_is_estimated_not_zero() -> None:
    reply = _openai.parse(200, {}, ok_body({"content": "x" * 40}), False, "p")
    assert reply.output_tokens == 10 and "usage=estimated" in reply.notes


def test_refusal_is_an_answer_and_noted() -> None:
    reply = _openai.parse(200, {}, ok_body({"content": None, "refusal": "No."}, {}), False, "")
    assert reply.status == "ok" and reply.refusal == "No."
    assert any(n.startswith("refusal=") for n in reply.notes)


@pytest.mark.parametrize(
    ("headers", "wait"),
    [
        ({"Retry-After": "3"}, 3.0),
        ({"Retry-After": "Tue, 01 Dec 2026 12:00:05 GMT", "Date": "Tue, 01 Dec 2026 12:00:00 GMT"},
         5.0),
        ({"retry-after-ms": "1500", "Retry-After": "9"}, 1.5),
        ({"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "6m0s"}, 360.0),
        ({"x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "20ms"}, 0.02),
        ({}, 0.0),
    ],
)  # fmt: skip
def test_retry_after_in_every_form(headers: dict[str, str], wait: float) -> None:
    assert retry_after(headers)[0] == pytest.approx(wait)


@pytest.mark.parametrize(("status", "kind"), [(408, "timeout"), (504, "timeout"),
                                              (429, "rate_limited"), (400, "error"),
                                              (503, "error")])  # fmt: skip
def test_status_classes(status: int, kind: str) -> None:
    body = b'{"error": {"type": "invalid_request_error", "message": "bad model"}}'
    reply = _openai.parse(status, {}, body, False, "")
    assert reply.status == kind and reply.http_status == status
    assert reply.error == "invalid_request_error: bad model"


def test_a_non_json_200_is_malformed() -> None:
    assert _openai.parse(200, {}, b'{"choices": [', False, "").status == "malformed"
    assert _anthropic.parse(200, {}, b"<html>", False, "").status == "malformed"


def test_self_report_and_model_names() -> None:
    assert self_report("Yes.\nconfidence: 0.72") == ("Yes.", 0.72)
    assert self_report("Yes.\n**Confidence:** 85%") == ("Yes.", 0.85)
    assert self_report("no number here") == ("no number here", None)
    assert same_model("gpt-4o-mini", "gpt-4o-mini-2024-07-18")
    assert same_model("gpt-4o", "openai/gpt-4o")
    assert not same_model("gpt-4o", "gpt-4o-mini-2024-07-18")


# ---------------------------------------------------------------- against the dev server


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[DevServer]:
    monkeypatch.setenv("EVALX_DEMO_KEY", "k")
    with DevServer(api_key="k", hang_s=1.0, token_s=0.005) as srv:
        yield srv


def flags(url: str, *extra: str) -> list[str]:
    return [*(f"models.{m}.base_url={url}" for m in ("small", "medium", "large")),
            "models.medium.model=dev-medium", *extra]  # fmt: skip


def run(url: str, *extra: str, **kw: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    result = live_run(load_suite(DEMO, flags(url, *extra)).suite, **kw)
    return result.requests.to_pandas(), result.spans.to_pandas()


def small(spans: pd.DataFrame) -> pd.DataFrame:
    out = spans[spans["gen_ai.request.model"] == "small"]
    assert len(out) > 0
    return out


@pytest.mark.parametrize(
    ("suffix", "status", "detail"),
    [
        ("parts", "ok", "confidence=self_report"),
        ("nousage", "ok", "usage=estimated"),
        ("refusal", "ok", "refusal=I can't help"),
        ("dated", "ok", "confidence=self_report"),
        ("fallback", "ok", "answered_by=dev-premium (not in the suite"),
        ("status408", "timeout", "timeout_error: Dev server"),
        ("status504", "timeout", "gateway_timeout"),
        ("malformed", "malformed", "error=the body is not JSON"),
    ],
)
def test_each_crash_case_is_a_recorded_outcome(
    server: DevServer, suffix: str, status: str, detail: str
) -> None:
    requests, spans = run(server.base_url, f"models.small.model=dev-small-{suffix}")
    calls = small(spans)
    assert (calls["status"] == status).all()
    assert calls["detail"].str.contains(detail, regex=False).all()
    assert len(requests) == 12


@pytest.mark.parametrize("suffix", ["ratelimited", "httpdate", "retryms"])
def test_rate_limits_wait_as_the_headers_say(server: DevServer, suffix: str) -> None:
    _, spans = run(server.base_url, f"models.small.model=dev-small-{suffix}")
    limited = small(spans)
    limited = limited[limited["status"] == "rate_limited"]
    wait = {"ratelimited": "1s:retry-after", "httpdate": "2s:retry-after-date",
            "retryms": "1.5s:retry-after-ms"}[suffix]  # fmt: skip
    assert len(limited) > 0 and limited["detail"].str.contains(f"retry_after={wait}").all()
    backoff = spans[(spans["kind"] == "backoff")]
    assert (backoff["duration_ms"] >= float(wait.split("s")[0]) * 1000 - 1e-6).any()


def test_a_400_is_not_retried_and_its_message_is_in_the_records(server: DevServer) -> None:
    requests, spans = run(server.base_url, "models.small.model=dev-small-status400")
    calls = small(spans)
    assert (calls["http.response.status_code"] == 400).all()
    assert calls.groupby("request_id").size().max() == 1  # one call per request: no retries
    message = "invalid_request_error: Dev server: status 400"
    assert calls["detail"].str.contains(message, regex=False).all()
    assert (requests["retries"] == 0).all()


def test_an_unknown_model_is_a_404_with_its_message(server: DevServer) -> None:
    _, spans = run(server.base_url, "models.small.model=no-such-model")
    calls = small(spans)
    assert (calls["http.response.status_code"] == 404).all()
    assert (
        calls["detail"]
        .str.contains(
            "invalid_request_error (model_not_found): The model `no-such-model`", regex=False
        )
        .all()
    )


def test_a_gateway_fallback_is_priced_as_the_model_that_answered(server: DevServer) -> None:
    _, spans = run(server.base_url, "models.small.model=dev-small-fallback",
                   "models.large.model=dev-premium")  # fmt: skip
    calls = small(spans)
    calls = calls[calls["status"] == "ok"]
    assert calls["detail"].str.contains("answered_by=dev-premium; ", regex=False).all()
    large = (5.0, 15.0)  # the suite's large prices, per million tokens
    expect = (calls["gen_ai.usage.input_tokens"] * large[0]
              + calls["gen_ai.usage.output_tokens"] * large[1]) / 1e6  # fmt: skip
    assert calls["cost_usd"].tolist() == pytest.approx(expect.tolist())


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_timeouts_refusals_and_resets_replay_identically_offline(
    server: DevServer, tmp_path: Path
) -> None:
    refused = f"http://127.0.0.1:{_closed_port()}/v1"
    extra = ["models.small.model=dev-small-hang", "models.small.timeout_ms=200",
             f"models.medium.base_url={refused}", "models.large.model=dev-large-reset",
             "stack.retry.base_ms=10", "stack.retry.cap_ms=20"]  # fmt: skip
    url = server.base_url
    rec_req, rec_spans = run(url, *extra, record=tmp_path)
    statuses = set(rec_spans.loc[rec_spans["kind"] == "chat", "status"])
    assert {"timeout", "error"} <= statuses
    details = " ".join(rec_spans["detail"])
    assert "connect_error: ConnectError" in details and "reset: RemoteProtocolError" in details
    timings = json.loads((tmp_path / "replay-demo.timings.json").read_text())
    failures = {e["failure"] for v in timings.values() for e in v if isinstance(e, dict)}
    assert failures == {"timeout", "connect_error", "reset"}
    server.stop()  # offline: nothing answers any more
    rep_req, rep_spans = run(url, *extra, replay=tmp_path)
    pdt.assert_frame_equal(rec_req, rep_req, check_exact=True)
    pdt.assert_frame_equal(rec_spans, rep_spans, check_exact=True)


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_streamed_and_anthropic_calls_record_ttft_and_usage_and_replay_identically(
    server: DevServer, tmp_path: Path, provider: str
) -> None:
    extra = [f"models.{m}.{k}={v}" for m in ("small", "medium", "large")
             for k, v in (("stream", "true"), ("provider", provider))]  # fmt: skip
    rec_req, rec_spans = run(server.base_url, *extra, record=tmp_path)
    chats = rec_spans[(rec_spans["kind"] == "chat") & (rec_spans["status"] == "ok")]
    assert len(chats) > 0
    assert (chats["ttft_ms"] < chats["duration_ms"]).all()  # the first token came before the end
    assert (chats["gen_ai.usage.output_tokens"] > 0).all()
    assert not chats["detail"].str.contains("usage=estimated").any()
    assert chats["detail"].str.contains("tpot_ms=").all()
    cassette = (tmp_path / "replay-demo.yaml").read_text()
    assert ("message_start" if provider == "anthropic" else "chat.completion.chunk") in cassette
    rep_req, rep_spans = run(server.base_url, *extra, replay=tmp_path)
    pdt.assert_frame_equal(rec_req, rep_req, check_exact=True)
    pdt.assert_frame_equal(rec_spans, rep_spans, check_exact=True)


def test_confidence_from_logprobs_when_returned(server: DevServer) -> None:
    _, spans = run(server.base_url, "models.small.logprobs=true")
    answers = small(spans)
    answers = answers[answers["status"] == "ok"]
    assert answers["detail"].str.contains("confidence=logprobs").all()
    body = next(r.body for r in server.requests if r.path.endswith("completions"))
    assert body["logprobs"] is True
    assert "confidence: <p>" in body["messages"][0]["content"]  # the self-report is asked too


def test_a_recording_is_an_ordinary_vcrpy_cassette(server: DevServer, tmp_path: Path) -> None:
    import httpx
    import vcr

    run(server.base_url, "models.small.stream=true", record=tmp_path)
    url = f"{server.base_url}/chat/completions"
    server.stop()
    recorder = vcr.VCR(record_mode="none", match_on=["method", "uri"])
    with recorder.use_cassette(str(tmp_path / "replay-demo.yaml"), allow_playback_repeats=True):
        r = httpx.post(url, json={})  # vcrpy's own httpx patch answers, the server is gone
    assert r.status_code in (200, 429)
    assert r.headers["x-request-id"].startswith("req_")


def test_bodies_built_from_the_openai_sdk_types_parse() -> None:
    from openai.types.chat import ChatCompletion, ChatCompletionChunk

    done = ChatCompletion.model_validate({
        "id": "c1", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini-2024-07-18",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "logprobs": None,
                     "message": {"role": "assistant", "content": None, "refusal": None,
                                 "tool_calls": [{"id": "call_1", "type": "function",
                                                 "function": {"name": "lookup",
                                                              "arguments": '{"id": "C1"}'}}]}}],
        "usage": None,
    })  # fmt: skip
    reply = _openai.parse(200, {}, done.model_dump_json().encode(), False, "prompt")
    assert reply.tool_calls[0].name == "lookup" and reply.tool_calls[0].arguments == '{"id": "C1"}'
    assert same_model("gpt-4o-mini", reply.model) and "usage=estimated" in reply.notes
    chunks = [ChatCompletionChunk.model_validate({
        "id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
        "choices": choices, "usage": usage}) for choices, usage in (
            ([{"index": 0, "delta": {"role": "assistant", "content": "Hi"}}], None),
            ([{"index": 0, "delta": {"content": " there"}, "finish_reason": "stop"}], None),
            ([], {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}))]  # fmt: skip
    stream = b"".join(b"data: " + c.model_dump_json().encode() + b"\n\n" for c in chunks)
    headers = {"content-type": "text/event-stream"}
    reply = _openai.parse(200, headers, stream + b"data: [DONE]\n\n", True, "")
    assert (reply.text, reply.input_tokens, reply.output_tokens) == ("Hi there", 3, 2)
    assert reply.output_events == [0, 1]


def test_cached_prompt_tokens_are_priced_at_the_cached_rate() -> None:
    body = ok_body({"content": "hi\nconfidence: 0.9"},
                   {"prompt_tokens": 2000, "completion_tokens": 10,
                    "prompt_tokens_details": {"cached_tokens": 1024}})  # fmt: skip
    reply = _openai.parse(200, {}, body, False, "")
    assert (reply.input_tokens, reply.cached_input_tokens) == (2000, 1024)
    usage = {"input_tokens": 10, "cache_read_input_tokens": 1024, "output_tokens": 5}
    msg = {"model": "claude", "content": [{"type": "text", "text": "hi"}], "usage": usage}
    reply = _anthropic.parse(200, {}, json.dumps(msg).encode(), False, "")
    assert (reply.input_tokens, reply.cached_input_tokens) == (1034, 1024)
