"""The suite: every knob of a scenario, validated, documented and frozen.

Defaults keep small suites short: a suite needs `name`, `models` and a `traffic.mix`;
everything else has a production-like default. Each field's docstring is the reference
documentation users read (`evalx validate` errors point back at these names).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal
from urllib.parse import parse_qsl, urlsplit

from pydantic import AfterValidator, BeforeValidator, Field, field_validator, model_validator

from harness.spec._base import NonNegFloat, PositiveFloat, Probability, Strict
from harness.spec._policy import Policy

# --------------------------------------------------------------------------- traffic


class Spike(Strict):
    """A window during which the arrival rate is multiplied."""

    start_s: NonNegFloat
    """Start of the spike, seconds after the run starts."""
    duration_s: PositiveFloat
    """How long the spike lasts, seconds."""
    multiplier: PositiveFloat = 3.0
    """Arrival rate during the spike, as a multiple of `traffic.rate_per_s`."""


class TaskClass(Strict):
    """One class of requests in the mix (e.g. routine, moderate, hard)."""

    weight: NonNegFloat
    """Relative share of requests (weights are normalised; 0.7/0.2/0.1 is the classic mix)."""
    input_tokens: Annotated[int, Field(ge=1)] = 500
    """Median prompt size in tokens (lognormal around it, see `token_spread`)."""
    output_tokens: Annotated[int, Field(ge=1)] = 200
    """Median answer size in tokens before a model's verbosity factor."""
    token_spread: NonNegFloat = 0.3
    """Lognormal sigma of token counts; 0 makes every request exactly the median."""
    input_spread: NonNegFloat | None = None
    """Lognormal sigma of prompt sizes, when it differs from `token_spread`."""
    output_spread: NonNegFloat | None = None
    """Lognormal sigma of answer sizes, when it differs from `token_spread`."""
    tool_steps: Annotated[int, Field(ge=0)] = 0
    """ReAct steps (think -> tool -> observe) the task needs before the final answer."""
    tools: list[str] = Field(default_factory=list)
    """Tools used by the steps, in order, cycled (names from `tools`); empty uses all tools."""


class EdgeCases(Strict):
    """Share of requests carrying each edge case, drawn independently per request."""

    pii: Probability = 0.0
    """The prompt contains personal data (email, phone, card number)."""
    prompt_injection: Probability = 0.0
    """A tool or retrieval result carries an injected instruction."""
    prohibited_action: Probability = 0.0
    """The user asks for an action the policy prohibits; the correct outcome is `blocked`."""
    high_impact: Probability = 0.0
    """The request needs a high-impact action (refund, deletion): premium tier or a human."""
    prohibited_action_name: str = "delete_account"
    """The action a prohibited request asks for."""
    high_impact_action: str = "refund"
    """The action a high-impact request needs (executed after the answer)."""
    injected_action: str = "delete_account"
    """The action an injected instruction asks the model to take."""
    evasive: Probability = 0.0
    """Share of edge cases written so the shipped detectors miss them: personal data in
    formats the PII detector does not know, requests phrased without the policy's phrases,
    and actions proposed as a call to `evasive_tool` with arguments no rule recognises."""
    evasive_tool: str = "account_admin"
    """The generic tool an evasive action is proposed through (its arguments hide intent);
    with `evasive` above 0 it must be one of `tools` (an agent cannot call what it lacks)."""


class LogColumns(Strict):
    """Which column of the log holds each field evalx knows (unmapped columns become labels)."""

    timestamp: str | None = None
    """Arrival time: ISO 8601 text, epoch seconds or milliseconds. None: arrivals are sampled
    from `traffic.rate_per_s` and `spikes`, and the log gives only the requests, in order."""
    input_tokens: str | None = None
    """Prompt tokens, used as they are for cost and latency."""
    output_tokens: str | None = None
    """Answer tokens, used as they are (times the answering model's verbosity)."""
    task_class: str | None = None
    """Task class; values must be classes of `traffic.mix`."""
    tenant: str | None = None
    """Customer or API key the request came from."""
    session: str | None = None
    """Conversation the request belongs to."""
    text: str | None = None
    """The user's message."""
    id: str | None = None
    """Request id (joins `world.outcomes` rows to requests)."""


class TrafficLog(Strict):
    """A real request log replayed as traffic: arrivals at the logged times."""

    path: str
    """The log file, relative to the suite file."""
    format: Literal["csv", "jsonl", "parquet"] | None = None
    """File format; None: from the suffix (.csv, .jsonl, .parquet)."""
    columns: LogColumns
    """Log column for each evalx field."""
    timestamp_unit: Literal["auto", "s", "ms", "us", "ns"] = "auto"
    """Unit of numeric timestamps; `auto` decides by magnitude (epoch s, ms, us or ns)."""
    sort: bool = False
    """Sort rows by timestamp instead of rejecting a log that goes back in time."""
    speed: PositiveFloat = 1.0
    """Time scaling: 2.0 replays the log twice as fast (twice the load)."""
    start_s: NonNegFloat = 0.0
    """Start of the replayed window, seconds of log time after the first logged request."""
    duration_s: PositiveFloat | None = None
    """Length of the replayed window, seconds of log time; None: to the end of the log."""
    requests: Annotated[int, Field(ge=1)] | None = None
    """Replay only the first N requests of the window."""


class Turns(Strict):
    """How many turns a session has: `geometric` (1, 2, ... with the given mean; a user
    leaves after each turn with chance 1/mean) or `constant` (exactly `mean`)."""

    dist: Literal["geometric", "constant"] = "geometric"
    """Shape of the count: `geometric` or `constant`."""
    mean: Annotated[float, Field(ge=1)] = 4.0
    """Mean turns per session (`constant`: the count, a whole number)."""
    max: Annotated[int, Field(ge=1)] | None = None
    """Cap on turns per session; None = no cap."""

    @model_validator(mode="after")
    def _whole(self) -> Turns:
        if self.dist == "constant" and self.mean != int(self.mean):
            raise ValueError("a constant turn count must be a whole number")
        return self


