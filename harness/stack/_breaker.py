"""A circuit breaker with resilience4j semantics, as a pure state machine in virtual time.

The breaker never reads a clock and draws no random numbers: every method takes ``now``
(virtual seconds, never decreasing), so the same calls always give the same transitions.
It sits on every model call of the simulation, so the hot path (``try_acquire`` and
``on_result``) uses slots, plain ints and floats, and is O(1) per call (the time window
is O(1) amortised: it does one step of eviction per elapsed second, at most
``window_size``).

States and transitions, as in resilience4j::

    CLOSED --(window has >= minimum_calls and a rate >= its threshold)--> OPEN
    OPEN --(a try_acquire at or after opened_at + wait_open_s)--> HALF_OPEN
    HALF_OPEN --(half_open_calls trial results, a rate >= its threshold)--> OPEN
    HALF_OPEN --(half_open_calls trial results, both rates below)--> CLOSED (window reset)

Where this differs from resilience4j, the difference is deliberate: a call is slow at
``duration_s >= slow_call_duration_s`` (resilience4j: strictly longer), the wait in OPEN
ends at ``now >= opened_at + wait_open_s`` (resilience4j: strictly after), HALF_OPEN
always decides on exactly ``half_open_calls`` trials, and results that arrive while OPEN
are dropped instead of being counted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final, Literal

from mypy_extensions import mypyc_attr

__all__ = [
    "CLOSED",
    "HALF_OPEN",
    "OPEN",
    "BreakerConfig",
    "BreakerSnapshot",
    "BreakerState",
    "CircuitBreaker",
    "Transition",
]

BreakerState = Literal["closed", "open", "half_open"]
CLOSED: Final = "closed"
OPEN: Final = "open"
HALF_OPEN: Final = "half_open"

Transition = tuple[float, BreakerState, BreakerState]
"""``(now, from_state, to_state)``: one entry of a breaker's golden trace."""

_FAILED: Final = 1
_SLOW: Final = 2
_NO_SECOND: Final = -(2**62)
"""Head second of an empty time window: far enough back that the first call evicts all."""


