"""The live driver: the same routing stack against real endpoints, recorded or replayed.

Models with `provider: openai` (any OpenAI-compatible chat-completions server) or
`provider: anthropic` (the Messages API) are called over HTTP with httpx; tools run as
Python callables or HTTP endpoints. The stack is the very same sans-I/O generator the
simulation drives, and the agent loop is real: the suite's tools go on the wire (JSON
Schema from `args_schema`), the model's tool calls come back to the stack as proposed steps
(checked by the same guardrails as in simulation), the tools run, and their results go back
to the model (`role: tool` messages, or `tool_result` blocks) until it answers or the stack's
step cap ends the loop. Answers are streamed when the model says `stream: true`.

Time is per request: a request starts at its arrival time (`pace="real"`: sent at that time
on the wall clock) and its clock advances by each call's latency, measured live or read back
from the timings recorded beside a cassette, so a replay gives exactly the records of the
recording — failures included: a timeout, a refused connection or a reset is recorded in the
timings and replayed as the same failure after the same time. Injected faults still apply
on top, decided by the world tape's rolls.

Each chat span's `detail` says what a client learns beyond the status: the error's type and
message, the confidence's source (`confidence=logprobs|self_report|missing`), the model
that answered when it is not the one asked (`answered_by=`, priced as that model when the
suite has it), `usage=estimated`, a refusal, a gateway's own fallbacks, the per-token time
of a stream (`tpot_ms=`), and for a 429 the wait and which header set it.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import re
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any, NamedTuple

import httpx

from harness.content import Content
from harness.engine import K_CHAT, K_RETRIEVAL, K_TOOL, NAN, STATUS, Engine, Proc, Trace
from harness.errors import EvalxError
from harness.faults import Schedule, Window
from harness.live import _anthropic, _openai
from harness.live._cassette import CALL_HEADER, CassetteTransport, NotRecorded
from harness.live._wire import (
    SELF_REPORT,
    Prompt,
    Reply,
    Step,
    estimate_tokens,
    events_in,
    logprob_confidence,
    same_model,
    self_report,
)
from harness.requests_file import failed_assertions, load, verdict_text
from harness.spec import Suite
from harness.stack import (
    CallModel,
    CallTool,
    Final,
    Handoff,
    HumanResult,
    ModelResult,
    Note,
    RoutingStack,
    Tick,
    ToolResult,
    Wait,
)
from harness.stack._effects import ERROR, MALFORMED, OK, RATE_LIMITED, TIMEOUT
from harness.traffic import Requests
from harness.world import Tape

__all__ = ["CALL_HEADER", "LiveDriver", "LiveError", "Timing"]

FAILURES = ("timeout", "connect_error", "reset")
"""Transport failures a recording keeps (no HTTP response to put in a cassette)."""
_NO_ARGS: dict[str, Any] = {"type": "object", "properties": {}}


class LiveError(EvalxError):
    """A live or replayed run that cannot proceed (no endpoint, no key, no cassette)."""


class Timing(NamedTuple):
    """One recorded call: its latency, when each stream event arrived (seconds from the
    start), and a transport failure (`FAILURES`, '' for a response) with its message."""

    latency_s: float
    events_s: tuple[float, ...] = ()
    failure: str = ""
    detail: str = ""


class Exchange(NamedTuple):
    """One HTTP call's fate: a response (status, headers, body) or a transport failure."""

    status: int
    headers: dict[str, str]
    content: bytes
    latency_s: float
    events_s: tuple[float, ...] = ()
    failure: str = ""
    detail: str = ""
    fault: str = ""


class _Conversation:
    """One request's agent loop: the tool steps so far, and why the last one was not run."""

    __slots__ = ("note", "steps")

    def __init__(self) -> None:
        self.steps: list[Step] = []
        self.note = ""