class Sessions(Strict):
    """Multi-turn conversations, closed loop per session.

    Sessions start as the Poisson process of `rate_per_s` (with its spikes); turn k+1 of a
    session arrives when turn k has its final answer plus a think time, so the turns of one
    session never overlap. `traffic.requests` caps the total number of turns (the last
    session is cut short to meet it). Each turn carries the conversation so far as input.
    """

    turns: Annotated[int, Field(ge=1)] | Turns = Turns()
    """Turns per session: a whole number, or a distribution (`{dist: geometric, mean: 4}`)."""
    think_time: Dist = Field(default_factory=lambda: Dist(p50_ms=20000.0, p99_ms=120000.0))
    """The user's time between an answer and the next turn, milliseconds (any `Dist`)."""
    context_growth: NonNegFloat = 1.0
    """Share of each turn's prompt and answer carried into every later turn's input (1: the
    whole conversation, 0: none)."""
    context_window: Annotated[int, Field(ge=1)] | None = None
    """Input tokens a turn may reach: the carried conversation is cut to its most recent
    tokens so that prompt + carried <= window (a prompt alone is never cut); None = no cap."""
    abandon_after_failure: Probability = 1.0
    """Chance that the user leaves after a turn that did not succeed; its later turns never
    arrive (and have no row)."""


class TenantShare(Strict):
    """A tenant of synthetic traffic: the share of requests it sends."""

    share: PositiveFloat
    """Relative weight; a request's tenant is drawn with probability share / sum of shares."""


class Traffic(Strict):
    """How requests arrive and what they ask for."""

    requests: Annotated[int, Field(ge=1)] = 1000
    """Number of requests in the run (ignored with `file`)."""
    file: str | None = None
    """A JSONL file of real requests (text, task_class, labels, assert), relative to the suite;
    replaces the sampled mix's texts and sets the request count."""
    log: TrafficLog | None = None
    """A request log to replay (arrival times, token counts, classes, ...); fields the log
    lacks come from `mix`. Sets the request count."""
    rate_per_s: PositiveFloat = 10.0
    """Mean arrival rate of the Poisson process outside spikes, requests per second."""
    spikes: list[Spike] = Field(default_factory=list)
    """Windows of raised arrival rate."""
    mix: dict[str, TaskClass]
    """Task classes by name with their weights, sizes and tool steps."""
    edge_cases: EdgeCases = EdgeCases()
    """Rates of policy edge cases."""
    tenants: dict[str, TenantShare] = Field(default_factory=dict)
    """Tenants by name with their shares of the requests (each request draws one); empty =
    no tenants (the `tenant` column is ''). A log's `tenant` column overrides the draw."""
    sessions: Sessions | None = None
    """Multi-turn sessions (closed loop per session); None = every request stands alone.
    With a `log`, sessions come from its `session` column instead (open loop)."""

    @model_validator(mode="after")
    def _weights_positive(self) -> Traffic:
        if not self.mix:
            raise ValueError("mix needs at least one task class")
        if sum(c.weight for c in self.mix.values()) <= 0:
            raise ValueError("mix weights must not all be 0")
        if self.log is not None and self.file is not None:
            raise ValueError("use either `file` (a requests file) or `log` (a request log)")
        if self.sessions is not None and (self.log is not None or self.file is not None):
            raise ValueError("sessions are sampled; a log groups turns by its session column")
        return self


# --------------------------------------------------------------------------- models and tools

_SECRET_PARAMS = ("key", "api_key", "apikey", "token", "access_token", "secret", "password")


def _no_credentials(url: str) -> str:
    """A URL without a user, password or key in it: those would land in cassettes, manifests
    and logs. The message never repeats the URL (it holds the secret)."""
    parts = urlsplit(url)
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise ValueError(
            "the URL holds credentials (user:password@host); remove them and name the "
            "environment variable holding the key with api_key_env"
        )
    if any(name.lower() in _SECRET_PARAMS for name, _ in parse_qsl(parts.query)):
        raise ValueError(
            "the URL holds a key in its query string; remove it and name the environment "
            "variable holding the key with api_key_env"
        )
    return url


Url = Annotated[str, AfterValidator(_no_credentials)]
"""An endpoint URL, refused when it carries credentials."""

CODE_REF = r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$"
"""`module:function`, the form of every reference to user code (factories, tools)."""


class Dist(Strict):
    """A distribution of milliseconds: lognormal through p50 and p99, exponential, constant,
    or empirical (resampled from measured values)."""

    dist: Literal["lognormal", "exponential", "constant", "empirical"] = "lognormal"
    """Shape: `lognormal` (p50_ms and p99_ms), `exponential` (mean_ms), `constant` (p50_ms) or
    `empirical` (values_ms, drawn uniformly with replacement)."""
    p50_ms: NonNegFloat = 800.0
    """Median (lognormal, constant), milliseconds."""
    p99_ms: NonNegFloat = 4000.0
    """99th percentile (lognormal), milliseconds; must exceed p50_ms."""
    mean_ms: PositiveFloat | None = None
    """Mean (exponential), milliseconds; defaults to p50_ms / ln 2."""
    values_ms: list[NonNegFloat] | None = None
    """Measured values (empirical), milliseconds; `evalx fit` writes quantiles of large samples."""

    @model_validator(mode="after")
    def _shape(self) -> Dist:
        if self.dist == "lognormal":
            if self.p50_ms <= 0:
                raise ValueError("p50_ms must be greater than 0 for a lognormal")
            if self.p99_ms <= self.p50_ms:
                raise ValueError("p99_ms must be greater than p50_ms")
        if self.dist == "empirical" and not self.values_ms:
            raise ValueError("an empirical distribution needs values_ms (at least one value)")
        if self.dist != "empirical" and self.values_ms is not None:
            raise ValueError("values_ms is only for dist: empirical")
        return self


_TOKEN_PARTS = ("ttft", "per_output_token", "per_input_token")


