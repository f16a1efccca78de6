"""The reference routing stack: the control plane the suite configures.

Per request: input guardrails (PII redaction, prohibited requests) -> classifier on the
cheapest tier -> route by class, classifier confidence and impact -> ReAct tool steps, each
proposed call checked against its JSON Schema and every proposed action against the policy
(prohibited, injection containment, high-impact approval) -> answer, escalating a tier on
low confidence -> output redaction -> the actions the user asked for. Every model call
goes through the model's circuit breaker, retries with full-jitter backoff under a
per-route cap and a shared retry budget, and falls back to the next model of the tier,
then the next tier, then a human.

Sans-I/O: this module reads no clock and no random generator; `now` comes from outcomes
and jitter from `RequestInfo.jitter`, both supplied by the driver.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Generator, Mapping
from typing import Any

from harness.guardrails import PiiDetector, ToolArgsValidator, contained
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

_UNSEEN = object()


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

    __slots__ = ("deadline", "escalated", "fallbacks", "jitter", "now", "overrun", "retries",
                 "tiers", "tokens", "untrusted")  # fmt: skip

    def __init__(self, now: float, deadline: float, jitter: Callable[[int], float]) -> None:
        self.now = now
        self.jitter = jitter
        self.deadline = deadline
        self.tokens = 0
        self.retries = 0
        self.fallbacks = 0
        self.escalated = False
        self.tiers: list[str] = []
        self.untrusted = False  # has read tool or retrieval output
        self.overrun = False  # went past the token budget with enforcement off


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
        pol = suite.policies
        self.policy = pol
        self.enforce = pol.enforce
        self.pii = PiiDetector(pol.pii.detect, {c.name: c.pattern for c in pol.pii.custom})
        self.schemas = {
            n: t.args_schema for n, t in suite.tools.items() if t.args_schema is not None
        }
        self.validator = ToolArgsValidator(self.schemas)
        self.known_tools = frozenset(suite.tools)
        self._checked: dict[tuple[str, tuple[tuple[str, Any], ...]], object] = {}
        self.prohibited = frozenset(pol.actions.prohibited)
        self.high_impact = frozenset(pol.actions.high_impact)
        self.high_impact_tiers = frozenset(pol.actions.high_impact_tiers)

    # ------------------------------------------------------------------ the request

    def handle(self, request: RequestInfo) -> Generator[Effect, Outcome, Final]:
        """Serve one request; see the module docstring for the path it takes."""
        r = _Request(request.arrival_s, request.arrival_s + self.deadline_s, request.jitter)
        if self.budget is not None:
            self.budget.on_request(r.now)
        pol, enforce = self.policy, self.enforce

        # -- input guardrails: personal data, prohibited requests
        text = request.text
        found = self.pii.find(text) if text else []
        if found:
            acted = enforce and pol.pii.redact_input
            kinds = ",".join(sorted({f.kind for f in found}))
            yield Note("policy_check", "pii_redaction", kinds, True, acted, "pii_leak", "input")
            if acted:
                text = self.pii.redact(text)[0]
        asked = [a for a in request.actions if a in self.prohibited]
        if asked:
            yield Note("policy_check", "prohibited_action", asked[0], True, enforce,
                       "prohibited_action_executed", "input")  # fmt: skip
            if enforce:
                return Final("blocked", "guardrail", "", (), prompt=text)

        # -- classify and route
        high = [a for a in request.actions if a in self.high_impact]
        route, start, reason = yield from self._route(request, r, bool(high), text)
        route_cfg = self.cfg.routes[route]
        tier_index = self.tiers.index(route_cfg.tier)
        if start:
            tier_index = min(tier_index + 1, len(self.tiers) - 1)
            r.escalated = True
        yield Note("router", route, f"{self.tiers[tier_index]}:{reason}")
        max_retries = route_cfg.max_retries
        context = request.input_tokens
        degraded = False

        # -- ReAct tool steps, on the starting tier
        budgets = self.cfg.budgets
        steps = min(request.tool_steps, budgets.max_steps)
        for s in range(steps):
            tool = request.tools[s % len(request.tools)]
            repairs = 0
            while True:
                res = yield from self._tier_call(
                    r, tier_index, "repair" if repairs else "step", context, max_retries,
                    degraded, walk=True, prompt=text, tool=tool,
                )  # fmt: skip
                if isinstance(res, str):
                    return self._fail(res, route, r, text)
                context += res.output_tokens
                if res.proposed_action is not None:
                    ok = yield from self._action(
                        r, request, res.proposed_action, self.tiers[tier_index], route, text
                    )
                    if isinstance(ok, Final):
                        return ok
                problem = self._args_problem(res.proposed_tool, res.tool_args)
                if problem is None:
                    break
                acted = enforce
                yield Note("policy_check", "tool_args", problem, True, acted,
                           "invalid_tool_args_executed", "tool_args")  # fmt: skip
                if not acted:
                    break
                if repairs >= pol.tools.repair_attempts:
                    return self._fail("error", route, r, text)  # refused, never executed
                repairs += 1
            tres = yield from self._tool_call(
                r, res.proposed_tool, max_retries, res.tool_args, self.tiers[tier_index]
            )
            if tres is None:
                return self._fail("error", route, r, text)
            r.untrusted = True
            context += tres.result_tokens
            degraded = degraded or tres.degraded
        if request.tool_steps > budgets.max_steps:
            return self._fail("budget_exhausted", route, r, text)

        # -- answer: escalate up on low confidence; on failure fall back up, then down
        threshold = self.cfg.escalation.confidence_threshold
        failed: set[int] = set()
        while True:
            res = yield from self._tier_call(
                r, tier_index, "answer", context, max_retries, degraded, walk=False, prompt=text
            )
            if isinstance(res, str):
                failed.add(tier_index)
                nxt = self._fallback(tier_index, failed)
                if res == "budget_exhausted" or nxt is None or r.now >= r.deadline:
                    return self._fail(res, route, r, text)
                tier_index = nxt
                r.fallbacks += 1
                continue
            if res.truncated:
                return self._fail("budget_exhausted", route, r, text)
            up = self._higher(tier_index, failed)
            if res.confidence < threshold and up is not None:
                tier_index = up
                r.escalated = True
                continue
            break
        tier = self.tiers[tier_index]
        if res.proposed_action is not None:
            ok = yield from self._action(r, request, res.proposed_action, tier, route, text)
            if isinstance(ok, Final):
                return ok

        # -- output guardrails, then the actions the user asked for
        answer = res.text
        found = self.pii.find(answer) if answer else []
        if found:
            acted = enforce and pol.pii.redact_output
            kinds = ",".join(sorted({f.kind for f in found}))
            yield Note("policy_check", "pii_redaction", kinds, True, acted, "pii_leak", "output")
            if acted:
                answer = self.pii.redact(answer)[0]
        for action in request.actions:
            if action in self.high_impact or action in self.prohibited:
                done = yield from self._action(r, request, action, tier, route, text, answer)
                if isinstance(done, Final):
                    return done
        return Final(
            "success" if res.correct else "wrong", route, tier, tuple(r.tiers), r.escalated,
            r.retries, r.fallbacks, False, res.confidence, text, answer,
        )  # fmt: skip

    # ------------------------------------------------------------------ guardrails

    def _args_problem(self, tool: str, args: Mapping[str, Any] | None) -> str | None:
        """Why a proposed tool call may not run, or None (policy: tools)."""
        tools = self.policy.tools
        if tool not in self.known_tools:
            return None if tools.allow_unknown else f"unknown tool {tool!r}"
        if not tools.validate_args or tool not in self.schemas:
            return None  # no schema: nothing to check the arguments against
        args = args or {}
        try:
            key = (tool, tuple(sorted(args.items())))
            cached = self._checked.get(key, _UNSEEN)
        except TypeError:  # unhashable values: validate every time
            return self.validator.check(tool, args)
        if cached is _UNSEEN:
            cached = self._checked[key] = self.validator.check(tool, args)
        return cached  # type: ignore[return-value]

    def _action(
        self,
        r: _Request,
        request: RequestInfo,
        action: str,
        tier: str | None,
        route: str,
        prompt: str = "",
        answer: str = "",
    ) -> Generator[Effect, Outcome, Final | None]:
        """Guard and, if allowed, execute an action; a Final when the request ends here.

        Blocks prohibited actions and, after untrusted content was read, actions the user
        did not ask for (injection containment); holds high-impact actions proposed by an
        untrusted tier for a human's approval (handoff).
        """
        pol, enforce = self.policy, self.enforce
        requested = action in request.actions
        injected = pol.injection.contain and contained(action, request.actions, r.untrusted)
        if injected or action in self.prohibited:
            guards = "prohibited_action_executed" if requested else "injection_followed"
            name = "injection_containment" if injected else "prohibited_action"
            yield Note("policy_check", name, action, True, enforce, guards, "action")
            if enforce:
                return None  # dropped; the request goes on without it
        proposer = tier if tier is not None else self.tiers[0]
        if action in self.high_impact and proposer not in self.high_impact_tiers:
            yield Note("policy_check", "high_impact_approval", action, True, enforce,
                       "unapproved_high_impact", "action")  # fmt: skip
            if enforce:
                return Final("handoff", route, "human", tuple(r.tiers), r.escalated, r.retries,
                             r.fallbacks, True, prompt=prompt, answer=answer)  # fmt: skip
        remaining = r.deadline - r.now
        if remaining <= 0:
            return None
        res = yield CallTool(action, min(self.tool_timeout, remaining), None, proposer)
        r.now = res.now
        return None

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
        self, request: RequestInfo, r: _Request, high_impact: bool, text: str
    ) -> Generator[Effect, Outcome, tuple[str, bool, str]]:
        """(route, start one tier higher?, reason)."""
        cfg = self.cfg
        if high_impact and cfg.escalation.high_impact_route is not None:
            return cfg.escalation.high_impact_route, False, "high_impact"
        clf = cfg.classifier
        if not clf.enabled:
            return cfg.class_routes.get(request.task_class, self.default_route), False, "class"
        res = yield from self._model_call(
            r, self.classifier, "classify", clf.input_tokens, 0, False, text, None
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
        prompt: str = "",
        tool: str | None = None,
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
                res = yield from self._model_call(
                    r, name, purpose, context, max_retries, degraded, prompt, tool
                )
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
        prompt: str,
        tool: str | None,
    ) -> Generator[Effect, Outcome, ModelResult | str]:
        """One logical call: token budget, deadline and breaker checks, retries with backoff."""
        budget_tokens = self.request_tokens
        reserve = self.step_tokens or 0
        breaker = self.breakers.get(name)
        attempt = 0
        while True:
            # the guard reserves the call's max_tokens, so a granted call cannot overrun
            if budget_tokens is not None and r.tokens + input_tokens + reserve > budget_tokens:
                if self.enforce:
                    yield Note("policy_check", "token_budget", name, True, True,
                               "budget_overrun", "budget")  # fmt: skip
                    return "budget_exhausted"
                if not r.overrun:
                    r.overrun = True
                    yield Note("policy_check", "token_budget", name, True, False,
                               "budget_overrun", "budget")  # fmt: skip
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
                prompt,
                tool,
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
        self,
        r: _Request,
        tool: str,
        max_retries: int,
        args: Mapping[str, Any] | None,
        tier: str,
    ) -> Generator[Effect, Outcome, ToolResult | None]:
        """A tool call with retries (tools have no breaker: their errors are the agent's)."""
        attempt = 0
        while True:
            remaining = r.deadline - r.now
            if remaining <= 0:
                return None
            res = yield CallTool(tool, min(self.tool_timeout, remaining), args, tier)
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

    def _fail(self, outcome: str, route: str, r: _Request, prompt: str) -> Final:
        if outcome in ("error", "timeout") and self.cfg.handoff:
            return Final("handoff", route, "human", tuple(r.tiers), r.escalated, r.retries,
                         r.fallbacks, True, prompt=prompt)  # fmt: skip
        return Final(outcome, route, "", tuple(r.tiers), r.escalated, r.retries, r.fallbacks,
                     prompt=prompt)  # fmt: skip
