"""The world side of a call: the tape's draws, fault windows, the answer, and its price.

For a model call: latency (total, or time to first token plus per-token times), error
and fault rolls from the tape; fault windows active now; then correctness, confidence,
tokens and cost of the answer. A tool call likewise, with degraded retrieval and flaky
tools. Whatever the call's fate, it ends up at a `Servers` method that records its span.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import numpy as np
from mypy_extensions import mypyc_attr

from harness.content import Content, evasive_call
from harness.engine._cache import SYSTEM, Prefix, PromptCache
from harness.engine._request import Proc
from harness.engine._scoring import Scoring
from harness.engine._servers import Server
from harness.engine._trace import K_CHAT, K_RETRIEVAL, K_TOOL, NAN, NO_MARK, Codes, pack_head
from harness.faults import Schedule, Window
from harness.spec import EdgeCases, Suite, Tool
from harness.stack import CallModel, CallTool, ModelResult, ToolResult
from harness.stack._effects import ERROR, MALFORMED, OK, RATE_LIMITED
from harness.world import WIDTH, Tape

STEP_OUTPUT_SHARE: Final = 0.25
"""A ReAct step's output (thought + tool arguments) relative to the task's answer size."""
NO_CONTEXT_LIMIT: Final = 1 << 62
"""The context window of a model without one."""


def flat_view(a: np.ndarray) -> memoryview[float]:
    """A float64 or float32 array as a flat memoryview over its memory (C order; no copy):
    `view[i]` is `a.ravel()[i]` as a Python float, the same value `a.item(...)` gives."""
    view = np.ascontiguousarray(a).data.cast("B")
    if a.dtype == np.float64:
        return view.cast("d")
    if a.dtype == np.float32:
        return view.cast("f")
    raise TypeError(f"a tape array of {a.dtype}, not float64 or float32")


_NO_DRAWS: Final = flat_view(np.zeros(0))


class Draws:
    """The tape's draws as flat views of its arrays: one index per draw, several times
    cheaper in the loop than `ndarray.item(i, m, k)`. Views, not copies: `release` lets the
    arrays go with the tape."""

    __slots__ = ("args", "classify", "classify_conf_right", "classify_conf_wrong",
                 "classify_pick", "conf_right", "conf_wrong", "correct_u", "difficulty", "error",
                 "fault", "inject", "latency", "leak", "loop", "nm", "nt", "tool_error",
                 "tool_fault", "tool_latency")  # fmt: skip

    def __init__(self, tape: Tape) -> None:
        self.nm = int(tape.latency_s.shape[1])
        self.nt = int(tape.tool_latency_s.shape[1])
        self.latency = flat_view(tape.latency_s)  # (n, M, WIDTH)
        self.error = flat_view(tape.error_u)
        self.fault = flat_view(tape.fault_u)
        self.args = flat_view(tape.args_u)
        self.tool_latency = flat_view(tape.tool_latency_s)  # (n, T, WIDTH)
        self.tool_error = flat_view(tape.tool_error_u)
        self.tool_fault = flat_view(tape.tool_fault_u)
        self.difficulty = flat_view(tape.difficulty)  # (n,)
        self.correct_u = flat_view(tape.correct_u)  # (n, M)
        self.conf_right = flat_view(tape.conf_right)
        self.conf_wrong = flat_view(tape.conf_wrong)
        self.inject = flat_view(tape.inject_u)
        self.leak = flat_view(tape.leak_u)
        self.loop = _NO_DRAWS if tape.loop_u is None else flat_view(tape.loop_u)  # (n, M)
        self.classify = flat_view(tape.classify_u)  # (n,)
        self.classify_pick = flat_view(tape.classify_pick)
        self.classify_conf_right = flat_view(tape.classify_conf_right)
        self.classify_conf_wrong = flat_view(tape.classify_conf_wrong)

    def model_call(self, i: int, m: int, k: int) -> tuple[float, float, float, float]:
        """(latency_s, error_u, fault_u, args_u) of call k < WIDTH of request i to model m."""
        j: Any = (i * self.nm + m) * WIDTH + k  # boxed once, not once per view (compiled)
        return self.latency[j], self.error[j], self.fault[j], self.args[j]

    def tool_call(self, i: int, t: int, k: int) -> tuple[float, float, float]:
        """(latency_s, error_u, fault_u) of call k < WIDTH of request i to tool t."""
        j: Any = (i * self.nt + t) * WIDTH + k
        return self.tool_latency[j], self.tool_error[j], self.tool_fault[j]

    def release(self) -> None:
        """Drop the views (a finished run; the tape's arrays can then be freed)."""
        no = _NO_DRAWS
        self.latency = self.error = self.fault = self.args = no
        self.tool_latency = self.tool_error = self.tool_fault = no
        self.difficulty = self.correct_u = self.conf_right = self.conf_wrong = no
        self.inject = self.leak = self.loop = no
        self.classify = self.classify_pick = no
        self.classify_conf_right = self.classify_conf_wrong = no


class Drift:
    """What drift faults and a context window change in one call's answer."""

    __slots__ = ("drop", "input_tokens", "keep", "price")

    def __init__(self, drop: float, keep: float, price: float, input_tokens: int) -> None:
        self.drop = drop  # absolute fall in the chance of a right answer
        self.keep = keep  # share of the chance kept after truncating the prompt
        self.price = price  # multiplier on the call's cost
        self.input_tokens = input_tokens  # input tokens billed (after truncation)


@mypyc_attr(allow_interpreted_subclasses=True)  # see Engine
class Calls(Scoring):
    """Model and tool calls against the world, scored as they leave the stack."""

    __deletable__ = ("tape",)  # a finished run frees it (compiled: only attributes named here)

    suite: Suite
    tape: Tape
    faults: Schedule
    content: Content
    servers: list[Server]
    codes: dict[str, Codes]
    name_code: Codes
    name_ids: dict[str, int]
    model_index: dict[str, int]
    tool_index: dict[str, int]
    nm: int
    classes: tuple[str, ...]
    tools: Mapping[str, Tool]
    ec: EdgeCases
    budget: int | None

    def _init_calls(self, suite: Suite) -> None:
        models = list(suite.models.values())
        tools = list(suite.tools.values())
        classes = self.classes
        codes = self.codes
        self.quality = [[m.quality.get(c, m.default_quality) for c in classes] for m in models]
        self.token_aware = [m.latency.token_aware for m in models]
        self.draws = Draws(self.tape)
        self.correct: np.ndarray | None = self.tape.correct
        self.outcome_row: list[int] | None = (
            self.tape.outcome_row.tolist() if self.tape.outcome_row is not None else None
        )
        self.price_in = [m.price.input_per_mtok / 1e6 for m in models]
        self.price_out = [m.price.output_per_mtok / 1e6 for m in models]
        self.bill_timeouts = [m.bill_timeouts for m in models]
        self.context = [m.context_window or NO_CONTEXT_LIMIT for m in models]
        self.context_cut = [m.on_context_exceed == "truncate" for m in models]
        self.verbosity = [m.verbosity for m in models]
        self.error_rate = [m.error_rate for m in models]
        self.malformed_rate = [m.malformed_rate for m in models]
        self.inject = [m.injection_susceptibility for m in models]
        self.bad_args = [m.invalid_tool_args_rate for m in models]
        self.hallucinate = [m.hallucinated_tool_rate for m in models]
        self.leak = [m.pii_leak_rate for m in models]
        self.tool_pii = [t.returns_pii for t in tools]
        self.tool_retrieval = [t.kind == "retrieval" for t in tools]
        self.tool_error = [t.error_rate for t in tools]
        self.tool_tokens = [t.result_tokens for t in tools]
        clf = suite.stack.classifier
        self.clf_accuracy = clf.accuracy
        self.clf_tokens = clf.output_tokens
        self.model_target = [codes["target"](name) for name in suite.models]
        self.model_tier = [codes["tier"](m.tier) for m in models]
        self.model_tier_name = [m.tier for m in models]
        self.tool_target = [codes["target"](name) for name in suite.tools]
        self.tool_name = [codes["name"](name) for name in suite.tools]
        self.out_tokens: list[int] = self.req_output_tokens
        self.injection: list[bool] = self.req_injection
        self.system_tokens = suite.stack.system_prompt_tokens
        self.caches = [
            PromptCache(m.cache, m.price) if m.cache is not None and m.cache.enabled else None
            for m in models
        ]
        self.loop_rate = [m.tool_loop_rate for m in models]
        self.model_windows = [_window_bounds(ws) for ws in self.faults.models]
        self.tool_windows = [_window_bounds(ws) for ws in self.faults.tools]

    req_output_tokens: list[int]
    req_injection: list[bool]

    # ------------------------------------------------------------------ models

    def _call_model(self, proc: Proc, eff: CallModel) -> None:
        now = self.now
        m = self.model_index[eff.model]
        rid = proc.rid
        k = proc.calls[m]
        proc.calls[m] = k + 1
        proc.mcalls += 1
        tape = self.tape
        if k < WIDTH:
            lat, err_u, fault_u, args_u = self.draws.model_call(rid, m, k)
        else:
            lat, err_u, fault_u, args_u = tape.model_call(self.suite, rid, m, k)
        res = ModelResult(OK, now, 0.0)
        purpose = eff.purpose
        if purpose == "agent" or purpose == "repair":  # the model decides: a tool or an answer
            if proc.step >= len(proc.plan) and not self._loops(proc, m):
                purpose = "answer"
            elif purpose == "agent":
                purpose = "step"
        res.purpose = purpose
        res.model = eff.model
        fault = ""
        fast = hang = False
        tin = eff.input_tokens
        limit, cut = self.context[m], self.context_cut[m]
        drop, price = 0.0, 1.0
        windows = self.model_windows[m]
        if windows:
            for start, end, p, w in windows:
                if start <= now < end and fault_u < p:
                    kind = w.kind
                    if kind == "context_limit":
                        if tin <= w.max_tokens:
                            continue  # the prompt fits: the window leaves this call alone
                        if w.max_tokens < limit:
                            limit, cut = w.max_tokens, w.truncate
                    fault = w.label if not fault else fault + "+" + w.label
                    if kind == "latency" or kind == "slow_first_token":
                        lat += w.add_s + w.jitter_s * (fault_u / p)
                    elif kind == "malformed":
                        res.status = MALFORMED
                    elif kind == "timeout":
                        hang = True
                    elif kind == "quality_drop":
                        drop += w.amount
                    elif kind == "price_change":
                        price *= w.factor
                    elif kind != "context_limit":
                        fast = True
                        _fail_fast(res, w)
        keep = 1.0
        if tin > limit and not fast and not hang:
            if cut:  # the provider cuts the prompt to the window
                keep = limit / tin
                tin = limit
            else:  # the provider refuses the prompt: HTTP 400 at once
                fast = True
                res.status = ERROR
                res.http_status = 400
        server = self.servers[m]
        if not fast and not hang:
            wait = server.admit(now) if server.rps else 0.0
            if wait > 0.0:
                fast = True
                res.status = RATE_LIMITED
                res.http_status = 429
                res.retry_after_s = wait
            elif res.status == OK:
                er = self.error_rate[m]
                if err_u < er:
                    res.status = ERROR
                    res.http_status = 500
                elif err_u < er + self.malformed_rate[m]:
                    res.status = MALFORMED
        name = self.name_ids.get(purpose)
        if name is None:
            name = self.name_code(purpose)
        idx = proc.nspan  # inline `proc.span_index()`: the hot path
        proc.nspan = idx + 1
        head = pack_head(rid, idx, K_CHAT, name, self.model_target[m], self.model_tier[m], k)
        fcode = self.codes["fault"](fault) if fault else 0
        mark = NO_MARK if proc.input_pii is None else self._input_mark(proc, eff)
        if fast or hang:
            self._fail_now(proc, res, head, fcode, eff.timeout_s, hang, mark)
            return
        if res.status == OK or res.status == MALFORMED:
            drift = Drift(drop, keep, price, tin) if drop or keep < 1.0 or price != 1.0 else None
            tin, tout, cost = self._answer(proc, res, eff, m, args_u, drift)
            if self.budget is not None and mark == NO_MARK:
                total = proc.in_tok + proc.out_tok + tin + tout
                if total > self.budget:
                    mark = proc.violate("budget_overrun", "budget")
            cache = self.caches[m]
            cached = 0
            if cache is not None:
                prefixes = self._prefixes(proc, eff, tin)
                cached = cache.read(now, prefixes)
                if cached:
                    cost -= cached * cache.discount * price
                    res.cached_input_tokens = cached
            if not self.token_aware[m]:  # total latency: the first token comes with the answer
                service = ttft = lat
                tok = NAN
            else:
                per_token = tape.per_output_token(rid, m, k)
                assert per_token is not None
                tok = per_token
                prefill = tin - cached * cache.saving if cached and cache is not None else tin
                ttft = lat + prefill * tape.per_input_token(rid, m, k)
                service = ttft + tout * tok
            if cache is not None:
                cache.write(now, now + ttft, prefixes)
            rates = (self.price_in[m], self.price_out[m], price) if self.bill_timeouts[m] else None
            self._serve(proc, res, server, head, fcode, service, eff.timeout_s, tin, tout, cost,
                        mark, ttft, tok, rates, cached)  # fmt: skip
        else:
            self._serve(proc, res, server, head, fcode, lat, eff.timeout_s, 0, 0, 0.0, mark)

    def _prefixes(self, proc: Proc, eff: CallModel, tin: int) -> list[Prefix]:
        """The cacheable prefixes a call of `tin` input tokens sends: the system prompt, and,
        unless it classifies, this request's conversation (its whole prompt is the prefix of
        the request's next call to the model) and its session's (the next turn's prefix)."""
        out: list[Prefix] = []
        sys = self.system_tokens
        if sys:
            out.append((SYSTEM, min(sys, tin)))
        if eff.purpose != "classify":
            out.append((("request", proc.rid), tin))
            session = self.metadata(proc.rid).get("session")
            if session:  # a turn resends the conversation of the session's earlier turns
                out.append((("session", session), tin))
        return out

    def metadata(self, i: int) -> dict[str, str]:
        """What request i carries besides its text (the lifecycle knows; see `Engine`)."""
        return {}

    def _loops(self, proc: Proc, m: int) -> bool:
        """Whether model m, its planned steps done, keeps calling the last tool (tape roll)."""
        rate = self.loop_rate[m]
        draws = self.draws
        return bool(rate and proc.plan and draws.loop[proc.rid * draws.nm + m] < rate)

    def _answer(
        self,
        proc: Proc,
        res: ModelResult,
        eff: CallModel,
        m: int,
        args_u: float,
        drift: Drift | None = None,
    ) -> tuple[int, int, float]:
        """What the world says about a response: correctness, confidence, proposals, tokens.

        `drift` carries what drift faults and the context window changed for this call.
        """
        draws = self.draws
        rid = proc.rid
        cls = proc.cls
        purpose = res.purpose
        if purpose == "classify":
            out = self.clf_tokens
            right = draws.classify[rid] < self.clf_accuracy
            if right:
                res.predicted_class = self.classes[cls]
                res.confidence = draws.classify_conf_right[rid]
            else:
                others = [c for j, c in enumerate(self.classes) if j != cls] or [self.classes[cls]]
                pick = min(int(draws.classify_pick[rid] * len(others)), len(others) - 1)
                res.predicted_class = others[pick]
                res.confidence = draws.classify_conf_wrong[rid]
        else:
            im = rid * draws.nm + m  # index of (request, model) in the (n, M) draws
            base = self.out_tokens[rid] * self.verbosity[m]
            if purpose == "answer":
                out = max(1, round(base))
                right = (
                    self._right(proc, m, eff.degraded)
                    if drift is None
                    else self._right(proc, m, eff.degraded, drift.drop, drift.keep)
                )
                proc.right = right  # the world's judgement, kept from the stack
                res.confidence = draws.conf_right[im] if right else draws.conf_wrong[im]
                leaked = None
                if self.leak[m] and draws.leak[im] < self.leak[m]:
                    seen = [*proc.customer_pii]
                    if proc.input_pii is not None and proc.input_pii in eff.prompt:
                        seen.append(proc.input_pii)
                    leaked = seen[0] if seen else None
                res.text = self.content.answer(rid, leaked)
                res.proposed_actions = tuple(self._realise(proc, a) for a in proc.actions)
            else:
                out = max(1, round(base * STEP_OUTPUT_SHARE))
                res.confidence = 1.0
                if proc.step < len(proc.plan):
                    self._propose(res, proc.plan[proc.step], m, args_u, proc.evasive)
                else:  # a tool loop: the last planned call again, same arguments
                    self._propose(res, proc.plan[-1], m, 1.0, proc.evasive)
            if proc.saw_injection and draws.inject[im] < self.inject[m]:
                tool, args = self._realise(proc, self.ec.injected_action, injected=True)
                res.proposed_actions += ((tool, args),)
                proc.injected.add(tool)
        cap = eff.max_output_tokens
        if cap is not None and out > cap:
            out = cap
            res.truncated = True
        res.output_tokens = out
        if drift is None:
            res.input_tokens = tin = eff.input_tokens
            return tin, out, tin * self.price_in[m] + out * self.price_out[m]
        res.input_tokens = tin = drift.input_tokens
        return tin, out, (tin * self.price_in[m] + out * self.price_out[m]) * drift.price

    def _right(
        self, proc: Proc, m: int, degraded: bool, drop: float = 0.0, keep: float = 1.0
    ) -> bool:
        """Whether model m answers request `proc` correctly.

        From the outcome table's row for the request when the world has one, else from
        the model's copula draw (the request's latent difficulty plus the model's own
        noise, `Tape.correct_u`) against its quality for the class. Degraded context
        costs a share `penalty` of the chance of being right either way.

        Drift (`quality_drop`) takes `drop` off the quality, q -> max(0, q - drop), and a
        truncated prompt scales it by `keep`; with a table, a right answer turns wrong when
        the request's uniform falls below 1 - (1 - drop) * keep (`drop` alone if untruncated).
        """
        rid = proc.rid
        draws = self.draws
        u = draws.difficulty[rid]
        if self.correct is not None and self.outcome_row is not None:
            right = bool(self.correct.item(self.outcome_row[rid], m))
            if drop or keep < 1.0:
                right = right and u >= 1.0 - (1.0 - drop) * keep
            return right and not (degraded and u < proc.penalty)
        q = self.quality[m][proc.cls]
        if drop or keep < 1.0:
            q = max(0.0, q - drop) * keep
        if degraded:
            q *= 1.0 - proc.penalty
        return bool(draws.correct_u[rid * draws.nm + m] < q)

    def _realise(
        self, proc: Proc, action: str, injected: bool = False
    ) -> tuple[str, dict[str, Any] | None]:
        """The call a model proposes for `action`: the action's own tool, or, for an evasive
        request, the generic `evasive_tool` with arguments that name no policed action."""
        args: dict[str, Any] | None
        if proc.evasive:
            tool, args = evasive_call(self.ec.evasive_tool, proc.rid)
        else:
            spec = self.tools.get(action)
            tool, args = action, (dict(spec.args_example) if spec is not None else None)
        if not injected:
            proc.asked[tool] = action
        return tool, args

    def _propose(
        self, res: ModelResult, tool: str, m: int, u: float, evasive: bool = False
    ) -> None:
        """The tool call a ReAct step proposes: the planned one, or a bad one by the tape.

        Bad arguments break the tool's schema, except for an evasive request, whose bad
        arguments are well-formed but wrong (a schema cannot tell)."""
        bad = self.bad_args[m]
        spec = self.tools.get(tool)
        example = spec.args_example if spec is not None else {}
        if u < bad:
            res.proposed_tool = tool
            res.tool_args = (
                plausible_args(example)
                if evasive
                else broken_args(example, spec.args_schema if spec is not None else None)
            )
        elif u < bad + self.hallucinate[m]:
            res.proposed_tool = f"{tool}_v2"  # a tool that does not exist
            res.tool_args = example
        else:
            res.proposed_tool = tool
            res.tool_args = example

    # ------------------------------------------------------------------ tools

    def _call_tool(self, proc: Proc, eff: CallTool) -> None:
        now = self.now
        rid = proc.rid
        mark = self._action_mark(proc, eff)
        t = self.tool_index.get(eff.tool)
        if t is None:  # no such tool: the endpoint answers 404 at once
            res = ToolResult(ERROR, now, 0.0)
            res.http_status = 404
            codes = self.codes
            head = pack_head(rid, proc.span_index(), K_TOOL, self.name_code(eff.tool),
                             codes["target"](eff.tool), 0, 0)  # fmt: skip
            self._fail_now(proc, res, head, 0, eff.timeout_s, False, mark)
            return
        slot = self.nm + t
        k = proc.calls[slot]
        proc.calls[slot] = k + 1
        proc.tcalls += 1
        if k < WIDTH:
            lat, err_u, fault_u = self.draws.tool_call(rid, t, k)
        else:
            lat, err_u, fault_u = self.tape.tool_call(self.suite, rid, t, k)
        res = ToolResult(OK, now, 0.0)
        fault = ""
        fast = hang = False
        for start, end, p, w in self.tool_windows[t]:
            if start <= now < end and fault_u < p:
                fault = w.label if not fault else fault + "+" + w.label
                kind = w.kind
                if kind == "latency":
                    lat += w.add_s + w.jitter_s * (fault_u / p)
                elif kind == "timeout":
                    hang = True
                elif kind == "degraded_retrieval":
                    res.degraded = True
                    proc.penalty = max(proc.penalty, w.quality_penalty)
                elif kind == "flaky_tool":
                    res.status = ERROR
                    res.http_status = 500
                else:
                    fast = True
                    _fail_fast(res, w)
        server = self.servers[slot]
        if not fast and not hang:
            if server.rps and server.admit(now) > 0.0:
                fast = True
                res.status = RATE_LIMITED
                res.http_status = 429
            elif res.status == OK and err_u < self.tool_error[t]:
                res.status = ERROR
                res.http_status = 500
        if res.status == OK:
            if proc.step < len(proc.plan) and eff.tool == proc.plan[proc.step]:
                proc.step += 1  # the planned step is done; the model moves on
            res.result_tokens = self.tool_tokens[t]
            returns_pii = self.tool_pii[t]
            res.text = self.content.tool_result(rid, eff.tool, returns_pii)
            if returns_pii and not proc.customer_pii:
                proc.customer_pii = self.content.customer_pii(rid)
            if self.injection[rid]:
                proc.saw_injection = True
        kind_code = K_RETRIEVAL if self.tool_retrieval[t] else K_TOOL
        head = pack_head(
            rid, proc.span_index(), kind_code, self.tool_name[t], self.tool_target[t], 0, k
        )
        fcode = self.codes["fault"](fault) if fault else 0
        if fast or hang:
            self._fail_now(proc, res, head, fcode, eff.timeout_s, hang, mark)
            return
        self._serve(proc, res, server, head, fcode, lat, eff.timeout_s, 0, 0, 0.0, mark, NAN)


def broken_args(example: Mapping[str, Any], schema: Mapping[str, Any] | None) -> dict[str, Any]:
    """Arguments that fail `schema`: a required field dropped, else a field of the wrong type."""
    args = dict(example)
    required = list(schema.get("required", [])) if schema else []
    if required and required[0] in args:
        del args[required[0]]
    elif args:
        key = next(iter(args))
        args[key] = [] if not isinstance(args[key], list) else "not-a-list"
    else:
        args["unexpected"] = True
    return args


def plausible_args(example: Mapping[str, Any]) -> dict[str, Any]:
    """Arguments of the right shape with a wrong value: a digit appended to the first string
    (C1042 -> C10420), else the first number plus one; what schema validation lets through."""
    args = dict(example)
    for key, value in args.items():
        if isinstance(value, str):
            args[key] = value + "0"
            return args
    for key, value in args.items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            args[key] = value + 1
            return args
    args["note"] = "x"
    return args


def _window_bounds(windows: tuple[Window, ...]) -> list[tuple[float, float, float, Window]]:
    """Each window as (start_s, end_s, probability, window): what every call checks, read
    once here rather than off the window object at each call."""
    return [(w.start_s, w.end_s, w.probability, w) for w in windows]


def _fail_fast(res: ModelResult | ToolResult, w: Window) -> None:
    """An outage, HTTP error or injected 429: the call fails without using capacity."""
    if w.kind == "rate_limit":
        res.status = RATE_LIMITED
        res.http_status = 429
        if isinstance(res, ModelResult):
            res.retry_after_s = w.retry_after_s
    elif w.kind == "outage":
        res.status = ERROR
        res.http_status = 503
    else:
        res.status = ERROR
        res.http_status = w.status
