"""A loopback OpenAI-compatible (and Anthropic Messages) server for demos and tests.

It speaks the real wire formats (`POST /v1/chat/completions`, `POST /v1/messages`,
`GET /v1/models`, error bodies, `Retry-After`, `x-ratelimit-*` headers, `x-request-id`,
server-sent event streams), so a live driver and the official SDKs can be exercised end
to end without a network or a key. Only the standard library is used.

What a caller may rely on:

* Answers are deterministic in the request: the same body always gets the same
  response bytes (fixed `created`, `id` hashed from model, messages and tools). The
  answer text echoes a keyword of the last user message and ends with a line
  `confidence: 0.83`, derived from a hash of (model, last user message) and a
  per-model quality bias: names containing "large" or "premium" score higher,
  "small"/"mini"/"tiny" lower. `logprobs: true` returns token log-probabilities whose
  geometric mean is that confidence.
* A model the server does not list is a 404 (`model_not_found`), as OpenAI answers.
* Tools: with `tools` in the request, a user message that names a tool (or says "lookup")
  gets a `tool_calls` answer calling it (arguments fill the tool's required parameters);
  once a `role: tool` result follows the last user message, the model answers, quoting
  the result: an agent loop against the server ends.
* `stream: true` answers with `chat.completion.chunk` events (one per word, `token_s`
  apart), a usage chunk when `stream_options.include_usage` is set, then `[DONE]`.
* Faults are switched per server (`behaviours=`) or per request by model-name suffixes,
  so a test can trigger them without touching the server:

  ========================  ====================================================
  ``-ratelimited``          429 + ``Retry-After: 1`` on the first call of each
                            distinct body, 200 on the retry
  ``-httpdate``             as ratelimited, ``Retry-After`` as an HTTP date
  ``-retryms``              as ratelimited, with ``retry-after-ms: 1500`` only
  ``-error``                500 with an OpenAI error body
  ``-statusNNN``            status NNN with an error body of the matching type
                            (e.g. ``-status403``, ``-status408``, ``-status504``)
  ``-malformed``            200 with the truncated body ``{"choices": [``
  ``-slow``                 sleeps ``slow_s`` seconds before answering
  ``-hang``                 sleeps ``hang_s`` seconds before answering
  ``-reset``                closes the connection without a response
  ``-nousage``              ``"usage": null``
  ``-parts``                ``message.content`` as a list of text parts
  ``-refusal``              ``content: null`` and a ``refusal``
  ``-dated``                the response's ``model`` is a dated snapshot name
  ``-fallback``             answered by ``fallback_model`` with
                            ``x-litellm-attempted-fallbacks: 1`` (a gateway)
  ========================  ====================================================

  The suffixes are stripped before the answer is derived, so ``dev-large-slow``
  answers exactly as ``dev-large`` does (the response's ``model`` echoes the request).

The protocol logic is `DevState.handle` (bytes in, `Reply` out, no I/O); the HTTP
handler is a thin driver around it.

    with DevServer(api_key="sk-test") as srv:
        httpx.post(f"{srv.base_url}/chat/completions", ...)

`python -m harness.live.devserver --port 8089` serves until Ctrl-C.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import re
import sys
import threading
import time
from collections.abc import Collection, Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal, NamedTuple, get_args

__all__ = [
    "CREATED",
    "DATED_SUFFIX",
    "DEFAULT_MODELS",
    "FALLBACK_MODEL",
    "Behaviour",
    "DevServer",
    "DevState",
    "Reply",
    "SeenRequest",
    "approx_tokens",
    "complete",
    "main",
]

Behaviour = Literal[
    "ratelimited",
    "httpdate",
    "retryms",
    "error",
    "malformed",
    "slow",
    "hang",
    "reset",
    "nousage",
    "parts",
    "refusal",
    "dated",
    "fallback",
]
BEHAVIOURS: tuple[Behaviour, ...] = get_args(Behaviour)

CREATED = 1_700_000_000
"""The fixed `created` timestamp of every response: no wall clock in the answers."""

DEFAULT_MODELS: tuple[str, ...] = ("dev-small", "dev-medium", "dev-large", "dev-premium")

MALFORMED_BODY = b'{"choices": ['

_ANSWERS = (
    "The short answer on {kw} is yes, with the usual caveats.",
    "Regarding {kw}: check the settings page first, then retry.",
    "{kw} works as documented; no action is needed.",
    "I looked into {kw}; the most likely cause is a stale configuration.",
)


class Reply(NamedTuple):
    """One HTTP response, decided but not yet sent; `delay_s` is slept before sending.

    A streamed reply has `chunks` (sent `chunk_delay_s` apart, chunked encoding); `reset`
    closes the connection without any response."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    delay_s: float = 0.0
    chunks: tuple[bytes, ...] = ()
    chunk_delay_s: float = 0.0
    reset: bool = False

    def json(self) -> Any:
        """The body parsed as JSON (raises on the malformed body, as a client would)."""
        return json.loads(self.body)