class Latency(Dist):
    """Service time of one call, excluding queueing.

    Either one distribution of the whole call (`p50_ms`/`p99_ms`, as any `Dist`), or
    token-aware: time to first token (`ttft`) plus output tokens times `per_output_token`
    plus prompt tokens times `per_input_token` (prefill, optional). Each part is drawn per
    call, so long answers and long prompts move the tail. A plain call's first token is
    taken to arrive with the whole answer (no streaming).
    """

    ttft: Dist | None = None
    """Token-aware: time to first token, milliseconds (prefill excluded if `per_input_token`)."""
    per_output_token: Dist | None = None
    """Token-aware: time per output token (inter-token latency), milliseconds."""
    per_input_token: Dist | None = None
    """Token-aware: prefill time per prompt token, milliseconds (optional)."""

    @property
    def token_aware(self) -> bool:
        """Whether the call time is built from first-token and per-token parts."""
        return self.ttft is not None

    @model_validator(mode="after")
    def _one_form(self) -> Latency:
        parts = [k for k in _TOKEN_PARTS if getattr(self, k) is not None]
        if not parts:
            return self
        whole = sorted(set(self.model_fields_set) - set(_TOKEN_PARTS))
        if whole:
            raise ValueError(
                f"write either the whole call ({', '.join(whole)}) or its token-aware parts "
                f"({', '.join(parts)}), not both"
            )
        if self.ttft is None:
            raise ValueError("token-aware latency needs ttft (time to first token)")
        return self


class Price(Strict):
    """Token prices in US dollars per million tokens."""

    input_per_mtok: NonNegFloat = 0.0
    """Price of a million prompt tokens."""
    output_per_mtok: NonNegFloat = 0.0
    """Price of a million completion tokens."""


class Calibration(Strict):
    """How a model's self-reported confidence relates to being right (Beta distributions)."""

    correct_mean: Probability = 0.8
    """Mean confidence when the answer is right."""
    wrong_mean: Probability = 0.5
    """Mean confidence when the answer is wrong; closer to correct_mean = worse calibration."""
    concentration: PositiveFloat = 8.0
    """Beta concentration (a + b); higher means less overlap between right and wrong."""


class RateLimit(Strict):
    """A token bucket on calls; calls beyond it get HTTP 429 with Retry-After."""

    rps: PositiveFloat
    """Sustained calls per second."""
    burst: Annotated[int, Field(ge=1)] | None = None
    """Bucket size; defaults to one second of calls."""


class Cache(Strict):
    """Prompt caching at the provider: a prompt's prefix seen recently is read from a cache.

    Prefixes are the stack's system prompt (`stack.system_prompt_tokens`, shared by every
    call) and, within a request, the conversation sent before to the same model (each agent-
    loop call resends the previous context). A call reads the longest live prefix; hit rates
    follow from the traffic (shared prefixes, time between calls against `ttl_s`), not from a
    probability. Cached tokens stay in the input tokens (`gen_ai.usage.input_tokens`).
    """

    enabled: bool = True
    """Cache prompt prefixes of this model."""
    cached_input_per_mtok: NonNegFloat | None = None
    """Price of a million cached prompt tokens; None = a tenth of `price.input_per_mtok`."""
    prefill_saving: Probability = 1.0
    """Share of the prefill time (`latency.per_input_token`) saved on a cached token. A model
    with plain (total) latency has no prefill part: caching changes its cost only."""
    min_prefix_tokens: Annotated[int, Field(ge=1)] = 1024
    """Shortest prefix the provider caches (OpenAI and Anthropic: 1024)."""
    ttl_s: PositiveFloat = 300.0
    """A prefix not read or written for this long is evicted (each use renews it)."""


class Model(Strict):
    """A model endpoint: tier, latency, price, quality per task class, calibration, capacity."""

    tier: str
    """Capability tier this model belongs to (a name listed in `stack.tiers`)."""
    provider: Literal["sim", "openai", "anthropic"] = "sim"
    """`sim`: the simulated world; `openai`: any OpenAI-compatible chat-completions server;
    `anthropic`: the Anthropic Messages API (`base_url` e.g. https://api.anthropic.com/v1)."""
    base_url: Url | None = None
    """`openai`: the server's base URL, e.g. http://127.0.0.1:8000/v1 (never with a key in
    it: name the key's environment variable in `api_key_env`)."""
    model: str | None = None
    """`openai`: the model name the server knows (defaults to this model's key)."""
    api_key_env: str | None = None
    """`openai`: environment variable holding the API key (never the key itself)."""
    stream: bool = False
    """Live runs: stream the answer (server-sent events): time to first token and per-token
    timing are measured, usage comes from the stream's last event."""
    logprobs: bool = False
    """Live runs (`openai`): ask for token log-probabilities; an answer's confidence is then
    their geometric mean, else the confidence the model states when asked."""
    replay_latency: Literal["recorded", "model"] = "recorded"
    """`--replay`: latency from the recorded timings, or drawn from `latency` (the world)."""
    latency: Latency = Latency()
    """Service time of one call (excluding queueing)."""
    price: Price = Price()
    """Token prices."""
    quality: dict[str, Probability]
    """Probability of a correct answer per task class; classes not listed use `default_quality`."""
    default_quality: Probability = 0.5
    """Quality for task classes missing from `quality`."""
    calibration: Calibration = Calibration()
    """Confidence model."""
    verbosity: PositiveFloat = 1.0
    """Multiplier on a task's output tokens."""
    capacity: Annotated[int, Field(ge=1)] | None = None
    """Concurrent calls served; further calls wait in a FIFO queue. None = unlimited."""
    rate_limit: RateLimit | None = None
    """Token-bucket rate limit (429 beyond it). None = no limit."""
    malformed_rate: Probability = 0.0
    """Chance a response is unparseable (bad JSON, empty) without any fault injected."""
    error_rate: Probability = 0.0
    """Chance of a spontaneous HTTP 500 without any fault injected."""
    injection_susceptibility: Probability = 0.3
    """Chance the model follows an injected instruction it reads (weaker tiers: higher)."""
    invalid_tool_args_rate: Probability = 0.02
    """Chance a tool call it proposes has schema-invalid arguments."""
    hallucinated_tool_rate: Probability = 0.0
    """Chance a tool call it proposes names a tool that does not exist."""
    pii_leak_rate: Probability = 0.0
    """Chance an answer repeats personal data from its context (e.g. a CRM record)."""
    bill_timeouts: bool = True
    """The provider's billing rule for a call the client gives up on (timeout, cancel): billed
    for what was generated by the cutoff (the prompt once service started, output tokens
    produced so far), as most providers do; false bills such a call nothing."""
    timeout_ms: PositiveFloat | None = None
    """Timeout of a call to this model, milliseconds; None = `stack.timeouts.model_call_ms`."""
    context_window: Annotated[int, Field(ge=1)] | None = None
    """Input tokens a call may carry; longer prompts meet `on_context_exceed`. None = no limit
    (a `context_limit` fault is the windowed version)."""
    on_context_exceed: Literal["error", "truncate"] = "error"
    """`error`: HTTP 400 at once; `truncate`: the input is cut to the window (billed as such)
    and the chance of a right answer scales by context_window / input tokens."""
    cache: Cache | None = None
    """Prompt caching (see `Cache`); None = every prompt token is billed and prefilled."""
    tool_loop_rate: Probability = 0.0
    """Chance per request that, its planned tool steps done, the model keeps proposing the
    same tool call (same arguments) instead of answering; a request without tool steps never
    loops. The stack's `budgets.stop_on_repeat` or `budgets.max_steps` ends the loop."""


