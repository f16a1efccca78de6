"""Queueing in the engine against M/M/c theory (Erlang C) and an exact FCFS recursion.

One exponential model with capacity c, Poisson arrivals, and a stack that makes exactly
one call per request (classifier off, one tier, no faults, errors, budgets or timeouts
that could bite): the engine is then an M/M/c FCFS queue, and

    Wq = C(c, a) / (c * mu - lambda),  a = lambda / mu,

with C the Erlang C probability of waiting.
"""

from __future__ import annotations

import heapq
import math
from typing import Any

import numpy as np
import pandas as pd
import pytest

from harness.run import RunResult, simulate
from harness.spec import Latency, Suite
from harness.traffic import arrival_times, sample_requests
from harness.world import sample_latency, sample_tape

C = 4
MEAN_MS = 1000.0
RHO = 0.8
MU = 1000.0 / MEAN_MS  # per second
LAMBDA = RHO * C * MU
REQUESTS = 100_000


def mmc_suite(requests: int, *, c: int = C, rate: float = LAMBDA, seed: int = 0) -> Suite:
    data: dict[str, Any] = {
        "name": "mmc",
        "seed": seed,
        "traffic": {
            "requests": requests,
            "rate_per_s": rate,
            "mix": {"only": {"weight": 1, "tool_steps": 0}},
        },
        "models": {
            "server": {
                "tier": "fast",
                "latency": {"dist": "exponential", "mean_ms": MEAN_MS},
                "quality": {"only": 0.9},
                "capacity": c,
            }
        },
        "stack": {
            "tiers": ["fast"],
            "classifier": {"enabled": False},
            "routes": {"only": {"tier": "fast"}},
            "class_routes": {"only": "only"},
            "escalation": {"high_impact_route": None},
            "breaker": {"enabled": False},
            "timeouts": {"model_call_ms": 1e12, "tool_call_ms": 1e12, "request_deadline_ms": 1e12},
            "budgets": {"request_tokens": None, "step_output_tokens": None},
        },
        "policies": {"actions": {"high_impact_tiers": ["fast"]}},
    }
    return Suite.model_validate(data)


def erlang_c(c: int, a: float) -> float:
    """Probability that an arrival waits in an M/M/c queue with offered load a = lambda/mu < c."""
    head = sum(a**k / math.factorial(k) for k in range(c))
    tail = a**c / math.factorial(c) * c / (c - a)
    return tail / (head + tail)


def fcfs_waits(arrivals: np.ndarray, service: np.ndarray, c: int) -> np.ndarray:
    """Exact waiting times of a FCFS queue with c servers (Kiefer-Wolfowitz recursion)."""
    free = [0.0] * c
    waits = np.empty(arrivals.shape[0])
    for i, (t, s) in enumerate(zip(arrivals.tolist(), service.tolist(), strict=True)):
        start = max(t, heapq.heappop(free))
        waits[i] = start - t
        heapq.heappush(free, start + s)
    return waits


def chat_spans(result: RunResult) -> pd.DataFrame:
    spans = result.spans.to_pandas()
    chat = spans[spans["kind"] == "chat"].sort_values("request_id")
    assert chat["request_id"].tolist() == list(range(result.trace.n))  # one call per request
    return chat


def max_in_service(chat: pd.DataFrame) -> int:
    """Most calls holding a server at once (service starts after the queue wait).

    A queued call starts at the very instant another one ends; the times are rebuilt from
    milliseconds, so ends are moved 1 ns earlier to keep that hand-over from overlapping.
    """
    start = chat["start_s"].to_numpy() + chat["queue_ms"].to_numpy() / 1000
    end = chat["start_s"].to_numpy() + chat["duration_ms"].to_numpy() / 1000 - 1e-9
    times = np.concatenate([start, end])
    steps = np.concatenate([np.ones_like(start), -np.ones_like(end)])
    order = np.lexsort((steps, times))
    return int(np.cumsum(steps[order]).max())


@pytest.fixture(scope="module")
def mmc_run() -> tuple[Suite, RunResult]:
    suite = mmc_suite(REQUESTS)
    return suite, simulate(suite)


def test_the_scenario_is_one_call_per_request(mmc_run: tuple[Suite, RunResult]) -> None:
    suite, result = mmc_run
    requests = result.requests.to_pandas()
    assert set(requests["outcome"]) == {"success", "wrong"}
    assert (requests["model_calls"] == 1).all() and (requests["retries"] == 0).all()
    chat = chat_spans(result)
    assert (chat["status"] == "ok").all()
    service_s = (chat["duration_ms"] - chat["queue_ms"]).to_numpy() / 1000
    assert service_s.mean() == pytest.approx(1 / MU, rel=0.02)
    # request latency is exactly queueing plus service
    np.testing.assert_allclose(requests["latency_ms"], chat["duration_ms"], rtol=1e-9, atol=1e-6)
    assert suite.traffic.requests / requests["arrival_s"].max() == pytest.approx(LAMBDA, rel=0.02)


def test_calls_in_service_never_exceed_capacity() -> None:
    result = simulate(mmc_suite(3000, c=2, rate=1.5 * 2 * MU))  # overloaded: a queue builds up
    assert max_in_service(chat_spans(result)) <= 2


def test_queue_waits_equal_the_fcfs_recursion(mmc_run: tuple[Suite, RunResult]) -> None:
    """Request by request: the engine's queue time is the exact FCFS c-server wait."""
    suite, result = mmc_run
    requests = sample_requests(suite)
    service = sample_tape(suite, requests).latency_s[:, 0, 0]  # first call to model 0
    expected = fcfs_waits(requests.arrival_s, service, C)
    got = chat_spans(result)["queue_ms"].to_numpy() / 1000
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-9)


def test_mean_wait_matches_erlang_c(mmc_run: tuple[Suite, RunResult]) -> None:
    _, result = mmc_run
    waits = chat_spans(result)["queue_ms"].to_numpy() / 1000
    expected = erlang_c(C, LAMBDA / MU) / (C * MU - LAMBDA)  # ~0.746 s
    # waits are autocorrelated: batch means give an honest standard error (~4.5% here)
    batches = waits.reshape(20, -1).mean(axis=1)
    se = batches.std(ddof=1) / math.sqrt(len(batches)) / waits.mean()
    assert abs(waits.mean() / expected - 1) < max(0.05, 3 * se)
    assert (waits > 0).mean() == pytest.approx(erlang_c(C, LAMBDA / MU), rel=0.05)


def test_fcfs_oracle_reproduces_erlang_c() -> None:
    """The recursion above, fed by the harness's own samplers, is a correct M/M/c oracle."""
    suite = mmc_suite(2_000_000)
    arrivals = arrival_times(suite.traffic, suite.seed)
    service = sample_latency(
        Latency(dist="exponential", mean_ms=MEAN_MS), np.random.default_rng(1), arrivals.shape
    )
    waits = fcfs_waits(arrivals, service, C)
    pw = erlang_c(C, LAMBDA / MU)
    assert pw == pytest.approx(0.5964, abs=1e-4)  # tabulated Erlang C(4, 3.2)
    assert waits.mean() == pytest.approx(pw / (C * MU - LAMBDA), rel=0.05)
    assert (waits > 0).mean() == pytest.approx(pw, rel=0.015)
