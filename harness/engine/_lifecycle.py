"""The request lifecycle: open a request, drive its stack, close its record.

`Engine` is the simulation driver: requests arrive at their sampled times, each gets
its stack generator, and effects are acted on until one takes time (a call, a wait).
Zero-time notes (routing decisions, policy checks, breaker rejections) become spans at
once. A handoff queues the request for the human team (a server with no timeout). When
the generator returns its `Final`, the request's row is written.
"""

from __future__ import annotations

import gc
import math
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
from mypy_extensions import mypyc_attr

from harness.content import Content
from harness.engine._calls import Calls
from harness.engine._kernel import ARRIVE, RESUME
from harness.engine._request import Proc
from harness.engine._servers import Server
from harness.engine._trace import (
    K_BACKOFF,
    K_BREAKER,
    K_HANDOFF,
    K_POLICY,
    K_ROUTER,
    KIND,
    KINDS,
    NAN,
    NO_MARK,
    REJECTED,
    STAGE,
    Columns,
    Trace,
    pack_head,
    pack_span,
)
from harness.faults import Schedule
from harness.spec import Model, Suite, Tool
from harness.stack import (
    CallModel,
    CallTool,
    Final,
    Handoff,
    HumanResult,
    ModelResult,
    Note,
    RequestInfo,
    RoutingStack,
    Tick,
    Wait,
)
from harness.stack._effects import OK, OUTCOMES, Outcome
from harness.traffic import Requests
from harness.world import Tape

_NOTE_KINDS = {"router": K_ROUTER, "policy_check": K_POLICY, "breaker": K_BREAKER}
GC_THRESHOLD = 50_000
"""Allocations between young-generation collections while `Engine.run` loops (Python's
default is 700). The loop allocates a great deal and frees it by reference count (a run
makes no reference cycles of its own), so frequent collections would only walk the
requests in flight; any cycle a stack makes is still collected, a little later."""


