"""The kernel: virtual time and an event heap, nothing else.

Events are ordered by (time, sequence), so ties resolve in the order they were
scheduled and a run is deterministic (SimPy orders its heap the same way). Arrivals
come from a sorted list merged with the heap rather than being pushed, which keeps the
heap small; arrivals decided during the run (a session's next turn) are ARRIVE events
on the heap. The kernel knows five event kinds and what to call for each, and calls
`_arrival` and `_finished` for the sorted arrivals; what a request, a server or a call
*is* belongs to the layers above.
"""

from __future__ import annotations

import heapq
from typing import Any, Final

from mypy_extensions import mypyc_attr

RESUME: Final = 0
RELEASE: Final = 1
RESUME_RELEASE: Final = 2
QUEUE_TIMEOUT: Final = 3
ARRIVE: Final = 4
"""Event kinds: resume a request with an outcome; free a server slot; both at once (a
call that completed in time); a queued call's caller gave up; a request arrives whose
time was decided during the run (a session's next turn)."""


@mypyc_attr(allow_interpreted_subclasses=True)  # see Engine
class Kernel:
    """Virtual time (`now`) and the event heap. Subclasses supply the handlers."""

    now: float
    _heap: list[tuple[float, int, int, Any, Any, Any]]
    _seq: int

    def __init__(self) -> None:
        self.now = 0.0
        self._heap = []
        self._seq = 0

    def _push(self, t: float, kind: int, a: Any, b: Any = None, c: Any = None) -> None:
        """Schedule an event of `kind` at virtual time `t` with arguments (a, b, c)."""
        self._seq += 1
        heapq.heappush(self._heap, (t, self._seq, kind, a, b, c))

    # Handlers. Each returns True when the request it advanced finished.
    def _advance(self, proc: Any, outcome: Any) -> bool:
        raise NotImplementedError

    def _release(self, server: Any) -> None:
        raise NotImplementedError

    def _resume_release(self, proc: Any, outcome: Any, server: Any) -> bool:
        raise NotImplementedError

    def _queue_timeout(self, call: Any) -> bool:
        raise NotImplementedError

    def _arrive(self, rid: Any) -> bool:
        raise NotImplementedError

    def _arrival(self, i: int) -> bool:
        """The i-th of the sorted arrivals `_loop` was given comes now."""
        raise NotImplementedError

    def _finished(self) -> None:
        """A request completed (called once for each)."""

    def _loop(self, arrivals: list[float]) -> int:
        """Run until no arrival and no event is left; return the number of heap events."""
        heap = self._heap
        pop = heapq.heappop
        n = len(arrivals)
        i = 0
        events = 0
        while True:
            if i < n and (not heap or arrivals[i] <= heap[0][0]):
                self.now = arrivals[i]
                done = self._arrival(i)
                i += 1
            elif heap:
                t, _, kind, a, b, c = pop(heap)
                events += 1
                self.now = t
                if kind == RESUME_RELEASE:
                    done = self._resume_release(a, b, c)
                elif kind == RESUME:
                    done = self._advance(a, b)
                elif kind == RELEASE:
                    self._release(a)
                    continue
                elif kind == QUEUE_TIMEOUT:
                    done = self._queue_timeout(a)
                else:
                    done = self._arrive(a)
            else:
                break
            if done:
                self._finished()
        return events