class LiveDriver(Engine):
    """Drives the stack with real calls; reuses the engine's records and bookkeeping."""

    def __init__(
        self,
        suite: Suite,
        requests: Requests,
        tape: Tape,
        faults: Schedule,
        stack: RoutingStack,
        *,
        concurrency: int = 8,
        timings: dict[str, list[Timing]] | None = None,
        replaying: bool = False,
        transport: CassetteTransport | None = None,
        pace: str = "asap",
        order: list[int] | None = None,
    ) -> None:
        super().__init__(suite, requests, tape, faults, stack, content=Content(suite, requests))
        for name, m in suite.models.items():
            if m.provider not in ("openai", "anthropic") or not m.base_url:
                raise LiveError(
                    f"models.{name}: a live run needs provider: openai or anthropic and a "
                    "base_url (simulated models have no endpoint)"
                )
        self.judge = False  # answers are judged by the request's assertions (`_judged`)
        self.concurrency = max(1, concurrency)
        self.replaying = replaying
        self.pace = pace
        self.transport = transport
        self.timings: dict[str, list[Timing]] = timings if timings is not None else {}
        self._seen: dict[str, int] = {}
        self.verdicts: dict[int, str] = {}
        """Per request judged by a requests file: `verdict_text` of its assertions."""
        self.file_rows = (  # python assertions imported now: a bad one fails before any call
            load(suite.traffic.file, requests.class_names, code=True)
            if suite.traffic.file
            else None
        )
        self.answers: dict[int, str] = {}
        self.conversations: dict[int, _Conversation] = {}
        self.wire_tools = [(n, t.description, t.args_schema or _NO_ARGS)
                           for n, t in suite.tools.items()]  # fmt: skip
        self.server_names = [(m.model or n, i) for i, (n, m) in enumerate(suite.models.items())]
        self.model_specs = list(suite.models.values())
        self._functions: dict[str, Callable[[dict[str, Any]], Any]] = {}
        self.order: list[int] = [] if order is None else order
        """Which request stepped its stack, step by step: recorded, so that a replay steps
        the stacks in the same interleaving (they share retry budgets and breakers)."""
        self._replay_order = replaying and order is not None
        self._position = 0

    # ------------------------------------------------------------------ the loop

    def run(self) -> Trace:
        """Every request to completion (concurrently, up to `concurrency` at a time)."""
        asyncio.run(self._all())
        self.spans.flush()
        return self.trace

    async def _all(self) -> None:
        limits = httpx.Limits(max_connections=self.concurrency)
        inner: httpx.AsyncBaseTransport = self.transport or httpx.AsyncHTTPTransport(limits=limits)
        async with httpx.AsyncClient(transport=inner, timeout=None) as client:
            self.client = client
            self._turns = asyncio.Condition()
            width = len(self.req) if self._replay_order else 1 if self.replaying else None
            gate = asyncio.Semaphore(width or self.concurrency)
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            real = self.pace == "real" and not self.replaying

            async def one(i: int) -> None:
                arrival = float(self.req.arrival_s[i])
                if real:
                    await asyncio.sleep(max(0.0, t0 + arrival - loop.time()))
                async with gate:  # waiting for a slot is part of the request's latency
                    start = max(arrival, loop.time() - t0) if real else arrival
                    await self._request(i, start)

            await asyncio.gather(*(one(i) for i in range(len(self.req))))

    async def _request(self, i: int, now: float) -> None:
        req = self.req
        proc = self._open(i, float(req.arrival_s[i]), int(req.task_class[i]),
                          int(req.tool_steps[i]), int(req.input_tokens[i]),
                          bool(req.prohibited[i]), bool(req.high_impact[i]))  # fmt: skip
        proc.plan = ()  # the model decides which tools to call, not the traffic mix
        self.conversations[i] = _Conversation()
        gen = proc.gen
        outcome: Any = None
        while True:
            await self._turn(i)
            try:
                eff = gen.send(outcome)
            except StopIteration as stop:
                self.now = now
                self._finish(proc, self._judged(i, stop.value))
                self.conversations.pop(i, None)
                return
            if isinstance(eff, CallModel):
                outcome = await self._model(proc, eff, now)
                now = outcome.now
            elif isinstance(eff, CallTool):
                outcome = await self._tool(proc, eff, now)
                now = outcome.now
            elif isinstance(eff, Wait):
                if not self.replaying:
                    await asyncio.sleep(eff.seconds)
                end = now + eff.seconds
                self.spans.emit((i, proc.span_index(), 5, self.name_code(eff.reason), 0, 0, 0, now,
                                 end, 0.0, 0, 0, 0, 0, 0.0, 0, 0, 0, 0, 0, 0, 0, NAN,
                                 0))  # fmt: skip
                now = end
                outcome = Tick(now)
            elif isinstance(eff, Note):
                self.now = now
                self._note(proc, eff)
                if eff.kind == "policy_check" and eff.caught and eff.acted:
                    self.conversations[i].note = f"{eff.name}: {eff.detail}"
                outcome = Tick(now)
            elif isinstance(eff, Handoff):  # no human team in a live run: handed off at once
                outcome = HumanResult(OK, now, 0.0)
            else:
                raise TypeError(f"stack yielded {eff!r}, which is not an effect")

    async def _turn(self, i: int) -> None:
        """Before request i steps its stack: recording, note it; replaying, wait for the
        step the recording made next (the same interleaving, so the same shared state)."""
        if not self._replay_order:
            if not self.replaying:
                self.order.append(i)
            return
        async with self._turns:
            await self._turns.wait_for(
                lambda: self._position >= len(self.order) or self.order[self._position] == i
            )
            self._position += 1
            self._turns.notify_all()

    def _judged(self, i: int, final: Final) -> Final:
        """With a requests file, assertions on the answer decide success."""
        if self.file_rows is None or final.outcome not in ("success", "wrong"):
            return final
        answer = final.answer or self.answers.get(i, "")
        failed = failed_assertions(self.file_rows[i], answer)
        self.verdicts[i] = verdict_text(failed)
        return final._replace(outcome="wrong" if failed else "success")

    # ------------------------------------------------------------------ models

    def _prompt(self, proc: Proc, eff: CallModel) -> Prompt:
        spec = self.suite.models[eff.model]
        conv = self.conversations[proc.rid]
        if conv.steps and conv.steps[-1].result is None:  # the stack did not run the call
            last = conv.steps[-1]
            last.result = f"not run: {conv.note or 'refused by policy'}"
            last.failed = True
        prompt = Prompt(model=spec.model or eff.model, system="", user=eff.prompt,
                        max_tokens=eff.max_output_tokens, stream=spec.stream,
                        logprobs=spec.logprobs and spec.provider == "openai")  # fmt: skip
        if eff.purpose == "classify":
            classes = ", ".join(self.classes)
            prompt.system = (f"Classify the user's request as exactly one of: {classes}. Reply "
                             f"with the class name only. {SELF_REPORT}")  # fmt: skip
            return prompt
        prompt.system = f"{eff.system}\n\n{SELF_REPORT}" if eff.system else SELF_REPORT
        prompt.steps = list(conv.steps)
        prompt.tools = self.wire_tools
        prompt.tool_choice = "none" if eff.purpose == "answer" else "auto"
        return prompt

    async def _model(self, proc: Proc, eff: CallModel, now: float) -> ModelResult:
        m = self.model_index[eff.model]
        spec = self.suite.models[eff.model]
        wire = _anthropic if spec.provider == "anthropic" else _openai
        k = proc.calls[m]
        proc.calls[m] = k + 1
        proc.mcalls += 1
        prompt = self._prompt(proc, eff)
        key = None
        if spec.api_key_env:
            key = os.environ.get(spec.api_key_env)
            if key is None and not self.replaying:
                raise LiveError(f"models.{eff.model}.api_key_env: ${spec.api_key_env} is not set")
            key = key or "replay"
        headers = {"content-type": "application/json", CALL_HEADER: f"{proc.rid}.{eff.model}.{k}",
                   **wire.headers(key)}  # fmt: skip
        url = f"{spec.base_url.rstrip('/')}{wire.path()}"  # type: ignore[union-attr]
        fault_u = self.tape.fault_u.item(proc.rid, m, min(k, self.tape.fault_u.shape[2] - 1))
        modelled = None
        if self.replaying and spec.replay_latency == "model":
            modelled = self.tape.model_call(self.suite, proc.rid, m, k)[0]
        ex = await self._send(url, wire.body(prompt), headers, eff.timeout_s,
                              self.faults.models[m], now, fault_u, modelled)  # fmt: skip
        if ex.failure:
            reply = Reply(
                TIMEOUT if ex.failure == "timeout" else ERROR,
                0,
                error=f"{ex.failure}: {ex.detail}" if ex.detail else ex.failure,
            )
        else:
            reply = wire.parse(ex.status, ex.headers, ex.content, spec.stream, prompt.text())
        latency = ex.latency_s
        res = ModelResult(reply.status, now + latency, latency)
        res.http_status = reply.http_status
        res.model = eff.model
        res.purpose = "classify" if eff.purpose == "classify" else "answer"
        notes = [f"error={reply.error}"] if reply.error else []
        tin = tout = 0
        cost = 0.0
        if reply.status == RATE_LIMITED:
            res.retry_after_s = reply.retry_after_s
        if reply.status == OK:
            priced, answered = self._priced(m, reply.model, reply.gateway_model)
            notes += answered
            tin, tout = reply.input_tokens or 0, reply.output_tokens or 0
            res.input_tokens, res.output_tokens = tin, tout
            res.cached_input_tokens = reply.cached_input_tokens
            proc.cached += reply.cached_input_tokens
            cost = self._cost(priced, tin, tout, reply.cached_input_tokens)
            notes += self._reply(proc, eff, res, reply)
        notes += reply.notes
        ttft = latency
        if spec.stream and ex.events_s and reply.output_events:
            times = [ex.events_s[j] for j in reply.output_events if j < len(ex.events_s)]
            if times:
                ttft = min(times[0], latency)
                if len(times) > 1:
                    notes.append(f"tpot_ms={(times[-1] - times[0]) / (len(times) - 1) * 1e3:.2f}")
        res.ttft_s = ttft
        proc.in_tok += tin
        proc.out_tok += tout
        proc.cost += cost
        fcode = self.codes["fault"](ex.fault) if ex.fault else 0
        answered_ok = res.status in (OK, MALFORMED)
        detail = self.codes["detail"]("; ".join(notes)) if notes else 0
        self.spans.emit((proc.rid, proc.span_index(), K_CHAT, self.name_code(res.purpose),
                         self.model_target[m], self.model_tier[m], k, now, now + latency, 0.0,
                         STATUS[res.status], res.http_status, tin, tout, cost, fcode, detail, 0,
                         0, 0, 0, 0, now + ttft if answered_ok else NAN,
                         reply.cached_input_tokens))  # fmt: skip
        self._delivered(proc, res, now + latency)
        return res

    def _cost(self, m: int, tin: int, tout: int, cached: int) -> float:
        """A call's price at model m's rates; prompt tokens the provider read from its cache
        at the cached rate when the suite gives the model a `cache`."""
        cache = self.model_specs[m].cache
        cost = tin * self.price_in[m] + tout * self.price_out[m]
        if cache is not None and cache.enabled and cached:
            rate = (cache.cached_input_per_mtok / 1e6 if cache.cached_input_per_mtok is not None
                    else self.price_in[m] / 10)  # fmt: skip
            cost -= min(cached, tin) * (self.price_in[m] - rate)
        return cost

    def _priced(self, m: int, answered: str, group: str = "") -> tuple[int, list[str]]:
        """(model index to price the call at, notes) for the model that answered: the
        response's `model`, or the gateway's deployment (`group`) when it names one."""
        asked = self.server_names[m][0]
        if group and same_model(asked, group):
            return m, []
        if not group and (not answered or same_model(asked, answered)):
            return m, []
        for name, i in self.server_names:
            if (group and same_model(name, group)) or same_model(name, answered):
                return i, [f"answered_by={group or answered}"]
        return m, [f"answered_by={group or answered} (not in the suite: priced as {asked})"]

    def _reply(self, proc: Proc, eff: CallModel, res: ModelResult, reply: Reply) -> list[str]:
        """Fill an OK result: a tool step (the agent loop) or an answer with its confidence."""
        conv = self.conversations[proc.rid]
        if reply.tool_calls and eff.purpose != "classify":
            call = reply.tool_calls[0]  # one call per step: the model asks again for others
            try:
                args = json.loads(call.arguments or "{}")
            except (ValueError, RecursionError):
                args = None
            if not isinstance(args, dict):
                res.status = MALFORMED
                return [f"malformed=arguments of {call.name} are not a JSON object"]
            conv.steps.append(Step(call, thought=reply.text))
            conv.note = ""
            res.purpose = "step"
            res.proposed_tool = call.name
            res.tool_args = args
            res.confidence = 1.0
            return []
        text, stated = self_report(reply.text or reply.refusal)
        if reply.logprobs:
            res.confidence, source = logprob_confidence(reply.logprobs), "logprobs"
        elif stated is not None:
            res.confidence, source = stated, "self_report"
        else:  # asked for and not given: unsure, so the stack escalates where it can
            res.confidence, source = 0.0, "missing"
        res.text = text
        proc.right = True  # judged on the final answer by the request's assertions
        if eff.max_output_tokens is not None and reply.finish_reason in ("length", "max_tokens"):
            res.truncated = True
        if eff.purpose == "classify":
            lowered = text.lower()
            found = [(lowered.find(c.lower()), c) for c in self.classes if c.lower() in lowered]
            res.predicted_class = min(found)[1] if found else None
        else:
            self.answers[proc.rid] = text
        return [f"confidence={source}"]

    # ------------------------------------------------------------------ tools

    async def _tool(self, proc: Proc, eff: CallTool, now: float) -> ToolResult:
        t = self.tool_index.get(eff.tool)
        conv = self.conversations[proc.rid]
        pending = conv.steps[-1] if conv.steps and conv.steps[-1].result is None else None
        if pending is not None and pending.call.name != eff.tool:
            pending = None
        if t is None:
            res = ToolResult(ERROR, now, 0.0)
            res.http_status = 404
            if pending is not None:
                pending.result, pending.failed = f"error: no tool named {eff.tool!r}", True
            return res
        spec = self.tools[eff.tool]
        k = proc.calls[self.nm + t]
        proc.calls[self.nm + t] = k + 1
        proc.tcalls += 1
        args = dict(eff.args or {})
        key = f"{proc.rid}.{eff.tool}.{k}"
        res = ToolResult(OK, now, 0.0)
        failure = ""
        if spec.endpoint:
            ex = await self._send(spec.endpoint, args, {"content-type": "application/json",
                                                        CALL_HEADER: key}, eff.timeout_s, (),
                                  now, 1.0)  # fmt: skip
            latency = ex.latency_s
            res.http_status = ex.status
            if ex.failure:
                res.status = TIMEOUT if ex.failure == "timeout" else ERROR
                failure = f"{ex.failure}: {ex.detail}"
            else:
                res.status = OK if ex.status < 400 else ERROR
                res.text = ex.content.decode("utf-8", "replace")
        elif spec.function:
            started = time.perf_counter()
            try:
                out = self._function(spec.function)(args)
                res.text = out if isinstance(out, str) else json.dumps(out, sort_keys=True)
            except Exception as err:  # a user's tool raising is the tool's failure, not ours
                res.status, res.http_status = ERROR, 500
                failure = f"{type(err).__name__}: {err}"
            latency = time.perf_counter() - started
            if self.replaying:
                recorded = self.timings.get(key, [])
                latency = recorded[0].latency_s if recorded else 0.0
            else:
                self.timings.setdefault(key, []).append(Timing(latency))
        else:
            res.status, res.http_status, latency = ERROR, 501, 0.0  # nothing to call
            failure = "the tool has neither function nor endpoint"
        if latency > eff.timeout_s:
            res.status, res.http_status, latency = TIMEOUT, 0, eff.timeout_s
        res.now = now + latency
        res.latency_s = latency
        res.result_tokens = estimate_tokens(res.text) if res.status == OK else 0
        if pending is not None:
            ok = res.status == OK
            pending.result = res.text if ok else f"error: {failure or res.status}"
            pending.failed = not ok
        kind = K_RETRIEVAL if self.tool_retrieval[t] else K_TOOL
        detail = self.codes["detail"](f"error={failure}"[:300]) if failure else 0
        self.spans.emit((proc.rid, proc.span_index(), kind, self.tool_name[t],
                         self.tool_target[t], 0, k, now, res.now, 0.0, STATUS[res.status],
                         res.http_status, 0, 0, 0.0, 0, detail, 0, 0, 0, 0, 0, NAN,
                         0))  # fmt: skip
        return res

    def _function(self, ref: str) -> Callable[[dict[str, Any]], Any]:
        fn = self._functions.get(ref)
        if fn is None:
            module_name, name = ref.split(":")
            module: ModuleType = importlib.import_module(module_name)
            fn = self._functions[ref] = getattr(module, name)
        return fn

    # ------------------------------------------------------------------ HTTP and faults

    async def _send(
        self,
        url: str,
        body: dict[str, Any],
        headers: dict[str, str],
        timeout: float,
        windows: tuple[Window, ...],
        now: float,
        roll: float,
        modelled: float | None = None,
    ) -> Exchange:
        """One POST, faults first; live, recorded (with its timing) or replayed."""
        content = json.dumps(body, sort_keys=True).encode()
        key = headers[CALL_HEADER]
        extra = 0.0
        labels: list[str] = []
        for w in windows:
            if not (w.start_s <= now < w.end_s and roll < w.probability):
                continue
            labels.append(w.label)
            fault = "+".join(labels)
            if w.kind in ("latency", "slow_first_token"):
                extra += w.add_s + w.jitter_s * (roll / w.probability)
            elif w.kind == "timeout":
                return Exchange(0, {}, b"", timeout, failure="timeout", fault=fault)
            elif w.kind in ("outage", "http_error"):
                status = 503 if w.kind == "outage" else w.status
                return Exchange(status, {}, b"", 0.02, fault=fault)
            elif w.kind == "rate_limit":
                return Exchange(429, {"retry-after": f"{w.retry_after_s:g}"}, b"", 0.02,
                                fault=fault)  # fmt: skip
            elif w.kind == "malformed":
                return Exchange(200, {"content-type": "application/json"}, b'{"choices": [',
                                0.0, fault=fault)  # fmt: skip
        fault = "+".join(labels)
        occurrence = self._seen.get(key, 0)
        self._seen[key] = occurrence + 1
        limit = {"connect": timeout, "read": timeout, "write": timeout, "pool": timeout}
        request = httpx.Request("POST", url, content=content, headers=headers,
                                extensions={"timeout": limit})  # fmt: skip
        if self.replaying:
            recorded = self.timings.get(key, [])
            timing = recorded[occurrence] if occurrence < len(recorded) else Timing(0.0)
            if timing.failure:
                return Exchange(0, {}, b"", timing.latency_s, (), timing.failure, timing.detail,
                                fault)  # fmt: skip
            try:
                response = await self.client.send(request)
                body_bytes = await response.aread()
            except NotRecorded:
                raise LiveError(
                    f"replay: no recorded response for POST {url} (call {key}); re-record the "
                    "cassettes with evalx record"
                ) from None
            latency = timing.latency_s if modelled is None else modelled
            ex = Exchange(response.status_code, dict(response.headers), body_bytes, latency,
                          timing.events_s, fault=fault)  # fmt: skip
        else:
            ex = await self._live(request, timeout, fault)
            self.timings.setdefault(key, []).append(
                Timing(ex.latency_s, ex.events_s, ex.failure, ex.detail)
            )
        if extra:
            ex = ex._replace(latency_s=ex.latency_s + extra,
                             events_s=tuple(t + extra for t in ex.events_s))  # fmt: skip
        if ex.latency_s > timeout:
            return Exchange(0, {}, b"", timeout, failure="timeout", fault=fault)
        return ex

    async def _live(self, request: httpx.Request, timeout: float, fault: str) -> Exchange:
        """Send over the network, timing each server-sent event of a streamed body."""
        started = time.perf_counter()
        events: list[float] = []
        try:
            async with asyncio.timeout(timeout):
                response = await self.client.send(request, stream=True)
                buffer = bytearray()
                streamed = "text/event-stream" in response.headers.get("content-type", "")
                try:
                    async for part in response.aiter_bytes():
                        buffer += part
                        if streamed:
                            at = time.perf_counter() - started
                            events += [at] * (events_in(bytes(buffer)) - len(events))
                finally:
                    await response.aclose()
        except (TimeoutError, httpx.TimeoutException):
            return Exchange(0, {}, b"", timeout, failure="timeout", fault=fault)
        except httpx.ConnectError as err:
            return Exchange(0, {}, b"", time.perf_counter() - started, (), "connect_error",
                            _message(err), fault)  # fmt: skip
        except httpx.TransportError as err:  # reset, closed mid-body, protocol errors
            return Exchange(0, {}, b"", time.perf_counter() - started, (), "reset",
                            _message(err), fault)  # fmt: skip
        latency = time.perf_counter() - started
        return Exchange(response.status_code, dict(response.headers), bytes(buffer), latency,
                        tuple(events), fault=fault)  # fmt: skip


def _message(err: Exception) -> str:
    """An exception as `Type: message`, without addresses that differ between machines."""
    text = re.sub(r"0x[0-9a-f]+", "0x", str(err))
    return f"{type(err).__name__}: {text}"[:200]
