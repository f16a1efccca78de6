"""The simulation driver: a discrete-event loop in virtual time, as a small package.

It drives a routing stack (sans-I/O generators, one per request) against the world:
the tape supplies every random draw, the fault schedule the windows, and each model or
tool is a server with a capacity (FIFO queue beyond it) and an optional token-bucket
rate limit (429 beyond it). Nothing sleeps and nothing reads a clock: a 20 s call costs
a heap push.

Read it in this order, each file in one sitting:

    _kernel      virtual time and the event heap (SimPy-like; knows nothing of requests)
    _trace       what a run records: interned strings, span rows, request columns
    _request     one request in flight and the ground truth it carries for scoring
    _servers     capacity, FIFO queues, rate limits, caller timeouts
    _scoring     violations judged against ground truth the stack never sees
    _calls       model and tool calls against the world tape and the fault windows
    _lifecycle   `Engine`: open a request, drive its stack, close its record

`COMPILED` says whether these modules run compiled (`python -m harness.build`, see
`harness._native`) or as pure Python; `PATH` says why. Both give the same records.
"""

from harness import _native
from harness.engine import _kernel
from harness.engine._calls import STEP_OUTPUT_SHARE, broken_args
from harness.engine._kernel import Kernel
from harness.engine._lifecycle import Engine
from harness.engine._request import Proc
from harness.engine._servers import FAST_FAIL_S, Server
from harness.engine._trace import (
    K_CHAT,
    K_RETRIEVAL,
    K_TOOL,
    KINDS,
    NAN,
    SPAN_DTYPE,
    SPAN_FIELDS,
    SPAN_KINDS,
    STAGE_NAMES,
    STATUS,
    STATUSES,
    Codes,
    SpanBuffers,
    Trace,
)

COMPILED: bool = _native.compiled(_kernel)
"""True when the engine and the reference stack run compiled (mypyc), False for pure Python."""
PATH: str = _native.STATUS
"""Which path is active and why, in words (e.g. 'pure: EVALX_PURE=1')."""

__all__ = [
    "COMPILED",
    "FAST_FAIL_S",
    "KINDS",
    "K_CHAT",
    "K_RETRIEVAL",
    "K_TOOL",
    "NAN",
    "PATH",
    "SPAN_DTYPE",
    "SPAN_FIELDS",
    "SPAN_KINDS",
    "STAGE_NAMES",
    "STATUS",
    "STATUSES",
    "STEP_OUTPUT_SHARE",
    "Codes",
    "Engine",
    "Kernel",
    "Proc",
    "Server",
    "SpanBuffers",
    "Trace",
    "broken_args",
]
