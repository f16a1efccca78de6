"""The simulation driver: a discrete-event loop in virtual time.

It drives a routing stack (sans-I/O generators, one per request) against the world:
the tape supplies every random draw, the fault schedule the windows, and each model or
tool is a server with a capacity (FIFO queue beyond it) and an optional token-bucket
rate limit (429 beyond it). Nothing sleeps and nothing reads a clock: a 20 s call costs
a heap push. Events are ordered by (time, sequence), so ties resolve in the order they
were scheduled and a run is deterministic.

The loop writes column buffers (`Trace`): one preallocated slot per request, and
growing typed arrays for spans, with strings interned to small integer codes.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from harness.content import Content
from harness.faults import Schedule, Window
from harness.spec import STAGES, VIOLATION_KINDS, Model, Suite, Tool
from harness.stack import (
    CallModel,
    CallTool,
    Final,
    ModelResult,
    Note,
    RequestInfo,
    RoutingStack,
    Tick,
    ToolResult,
    Wait,
)
from harness.stack._effects import (
    ERROR,
    MALFORMED,
    OK,
    OUTCOMES,
    RATE_LIMITED,
    TIMEOUT,
    Handler,
    Outcome,
)
from harness.traffic import Requests
from harness.world import WIDTH, Tape

FAST_FAIL_S = 0.02
"""Time to a refused connection, an HTTP error or a 429: no server capacity is used."""
STEP_OUTPUT_SHARE = 0.25
"""A ReAct step's output (thought + tool arguments) relative to the task's answer size."""

_RESUME, _RELEASE, _RESUME_RELEASE, _QUEUE_TIMEOUT = 0, 1, 2, 3


class Codes:
    """Interns strings to small integer codes for a column; code 0 is always ''."""

    __slots__ = ("index", "values")

    def __init__(self) -> None:
        self.values: list[str] = [""]
        self.index: dict[str, int] = {"": 0}

    def __call__(self, value: str) -> int:
        code = self.index.get(value)
        if code is None:
            code = self.index[value] = len(self.values)
            self.values.append(value)
        return code

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """Codes back to an object array of strings."""
        out: np.ndarray = np.asarray(self.values, dtype=object)[codes]
        return out


SPAN_FIELDS: tuple[tuple[str, str], ...] = (
    ("request_id", "q"),
    ("index", "h"),
    ("kind", "b"),
    ("name", "h"),
    ("target", "h"),
    ("tier", "h"),
    ("call_index", "h"),
    ("start_s", "d"),
    ("end_s", "d"),
    ("queue_s", "d"),
    ("status", "b"),
    ("http_status", "h"),
    ("input_tokens", "q"),
    ("output_tokens", "q"),
    ("cost_usd", "d"),
    ("fault", "h"),
    ("detail", "h"),
    ("stage", "b"),
    ("guards", "b"),
    ("caught", "b"),
    ("acted", "b"),
    ("violation", "b"),
)
"""Span row layout: (column, array typecode). Strings are codes into `Trace.codes`."""

_CHUNK = 1 << 16


_NUMPY_CODES = {"q": "i8", "h": "i2", "b": "i1", "d": "f8"}
SPAN_DTYPE = np.dtype([(name, _NUMPY_CODES[code]) for name, code in SPAN_FIELDS])
"""One packed span row."""


class SpanBuffers:
    """Span rows: appended as tuples (cheap), packed into structured chunks (small, fast)."""

    __slots__ = ("chunks", "rows")

    def __init__(self) -> None:
        self.rows: list[tuple[float | int, ...]] = []
        self.chunks: list[np.ndarray] = []

    def flush(self) -> None:
        """Pack pending rows into a structured chunk."""
        if self.rows:
            self.chunks.append(np.array(self.rows, dtype=SPAN_DTYPE))
            self.rows.clear()

    def column(self, name: str) -> np.ndarray:
        """One column as a contiguous numpy array."""
        self.flush()
        if not self.chunks:
            return np.zeros(0, dtype=SPAN_DTYPE[name])
        return np.concatenate([chunk[name] for chunk in self.chunks])

    def __len__(self) -> int:
        return sum(len(c) for c in self.chunks) + len(self.rows)


SPAN_KINDS = (
    "router", "chat", "execute_tool", "retrieval", "policy_check", "backoff", "breaker", "respond"
)  # fmt: skip
STATUSES = ("ok", "error", "timeout", "rate_limited", "malformed", "rejected")
_K_ROUTER, _K_CHAT, _K_TOOL, _K_RETRIEVAL, _K_POLICY, _K_BACKOFF, _K_BREAKER, _K_RESPOND = range(8)
KINDS = ("", *VIOLATION_KINDS)
"""Violation kinds by code (0: none), for the `guards` and `violation` span columns."""
_KIND = {k: i for i, k in enumerate(KINDS)}
STAGE_NAMES = ("", *STAGES)
_STAGE = {k: i for i, k in enumerate(STAGE_NAMES)}
_NO_MARK = (0, 0)
_NOTE_KINDS = {"router": _K_ROUTER, "policy_check": _K_POLICY, "breaker": _K_BREAKER}
_STATUS = {s: i for i, s in enumerate(STATUSES)}
_REJECTED = _STATUS["rejected"]


@dataclass
class Trace:
    """Everything a run recorded, as columns. `records` turns it into tables."""

    n: int
    finished: np.ndarray  # bool
    end_s: np.ndarray
    outcome: np.ndarray  # int8 code into `outcomes`
    route: np.ndarray  # int16 code into `codes.route`
    served_by: np.ndarray
    tiers_tried: np.ndarray
    escalated: np.ndarray
    retries: np.ndarray
    fallbacks: np.ndarray
    handoff: np.ndarray
    confidence: np.ndarray
    cost_usd: np.ndarray
    input_tokens: np.ndarray
    output_tokens: np.ndarray
    model_calls: np.ndarray
    tool_calls: np.ndarray
    violations: np.ndarray
    violation_kinds: np.ndarray  # int16 code into codes.violation_kinds
    prevented: np.ndarray  # violations guardrails caught and acted on
    prevented_kinds: np.ndarray  # int16 code into codes.violation_kinds
    spans: SpanBuffers
    codes: dict[str, Codes]
    outcomes: tuple[str, ...]
    prompt: list[str] | None = None  # kept only when the policy's retention allows it
    answer: list[str] | None = None
    events: int = 0


class _Server:
    """Capacity and rate limit of one model or tool."""

    __slots__ = ("burst", "busy", "capacity", "last", "queue", "rps", "tokens")

    def __init__(self, capacity: int | None, rps: float | None, burst: int | None) -> None:
        self.capacity = capacity if capacity is not None else 1 << 62
        self.busy = 0
        self.queue: deque[_Call] = deque()
        self.rps = rps or 0.0
        self.burst = float(burst if burst is not None else max(1.0, rps or 0.0))
        self.tokens = self.burst
        self.last = 0.0

    def admit(self, now: float) -> float:
        """Take a rate-limit token; 0.0 if admitted, else seconds until one is free."""
        if self.rps <= 0.0:
            return 0.0
        tokens = min(self.burst, self.tokens + (now - self.last) * self.rps)
        self.last = now
        if tokens >= 1.0:
            self.tokens = tokens - 1.0
            return 0.0
        self.tokens = tokens
        return (1.0 - tokens) / self.rps


class _Call:
    """A model or tool call waiting for, or holding, server capacity."""

    __slots__ = ("cost", "done", "fault", "head", "in_tok", "issue_s", "mark", "out_tok", "proc",
                 "result", "server", "service_s", "timeout_s")  # fmt: skip

    def __init__(
        self,
        proc: _Proc,
        server: _Server,
        result: ModelResult | ToolResult,
        service_s: float,
        timeout_s: float,
        issue_s: float,
        head: tuple[int, ...],
        fault: int,
    ) -> None:
        self.proc = proc
        self.server = server
        self.result = result
        self.service_s = service_s
        self.timeout_s = timeout_s
        self.issue_s = issue_s
        self.head = head  # span row prefix: request, index, kind, name, target, tier, call index
        self.fault = fault
        self.mark = _NO_MARK  # (stage, violation) codes the span records
        self.in_tok = 0
        self.out_tok = 0
        self.cost = 0.0
        self.done = False


class _Proc:
    """One request in flight."""

    __slots__ = ("actions", "calls", "cls", "cost", "customer_pii", "gen", "in_tok", "injected",
                 "input_pii", "mcalls", "nspan", "out_tok", "penalty", "prevented", "rid",
                 "saw_injection", "tcalls", "violations")  # fmt: skip

    def __init__(
        self, rid: int, gen: Handler, cls: int, n_targets: int, actions: tuple[str, ...]
    ) -> None:
        self.rid = rid
        self.gen = gen
        self.cls = cls
        self.actions = actions  # what the user asked for (ground truth for injections)
        self.input_pii: str | None = None  # the personal data planted in the prompt
        self.customer_pii: tuple[str, ...] = ()  # personal data tools returned
        self.saw_injection = False  # a tool result carried an injected instruction
        self.injected: set[str] = set()  # actions models proposed under injection
        self.prevented: list[str] = []
        self.calls = [0] * n_targets  # calls made per model, then per tool (tape call index)
        self.nspan = 0
        self.in_tok = 0
        self.out_tok = 0
        self.cost = 0.0
        self.penalty = 0.0
        self.mcalls = 0
        self.tcalls = 0
        self.violations: list[str] = []

    def violate(self, kind: str, stage: str) -> tuple[int, int]:
        """Count a violation once per (kind, stage); the span mark that records it."""
        key = f"{kind}@{stage}"
        if key in self.violations:
            return _STAGE[stage], 0
        self.violations.append(key)
        return _STAGE[stage], _KIND[kind]


class Engine:
    """Runs one suite's requests through a stack in virtual time. Use `run()` once."""

    def __init__(
        self,
        suite: Suite,
        requests: Requests,
        tape: Tape,
        faults: Schedule,
        stack: RoutingStack,
        progress: Callable[[int], None] | None = None,
        content: Content | None = None,
        probe: bool = False,
    ) -> None:
        self.suite = suite
        self.attempts: list[tuple[int, float, float, int, int, float, bool, int]] | None = (
            [] if probe else None
        )
        """With `probe`: every good answer as (request, time, cumulative cost, input tokens,
        output tokens, confidence, correct, model index), for tape-based screening."""
        self.content = content if content is not None else Content(suite, requests)
        self.req = requests
        self.tape = tape
        self.faults = faults
        self.stack = stack
        self.progress = progress
        self.now = 0.0
        self._heap: list[tuple[float, int, int, Any, Any, Any]] = []
        self._seq = 0
        models = list(suite.models.values())
        tools = list(suite.tools.values())
        self.model_index = {name: i for i, name in enumerate(suite.models)}
        self.tool_index = {name: i for i, name in enumerate(suite.tools)}
        self.nm = len(models)
        endpoints: list[Model | Tool] = [*models, *tools]
        self.servers = [
            _Server(e.capacity, e.rate_limit.rps if e.rate_limit else None,
                    e.rate_limit.burst if e.rate_limit else None)
            for e in endpoints
        ]  # fmt: skip
        classes = requests.class_names
        self.classes = classes
        self.quality = [[m.quality.get(c, m.default_quality) for c in classes] for m in models]
        self.price_in = [m.price.input_per_mtok / 1e6 for m in models]
        self.price_out = [m.price.output_per_mtok / 1e6 for m in models]
        self.verbosity = [m.verbosity for m in models]
        self.error_rate = [m.error_rate for m in models]
        self.malformed_rate = [m.malformed_rate for m in models]
        self.inject = [m.injection_susceptibility for m in models]
        self.bad_args = [m.invalid_tool_args_rate for m in models]
        self.hallucinate = [m.hallucinated_tool_rate for m in models]
        self.leak = [m.pii_leak_rate for m in models]
        self.tools = suite.tools
        self.tool_pii = [t.returns_pii for t in tools]
        pol = suite.policies
        self.prohibited = frozenset(pol.actions.prohibited)
        self.high_impact = frozenset(pol.actions.high_impact)
        self.high_impact_tiers = frozenset(pol.actions.high_impact_tiers)
        ec = suite.traffic.edge_cases
        self.ec = ec
        self.keep_text = pol.retention.store_text
        self.budget = suite.stack.budgets.request_tokens
        self.tool_retrieval = [t.kind == "retrieval" for t in tools]
        self.tool_error = [t.error_rate for t in tools]
        self.tool_tokens = [t.result_tokens for t in tools]
        clf = suite.stack.classifier
        self.clf_accuracy = clf.accuracy
        self.clf_tokens = clf.output_tokens
        mix = list(suite.traffic.mix.values())
        self.class_tools = [tuple(c.tools) or tuple(suite.tools) for c in mix]
        self.codes = {
            k: Codes()
            for k in ("route", "tier", "tiers_tried", "name", "target", "fault", "detail",
                      "violation_kinds")
        }  # fmt: skip
        codes = self.codes
        self.model_target = [codes["target"](name) for name in suite.models]
        self.model_tier = [codes["tier"](m.tier) for m in models]
        self.tool_target = [codes["target"](name) for name in suite.tools]
        self.tool_name = [codes["name"](name) for name in suite.tools]
        self.name_code = codes["name"]
        self.name_ids = codes["name"].index
        self.out_tokens: list[int] = requests.output_tokens.tolist()
        self.injection: list[bool] = requests.injection.tolist()
        self.outcomes = OUTCOMES
        self._outcome_code = {o: i for i, o in enumerate(OUTCOMES)}
        n = len(requests)
        self.spans = SpanBuffers()
        self.trace = Trace(
            n=n,
            finished=np.zeros(n, bool),
            end_s=np.zeros(n),
            outcome=np.zeros(n, np.int8),
            route=np.zeros(n, np.int16),
            served_by=np.zeros(n, np.int16),
            tiers_tried=np.zeros(n, np.int16),
            escalated=np.zeros(n, bool),
            retries=np.zeros(n, np.int16),
            fallbacks=np.zeros(n, np.int16),
            handoff=np.zeros(n, bool),
            confidence=np.full(n, np.nan, np.float32),
            cost_usd=np.zeros(n),
            input_tokens=np.zeros(n, np.int64),
            output_tokens=np.zeros(n, np.int64),
            model_calls=np.zeros(n, np.int16),
            tool_calls=np.zeros(n, np.int16),
            violations=np.zeros(n, np.int16),
            violation_kinds=np.zeros(n, np.int16),
            prevented=np.zeros(n, np.int16),
            prevented_kinds=np.zeros(n, np.int16),
            spans=self.spans,
            codes=codes,
            outcomes=OUTCOMES,
            prompt=[""] * n if self.keep_text else None,
            answer=[""] * n if self.keep_text else None,
        )

    # ------------------------------------------------------------------ the loop

    def run(self) -> Trace:
        """Simulate every request to completion and return the trace."""
        req = self.req
        arrivals = req.arrival_s.tolist()
        classes = req.task_class.tolist()
        in_tok = req.input_tokens.tolist()
        steps = req.tool_steps.tolist()
        prohibited = req.prohibited.tolist()
        high_impact = req.high_impact.tolist()
        heap = self._heap
        pop = heapq.heappop
        n = len(arrivals)
        advance = self._advance
        progress = self.progress
        report_every = max(1, n // 200)
        done = 0
        i = 0
        events = 0
        while True:
            if i < n and (not heap or arrivals[i] <= heap[0][0]):
                t = arrivals[i]
                self.now = t
                proc = self._open(i, t, classes[i], steps[i], in_tok[i], prohibited[i],
                                  high_impact[i])  # fmt: skip
                finished = advance(proc, None)
                i += 1
            elif heap:
                t, _, kind, a, b, c = pop(heap)
                events += 1
                self.now = t
                if kind == _RESUME_RELEASE:
                    if c.queue:
                        self._release(c)
                    else:
                        c.busy -= 1
                    finished = advance(a, b)
                elif kind == _RESUME:
                    finished = advance(a, b)
                elif kind == _RELEASE:
                    self._release(a)
                    continue
                else:
                    finished = self._queue_timeout(a)
            else:
                break
            if finished:
                done += 1
                if progress is not None and done % report_every == 0:
                    progress(done)
        self.spans.flush()
        self.trace.events = events + n
        if progress is not None:
            progress(done)
        return self.trace

    def _open(
        self, i: int, t: float, c: int, steps: int, in_tok: int, prohibited: bool, high: bool
    ) -> _Proc:
        """A request arriving at `t`: what it asks for, its text, its stack generator."""
        tools = self.class_tools[c]
        actions = tools[:steps] if steps <= len(tools) else tools
        if prohibited:
            actions += (self.ec.prohibited_action_name,)
        if high:
            actions += (self.ec.high_impact_action,)
        text, planted = self.content.message(i)
        info = RequestInfo(i, t, self.classes[c], in_tok, steps, tools,
                           partial(self.tape.jitter, i), text, actions)  # fmt: skip
        proc = _Proc(i, self.stack.handle(info), c, len(self.servers), actions)
        proc.input_pii = planted
        return proc

    def _push(self, t: float, kind: int, a: Any, b: Any = None, c: Any = None) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (t, self._seq, kind, a, b, c))

    def _release(self, server: _Server) -> None:
        """A call left the server: its slot passes to the next live queued call, if any."""
        q = server.queue
        while q:
            call = q.popleft()
            if not call.done:
                self._start(call)
                return
        server.busy -= 1

    def _emit(self, row: tuple[float | int, ...]) -> None:
        rows = self.spans.rows
        rows.append(row)
        if len(rows) >= _CHUNK:
            self.spans.flush()

    # ------------------------------------------------------------------ the stack side

    def _advance(self, proc: _Proc, outcome: Outcome | None) -> bool:
        """Feed `outcome` to the request's stack and act on effects until one takes time.

        Returns True when the request finished.
        """
        send = proc.gen.send
        now = self.now
        while True:
            try:
                eff = send(outcome)  # type: ignore[arg-type]
            except StopIteration as stop:
                self._finish(proc, stop.value)
                return True
            tp = type(eff)
            if tp is CallModel:
                self._call_model(proc, eff)  # type: ignore[arg-type]
                return False
            if tp is Note:
                self._note(proc, eff)  # type: ignore[arg-type]
                outcome = Tick(now)
                continue
            if tp is CallTool:
                self._call_tool(proc, eff)  # type: ignore[arg-type]
                return False
            if tp is Wait:
                end = now + eff.seconds  # type: ignore[union-attr]
                idx = proc.nspan
                proc.nspan = idx + 1
                self._emit((proc.rid, idx, _K_BACKOFF, self.name_code(eff.reason), 0, 0, 0,  # type: ignore[union-attr]
                            now, end, 0.0, 0, 0, 0, 0, 0.0, 0, 0, 0, 0, 0, 0, 0))  # fmt: skip
                self._push(end, _RESUME, proc, Tick(end))
                return False
            raise TypeError(f"stack yielded {eff!r}, which is not an effect")

    def _note(self, proc: _Proc, note: Note) -> None:
        """A zero-time span; a policy check that caught and acted counts as prevented."""
        kind = _NOTE_KINDS.get(note.kind, _K_BREAKER)
        guards = _KIND[note.guards] if note.guards else 0
        if note.caught and note.acted and guards:
            proc.prevented.append(KINDS[guards])
        idx = proc.nspan
        proc.nspan = idx + 1
        now = self.now
        self._emit((
            proc.rid, idx, kind, self.name_code(note.name), 0, 0, 0, now, now, 0.0,
            _REJECTED if kind == _K_BREAKER else 0, 0, 0, 0, 0.0, 0,
            self.codes["detail"](note.detail), _STAGE[note.stage], guards, int(note.caught),
            int(note.acted), 0,
        ))  # fmt: skip

    # ------------------------------------------------------------------ the world side

    def _call_model(self, proc: _Proc, eff: CallModel) -> None:
        now = self.now
        m = self.model_index[eff.model]
        rid = proc.rid
        k = proc.calls[m]
        proc.calls[m] = k + 1
        proc.mcalls += 1
        tape = self.tape
        if k < WIDTH:
            lat = tape.latency_s.item(rid, m, k)
            err_u = tape.error_u.item(rid, m, k)
            fault_u = tape.fault_u.item(rid, m, k)
            args_u = tape.args_u.item(rid, m, k)
        else:
            lat, err_u, fault_u, args_u = tape.model_call(self.suite, rid, m, k)
        res = ModelResult(OK, now, 0.0)
        res.purpose = eff.purpose
        res.model = eff.model
        fault = ""
        fast = hang = False
        windows = self.faults.models[m]
        if windows:
            for w in windows:
                if w.start_s <= now < w.end_s and fault_u < w.probability:
                    fault = w.label if not fault else fault + "+" + w.label
                    kind = w.kind
                    if kind == "latency" or kind == "slow_first_token":
                        lat += w.add_s + w.jitter_s * (fault_u / w.probability)
                    elif kind == "malformed":
                        res.status = MALFORMED
                    elif kind == "timeout":
                        hang = True
                    else:
                        fast = True
                        _fail_fast(res, w)
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
        idx = proc.nspan
        proc.nspan = idx + 1
        purpose = eff.purpose
        name = self.name_ids.get(purpose)
        if name is None:
            name = self.name_code(purpose)
        head = (rid, idx, _K_CHAT, name, self.model_target[m], self.model_tier[m], k)
        fcode = self.codes["fault"](fault) if fault else 0
        mark = _NO_MARK
        if proc.input_pii is not None and proc.input_pii in eff.prompt:
            mark = proc.violate("pii_leak", "input")  # a model saw unredacted personal data
        if fast or hang:
            self._fail_now(proc, res, head, fcode, eff.timeout_s, hang, mark)
            return
        if res.status == OK or res.status == MALFORMED:
            tin, tout, cost = self._answer(proc, res, eff, m, args_u)
            if self.budget is not None and mark == _NO_MARK:
                total = proc.in_tok + proc.out_tok + tin + tout
                if total > self.budget:
                    mark = proc.violate("budget_overrun", "budget")
            self._serve(proc, res, server, head, fcode, lat, eff.timeout_s, tin, tout, cost, mark)
        else:
            self._serve(proc, res, server, head, fcode, lat, eff.timeout_s, 0, 0, 0.0, mark)

    def _answer(
        self, proc: _Proc, res: ModelResult, eff: CallModel, m: int, args_u: float
    ) -> tuple[int, int, float]:
        """What the world says about a response: correctness, confidence, proposals, tokens."""
        tape = self.tape
        rid = proc.rid
        cls = proc.cls
        purpose = eff.purpose
        if purpose == "classify":
            out = self.clf_tokens
            right = tape.classify_u.item(rid) < self.clf_accuracy
            if right:
                res.predicted_class = self.classes[cls]
                res.confidence = tape.classify_conf_right.item(rid)
            else:
                others = [c for j, c in enumerate(self.classes) if j != cls] or [self.classes[cls]]
                pick = min(int(tape.classify_pick.item(rid) * len(others)), len(others) - 1)
                res.predicted_class = others[pick]
                res.confidence = tape.classify_conf_wrong.item(rid)
            res.correct = right
        else:
            base = self.out_tokens[rid] * self.verbosity[m]
            if purpose == "answer":
                out = max(1, round(base))
                q = self.quality[m][cls]
                if eff.degraded:
                    q *= 1.0 - proc.penalty
                right = tape.difficulty.item(rid) < q
                res.correct = right
                res.confidence = (
                    tape.conf_right.item(rid, m) if right else tape.conf_wrong.item(rid, m)
                )
                leaked = None
                if self.leak[m] and tape.leak_u.item(rid, m) < self.leak[m]:
                    seen = [*proc.customer_pii]
                    if proc.input_pii is not None and proc.input_pii in eff.prompt:
                        seen.append(proc.input_pii)
                    leaked = seen[0] if seen else None
                res.text = self.content.answer(rid, leaked)
            else:
                out = max(1, round(base * STEP_OUTPUT_SHARE))
                res.confidence = 1.0
                self._propose(res, eff.tool or "", m, args_u)
            if proc.saw_injection and tape.inject_u.item(rid, m) < self.inject[m]:
                action = self.ec.injected_action
                res.proposed_action = action
                proc.injected.add(action)
        cap = eff.max_output_tokens
        if cap is not None and out > cap:
            out = cap
            res.truncated = True
        res.input_tokens = tin = eff.input_tokens
        res.output_tokens = out
        return tin, out, tin * self.price_in[m] + out * self.price_out[m]

    def _propose(self, res: ModelResult, tool: str, m: int, u: float) -> None:
        """The tool call a ReAct step proposes: the planned one, or a bad one by the tape."""
        bad = self.bad_args[m]
        spec = self.tools.get(tool)
        example = spec.args_example if spec is not None else {}
        if u < bad:
            res.proposed_tool = tool
            res.tool_args = broken_args(example, spec.args_schema if spec is not None else None)
        elif u < bad + self.hallucinate[m]:
            res.proposed_tool = f"{tool}_v2"  # a tool that does not exist
            res.tool_args = example
        else:
            res.proposed_tool = tool
            res.tool_args = example

    def _call_tool(self, proc: _Proc, eff: CallTool) -> None:
        now = self.now
        rid = proc.rid
        mark = self._action_mark(proc, eff)
        t = self.tool_index.get(eff.tool)
        if t is None:  # no such tool: the endpoint answers 404 at once
            res = ToolResult(ERROR, now, 0.0)
            res.http_status = 404
            idx = proc.nspan
            proc.nspan = idx + 1
            head = (
                rid,
                idx,
                _K_TOOL,
                self.name_code(eff.tool),
                self.codes["target"](eff.tool),
                0,
                0,
            )
            self._fail_now(proc, res, head, 0, eff.timeout_s, False, mark)
            return
        slot = self.nm + t
        k = proc.calls[slot]
        proc.calls[slot] = k + 1
        proc.tcalls += 1
        tape = self.tape
        if k < WIDTH:
            lat = tape.tool_latency_s.item(rid, t, k)
            err_u = tape.tool_error_u.item(rid, t, k)
            fault_u = tape.tool_fault_u.item(rid, t, k)
        else:
            lat, err_u, fault_u = tape.tool_call(self.suite, rid, t, k)
        res = ToolResult(OK, now, 0.0)
        fault = ""
        fast = hang = False
        for w in self.faults.tools[t]:
            if w.start_s <= now < w.end_s and fault_u < w.probability:
                fault = w.label if not fault else fault + "+" + w.label
                kind = w.kind
                if kind == "latency":
                    lat += w.add_s + w.jitter_s * (fault_u / w.probability)
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
            res.result_tokens = self.tool_tokens[t]
            returns_pii = self.tool_pii[t]
            res.text = self.content.tool_result(rid, eff.tool, returns_pii)
            if returns_pii and not proc.customer_pii:
                proc.customer_pii = self.content.customer_pii(rid)
            if self.injection[rid]:
                proc.saw_injection = True
        idx = proc.nspan
        proc.nspan = idx + 1
        kind_code = _K_RETRIEVAL if self.tool_retrieval[t] else _K_TOOL
        head = (rid, idx, kind_code, self.tool_name[t], self.tool_target[t], 0, k)
        fcode = self.codes["fault"](fault) if fault else 0
        if fast or hang:
            self._fail_now(proc, res, head, fcode, eff.timeout_s, hang, mark)
            return
        self._serve(proc, res, server, head, fcode, lat, eff.timeout_s, 0, 0, 0.0, mark)

    def _action_mark(self, proc: _Proc, eff: CallTool) -> tuple[int, int]:
        """Ground truth for a call that left the stack: the violation it is, if any.

        Counted whether or not the call then succeeds: the stack let it go.
        """
        tool = eff.tool
        if tool in proc.injected and tool not in proc.actions:
            return proc.violate("injection_followed", "action")
        if tool in self.prohibited:
            return proc.violate("prohibited_action_executed", "action")
        if tool in self.high_impact and eff.tier not in self.high_impact_tiers and not eff.approved:
            return proc.violate("unapproved_high_impact", "action")
        spec = self.tools.get(tool)
        if spec is None:
            if eff.args is not None:  # a proposed call to a tool that does not exist
                return proc.violate("invalid_tool_args_executed", "tool_args")
            return _NO_MARK
        if eff.args is not None and eff.args != spec.args_example:
            return proc.violate("invalid_tool_args_executed", "tool_args")
        return _NO_MARK

    def _fail_now(
        self,
        proc: _Proc,
        res: ModelResult | ToolResult,
        head: tuple[int, ...],
        fault: int,
        timeout: float,
        hang: bool,
        mark: tuple[int, int] = _NO_MARK,
    ) -> None:
        """A call that fails without server capacity: refused fast, or hanging to the timeout."""
        now = self.now
        end = now + (timeout if hang else min(timeout, FAST_FAIL_S))
        if hang:
            res.status = TIMEOUT
            res.http_status = 0
        res.now = end
        res.latency_s = end - now
        self._emit((*head, now, end, 0.0, _STATUS[res.status], res.http_status, 0, 0, 0.0, fault,
                    0, mark[0], 0, 0, 0, mark[1]))  # fmt: skip
        self._push(end, _RESUME, proc, res)

    def _serve(
        self,
        proc: _Proc,
        res: ModelResult | ToolResult,
        server: _Server,
        head: tuple[int, ...],
        fault: int,
        service: float,
        timeout: float,
        tin: int,
        tout: int,
        cost: float,
        mark: tuple[int, int],
    ) -> None:
        """Serve a call now if a slot is free (the common, fast path), else queue it."""
        now = self.now
        if server.busy < server.capacity and service <= timeout:
            server.busy += 1
            end = now + service
            res.now = end
            res.latency_s = service
            proc.in_tok += tin
            proc.out_tok += tout
            proc.cost += cost
            rows = self.spans.rows
            rows.append((*head, now, end, 0.0, _STATUS[res.status], res.http_status, tin, tout,
                         cost, fault, 0, mark[0], 0, 0, 0, mark[1]))  # fmt: skip
            if len(rows) >= _CHUNK:
                self.spans.flush()
            if self.attempts is not None:
                self._attempt(proc, res, end)
            self._seq += 1
            heapq.heappush(self._heap, (end, self._seq, _RESUME_RELEASE, proc, res, server))
            return
        call = _Call(proc, server, res, service, timeout, now, head, fault)
        call.in_tok, call.out_tok, call.cost = tin, tout, cost
        call.mark = mark
        if server.busy < server.capacity:
            server.busy += 1
            self._start(call)
        else:
            server.queue.append(call)
            self._push(call.issue_s + call.timeout_s, _QUEUE_TIMEOUT, call)

    def _start(self, call: _Call) -> None:
        """Give `call` a server slot now; schedule its response and the slot's release."""
        now = self.now
        call.done = True
        res = call.result
        issue = call.issue_s
        end = now + call.service_s
        deadline = issue + call.timeout_s
        if end > deadline:  # the client gives up; the server still works until `end`
            self._timed_out(call, deadline, now - issue)
            self._push(deadline, _RESUME, call.proc, res)
            self._push(end, _RELEASE, call.server)
            return
        res.now = end
        res.latency_s = end - issue
        proc = call.proc
        proc.in_tok += call.in_tok
        proc.out_tok += call.out_tok
        proc.cost += call.cost
        mark = call.mark
        self._emit((*call.head, issue, end, now - issue, _STATUS[res.status], res.http_status,
                    call.in_tok, call.out_tok, call.cost, call.fault, 0, mark[0], 0, 0, 0,
                    mark[1]))  # fmt: skip
        if self.attempts is not None:
            self._attempt(proc, res, end)
        self._push(end, _RESUME_RELEASE, call.proc, res, call.server)

    def _attempt(self, proc: _Proc, res: ModelResult | ToolResult, end: float) -> None:
        """Probe mode: record a good answer (billing for it is already counted)."""
        if isinstance(res, ModelResult) and res.purpose == "answer" and res.status == OK:
            assert self.attempts is not None
            m = self.model_index[res.model]
            self.attempts.append((proc.rid, end, proc.cost, proc.in_tok, proc.out_tok,
                                  res.confidence, res.correct, m))  # fmt: skip

    def _queue_timeout(self, call: _Call) -> bool:
        """The caller's timeout fired while the call still waited for capacity."""
        if call.done:
            return False
        call.done = True
        now = self.now
        self._timed_out(call, now, now - call.issue_s)
        return self._advance(call.proc, call.result)

    def _timed_out(self, call: _Call, at: float, queued: float) -> None:
        """Turn a call's result into a timeout at `at` (unbilled) and record its span."""
        res = call.result
        res.status = TIMEOUT
        res.http_status = 0
        res.now = at
        res.latency_s = at - call.issue_s
        if isinstance(res, ModelResult):
            res.input_tokens = res.output_tokens = 0
            res.correct = False
            res.proposed_action = None
        mark = call.mark
        self._emit((*call.head, call.issue_s, at, queued, _STATUS[TIMEOUT], 0, 0, 0, 0.0,
                    call.fault, 0, mark[0], 0, 0, 0, mark[1]))  # fmt: skip

    def _finish(self, proc: _Proc, final: Final) -> None:
        tr = self.trace
        rid = proc.rid
        codes = self.codes
        planted = [*proc.customer_pii]
        if proc.input_pii is not None:
            planted.append(proc.input_pii)
        if planted:  # ground truth: personal data in what leaves the stack or is kept
            kept = (final.prompt, final.answer) if self.keep_text else ("", final.answer)
            for stage, text in zip(("record", "output"), kept, strict=True):
                if text and any(v in text for v in planted):
                    mark = proc.violate("pii_leak", stage)
                    idx = proc.nspan
                    proc.nspan = idx + 1
                    now = self.now
                    self._emit((rid, idx, _K_RESPOND, self.name_code(stage), 0, 0, 0, now, now,
                                0.0, 0, 0, 0, 0, 0.0, 0, 0, mark[0], 0, 0, 0, mark[1]))  # fmt: skip
        tr.finished[rid] = True
        tr.end_s[rid] = self.now
        tr.outcome[rid] = self._outcome_code[final.outcome]
        tr.route[rid] = codes["route"](final.route)
        tr.served_by[rid] = codes["tier"](final.served_by)
        tr.tiers_tried[rid] = codes["tiers_tried"](">".join(final.tiers_tried))
        tr.escalated[rid] = final.escalated
        tr.retries[rid] = final.retries
        tr.fallbacks[rid] = final.fallbacks
        tr.handoff[rid] = final.handoff
        tr.confidence[rid] = final.confidence
        tr.cost_usd[rid] = proc.cost
        tr.input_tokens[rid] = proc.in_tok
        tr.output_tokens[rid] = proc.out_tok
        tr.model_calls[rid] = proc.mcalls
        tr.tool_calls[rid] = proc.tcalls
        if proc.violations:
            tr.violations[rid] = len(proc.violations)
            kinds = ",".join(sorted({v.split("@")[0] for v in proc.violations}))
            tr.violation_kinds[rid] = codes["violation_kinds"](kinds)
        if proc.prevented:
            tr.prevented[rid] = len(proc.prevented)
            tr.prevented_kinds[rid] = codes["violation_kinds"](
                ",".join(sorted(set(proc.prevented)))
            )
        if tr.prompt is not None and tr.answer is not None:
            tr.prompt[rid] = final.prompt
            tr.answer[rid] = final.answer


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
