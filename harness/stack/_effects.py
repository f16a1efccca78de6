"""The effect protocol between a routing stack and a driver (sans-I/O, like h11).

A stack handles one request as a generator: it yields effects (call a model, call a
tool, wait, record a decision or a check) and receives outcomes. It returns a `Final`.
The simulation driver and the live driver both speak this protocol, and so can a
user's own stack. Outcomes carry `now`, so a stack keeps time without a clock.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import NamedTuple, Protocol

OK = "ok"
ERROR = "error"
TIMEOUT = "timeout"
RATE_LIMITED = "rate_limited"
MALFORMED = "malformed"

OUTCOMES = ("success", "wrong", "timeout", "error", "blocked", "handoff", "budget_exhausted")
"""Request outcomes; `blocked` is a correct refusal and counts as a success."""


class CallModel:
    """Ask model `model` (a suite model name) for a completion."""

    __slots__ = ("degraded", "input_tokens", "max_output_tokens", "model", "purpose", "timeout_s")

    def __init__(
        self,
        model: str,
        purpose: str,
        input_tokens: int,
        timeout_s: float,
        max_output_tokens: int | None = None,
        degraded: bool = False,
    ) -> None:
        self.model = model
        self.purpose = purpose  # "classify" | "step" | "answer"
        self.input_tokens = input_tokens
        self.timeout_s = timeout_s
        self.max_output_tokens = max_output_tokens
        self.degraded = degraded  # context came from empty or stale retrieval


class CallTool:
    """Call tool `tool` (a suite tool name) with arguments the model proposed."""

    __slots__ = ("timeout_s", "tool")

    def __init__(self, tool: str, timeout_s: float) -> None:
        self.tool = tool
        self.timeout_s = timeout_s


class Wait:
    """Let `seconds` pass (a backoff); resumed with a `Tick`."""

    __slots__ = ("reason", "seconds")

    def __init__(self, seconds: float, reason: str = "backoff") -> None:
        self.seconds = seconds
        self.reason = reason


class Note:
    """Record a zero-time step: a routing decision, a policy check, a breaker rejection.

    `kind` is `router`, `policy_check` or `breaker`; a policy check says whether it
    caught something, whether it acted on it, and the violation it let through, if any.
    """

    __slots__ = ("acted", "caught", "detail", "kind", "name", "violation")

    def __init__(
        self,
        kind: str,
        name: str,
        detail: str = "",
        caught: bool = False,
        acted: bool = False,
        violation: str | None = None,
    ) -> None:
        self.kind = kind
        self.name = name
        self.detail = detail
        self.caught = caught
        self.acted = acted
        self.violation = violation


Effect = CallModel | CallTool | Wait | Note


class ModelResult:
    """What came back from a model call (or why nothing useful did).

    Fields not set by the driver keep the class defaults (cheap to create: a result is
    made for every call of a simulation).
    """

    input_tokens = 0
    output_tokens = 0
    correct = False
    confidence = 0.0
    predicted_class: str | None = None
    http_status = 200
    retry_after_s = 0.0
    follows_injection = False  # the model followed an injected instruction it read
    invalid_args = False  # the tool arguments it proposed fail the tool's schema
    truncated = False  # the answer hit max_output_tokens

    def __init__(self, status: str, now: float, latency_s: float) -> None:
        self.status = status
        self.now = now
        self.latency_s = latency_s


class ToolResult:
    """What came back from a tool call."""

    http_status = 200
    degraded = False  # empty or stale retrieval result
    injected = False  # the result carries an injected instruction (untrusted content)
    result_tokens = 0

    def __init__(self, status: str, now: float, latency_s: float) -> None:
        self.status = status
        self.now = now
        self.latency_s = latency_s


class Tick:
    """Resumption after a `Wait` or a `Note`."""

    __slots__ = ("now",)

    def __init__(self, now: float) -> None:
        self.now = now


Outcome = ModelResult | ToolResult | Tick


def _half(j: int) -> float:
    return 0.5


class RequestInfo(NamedTuple):
    """What a stack may know about a request: its content, not the world's dice."""

    request_id: int
    arrival_s: float
    task_class: str
    input_tokens: int
    tool_steps: int
    tools: tuple[str, ...]
    pii: bool = False
    injection: bool = False
    prohibited: bool = False
    high_impact: bool = False
    jitter: Callable[[int], float] = _half
    """Uniform draws for backoff jitter, supplied by the driver (the stack owns no RNG)."""


class Final(NamedTuple):
    """A stack's verdict on a request."""

    outcome: str
    route: str
    served_by: str  # tier that produced the final answer, "human" or ""
    tiers_tried: tuple[str, ...]
    escalated: bool = False
    retries: int = 0
    fallbacks: int = 0
    handoff: bool = False
    confidence: float = float("nan")


Handler = Generator[Effect, Outcome, Final]


class RoutingStack(Protocol):
    """What the drivers need from a stack: one generator per request."""

    def handle(self, request: RequestInfo) -> Handler: ...