class Tool(Strict):
    """A tool or retrieval store the agent calls during ReAct steps."""

    kind: Literal["tool", "retrieval"] = "tool"
    """`retrieval` calls can be degraded (empty or stale results) by faults."""
    function: Annotated[str, Field(pattern=CODE_REF)] | None = None
    """Live runs: a Python callable `module:function(args: dict) -> dict | str` (user code:
    imported by `evalx validate` and `run`, refused by `--safe`)."""
    endpoint: Url | None = None
    """Live runs: an HTTP endpoint; arguments are POSTed as JSON."""
    description: str = ""
    """Live runs: what the tool does, sent to the model with its `args_schema` (default: name)."""
    latency: Latency = Latency(p50_ms=150.0, p99_ms=900.0)
    """Service time of one call."""
    error_rate: Probability = 0.0
    """Chance of an error on any call without a fault injected."""
    capacity: Annotated[int, Field(ge=1)] | None = None
    """Concurrent calls served; None = unlimited."""
    rate_limit: RateLimit | None = None
    """Token-bucket rate limit; None = no limit."""
    result_tokens: Annotated[int, Field(ge=0)] = 300
    """Tokens a result adds to the agent's context (input of the next model call)."""
    args_schema: dict[str, Any] | None = None
    """JSON Schema of the arguments; the policy validates proposed calls against it."""
    args_example: dict[str, Any] = Field(default_factory=dict)
    """Valid arguments a model proposes (the world mutates them for invalid calls)."""
    returns_pii: bool = False
    """Results carry customer personal data (name, email, phone) a model may leak."""
    timeout_ms: PositiveFloat | None = None
    """Timeout of a call to this tool, milliseconds; None = `stack.timeouts.tool_call_ms`."""

    @field_validator("args_schema")
    @classmethod
    def _schema(cls, schema: dict[str, Any] | None) -> dict[str, Any] | None:
        from harness.guardrails import schema_problem

        problem = schema_problem(schema) if schema is not None else None
        if problem is not None:
            raise ValueError(problem)
        return schema

    @model_validator(mode="after")
    def _whole_call(self) -> Tool:
        if self.latency.token_aware:
            raise ValueError("a tool's latency is one distribution of the whole call (no ttft)")
        return self


# --------------------------------------------------------------------------- faults

FaultKind = Literal[
    "latency",
    "outage",
    "timeout",
    "http_error",
    "rate_limit",
    "malformed",
    "slow_first_token",
    "flaky_tool",
    "degraded_retrieval",
    "quality_drop",
    "price_change",
    "context_limit",
]
DRIFT_KINDS = frozenset({"quality_drop", "price_change", "context_limit"})
"""Fault kinds that change what a model is (quality, price, context window): a model or a
tier is their only target."""


class Fault(Strict):
    """A scheduled fault window on a target, rolled per call with `probability`."""

    kind: FaultKind
    """What goes wrong (after toxiproxy, Envoy fault filters and Chaos Mesh)."""
    target: str
    """A model name, a tier name, a tool name, or `retrieval` (every retrieval tool)."""
    start_s: NonNegFloat = 0.0
    """Start of the window, seconds after the run starts."""
    duration_s: PositiveFloat = 1e12
    """Length of the window, seconds (default: the whole run)."""
    probability: Probability = 1.0
    """Chance each call in the window is affected."""
    name: str | None = None
    """Label used in the `phase` column; defaults to `<kind>:<target>`."""
    add_ms: NonNegFloat = 0.0
    """`latency`, `slow_first_token`: milliseconds added to the call."""
    jitter_ms: NonNegFloat = 0.0
    """`latency`: extra uniform 0..jitter_ms added on top of add_ms."""
    status: Annotated[int, Field(ge=400, le=599)] = 503
    """`http_error`: HTTP status returned."""
    retry_after_s: NonNegFloat = 1.0
    """`rate_limit`: Retry-After the 429 carries, seconds."""
    quality_penalty: Probability = 0.5
    """`degraded_retrieval`: fraction of answer quality lost with empty or stale context."""
    amount: Probability = 0.2
    """`quality_drop`: absolute fall in the chance of a right answer (q -> max(0, q - amount));
    with an outcome table, a right answer turns wrong with this chance."""
    factor: PositiveFloat = 2.0
    """`price_change`: multiplier on the model's input and output prices (cost only)."""
    max_tokens: Annotated[int, Field(ge=1)] | None = None
    """`context_limit` (required): the model's context window, input tokens."""
    on_exceed: Literal["error", "truncate"] = "error"
    """`context_limit`: a longer prompt fails with HTTP 400 at once (`error`), or is cut to
    max_tokens (`truncate`: billed max_tokens, chance of a right answer x max_tokens/input)."""

    @model_validator(mode="after")
    def _context_limit_has_a_window(self) -> Fault:
        if self.kind == "context_limit" and self.max_tokens is None:
            raise ValueError("a context_limit fault needs max_tokens (the context window)")
        return self

    @property
    def label(self) -> str:
        """Name shown in the `phase` column."""
        return self.name or f"{self.kind}:{self.target}"