class SeenRequest(NamedTuple):
    """A request as the server saw it; the Authorization header is never kept."""

    path: str
    headers: dict[str, str]
    body: Any
    """The parsed JSON body, or None when it was empty or not JSON."""


def approx_tokens(text: str) -> int:
    """A deterministic token estimate: words * 1.3, rounded up, at least 1."""
    return max(1, math.ceil(len(text.split()) * 1.3))


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _text_of(content: Any) -> str:
    """Message content as text: a string, a list of `{"type": "text"}` parts, or None."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            str(p.get("text", "")) for p in content if isinstance(p, dict) and "text" in p
        )
    return ""


_STATUS = re.compile(r"-status(\d{3})(?=-|$)")


def _behaviours_in(model: str) -> tuple[str, frozenset[Behaviour]]:
    """Split a model name into its base name and the behaviours its suffixes ask for."""
    found: set[Behaviour] = set()
    base = _STATUS.sub("", model)
    for b in BEHAVIOURS:
        marker = f"-{b}"
        if marker in base:
            found.add(b)
            base = base.replace(marker, "")
    return base, frozenset(found)


def _status_in(model: str) -> int | None:
    found = _STATUS.search(model)
    return int(found.group(1)) if found else None


def _arguments(tool: Mapping[str, Any], kw: str) -> dict[str, Any]:
    """Arguments for a tool call: each required parameter filled by its type."""
    fn = tool.get("function", tool)
    schema = fn.get("parameters") or fn.get("input_schema") or {}
    props = schema.get("properties") if isinstance(schema, dict) else None
    if not isinstance(props, dict) or not props:
        return {"query": kw}
    fill = {"string": kw, "integer": 1, "number": 1, "boolean": True, "array": [], "object": {}}
    required = [r for r in schema.get("required", []) if r in props] or list(props)[:1]
    return {r: fill.get(str(props[r].get("type", "string")), kw) for r in required}


def _tool_name(tool: Mapping[str, Any]) -> str:
    return str(tool.get("function", tool).get("name", "lookup"))


def _quality_range(model: str) -> tuple[float, float]:
    name = model.lower()
    if "large" in name or "premium" in name:
        return 0.80, 0.98
    if "small" in name or "mini" in name or "tiny" in name:
        return 0.45, 0.75
    return 0.60, 0.90


def _keyword(text: str) -> str:
    words = re.findall(r"[A-Za-z0-9][A-Za-z0-9'_-]*", text)
    return max(words, key=len).lower() if words else "that"


def _truncate(text: str, max_tokens: int) -> str:
    """The longest prefix of whole words whose estimate fits in `max_tokens`."""
    end = 0
    for count, match in enumerate(re.finditer(r"\S+", text), start=1):
        if count > 1 and approx_tokens(text[: match.end()]) > max_tokens:
            break
        end = match.end()
    return text[:end]


def complete(
    model: str,
    messages: Sequence[Mapping[str, Any]],
    tools: Sequence[Mapping[str, Any]] | None = None,
    max_tokens: int | None = None,
) -> dict[str, Any]:
    """The `chat.completion` object for a valid request; pure and deterministic.

    `model` is echoed as given; the answer is derived from its base name (behaviour
    suffixes removed), so fault variants of a model answer like the model itself.
    """
    base, _ = _behaviours_in(model)
    users = [m for m in messages if m.get("role") == "user"]
    last = _text_of((users or list(messages))[-1].get("content"))
    after = list(messages)[max(i for i, m in enumerate(messages) if m.get("role") == "user"):] \
        if users else []  # fmt: skip
    results = [_text_of(m.get("content")) for m in after if m.get("role") == "tool"]
    key = _digest(base, last)
    kw = _keyword(last)
    named = [t for t in tools or () if _tool_name(t).lower() in last.lower()]
    wanted = named or (list(tools or ())[:1] if "lookup" in last.lower() else [])

    message: dict[str, Any]
    if wanted and not results:
        name = _tool_name(wanted[0])
        arguments = json.dumps(_arguments(wanted[0], kw))
        message = {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": f"call_{key[:24]}",
                    "type": "function",
                    "function": {"name": name, "arguments": arguments},
                }
            ],
        }
        finish_reason = "tool_calls"
        completion_tokens = approx_tokens(f"{name} {arguments}")
    else:
        lo, hi = _quality_range(base)
        confidence = lo + (int(key[:8], 16) / 0xFFFFFFFF) * (hi - lo)
        answer = _ANSWERS[int(key[8:10], 16) % len(_ANSWERS)].format(kw=kw)
        if results:
            answer += f" The tool says: {results[-1][:200]}"
        text = f"{answer[0].upper()}{answer[1:]}\nconfidence: {confidence:.2f}"
        finish_reason = "stop"
        if max_tokens is not None and approx_tokens(text) > max_tokens:
            text, finish_reason = _truncate(text, max_tokens), "length"
        message = {"role": "assistant", "content": text}
        completion_tokens = approx_tokens(text)

    prompt_tokens = approx_tokens(" ".join(_text_of(m.get("content")) for m in messages))
    request = {"model": model, "messages": list(messages), "tools": tools}
    return {
        "id": f"chatcmpl-{_digest(_canonical(request))[:24]}",
        "object": "chat.completion",
        "created": CREATED,
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def _json_reply(status: int, payload: Any, **headers: str) -> Reply:
    return Reply(
        status,
        {"Content-Type": "application/json", **headers},
        json.dumps(payload).encode(),
    )


def _error(status: int, message: str, type_: str, code: str | None, *, anthropic: bool = False,
           **headers: str) -> Reply:  # fmt: skip
    if anthropic:
        body: dict[str, Any] = {"type": "error", "error": {"type": type_, "message": message}}
    else:
        body = {"error": {"message": message, "type": type_, "param": None, "code": code}}
    return _json_reply(status, body, **headers)


def _invalid(message: str, anthropic: bool = False) -> Reply:
    return _error(400, message, "invalid_request_error", None, anthropic=anthropic)


def _validate(body: Any) -> str | None:
    """Why a chat-completions body is invalid, or None when it is fine."""
    if not isinstance(body, dict):
        return "The request body must be a JSON object."
    if not isinstance(body.get("model"), str) or not body["model"]:
        return "you must provide a model parameter"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "'messages' must be a non-empty array"
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            return f"'messages.{i}' must be an object with a string 'role'"
        if not isinstance(m.get("content"), str | list | None):
            return f"'messages.{i}.content' must be a string, an array or null"
    max_tokens = body.get("max_tokens")
    if max_tokens is not None and (
        not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1
    ):
        return "'max_tokens' must be a positive integer"
    temperature = body.get("temperature")
    if temperature is not None and (
        not isinstance(temperature, int | float) or not 0 <= temperature <= 2
    ):
        return "'temperature' must be a number between 0 and 2"
    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            return "'tools' must be an array"
        for i, t in enumerate(tools):
            fn = t.get("function") if isinstance(t, dict) else None
            if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
                return f"'tools.{i}' must be {{'type': 'function', 'function': {{'name': ...}}}}"
    return None


_ERROR_TYPES = {
    400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
    404: "not_found_error", 408: "timeout_error", 409: "conflict_error",
    422: "unprocessable_entity",
    429: "rate_limit_error", 500: "server_error", 502: "bad_gateway", 503: "service_unavailable",
    504: "gateway_timeout", 529: "overloaded_error",
}  # fmt: skip
FALLBACK_MODEL = "dev-premium"
"""The model a `-fallback` request is answered by (as a gateway's fallback would)."""
DATED_SUFFIX = "-2024-07-18"
"""Appended to the response's `model` for a `-dated` request (a snapshot name)."""


class DevState:
    """The server's protocol logic and memory: requests seen, rate-limit counters.

    `handle` turns one request into a `Reply` without doing I/O; it is thread-safe.
    """

    def __init__(
        self,
        *,
        api_key: str | None = None,
        behaviours: Collection[Behaviour] = (),
        slow_s: float = 0.2,
        models: Sequence[str] = DEFAULT_MODELS,
        token_s: float = 0.0,
        hang_s: float = 5.0,
        rpm: int = 10_000,
    ) -> None:
        unknown = sorted(set(behaviours) - set(BEHAVIOURS))
        if unknown:
            raise ValueError(f"unknown behaviour(s) {unknown}; choose from {list(BEHAVIOURS)}")
        for name, value in (("slow_s", slow_s), ("token_s", token_s), ("hang_s", hang_s)):
            if value < 0:
                raise ValueError(f"{name} must be >= 0 seconds, got {value}")
        self.api_key = api_key
        self.behaviours = frozenset(behaviours)
        self.slow_s = slow_s
        self.token_s = token_s
        self.hang_s = hang_s
        self.rpm = rpm
        self.models = tuple(models)
        self._lock = threading.Lock()
        self._seen: list[SeenRequest] = []
        self._calls: dict[str, int] = {}
        self._served = 0

    @property
    def requests(self) -> list[SeenRequest]:
        """A copy of every request seen so far, in arrival order."""
        with self._lock:
            return list(self._seen)

    def handle(self, method: str, path: str, headers: Mapping[str, str], raw: bytes) -> Reply:
        """Decide the reply to one request (every reply carries `x-request-id`)."""
        with self._lock:
            self._served += 1
            number = self._served
        reply = self._handle(method, path, headers, raw)
        return reply._replace(headers={**reply.headers, "x-request-id": f"req_{number:08d}"})

    def _handle(self, method: str, path: str, headers: Mapping[str, str], raw: bytes) -> Reply:
        path = path.split("?", 1)[0]
        lowered = {k.lower(): v for k, v in headers.items()}
        auth = lowered.pop("authorization", None)
        api_key = lowered.pop("x-api-key", None)
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = None
        with self._lock:
            self._seen.append(SeenRequest(path, lowered, body))
        anthropic = path == "/v1/messages"
        if (
            self.api_key is not None
            and auth != f"Bearer {self.api_key}"
            and (not anthropic or api_key != self.api_key)
        ):
            return _error(
                401,
                "Incorrect API key provided. Pass it as 'Authorization: Bearer <key>'.",
                "authentication_error" if anthropic else "invalid_request_error",
                "invalid_api_key",
                anthropic=anthropic,
            )
        if (method, path) == ("GET", "/v1/models"):
            return self._models()
        if method == "POST" and path in ("/v1/chat/completions", "/v1/messages"):
            if raw and body is None:
                return _invalid("We could not parse the JSON body of your request.", anthropic)
            if anthropic:
                problem = _validate_messages(body)
                if problem is None:
                    body = _as_chat(body)
            else:
                problem = _validate(body)
            return _invalid(problem, anthropic) if problem else self._chat(body, anthropic)
        return _error(404, f"Unknown request URL: {method} {path}.", "invalid_request_error", None)

    def _models(self) -> Reply:
        data = [
            {"id": m, "object": "model", "created": CREATED, "owned_by": "evalx-devserver"}
            for m in self.models
        ]
        return _json_reply(200, {"object": "list", "data": data})

    def _limits(self) -> dict[str, str]:
        """OpenAI's rate-limit headers: a per-minute budget counting down per request."""
        with self._lock:
            remaining = max(0, self.rpm - self._served)
        return {
            "x-ratelimit-limit-requests": str(self.rpm),
            "x-ratelimit-remaining-requests": str(remaining),
            "x-ratelimit-reset-requests": "60ms",
            "x-ratelimit-limit-tokens": "1000000",
            "x-ratelimit-remaining-tokens": "999000",
            "x-ratelimit-reset-tokens": "6ms",
        }

    def _chat(self, body: dict[str, Any], anthropic: bool = False) -> Reply:
        base, asked = _behaviours_in(body["model"])
        active = self.behaviours | asked
        delay = self.slow_s if "slow" in active else self.hang_s if "hang" in active else 0.0
        status = _status_in(body["model"])
        limited = active & {"ratelimited", "httpdate", "retryms"}
        if "reset" in active:
            return Reply(0, {}, b"", reset=True)
        if base not in self.models:
            reply = _error(404, f"The model `{body['model']}` does not exist or you do not have "
                           "access to it.", "invalid_request_error", "model_not_found",
                           anthropic=anthropic)  # fmt: skip
        elif status is not None:
            reply = _error(status, f"Dev server: status {status} as the model name asks.",
                           _ERROR_TYPES.get(status, "api_error"), None, anthropic=anthropic,
                           **self._limits())  # fmt: skip
        elif "error" in active:
            reply = _error(500, "The server had an error processing your request.",
                           "server_error" if not anthropic else "api_error", None,
                           anthropic=anthropic)  # fmt: skip
        elif limited and self._count(_digest(_canonical(body))) == 1:
            wait: dict[str, str] = {"Retry-After": "1"}
            if "httpdate" in limited:
                wait = {"Retry-After": "Tue, 01 Dec 2026 12:00:02 GMT",
                        "Date": "Tue, 01 Dec 2026 12:00:00 GMT"}  # fmt: skip
            elif "retryms" in limited:
                wait = {"retry-after-ms": "1500"}
            limits = {**self._limits(), "x-ratelimit-remaining-requests": "0"}
            reply = _error(429, "Rate limit reached for requests. Please retry after 1s.",
                           "rate_limit_error", "rate_limit_exceeded", anthropic=anthropic,
                           **limits, **wait)  # fmt: skip
        elif "malformed" in active:
            reply = Reply(200, {"Content-Type": "application/json"}, MALFORMED_BODY)
        else:
            reply = self._answer(body, base, active, anthropic)
        return reply._replace(delay_s=delay)

    def _answer(self, body: dict[str, Any], base: str, active: frozenset[str],
                anthropic: bool) -> Reply:  # fmt: skip
        model = body["model"]
        headers = self._limits()
        if "fallback" in active:
            model = FALLBACK_MODEL
            headers["x-litellm-attempted-fallbacks"] = "1"
        payload = complete(model, body["messages"], body.get("tools"), body.get("max_tokens"))
        if "fallback" in active:
            payload["id"] = f"chatcmpl-{_digest(_canonical(body))[:24]}"
        if "dated" in active:
            payload["model"] = f"{base}{DATED_SUFFIX}"
        message = payload["choices"][0]["message"]
        confidence = _stated(message.get("content"))
        if "refusal" in active:
            message["content"], message["refusal"] = None, "I can't help with that request."
        elif "parts" in active and isinstance(message.get("content"), str):
            message["content"] = [{"type": "text", "text": message["content"]}]
        if body.get("logprobs") and isinstance(message.get("content"), str):
            payload["choices"][0]["logprobs"] = {"content": _logprobs(message["content"],
                                                                      confidence)}  # fmt: skip
        if "nousage" in active:
            payload["usage"] = None
        if anthropic:
            return _messages_reply(payload, body, headers, self.token_s)
        if body.get("stream"):
            options = body.get("stream_options") or {}
            chunks = _chunks(payload, bool(options.get("include_usage")))
            return Reply(200, {"Content-Type": "text/event-stream", **headers}, b"",
                         chunks=chunks, chunk_delay_s=self.token_s)  # fmt: skip
        return _json_reply(200, payload, **headers)

    def _count(self, key: str) -> int:
        with self._lock:
            self._calls[key] = self._calls.get(key, 0) + 1
            return self._calls[key]


def _stated(content: Any) -> float:
    text = content if isinstance(content, str) else ""
    found = re.search(r"confidence: ([01]\.\d+)$", text)
    return float(found.group(1)) if found else 0.5


def _logprobs(text: str, confidence: float) -> list[dict[str, Any]]:
    """One entry per word whose mean log-probability is log(confidence)."""
    words = re.findall(r"\S+\s*", text) or [text]
    mean = math.log(max(confidence, 1e-6))
    spread = [0.1 * ((i % 3) - 1) for i in range(len(words))]
    shift = sum(spread) / len(spread)
    return [{"token": w, "logprob": min(0.0, mean + d - shift), "bytes": list(w.encode()),
             "top_logprobs": []} for w, d in zip(words, spread, strict=True)]  # fmt: skip


def _sse(payload: Any, event: str | None = None) -> bytes:
    head = f"event: {event}\n" if event else ""
    data = payload if isinstance(payload, str) else json.dumps(payload)
    return f"{head}data: {data}\n\n".encode()


def _chunks(payload: dict[str, Any], include_usage: bool) -> tuple[bytes, ...]:
    """A completion as `chat.completion.chunk` events: role, one per word, finish, usage."""
    head = {k: payload[k] for k in ("id", "created", "model")}
    head["object"] = "chat.completion.chunk"
    choice = payload["choices"][0]
    message = choice["message"]

    def chunk(delta: dict[str, Any], finish: str | None = None,
              extra: dict[str, Any] | None = None) -> bytes:  # fmt: skip
        c = {"index": 0, "delta": delta, "finish_reason": finish, **(extra or {})}
        return _sse({**head, "choices": [c]})

    out = [chunk({"role": "assistant", "content": ""})]
    content = message.get("content")
    if isinstance(content, list):
        content = "".join(p.get("text", "") for p in content)
    if isinstance(content, str):
        lps = (choice.get("logprobs") or {}).get("content") or []
        for i, word in enumerate(re.findall(r"\S+\s*", content)):
            extra = {"logprobs": {"content": [lps[i]]}} if i < len(lps) else {}
            out.append(chunk({"content": word}, None, extra))
    if message.get("refusal"):
        out.append(chunk({"refusal": message["refusal"]}))
    for i, call in enumerate(message.get("tool_calls") or []):
        args = call["function"]["arguments"]
        half = len(args) // 2
        out.append(
            chunk(
                {
                    "tool_calls": [
                        {
                            "index": i,
                            "id": call["id"],
                            "type": "function",
                            "function": {
                                "name": call["function"]["name"],
                                "arguments": args[:half],
                            },
                        }
                    ]
                }
            )
        )
        out.append(chunk({"tool_calls": [{"index": i, "function": {"arguments": args[half:]}}]}))
    out.append(chunk({}, choice["finish_reason"]))
    if include_usage:
        out.append(_sse({**head, "choices": [], "usage": payload["usage"]}))
    out.append(_sse("[DONE]"))
    return tuple(out)  # fmt: skip


# --------------------------------------------------------------------------- Anthropic


def _validate_messages(body: Any) -> str | None:
    """Why a Messages API body is invalid, or None."""
    if not isinstance(body, dict):
        return "The request body must be a JSON object."
    if not isinstance(body.get("model"), str) or not body["model"]:
        return "model: Field required"
    max_tokens = body.get("max_tokens")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        return "max_tokens: Field required (a positive integer)"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "messages: at least one message is required"
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ("user", "assistant"):
            return f"messages.{i}.role: must be 'user' or 'assistant'"
        if not isinstance(m.get("content"), str | list):
            return f"messages.{i}.content: must be a string or a list of blocks"
    return None


def _as_chat(body: dict[str, Any]) -> dict[str, Any]:
    """A Messages API body as the chat-completions body `complete` answers."""
    messages: list[dict[str, Any]] = []
    for m in body["messages"]:
        content = m["content"]
        if isinstance(content, str):
            messages.append({"role": m["role"], "content": content})
            continue
        texts = [b.get("text", "") for b in content if b.get("type") == "text"]
        for b in content:
            if b.get("type") == "tool_result":
                result = b.get("content", "")
                messages.append({"role": "tool", "content": _text_of(result)})
        if texts or m["role"] == "assistant":
            messages.append({"role": m["role"], "content": " ".join(texts)})
    tools = [{"type": "function", "function": {"name": t.get("name", ""),
                                               "parameters": t.get("input_schema", {})}}
             for t in body.get("tools") or []]  # fmt: skip
    out = {**body, "messages": messages, "tools": tools or None}
    return out


def _messages_reply(payload: dict[str, Any], body: dict[str, Any], headers: dict[str, str],
                    token_s: float) -> Reply:  # fmt: skip
    """A chat completion as the Messages API's `message` (or its event stream)."""
    choice = payload["choices"][0]
    message = choice["message"]
    blocks: list[dict[str, Any]] = []
    text, _ = message.get("content"), None
    if isinstance(text, list):
        text = "".join(p.get("text", "") for p in text)
    if message.get("refusal"):
        text = message["refusal"]
    if text:
        blocks.append({"type": "text", "text": text})
    for call in message.get("tool_calls") or []:
        blocks.append({"type": "tool_use", "id": "toolu_" + call["id"][5:],
                       "name": call["function"]["name"],
                       "input": json.loads(call["function"]["arguments"])})  # fmt: skip
    stop = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}
    usage = payload["usage"] or {"prompt_tokens": 0, "completion_tokens": 0}
    msg = {"id": "msg_" + payload["id"][9:], "type": "message", "role": "assistant",
           "model": payload["model"], "content": blocks,
           "stop_reason": "refusal" if message.get("refusal") else stop[choice["finish_reason"]],
           "stop_sequence": None,
           "usage": {"input_tokens": usage["prompt_tokens"],
                     "output_tokens": usage["completion_tokens"]}}  # fmt: skip
    headers = {"request-id": "req_" + payload["id"][9:], **{
        k.replace("x-ratelimit", "anthropic-ratelimit"): v for k, v in headers.items()
        if not k.startswith("x-ratelimit-reset")}}  # fmt: skip
    if not body.get("stream"):
        return _json_reply(200, msg, **headers)
    start = {
        **msg,
        "content": [],
        "stop_reason": None,
        "usage": {"input_tokens": msg["usage"]["input_tokens"], "output_tokens": 1},
    }
    events = [_sse({"type": "message_start", "message": start}, "message_start")]
    for i, block in enumerate(blocks):
        empty = {"type": "text", "text": ""} if block["type"] == "text" else {**block, "input": {}}
        events.append(
            _sse(
                {"type": "content_block_start", "index": i, "content_block": empty},
                "content_block_start",
            )
        )
        if block["type"] == "text":
            deltas = [
                {"type": "text_delta", "text": w} for w in re.findall(r"\S+\s*", block["text"])
            ]
        else:
            raw = json.dumps(block["input"])
            deltas = [
                {"type": "input_json_delta", "partial_json": raw[: len(raw) // 2]},
                {"type": "input_json_delta", "partial_json": raw[len(raw) // 2 :]},
            ]
        for d in deltas:
            events.append(
                _sse({"type": "content_block_delta", "index": i, "delta": d}, "content_block_delta")
            )
        events.append(_sse({"type": "content_block_stop", "index": i}, "content_block_stop"))
    events.append(
        _sse(
            {
                "type": "message_delta",
                "delta": {"stop_reason": msg["stop_reason"], "stop_sequence": None},
                "usage": {"output_tokens": msg["usage"]["output_tokens"]},
            },
            "message_delta",
        )
    )
    events.append(_sse({"type": "message_stop"}, "message_stop"))
    return Reply(200, {"Content-Type": "text/event-stream", **headers}, b"",
                 chunks=tuple(events), chunk_delay_s=token_s)  # fmt: skip


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], state: DevState) -> None:
        self.state = state
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 10
    server: _Server

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def _serve(self, method: str) -> None:
        try:
            self._reply(method)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout)
            self.close_connection = True

    def _reply(self, method: str) -> None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0:
            reply = _invalid("Content-Length must be a non-negative integer.")
            self.close_connection = True
        else:
            raw = self.rfile.read(length) if length else b""
            reply = self.server.state.handle(method, self.path, dict(self.headers.items()), raw)
        if reply.delay_s:
            time.sleep(reply.delay_s)
        if reply.reset:
            self.close_connection = True
            return
        self._date = reply.headers.get("Date")
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            if name != "Date":  # sent by send_response (see date_time_string)
                self.send_header(name, value)
        if not reply.chunks:
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body)
            return
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        for i, part in enumerate(reply.chunks):
            if i and reply.chunk_delay_s:
                time.sleep(reply.chunk_delay_s)
            self.wfile.write(f"{len(part):x}\r\n".encode() + part + b"\r\n")
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")

    _date: str | None = None

    def date_time_string(self, timestamp: float | None = None) -> str:
        """The reply's own `Date` when it sets one (a fixed date for `Retry-After` dates)."""
        return self._date or super().date_time_string(timestamp)

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: tests and demos read `DevServer.requests`, not stderr."""


class DevServer:
    """The dev server on a daemon thread; a context manager that starts and stops it.

    Binds `host` (loopback by default) on `port` (0 picks a free port) when started.
    Constructor arguments are those of `DevState`.
    """

    def __init__(
        self,
        *,
        api_key: str | None = None,
        behaviours: Collection[Behaviour] = (),
        slow_s: float = 0.2,
        models: Sequence[str] = DEFAULT_MODELS,
        host: str = "127.0.0.1",
        port: int = 0,
        token_s: float = 0.0,
        hang_s: float = 5.0,
    ) -> None:
        self.state = DevState(api_key=api_key, behaviours=behaviours, slow_s=slow_s,
                              models=models, token_s=token_s, hang_s=hang_s)  # fmt: skip
        self._address = (host, port)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> DevServer:
        """Bind and serve in the background; returns self. Starting twice is an error."""
        if self._server is not None:
            raise RuntimeError("DevServer is already running; call stop() first")
        self._server = _Server(self._address, self.state)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"devserver:{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port; safe to call twice."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> DevServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound port (known once started)."""
        if self._server is None:
            raise RuntimeError("DevServer is not running; use `with DevServer() as srv:`")
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        """The OpenAI base URL, e.g. `http://127.0.0.1:54321/v1`."""
        return f"http://{self._address[0]}:{self.port}/v1"

    @property
    def requests(self) -> list[SeenRequest]:
        """Every request seen so far: (path, headers without Authorization, parsed body)."""
        return self.state.requests


def main(argv: Sequence[str] | None = None) -> int:
    """Serve on a fixed port until Ctrl-C, for recording demos by hand."""
    parser = argparse.ArgumentParser(
        prog="python -m harness.live.devserver",
        description="A loopback OpenAI-compatible chat-completions server.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8089)
    parser.add_argument("--api-key", default=None, help="require 'Authorization: Bearer KEY'")
    parser.add_argument(
        "--behaviour", action="append", choices=BEHAVIOURS, default=[], help="repeatable"
    )
    parser.add_argument("--slow-s", type=float, default=0.2)
    parser.add_argument("--token-s", type=float, default=0.0, help="seconds between stream events")
    args = parser.parse_args(argv)
    server = DevServer(
        api_key=args.api_key,
        behaviours=args.behaviour,
        slow_s=args.slow_s,
        host=args.host,
        port=args.port,
        token_s=args.token_s,
    )
    try:
        server.start()
    except OSError as exc:
        print(
            f"cannot bind {args.host}:{args.port}: {exc.strerror}; try another --port",
            file=sys.stderr,
        )
        return 2
    print(f"serving {server.base_url} (Ctrl-C to stop)", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
