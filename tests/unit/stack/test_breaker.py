"""The circuit breaker: golden traces for each rule, and property tests against a reference.

The reference model below keeps every call in a plain list and recomputes the window
from scratch, so it is slow but obviously right; the breaker must agree with it on every
permit, state and transition.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.stack._breaker import (
    CLOSED,
    HALF_OPEN,
    OPEN,
    BreakerConfig,
    BreakerState,
    CircuitBreaker,
    Transition,
)

OK, FAIL = False, True


def small(**overrides: object) -> BreakerConfig:
    """Count window 4, minimum 4, failure threshold 50%, 30 s open, 3 trials."""
    base: dict[str, object] = {
        "window_type": "count",
        "window_size": 4,
        "minimum_calls": 4,
        "failure_rate_threshold": 50.0,
        "slow_call_rate_threshold": 100.0,
        "slow_call_duration_s": 10.0,
        "wait_open_s": 30.0,
        "half_open_calls": 3,
    }
    base.update(overrides)
    return BreakerConfig(**base)  # type: ignore[arg-type]


def feed(breaker: CircuitBreaker, start: float, outcomes: list[bool], step: float = 1.0) -> float:
    """Acquire and complete one quick call per step; returns the time of the last one."""
    now = start
    for failed in outcomes:
        assert breaker.try_acquire(now)
        breaker.on_result(now, 0.1, failed)
        now += step
    return now - step


def opened_at_3() -> CircuitBreaker:
    breaker = CircuitBreaker(small())
    feed(breaker, 0.0, [OK, FAIL, OK, FAIL])
    return breaker


# --- golden traces ---------------------------------------------------------------------


def test_half_failures_open_on_the_call_that_fills_the_minimum() -> None:
    breaker = CircuitBreaker(small())
    feed(breaker, 0.0, [OK, FAIL, OK])
    assert breaker.transitions == []
    feed(breaker, 3.0, [FAIL])
    assert breaker.transitions == [(3.0, CLOSED, OPEN)]
    assert breaker.state == OPEN
    assert breaker.opened_at == 3.0


def test_open_refuses_until_the_wait_is_over_then_goes_half_open() -> None:
    breaker = opened_at_3()
    assert breaker.try_acquire(33.0 - 1e-9) is False
    assert breaker.snapshot(33.0).state == OPEN
    assert breaker.try_acquire(33.0) is True
    assert breaker.state == HALF_OPEN
    assert breaker.transitions == [(3.0, CLOSED, OPEN), (33.0, OPEN, HALF_OPEN)]
    assert breaker.snapshot(33.0).not_permitted == 1


def test_half_open_hands_out_exactly_the_trial_permits() -> None:
    breaker = opened_at_3()
    assert [breaker.try_acquire(33.0 + i) for i in range(5)] == [True, True, True, False, False]
    assert breaker.snapshot(40.0).trial_permits == 3
    assert breaker.snapshot(40.0).not_permitted == 2


def test_successful_trials_close_and_reset_the_window() -> None:
    breaker = opened_at_3()
    for i in range(3):
        assert breaker.try_acquire(33.0 + i)
    breaker.on_result(40.0, 0.1, OK)
    breaker.on_result(41.0, 0.1, FAIL)
    assert breaker.snapshot(41.0).state == HALF_OPEN
    breaker.on_result(42.0, 0.1, OK)
    assert breaker.transitions[-1] == (42.0, HALF_OPEN, CLOSED)
    assert breaker.snapshot(42.0).calls == 0
    # Reset means the old failures are gone: three fresh failures are not yet four calls.
    feed(breaker, 43.0, [FAIL, FAIL, FAIL])
    assert breaker.state == CLOSED


def test_failing_trials_reopen_with_a_fresh_wait() -> None:
    breaker = opened_at_3()
    for i in range(3):
        assert breaker.try_acquire(33.0 + i)
    breaker.on_result(40.0, 0.1, OK)
    breaker.on_result(41.0, 0.1, FAIL)
    breaker.on_result(42.0, 0.1, FAIL)
    assert breaker.transitions == [
        (3.0, CLOSED, OPEN),
        (33.0, OPEN, HALF_OPEN),
        (42.0, HALF_OPEN, OPEN),
    ]
    assert breaker.opened_at == 42.0
    assert breaker.try_acquire(72.0 - 1e-9) is False
    assert breaker.try_acquire(72.0) is True
    assert breaker.transitions[-1] == (72.0, OPEN, HALF_OPEN)


def test_slow_calls_open_it_and_the_duration_threshold_is_inclusive() -> None:
    breaker = CircuitBreaker(small(slow_call_rate_threshold=50.0, slow_call_duration_s=2.0))
    for now, duration in [(0.0, 2.0), (1.0, 0.5), (2.0, 1.999)]:
        assert breaker.try_acquire(now)
        breaker.on_result(now, duration, OK)
    assert breaker.state == CLOSED
    assert breaker.try_acquire(3.0)
    breaker.on_result(3.0, 2.0, OK)
    assert breaker.transitions == [(3.0, CLOSED, OPEN)]


def test_slow_trials_reopen() -> None:
    breaker = CircuitBreaker(small(slow_call_rate_threshold=50.0, slow_call_duration_s=2.0))
    feed(breaker, 0.0, [FAIL, FAIL, FAIL, FAIL])
    for i in range(3):
        assert breaker.try_acquire(40.0 + i)
    for i, duration in enumerate([5.0, 5.0, 0.1]):
        breaker.on_result(50.0 + i, duration, OK)
    assert breaker.transitions[-1] == (52.0, HALF_OPEN, OPEN)


def test_minimum_calls_prevents_early_opening() -> None:
    breaker = CircuitBreaker(small(window_size=10, minimum_calls=5))
    feed(breaker, 0.0, [FAIL, FAIL, FAIL, FAIL])
    assert breaker.state == CLOSED
    assert breaker.snapshot(3.0).failure_rate is None
    feed(breaker, 4.0, [OK])
    assert breaker.transitions == [(4.0, CLOSED, OPEN)]


def test_count_window_minimum_is_capped_at_the_window_size() -> None:
    breaker = CircuitBreaker(small(window_size=4, minimum_calls=10))
    feed(breaker, 0.0, [FAIL, FAIL, FAIL, FAIL])
    assert breaker.transitions == [(3.0, CLOSED, OPEN)]


def test_count_window_forgets_the_oldest_call() -> None:
    # Over all seven calls the failure rate is 5/7 = 71% < 75%; over the last four it is 75%.
    breaker = CircuitBreaker(small(failure_rate_threshold=75.0))
    feed(breaker, 0.0, [FAIL, FAIL, OK, OK, FAIL, FAIL])
    assert breaker.state == CLOSED
    assert breaker.snapshot(5.0).failure_rate == 50.0
    feed(breaker, 6.0, [FAIL])
    assert breaker.transitions == [(6.0, CLOSED, OPEN)]


def test_time_window_forgets_calls_by_whole_seconds() -> None:
    config = small(window_type="time", window_size=5)
    kept = CircuitBreaker(config)
    feed(kept, 0.1, [FAIL, FAIL, FAIL], step=0.1)
    feed(kept, 4.99, [OK])  # second 4: seconds 0..4 are in the window, 3 of 4 failed
    assert kept.transitions == [(4.99, CLOSED, OPEN)]

    forgot = CircuitBreaker(config)
    feed(forgot, 0.1, [FAIL, FAIL, FAIL], step=0.1)
    feed(forgot, 5.0, [OK])  # second 5: second 0 has dropped out, though only 4.7 s passed
    assert forgot.state == CLOSED
    assert forgot.snapshot(5.0).calls == 1


def test_time_window_is_not_capped_by_call_count() -> None:
    breaker = CircuitBreaker(small(window_type="time", window_size=2, minimum_calls=6))
    feed(breaker, 0.0, [FAIL] * 5, step=0.1)
    assert breaker.state == CLOSED
    feed(breaker, 0.5, [OK])
    assert breaker.transitions == [(0.5, CLOSED, OPEN)]


def test_time_window_snapshot_expires_without_changing_the_breaker() -> None:
    breaker = CircuitBreaker(small(window_type="time", window_size=3))
    feed(breaker, 0.0, [OK, FAIL, OK])  # seconds 0, 1, 2
    assert breaker.snapshot(2.5).calls == 3
    assert breaker.snapshot(3.0).calls == 2
    assert breaker.snapshot(4.0).calls == 1
    assert breaker.snapshot(100.0).calls == 0
    assert breaker.snapshot(2.0).calls == 3
    feed(breaker, 2.9, [FAIL])  # still second 2: all four calls count, 50% opens
    assert breaker.transitions == [(2.9, CLOSED, OPEN)]


def test_results_arriving_while_open_are_dropped() -> None:
    breaker = opened_at_3()
    before = breaker.snapshot(10.0)
    for i in range(10):
        breaker.on_result(10.0 + i, 100.0, FAIL)
    assert breaker.snapshot(10.0) == before
    assert breaker.transitions == [(3.0, CLOSED, OPEN)]
    assert breaker.try_acquire(33.0)


def test_zero_wait_goes_half_open_at_once() -> None:
    breaker = CircuitBreaker(small(wait_open_s=0.0))
    feed(breaker, 0.0, [FAIL, FAIL, FAIL, FAIL])
    assert breaker.try_acquire(3.0)
    assert breaker.transitions == [(3.0, CLOSED, OPEN), (3.0, OPEN, HALF_OPEN)]


def test_infinite_wait_keeps_it_open() -> None:
    breaker = CircuitBreaker(small(wait_open_s=math.inf))
    feed(breaker, 0.0, [FAIL, FAIL, FAIL, FAIL])
    assert breaker.try_acquire(1e12) is False
    assert breaker.state == OPEN


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"window_type": "sliding"}, "window_type must be 'count' or 'time'"),
        ({"window_size": 0}, "window_size must be an integer >= 1"),
        ({"half_open_calls": True}, "half_open_calls must be an integer >= 1"),
        ({"failure_rate_threshold": 0.0}, "failure_rate_threshold is a percentage in (0, 100]"),
        ({"slow_call_rate_threshold": 101.0}, "slow_call_rate_threshold is a percentage"),
        ({"slow_call_duration_s": 0.0}, "slow_call_duration_s must be > 0"),
        ({"wait_open_s": -1.0}, "wait_open_s must be >= 0"),
        ({"wait_open_s": math.nan}, "wait_open_s must be >= 0"),
    ],
)
def test_config_rejects_a_breaker_that_could_not_work(
    overrides: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match="invalid BreakerConfig") as caught:
        small(**overrides)
    assert message in str(caught.value)


# --- reference model -------------------------------------------------------------------


@dataclass
class Reference:
    """The breaker's rules restated as directly as possible, with every call kept in a list."""

    config: BreakerConfig
    state: BreakerState = CLOSED
    calls: list[tuple[float, bool, bool]] = field(default_factory=list)
    trials: list[tuple[bool, bool]] = field(default_factory=list)
    permits: int = 0
    opened_at: float = 0.0
    transitions: list[Transition] = field(default_factory=list)

    def window(self, now: float) -> list[tuple[bool, bool]]:
        """(failed, slow) of the calls in the window at ``now``."""
        size = self.config.window_size
        if self.config.window_type == "count":
            kept = self.calls[-size:]
        else:
            kept = [c for c in self.calls if math.floor(c[0]) > math.floor(now) - size]
        return [(failed, slow) for _, failed, slow in kept]

    def judge(self, outcomes: list[tuple[bool, bool]]) -> bool:
        """True when either rate reaches its threshold."""
        n = len(outcomes)
        failed = sum(1 for f, _ in outcomes if f)
        slow = sum(1 for _, s in outcomes if s)
        return (
            100.0 * failed / n >= self.config.failure_rate_threshold
            or 100.0 * slow / n >= self.config.slow_call_rate_threshold
        )

    def move(self, now: float, to: BreakerState) -> None:
        self.transitions.append((now, self.state, to))
        self.state = to

    def try_acquire(self, now: float) -> bool:
        if self.state == OPEN and now >= self.opened_at + self.config.wait_open_s:
            self.move(now, HALF_OPEN)
            self.permits = 0
            self.trials = []
        if self.state == CLOSED:
            return True
        if self.state == HALF_OPEN and self.permits < self.config.half_open_calls:
            self.permits += 1
            return True
        return False

    def on_result(self, now: float, duration_s: float, failed: bool) -> None:
        slow = duration_s >= self.config.slow_call_duration_s
        if self.state == CLOSED:
            self.calls.append((now, failed, slow))
            window = self.window(now)
            minimum = self.config.minimum_calls
            if self.config.window_type == "count":
                minimum = min(minimum, self.config.window_size)
            if len(window) >= minimum and self.judge(window):
                self.move(now, OPEN)
                self.opened_at = now
        elif self.state == HALF_OPEN:
            self.trials.append((failed, slow))
            if len(self.trials) == self.config.half_open_calls:
                if self.judge(self.trials):
                    self.move(now, OPEN)
                    self.opened_at = now
                else:
                    self.move(now, CLOSED)
                    self.calls = []


