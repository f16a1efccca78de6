"""The effect protocol between a routing stack and a driver (sans-I/O, like h11).

A stack handles one request as a generator: it yields effects (call a model, call a
tool, wait, record a decision or a check) and receives outcomes. It returns a `Final`.
The simulation driver and the live driver both speak this protocol, and so can a
user's own stack. Outcomes carry `now`, so a stack keeps time without a clock.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping
from typing import Any, NamedTuple, Protocol

from mypy_extensions import mypyc_attr

OK = "ok"
ERROR = "error"
TIMEOUT = "timeout"
RATE_LIMITED = "rate_limited"
MALFORMED = "malformed"

_NAN = float("nan")

# Effects and outcomes hold plain values (numbers, strings, tuples, argument dicts) and never
# refer back to anything that refers to them: compiled, they stay off the cycle collector
# (`acyclic`), one object fewer to track per call.

OUTCOMES = ("success", "wrong", "timeout", "error", "blocked", "handoff", "budget_exhausted")
"""Request outcomes; `blocked` is a correct refusal and counts as a success."""


@mypyc_attr(acyclic=True)
class CallModel:
    """Ask model `model` (a suite model name) for a completion."""

    __slots__ = ("degraded", "input_tokens", "max_output_tokens", "model", "prompt", "purpose",
                 "system", "timeout_s", "tool")  # fmt: skip

    def __init__(
        self,
        model: str,
        purpose: str,
        input_tokens: int,
        timeout_s: float,
        max_output_tokens: int | None = None,
        degraded: bool = False,
        prompt: str = "",
        tool: str | None = None,
        system: str = "",
    ) -> None:
        self.model = model
        self.purpose = purpose  # "classify" | "agent" | "repair" | "answer"
        # "agent"/"repair": the model may call a tool or answer; "answer": no tools (the
        # request's tool_choice is none), the model answers from what it has
        self.input_tokens = input_tokens
        self.timeout_s = timeout_s
        self.max_output_tokens = max_output_tokens
        self.degraded = degraded  # context came from empty or stale retrieval
        self.prompt = prompt  # the user's text as this model sees it (after input guardrails)
        self.tool = tool  # step calls: the tool the plan calls next
        self.system = system  # the route's system prompt (live runs send it)


@mypyc_attr(acyclic=True)
class CallTool:
    """Call tool `tool` (an action) with the arguments a model proposed.

    `tier` is the tier whose model proposed the call and `approved` says a human approved
    it: high-impact actions need one or the other.
    """

    __slots__ = ("approved", "args", "tier", "timeout_s", "tool")

    def __init__(
        self,
        tool: str,
        timeout_s: float,
        args: Mapping[str, Any] | None = None,
        tier: str = "",
        approved: bool = False,
    ) -> None:
        self.tool = tool
        self.timeout_s = timeout_s
        self.args = args
        self.tier = tier
        self.approved = approved


@mypyc_attr(acyclic=True)
class Wait:
    """Let `seconds` pass (a backoff); resumed with a `Tick`."""

    __slots__ = ("reason", "seconds")

    def __init__(self, seconds: float, reason: str = "backoff") -> None:
        self.seconds = seconds
        self.reason = reason


@mypyc_attr(acyclic=True)
class Note:
    """Record a zero-time step: a routing decision, a policy check, a breaker rejection.

    `kind` is `router`, `policy_check` or `breaker`. A policy check names the `stage` it
    ran at, the violation kind it `guards` against, whether it `caught` something and
    whether it `acted` (redacted, blocked, refused, handed off). Caught and acted is a
    prevented violation; caught and not acted (enforcement off) is only observed.
    """

    __slots__ = ("acted", "caught", "detail", "guards", "kind", "name", "stage")

    def __init__(
        self,
        kind: str,
        name: str,
        detail: str = "",
        caught: bool = False,
        acted: bool = False,
        guards: str | None = None,
        stage: str = "",
    ) -> None:
        self.kind = kind
        self.name = name
        self.detail = detail
        self.caught = caught
        self.acted = acted
        self.guards = guards
        self.stage = stage


@mypyc_attr(acyclic=True)
class Handoff:
    """Hand the request to a human (`reason`: `last_resort`, `approval`); resumed with a
    `HumanResult` when the human has answered. Humans queue, take their time and cost
    money (the suite's `handoff`); they do not time out, and no deadline cuts them short.
    """

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


Effect = CallModel | CallTool | Wait | Note | Handoff


@mypyc_attr(acyclic=True)
class ModelResult:
    """What came back from a model call (or why nothing useful did).

    Only what a real client gets: whether an answer is *right* is the world's to know, so
    it is not here; a driver judges the answer the stack delivers. Fields not set by the
    driver keep the class defaults (cheap to create: one per call of a simulation).
    """

    input_tokens = 0
    output_tokens = 0
    cached_input_tokens = 0  # of input_tokens, those read from the provider's prompt cache
    confidence = 0.0
    predicted_class: str | None = None
    http_status = 200
    retry_after_s = 0.0
    truncated = False  # the answer hit max_output_tokens
    purpose = ""  # what the call turned out to be: classify, step (a tool call), repair, answer
    model = ""  # the model that answered, echoed by the driver
    text = ""  # the answer's text (answer calls)
    proposed_tool = ""  # a tool the model asks to call next ('' when it answered instead)
    tool_args: Mapping[str, Any] | None = None  # the arguments it proposes for that tool
    proposed_actions: tuple[tuple[str, Mapping[str, Any] | None], ...] = ()
    """Actions (tool calls with effects) the model proposes with its answer or step:
    asked for by the user, or slipped in by an injected instruction: the stack cannot tell
    which, except by what it recognises in the user's text."""

    def __init__(self, status: str, now: float, latency_s: float) -> None:
        self.status = status
        self.now = now
        self.latency_s = latency_s
        self.ttft_s = _NAN  # call start to first token, seconds (NaN: no token, or unknown)


@mypyc_attr(acyclic=True)
class ToolResult:
    """What came back from a tool call."""

    http_status = 200
    degraded = False  # empty or stale retrieval result
    result_tokens = 0
    text = ""  # what the tool returned: untrusted content

    def __init__(self, status: str, now: float, latency_s: float) -> None:
        self.status = status
        self.now = now
        self.latency_s = latency_s


@mypyc_attr(acyclic=True)
class HumanResult:
    """A human has taken the request over and answered: when, after how long (`latency_s`,
    queue included) and how long the case waited for a free agent (`wait_s`). Whether the
    human got it right is the world's to know, as for a model's answer."""

    http_status = 200
    wait_s = 0.0

    def __init__(self, status: str, now: float, latency_s: float) -> None:
        self.status = status
        self.now = now
        self.latency_s = latency_s


@mypyc_attr(acyclic=True)
class Tick:
    """Resumption after a `Wait` or a `Note`."""

    __slots__ = ("now",)

    def __init__(self, now: float) -> None:
        self.now = now


Outcome = ModelResult | ToolResult | HumanResult | Tick


def _half(j: int) -> float:
    return 0.5


class RequestInfo(NamedTuple):
    """What a stack may know about a request: what a real router gets, nothing more.

    Its text, size and metadata. Not its task class (a classifier guesses it), not how
    many tool steps it needs (the model decides), not its edge-case labels (detectors
    guess them): those are ground truth, kept by the driver for scoring.
    """

    request_id: int
    arrival_s: float
    input_tokens: int
    tools: tuple[str, ...] = ()
    """The tools the agent may call (the deployment's toolset, the same for every request)."""
    jitter: Callable[[int], float] = _half
    """Uniform draws for backoff jitter, supplied by the driver (the stack owns no RNG)."""
    text: str = ""
    """The user's message."""
    metadata: Mapping[str, str] = {}
    """What the request carries besides text, e.g. `tenant` from a request log."""


class Final(NamedTuple):
    """A stack's verdict on a request.

    `outcome` "success" means the stack delivered an answer (from tier `served_by`); the
    driver judges it and records success or wrong (the simulation by the world's ground
    truth, a live run by the request's assertions). "blocked" is a refusal, judged too.
    """

    outcome: str
    route: str
    served_by: str  # tier that produced the final answer, "human" or ""
    tiers_tried: tuple[str, ...]
    escalated: bool = False
    retries: int = 0
    fallbacks: int = 0
    handoff: bool = False
    confidence: float = float("nan")
    prompt: str = ""  # the user's text as the stack kept it (after input redaction)
    answer: str = ""  # the answer as it left the stack (after output redaction)


Handler = Generator[Effect, Outcome, Final]


class RoutingStack(Protocol):
    """What the drivers need from a stack: one generator per request.

    A stack may also offer `prepare_texts(texts: Sequence[str]) -> None`: the simulation
    driver then hands it, in batches before the requests that carry them, the texts it
    will see (messages; answers that leak nothing), to work on ahead (the reference stack
    scans them for personal data). Optional: a stack without it sees the same requests.
    """

    def handle(self, request: RequestInfo) -> Handler: ...
