"""The reference routing stack: the control plane the suite configures.

Per request: input guardrails -> classifier on the cheapest tier -> route by class,
classifier confidence and impact -> ReAct tool steps -> answer, escalating a tier on
low confidence -> output guardrails. Every model call goes through the model's circuit
breaker, retries with full-jitter backoff under a per-route cap and a shared retry
budget, and falls back to the next model of the tier, then the next tier, then a human.

Sans-I/O: this module reads no clock and no random generator; `now` comes from outcomes
and jitter from `RequestInfo.jitter`, both supplied by the driver.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Generator

from harness.spec import Suite
from harness.stack._breaker import BreakerConfig, CircuitBreaker
from harness.stack._effects import (
    OK,
    RATE_LIMITED,
    TIMEOUT,
    CallModel,
    CallTool,
    Effect,
    Final,
    ModelResult,
    Note,
    Outcome,
    RequestInfo,
    ToolResult,
    Wait,
)


class RetryBudget:
    """Retries allowed in a sliding window: max(min_per_s * window, ratio * requests)."""

    __slots__ = ("_requests", "_retries", "min_retries", "ratio", "window_s")

    def __init__(self, ratio: float, min_per_s: float, window_s: float) -> None:
        self.ratio = ratio
        self.window_s = window_s
        self.min_retries = min_per_s * window_s
        self._requests: deque[float] = deque()
        self._retries: deque[float] = deque()

    def on_request(self, now: float) -> None:
        """Count a request started at `now` (each one earns `ratio` retries)."""
        self._requests.append(now)

    def try_withdraw(self, now: float) -> bool:
        """Take one retry if the window still allows it."""
        cutoff = now - self.window_s
        for q in (self._requests, self._retries):
            while q and q[0] <= cutoff:
                q.popleft()
        if len(self._retries) + 1 > max(self.min_retries, self.ratio * len(self._requests)):
            return False
        self._retries.append(now)
        return True


class _Request:
    """Mutable bookkeeping of one request inside the stack."""

    __slots__ = (
        "deadline",
        "escalated",
        "fallbacks",
        "jitter",
        "now",
        "retries",
        "tiers",
        "tokens",
    )

    def __init__(self, now: float, deadline: float, jitter: Callable[[int], float]) -> None:
        self.now = now
        self.jitter = jitter
        self.deadline = deadline
        self.tokens = 0
        self.retries = 0
        self.fallbacks = 0
        self.escalated = False
        self.tiers: list[str] = []


class ReferenceStack:
    """The configurable reference control plane. One instance serves a whole run."""

    def __init__(self, suite: Suite) -> None:
        st = suite.stack
        self.suite = suite
        self.cfg = st
        self.tiers = list(st.tiers)
        self.tier_models = {
            t: [n for n, m in suite.models.items() if m.tier == t] for t in st.tiers
        }
        self.classifier = st.classifier.model or self.tier_models[st.tiers[0]][0]
        self.class_names = list(suite.traffic.mix)
        self.default_route = next(iter(st.routes))
        b = st.breaker
        self.breakers: dict[str, CircuitBreaker] = {}
        if b.enabled:
            conf = BreakerConfig(
                window_type=b.window_type,
                window_size=b.window_size,
                minimum_calls=b.minimum_calls,
                failure_rate_threshold=b.failure_rate_threshold,
                slow_call_rate_threshold=b.slow_call_rate_threshold,
                slow_call_duration_s=b.slow_call_ms / 1000.0,
                wait_open_s=b.wait_open_s,
                half_open_calls=b.half_open_calls,
            )
            self.breakers = {name: CircuitBreaker(conf, name) for name in suite.models}
        rb = st.retry_budget
        self.budget = RetryBudget(rb.ratio, rb.min_per_s, rb.window_s) if rb else None
        self.model_timeout = st.timeouts.model_call_ms / 1000.0
        self.tool_timeout = st.timeouts.tool_call_ms / 1000.0
        self.deadline_s = st.timeouts.request_deadline_ms / 1000.0
        self.request_tokens = st.budgets.request_tokens
        self.step_tokens = st.budgets.step_output_tokens
        g = st.guardrails
        self.enforce = g.enforce
        self.high_impact_tiers = frozenset(g.high_impact_tiers)

    # ------------------------------------------------------------------ the request

    def handle(self, request: RequestInfo) -> Generator[Effect, Outcome, Final]:
        """Serve one request; see the module docstring for the path it takes."""
        r = _Request(request.arrival_s, request.arrival_s + self.deadline_s, request.jitter)
        if self.budget is not None:
            self.budget.on_request(r.now)
        g, enforce = self.cfg.guardrails, self.enforce
        violations_possible = False
        if request.pii:
            acted = enforce and g.pii_redaction
            yield Note(
                "policy_check", "pii_redaction", "input", True, acted, None if acted else "pii_leak"
            )
        if request.prohibited:
            acted = enforce and g.prohibited_actions
            if acted:
                yield Note("policy_check", "prohibited_action", "input", True, True)
                return Final("blocked", "guardrail", "", (), False)
            violations_possible = True

        # -- classify and route
        route, start, reason = yield from self._route(request, r)
        route_cfg = self.cfg.routes[route]
        tier_index = self.tiers.index(route_cfg.tier)
        if start:
            tier_index = min(tier_index + 1, len(self.tiers) - 1)
            r.escalated = True
        yield Note("router", route, f"{self.tiers[tier_index]}:{reason}")
        max_retries = route_cfg.max_retries
        context = request.input_tokens
        degraded = False
        injected = False

        # -- ReAct tool steps, on the starting tier
        budgets = self.cfg.budgets
        steps = min(request.tool_steps, budgets.max_steps)
        for s in range(steps):
            tool = request.tools[s % len(request.tools)]
            res = yield from self._tier_call(
                r, tier_index, "step", context, max_retries, degraded, walk=True
            )
            if isinstance(res, str):
                return self._fail(res, route, r)
            if injected and res.follows_injection:
                acted = enforce and g.injection_containment
                yield Note(
                    "policy_check",
                    "injection_containment",
                    tool,
                    True,
                    acted,
                    None if acted else "injection_followed",
                )
            if res.invalid_args:
                acted = enforce and g.tool_schema
                yield Note(
                    "policy_check",
                    "tool_schema",
                    tool,
                    True,
                    acted,
                    None if acted else "invalid_tool_args_executed",
                )
                if acted:  # one repair attempt, then refuse the call
                    res = yield from self._tier_call(
                        r, tier_index, "repair", context, max_retries, degraded, walk=True
                    )
                    if isinstance(res, str):
                        return self._fail(res, route, r)
                    if res.invalid_args:
                        yield Note("policy_check", "tool_schema", tool, True, True)
                        return self._fail("error", route, r)
            context += res.output_tokens
            tres = yield from self._tool_call(r, tool, max_retries)
            if tres is None:
                return self._fail("error", route, r)
            context += tres.result_tokens
            degraded = degraded or tres.degraded
            injected = injected or tres.injected
        if request.tool_steps > budgets.max_steps:
            return self._fail("budget_exhausted", route, r)

        # -- answer: escalate up on low confidence; on failure fall back up, then down
        threshold = self.cfg.escalation.confidence_threshold
        failed: set[int] = set()
        while True:
            res = yield from self._tier_call(
                r, tier_index, "answer", context, max_retries, degraded, walk=False
            )
            if isinstance(res, str):
                failed.add(tier_index)
                nxt = self._fallback(tier_index, failed)
                if res == "budget_exhausted" or nxt is None or r.now >= r.deadline:
                    return self._fail(res, route, r)
                tier_index = nxt
                r.fallbacks += 1
                continue
            if res.truncated:
                return self._fail("budget_exhausted", route, r)
            if injected and res.follows_injection:
                acted = enforce and g.injection_containment
                yield Note(
                    "policy_check",
                    "injection_containment",
                    "answer",
                    True,
                    acted,
                    None if acted else "injection_followed",
                )
            up = self._higher(tier_index, failed)
            if res.confidence < threshold and up is not None:
                tier_index = up
                r.escalated = True
                continue
            break
        tier = self.tiers[tier_index]
        if request.high_impact and tier not in self.high_impact_tiers:
            acted = enforce
            yield Note(
                "policy_check",
                "high_impact_approval",
                tier,
                True,
                acted,
                None if acted else "unapproved_high_impact",
            )
            if acted:
                return Final(
                    "handoff", route, "human", tuple(r.tiers), r.escalated, r.retries,
                    r.fallbacks, True, res.confidence,
                )  # fmt: skip
        if violations_possible:
            yield Note("policy_check", "prohibited_action", "output", False, False,
                       "prohibited_action_executed")  # fmt: skip
        return Final(
            "success" if res.correct else "wrong", route, tier, tuple(r.tiers), r.escalated,
            r.retries, r.fallbacks, False, res.confidence,
        )  # fmt: skip

    # ------------------------------------------------------------------ pieces

    def _higher(self, tier_index: int, failed: set[int]) -> int | None:
        """The next tier up that has not failed this request."""
        for t in range(tier_index + 1, len(self.tiers)):
            if t not in failed:
                return t
        return None

    def _fallback(self, tier_index: int, failed: set[int]) -> int | None:
        """Where to go when a tier failed: up first, then (if allowed) down."""
        up = self._higher(tier_index, failed)
        if up is not None or not self.cfg.fallback_down:
            return up
        for t in range(tier_index - 1, -1, -1):
            if t not in failed:
                return t
        return None

    def _route(
        self, request: RequestInfo, r: _Request
    ) -> Generator[Effect, Outcome, tuple[str, bool, str]]:
        """(route, start one tier higher?, reason)."""
        cfg = self.cfg
        if request.high_impact and cfg.escalation.high_impact_route is not None:
            return cfg.escalation.high_impact_route, False, "high_impact"
        clf = cfg.classifier
        if not clf.enabled:
            return cfg.class_routes.get(request.task_class, self.default_route), False, "class"
        res = yield from self._model_call(
            r, self.classifier, "classify", clf.input_tokens, 0, False
        )
        if isinstance(res, str) or res.predicted_class is None:
            return self.default_route, True, "classifier_failed"
        route = cfg.class_routes.get(res.predicted_class, self.default_route)
        if res.confidence < clf.min_confidence:
            return route, True, "low_classifier_confidence"
        return route, False, "class"

    def _tier_call(
        self,
        r: _Request,
        tier_index: int,
        purpose: str,
        context: int,
        max_retries: int,
        degraded: bool,
        walk: bool,
    ) -> Generator[Effect, Outcome, ModelResult | str]:
        """Call the tier's models in order; with `walk`, fall back up the tiers too.

        Returns the first good result, or the failure name (`error`, `timeout`,
        `budget_exhausted`) when nothing answered.
        """
        failure = "error"
        first = True
        for t in range(tier_index, len(self.tiers) if walk else tier_index + 1):
            tier = self.tiers[t]
            if not r.tiers or r.tiers[-1] != tier:
                r.tiers.append(tier)
            for name in self.tier_models[tier]:
                if not first:
                    r.fallbacks += 1
                first = False
                res = yield from self._model_call(r, name, purpose, context, max_retries, degraded)
                if not isinstance(res, str):
                    return res
                failure = res
                if res == "budget_exhausted" or r.now >= r.deadline:
                    return res
        return failure

    def _model_call(
        self,
        r: _Request,
        name: str,
        purpose: str,
        input_tokens: int,
        max_retries: int,
        degraded: bool,
    ) -> Generator[Effect, Outcome, ModelResult | str]:
        """One logical call: breaker, budget and deadline checks, retries with backoff."""
        budget_tokens = self.request_tokens
        breaker = self.breakers.get(name)
        attempt = 0
        while True:
            if budget_tokens is not None and r.tokens + input_tokens > budget_tokens:
                return "budget_exhausted"
            remaining = r.deadline - r.now
            if remaining <= 0:
                return "timeout"
            if breaker is not None and not breaker.try_acquire(r.now):
                yield Note("breaker", name, "open")
                return "error"
            res = yield CallModel(
                name,
                purpose,
                input_tokens,
                self.model_timeout if self.model_timeout < remaining else remaining,
                self.step_tokens,
                degraded,
            )
            assert isinstance(res, ModelResult)
            r.now = res.now
            r.tokens += res.input_tokens + res.output_tokens
            ok = res.status == OK
            if breaker is not None:
                breaker.on_result(res.now, res.latency_s, not ok)
            if ok:
                return res
            if attempt >= max_retries or r.now >= r.deadline:
                return TIMEOUT if res.status == TIMEOUT else "error"
            if self.budget is not None and not self.budget.try_withdraw(r.now):
                return TIMEOUT if res.status == TIMEOUT else "error"
            delay = self._backoff(
                r, attempt, res.retry_after_s if res.status == RATE_LIMITED else 0.0
            )
            attempt += 1
            r.retries += 1
            tick = yield Wait(delay)
            r.now = tick.now

    def _tool_call(
        self, r: _Request, tool: str, max_retries: int
    ) -> Generator[Effect, Outcome, ToolResult | None]:
        """A tool call with retries (tools have no breaker: their errors are the agent's)."""
        attempt = 0
        while True:
            remaining = r.deadline - r.now
            if remaining <= 0:
                return None
            res = yield CallTool(tool, min(self.tool_timeout, remaining))
            assert isinstance(res, ToolResult)
            r.now = res.now
            if res.status == OK:
                return res
            if attempt >= max_retries or r.now >= r.deadline:
                return None
            if self.budget is not None and not self.budget.try_withdraw(r.now):
                return None
            delay = self._backoff(r, attempt, 0.0)
            attempt += 1
            r.retries += 1
            tick = yield Wait(delay)
            r.now = tick.now

    def _backoff(self, r: _Request, attempt: int, retry_after: float) -> float:
        """Full jitter: U * min(cap, base * 2^attempt), at least a 429's Retry-After."""
        cfg = self.cfg.retry
        scale = min(cfg.cap_ms, cfg.base_ms * (2.0**attempt)) / 1000.0
        delay = r.jitter(r.retries) * scale
        if cfg.respect_retry_after and retry_after > delay:
            delay = retry_after
        return delay

    def _fail(self, outcome: str, route: str, r: _Request) -> Final:
        if outcome in ("error", "timeout") and self.cfg.handoff:
            return Final("handoff", route, "human", tuple(r.tiers), r.escalated, r.retries,
                         r.fallbacks, True)  # fmt: skip
        return Final(outcome, route, "", tuple(r.tiers), r.escalated, r.retries, r.fallbacks)