configs = st.builds(
    BreakerConfig,
    window_type=st.sampled_from(["count", "time"]),
    window_size=st.integers(1, 8),
    minimum_calls=st.integers(1, 10),
    failure_rate_threshold=st.one_of(
        st.sampled_from([100 / 3, 50.0, 100.0]), st.floats(1.0, 100.0)
    ),
    slow_call_rate_threshold=st.one_of(
        st.sampled_from([100 / 3, 50.0, 100.0]), st.floats(1.0, 100.0)
    ),
    slow_call_duration_s=st.sampled_from([0.5, 1.0, 2.0]),
    wait_open_s=st.sampled_from([0.0, 0.5, 1.0, 3.0, 10.0]),
    half_open_calls=st.integers(1, 4),
)
Op = tuple[float, float, bool, bool, int]
"""(dt, duration_s, failed, acquire, pick): see ``run``."""


def with_failure_share(tenths: int, raw: list[tuple[float, float, int, bool, int]]) -> list[Op]:
    """Fail calls whose score is below ``tenths``, so examples range from healthy to down."""
    return [(dt, d, score < tenths, acquire, pick) for dt, d, score, acquire, pick in raw]


exact_steps = st.sampled_from([0.0, 0.25, 0.5, 1.0, 2.0])  # land exactly on wait and second edges
steps = st.one_of(exact_steps, exact_steps, st.floats(0.0, 12.0))
durations = st.one_of(st.sampled_from([0.1, 0.5, 1.0, 2.0]), st.floats(0.0, 3.0))
operations = st.builds(
    with_failure_share,
    st.integers(0, 10),
    st.lists(
        st.tuples(steps, durations, st.integers(0, 9), st.booleans(), st.integers(0, 7)),
        min_size=10,
        max_size=200,
    ),
)


