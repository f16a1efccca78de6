"""World tape: latency distributions, monotone correctness, calibration, common random numbers."""

from __future__ import annotations

import copy
import math
from dataclasses import fields
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from scipy import stats

from harness.run import simulate
from harness.spec import Latency, Suite
from harness.traffic import sample_requests
from harness.world import WIDTH, Tape, sample_latency, sample_tape

N_DRAWS = 200_000
Z99 = stats.norm.ppf(0.99)

BASE: dict[str, Any] = {
    "name": "world",
    "seed": 7,
    "traffic": {
        "requests": 4000,
        "mix": {
            "routine": {"weight": 0.7},
            "moderate": {"weight": 0.2, "tool_steps": 1, "tools": ["kb"]},
            "hard": {"weight": 0.1, "tool_steps": 2, "tools": ["kb", "crm"]},
        },
        "edge_cases": {"prompt_injection": 0.1},
    },
    "models": {
        "mini": {
            "tier": "fast",
            "latency": {"p50_ms": 350, "p99_ms": 1800},
            "quality": {"routine": 0.9, "moderate": 0.6, "hard": 0.3},
            "calibration": {"correct_mean": 0.82, "wrong_mean": 0.55, "concentration": 9},
        },
        "mid": {
            "tier": "balanced",
            "latency": {"p50_ms": 900, "p99_ms": 4500},
            "quality": {"routine": 0.95, "moderate": 0.85, "hard": 0.6},
        },
        "large": {
            "tier": "premium",
            "latency": {"dist": "exponential", "mean_ms": 2000},
            "quality": {"routine": 0.98, "moderate": 0.95, "hard": 0.88},
            "calibration": {"correct_mean": 0.9, "wrong_mean": 0.4, "concentration": 12},
        },
    },
    "tools": {
        "kb": {"kind": "retrieval", "latency": {"p50_ms": 120, "p99_ms": 700}},
        "crm": {"latency": {"dist": "constant", "p50_ms": 250}},
    },
}


def make_suite(changes: dict[str, Any] | None = None, **top: Any) -> Suite:
    """BASE with dotted-path changes applied (e.g. {"models.mid.latency.p50_ms": 500})."""
    data = copy.deepcopy(BASE)
    data.update(top)
    for dotted, value in (changes or {}).items():
        *parents, leaf = dotted.split(".")
        node = data
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return Suite.model_validate(data)


def tape_of(suite: Suite) -> Tape:
    return sample_tape(suite, sample_requests(suite))


def arrays(tape: Tape) -> dict[str, np.ndarray]:
    return {
        f.name: getattr(tape, f.name)
        for f in fields(tape)
        if isinstance(getattr(tape, f.name), np.ndarray)
    }


# --------------------------------------------------------------------------- latency


def _quantile_se(sigma: float, q: float, n: int) -> float:
    """Relative standard error of the empirical q-quantile of a lognormal with this sigma."""
    z = stats.norm.ppf(q)
    return sigma * math.sqrt(q * (1 - q) / n) / stats.norm.pdf(z)


@settings(max_examples=25, deadline=None)
@given(
    p50=st.floats(min_value=1.0, max_value=1e5),
    ratio=st.floats(min_value=1.05, max_value=20.0),
)
def test_lognormal_passes_through_p50_and_p99(p50: float, ratio: float) -> None:
    lat = Latency(dist="lognormal", p50_ms=p50, p99_ms=p50 * ratio)
    draws = sample_latency(lat, np.random.default_rng(0), (N_DRAWS,))
    sigma = math.log(ratio) / Z99
    got50, got99 = np.percentile(draws, [50, 99])
    tol50, tol99 = 5 * _quantile_se(sigma, 0.5, N_DRAWS), 5 * _quantile_se(sigma, 0.99, N_DRAWS)
    assert tol50 < 0.02 and tol99 < 0.06  # "within a few percent" at these sample sizes
    assert got50 == pytest.approx(lat.p50_ms / 1000, rel=tol50)
    assert got99 == pytest.approx(lat.p99_ms / 1000, rel=tol99)


@settings(max_examples=20, deadline=None)
@given(mean=st.floats(min_value=0.5, max_value=1e5))
def test_exponential_mean(mean: float) -> None:
    draws = sample_latency(
        Latency(dist="exponential", mean_ms=mean), np.random.default_rng(1), (N_DRAWS,)
    )
    assert draws.mean() == pytest.approx(mean / 1000, rel=5 / math.sqrt(N_DRAWS))


def test_exponential_without_mean_has_p50_as_median() -> None:
    lat = Latency(dist="exponential", p50_ms=700)
    draws = sample_latency(lat, np.random.default_rng(2), (N_DRAWS,))
    assert np.median(draws) == pytest.approx(0.7, rel=0.01)
    assert draws.mean() == pytest.approx(0.7 / math.log(2), rel=0.01)


@given(p50=st.floats(min_value=1e-3, max_value=1e7))
def test_constant_is_exact(p50: float) -> None:
    draws = sample_latency(Latency(dist="constant", p50_ms=p50), np.random.default_rng(3), (5, 3))
    assert draws.shape == (5, 3)
    assert np.all(draws == p50 / 1000)


