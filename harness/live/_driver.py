"""The live driver: the same routing stack against real endpoints, recorded or replayed.

Models with `provider: openai` are called over HTTP (OpenAI chat-completions wire format)
with httpx; tools run as Python callables or HTTP endpoints. The stack is the very same
sans-I/O generator the simulation drives. Time is per request: a request starts at its
arrival time and its clock advances by each call's latency (measured live, or read back
from the timings recorded beside a cassette), so a replay gives exactly the records of
the recording. Injected faults still apply on top, decided by the world tape's rolls.

`record=DIR` records every HTTP interaction with vcrpy (keys and auth headers filtered,
matched on method, URL and body, so retries of identical requests replay in order);
`replay=DIR` replays offline (record mode `none`: any unrecorded request is an error).
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import json
import os
import re
import time
from collections.abc import Callable
from typing import Any

import httpx

from harness.content import Content
from harness.engine import K_CHAT, K_RETRIEVAL, K_TOOL, NAN, STATUS, Engine, Proc, Trace
from harness.errors import EvalxError
from harness.faults import Schedule, Window
from harness.requests_file import judge, load
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

CALL_HEADER = "x-evalx-call"
"""Names each call (request id, model, call index): replays match concurrent and repeated
calls to the right recorded response, and timings are kept per call."""
FILTERED_HEADERS = ("authorization", "api-key", "x-api-key", "openai-organization", "cookie")
_CONFIDENCE = re.compile(r"confidence\s*[:=]\s*([01](?:\.\d+)?)", re.IGNORECASE)


class LiveError(EvalxError):
    """A live or replayed run that cannot proceed (no endpoint, no key, no cassette)."""


def _hash(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()[:16]


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
        timings: dict[str, list[float]] | None = None,
        replaying: bool = False,
    ) -> None:
        super().__init__(suite, requests, tape, faults, stack, content=Content(suite, requests))
        for name, m in suite.models.items():
            if m.provider != "openai" or not m.base_url:
                raise LiveError(
                    f"models.{name}: a live run needs provider: openai and a base_url "
                    "(simulated models have no endpoint)"
                )
        self.judge = False  # answers are judged by the request's assertions (`_judged`)
        self.concurrency = max(1, concurrency)
        self.replaying = replaying
        self.timings: dict[str, list[float]] = timings if timings is not None else {}
        self._seen: dict[str, int] = {}
        self.file_rows = (  # python assertions imported now: a bad one fails before any call
            load(suite.traffic.file, requests.class_names, code=True)
            if suite.traffic.file
            else None
        )
        self.answers: dict[int, str] = {}

    # ------------------------------------------------------------------ the loop

    def run(self) -> Trace:
        """Every request to completion (concurrently, up to `concurrency` at a time)."""
        asyncio.run(self._all())
        self.spans.flush()
        return self.trace

    async def _all(self) -> None:
        limits = httpx.Limits(max_connections=self.concurrency)
        async with httpx.AsyncClient(limits=limits, timeout=None) as client:
            self.client = client
            gate = asyncio.Semaphore(1 if self.replaying else self.concurrency)

            async def one(i: int) -> None:
                async with gate:
                    await self._request(i)

            await asyncio.gather(*(one(i) for i in range(len(self.req))))

    async def _request(self, i: int) -> None:
        req = self.req
        now = float(req.arrival_s[i])
        proc = self._open(i, now, int(req.task_class[i]), int(req.tool_steps[i]),
                          int(req.input_tokens[i]), bool(req.prohibited[i]),
                          bool(req.high_impact[i]))  # fmt: skip
        gen = proc.gen
        outcome: Any = None
        while True:
            try:
                eff = gen.send(outcome)
            except StopIteration as stop:
                self.now = now
                self._finish(proc, self._judged(i, stop.value))
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
                outcome = Tick(now)
            elif isinstance(eff, Handoff):  # no human team in a live run: handed off at once
                outcome = HumanResult(OK, now, 0.0)
            else:
                raise TypeError(f"stack yielded {eff!r}, which is not an effect")

    def _judged(self, i: int, final: Final) -> Final:
        """With a requests file, assertions on the answer decide success."""
        if self.file_rows is None or final.outcome not in ("success", "wrong"):
            return final
        answer = final.answer or self.answers.get(i, "")
        ok = judge(self.file_rows[i], answer)
        return final._replace(outcome="success" if ok else "wrong")

    # ------------------------------------------------------------------ models

    async def _model(self, proc: Proc, eff: CallModel, now: float) -> ModelResult:
        m = self.model_index[eff.model]
        spec = self.suite.models[eff.model]
        k = proc.calls[m]
        proc.calls[m] = k + 1
        proc.mcalls += 1
        body: dict[str, Any] = {
            "model": spec.model or eff.model,
            "messages": [{"role": "user", "content": eff.prompt or "(no text)"}],
        }
        if eff.max_output_tokens is not None:
            body["max_tokens"] = eff.max_output_tokens
        headers = {"content-type": "application/json", CALL_HEADER: f"{proc.rid}.{eff.model}.{k}"}
        if spec.api_key_env:
            key = os.environ.get(spec.api_key_env)
            if key is None and not self.replaying:
                raise LiveError(f"models.{eff.model}.api_key_env: ${spec.api_key_env} is not set")
            headers["authorization"] = f"Bearer {key or 'replay'}"
        url = f"{spec.base_url.rstrip('/')}/chat/completions"  # type: ignore[union-attr]
        fault_u = self.tape.fault_u.item(proc.rid, m, min(k, self.tape.fault_u.shape[2] - 1))
        modelled = None
        if self.replaying and spec.replay_latency == "model":
            modelled = self.tape.model_call(self.suite, proc.rid, m, k)[0]
        response, latency, fault = await self._send(
            "POST", url, body, headers, eff.timeout_s, self.faults.models[m], now, fault_u,
            modelled,
        )  # fmt: skip
        res = ModelResult(OK, now + latency, latency)
        # no tools go on the wire yet: the driver plays the task's planned tool steps (as the
        # simulation does), then the model's reply is the answer
        purpose = eff.purpose
        if purpose in ("agent", "repair", "step"):
            purpose = "step" if proc.step < len(proc.plan) else "answer"
        res.purpose = purpose
        res.model = eff.model
        tin = tout = 0
        cost = 0.0
        if response is None:
            res.status, res.http_status = TIMEOUT, 0
        elif response.status_code == 429:
            res.status, res.http_status = RATE_LIMITED, 429
            res.retry_after_s = float(response.headers.get("retry-after", "1") or 1)
        elif response.status_code >= 400:
            res.status, res.http_status = ERROR, response.status_code
        else:
            try:
                data = response.json()
                message = data["choices"][0]["message"]
                text = message.get("content") or ""
                usage = data.get("usage", {})
                tin = int(usage.get("prompt_tokens", eff.input_tokens))
                tout = int(usage.get("completion_tokens", 0))
            except (ValueError, KeyError, IndexError, TypeError):
                res.status, res.http_status = MALFORMED, response.status_code
            else:
                res.text = text
                found = _CONFIDENCE.search(text)
                res.confidence = float(found.group(1)) if found else 1.0
                proc.right = True  # judged on the final answer by the request's assertions
                res.input_tokens, res.output_tokens = tin, tout
                cost = tin * self.price_in[m] + tout * self.price_out[m]
                if purpose == "classify":
                    res.predicted_class = next(
                        (c for c in self.classes if c in text.lower()), self.classes[0]
                    )
                if purpose == "step":
                    res.proposed_tool = proc.plan[proc.step]
                    spec_tool = self.tools.get(res.proposed_tool)
                    res.tool_args = spec_tool.args_example if spec_tool is not None else {}
                if purpose == "answer":
                    self.answers[proc.rid] = text
        proc.in_tok += tin
        proc.out_tok += tout
        proc.cost += cost
        fcode = self.codes["fault"](fault) if fault else 0
        answered = res.status in (OK, MALFORMED)
        if answered:  # not streamed: the first token comes with the whole answer
            res.ttft_s = latency
        self.spans.emit((proc.rid, proc.span_index(), K_CHAT, self.name_code(purpose),
                         self.model_target[m], self.model_tier[m], k, now, now + latency, 0.0,
                         STATUS[res.status], res.http_status, tin, tout, cost, fcode, 0, 0, 0, 0,
                         0, 0, now + latency if answered else NAN, 0))  # fmt: skip
        self._delivered(proc, res, now + latency)
        return res

    # ------------------------------------------------------------------ tools

    async def _tool(self, proc: Proc, eff: CallTool, now: float) -> ToolResult:
        t = self.tool_index.get(eff.tool)
        if t is None:
            res = ToolResult(ERROR, now, 0.0)
            res.http_status = 404
            return res
        spec = self.tools[eff.tool]
        k = proc.calls[self.nm + t]
        proc.calls[self.nm + t] = k + 1
        proc.tcalls += 1
        args = dict(eff.args or {})
        started = time.perf_counter()
        res = ToolResult(OK, now, 0.0)
        try:
            if spec.function:
                module, func = spec.function.split(":")
                fn: Callable[[dict[str, Any]], Any] = getattr(importlib.import_module(module), func)
                out = fn(args)
                res.text = out if isinstance(out, str) else json.dumps(out)
            elif spec.endpoint:
                r = await self.client.post(spec.endpoint, json=args, timeout=eff.timeout_s)
                res.http_status = r.status_code
                res.status = OK if r.status_code < 400 else ERROR
                res.text = r.text
            else:
                res.status, res.http_status = ERROR, 501  # no implementation to call
        except httpx.TimeoutException:
            res.status, res.http_status = TIMEOUT, 0
        except Exception as err:  # a user's tool raising is the tool's failure, not ours
            res.status, res.http_status = ERROR, 500
            res.text = f"{type(err).__name__}: {err}"
        latency = 0.0 if self.replaying else time.perf_counter() - started
        res.now = now + latency
        res.latency_s = latency
        res.result_tokens = spec.result_tokens if res.status == OK else 0
        if res.status == OK and proc.step < len(proc.plan) and eff.tool == proc.plan[proc.step]:
            proc.step += 1
        kind = K_RETRIEVAL if self.tool_retrieval[t] else K_TOOL
        self.spans.emit((proc.rid, proc.span_index(), kind, self.tool_name[t],
                         self.tool_target[t], 0, k, now, res.now, 0.0, STATUS[res.status],
                         res.http_status, 0, 0, 0.0, 0, 0, 0, 0, 0, 0, 0, NAN, 0))  # fmt: skip
        return res

    # ------------------------------------------------------------------ HTTP and faults

    async def _send(
        self,
        method: str,
        url: str,
        body: dict[str, Any],
        headers: dict[str, str],
        timeout: float,
        windows: tuple[Window, ...],
        now: float,
        roll: float,
        modelled: float | None = None,
    ) -> tuple[httpx.Response | None, float, str]:
        """One call, faults first: (response or None on timeout, latency seconds, fault)."""
        content = json.dumps(body, sort_keys=True).encode()
        key = headers.get(CALL_HEADER) or f"{method} {url} {_hash(content)}"
        extra = 0.0
        labels = []
        limit = {"connect": timeout, "read": timeout, "write": timeout, "pool": timeout}
        request = httpx.Request(method, url, content=content, headers=headers,
                                extensions={"timeout": limit})  # fmt: skip
        for w in windows:
            if not (w.start_s <= now < w.end_s and roll < w.probability):
                continue
            labels.append(w.label)
            if w.kind in ("latency", "slow_first_token"):
                extra += w.add_s + w.jitter_s * (roll / w.probability)
            elif w.kind == "timeout":
                return None, timeout, "+".join(labels)
            elif w.kind == "outage":
                return httpx.Response(503, request=request), 0.02, "+".join(labels)
            elif w.kind == "http_error":
                return httpx.Response(w.status, request=request), 0.02, "+".join(labels)
            elif w.kind == "rate_limit":
                hdr = {"retry-after": f"{w.retry_after_s:g}"}
                return httpx.Response(429, headers=hdr, request=request), 0.02, "+".join(labels)
            elif w.kind == "malformed":
                return (httpx.Response(200, content=b'{"choices": [', request=request), 0.0,
                        "+".join(labels))  # fmt: skip
        occurrence = self._seen.get(key, 0)
        self._seen[key] = occurrence + 1
        started = time.perf_counter()
        try:
            response = await self.client.send(request)
            await response.aread()
        except httpx.TimeoutException:
            return None, timeout, "+".join(labels)
        except Exception as err:  # vcrpy refuses unrecorded calls with its own exception
            if self.replaying:
                raise LiveError(
                    f"replay: no recorded response for {method} {url} "
                    f"({type(err).__name__}); re-record the cassettes with evalx record"
                ) from None
            if not isinstance(err, httpx.HTTPError):
                raise
            fault = "+".join(labels)
            return httpx.Response(599, request=request), time.perf_counter() - started, fault
        if self.replaying:
            recorded = self.timings.get(key, [])
            latency = recorded[occurrence] if occurrence < len(recorded) else 0.0
            if modelled is not None:
                latency = modelled  # the suite asked for the world's latency model
        else:
            latency = time.perf_counter() - started
            self.timings.setdefault(key, []).append(latency)
        latency += extra
        if latency > timeout:
            return None, timeout, "+".join(labels)
        return response, latency, "+".join(labels)