# --------------------------------------------------------------------------- stack


class Classifier(Strict):
    """The router's task classifier, run on a cheap model before routing."""

    enabled: bool = True
    """Off: no classifier call; every request takes the first route in `routes`."""
    model: str | None = None
    """Model that classifies; defaults to the first model of the lowest tier."""
    accuracy: Probability = 0.9
    """Chance the predicted class is the true one."""
    input_tokens: Annotated[int, Field(ge=1)] = 200
    """Prompt tokens of a classification call."""
    output_tokens: Annotated[int, Field(ge=1)] = 5
    """Completion tokens of a classification call."""
    min_confidence: Probability = 0.6
    """Below this classifier confidence the request starts one tier higher."""


class Route(Strict):
    """A routing decision: which tier starts, and its retry cap."""

    tier: str
    """Tier whose models are tried first."""
    max_retries: Annotated[int, Field(ge=0)] = 2
    """Retries per model call on this route (the per-route cap)."""
    system_prompt: str = ""
    """Live runs: the system prompt of this route's model calls (the driver appends its request
    for a stated confidence)."""
    on_degraded_retrieval: Literal["caveat", "handoff", "escalate"] = "caveat"
    """When retrieval comes back empty or stale: answer anyway with a caveat (lower chance
    of being right), hand the request to a human, or move up a tier and answer there."""


class Escalation(Strict):
    """When a request moves up a tier."""

    confidence_threshold: Probability = 0.6
    """An answer with lower confidence is discarded and the next tier asked."""
    high_impact_route: str | None = "escalation"
    """Route for requests carrying a high-impact action (None: route by class). Default:
    `escalation` if there is such a route, else the first route starting at the strongest
    tier any route starts at."""


class Retry(Strict):
    """Retries with full-jitter exponential backoff (delay = U * min(cap, base * 2^k))."""

    base_ms: PositiveFloat = 200.0
    """First backoff scale, milliseconds."""
    cap_ms: PositiveFloat = 5000.0
    """Largest backoff scale, milliseconds."""
    respect_retry_after: bool = True
    """Wait at least a 429's Retry-After before retrying."""


class RetryBudget(Strict):
    """Caps retries to a share of traffic so retries cannot amplify an outage (Finagle style)."""

    ratio: NonNegFloat = 0.2
    """Retries allowed per request started in the window."""
    min_per_s: NonNegFloat = 5.0
    """Retries per second always allowed, whatever the traffic."""
    window_s: PositiveFloat = 10.0
    """Sliding window, seconds."""


class Breaker(Strict):
    """A circuit breaker per model and per tool, with resilience4j semantics."""

    enabled: bool = True
    """Off: every call goes through."""
    window_type: Literal["count", "time"] = "count"
    """Sliding window over the last N calls (`count`) or N seconds (`time`)."""
    window_size: Annotated[int, Field(ge=1)] = 20
    """N, calls or seconds."""
    minimum_calls: Annotated[int, Field(ge=1)] = 10
    """Calls recorded before rates are evaluated."""
    failure_rate_threshold: Annotated[float, Field(gt=0, le=100)] = 50.0
    """Percent of failed calls that opens the breaker."""
    slow_call_rate_threshold: Annotated[float, Field(gt=0, le=100)] = 100.0
    """Percent of slow calls that opens the breaker."""
    slow_call_ms: PositiveFloat = 10000.0
    """A call at least this long is slow, milliseconds."""
    wait_open_s: PositiveFloat = 30.0
    """Time open before trial calls are let through, seconds."""
    half_open_calls: Annotated[int, Field(ge=1)] = 3
    """Trial calls in half-open state."""


class Timeouts(Strict):
    """Per-call timeouts and the request deadline."""

    model_call_ms: PositiveFloat = 15000.0
    """Timeout of one model call, including its queueing time, milliseconds."""
    tool_call_ms: PositiveFloat = 5000.0
    """Timeout of one tool call, milliseconds."""
    request_deadline_ms: PositiveFloat = 60000.0
    """Deadline for the whole request; no call outlives it, milliseconds."""


class Budgets(Strict):
    """Economic controls."""

    request_tokens: Annotated[int, Field(ge=1)] | None = 50000
    """Tokens (input + output) one request may spend; None = unlimited."""
    step_output_tokens: Annotated[int, Field(ge=1)] | None = 4000
    """max_tokens of each call; an answer cut short fails with budget_exhausted."""
    max_steps: Annotated[int, Field(ge=0)] = 8
    """Cap on ReAct tool steps; more needed ends the request with budget_exhausted."""
    stop_on_repeat: bool = True
    """Planner stop condition: a proposed tool call identical (tool and arguments) to the one
    just run makes no progress; it is not run and the loop ends as `on_repeat` says."""
    on_repeat: Literal["answer", "budget_exhausted"] = "answer"
    """`answer`: ask the same model to answer without tools (purpose `answer`);
    `budget_exhausted`: end the request."""
    session_tokens: Annotated[int, Field(ge=1)] | None = None
    """Tokens (input + output) one session may spend over its turns, as the stack counts
    them; a call that could exceed it ends the turn with budget_exhausted. None = unlimited."""
    session_usd: NonNegFloat | None = None
    """Spend one session may reach, priced by the stack from the models' list prices; a call
    that could exceed it ends the turn with budget_exhausted. None = unlimited."""


_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}

_Duration = PositiveFloat | Annotated[str, Field(pattern=r"^\s*\d+(\.\d*)?\s*[smhd]\s*$")]
"""What a duration field accepts as written (for the JSON Schema): seconds, or `30m` etc."""


def _seconds(value: Any) -> Any:
    """`90`, `"90s"`, `"30m"`, `"1h"`, `"1d"` -> seconds; anything else is left to pydantic."""
    if isinstance(value, str):
        v = value.strip()
        if v and v[-1] in _UNITS:
            try:
                return float(v[:-1]) * _UNITS[v[-1]]
            except ValueError:
                pass
    return value