@settings(max_examples=50, deadline=None)
@given(
    dist=st.sampled_from(["lognormal", "exponential", "constant"]),
    p50=st.floats(min_value=1e-3, max_value=1e6),
    ratio=st.floats(min_value=1.001, max_value=1e3),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
)
def test_latency_is_positive_and_finite(dist: str, p50: float, ratio: float, seed: int) -> None:
    lat = Latency(dist=dist, p50_ms=p50, p99_ms=p50 * ratio)  # type: ignore[arg-type]
    draws = sample_latency(lat, np.random.default_rng(seed), (2000, 2))
    assert draws.shape == (2000, 2)
    assert np.all(draws > 0)
    assert np.all(np.isfinite(draws))


def test_lognormal_needs_p99_above_p50() -> None:
    with pytest.raises(ValidationError, match="p99_ms must be greater than p50_ms"):
        Latency(p50_ms=500, p99_ms=500)


# --------------------------------------------------------------------------- correctness


def test_difficulty_is_uniform() -> None:
    tape = tape_of(make_suite({"traffic.requests": 20_000}))
    assert tape.difficulty.shape == (20_000,)
    assert np.all((tape.difficulty >= 0) & (tape.difficulty < 1))
    assert stats.kstest(tape.difficulty, "uniform").pvalue > 1e-3


def test_at_correlation_one_higher_quality_is_right_on_a_superset() -> None:
    suite = make_suite({"traffic.requests": 20_000, "world.correlation": 1.0})
    req = sample_requests(suite)
    tape = sample_tape(suite, req)
    names = list(req.class_names)
    quality = np.array(
        [[m.quality.get(c, m.default_quality) for c in names] for m in suite.models.values()]
    )  # (models, classes), increasing down the tiers in BASE
    right = tape.correct_u < quality[:, req.task_class].T  # (n, models)
    for weak, strong in [(0, 1), (1, 2), (0, 2)]:
        assert np.all(right[right[:, weak], strong]), (weak, strong)
        assert right[:, strong].sum() > right[:, weak].sum()
    for j, _ in enumerate(names):
        mine = req.task_class == j
        np.testing.assert_allclose(right[mine].mean(axis=0), quality[:, j], atol=0.03)


ONE_TIER: dict[str, Any] = {
    "stack.tiers": ["fast"],
    "stack.classifier.enabled": False,
    "stack.routes": {"only": {"tier": "fast"}},
    "stack.class_routes": {"routine": "only", "moderate": "only", "hard": "only"},
    "stack.escalation.confidence_threshold": 0.0,
    "stack.escalation.high_impact_route": None,
    "policies.actions.high_impact_tiers": ["fast"],
    "stack.timeouts": {"model_call_ms": 1e9, "tool_call_ms": 1e9, "request_deadline_ms": 1e10},
    "traffic.mix": {
        "routine": {"weight": 0.5},
        "moderate": {"weight": 0.3},
        "hard": {"weight": 0.2},
    },
    "traffic.requests": 3000,
    "traffic.edge_cases": {},
}


def test_engine_outcomes_are_monotone_in_quality() -> None:
    """Raising one model's quality only turns wrong answers into right ones, request by request."""
    weak = {
        **ONE_TIER,
        "models": {
            "solo": {"tier": "fast", "quality": {"routine": 0.6, "moderate": 0.4, "hard": 0.2}}
        },
    }
    strong = copy.deepcopy(weak)
    strong["models"]["solo"]["quality"] = {"routine": 0.9, "moderate": 0.7, "hard": 0.5}
    a = simulate(make_suite(weak)).requests.to_pandas()
    b = simulate(make_suite(strong)).requests.to_pandas()
    assert set(a["outcome"]) <= {"success", "wrong"}
    assert np.all(b["success"][a["success"]])
    assert b["success"].sum() > a["success"].sum()
    np.testing.assert_array_equal(a["latency_ms"], b["latency_ms"])  # same world, same timing


def test_confidence_is_higher_when_right() -> None:
    suite = make_suite({"traffic.requests": 20_000})
    tape = tape_of(suite)
    for j, model in enumerate(suite.models.values()):
        right, wrong = tape.conf_right[:, j], tape.conf_wrong[:, j]
        assert right.mean() > wrong.mean()
        assert right.mean() == pytest.approx(model.calibration.correct_mean, abs=0.01)
        assert wrong.mean() == pytest.approx(model.calibration.wrong_mean, abs=0.01)
        assert np.all((right >= 0) & (right <= 1) & (wrong >= 0) & (wrong <= 1))


def test_tape_shapes() -> None:
    suite = make_suite()
    tape = tape_of(suite)
    n = suite.traffic.requests
    assert tape.model_names == ("mini", "mid", "large")
    assert tape.tool_names == ("kb", "crm")
    assert tape.latency_s.shape == (n, 3, WIDTH)
    assert tape.tool_latency_s.shape == (n, 2, WIDTH)
    assert tape.conf_right.shape == (n, 3)
    assert np.all(tape.tool_latency_s[:, 1] == 0.25)  # crm is constant 250 ms


