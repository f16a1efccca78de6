"""Screening thresholds on recorded attempts: `screen` equals the naive recomputation, bit for bit.

The naive reference sums with math.fsum and takes percentiles with numpy.percentile.
"""

from __future__ import annotations

import math
from typing import Any
from unittest import mock

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.sweep import _screen
from harness.sweep._screen import (
    Attempts,
    accepted_attempt,
    percentile_key,
    screen,
    screen_naive,
    threshold_for_share,
)

KEYS = (
    "requests", "success_rate", "cost_per_request_usd", "tokens_per_request",
    "mean_latency_ms", "share_tier", "escalation_rate", "cost_per_success_usd",
)  # fmt: skip
CONFIDENCES = (0.0, 0.25, 0.5, 0.5, 0.75, 1.0, -0.0, 0.3, 0.7000000000000001, -2.0, 3.0)
AMOUNTS = (0.0, -0.0, 1.0, 2.0, 2.0, 3.5, 0.1, 1 / 3, 1e-3, 5e-324, 1e-300, 1e6, 2.0**52 + 1)
PERCENTILES = (0.0, 50.0, 95.0, 99.0, 100.0, 33.3, 99.9)


def assert_same(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    """Same keys, shapes and values, to the bit (NaN where NaN)."""
    assert list(got) == list(want)
    for key in want:
        assert got[key].shape == want[key].shape, key
        np.testing.assert_array_equal(got[key], want[key], err_msg=key, strict=True)
        assert got[key].tobytes() == want[key].tobytes(), key


@st.composite
def cases(draw: st.DrawFn, max_n: int = 20) -> tuple[Attempts, np.ndarray]:
    """Small attempts with ties everywhere, empty groups, padding NaN, and thresholds on,
    between and outside the confidences."""
    n = draw(st.integers(0, max_n))
    width = draw(st.integers(1, 4))
    n_groups = draw(st.integers(1, 4))
    n_tiers = draw(st.integers(1, 3))
    shape = (n, width)

    def grid(values: st.SearchStrategy[Any]) -> np.ndarray:
        return np.array(draw(st.lists(values, min_size=n * width, max_size=n * width))).reshape(
            shape
        )

    conf = grid(st.sampled_from(CONFIDENCES) | st.floats(0, 1)).astype(np.float64)
    count = np.array(draw(st.lists(st.integers(1, width), min_size=n, max_size=n)), np.int64)
    step = grid(st.sampled_from((0.0, 1.0, 1.0, 2.0, 5.0, 0.5)) | st.floats(0, 100))
    latency = np.cumsum(step, axis=1) if draw(st.booleans()) else grid(st.floats(-50, 50))
    cost = grid(st.sampled_from(AMOUNTS) | st.floats(-1e3, 1e3))
    tokens = np.cumsum(grid(st.integers(0, 3000)), axis=1)
    success = grid(st.booleans()).astype(bool)
    tier = grid(st.integers(0, n_tiers - 1)).astype(np.int16)
    group = np.array(draw(st.lists(st.integers(0, n_groups - 1), min_size=n, max_size=n)))
    pad = np.arange(width) >= count[:, None]
    conf[pad] = np.nan
    latency = np.where(pad, np.nan, latency)
    conf[np.arange(n), count - 1] = draw(st.sampled_from((np.inf, 0.5, np.nan)))
    att = Attempts(
        confidence=conf, latency_ms=latency, cost_usd=cost, tokens=tokens, success=success,
        tier=tier, count=count, group=group.astype(np.int64), n_tiers=n_tiers,
        n_groups=n_groups,
    )  # fmt: skip
    seen = sorted(set(conf[~np.isnan(conf)].tolist())) or [0.5]
    exact = st.sampled_from(seen)
    near = exact.map(lambda c: float(np.nextafter(c, np.inf)))
    other = st.floats(-0.5, 1.5) | st.sampled_from((-np.inf, np.inf, 0.0, 1.0))
    theta = draw(st.lists(exact | near | other, min_size=0, max_size=8))
    return att, np.array(theta, dtype=np.float64)


def random_attempts(n: int, seed: int, n_groups: int = 5, width: int = 3) -> Attempts:
    """Larger realistic attempts: Beta confidences, lognormal latencies rounded to 0.1 ms
    (ties), some cost values shared, a group left empty."""
    rng = np.random.default_rng(seed)
    shape = (n, width)
    conf = np.round(rng.beta(5, 2, shape), 3)
    latency = np.round(np.cumsum(rng.lognormal(6, 0.7, shape), axis=1), 1).astype(np.float64)
    cost = np.cumsum(rng.choice([1e-4, 2.5e-4, 3e-3, 0.02], shape), axis=1)
    cost *= rng.lognormal(0, 0.1, shape)
    tokens = np.cumsum(rng.integers(50, 2000, shape), axis=1)
    count = rng.choice(np.arange(1, width + 1), n, p=np.linspace(1, 3, width) / (2 * width))
    group = rng.choice(n_groups - 1, n)  # the last group has no requests
    return Attempts(
        confidence=conf, latency_ms=latency, cost_usd=cost, tokens=tokens,
        success=rng.random(shape) < 0.8, tier=np.tile(np.arange(width, dtype=np.int16), (n, 1)),
        count=count, group=group, n_tiers=width, n_groups=n_groups,
    )  # fmt: skip


# --------------------------------------------------------------------------- screen


@settings(max_examples=200, deadline=None)
@given(case=cases(), qs=st.lists(st.sampled_from(PERCENTILES), max_size=4))
def test_screen_equals_naive(case: tuple[Attempts, np.ndarray], qs: list[float]) -> None:
    att, theta = case
    assert_same(screen(att, theta, qs), screen_naive(att, theta, qs))


@settings(max_examples=40, deadline=None)
@given(case=cases(max_n=200))
def test_screen_equals_naive_in_small_pieces(case: tuple[Attempts, np.ndarray]) -> None:
    # tiny bucket grids and scans: the percentile search in many chunks
    att, theta = case
    with mock.patch.object(_screen, "_CELLS", 8), mock.patch.object(_screen, "_SCAN", 3):
        got = screen(att, theta, PERCENTILES)
    assert_same(got, screen_naive(att, theta, PERCENTILES))


def test_screen_equals_naive_at_scale() -> None:
    att = random_attempts(20_000, seed=7)
    rng = np.random.default_rng(8)
    theta = np.concatenate([rng.permutation(np.unique(att.confidence[:, :2]))[:40], [0.9, 0.9]])
    theta = np.concatenate([theta, rng.uniform(-0.1, 1.1, 10), [-np.inf, np.inf]])
    qs = (50, 90, 95, 99, 99.9)
    got = screen(att, theta, qs)
    assert_same(got, screen_naive(att, theta, qs))
    assert np.all(got["requests"][:, -2] == 0)
    assert np.isnan(got["p99_latency_ms"][:, -2]).all()
    assert np.isnan(got["share_tier"][:, -2]).all()


def test_metrics_by_hand() -> None:
    # request 0 escalates past attempt 0 when theta > 0.6; request 1 never has a choice
    att = Attempts(
        confidence=np.array([[0.6, 0.9], [0.2, np.nan]]),
        latency_ms=np.array([[100.0, 300.0], [50.0, np.nan]]),
        cost_usd=np.array([[0.001, 0.011], [0.002, 0.0]]),
        tokens=np.array([[10, 30], [5, 0]]),
        success=np.array([[False, True], [True, False]]),
        tier=np.array([[0, 1], [1, 0]], dtype=np.int16),
        count=np.array([2, 1]),
        group=np.array([0, 0]),
        n_tiers=2,
        n_groups=2,
    )
    got = screen(att, [0.6, 0.7], (50, 100))
    assert list(got) == [
        "requests", "success_rate", "cost_per_request_usd", "tokens_per_request",
        "mean_latency_ms", "p50_latency_ms", "p100_latency_ms", "share_tier", "escalation_rate",
        "cost_per_success_usd",
    ]  # fmt: skip
    assert got["requests"].tolist() == [[2, 0, 2], [2, 0, 2]]
    assert got["success_rate"][:, 2].tolist() == [0.5, 1.0]
    assert got["cost_per_request_usd"][:, 0].tolist() == [
        math.fsum([0.001, 0.002]) / 2,
        math.fsum([0.011, 0.002]) / 2,
    ]
    assert got["tokens_per_request"][:, 2].tolist() == [7.5, 17.5]
    assert got["p50_latency_ms"][:, 2].tolist() == [75.0, 175.0]
    assert got["p100_latency_ms"][:, 2].tolist() == [100.0, 300.0]
    assert got["share_tier"][:, 2].tolist() == [[0.5, 0.5], [0.0, 1.0]]
    assert got["escalation_rate"][:, 2].tolist() == [0.0, 0.5]
    assert np.isnan(got["success_rate"][:, 1]).all()
    assert np.isnan(got["share_tier"][:, 1]).all()


def test_accepted_attempt_is_the_first_confident_one() -> None:
    conf = np.array([[0.2, 0.8, 0.9], [0.9, 0.1, 0.2], [0.1, 0.2, np.nan], [np.nan, 0.0, 0.0]])
    att = random_attempts(4, seed=1)
    att = Attempts(**{**att.__dict__, "confidence": conf, "count": np.array([3, 3, 2, 1])})
    assert accepted_attempt(att, 0.5).tolist() == [1, 0, 1, 0]
    assert accepted_attempt(att, 0.95).tolist() == [2, 2, 1, 0]
    assert accepted_attempt(att, -np.inf).tolist() == [0, 0, 0, 0]
    assert accepted_attempt(att, 0.2).tolist() == [0, 0, 1, 0]


def test_no_thresholds_no_requests() -> None:
    att = random_attempts(0, seed=2, n_groups=2)
    got = screen(att, [0.1, 0.5])
    assert_same(got, screen_naive(att, [0.1, 0.5]))
    assert got["requests"].tolist() == [[0, 0, 0], [0, 0, 0]]
    assert np.isnan(got["p95_latency_ms"]).all()
    empty = screen(random_attempts(30, seed=3), [])
    assert empty["p50_latency_ms"].shape == (0, 6)
    assert empty["share_tier"].shape == (0, 6, 3)


def test_refuses_what_it_cannot_screen() -> None:
    good = random_attempts(3, seed=4).__dict__
    conf = good["confidence"].copy()
    conf[0, 0] = np.nan
    count = np.array([2, 1, 1])
    with pytest.raises(ValueError, match=r"confidence\[0, 0\] is NaN"):
        Attempts(**{**good, "confidence": conf, "count": count})
    Attempts(**{**good, "confidence": conf, "count": np.array([1, 1, 1])})  # last: never read
    lat = good["latency_ms"].copy()
    lat[1, 0] = np.inf
    with pytest.raises(ValueError, match=r"latency_ms\[1, 0\] is not finite"):
        Attempts(**{**good, "latency_ms": lat})
    with pytest.raises(ValueError, match=r"count must lie in 1\.\.3"):
        Attempts(**{**good, "count": np.array([0, 1, 1])})
    with pytest.raises(ValueError, match=r"group must lie in 0\.\.4"):
        Attempts(**{**good, "group": np.array([0, 5, 1])})
    tier = good["tier"].copy()
    tier[2, 0] = 3
    with pytest.raises(ValueError, match=r"tier\[2, 0\] is not a tier index"):
        Attempts(**{**good, "tier": tier})
    with pytest.raises(ValueError, match="shape"):
        Attempts(**{**good, "cost_usd": good["cost_usd"][:, :2]})
    with pytest.raises(ValueError, match="NaN"):
        screen(Attempts(**good), [0.5, np.nan])
    with pytest.raises(ValueError, match=r"\[0, 100\]"):
        screen(Attempts(**good), [0.5], (101,))


# --------------------------------------------------------------------------- the pieces


@settings(max_examples=300, deadline=None)
@given(
    values=st.lists(
        st.sampled_from((0.0, 1.0, -1.0, 2.5)) | st.floats(-1e9, 1e9), min_size=1, max_size=40
    ),
    q=st.sampled_from(PERCENTILES) | st.floats(0, 100),
)
def test_linear_percentile_is_numpys(values: list[float], q: float) -> None:
    x = np.array(values) + 0.0
    lo, hi, t = _screen._linear_ranks(len(x), q)
    ordered = np.sort(x)
    got = _screen._lerp(ordered[lo : lo + 1], ordered[hi : hi + 1], t)[0]
    want = np.percentile(x, q)
    assert got == want and math.copysign(1, got) == math.copysign(1, want)


@settings(max_examples=200, deadline=None)
@given(
    base=st.floats(-1e6, 1e6),
    steps=st.lists(st.integers(-3, 3), min_size=1, max_size=200),
    scale=st.sampled_from((1, 2**20, 2**40)),
)
def test_by_value_sorts(base: float, steps: list[int], scale: int) -> None:
    # values a few ulps apart share their leading bits: the repair has to sort them
    x = base + np.array(steps, dtype=np.float64) * abs(base or 1.0) * 2.0**-52 * scale
    order = _screen._by_value(x)
    assert sorted(order.tolist()) == list(range(len(x)))
    assert np.all(np.diff(x[order]) >= 0)


@settings(max_examples=200, deadline=None)
@given(values=st.lists(st.sampled_from(AMOUNTS) | st.floats(-1e300, 1e300), max_size=30))
def test_limbs_add_up_exactly(values: list[float]) -> None:
    x = np.array(values, dtype=np.float64)
    parts = [(e, limb.copy()) for e, limb in _screen._limbs(x, 10**6)]
    bits = 53 - (10**6).bit_length()
    for e, limb in parts:
        assert np.all(limb == np.floor(limb)) and np.all(np.abs(limb) < 2.0**bits), e
    for i, v in enumerate(values):
        assert math.fsum(math.ldexp(limb[i], e) for e, limb in parts) == v


# --------------------------------------------------------------------------- share


def brute_share(att: Attempts, theta: float, tier: int, group: int | None) -> tuple[int, int]:
    """Requests of `group` accepted at `tier` at `theta`, and the group's size."""
    f = accepted_attempt(att, theta)
    members = np.arange(att.n) if group is None else np.flatnonzero(att.group == group)
    return int(np.count_nonzero(att.tier[members, f[members]] == tier)), len(members)


@settings(max_examples=150, deadline=None)
@given(
    case=cases(),
    tier=st.integers(0, 2),
    share=st.floats(-0.2, 1.2),
    all_groups=st.booleans(),
    group=st.integers(0, 3),
)
def test_threshold_for_share_is_the_best_breakpoint(
    case: tuple[Attempts, np.ndarray], tier: int, share: float, all_groups: bool, group: int
) -> None:
    att, _ = case
    tier, chosen = tier % att.n_tiers, None if all_groups else group % att.n_groups
    members = np.arange(att.n) if chosen is None else np.flatnonzero(att.group == chosen)
    if not len(members):
        with pytest.raises(ValueError, match="no requests"):
            threshold_for_share(att, tier, share, chosen)
        return
    got = threshold_for_share(att, tier, share, chosen)
    conf = att.confidence[np.isfinite(att.confidence)]
    tries = np.concatenate([conf, np.nextafter(conf, np.inf), np.nextafter(conf, -np.inf)])
    tries = np.unique(np.concatenate([tries, [-np.inf, np.inf, got]]))

    def gap(theta: float) -> float:
        hits, size = brute_share(att, theta, tier, chosen)
        return abs(hits / size - share)

    gaps = np.array([gap(t) for t in tries])
    assert gap(got) == gaps.min()
    # the lowest such threshold, up to thresholds that accept the very same attempts
    accepted = accepted_attempt(att, got)[members]
    for theta in tries[(tries < got) & (gaps == gaps.min())]:
        assert np.array_equal(accepted_attempt(att, theta)[members], accepted)
    # and a breakpoint: just above it, some request of the group escalates further
    if got != np.inf:
        above = accepted_attempt(att, float(np.nextafter(got, np.inf)))[members]
        assert not np.array_equal(above, accepted)


def test_threshold_for_share_at_scale() -> None:
    att = random_attempts(20_000, seed=9)
    conf = np.unique(att.confidence)
    tries = np.concatenate([conf, np.nextafter(conf, np.inf), [-np.inf, np.inf]])
    for share, group in ((0.2, None), (0.3, 1), (0.0, 2), (1.0, None)):
        column = att.n_groups if group is None else group
        theta = threshold_for_share(att, 2, share, group)
        got = screen(att, np.append(tries, theta), ())["share_tier"][:, column, 2]
        assert abs(got[-1] - share) == np.abs(got - share).min()
        assert got[-1] == np.divide(*brute_share(att, theta, 2, group))


def test_percentile_keys() -> None:
    assert percentile_key(95) == "p95_latency_ms"
    assert percentile_key(99.9) == "p99.9_latency_ms"
    assert set(KEYS) < set(screen(random_attempts(5, seed=5), [0.5]))
