"""Token-aware latency: call time = ttft + output tokens x per-token (+ prefill), and TTFT."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from harness.run import simulate
from harness.spec import Dist, Latency, Suite
from harness.world import sample_latency
from tests.unit.test_engine import make_suite


def token_suite(**over: Any) -> Suite:
    latency = {
        "ttft": {"dist": "constant", "p50_ms": 200},
        "per_output_token": {"dist": "constant", "p50_ms": 10},
        "per_input_token": {"dist": "constant", "p50_ms": 0.5},
    }
    base: dict[str, Any] = {
        "traffic__requests": 20,
        "traffic__mix": {"routine": {"weight": 1, "input_tokens": 400, "output_tokens": 150}},
        "models__small__latency": latency,
    }
    return make_suite(**{**base, **over})


def test_call_time_is_ttft_plus_tokens_times_per_token_times() -> None:
    result = simulate(token_suite())
    spans = result.spans.to_pandas()
    chat = spans[spans["kind"] == "chat"]
    tin = chat["gen_ai.usage.input_tokens"].to_numpy()
    tout = chat["gen_ai.usage.output_tokens"].to_numpy()
    assert len(set(tout)) > 3  # token counts vary, so this checks the multiplication
    np.testing.assert_allclose(chat["ttft_ms"], 200 + 0.5 * tin, rtol=1e-9)
    np.testing.assert_allclose(chat["duration_ms"], 200 + 0.5 * tin + 10 * tout, rtol=1e-9)
    req = result.requests.to_pandas()
    answered = req[req["outcome"] == "success"]
    # one call per request, no queueing: the request's TTFT is its call's
    by_request = chat.set_index("request_id")["ttft_ms"]
    np.testing.assert_allclose(answered["ttft_ms"], by_request[answered["request_id"]], rtol=1e-9)


def test_plain_latency_first_token_comes_with_the_answer() -> None:
    result = simulate(make_suite(traffic__requests=5))
    chat = result.spans.to_pandas().query("kind == 'chat'")
    np.testing.assert_allclose(chat["ttft_ms"], chat["duration_ms"])
    np.testing.assert_allclose(result.requests.to_pandas()["ttft_ms"], 100.0)


def test_slow_first_token_delays_only_the_first_token_window() -> None:
    fault = {"kind": "slow_first_token", "target": "small", "start_s": 0, "duration_s": 5,
             "add_ms": 3000}  # fmt: skip
    base = simulate(token_suite(traffic__requests=40)).spans.to_pandas().query("kind == 'chat'")
    slow = simulate(token_suite(traffic__requests=40, faults=[fault])).spans.to_pandas()
    slow = slow.query("kind == 'chat'")
    inside = (slow["start_s"] < 5).to_numpy()
    assert inside.any() and (~inside).any()
    delta_ttft = slow["ttft_ms"].to_numpy() - base["ttft_ms"].to_numpy()
    delta_total = slow["duration_ms"].to_numpy() - base["duration_ms"].to_numpy()
    np.testing.assert_allclose(delta_ttft[inside], 3000)
    np.testing.assert_allclose(delta_total[inside], 3000)  # per-token time is unchanged
    np.testing.assert_allclose(delta_ttft[~inside], 0)


def test_ttft_is_null_without_an_answer() -> None:
    down = [{"kind": "outage", "target": "small"}, {"kind": "outage", "target": "big"}]
    suite = token_suite(faults=down, stack__handoff=True, traffic__requests=3)
    req = simulate(suite).requests
    assert req.column("outcome").to_pylist() == ["handoff"] * 3
    assert req.column("ttft_ms").null_count == 3


def test_ttft_threshold_reads_ttft_ms() -> None:
    from harness.thresholds import ALIASES, METRICS

    assert "ttft" in METRICS and ALIASES["ttft"] == "ttft_ms"


def test_lognormal_passes_through_p50_and_p99() -> None:
    x = sample_latency(Dist(p50_ms=400, p99_ms=2000), np.random.default_rng(3), (200_000,))
    assert math.isclose(np.percentile(x, 50), 0.4, rel_tol=0.02)
    assert math.isclose(np.percentile(x, 99), 2.0, rel_tol=0.03)


def test_empirical_resamples_each_value_equally() -> None:
    values = [100.0, 250.0, 400.0, 1000.0]
    x = sample_latency(
        Dist(dist="empirical", values_ms=values), np.random.default_rng(3), (80_000,)
    )
    got, counts = np.unique(x, return_counts=True)
    np.testing.assert_allclose(got, np.array(values) / 1000)
    np.testing.assert_allclose(counts / x.size, 0.25, atol=0.01)


def test_latency_is_either_whole_or_token_aware() -> None:
    with pytest.raises(ValueError, match="not both"):
        Latency.model_validate({"p50_ms": 100, "p99_ms": 200, "ttft": {"p50_ms": 1, "p99_ms": 2}})
    with pytest.raises(ValueError, match="needs ttft"):
        Latency.model_validate({"per_output_token": {"p50_ms": 1, "p99_ms": 2}})
    with pytest.raises(ValueError, match="values_ms"):
        Dist.model_validate({"dist": "empirical"})
    assert not Latency(p50_ms=100, p99_ms=200).token_aware


def test_switching_to_token_latency_keeps_error_rolls() -> None:
    """Error and fault rolls stay those of a lognormal model when its latency becomes
    token-aware (CRN: the change moves latency, not which calls fail)."""
    from harness.traffic import sample_requests
    from harness.world import sample_tape

    lognormal = {"p50_ms": 300, "p99_ms": 900}
    plain = make_suite(traffic__requests=30, models__small__latency=lognormal)
    token = token_suite(traffic__requests=30)
    a = sample_tape(plain, sample_requests(plain))
    b = sample_tape(token, sample_requests(token))
    np.testing.assert_array_equal(a.error_u, b.error_u)
    np.testing.assert_array_equal(a.fault_u, b.fault_u)
    assert b.per_token_s is not None and a.per_token_s is None
