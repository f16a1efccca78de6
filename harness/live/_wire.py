"""What came back from a model endpoint, provider-neutral, and the header rules around it.

Pure functions (bytes and headers in, a `Reply` out, no I/O, no clock): both providers'
parsers (`_openai`, `_anthropic`) fill a `Reply`; the driver turns it into the stack's
`ModelResult` and a span. Everything a real endpoint may send is a recorded outcome here,
never an exception: an unparseable body is `malformed`, an error body is an `error` with
its type and message kept for the span's `detail` column.

Status rules (what a client may rely on):

* 408 and 504 are timeouts (a gateway gave up waiting), retried like a client timeout;
* 429 is `rate_limited`, waited out for `retry-after-ms`, else `Retry-After` (seconds or an
  HTTP date, relative to the response's own `Date` so a replay waits exactly as long),
  else the `x-ratelimit-reset-*` / `anthropic-ratelimit-*-reset` header of the exhausted
  limit;
* any other 4xx is a refusal of the request itself (bad key, unknown model, invalid body):
  an `error` the stack does not retry;
* 5xx (and Anthropic's 529) are errors the stack may retry.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any

from harness.stack._effects import ERROR, MALFORMED, OK, RATE_LIMITED, TIMEOUT

SELF_REPORT = (
    "End your final answer with one last line `confidence: <p>`, where p (0 to 1) is the "
    "probability that your answer is correct."
)
"""The structured self-report the driver asks for when no log-probabilities come back."""

_CONFIDENCE_LINE = re.compile(
    r"(?:^|\n)[ \t*_`]*confidence[ \t*_`]*[:=][ \t*_`]*(\d*\.?\d+)[ \t]*(%?)[ \t*_`.]*\s*$",
    re.IGNORECASE,
)
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_DATED = re.compile(r"^-(\d{4}-\d{2}-\d{2}|\d{8}|\d{4}|v\d[\w.]*|latest)$")
DETAIL_CHARS = 300
"""Error messages are kept to this many characters in the `detail` column."""


@dataclass
class ToolCall:
    """One tool call a model asked for: its id, the tool's name, arguments as JSON text."""

    id: str
    name: str
    arguments: str


@dataclass
class Reply:
    """One model call's result as the driver needs it, whatever the provider."""

    status: str = OK
    http_status: int = 200
    text: str = ""
    refusal: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    input_tokens: int | None = None
    output_tokens: int | None = None
    cached_input_tokens: int = 0
    model: str = ""
    """The model that answered (the response's `model`), '' when the body did not say."""
    gateway_model: str = ""
    """The deployment a gateway says answered (LiteLLM's `x-litellm-model-group`)."""
    finish_reason: str = ""
    logprobs: list[float] | None = None
    """Token log-probabilities of the answer, when the endpoint returned them."""
    output_events: list[int] = field(default_factory=list)
    """Streams: indexes (`sse_events`) of the events that carried output (text, tool calls)."""
    retry_after_s: float = 0.0
    error: str = ""
    """`type: message` of an error body (or what was wrong with the body)."""
    notes: list[str] = field(default_factory=list)
    """Facts for the span's `detail` column (`key=value`)."""


def estimate_tokens(text: str) -> int:
    """Tokens in `text` when the endpoint does not say: 4 characters a token, at least 1."""
    return max(1, math.ceil(len(text) / 4)) if text else 0


def text_of(content: Any) -> tuple[str, str]:
    """(text, refusal) of a message's content: a string, None, or a list of parts
    (`{"type": "text"|"output_text", "text": ...}`, `{"type": "refusal", "refusal": ...}`)."""
    if content is None:
        return "", ""
    if isinstance(content, str):
        return content, ""
    if not isinstance(content, list):
        raise TypeError("message content is neither text, null nor a list of parts")
    texts, refusals = [], []
    for part in content:
        if isinstance(part, str):
            texts.append(part)
        elif isinstance(part, dict):
            if isinstance(part.get("text"), str):
                texts.append(part["text"])
            elif isinstance(part.get("refusal"), str):
                refusals.append(part["refusal"])
    return "".join(texts), "".join(refusals)