@mypyc_attr(native_class=False)  # compiled, an int field would turn True into 1 unchecked
@dataclass(frozen=True)
class BreakerConfig:
    """How one breaker decides; field names and defaults follow resilience4j's.

    The suite's pydantic model reports user mistakes; the checks here only stop a
    harness bug from building a breaker that could never work.
    """

    window_type: Literal["count", "time"] = "count"
    """``count``: the last ``window_size`` calls; ``time``: the calls of the last
    ``window_size`` whole seconds."""
    window_size: int = 20
    """Calls (count window) or seconds (time window)."""
    minimum_calls: int = 10
    """The window is not judged before it holds this many calls; a count window caps this
    at ``window_size``, as resilience4j does."""
    failure_rate_threshold: float = 50.0
    """Percent of failed calls at or above which the breaker opens."""
    slow_call_rate_threshold: float = 100.0
    """Percent of slow calls at or above which the breaker opens."""
    slow_call_duration_s: float = 60.0
    """A call (failed or not) lasting at least this long is slow."""
    wait_open_s: float = 30.0
    """Time spent OPEN before a call may go through as a HALF_OPEN trial."""
    half_open_calls: int = 3
    """Trial calls permitted in HALF_OPEN; their results alone decide the next state."""

    def __post_init__(self) -> None:
        problems: list[str] = []
        if self.window_type not in ("count", "time"):
            problems.append(f"window_type must be 'count' or 'time', got {self.window_type!r}")
        for key in ("window_size", "minimum_calls", "half_open_calls"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                problems.append(f"{key} must be an integer >= 1, got {value!r}")
        for key in ("failure_rate_threshold", "slow_call_rate_threshold"):
            value = getattr(self, key)
            if not 0.0 < value <= 100.0:
                problems.append(f"{key} is a percentage in (0, 100], got {value!r}")
        if not self.slow_call_duration_s > 0.0:
            problems.append(f"slow_call_duration_s must be > 0, got {self.slow_call_duration_s!r}")
        if not self.wait_open_s >= 0.0:  # inf is allowed: once open, stay open
            problems.append(f"wait_open_s must be >= 0, got {self.wait_open_s!r}")
        if problems:
            raise ValueError("invalid BreakerConfig: " + "; ".join(problems))


@dataclass(frozen=True)
class BreakerSnapshot:
    """What a breaker looks like at one instant, for records and reports (not the hot path)."""

    name: str
    state: BreakerState
    calls: int
    """Calls in the CLOSED window, or trial results so far in HALF_OPEN."""
    failed_calls: int
    slow_calls: int
    failure_rate: float | None
    """Percent, or None while too few calls have been recorded to judge."""
    slow_call_rate: float | None
    opened_at: float | None
    """When the breaker last opened, or None if it never has."""
    trial_permits: int
    """Trial calls handed out in the current HALF_OPEN period (0 in other states)."""
    not_permitted: int
    """Calls refused since the breaker was built."""


class CircuitBreaker:
    """One breaker: ask ``try_acquire`` before a call and report it with ``on_result``.

    Only calls that were permitted should be reported. A result may arrive after the
    state changed under the call (the simulation interleaves calls): while OPEN it is
    dropped; in HALF_OPEN it counts as a trial result, as in resilience4j.
    ``transitions`` lists every state change in order, ready for a golden trace.
    """

    __slots__ = (
        "_b_calls",
        "_b_failed",
        "_b_slow",
        "_calls",
        "_fail_thr",
        "_failed",
        "_head",
        "_head_sec",
        "_is_time",
        "_min_calls",
        "_opened_at",
        "_permits",
        "_retry_at",
        "_ring",
        "_ring_pos",
        "_size",
        "_slow",
        "_slow_s",
        "_slow_thr",
        "_state",
        "_trial_failed",
        "_trial_limit",
        "_trial_slow",
        "_trials",
        "_wait",
        "config",
        "name",
        "not_permitted",
        "transitions",
    )

    def __init__(self, config: BreakerConfig, name: str = "") -> None:
        self.config = config
        self.name = name
        self.transitions: list[Transition] = []
        self.not_permitted = 0
        self._state: BreakerState = CLOSED
        self._is_time = config.window_type == "time"
        self._size = config.window_size
        self._min_calls = (
            config.minimum_calls if self._is_time else min(config.minimum_calls, config.window_size)
        )
        self._fail_thr = float(config.failure_rate_threshold)
        self._slow_thr = float(config.slow_call_rate_threshold)
        self._slow_s = float(config.slow_call_duration_s)
        self._wait = float(config.wait_open_s)
        self._trial_limit = config.half_open_calls
        self._opened_at: float | None = None
        self._retry_at = math.inf
        self._permits = 0
        self._trials = 0
        self._trial_failed = 0
        self._trial_slow = 0
        # The window: running totals, plus a ring of outcome codes (count) or per-second
        # buckets (time). Both kinds are allocated so the slots are always bound.
        self._calls = 0
        self._failed = 0
        self._slow = 0
        self._ring = [0] * (0 if self._is_time else self._size)
        self._ring_pos = 0
        self._b_calls = [0] * (self._size if self._is_time else 0)
        self._b_failed = [0] * (self._size if self._is_time else 0)
        self._b_slow = [0] * (self._size if self._is_time else 0)
        self._head = 0
        self._head_sec = _NO_SECOND

    @property
    def state(self) -> BreakerState:
        """The current state; OPEN turns HALF_OPEN only inside ``try_acquire``."""
        return self._state

    @property
    def opened_at(self) -> float | None:
        """When the breaker last opened, or None if it never has."""
        return self._opened_at

    def try_acquire(self, now: float) -> bool:
        """Whether a call may go out at ``now``; a refused call must not be reported."""
        state = self._state
        if state == CLOSED:
            return True
        if state == OPEN:
            if now < self._retry_at:
                self.not_permitted += 1
                return False
            self._half_open(now)
        if self._permits < self._trial_limit:
            self._permits += 1
            return True
        self.not_permitted += 1
        return False

    def on_result(self, now: float, duration_s: float, failed: bool) -> None:
        """Record a permitted call that completed at ``now``, and change state if it decides."""
        state = self._state
        if state == OPEN:
            return
        slow = duration_s >= self._slow_s
        if state == CLOSED:
            if self._is_time:
                self._record_time(now, failed, slow)
            else:
                self._record_count(failed, slow)
            calls = self._calls
            if calls >= self._min_calls and self._exceeds(self._failed, self._slow, calls):
                self._open(now, CLOSED)
            return
        self._trials += 1
        self._trial_failed += failed
        self._trial_slow += slow
        if self._trials >= self._trial_limit:
            if self._exceeds(self._trial_failed, self._trial_slow, self._trials):
                self._open(now, HALF_OPEN)
            else:
                self._close(now)

    def snapshot(self, now: float) -> BreakerSnapshot:
        """The breaker as seen at ``now``; a time window leaves out seconds that have expired.

        Reading never changes the breaker, so snapshots can be taken at any point of a run.
        """
        state = self._state
        if state == HALF_OPEN:
            # The trials are judged only as a whole, and that moves the breaker on.
            calls, failed, slow = self._trials, self._trial_failed, self._trial_slow
            judged = False
        else:
            calls, failed, slow = self._window_at(now)
            judged = calls >= self._min_calls
        return BreakerSnapshot(
            name=self.name,
            state=state,
            calls=calls,
            failed_calls=failed,
            slow_calls=slow,
            failure_rate=failed * 100.0 / calls if judged else None,
            slow_call_rate=slow * 100.0 / calls if judged else None,
            opened_at=self._opened_at,
            trial_permits=self._permits if state == HALF_OPEN else 0,
            not_permitted=self.not_permitted,
        )

    def _exceeds(self, failed: int, slow: int, calls: int) -> bool:
        """One rule for both CLOSED and HALF_OPEN; the float formula is resilience4j's."""
        return failed * 100.0 / calls >= self._fail_thr or slow * 100.0 / calls >= self._slow_thr

    def _record_count(self, failed: bool, slow: bool) -> None:
        pos = self._ring_pos
        if self._calls == self._size:
            evicted = self._ring[pos]
            self._failed -= evicted & _FAILED
            self._slow -= evicted >> 1
        else:
            self._calls += 1
        self._ring[pos] = (_FAILED if failed else 0) | (_SLOW if slow else 0)
        self._failed += failed
        self._slow += slow
        pos += 1
        self._ring_pos = 0 if pos == self._size else pos

    def _record_time(self, now: float, failed: bool, slow: bool) -> None:
        second = math.floor(now)
        if second > self._head_sec:
            self._advance(second)
        head = self._head
        self._b_calls[head] += 1
        self._b_failed[head] += failed
        self._b_slow[head] += slow
        self._calls += 1
        self._failed += failed
        self._slow += slow

    def _advance(self, second: int) -> None:
        """Make ``second`` the head bucket, evicting every bucket that falls out of the window."""
        size = self._size
        steps = second - self._head_sec
        if steps >= size:
            self._clear_window()
        else:
            head = self._head
            b_calls, b_failed, b_slow = self._b_calls, self._b_failed, self._b_slow
            for _ in range(steps):
                head = head + 1 if head + 1 < size else 0
                self._calls -= b_calls[head]
                self._failed -= b_failed[head]
                self._slow -= b_slow[head]
                b_calls[head] = b_failed[head] = b_slow[head] = 0
            self._head = head
        self._head_sec = second

    def _window_at(self, now: float) -> tuple[int, int, int]:
        if not self._is_time:
            return self._calls, self._failed, self._slow
        lag = math.floor(now) - self._head_sec
        if lag <= 0:
            return self._calls, self._failed, self._slow
        calls = failed = slow = 0
        size = self._size
        for back in range(max(size - lag, 0)):
            i = (self._head - back) % size
            calls += self._b_calls[i]
            failed += self._b_failed[i]
            slow += self._b_slow[i]
        return calls, failed, slow

    def _clear_window(self) -> None:
        self._calls = self._failed = self._slow = 0
        self._ring_pos = 0
        for buckets in (self._ring, self._b_calls, self._b_failed, self._b_slow):
            buckets[:] = [0] * len(buckets)
        self._head = 0
        self._head_sec = _NO_SECOND

    def _open(self, now: float, came_from: BreakerState) -> None:
        self._state = OPEN
        self._opened_at = now
        self._retry_at = now + self._wait
        self.transitions.append((now, came_from, OPEN))

    def _half_open(self, now: float) -> None:
        self._state = HALF_OPEN
        self._permits = self._trials = self._trial_failed = self._trial_slow = 0
        self.transitions.append((now, OPEN, HALF_OPEN))

    def _close(self, now: float) -> None:
        self._state = CLOSED
        self._permits = 0
        self._clear_window()
        self.transitions.append((now, HALF_OPEN, CLOSED))