def run(
    config: BreakerConfig,
    ops: list[Op],
    check: bool = False,
) -> CircuitBreaker:
    """Drive the breaker (and, when ``check``, the reference beside it) through ``ops``.

    Each op waits ``dt``, then either asks for a permit or completes one of the calls in
    flight (chosen by ``pick``, so calls finish out of order and across state changes).
    """
    breaker = CircuitBreaker(config)
    reference = Reference(config)
    in_flight: list[int] = []  # for each call in flight, the period (transition count) it began
    permits: dict[int, int] = {}  # for each HALF_OPEN period, the permits it handed out
    now = 0.0
    for dt, duration, failed, acquire, pick in ops:
        now += dt
        if acquire:
            permitted = breaker.try_acquire(now)
            if check:
                assert permitted == reference.try_acquire(now)
            if permitted:
                period = len(breaker.transitions)
                in_flight.append(period)
                if breaker.state == HALF_OPEN:
                    permits[period] = permits.get(period, 0) + 1
                    assert permits[period] <= config.half_open_calls
        elif in_flight:
            in_flight.pop(pick % len(in_flight))
            breaker.on_result(now, duration, failed)
            if check:
                reference.on_result(now, duration, failed)
        if check:
            assert breaker.state == reference.state
            assert breaker.transitions == reference.transitions
        if breaker.state == HALF_OPEN:
            period = len(breaker.transitions)
            trials = sum(1 for started in in_flight if started == period)
            assert trials <= config.half_open_calls
            assert breaker.snapshot(now).trial_permits <= config.half_open_calls
    return breaker


