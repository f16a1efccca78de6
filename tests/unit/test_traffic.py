"""Traffic sampler: Poisson arrivals with spikes, the task mix, sizes and edge-case labels."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import numpy as np
import pytest
from scipy import stats

from harness.spec import Suite
from harness.traffic import Requests, arrival_times, rate_breakpoints, sample_requests
from harness.util import BLOCK

CLASSIC_MIX = {
    "routine": {"weight": 0.7, "input_tokens": 600, "output_tokens": 180},
    "moderate": {"weight": 0.2, "input_tokens": 1200, "output_tokens": 350, "tool_steps": 1},
    "hard": {"weight": 0.1, "input_tokens": 2500, "output_tokens": 700, "tool_steps": 3},
}


def make_suite(seed: int = 0, stack: dict[str, Any] | None = None, **traffic: Any) -> Suite:
    """A minimal suite around a traffic section (the sampler reads nothing else)."""
    traffic.setdefault("mix", CLASSIC_MIX)
    return Suite.model_validate(
        {
            "name": "traffic",
            "seed": seed,
            "traffic": traffic,
            "models": {"m": {"tier": "fast", "quality": {}}},
            "stack": stack or {},
        }
    )


def columns(req: Requests) -> dict[str, np.ndarray]:
    return {f.name: getattr(req, f.name) for f in fields(req) if f.name != "class_names"}


# --------------------------------------------------------------------------- arrivals


@pytest.mark.parametrize(
    "spikes",
    [[], [{"start_s": 20, "duration_s": 30, "multiplier": 5}], [{"start_s": 0, "duration_s": 5}]],
)
def test_arrivals_are_positive_and_non_decreasing(spikes: list[dict[str, float]]) -> None:
    arr = sample_requests(make_suite(requests=5000, rate_per_s=40, spikes=spikes)).arrival_s
    assert arr.dtype == np.float64
    assert arr.shape == (5000,)
    assert arr[0] > 0
    assert np.all(np.diff(arr) >= 0)


@pytest.mark.parametrize("rate", [0.5, 12.0, 750.0])
def test_poisson_rate_is_recovered(rate: float) -> None:
    arr = sample_requests(make_suite(requests=20_000, rate_per_s=rate, seed=3)).arrival_s
    gaps = np.diff(np.concatenate([[0.0], arr]))
    assert gaps.mean() == pytest.approx(1 / rate, rel=0.03)
    # exponential gaps: coefficient of variation 1, and the whole shape fits
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, rel=0.05)
    assert stats.kstest(gaps * rate, "expon").pvalue > 1e-3


@pytest.mark.parametrize("rate", [1e-6, 1e6])
def test_extreme_rates_scale_time_without_breaking(rate: float) -> None:
    arr = sample_requests(make_suite(requests=10_000, rate_per_s=rate)).arrival_s
    assert np.all(np.isfinite(arr))
    assert np.all(np.diff(arr) >= 0)
    assert np.diff(np.concatenate([[0.0], arr])).mean() == pytest.approx(1 / rate, rel=0.05)


def test_arrivals_scale_inversely_with_rate() -> None:
    """Same unit-rate epochs, divided by the rate: doubling the rate halves every time."""
    slow = sample_requests(make_suite(requests=3000, rate_per_s=4.0)).arrival_s
    fast = sample_requests(make_suite(requests=3000, rate_per_s=8.0)).arrival_s
    np.testing.assert_allclose(fast, slow / 2, rtol=1e-12)


def test_spike_multiplies_the_rate_inside_its_window() -> None:
    rate, mult, start, dur = 10.0, 4.0, 300.0, 100.0
    spike = {"start_s": start, "duration_s": dur, "multiplier": mult}
    arr = sample_requests(make_suite(requests=20_000, rate_per_s=rate, spikes=[spike])).arrival_s
    assert arr[-1] > start + dur + 300  # the run extends well past the spike
    inside = np.count_nonzero((arr >= start) & (arr < start + dur))
    before = np.count_nonzero(arr < start)
    after = np.count_nonzero((arr >= start + dur) & (arr < start + dur + 300))
    assert inside / dur == pytest.approx(rate * mult, rel=0.08)  # ~4000 expected, sd ~63
    assert before / start == pytest.approx(rate, rel=0.1)  # ~3000 expected, sd ~55
    assert after / 300 == pytest.approx(rate, rel=0.1)


def test_spike_only_changes_arrivals_from_its_start() -> None:
    base = sample_requests(make_suite(requests=4000, rate_per_s=10.0)).arrival_s
    spike = {"start_s": 100.0, "duration_s": 50.0, "multiplier": 3.0}
    spiked = sample_requests(make_suite(requests=4000, rate_per_s=10.0, spikes=[spike])).arrival_s
    early = base < 100.0
    np.testing.assert_array_equal(spiked[early], base[early])
    assert not np.array_equal(spiked, base)


def test_rate_breakpoints_multiply_overlapping_spikes() -> None:
    suite = make_suite(
        rate_per_s=10.0,
        spikes=[
            {"start_s": 10, "duration_s": 20, "multiplier": 2},
            {"start_s": 20, "duration_s": 20, "multiplier": 3},
        ],
    )
    times, rates = rate_breakpoints(suite.traffic)
    np.testing.assert_array_equal(times, [0, 10, 20, 30, 40])
    np.testing.assert_array_equal(rates, [10, 20, 60, 30, 10])


def test_arrival_times_invert_the_cumulative_intensity() -> None:
    """Mapping arrivals through the cumulative intensity gives a unit-rate Poisson process."""
    spikes = [{"start_s": 50, "duration_s": 40, "multiplier": 6}]
    suite = make_suite(requests=20_000, rate_per_s=5.0, spikes=spikes, seed=9)
    arr = arrival_times(suite.traffic, suite.seed)
    cum = 5.0 * arr + np.clip(arr - 50, 0, 40) * 5.0 * 5  # extra intensity during the spike
    unit_gaps = np.diff(np.concatenate([[0.0], cum]))
    assert unit_gaps.mean() == pytest.approx(1.0, rel=0.03)
    assert stats.kstest(unit_gaps, "expon").pvalue > 1e-3


# --------------------------------------------------------------------------- mix and sizes


def test_mix_weights_are_recovered() -> None:
    req = sample_requests(make_suite(requests=50_000, seed=1))
    assert req.class_names == ("routine", "moderate", "hard")
    shares = np.bincount(req.task_class, minlength=3) / len(req)
    np.testing.assert_allclose(shares, [0.7, 0.2, 0.1], atol=0.01)
    assert req.task_class.dtype == np.int16


def test_mix_weights_are_normalised() -> None:
    unit = sample_requests(make_suite(requests=2000))
    scaled_mix = {k: {**v, "weight": v["weight"] * 10} for k, v in CLASSIC_MIX.items()}
    scaled = sample_requests(make_suite(requests=2000, mix=scaled_mix))
    np.testing.assert_array_equal(unit.task_class, scaled.task_class)


def test_zero_weight_class_is_never_drawn() -> None:
    mix = {"a": {"weight": 0}, "b": {"weight": 1}, "c": {"weight": 0}}
    req = sample_requests(make_suite(requests=5000, mix=mix))
    assert set(req.task_class.tolist()) == {1}


def test_single_class_mix() -> None:
    req = sample_requests(make_suite(requests=100, mix={"only": {"weight": 0.3, "tool_steps": 2}}))
    assert req.class_names == ("only",)
    assert np.all(req.task_class == 0)
    assert np.all(req.tool_steps == 2)


def test_sizes_and_steps_follow_the_class() -> None:
    req = sample_requests(make_suite(requests=30_000, seed=2))
    for j, spec in enumerate(CLASSIC_MIX.values()):
        mine = req.task_class == j
        assert np.median(req.input_tokens[mine]) == pytest.approx(spec["input_tokens"], rel=0.03)
        assert np.median(req.output_tokens[mine]) == pytest.approx(spec["output_tokens"], rel=0.03)
        assert np.all(req.tool_steps[mine] == spec.get("tool_steps", 0))
    assert req.input_tokens.min() >= 1 and req.output_tokens.min() >= 1
    assert req.input_tokens.dtype == np.int32 and req.output_tokens.dtype == np.int32


def test_zero_token_spread_gives_exact_medians() -> None:
    mix = {"a": {"weight": 1, "input_tokens": 123, "output_tokens": 45, "token_spread": 0}}
    req = sample_requests(make_suite(requests=500, mix=mix))
    assert np.all(req.input_tokens == 123)
    assert np.all(req.output_tokens == 45)


# --------------------------------------------------------------------------- edge cases

EDGE = {"pii": 0.08, "prompt_injection": 0.03, "prohibited_action": 0.01, "high_impact": 0.25}
LABELS = {
    "pii": "pii",
    "prompt_injection": "injection",
    "prohibited_action": "prohibited",
    "high_impact": "high_impact",
}


def test_edge_case_rates_are_recovered_independently() -> None:
    req = sample_requests(make_suite(requests=50_000, edge_cases=EDGE, seed=4))
    for key, attr in LABELS.items():
        flags = getattr(req, attr)
        assert flags.dtype == np.bool_
        p = EDGE[key]
        se = np.sqrt(p * (1 - p) / len(req))
        assert abs(flags.mean() - p) < 5 * se, key
    both = (req.pii & req.high_impact).mean()
    assert both == pytest.approx(EDGE["pii"] * EDGE["high_impact"], rel=0.15)


@pytest.mark.parametrize("p", [0.0, 1.0])
def test_edge_case_rates_at_the_bounds(p: float) -> None:
    edge = dict.fromkeys(EDGE, p)
    req = sample_requests(make_suite(requests=3000, edge_cases=edge))
    for attr in LABELS.values():
        assert np.all(getattr(req, attr) == bool(p)), attr


def test_edge_case_labels_do_not_depend_on_class() -> None:
    req = sample_requests(make_suite(requests=50_000, edge_cases={"pii": 0.2}, seed=5))
    for j in range(3):
        mine = req.task_class == j
        assert req.pii[mine].mean() == pytest.approx(0.2, abs=0.02)


# --------------------------------------------------------------------------- determinism


def test_same_seed_gives_equal_arrays() -> None:
    suite = make_suite(
        requests=5000, edge_cases=EDGE, seed=11, spikes=[{"start_s": 10, "duration_s": 10}]
    )
    a, b = columns(sample_requests(suite)), columns(sample_requests(suite))
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_other_seed_differs() -> None:
    a = sample_requests(make_suite(requests=2000, edge_cases=EDGE, seed=11))
    b = sample_requests(make_suite(requests=2000, edge_cases=EDGE, seed=12))
    for name in ("arrival_s", "task_class", "input_tokens", "output_tokens", "pii"):
        assert not np.array_equal(getattr(a, name), getattr(b, name)), name


def test_routing_settings_do_not_change_traffic() -> None:
    base = columns(sample_requests(make_suite(requests=3000, edge_cases=EDGE)))
    other = make_suite(
        requests=3000,
        edge_cases=EDGE,
        stack={"escalation": {"confidence_threshold": 0.9}, "breaker": {"enabled": False}},
    )
    for name, values in columns(sample_requests(other)).items():
        np.testing.assert_array_equal(values, base[name], err_msg=name)


def test_each_traffic_knob_only_moves_its_own_draws() -> None:
    """Arrival rate, mix sizes and edge-case rates are separate streams (common random numbers)."""
    base = sample_requests(make_suite(requests=3000, edge_cases=EDGE))
    faster = sample_requests(make_suite(requests=3000, edge_cases=EDGE, rate_per_s=30))
    np.testing.assert_array_equal(faster.task_class, base.task_class)
    np.testing.assert_array_equal(faster.input_tokens, base.input_tokens)
    np.testing.assert_array_equal(faster.pii, base.pii)
    more_pii = sample_requests(make_suite(requests=3000, edge_cases={**EDGE, "pii": 0.5}))
    np.testing.assert_array_equal(more_pii.arrival_s, base.arrival_s)
    np.testing.assert_array_equal(more_pii.task_class, base.task_class)
    assert np.all(more_pii.pii[base.pii])  # raising a rate only adds labels
    np.testing.assert_array_equal(more_pii.injection, base.injection)


# --------------------------------------------------------------------------- prefix invariance

PREFIX_STABLE = (
    "arrival_s",
    "task_class",
    "input_tokens",
    "tool_steps",
    "pii",
    "injection",
    "prohibited",
    "high_impact",
)


@pytest.mark.parametrize(("short", "long"), [(1000, 2000), (BLOCK - 3, BLOCK + 700)])
def test_request_draws_do_not_depend_on_how_many_follow(short: int, long: int) -> None:
    a = sample_requests(make_suite(requests=short, edge_cases=EDGE, seed=6))
    b = sample_requests(make_suite(requests=long, edge_cases=EDGE, seed=6))
    assert len(a) == short and len(b) == long
    for name in PREFIX_STABLE:
        np.testing.assert_array_equal(getattr(b, name)[:short], getattr(a, name), err_msg=name)


def test_output_tokens_do_not_depend_on_how_many_follow() -> None:
    a = sample_requests(make_suite(requests=1000, seed=6))
    b = sample_requests(make_suite(requests=2000, seed=6))
    np.testing.assert_array_equal(b.output_tokens[:1000], a.output_tokens)
