"""The OpenAI chat-completions wire format: request bodies and every documented reply shape.

Replies: `message.content` as a string, null or a list of parts; `refusal`; `tool_calls`
(and the legacy `function_call`); `usage` present, null or missing (then estimated and
flagged); `logprobs.content`; and streams of `chat.completion.chunk` events (deltas of
text, refusal and tool-call arguments, the usage chunk that `stream_options.include_usage`
adds, `[DONE]`, an error event). Pure: no I/O.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from harness.live._wire import (
    Prompt,
    Reply,
    ToolCall,
    as_int,
    error_detail,
    finish,
    malformed,
    rate_limit_note,
    retry_after,
    sse_events,
    status_of,
    text_of,
)
from harness.stack._effects import OK


def path() -> str:
    """The endpoint's path under the base URL."""
    return "/chat/completions"


def headers(key: str | None) -> dict[str, str]:
    """Authentication headers (none without a key)."""
    return {"authorization": f"Bearer {key}"} if key is not None else {}


def body(p: Prompt) -> dict[str, Any]:
    """The JSON body for a prompt: system and user messages, then each tool step as an
    assistant `tool_calls` message followed by its `role: tool` result."""
    messages: list[dict[str, Any]] = []
    if p.system:
        messages.append({"role": "system", "content": p.system})
    messages.append({"role": "user", "content": p.user or "(no text)"})
    for s in p.steps:
        call = {"id": s.call.id, "type": "function",
                "function": {"name": s.call.name, "arguments": s.call.arguments}}  # fmt: skip
        messages.append({"role": "assistant", "content": s.thought or None, "tool_calls": [call]})
        messages.append({"role": "tool", "tool_call_id": s.call.id,
                         "content": s.result if s.result is not None else "not run"})  # fmt: skip
    out: dict[str, Any] = {"model": p.model, "messages": messages}
    if p.tools:
        out["tools"] = [
            {"type": "function",
             "function": {"name": n, "description": d or n, "parameters": schema}}
            for n, d, schema in p.tools
        ]  # fmt: skip
        out["tool_choice"] = p.tool_choice
    if p.max_tokens is not None:
        out["max_tokens"] = p.max_tokens
    if p.logprobs:
        out["logprobs"] = True
    if p.stream:
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}
    return out


def parse(status: int, hdrs: Mapping[str, str], content: bytes, streamed: bool,
          prompt_text: str) -> Reply:  # fmt: skip
    """The reply to one call: an error with its detail, or the answer (streamed or not)."""
    gateway = hdrs.get("x-litellm-attempted-fallbacks")
    if status >= 400 or status < 200:
        reply = Reply(status_of(status), status, error=error_detail(content))
        if status in (429, 503):
            reply.retry_after_s, source = retry_after(hdrs)
            note = rate_limit_note(hdrs)
            reply.notes += [f"retry_after={reply.retry_after_s:g}s:{source}"] if source else []
            reply.notes += [note] if note else []
        return reply
    if streamed and "text/event-stream" in hdrs.get("content-type", ""):
        reply = _stream(content)
    else:
        reply = _whole(content)
    reply.http_status = status
    reply.gateway_model = hdrs.get("x-litellm-model-group", "")
    if gateway and gateway.strip() not in ("0", ""):
        reply.notes.append(f"gateway_fallbacks={gateway.strip()}")
    return finish(reply, prompt_text)