@mypyc_attr(allow_interpreted_subclasses=True)  # the live driver is a Python subclass
class Engine(Calls):
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
        super().__init__()
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
        prepare = getattr(stack, "prepare_texts", None)
        if prepare is not None:  # the stack scans texts ahead, a chunk of requests at a time
            self.content.on_texts = prepare
        self.progress = progress
        self.model_index = {name: i for i, name in enumerate(suite.models)}
        self.tool_index = {name: i for i, name in enumerate(suite.tools)}
        self.nm = len(suite.models)
        endpoints: list[Model | Tool] = [*suite.models.values(), *suite.tools.values()]
        self.servers = [
            Server(e.capacity, e.rate_limit.rps if e.rate_limit else None,
                   e.rate_limit.burst if e.rate_limit else None)
            for e in endpoints
        ]  # fmt: skip
        self.classes = requests.class_names
        self.tools = suite.tools
        self.ec = suite.traffic.edge_cases
        pol = suite.policies
        self.keep_text = pol.retention.store_text
        self.budget = suite.stack.budgets.request_tokens
        mix = list(suite.traffic.mix.values())
        self.class_tools = [tuple(c.tools) or tuple(suite.tools) for c in mix]
        self.all_tools = tuple(suite.tools)
        self.req_evasive: list[bool] = requests.evasive.tolist()
        self.outcomes = OUTCOMES
        self.judge = True
        """Judge delivered answers by the world's ground truth (a live run judges its own)."""
        self._outcome_code = {o: i for i, o in enumerate(OUTCOMES)}
        self.trace = Trace.empty(len(requests), OUTCOMES, self.keep_text)
        self.columns = Columns(self.trace)
        self.spans = self.trace.spans
        self.codes = self.trace.codes
        self.name_code = self.codes["name"]
        self.name_ids = self.name_code.index
        self.req_output_tokens = requests.output_tokens.tolist()
        self.req_injection = requests.injection.tolist()
        self._init_calls(suite)
        self._init_scoring(suite)
        team = suite.handoff
        self.human = Server(team.capacity, None, None)
        self.handoff_cost = team.cost_usd
        self.handoff_quality = team.quality
        self.humans: dict[int, HumanResult] = {}
        """Requests a human has taken, until their row is written."""
        self._request_columns: tuple[list[Any], ...] = ()
        """What `_open` takes from the requests (class, tool steps, input tokens, prohibited,
        high impact), as lists, for `run`."""
        self._first_turns: list[int] | None = None
        """Closed-loop sessions: the request of each session's first turn, in arrival order."""
        self._done = 0
        self._report_every = 1

    # ------------------------------------------------------------------ the loop

    def run(self) -> Trace:
        """Simulate every request to completion and return the trace."""
        req = self.req
        n = len(req)
        self._request_columns = (req.task_class.tolist(), req.tool_steps.tolist(),
                                 req.input_tokens.tolist(), req.prohibited.tolist(),
                                 req.high_impact.tolist())  # fmt: skip
        self._report_every = max(1, n // 200)
        plan = req.sessions
        if plan is not None and plan.closed:  # first turns now, later turns as ARRIVE events
            first = np.flatnonzero(plan.turn == 0)
            self._first_turns = first.tolist()
            self.trace.arrival_s = np.full(n, np.nan)
            arrivals = req.arrival_s[first].tolist()
        else:
            arrivals = req.arrival_s.tolist()
        threshold = gc.get_threshold()
        freeze = gc.isenabled() and gc.get_freeze_count() == 0
        if freeze:  # what exists now outlives the run: no collection need look at it again
            gc.freeze()
        if threshold[0]:  # 0: automatic collection is off, and stays off
            gc.set_threshold(max(threshold[0], GC_THRESHOLD), *threshold[1:])
        try:
            events = self._loop(arrivals)
        finally:
            gc.set_threshold(*threshold)
            if freeze:
                gc.unfreeze()
        self.draws.release()  # whoever drops the tape now frees its arrays
        self.spans.flush()
        self.trace.events = events + n
        if self.progress is not None:
            self.progress(self._done)
        return self.trace

    def _arrival(self, i: int) -> bool:
        """The i-th sampled arrival: request i, or with closed-loop sessions the i-th
        session's first turn."""
        if self._first_turns is not None:
            return self._arrive(self._first_turns[i])
        return self._begin(i)

    def _finished(self) -> None:
        done = self._done = self._done + 1
        if self.progress is not None and done % self._report_every == 0:
            self.progress(done)

    def _arrive(self, rid: int) -> bool:
        """A session's turn arrives now (its time was decided by the run)."""
        assert self.trace.arrival_s is not None
        self.trace.arrival_s[rid] = self.now
        return self._begin(rid)

    def _begin(self, rid: int) -> bool:
        """Open request `rid` now and drive its stack until it waits or finishes."""
        classes, steps, in_tok, prohibited, high = self._request_columns
        proc = self._open(rid, self.now, classes[rid], steps[rid], in_tok[rid], prohibited[rid],
                          high[rid])  # fmt: skip
        return self._advance(proc, None)

    def _next_turn(self, rid: int) -> None:
        """Closed loop: the session's next turn arrives after this answer plus the user's think
        time, unless this was its last turn or the user leaves after a failed turn."""
        plan = self.req.sessions
        assert plan is not None and plan.think_s is not None and plan.abandon_u is not None
        nxt = rid + 1
        if nxt >= len(plan.turn) or plan.turn[nxt] == 0:
            return
        if not self.trace.success[rid] and plan.abandon_u[nxt] < plan.abandon:
            return
        self._push(self.now + float(plan.think_s[nxt]), ARRIVE, nxt)

    def _open(
        self, i: int, t: float, c: int, steps: int, in_tok: int, prohibited: bool, high: bool
    ) -> Proc:
        """A request arriving at `t`: its text and metadata for the stack; its task (class,
        planned tool steps, the actions it asks for) kept here, for the world and scoring."""
        tools = self.class_tools[c]
        plan = tuple(tools[s % len(tools)] for s in range(steps)) if tools else ()
        actions: tuple[str, ...] = ()
        if prohibited:
            actions += (self.ec.prohibited_action_name,)
        if high:
            actions += (self.ec.high_impact_action,)
        text, planted = self.content.message(i)
        info = RequestInfo(i, t, in_tok, self.all_tools, partial(self.tape.jitter, i), text,
                           self.metadata(i))  # fmt: skip
        proc = Proc(i, self.stack.handle(info), c, len(self.servers), actions, plan)
        proc.input_pii = planted
        proc.evasive = self.req_evasive[i]
        return proc

    def metadata(self, i: int) -> dict[str, str]:
        """What request i carries besides its text (a log's tenant and session)."""
        extra = self.req.extra
        out: dict[str, str] = {k: str(extra[k][i]) for k in ("tenant", "session") if k in extra}
        plan = self.req.sessions
        if plan is not None and "session" not in out:
            out["session"] = str(plan.session[i])
        return out

    # ------------------------------------------------------------------ the stack side

    def _advance(self, proc: Proc, outcome: Outcome | None) -> bool:
        """Feed `outcome` to the request's stack and act on effects until one takes time.

        Returns True when the request finished.
        """
        send = proc.send
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
                reason = self.name_code(eff.reason)  # type: ignore[union-attr]
                self.spans.add(pack_span(proc.rid, proc.span_index(), K_BACKOFF, reason, 0, 0, 0,
                                         now, end, 0.0, 0, 0, 0, 0, 0.0, 0, 0, 0, 0, 0, 0, 0, NAN,
                                         0))  # fmt: skip
                self._push(end, RESUME, proc, Tick(end))
                return False
            if tp is Handoff:
                self._handoff(proc, eff)  # type: ignore[arg-type]
                return False
            raise TypeError(f"stack yielded {eff!r}, which is not an effect")

    def _handoff(self, proc: Proc, eff: Handoff) -> None:
        """Queue the request for a human: served for its drawn time, at the team's price."""
        rid = proc.rid
        res = HumanResult(OK, self.now, 0.0)
        self.humans[rid] = res
        head = pack_head(rid, proc.span_index(), K_HANDOFF, self.name_code(eff.reason), 0, 0, 0)
        service = self.tape.handoff_s.item(rid)
        self._serve(proc, res, self.human, head, 0, service, math.inf, 0, 0, self.handoff_cost,
                    NO_MARK)  # fmt: skip

    def _note(self, proc: Proc, note: Note) -> None:
        """A zero-time span; a policy check that caught and acted counts as prevented."""
        kind = _NOTE_KINDS.get(note.kind, K_BREAKER)
        guards = KIND[note.guards] if note.guards else 0
        if note.caught and note.acted and guards:
            proc.prevented.append(KINDS[guards])
        now = self.now
        self.spans.add(pack_span(
            proc.rid, proc.span_index(), kind, self.name_code(note.name), 0, 0, 0, now, now, 0.0,
            REJECTED if kind == K_BREAKER else 0, 0, 0, 0, 0.0, 0,
            self.codes["detail"](note.detail), STAGE[note.stage], guards, int(note.caught),
            int(note.acted), 0, NAN, 0,
        ))  # fmt: skip

    def _delivered(self, proc: Proc, res: ModelResult, end: float) -> None:
        """A good answer: note when its first token came and whether it is right (the world
        judged it in `_answer`); in probe mode, record it."""
        if res.purpose != "answer" or res.status != OK:
            return
        m = self.model_index[res.model]
        # a right answer to a request that should have been refused is still a failure
        right = proc.right and self.ec.prohibited_action_name not in proc.actions
        tier = self.model_tier_name[m]
        proc.answers[tier] = (end - res.latency_s + res.ttft_s, right)
        if right and not proc.right_tier:
            proc.right_tier = tier
        if self.attempts is not None:
            self.attempts.append((proc.rid, end, proc.cost, proc.in_tok, proc.out_tok,
                                  res.confidence, right, m))  # fmt: skip

    def _finish(self, proc: Proc, final: Final) -> None:
        """Write the request's row. Integer columns start at zero, so a zero is not written."""
        tr = self.columns  # the trace's columns, as views
        rid = proc.rid
        at: Any = rid  # the row index, boxed once for every view (compiled)
        codes = self.codes
        self._output_leaks(proc, final)
        tr.finished[at] = True
        tr.end_s[at] = self.now
        outcome = final.outcome
        answered = proc.answers.get(final.served_by)
        prohibited = self.ec.prohibited_action_name in proc.actions
        if outcome in ("success", "wrong") and self.judge:  # judge the answer delivered
            right = answered is not None and answered[1] and not prohibited
            outcome = "success" if right else "wrong"
        tr.outcome[at] = self._outcome_code[outcome]
        tr.success[at] = outcome == "success" or (outcome == "blocked" and prohibited)
        tr.route[at] = codes["route"](final.route)
        tr.served_by[at] = codes["tier"](final.served_by)
        tr.tiers_tried[at] = codes["tiers_tried"](">".join(final.tiers_tried))
        if final.escalated:
            tr.escalated[at] = final.escalated
        if final.escalated and outcome == "wrong" and not prohibited:
            tr.escalation_harm[at] = proc.right_tier not in ("", final.served_by)
        if final.retries:
            tr.retries[at] = final.retries
        if final.fallbacks:
            tr.fallbacks[at] = final.fallbacks
        if final.handoff:
            tr.handoff[at] = final.handoff
        human = self.humans.pop(rid, None)
        if human is not None:  # the human's answer is judged like a model's
            tr.handoff_wait_s[at] = human.wait_s
            if outcome == "handoff":
                tr.success[at] = self.tape.handoff_u.item(rid) < self.handoff_quality
        tr.confidence[at] = final.confidence
        tr.cost_usd[at] = proc.cost
        tr.input_tokens[at] = proc.in_tok
        tr.output_tokens[at] = proc.out_tok
        if proc.cached:
            tr.cached_input_tokens[at] = proc.cached
        tr.model_calls[at] = proc.mcalls
        if proc.tcalls:
            tr.tool_calls[at] = proc.tcalls
        if answered is not None:
            tr.first_token_s[at] = answered[0]
        if proc.violations:
            tr.violations[at] = len(proc.violations)
            kinds = ",".join(sorted({v.split("@")[0] for v in proc.violations}))
            tr.violation_kinds[at] = codes["violation_kinds"](kinds)
        if proc.prevented:
            tr.prevented[at] = len(proc.prevented)
            tr.prevented_kinds[at] = codes["violation_kinds"](",".join(sorted(set(proc.prevented))))
        trace = self.trace
        if trace.prompt is not None and trace.answer is not None:
            trace.prompt[rid] = final.prompt
            trace.answer[rid] = final.answer
        if trace.arrival_s is not None:
            self._next_turn(rid)
