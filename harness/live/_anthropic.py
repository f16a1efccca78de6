"""The Anthropic Messages API wire format (`POST /v1/messages`): bodies and replies.

Request: top-level `system`, `messages` whose content is blocks (`text`, `tool_use` from
the assistant, `tool_result` from the user), `tools` with `input_schema`, `tool_choice`
`{"type": "auto"|"none"}`, a required `max_tokens`, `stream`. Reply: `content` blocks,
`stop_reason`, `usage` (`input_tokens`, `output_tokens`, `cache_read_input_tokens`), or a
stream of `message_start`, `content_block_start` / `_delta` (`text_delta`,
`input_json_delta`) / `_stop`, `message_delta` (stop reason, output tokens), `message_stop`,
`ping` and `error` events. Errors: `{"type": "error", "error": {"type", "message"}}`, 529
when overloaded. No log-probabilities: confidence is always self-reported. Pure: no I/O.
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
)
from harness.stack._effects import OK

VERSION = "2023-06-01"
"""The `anthropic-version` header sent with every call."""
DEFAULT_MAX_TOKENS = 1024
"""`max_tokens` is required by the API: sent when the stack sets no step budget."""


def path() -> str:
    """The endpoint's path under the base URL (e.g. https://api.anthropic.com/v1)."""
    return "/messages"


def headers(key: str | None) -> dict[str, str]:
    """Authentication and version headers."""
    out = {"anthropic-version": VERSION}
    if key is not None:
        out["x-api-key"] = key
    return out


def body(p: Prompt) -> dict[str, Any]:
    """The JSON body for a prompt; tool steps become `tool_use` / `tool_result` blocks."""
    messages: list[dict[str, Any]] = [{"role": "user", "content": p.user or "(no text)"}]
    for s in p.steps:
        try:
            args = json.loads(s.call.arguments or "{}")
        except ValueError:
            args = {}
        blocks: list[dict[str, Any]] = [{"type": "text", "text": s.thought}] if s.thought else []
        blocks.append({"type": "tool_use", "id": s.call.id, "name": s.call.name,
                       "input": args if isinstance(args, dict) else {}})  # fmt: skip
        messages.append({"role": "assistant", "content": blocks})
        result: dict[str, Any] = {
            "type": "tool_result",
            "tool_use_id": s.call.id,
            "content": s.result if s.result is not None else "not run",
        }
        if s.failed:
            result["is_error"] = True
        messages.append({"role": "user", "content": [result]})  # fmt: skip
    out: dict[str, Any] = {
        "model": p.model,
        "max_tokens": p.max_tokens or DEFAULT_MAX_TOKENS,
        "messages": messages,
    }
    if p.system:
        out["system"] = p.system
    if p.tools:
        out["tools"] = [{"name": n, "description": d or n, "input_schema": schema}
                        for n, d, schema in p.tools]  # fmt: skip
        out["tool_choice"] = {"type": p.tool_choice}
    if p.stream:
        out["stream"] = True
    return out


def parse(status: int, hdrs: Mapping[str, str], content: bytes, streamed: bool,
          prompt_text: str) -> Reply:  # fmt: skip
    """The reply to one call: an error with its detail, or the answer (streamed or not)."""
    if status >= 400 or status < 200:
        reply = Reply(status_of(status), status, error=error_detail(content))
        if status in (429, 503, 529):
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
    return finish(reply, prompt_text)


def _blocks(reply: Reply, blocks: list[Any]) -> None:
    texts = []
    for b in blocks:
        if b.get("type") == "text":
            texts.append(str(b.get("text", "")))
        elif b.get("type") == "tool_use":
            reply.tool_calls.append(ToolCall(str(b["id"]), str(b["name"]),
                                             json.dumps(b.get("input") or {})))  # fmt: skip
    reply.text = "".join(texts)


def _usage(reply: Reply, usage: Any) -> None:
    if not isinstance(usage, dict):
        return
    if "input_tokens" in usage:
        fresh = as_int(usage.get("input_tokens"))
        read = as_int(usage.get("cache_read_input_tokens")) or 0
        made = as_int(usage.get("cache_creation_input_tokens")) or 0
        reply.input_tokens = None if fresh is None else fresh + read + made
        reply.cached_input_tokens = read
    if "output_tokens" in usage:
        reply.output_tokens = as_int(usage.get("output_tokens"))


def _whole(content: bytes) -> Reply:
    try:
        data = json.loads(content)
    except (ValueError, RecursionError):
        return malformed("the body is not JSON")
    if not isinstance(data, dict):
        return malformed("the body is not a JSON object")
    if data.get("type") == "error":
        return Reply(status_of(500), 200, error=error_detail(content))
    reply = Reply(OK)
    try:
        _blocks(reply, list(data["content"]))
    except (KeyError, TypeError, AttributeError) as err:
        return malformed(f"no content blocks in the body ({type(err).__name__}: {err})")
    reply.finish_reason = str(data.get("stop_reason") or "")
    if reply.finish_reason == "refusal":
        reply.refusal, reply.text = reply.text or "refused", ""
    _usage(reply, data.get("usage"))
    reply.model = str(data.get("model") or "")
    return reply


def _stream(content: bytes) -> Reply:
    reply = Reply(OK)
    blocks: dict[int, dict[str, Any]] = {}
    partial: dict[int, list[str]] = {}
    stopped = False
    try:
        for index, name, data in sse_events(content):
            event = json.loads(data)
            kind = event.get("type", name)
            if kind == "error":
                return Reply(status_of(500), 200, error=error_detail(data.encode()))
            if kind == "message_start":
                message = event["message"]
                reply.model = str(message.get("model") or "")
                _usage(reply, message.get("usage"))
            elif kind == "content_block_start":
                blocks[int(event["index"])] = dict(event["content_block"])
            elif kind == "content_block_delta":
                i, delta = int(event["index"]), event["delta"]
                reply.output_events.append(index)
                if delta.get("type") == "text_delta":
                    blocks[i]["text"] = blocks[i].get("text", "") + str(delta.get("text", ""))
                elif delta.get("type") == "input_json_delta":
                    partial.setdefault(i, []).append(str(delta.get("partial_json", "")))
            elif kind == "message_delta":
                reply.finish_reason = str((event.get("delta") or {}).get("stop_reason") or "")
                _usage(reply, event.get("usage"))
            elif kind == "message_stop":
                stopped = True
        for i, parts in partial.items():
            blocks[i]["input"] = json.loads("".join(parts) or "{}")
    except (ValueError, RecursionError, KeyError, TypeError, AttributeError) as err:
        return malformed(f"a stream event is not a Messages event ({type(err).__name__})")
    if not stopped:
        return malformed("the stream ended before message_stop")
    _blocks(reply, [blocks[i] for i in sorted(blocks)])
    if reply.finish_reason == "refusal":
        reply.refusal, reply.text = reply.text or "refused", ""
    return reply
