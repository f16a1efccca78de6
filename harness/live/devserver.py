"""A loopback OpenAI-compatible chat-completions server for demos and tests.

It speaks the real wire format (`POST /v1/chat/completions`, `GET /v1/models`, OpenAI
error bodies, `Retry-After`), so a live driver can be exercised end to end without a
network or a key. Only the standard library is used.

What a caller may rely on:

* Answers are deterministic in the request: the same body always gets the same
  response bytes (fixed `created`, `id` hashed from model, messages and tools). The
  answer text echoes a keyword of the last user message and ends with a line
  `confidence: 0.83`, derived from a hash of (model, last user message) and a
  per-model quality bias: names containing "large" or "premium" score higher,
  "small"/"mini"/"tiny" lower.
* Faults are switched per server (`behaviours=`) or per request by a model-name suffix,
  so a test can trigger them without touching the server:

  ========================  ====================================================
  ``-ratelimited``          429 + ``Retry-After: 1`` on the first call of each
                            distinct body, 200 on the retry
  ``-error``                500 with an OpenAI error body
  ``-malformed``            200 with the truncated body ``{"choices": [``
  ``-slow``                 sleeps ``slow_s`` seconds before answering
  ========================  ====================================================

  The suffixes are stripped before the answer is derived, so ``dev-large-slow``
  answers exactly as ``dev-large`` does (the response's ``model`` echoes the request).
* With `tools` in the request and "lookup" in the last user message, the answer is a
  `tool_calls` message calling the first tool.

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
    "DEFAULT_MODELS",
    "Behaviour",
    "DevServer",
    "DevState",
    "Reply",
    "SeenRequest",
    "approx_tokens",
    "complete",
    "main",
]

Behaviour = Literal["ratelimited", "error", "malformed", "slow"]
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
    """One HTTP response, decided but not yet sent; `delay_s` is slept before sending."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    delay_s: float = 0.0

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


def _behaviours_in(model: str) -> tuple[str, frozenset[Behaviour]]:
    """Split a model name into its base name and the behaviours its suffixes ask for."""
    found: set[Behaviour] = set()
    base = model
    for b in BEHAVIOURS:
        marker = f"-{b}"
        if marker in base:
            found.add(b)
            base = base.replace(marker, "")
    return base, frozenset(found)


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
    key = _digest(base, last)
    kw = _keyword(last)

    message: dict[str, Any]
    if tools and "lookup" in last.lower():
        name = str(tools[0].get("function", {}).get("name", "lookup"))
        arguments = json.dumps({"query": kw})
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


def _error(status: int, message: str, type_: str, code: str | None, **headers: str) -> Reply:
    body = {"error": {"message": message, "type": type_, "param": None, "code": code}}
    return _json_reply(status, body, **headers)


def _invalid(message: str) -> Reply:
    return _error(400, message, "invalid_request_error", None)


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
    ) -> None:
        unknown = sorted(set(behaviours) - set(BEHAVIOURS))
        if unknown:
            raise ValueError(f"unknown behaviour(s) {unknown}; choose from {list(BEHAVIOURS)}")
        if slow_s < 0:
            raise ValueError(f"slow_s must be >= 0 seconds, got {slow_s}")
        self.api_key = api_key
        self.behaviours = frozenset(behaviours)
        self.slow_s = slow_s
        self.models = tuple(models)
        self._lock = threading.Lock()
        self._seen: list[SeenRequest] = []
        self._calls: dict[str, int] = {}

    @property
    def requests(self) -> list[SeenRequest]:
        """A copy of every request seen so far, in arrival order."""
        with self._lock:
            return list(self._seen)

    def handle(self, method: str, path: str, headers: Mapping[str, str], raw: bytes) -> Reply:
        """Decide the reply to one request."""
        path = path.split("?", 1)[0]
        lowered = {k.lower(): v for k, v in headers.items()}
        auth = lowered.pop("authorization", None)
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = None
        with self._lock:
            self._seen.append(SeenRequest(path, lowered, body))

        if self.api_key is not None and auth != f"Bearer {self.api_key}":
            return _error(
                401,
                "Incorrect API key provided. Pass it as 'Authorization: Bearer <key>'.",
                "invalid_request_error",
                "invalid_api_key",
            )
        if (method, path) == ("GET", "/v1/models"):
            return self._models()
        if (method, path) == ("POST", "/v1/chat/completions"):
            if raw and body is None:
                return _invalid("We could not parse the JSON body of your request.")
            problem = _validate(body)
            return _invalid(problem) if problem else self._chat(body)
        return _error(404, f"Unknown request URL: {method} {path}.", "invalid_request_error", None)

    def _models(self) -> Reply:
        data = [
            {"id": m, "object": "model", "created": CREATED, "owned_by": "evalx-devserver"}
            for m in self.models
        ]
        return _json_reply(200, {"object": "list", "data": data})

    def _chat(self, body: dict[str, Any]) -> Reply:
        _, asked = _behaviours_in(body["model"])
        active = self.behaviours | asked
        delay = self.slow_s if "slow" in active else 0.0

        if "error" in active:
            reply = _error(
                500, "The server had an error processing your request.", "server_error", None
            )
        elif "ratelimited" in active and self._count(_digest(_canonical(body))) == 1:
            reply = _error(
                429,
                "Rate limit reached for requests. Please retry after 1s.",
                "rate_limit_error",
                "rate_limit_exceeded",
                **{"Retry-After": "1"},
            )
        elif "malformed" in active:
            reply = Reply(200, {"Content-Type": "application/json"}, MALFORMED_BODY)
        else:
            payload = complete(
                body["model"], body["messages"], body.get("tools"), body.get("max_tokens")
            )
            reply = _json_reply(200, payload)
        return reply._replace(delay_s=delay)

    def _count(self, key: str) -> int:
        with self._lock:
            self._calls[key] = self._calls.get(key, 0) + 1
            return self._calls[key]


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
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        self.wfile.write(reply.body)

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
    ) -> None:
        self.state = DevState(api_key=api_key, behaviours=behaviours, slow_s=slow_s, models=models)
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
    args = parser.parse_args(argv)
    server = DevServer(
        api_key=args.api_key,
        behaviours=args.behaviour,
        slow_s=args.slow_s,
        host=args.host,
        port=args.port,
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