def self_report(text: str) -> tuple[str, float | None]:
    """(the answer without its confidence line, the confidence it states or None)."""
    found = _CONFIDENCE_LINE.search(text)
    if found is None:
        return text, None
    value = float(found.group(1))
    if found.group(2) or value > 1.0:
        value /= 100.0
    if not 0.0 <= value <= 1.0:
        return text, None
    return text[: found.start()].rstrip(), value


def logprob_confidence(logprobs: list[float]) -> float:
    """exp(mean token log-probability): the geometric mean probability of the answer's tokens."""
    return math.exp(sum(logprobs) / len(logprobs)) if logprobs else float("nan")


def same_model(asked: str, answered: str) -> bool:
    """Whether `answered` names `asked` (exactly, with a provider prefix, or a dated or
    versioned snapshot of it: gpt-4o-mini -> gpt-4o-mini-2024-07-18)."""
    a, b = asked.rsplit("/", 1)[-1].lower(), answered.rsplit("/", 1)[-1].lower()
    return a == b or (b.startswith(a) and _DATED.match(b[len(a) :]) is not None)


def error_detail(body: bytes) -> str:
    """`type: message` from an OpenAI or Anthropic error body, or the body's start."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return body[:DETAIL_CHARS].decode("utf-8", "replace").strip()
    err = data.get("error") if isinstance(data, dict) else None
    if isinstance(err, dict):
        kind = str(err.get("type") or err.get("code") or "error")
        code = err.get("code")
        if code and str(code) != kind:
            kind += f" ({code})"
        return f"{kind}: {err.get('message', '')}"[:DETAIL_CHARS]
    if isinstance(err, str):
        return err[:DETAIL_CHARS]
    return json.dumps(data)[:DETAIL_CHARS]


def status_of(http_status: int) -> str:
    """The call's status for an HTTP status (see the module docstring)."""
    if http_status in (408, 504):
        return TIMEOUT
    if http_status == 429:
        return RATE_LIMITED
    return ERROR if http_status >= 400 else OK


def duration_s(value: str) -> float | None:
    """A rate-limit reset as OpenAI writes it (`1s`, `6m0s`, `20ms`, `1h2m`), in seconds."""
    parts = _DURATION.findall(value.strip())
    if not parts or "".join(n + u for n, u in parts) != value.strip():
        try:
            return max(0.0, float(value))
        except ValueError:
            return None
    scale = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    return sum(float(n) * scale[u] for n, u in parts)


def _date(value: str) -> datetime | None:
    try:
        return parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        pass
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _until(value: str, headers: Mapping[str, str]) -> float | None:
    """Seconds from the response's `Date` to the date in `value` (None: not a date)."""
    when = _date(value)
    sent = _date(headers.get("date", ""))
    if when is None or sent is None or when.tzinfo is None or sent.tzinfo is None:
        return None
    return max(0.0, (when - sent).total_seconds())


def retry_after(headers: Mapping[str, str]) -> tuple[float, str]:
    """(seconds to wait before retrying, which header said so) for a 429 or 503.

    `retry-after-ms`, then `Retry-After` (seconds or an HTTP date), then the reset of an
    exhausted `x-ratelimit-*` (or `anthropic-ratelimit-*`) limit; (0, '') when none says.
    """
    h = {k.lower(): v for k, v in headers.items()}
    ms = h.get("retry-after-ms")
    if ms is not None:
        try:
            return max(0.0, float(ms) / 1000.0), "retry-after-ms"
        except ValueError:
            pass
    ra = h.get("retry-after")
    if ra is not None:
        try:
            return max(0.0, float(ra)), "retry-after"
        except ValueError:
            until = _until(ra, h)
            if until is not None:
                return until, "retry-after-date"
    waits: list[float] = []
    for prefix in ("x-ratelimit", "anthropic-ratelimit"):
        for what in ("requests", "tokens", "input-tokens", "output-tokens"):
            remaining = h.get(f"{prefix}-remaining-{what}")
            reset = h.get(f"{prefix}-reset-{what}")
            if reset is None or remaining is None or remaining.strip() not in ("0", "0.0"):
                continue
            wait = duration_s(reset) if prefix == "x-ratelimit" else _until(reset, h)
            if wait is not None:
                waits.append(wait)
    if waits:
        return max(waits), "x-ratelimit-reset"
    return 0.0, ""


