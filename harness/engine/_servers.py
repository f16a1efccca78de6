"""Servers and calls: capacity with a FIFO queue, a token-bucket rate limit, timeouts.

Every model and tool is a `Server`: `capacity` concurrent calls, further calls wait in
a FIFO queue, and an optional token bucket answers 429 beyond its rate. A caller's
timeout covers queueing and service; when it fires, the caller gets a timeout while
the server keeps working until the call's service ends (a real backend does not know
the client left). A call that fails without using capacity (refused, 429, hung on a
dead endpoint) never touches the queue.
"""

from __future__ import annotations

import heapq
from collections import deque
from typing import Any

from harness.engine._kernel import QUEUE_TIMEOUT, RELEASE, RESUME, RESUME_RELEASE, Kernel
from harness.engine._request import Proc
from harness.engine._trace import CHUNK, NAN, NO_MARK, STATUS, SpanBuffers
from harness.stack import ModelResult, ToolResult
from harness.stack._effects import TIMEOUT

FAST_FAIL_S = 0.02
"""Time to a refused connection, an HTTP error or a 429: no server capacity is used."""


class Server:
    """Capacity and rate limit of one model or tool."""

    __slots__ = ("burst", "busy", "capacity", "last", "queue", "rps", "tokens")

    def __init__(self, capacity: int | None, rps: float | None, burst: int | None) -> None:
        self.capacity = capacity if capacity is not None else 1 << 62
        self.busy = 0
        self.queue: deque[Call] = deque()
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


class Call:
    """A model or tool call waiting for, or holding, server capacity."""

    __slots__ = ("cost", "done", "fault", "head", "in_tok", "issue_s", "mark", "out_tok", "proc",
                 "result", "server", "service_s", "timeout_s", "ttft_s")  # fmt: skip

    def __init__(
        self,
        proc: Proc,
        server: Server,
        result: ModelResult | ToolResult,
        service_s: float,
        timeout_s: float,
        issue_s: float,
        head: tuple[int, ...],
        fault: int,
        ttft_s: float,
    ) -> None:
        self.proc = proc
        self.server = server
        self.result = result
        self.service_s = service_s
        self.timeout_s = timeout_s
        self.issue_s = issue_s
        self.head = head  # span row prefix: request, index, kind, name, target, tier, call index
        self.fault = fault
        self.ttft_s = ttft_s  # service start to first token (NaN: no tokens)
        self.mark = NO_MARK  # (stage, violation) codes the span records
        self.in_tok = 0
        self.out_tok = 0
        self.cost = 0.0
        self.done = False


class Servers(Kernel):
    """The server side of the loop: serve, queue, release, time out."""

    spans: SpanBuffers

    def _delivered(self, proc: Proc, res: ModelResult, end: float) -> None:
        """A model's response reached its caller in time (billing is already counted)."""

    def _serve(
        self,
        proc: Proc,
        res: ModelResult | ToolResult,
        server: Server,
        head: tuple[int, ...],
        fault: int,
        service: float,
        timeout: float,
        tin: int,
        tout: int,
        cost: float,
        mark: tuple[int, int],
        ttft: float = NAN,
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
            rows = self.spans.rows  # inline `spans.emit`, as `_push` below
            rows.append((*head, now, end, 0.0, STATUS[res.status], res.http_status, tin, tout,
                         cost, fault, 0, mark[0], 0, 0, 0, mark[1], now + ttft))  # fmt: skip
            if len(rows) >= CHUNK:
                self.spans.flush()
            if type(res) is ModelResult:
                res.ttft_s = ttft
                self._delivered(proc, res, end)
            self._seq += 1  # inline `_push`: this is the path nearly every call takes
            heapq.heappush(self._heap, (end, self._seq, RESUME_RELEASE, proc, res, server))
            return
        call = Call(proc, server, res, service, timeout, now, head, fault, ttft)
        call.in_tok, call.out_tok, call.cost = tin, tout, cost
        call.mark = mark
        if server.busy < server.capacity:
            server.busy += 1
            self._start(call)
        else:
            server.queue.append(call)
            self._push(call.issue_s + call.timeout_s, QUEUE_TIMEOUT, call)

    def _start(self, call: Call) -> None:
        """Give `call` a server slot now; schedule its response and the slot's release."""
        now = self.now
        call.done = True
        res = call.result
        issue = call.issue_s
        end = now + call.service_s
        deadline = issue + call.timeout_s
        if end > deadline:  # the client gives up; the server still works until `end`
            self._timed_out(call, deadline, now - issue, now + call.ttft_s)
            self._push(deadline, RESUME, call.proc, res)
            self._push(end, RELEASE, call.server)
            return
        res.now = end
        res.latency_s = end - issue
        first = now + call.ttft_s
        proc = call.proc
        proc.in_tok += call.in_tok
        proc.out_tok += call.out_tok
        proc.cost += call.cost
        mark = call.mark
        self.spans.emit((*call.head, issue, end, now - issue, STATUS[res.status], res.http_status,
                         call.in_tok, call.out_tok, call.cost, call.fault, 0, mark[0], 0, 0, 0,
                         mark[1], first))  # fmt: skip
        if type(res) is ModelResult:
            res.ttft_s = first - issue
            self._delivered(proc, res, end)
        self._push(end, RESUME_RELEASE, call.proc, res, call.server)

    def _release(self, server: Server) -> None:
        """A call left the server: its slot passes to the next live queued call, if any."""
        q = server.queue
        while q:
            call = q.popleft()
            if not call.done:
                self._start(call)
                return
        server.busy -= 1

    def _resume_release(self, proc: Proc, outcome: Any, server: Server) -> bool:
        if server.queue:
            self._release(server)
        else:
            server.busy -= 1
        return self._advance(proc, outcome)

    def _queue_timeout(self, call: Call) -> bool:
        """The caller's timeout fired while the call still waited for capacity."""
        if call.done:
            return False
        call.done = True
        now = self.now
        self._timed_out(call, now, now - call.issue_s, NAN)
        return self._advance(call.proc, call.result)

    def _timed_out(self, call: Call, at: float, queued: float, first: float) -> None:
        """Turn a call's result into a timeout at `at` (unbilled) and record its span.

        `first` is when the first token would arrive; kept when it came before `at`.
        """
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
        self.spans.emit((*call.head, call.issue_s, at, queued, STATUS[TIMEOUT], 0, 0, 0, 0.0,
                         call.fault, 0, mark[0], 0, 0, 0, mark[1],
                         first if first < at else NAN))  # fmt: skip

    def _fail_now(
        self,
        proc: Proc,
        res: ModelResult | ToolResult,
        head: tuple[int, ...],
        fault: int,
        timeout: float,
        hang: bool,
        mark: tuple[int, int] = NO_MARK,
    ) -> None:
        """A call that fails without server capacity: refused fast, or hanging to the timeout."""
        now = self.now
        end = now + (timeout if hang else min(timeout, FAST_FAIL_S))
        if hang:
            res.status = TIMEOUT
            res.http_status = 0
        res.now = end
        res.latency_s = end - now
        self.spans.emit((*head, now, end, 0.0, STATUS[res.status], res.http_status, 0, 0, 0.0,
                         fault, 0, mark[0], 0, 0, 0, mark[1], NAN))  # fmt: skip
        self._push(end, RESUME, proc, res)
