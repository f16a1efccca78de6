"""Distributions in the suite's shapes, the rule that fits them, and goodness of fit."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from harness.data._dist import (
    AUTO_KS,
    AUTO_MIN_N,
    EMPIRICAL_MAX,
    Dist,
    choose_dist,
    fit_dist,
    round_sig,
)
from harness.data._gof import (
    GoodnessOfFit,
    QuantileCheck,
    goodness_of_fit,
    ks_distance,
    ks_test,
    quantile_errors,
    signed_percent,
)
from harness.spec import Dist as SpecDist
from harness.world import sample_latency

Z99 = 2.3263478740408408


def lognormal_sample(n: int, p50: float = 200.0, sigma: float = 0.4, seed: int = 1) -> np.ndarray:
    return p50 * np.exp(sigma * np.random.default_rng(seed).standard_normal(n))


# --------------------------------------------------------------------------- Dist


@pytest.mark.parametrize(
    "dist",
    [
        Dist.lognormal(200.0, 900.0),
        Dist.exponential(150.0),
        Dist.constant(42.0),
        Dist.empirical([1.0, 2.0, 2.0, 10.0]),
    ],
    ids=["lognormal", "exponential", "constant", "empirical"],
)
def test_dist_is_the_suites_shape_and_draws_as_the_simulator(dist: Dist) -> None:
    d = dist.to_dict()
    assert Dist.from_dict(d) == dist
    spec = SpecDist.model_validate(d)
    mine = dist.sample(np.random.default_rng(7), (50, 3))
    theirs = sample_latency(spec, np.random.default_rng(7), (50, 3)) * 1000.0
    np.testing.assert_allclose(mine, theirs, rtol=1e-12)


def test_lognormal_passes_exactly_through_p50_and_p99() -> None:
    d = Dist.lognormal(200.0, 900.0)
    np.testing.assert_allclose(d.quantile([0.5, 0.99]), [200.0, 900.0], rtol=1e-12)
    np.testing.assert_allclose(d.cdf([200.0, 900.0]), [0.5, 0.99], rtol=1e-12)
    draws = d.sample(np.random.default_rng(0), 200_000)
    np.testing.assert_allclose(np.quantile(draws, [0.5, 0.99]), [200.0, 900.0], rtol=0.02)


def test_discrete_cdfs_are_steps() -> None:
    emp = Dist.empirical([1.0, 2.0, 2.0, 10.0])
    np.testing.assert_allclose(
        emp.cdf([0.5, 1.0, 1.5, 2.0, 9.0, 10.0]), [0, 0.25, 0.25, 0.75, 0.75, 1]
    )
    assert not emp.continuous and Dist.lognormal(1, 2).continuous
    np.testing.assert_allclose(Dist.constant(5.0).cdf([4.9, 5.0]), [0.0, 1.0])


@pytest.mark.parametrize(
    ("kind", "kwargs", "message"),
    [
        ("lognormal", {"p50_ms": 5.0, "p99_ms": 5.0}, "0 < p50_ms < p99_ms"),
        ("lognormal", {"p50_ms": 5.0}, "needs p50_ms and p99_ms"),
        ("exponential", {"mean_ms": 0.0}, "positive mean_ms"),
        ("constant", {"p50_ms": -1.0}, "p50_ms >= 0"),
        ("empirical", {}, "at least one value"),
        ("empirical", {"values_ms": (1.0, -2.0)}, ">= 0"),
    ],
)
def test_bad_parameters_are_refused_like_the_suite_refuses_them(
    kind: str, kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        Dist(kind, **kwargs)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- fit_dist


def test_lognormal_fit_is_through_the_sample_quantiles_not_mle() -> None:
    x = lognormal_sample(1000)
    d = fit_dist(x, "lognormal")
    assert d.kind == "lognormal"
    assert d.p50_ms == round_sig(float(np.quantile(x, 0.5)))
    assert d.p99_ms == round_sig(float(np.quantile(x, 0.99)))


def test_auto_keeps_a_lognormal_that_fits() -> None:
    d, why = choose_dist(lognormal_sample(3000))
    assert d.kind == "lognormal"
    assert why.startswith("lognormal: KS=")


def test_auto_goes_empirical_when_the_lognormal_is_far_and_significantly_so() -> None:
    rng = np.random.default_rng(2)
    bimodal = np.r_[rng.normal(100, 5, 500), rng.normal(1000, 20, 500)]
    d, why = choose_dist(bimodal)
    assert d.kind == "empirical"
    assert "too far" in why
    ks, _ = ks_test(bimodal, fit_dist(bimodal, "lognormal").cdf)
    assert ks > AUTO_KS


def test_auto_keeps_the_lognormal_for_a_small_sample() -> None:
    half = AUTO_MIN_N // 2
    bimodal = np.r_[np.linspace(90, 110, half - 1), np.linspace(900, 1100, half)]
    assert fit_dist(bimodal).kind == "lognormal"  # too few values to overrule the default
    assert fit_dist(np.r_[bimodal, 95.0, 1050.0]).kind == "empirical"


def test_auto_constant_for_zero_variance_and_empirical_without_a_lognormal() -> None:
    assert fit_dist([12.5] * 40) == Dist.constant(12.5)
    # p50 = 0: no lognormal passes through it
    assert fit_dist([0.0] * 30 + [5.0] * 10).kind == "empirical"
    with pytest.raises(ValueError, match="0 < p50 < p99"):
        fit_dist([12.5] * 40, "lognormal")


def test_exponential_and_constant_as_asked() -> None:
    x = np.array([1.0, 2.0, 3.0, 10.0])
    assert fit_dist(x, "exponential") == Dist.exponential(4.0)
    assert fit_dist(x, "constant") == Dist.constant(2.5)


def test_large_samples_store_quantiles_at_midpoints() -> None:
    x = lognormal_sample(10_000)
    d = fit_dist(x, "empirical")
    k = EMPIRICAL_MAX
    assert len(d.values_ms) == k
    expected = np.quantile(x, (np.arange(k) + 0.5) / k)
    np.testing.assert_allclose(d.values_ms, expected, rtol=1e-3)
    assert list(d.values_ms) == sorted(d.values_ms)


def test_small_samples_store_every_value() -> None:
    x = [3.0, 1.0, 2.0]
    assert fit_dist(x, "empirical").values_ms == (1.0, 2.0, 3.0)


def test_bad_samples() -> None:
    with pytest.raises(ValueError, match="no values"):
        fit_dist([math.nan])
    with pytest.raises(ValueError, match=">= 0"):
        fit_dist([1.0, -1.0])
    with pytest.raises(ValueError, match="unknown kind"):
        fit_dist([1.0, 2.0], "gamma")  # type: ignore[arg-type]


def test_round_sig() -> None:
    assert round_sig(123456.0) == 123460.0
    assert round_sig(0.000123456) == 0.00012346
    assert round_sig(0.0) == 0.0
    assert math.isnan(round_sig(math.nan))


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(0.01, 1e6, allow_nan=False), min_size=2, max_size=300),
)
def test_a_fitted_lognormal_reads_back_the_sample_median(values: list[float]) -> None:
    x = np.asarray(values)
    p50, p99 = np.quantile(x, [0.5, 0.99])
    if round_sig(float(p99)) <= round_sig(float(p50)):
        with pytest.raises(ValueError):
            fit_dist(x, "lognormal")
        return
    d = fit_dist(x, "lognormal")
    assert d.quantile(0.5) == pytest.approx(p50, rel=1e-4)
    assert d.quantile(0.99) == pytest.approx(p99, rel=1e-4)


# --------------------------------------------------------------------------- goodness of fit


def test_ks_distance_matches_scipy_both_ways() -> None:
    x, y = lognormal_sample(300, seed=3), lognormal_sample(400, seed=4, sigma=0.5)
    assert ks_distance(x, y) == pytest.approx(stats.ks_2samp(x, y).statistic)
    cdf = Dist.lognormal(200.0, 200.0 * math.exp(0.4 * Z99)).cdf
    assert ks_distance(x, cdf) == pytest.approx(stats.kstest(x, cdf).statistic)


def test_quantile_errors_are_relative_and_signed() -> None:
    observed = np.arange(1.0, 101.0)
    errs = quantile_errors(observed, observed * 1.1)
    assert errs == pytest.approx({0.5: 0.1, 0.95: 0.1, 0.99: 0.1})
    errs = quantile_errors(observed, lambda q: np.quantile(observed, q) * 0.5, qs=(0.5,))
    assert errs == pytest.approx({0.5: -0.5})


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(0, 1e6, allow_nan=False), min_size=1, max_size=200))
def test_a_sample_fits_itself(values: list[float]) -> None:
    x = np.asarray(values)
    assert ks_distance(x, x) == 0.0
    assert all(v == 0.0 for v in quantile_errors(x, x).values())


def test_gof_of_a_continuous_dist_is_analytic() -> None:
    d = Dist.lognormal(200.0, 200.0 * math.exp(0.4 * Z99))
    x = lognormal_sample(2000)
    g = goodness_of_fit(x, d)
    assert g.method == "analytic"
    assert g.n == 2000
    assert g.ks == pytest.approx(stats.kstest(x, d.cdf).statistic)
    assert g.ks_p > 0.01
    chk = g.at(0.95)
    assert chk.fitted == pytest.approx(float(d.quantile(0.95)))
    assert chk.observed == pytest.approx(float(np.quantile(x, 0.95)))
    assert abs(chk.rel_error) < 0.05


def test_gof_of_an_empirical_dist_compares_with_its_values() -> None:
    x = np.array([1.0, 2.0, 3.0, 4.0])
    g = goodness_of_fit(x, Dist.empirical(x))
    assert (g.method, g.ks) == ("sampled", 0.0)
    assert all(c.rel_error == 0 for c in g.quantiles)


def test_gof_summary_line() -> None:
    g = GoodnessOfFit(
        150,
        0.0412,
        0.52,
        (QuantileCheck(0.5, 100.0, 101.2), QuantileCheck(0.99, 100.0, 99.99999)),
        "analytic",
    )
    assert g.summary() == "n=150 KS=0.041 (p=0.52) p50 +1.2% p99 +0.0%"
    assert signed_percent(-0.00001) == "+0.0%"
    with pytest.raises(KeyError):
        g.at(0.95)