def rate_limit_note(headers: Mapping[str, str]) -> str:
    """The remaining-request and remaining-token headers, for the span's detail."""
    h = {k.lower(): v for k, v in headers.items()}
    keep = [f"{k.split('-remaining-')[1]}={v}" for k, v in sorted(h.items())
            if "ratelimit-remaining-" in k]  # fmt: skip
    return f"remaining={','.join(keep)}" if keep else ""


def sse_events(body: bytes) -> Iterator[tuple[int, str, str]]:
    """(index, event name, data) of each server-sent event in `body` (name '' when unnamed).

    Index i is the i-th blank-line-terminated block (`event_times` counts the same blocks
    as they arrive); blocks without data (comments, keep-alives) are skipped."""
    text = body.decode("utf-8", "replace").replace("\r\n", "\n")
    for i, block in enumerate(text.split("\n\n")):
        name, data = "", []
        for line in block.split("\n"):
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].lstrip(" "))
        if data:
            yield i, name, "\n".join(data)


def events_in(buffer: bytes) -> int:
    """Complete SSE events (blank-line-terminated blocks) in a stream read so far."""
    return buffer.replace(b"\r\n", b"\n").count(b"\n\n")


def finish(reply: Reply, prompt_text: str) -> Reply:
    """Fill usage the endpoint did not report (estimated from the text, and flagged)."""
    if reply.status != OK:
        return reply
    estimated = False
    if reply.input_tokens is None:
        reply.input_tokens = estimate_tokens(prompt_text)
        estimated = True
    if reply.output_tokens is None:
        calls = "".join(c.name + c.arguments for c in reply.tool_calls)
        reply.output_tokens = estimate_tokens(reply.text + reply.refusal + calls)
        estimated = True
    if estimated:
        reply.notes.append("usage=estimated")
    if reply.refusal:
        reply.notes.append(f"refusal={reply.refusal[:80]}")
    return reply


def malformed(why: str, http_status: int = 200) -> Reply:
    """A body that could not be read as the wire format says."""
    return Reply(MALFORMED, http_status, error=why[:DETAIL_CHARS])


def as_int(value: Any) -> int | None:
    """A token count from a usage block (None when absent, null or not a count)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        return None
    return int(value)


@dataclass
class Step:
    """A tool call the model made and what came of it (the conversation's history)."""

    call: ToolCall
    thought: str = ""
    """Text the model wrote beside the call."""
    result: str | None = None
    """What the tool returned (None: not run yet)."""
    failed: bool = False
    """The call failed or was refused; `result` says why."""


@dataclass
class Prompt:
    """One request to a model, provider-neutral; `_openai.body` and `_anthropic.body` render it."""

    model: str
    system: str
    user: str
    steps: list[Step] = field(default_factory=list)
    tools: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    """(name, description, JSON Schema of the arguments) of each tool on offer."""
    tool_choice: str = "auto"
    """`auto` (the model may call a tool) or `none` (it must answer)."""
    max_tokens: int | None = None
    stream: bool = False
    logprobs: bool = False

    def text(self) -> str:
        """Everything the prompt says, for estimating its tokens."""
        parts = [self.system, self.user]
        for s in self.steps:
            parts += [s.thought, s.call.name, s.call.arguments, s.result or ""]
        return "\n".join(p for p in parts if p)