class TenantBudget(Strict):
    """A spend budget with a reset period: at most `usd` per calendar window of `per`."""

    usd: NonNegFloat
    """Spend allowed per window, USD, as the stack prices the tokens it observes."""
    per: Annotated[PositiveFloat, BeforeValidator(_seconds, json_schema_input_type=_Duration)]
    """Window length: seconds, or a string with a unit (`90s`, `30m`, `1h`, `1d`); windows
    start at t = 0 and the spend resets at each boundary."""


class TenantLimits(Strict):
    """A gateway's limits on one tenant (one key); see `harness.stack._tenants`."""

    rpm: Annotated[int, Field(ge=1)] | None = None
    """Requests per minute (a token bucket of `rpm` that refills `rpm / 60` per second);
    None = unlimited."""
    tpm: Annotated[int, Field(ge=1)] | None = None
    """Tokens per minute, charged with the input + output tokens of the tenant's model calls
    as they come back; a request is admitted while the bucket holds a token. None = unlimited."""
    budget: TenantBudget | None = None
    """Spend budget with a reset period; None = unlimited."""
    on_exceed: Literal["reject", "downgrade", "queue"] = "reject"
    """What a request over a limit gets: `reject` (outcome `error`, route `tenant_limit`, like
    a 429), `downgrade` (served by the cheapest tier only, never escalated) or `queue` (waits
    until the limit admits it; past the request deadline it ends with `timeout`)."""


DEFAULT_TIERS = ("fast", "balanced", "premium")
"""The tiers of a suite that does not write `stack.tiers`: those of these its models use."""

DEFAULT_CLASS_ROUTES = {"routine": "routine", "moderate": "reasoning", "hard": "reasoning"}
"""Default `stack.class_routes`, kept to the classes of the mix and the routes that exist."""


def default_routes(tiers: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The routes of a suite that does not write `stack.routes`, from its tiers: `routine`
    starts at the lowest tier, `reasoning` at the next one up (the lowest when there is only
    one), `escalation` at the highest, with one retry. No tiers, no routes."""
    if not tiers:
        return {}
    return {
        "routine": {"tier": tiers[0]},
        "reasoning": {"tier": tiers[min(1, len(tiers) - 1)]},
        "escalation": {"tier": tiers[-1], "max_retries": 1},
    }


class Stack(Strict):
    """The reference routing stack's configuration."""

    tiers: list[str] = Field(default_factory=lambda: list(DEFAULT_TIERS))
    """Capability tiers from cheapest to strongest; escalation walks up this list. Default:
    those of fast, balanced, premium that the models use."""
    classifier: Classifier = Classifier()
    """Task classifier."""
    routes: dict[str, Route] = Field(
        default_factory=lambda: {k: Route(**v) for k, v in default_routes(DEFAULT_TIERS).items()}
    )
    """Routes by name. Default (from `tiers`): `routine` at the lowest tier, `reasoning` at the
    next one up, `escalation` at the highest (one retry)."""
    class_routes: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_CLASS_ROUTES))
    """Route for each task class; classes not listed take the first route. Default: routine ->
    routine, moderate and hard -> reasoning, for those classes and routes the suite has."""
    escalation: Escalation = Escalation()
    """Escalation rules."""
    retry: Retry = Retry()
    """Backoff between retries."""
    retry_budget: RetryBudget | None = RetryBudget()
    """Shared retry budget; None = unlimited retries (up to each route's cap)."""
    breaker: Breaker = Breaker()
    """Circuit breaker per model."""
    timeouts: Timeouts = Timeouts()
    """Timeouts and deadline."""
    budgets: Budgets = Budgets()
    """Token budgets and step cap."""
    system_prompt_tokens: Annotated[int, Field(ge=0)] = 0
    """Tokens of the system prompt every model call carries (counted in its input tokens);
    a prefix a model's `cache` can hold."""
    factory: Annotated[str, Field(pattern=CODE_REF)] | None = None
    """Your own stack: `module:function` returning an object with `handle(request)` that
    speaks the effect protocol (harness.stack); None runs the reference stack. User code:
    imported and called by `evalx validate` and `run`, refused by `--safe`."""
    factory_path: list[str] = Field(default_factory=lambda: ["."])
    """Directories searched for the factory's module, relative to the suite file."""
    fallback_down: bool = True
    """When every tier above has failed too, fall back to lower tiers (degraded answers)."""
    handoff: bool = True
    """Hand off to a human when every tier failed (otherwise the request errors); who takes
    the request, how fast and at what price is the suite's `handoff`."""
    tenants: dict[str, TenantLimits] = Field(default_factory=dict)
    """Per-tenant gateway limits at admission, by tenant name; `"*"` gives every tenant not
    listed its own limits of that shape (requests without a tenant count as tenant '')."""


# --------------------------------------------------------------------------- sweep


class Handoff(Strict):
    """The human team that takes handed-off requests: a queue like any server, with a price.

    A request handed off (last resort, or a high-impact action awaiting approval) waits
    for a free agent (FIFO), is served for a drawn time and costs `cost_usd`. Humans do not
    time out, and the stack's request deadline does not cut them short: the request ends
    when the human answers, however long the queue.
    """

    capacity: Annotated[int, Field(ge=1)] | None = 4
    """Agents working at once; further cases wait in a FIFO queue. None = unlimited."""
    latency: Dist = Dist(p50_ms=120000.0, p99_ms=900000.0)
    """Time an agent takes on a case (excluding the queue), milliseconds."""
    cost_usd: NonNegFloat = 2.0
    """Cost of one case, US dollars, added to the request's cost."""
    quality: Probability = 0.95
    """Chance the human gets the case right (answers correctly, or approves or refuses the
    action correctly); a case the human gets right counts as a success."""


class SweepSpec(Strict):
    """A grid over suite parameters for `evalx sweep`, and what to optimise."""

    grid: dict[str, list[Any] | str] = Field(default_factory=dict)
    """Dotted parameter -> values: a list, or an inclusive `start:stop:step` range."""
    objective: str = "min cost_per_success_usd"
    """`min` or `max` and a summary metric of route `all`; thresholds are the constraints.
    Cost per success by default: cost per request rewards settings that fail cheaply."""
    confirm: Annotated[int, Field(ge=0)] = 5
    """Best screened settings re-run through the full engine (plus the current setting)."""