def test_calls_beyond_the_tape_are_deterministic() -> None:
    suite = make_suite()
    tape = tape_of(suite)
    assert tape.model_call(suite, 5, 1, 0) == (
        tape.latency_s[5, 1, 0],
        tape.error_u[5, 1, 0],
        tape.fault_u[5, 1, 0],
        tape.args_u[5, 1, 0],
    )
    again = tape_of(suite)
    for k in (WIDTH, WIDTH + 3):
        first = tape.model_call(suite, 5, 1, k)
        assert first == again.model_call(suite, 5, 1, k)
        assert first != tape.model_call(suite, 6, 1, k)
        assert first[0] > 0 and all(0 <= u < 1 for u in first[1:])
        assert tape.tool_call(suite, 5, 0, k) == again.tool_call(suite, 5, 0, k)
        assert tape.jitter(5, 8 + k) == again.jitter(5, 8 + k)


# --------------------------------------------------------------------------- common random numbers


def test_same_seed_same_tape_other_seed_differs() -> None:
    a, b = arrays(tape_of(make_suite())), arrays(tape_of(make_suite()))
    c = arrays(tape_of(make_suite(seed=8)))
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
        if name != "tool_latency_s":  # crm's constant latency is the same under any seed
            assert not np.array_equal(a[name], c[name]), name


@pytest.mark.parametrize(
    "change",
    [
        {"stack.escalation.confidence_threshold": 0.95},
        {"stack.breaker.enabled": False},
        {"stack.classifier.min_confidence": 0.1},
        {"stack.retry_budget": None, "stack.retry.base_ms": 50},
        {"stack.timeouts.model_call_ms": 100},
        {"policies.enforce": False},
        {"faults": [{"kind": "outage", "target": "mid", "start_s": 10, "duration_s": 5}]},
    ],
    ids=lambda c: ",".join(c),
)
def test_routing_and_fault_settings_leave_the_tape_bit_identical(change: dict[str, Any]) -> None:
    base = arrays(tape_of(make_suite()))
    other = arrays(tape_of(make_suite(change)))
    for name, values in base.items():
        assert np.array_equal(values, other[name]), name


def test_one_models_latency_leaves_other_models_columns_unchanged() -> None:
    base = tape_of(make_suite())
    other = tape_of(make_suite({"models.mid.latency": {"p50_ms": 300, "p99_ms": 12000}}))
    m = base.model_names.index("mid")
    assert not np.array_equal(base.latency_s[:, m], other.latency_s[:, m])
    for name in (
        "latency_s",
        "error_u",
        "fault_u",
        "args_u",
        "conf_right",
        "conf_wrong",
        "inject_u",
        "correct_u",
    ):
        a, b = getattr(base, name), getattr(other, name)
        for j in range(len(base.model_names)):
            if j != m:
                assert np.array_equal(a[:, j], b[:, j]), (name, j)
    for name in (
        "difficulty",
        "tool_latency_s",
        "tool_error_u",
        "tool_fault_u",
        "jitter_u",
        "classify_u",
        "classify_pick",
        "classify_conf_right",
        "classify_conf_wrong",
    ):
        assert np.array_equal(getattr(base, name), getattr(other, name)), name


def test_adding_a_model_or_tool_leaves_existing_columns_unchanged() -> None:
    base = tape_of(make_suite())
    models = {**BASE["models"], "extra": {"tier": "premium", "quality": {}}}
    tools = {**BASE["tools"], "extra_tool": {}}
    other = tape_of(make_suite(models=models, tools=tools))
    assert other.model_names[-1] == "extra" and other.tool_names[-1] == "extra_tool"
    for name in ("latency_s", "error_u", "fault_u", "args_u", "conf_right", "conf_wrong",
                 "correct_u"):  # fmt: skip
        assert np.array_equal(getattr(base, name), getattr(other, name)[:, :3]), name
    for name in ("tool_latency_s", "tool_error_u", "tool_fault_u"):
        assert np.array_equal(getattr(base, name), getattr(other, name)[:, :2]), name
    assert np.array_equal(base.difficulty, other.difficulty)


def _prefix_mismatches(names: tuple[str, ...]) -> list[str]:
    a = arrays(tape_of(make_suite({"traffic.requests": 1000})))
    b = arrays(tape_of(make_suite({"traffic.requests": 2000})))
    return [name for name in names if not np.array_equal(b[name][:1000], a[name])]


def test_tape_rows_do_not_depend_on_how_many_requests_follow() -> None:
    stable = (
        "difficulty",
        "conf_right",
        "latency_s",
        "tool_latency_s",
        "jitter_u",
        "classify_u",
        "classify_pick",
    )
    assert _prefix_mismatches(stable) == []


def test_every_tape_column_is_prefix_invariant() -> None:
    assert _prefix_mismatches(tuple(arrays(tape_of(make_suite())))) == []
