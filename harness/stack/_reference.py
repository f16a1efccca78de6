"""The reference routing stack: the control plane the suite configures.

Per request, from what a real router sees (text, tokens, metadata; never ground truth):
input guardrails (PII redaction; prohibited requests recognised in the text) -> classifier
on the cheapest tier -> route by class, classifier confidence and the impact the text asks
for -> the agent loop: the model proposes tool calls (ReAct steps, each checked against its
JSON Schema, capped by `max_steps`; degraded retrieval handled as the route says) until it
answers, escalating a tier on low confidence -> output redaction -> the actions proposed
with the accepted answer, each recognised and guarded (prohibited, injection containment,
high-impact approval by a human). Every model and tool call goes through its circuit
breaker and retries with full-jitter backoff under a per-route cap and a shared retry
budget; a model call falls back to the next model of the tier, then the next tier, then a
human (a `Handoff` the driver answers when the human team does).

Sans-I/O: this module reads no clock and no random generator; `now` comes from outcomes
and jitter from `RequestInfo.jitter`, both supplied by the driver.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable, Generator, Mapping, Sequence
from itertools import islice
from typing import Any

from harness.guardrails import ActionRecognizer, Finding, PiiDetector, ToolArgsValidator, contained
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
    Handoff,
    ModelResult,
    Note,
    Outcome,
    RequestInfo,
    ToolResult,
    Wait,
)
from harness.stack._sessions import SessionBudgets, SessionSpend
from harness.stack._tenants import TenantGate, TenantState

_UNSEEN = object()
_NOTHING: tuple[Finding, ...] = ()
_SCANS_KEPT = 1 << 15
"""Prepared scans kept (`prepare_texts`); the oldest go first, and a text whose scan has
gone is scanned when it arrives."""


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


_CALL_JSON = json.JSONEncoder(sort_keys=True, default=str)
"""What `json.dumps(args, sort_keys=True, default=str)` uses, built once, not per call."""


def _call_key(tool: str, args: Mapping[str, Any] | None) -> str:
    """A tool call as a string, equal for the same tool with the same arguments."""
    return tool + _CALL_JSON.encode(args)


class _Request:
    """Mutable bookkeeping of one request inside the stack."""

    __slots__ = ("deadline", "escalated", "fallbacks", "jitter", "now", "overrun", "retries",
                 "session", "system", "tiers", "tokens", "untrusted")  # fmt: skip

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
        self.session: SessionSpend | None = None  # its session's spend (session budgets)
        self.system = ""  # its route's system prompt, once routed


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
            # tools and retrieval stores get breakers like models (keyed by tool name)
            self.breakers.update({name: CircuitBreaker(conf, name) for name in suite.tools})
        rb = st.retry_budget
        self.budget = RetryBudget(rb.ratio, rb.min_per_s, rb.window_s) if rb else None
        # per endpoint: its own timeout_ms, else the stack's default (unknown tools: default)
        self.default_tool_timeout = st.timeouts.tool_call_ms / 1000.0
        self.model_timeout = {
            n: (m.timeout_ms or st.timeouts.model_call_ms) / 1000.0 for n, m in suite.models.items()
        }
        self.tool_timeout = {
            n: t.timeout_ms / 1000.0 if t.timeout_ms else self.default_tool_timeout
            for n, t in suite.tools.items()
        }
        self.deadline_s = st.timeouts.request_deadline_ms / 1000.0
        self.request_tokens = st.budgets.request_tokens
        self.step_tokens = st.budgets.step_output_tokens
        self.sessions = SessionBudgets.of_suite(suite)
        """Per-session token and spend budgets, keyed by the session id a request carries."""
        self.system_tokens = st.system_prompt_tokens
        pol = suite.policies
        self.policy = pol
        self.enforce = pol.enforce
        self.pii = PiiDetector(pol.pii.detect, {c.name: c.pattern for c in pol.pii.custom})
        self._scans: dict[str, Sequence[Finding]] = {}
        """Texts scanned ahead (`prepare_texts`) -> their findings."""
        self._scans_kept = _SCANS_KEPT
        self.schemas = {
            n: t.args_schema for n, t in suite.tools.items() if t.args_schema is not None
        }
        self.validator = ToolArgsValidator(self.schemas)
        self.known_tools = frozenset(suite.tools)
        self._checked: dict[tuple[str, tuple[tuple[str, Any], ...]], object] = {}
        self.prohibited = frozenset(pol.actions.prohibited)
        self.high_impact = frozenset(pol.actions.high_impact)
        self.high_impact_tiers = frozenset(pol.actions.high_impact_tiers)
        self.actions = ActionRecognizer(
            [*pol.actions.prohibited, *pol.actions.high_impact], pol.actions.phrases
        )
        prices = {n: (m.price.input_per_mtok, m.price.output_per_mtok)
                  for n, m in suite.models.items()}  # fmt: skip
        self.gate = TenantGate(st.tenants, prices) if st.tenants else None
        """Per-tenant gateway limits (`stack.tenants`), applied at admission."""

    def prepare_texts(self, texts: Sequence[str]) -> None:
        """Texts requests are about to carry (messages, answers): scan them for personal
        data now, in one batch (`PiiDetector.find_many`), rather than one by one as they
        arrive. A cache keyed by the text itself, so it changes nothing but speed: a text
        that arrives different (or after its scan was dropped) is scanned then."""
        scans = self._scans
        scans.update(dict.fromkeys(texts, _NOTHING))
        for k, found in self.pii.find_many(texts).items():
            scans[texts[k]] = found
        excess = len(scans) - self._scans_kept
        if excess > 0:
            for text in list(islice(scans, excess)):
                del scans[text]

    def _find_pii(self, text: str) -> Sequence[Finding]:
        """What `PiiDetector.find` finds in `text`, prepared or scanned now."""
        found = self._scans.get(text)
        return self.pii.find(text) if found is None else found

    # ------------------------------------------------------------------ the request

    def handle(self, request: RequestInfo) -> Generator[Effect, Outcome, Final]:
        """Serve one request; see the module docstring for the path it takes."""
        gate = self.gate
        tenant = gate.state(request.metadata.get("tenant", "")) if gate is not None else None
        if gate is None or tenant is None:
            return (yield from self._serve(request, None))
        return (yield from gate.metered(tenant, self._serve(request, tenant)))

    def _serve(
        self, request: RequestInfo, tenant: TenantState | None
    ) -> Generator[Effect, Outcome, Final]:
        r = _Request(request.arrival_s, request.arrival_s + self.deadline_s, request.jitter)
        if self.sessions is not None:
            r.session = self.sessions.session(request)
        downgraded = False
        if tenant is not None:  # the gateway's limits come first
            admitted = yield from self._admit(tenant, r)
            if isinstance(admitted, Final):
                return admitted
            downgraded = admitted
        if self.budget is not None:
            self.budget.on_request(r.now)
        pol, enforce = self.policy, self.enforce

        # -- input guardrails: personal data, prohibited requests (by what the text says)
        text = request.text
        found = self._find_pii(text) if text else ()
        if found:
            acted = enforce and pol.pii.redact_input
            kinds = ",".join(sorted({f.kind for f in found}))
            yield Note("policy_check", "pii_redaction", kinds, True, acted, "pii_leak", "input")
            if acted:
                text = self.pii.redact(text, found)[0]
        intents = self.actions.in_text(request.text)
        asked = [a for a in intents if a in self.prohibited]
        if asked:
            yield Note("policy_check", "prohibited_action", asked[0], True, enforce,
                       "prohibited_action_executed", "input")  # fmt: skip
            if enforce:
                return Final("blocked", "guardrail", "", (), prompt=text)

        # -- classify and route
        high = any(a in self.high_impact for a in intents)
        route, start, reason = yield from self._route(request, r, high, text)
        route_cfg = self.cfg.routes[route]
        r.system = route_cfg.system_prompt
        tier_index = self.tiers.index(route_cfg.tier)
        if start:
            tier_index = min(tier_index + 1, len(self.tiers) - 1)
            r.escalated = True
        if downgraded:  # over a tenant limit: the cheapest tier, and only that
            tier_index, r.escalated, reason = 0, False, "tenant_limit"
        yield Note("router", route, f"{self.tiers[tier_index]}:{reason}")
        max_retries = route_cfg.max_retries
        context = request.input_tokens
        degraded = False

        # -- the agent loop: the model calls tools (ReAct steps) until it answers; a tool
        # call is checked against its schema, an answer below the confidence threshold is
        # discarded and the next tier asked; on failure fall back up, then down
        budgets = self.cfg.budgets
        threshold = self.cfg.escalation.confidence_threshold
        failed: set[int] = set(range(1, len(self.tiers))) if downgraded else set()
        steps = repairs = 0
        last_call = ""  # the tool call just run, as `_call_key` (stop_on_repeat)
        force = False  # the stop condition asked for an answer without tools
        while True:
            purpose = "answer" if force else "repair" if repairs else "agent"
            res = yield from self._tier_call(
                r, tier_index, purpose, context, max_retries, degraded, walk=False, prompt=text,
            )  # fmt: skip
            if isinstance(res, str):
                failed.add(tier_index)
                nxt = self._fallback(tier_index, failed)
                if res == "budget_exhausted" or nxt is None or r.now >= r.deadline:
                    return (yield from self._fail(res, route, r, text))
                tier_index = nxt
                r.fallbacks += 1
                continue
            tier = self.tiers[tier_index]
            if not res.proposed_tool:  # an answer
                repairs = 0
                force = False
                if res.truncated:
                    return (yield from self._fail("budget_exhausted", route, r, text))
                up = self._higher(tier_index, failed)
                if res.confidence < threshold and up is not None:
                    tier_index = up
                    r.escalated = True
                    continue
                break
            for action, args in res.proposed_actions:  # e.g. under an injected instruction
                ok = yield from self._action(r, intents, action, args, tier, route, text)
                if isinstance(ok, Final):
                    return ok
            context += res.output_tokens
            call = _call_key(res.proposed_tool, res.tool_args) if budgets.stop_on_repeat else ""
            if call and call == last_call:  # no progress: the call just run, proposed again
                yield Note("policy_check", "tool_loop", res.proposed_tool, True, True)
                if budgets.on_repeat == "budget_exhausted":
                    return (yield from self._fail("budget_exhausted", route, r, text))
                force = True
                continue
            if steps >= budgets.max_steps:  # the model wants more steps than the cap allows
                return (yield from self._fail("budget_exhausted", route, r, text))
            if res.proposed_tool in self.prohibited or res.proposed_tool in self.high_impact:
                # a step that is itself a policed action (a live model's tool call): guarded as
                # an action is (prohibited, injection containment, high-impact approval)
                ok = yield from self._action(r, intents, res.proposed_tool, res.tool_args, tier,
                                             route, text)  # fmt: skip
                if isinstance(ok, Final):
                    return ok
                steps += 1
                last_call = call
                continue
            problem = self._args_problem(res.proposed_tool, res.tool_args)
            if problem is not None:
                acted = enforce
                yield Note("policy_check", "tool_args", problem, True, acted,
                           "invalid_tool_args_executed", "tool_args")  # fmt: skip
                if acted:
                    if repairs >= pol.tools.repair_attempts:
                        return (yield from self._fail("error", route, r, text))  # refused, not run
                    repairs += 1
                    continue
            repairs = 0
            tool = res.proposed_tool
            tres = yield from self._tool_call(r, tool, max_retries, res.tool_args, tier)
            if tres is None:
                return (yield from self._fail("error", route, r, text))
            steps += 1
            last_call = call
            r.untrusted = True
            context += tres.result_tokens
            if tres.degraded and not degraded:  # empty or stale retrieval: the route decides
                on = route_cfg.on_degraded_retrieval
                yield Note("policy_check", "degraded_retrieval", on, True, on != "caveat")
                if on == "handoff":
                    return (yield from self._fail("error", route, r, text))
                up = self._higher(tier_index, failed) if on == "escalate" else None
                if up is not None:
                    tier_index = up
                    r.escalated = True
            degraded = degraded or tres.degraded

        # -- output guardrails, then the actions that came with the accepted answer
        answer = res.text
        found = self._find_pii(answer) if answer else ()
        if found:
            acted = enforce and pol.pii.redact_output
            kinds = ",".join(sorted({f.kind for f in found}))
            yield Note("policy_check", "pii_redaction", kinds, True, acted, "pii_leak", "output")
            if acted:
                answer = self.pii.redact(answer, found)[0]
        for action, args in res.proposed_actions:
            ok = yield from self._action(r, intents, action, args, tier, route, text, answer)
            if isinstance(ok, Final):
                return ok
        return Final(
            "success", route, tier, tuple(r.tiers), r.escalated, r.retries, r.fallbacks, False,
            res.confidence, text, answer,
        )  # fmt: skip

    def _admit(self, tenant: TenantState, r: _Request) -> Generator[Effect, Outcome, Final | bool]:
        """Admission under the tenant's limits: False (admitted), True (go on downgraded to
        the cheapest tier) or the `Final` of a request turned away (`stack.tenants.on_exceed`).

        Rejected: outcome `error`, route `tenant_limit` (a gateway's 429). Queued: waits until
        the limits admit it, or ends with `timeout` (route `tenant_limit`) at the deadline.
        A downgraded request takes no request token; its tokens and spend still count.
        """
        verdict = tenant.admit(r.now)
        if not verdict.wait_s:
            return False
        on = tenant.limits.on_exceed
        yield Note("policy_check", "tenant_limit", f"{verdict.reason}:{on}", True, True,
                   None, "budget")  # fmt: skip
        if on == "downgrade":
            return True
        if on == "reject":
            return Final("error", "tenant_limit", "", ())
        while verdict.wait_s:
            remaining = r.deadline - r.now
            tick = yield Wait(min(verdict.wait_s, remaining), "tenant_queue")
            r.now = tick.now
            if verdict.wait_s >= remaining:
                return Final("timeout", "tenant_limit", "", ())
            verdict = tenant.admit(r.now)
        return False

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
        intents: tuple[str, ...],
        tool: str,
        args: Mapping[str, Any] | None,
        tier: str | None,
        route: str,
        prompt: str = "",
        answer: str = "",
    ) -> Generator[Effect, Outcome, Final | None]:
        """Guard and, if allowed, execute a proposed action; a Final when the request ends.

        What the call is comes from the policy's recognizer (tool name, argument words).
        A recognised prohibited action is dropped; after untrusted content was read, a
        recognised action the user's text did not ask for is contained (dropped) as an
        injection; a recognised high-impact action proposed by an untrusted tier waits for
        a human's approval (handoff). A call the recognizer does not know runs as proposed.
        """
        pol, enforce = self.policy, self.enforce
        action = self.actions.of_call(tool, args)
        if action is not None:
            injected = pol.injection.contain and contained(action, intents, r.untrusted)
            if injected or action in self.prohibited:
                guards = "injection_followed" if injected else "prohibited_action_executed"
                name = "injection_containment" if injected else "prohibited_action"
                yield Note("policy_check", name, tool, True, enforce, guards, "action")
                if enforce:
                    return None  # dropped; the request goes on without it
        problem = self._args_problem(tool, args)
        if problem is not None:  # an unknown tool, or arguments its schema refuses
            yield Note("policy_check", "tool_args", problem, True, enforce,
                       "invalid_tool_args_executed", "tool_args")  # fmt: skip
            if enforce:
                return None
        proposer = tier if tier is not None else self.tiers[0]
        if action in self.high_impact and proposer not in self.high_impact_tiers:
            yield Note("policy_check", "high_impact_approval", tool, True, enforce,
                       "unapproved_high_impact", "action")  # fmt: skip
            if enforce:
                return (yield from self._handoff("approval", route, r, prompt, answer))
        remaining = r.deadline - r.now
        if remaining <= 0:
            return None
        timeout = self.tool_timeout.get(tool, self.default_tool_timeout)
        res = yield CallTool(tool, min(timeout, remaining), args, proposer)
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
        if not clf.enabled:  # no classifier: every request takes the default route
            return self.default_route, False, "default"
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
        input_tokens += self.system_tokens  # every call carries the system prompt
        budget_tokens = self.request_tokens
        reserve = self.step_tokens or 0
        breaker = self.breakers.get(name)
        timeout = self.model_timeout[name]
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
            over = r.session.refuses(name, input_tokens, reserve) if r.session else None
            if over is not None:  # the session's budget (tokens or usd) has no room for it
                yield Note("policy_check", "session_budget", f"{name}:{over}", True, self.enforce,
                           "budget_overrun", "budget")  # fmt: skip
                if self.enforce:
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
                timeout if timeout < remaining else remaining,
                self.step_tokens,
                degraded,
                prompt,
                tool,
                r.system,
            )
            assert isinstance(res, ModelResult)
            r.now = res.now
            r.tokens += res.input_tokens + res.output_tokens
            if r.session is not None:
                r.session.charge(name, res.input_tokens, res.output_tokens)
            ok = res.status == OK
            refused = 400 <= res.http_status < 500 and res.http_status not in (408, 429)
            if breaker is not None and not refused:  # a refused request is not the model failing
                breaker.on_result(res.now, res.latency_s, not ok)
            if ok:
                return res
            if refused or attempt >= max_retries or r.now >= r.deadline:  # 4xx: retry is futile
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
        """A tool call with retries, behind the tool's circuit breaker."""
        timeout = self.tool_timeout.get(tool, self.default_tool_timeout)
        breaker = self.breakers.get(tool)
        attempt = 0
        while True:
            remaining = r.deadline - r.now
            if remaining <= 0:
                return None
            if breaker is not None and not breaker.try_acquire(r.now):
                yield Note("breaker", tool, "open")
                return None
            res = yield CallTool(tool, min(timeout, remaining), args, tier)
            assert isinstance(res, ToolResult)
            r.now = res.now
            if breaker is not None:
                breaker.on_result(res.now, res.latency_s, res.status != OK)
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

    def _fail(
        self, outcome: str, route: str, r: _Request, prompt: str
    ) -> Generator[Effect, Outcome, Final]:
        """End a request that got no usable answer: a human as the last resort, if allowed."""
        if outcome in ("error", "timeout") and self.cfg.handoff:
            return (yield from self._handoff("last_resort", route, r, prompt))
        return Final(outcome, route, "", tuple(r.tiers), r.escalated, r.retries, r.fallbacks,
                     prompt=prompt)  # fmt: skip

    def _handoff(
        self, reason: str, route: str, r: _Request, prompt: str, answer: str = ""
    ) -> Generator[Effect, Outcome, Final]:
        """Hand the request to a human and end it when the human has answered."""
        res = yield Handoff(reason)
        r.now = res.now
        return Final("handoff", route, "human", tuple(r.tiers), r.escalated, r.retries,
                     r.fallbacks, True, prompt=prompt, answer=answer)  # fmt: skip