def _whole(content: bytes) -> Reply:
    try:
        data = json.loads(content)
    except (ValueError, RecursionError):
        return malformed("the body is not JSON")
    if not isinstance(data, dict):
        return malformed("the body is not a JSON object")
    if "error" in data and "choices" not in data:
        return Reply(status_of(500), 200, error=error_detail(content))
    try:
        choice = data["choices"][0]
        message = choice["message"]
        text, refusal = text_of(message.get("content"))
        if isinstance(message.get("refusal"), str):
            refusal = refusal or message["refusal"]
        calls = list(message.get("tool_calls") or [])
        legacy = message.get("function_call")
        if not calls and isinstance(legacy, dict):
            calls = [{"id": "call_0", "function": legacy}]
        tool_calls = [ToolCall(str(c.get("id") or f"call_{i}"), str(c["function"]["name"]),
                               _arguments(c["function"].get("arguments")))
                      for i, c in enumerate(calls)]  # fmt: skip
        reply = Reply(OK, text=text, refusal=refusal, tool_calls=tool_calls)
        reply.finish_reason = str(choice.get("finish_reason") or "")
        lp = choice.get("logprobs")
        if isinstance(lp, dict) and isinstance(lp.get("content"), list) and lp["content"]:
            reply.logprobs = [float(t["logprob"]) for t in lp["content"]]
    except (KeyError, IndexError, TypeError, AttributeError, ValueError) as err:
        return malformed(f"no answer in the body ({type(err).__name__}: {err})")
    _usage(reply, data.get("usage"))
    reply.model = str(data.get("model") or "")
    return reply


def _arguments(raw: Any) -> str:
    return raw if isinstance(raw, str) else json.dumps(raw if raw is not None else {})


def _usage(reply: Reply, usage: Any) -> None:
    if not isinstance(usage, dict):
        return
    reply.input_tokens = as_int(usage.get("prompt_tokens"))
    reply.output_tokens = as_int(usage.get("completion_tokens"))
    details = usage.get("prompt_tokens_details")
    if isinstance(details, dict):
        reply.cached_input_tokens = as_int(details.get("cached_tokens")) or 0


def _stream(content: bytes) -> Reply:
    """A stream of chunks, folded into one reply."""
    reply = Reply(OK)
    texts: list[str] = []
    refusals: list[str] = []
    calls: dict[int, list[str]] = {}  # index -> [id, name, arguments]
    logprobs: list[float] = []
    done = False
    try:
        for index, _, data in sse_events(content):
            if data.strip() == "[DONE]":
                done = True
                break
            chunk = json.loads(data)
            if "error" in chunk:
                return Reply(status_of(500), 200, error=error_detail(data.encode()))
            reply.model = reply.model or str(chunk.get("model") or "")
            if chunk.get("usage") is not None:
                _usage(reply, chunk["usage"])
            for choice in chunk.get("choices") or []:
                delta = choice.get("delta") or {}
                if isinstance(delta.get("content"), str) and delta["content"]:
                    texts.append(delta["content"])
                    reply.output_events.append(index)
                if isinstance(delta.get("refusal"), str):
                    refusals.append(delta["refusal"])
                if delta.get("tool_calls"):
                    reply.output_events.append(index)
                for tc in delta.get("tool_calls") or []:
                    slot = calls.setdefault(int(tc.get("index", 0)), ["", "", ""])
                    fn = tc.get("function") or {}
                    slot[0] = slot[0] or str(tc.get("id") or "")
                    slot[1] += str(fn.get("name") or "")
                    slot[2] += str(fn.get("arguments") or "")
                lp = choice.get("logprobs")
                if isinstance(lp, dict) and isinstance(lp.get("content"), list):
                    logprobs += [float(t["logprob"]) for t in lp["content"]]
                if choice.get("finish_reason"):
                    reply.finish_reason = str(choice["finish_reason"])
    except (ValueError, RecursionError, KeyError, TypeError, AttributeError) as err:
        return malformed(f"a stream event is not a chunk ({type(err).__name__})")
    if not done and not reply.finish_reason:
        return malformed("the stream ended before its last chunk")
    reply.text, reply.refusal = "".join(texts), "".join(refusals)
    reply.tool_calls = [ToolCall(c[0] or f"call_{i}", c[1], c[2] or "{}")
                        for i, c in sorted(calls.items())]  # fmt: skip
    reply.logprobs = logprobs or None
    return reply