@settings(max_examples=400, deadline=None)
@given(configs, operations)
def test_agrees_with_the_reference_model(config: BreakerConfig, ops: list[Op]) -> None:
    run(config, ops, check=True)


@settings(max_examples=200, deadline=None)
@given(configs, operations)
def test_half_open_never_has_more_trials_out_than_permitted(
    config: BreakerConfig, ops: list[Op]
) -> None:
    """``run`` asserts it after every step: permits per HALF_OPEN period, and calls in flight."""
    run(config, ops)


@settings(max_examples=200, deadline=None)
@given(configs, st.lists(st.tuples(steps, st.booleans()), max_size=150))
def test_closed_never_opens_while_the_failure_rate_stays_below_threshold(
    config: BreakerConfig, wishes: list[tuple[float, bool]]
) -> None:
    """Calls fail as wished unless that would put the window at the threshold.

    If even a success would leave the window at or above it (a time window can lose its
    successes to expiry), no call is made at that instant, so every judgement the breaker
    makes is of a window below the threshold.
    """
    breaker = CircuitBreaker(config)
    reference = Reference(config)
    now = 0.0
    for dt, wish in wishes:
        now += dt
        for failed in (wish, False) if wish else (False,):
            tried = Reference(config, calls=[*reference.calls, (now, failed, False)])
            window = tried.window(now)
            if 100.0 * sum(f for f, _ in window) / len(window) < config.failure_rate_threshold:
                reference = tried
                assert breaker.try_acquire(now)
                breaker.on_result(now, 0.0, failed)
                break
    assert breaker.transitions == []
    assert breaker.state == CLOSED