# --------------------------------------------------------------------------- world

SUCCESS_RULE = r"^\s*(>=|<=|==|>|<)\s*[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?\s*$"
"""A success condition on a score: an operator and a number, e.g. `>= 1.5`."""


class Outcomes(Strict):
    """Per-prompt outcomes of real models (RouterBench style): correctness from a table."""

    path: str
    """The table (CSV, JSONL or Parquet), relative to the suite file."""
    format: Literal["csv", "jsonl", "parquet"] | None = None
    """File format; None: from the suffix."""
    id: str = "id"
    """Column of the prompt id (matched to a log's `id` column when traffic has one)."""
    model: str = "model"
    """Column of the model name."""
    score: str = "score"
    """Column of the score the success condition reads."""
    task_class: str | None = None
    """Column of the prompt's task class: requests without an id draw rows of their class."""
    success: Annotated[str, Field(pattern=SUCCESS_RULE)] = ">= 0.5"
    """When a score counts as a correct answer: an operator and a number, e.g. `>= 1.5`."""
    models: dict[str, str] = Field(default_factory=dict)
    """Suite model -> model name in the table; models not listed use their own name."""


CORRELATION = 0.58
"""Default `world.correlation`: the tetrachoric (latent) correlation of success between
two models, averaged over the 15 pairs of the 6 models in the AlpacaEval judgments
(fixtures/shared/alpacaeval/judgments.csv, success `preference >= 1.1`, 805 prompts):
per pair, the rho at which a standard bivariate normal cut at the two models' success
rates gives their observed rate of both succeeding. Pairs range 0.31-0.81, mean 0.577.
tests/unit/test_copula.py recomputes it from the data."""


class World(Strict):
    """Where the world's correctness comes from, beyond each model's `quality` numbers."""

    outcomes: Outcomes | None = None
    """A table of per-prompt outcomes; None: parametric quality per task class."""
    correlation: Probability = CORRELATION
    """Parametric quality: latent correlation of correctness between any two models (a
    Gaussian copula). 1 = nested (a stronger model is right whenever a weaker one is), 0 =
    independent; each model's success rate is its quality either way. The default is
    fitted to the AlpacaEval judgments (see `CORRELATION`). Ignored with `outcomes`."""


# --------------------------------------------------------------------------- suite


class Suite(Strict):
    """A scenario: traffic, world (models, tools, faults) and the routing stack under test."""

    name: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")]
    """Suite name; runs go under `runs/<name>/` by default."""
    description: str = ""
    """Free text shown in reports."""
    seed: Annotated[int, Field(ge=0)] = 0
    """Root seed of the world and traffic; same seed => identical records."""
    include: list[str] = Field(default_factory=list)
    """Suite fragments (e.g. written by `evalx fit`) merged under this file, in order: later
    fragments override earlier ones and this file overrides them all."""
    traffic: Traffic
    """Arrivals and request mix."""
    models: dict[str, Model]
    """Model endpoints by name."""
    tools: dict[str, Tool] = Field(default_factory=dict)
    """Tools and retrieval stores by name."""
    faults: list[Fault] = Field(default_factory=list)
    """Scheduled fault windows."""
    world: World = World()
    """How correctness is drawn: correlated across models, or from per-prompt outcomes."""
    stack: Stack = Stack()
    """The routing stack under test."""
    handoff: Handoff = Handoff()
    """The human team behind `stack.handoff`: capacity, service time, cost, quality."""
    policies: Policy = Policy()
    """Governance policy: a policy file (`policies: {file: ...}`) plus inline overrides."""
    thresholds: dict[str, list[str]] | None = None
    """Reserved for service objectives (k6 grammar)."""
    sweep: SweepSpec = SweepSpec()
    """Routing parameters to explore with `evalx sweep`, and what to optimise."""

    @model_validator(mode="before")
    @classmethod
    def _defaults_fit_the_tiers(cls, data: Any) -> Any:
        return fit_defaults(data)


def fit_defaults(data: Any) -> Any:
    """Suite data with the defaults that depend on its tiers, routes and classes filled in.

    Only keys the suite does not write are filled: `stack.tiers` (those of `DEFAULT_TIERS`
    its models use), `stack.routes` (`default_routes`), `stack.class_routes`
    (`DEFAULT_CLASS_ROUTES` kept to the mix's classes and the routes there are),
    `stack.escalation.high_impact_route` (`escalation`, else the first route at the strongest
    tier) and `policies.actions.high_impact_tiers` (the strongest tier). A suite with models on
    all three default tiers and the default classes gets exactly the static defaults, so a
    two-tier suite gets no error about a key it never wrote. `data` is not modified.
    """
    if not isinstance(data, dict):
        return data
    stack, models = data.get("stack", {}), data.get("models")
    if not isinstance(stack, dict) or not isinstance(models, dict):
        return data  # a Stack given whole, or bad input that validation reports
    stack = dict(stack)
    if "tiers" not in stack:
        used = {m.get("tier") if isinstance(m, dict) else getattr(m, "tier", None)
                for m in models.values()}  # fmt: skip
        stack["tiers"] = [t for t in DEFAULT_TIERS if t in used]
    tiers = stack["tiers"]
    if not isinstance(tiers, list) or not all(isinstance(t, str) for t in tiers):
        return data
    routes = stack.setdefault("routes", default_routes(tiers))
    if not isinstance(routes, dict):
        return data
    traffic = data.get("traffic")
    mix = traffic.get("mix") if isinstance(traffic, dict) else getattr(traffic, "mix", None)
    if "class_routes" not in stack and isinstance(mix, dict):
        stack["class_routes"] = {c: r for c, r in DEFAULT_CLASS_ROUTES.items()
                                 if c in mix and r in routes}  # fmt: skip
    escalation = stack.get("escalation", {})
    if isinstance(escalation, dict) and "high_impact_route" not in escalation:
        starts = {name: r.get("tier") if isinstance(r, dict) else getattr(r, "tier", None)
                  for name, r in routes.items()}  # fmt: skip
        ranked = [name for name, t in starts.items() if t in tiers]
        strongest = max(ranked, key=lambda name: tiers.index(starts[name]), default=None)
        chosen = "escalation" if "escalation" in routes else strongest
        stack["escalation"] = {**escalation, "high_impact_route": chosen}
    out = {**data, "stack": stack}
    policies = data.get("policies", {})
    actions = policies.get("actions", {}) if isinstance(policies, dict) else None
    if isinstance(actions, dict) and "high_impact_tiers" not in actions:
        out["policies"] = {**policies, "actions": {**actions, "high_impact_tiers": tiers[-1:]}}
    return out


Path = tuple[str | int, ...]


def reference_problems(suite: Suite) -> list[tuple[Path, str, list[str]]]:
    """Names that point at nothing: (path, message, valid names for a did-you-mean hint).

    Kept outside pydantic so each problem carries its own key path, and so its line.
    """
    tiers = suite.stack.tiers
    out: list[tuple[Path, str, list[str]]] = []
    for name, m in suite.models.items():
        if m.tier not in tiers:
            message = f"unknown tier {m.tier!r} (stack.tiers lists the tiers, cheapest first)"
            out.append((("models", name, "tier"), message, tiers))
        for cls in m.quality:  # a typo would silently leave the class at default_quality
            if cls not in suite.traffic.mix:
                message = f"unknown task class {cls!r} (not in traffic.mix)"
                out.append((("models", name, "quality", cls), message, list(suite.traffic.mix)))
    for i, t in enumerate(tiers):
        if not any(m.tier == t for m in suite.models.values()):
            out.append((("stack", "tiers", i), f"tier {t!r} has no model", []))
    for rname, r in suite.stack.routes.items():
        if r.tier not in tiers:
            out.append((("stack", "routes", rname, "tier"), f"unknown tier {r.tier!r}", tiers))
    routes = list(suite.stack.routes)
    classes = list(suite.traffic.mix)
    for cls, rname in suite.stack.class_routes.items():
        if cls not in suite.traffic.mix:
            out.append((("stack", "class_routes", cls), "unknown task class", classes))
        if rname not in suite.stack.routes:
            out.append((("stack", "class_routes", cls), f"unknown route {rname!r}", routes))
    hir = suite.stack.escalation.high_impact_route
    if hir is not None and hir not in suite.stack.routes:
        out.append((("stack", "escalation", "high_impact_route"), f"unknown route {hir!r}", routes))
    cm = suite.stack.classifier.model
    if cm is not None and cm not in suite.models:
        out.append((("stack", "classifier", "model"), f"unknown model {cm!r}", list(suite.models)))
    for cname, c in suite.traffic.mix.items():
        for j, tool in enumerate(c.tools):
            if tool not in suite.tools:
                out.append(
                    (
                        ("traffic", "mix", cname, "tools", j),
                        f"unknown tool {tool!r}",
                        list(suite.tools),
                    )
                )
        if c.tool_steps and not suite.tools:
            out.append((("traffic", "mix", cname, "tool_steps"), "steps need `tools`", []))
    targets = [*suite.models, *tiers, *suite.tools, "retrieval"]
    model_targets = [*suite.models, *tiers]
    for i, f in enumerate(suite.faults):
        if f.target not in targets:
            out.append((("faults", i, "target"), f"unknown target {f.target!r}", targets))
        elif f.kind in DRIFT_KINDS and f.target not in model_targets:
            msg = f"a {f.kind} fault targets a model or a tier, not {f.target!r}"
            out.append((("faults", i, "target"), msg, model_targets))
    ec = suite.traffic.edge_cases
    if ec.evasive > 0 and ec.evasive_tool not in suite.tools:
        key_ev: Path = ("traffic", "edge_cases", "evasive_tool")
        out.append((key_ev, f"unknown tool {ec.evasive_tool!r} (evasive actions go through it)",
                    list(suite.tools)))  # fmt: skip
    outcomes = suite.world.outcomes
    for name in outcomes.models if outcomes is not None else {}:
        if name not in suite.models:
            where: Path = ("world", "outcomes", "models", name)
            out.append((where, f"unknown model {name!r}", list(suite.models)))
    for j, tier in enumerate(suite.policies.actions.high_impact_tiers):
        if tier not in tiers:
            key: Path = ("policies", "actions", "high_impact_tiers", j)
            out.append((key, f"unknown tier {tier!r}", tiers))
    return out


def advisories(suite: Suite) -> list[tuple[Path, str]]:
    """Settings that are valid but can never act, or act on every call: (path, message).

    `evalx validate` prints them as warnings; they do not stop a run.
    """
    st = suite.stack
    out: list[tuple[Path, str]] = []
    b = st.breaker
    if b.enabled:
        for name, m in suite.models.items():
            timeout = m.timeout_ms if m.timeout_ms is not None else st.timeouts.model_call_ms
            if b.slow_call_ms >= timeout:
                out.append((("stack", "breaker", "slow_call_ms"),
                            f"{b.slow_call_ms:g} ms is not below models.{name}'s timeout "
                            f"({timeout:g} ms): calls time out before they count as slow, so "
                            "slow calls can never open its breaker"))  # fmt: skip
    for name, t in suite.tools.items():
        timeout = t.timeout_ms if t.timeout_ms is not None else st.timeouts.tool_call_ms
        median = t.latency.p50_ms if t.latency.dist != "empirical" else None
        if median is not None and timeout <= median:
            out.append((("tools", name, "latency", "p50_ms"),
                        f"median {median:g} ms is not below the tool's timeout ({timeout:g} ms): "
                        "most calls will time out"))  # fmt: skip
        if t.args_schema is None:
            out.append((("tools", name),
                        "no args_schema: proposed arguments are not validated"))  # fmt: skip
    shares = suite.traffic.tenants
    for name in st.tenants:
        if shares and suite.traffic.log is None and name != "*" and name not in shares:
            out.append((("stack", "tenants", name),
                        f"no tenant {name!r} in traffic.tenants ({', '.join(shares)}): "
                        "these limits never apply"))  # fmt: skip
    return out
