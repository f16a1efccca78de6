"""Correlated, not nested, correctness: the Gaussian copula and escalation harm.

Parametric correctness is Phi(sqrt(rho) z_i + sqrt(1 - rho) e_im) < quality: each model's
success rate is its quality, and the share of requests a weaker model gets right and a
stronger one wrong is q_weak - P(both right), with P(both right) the bivariate normal
cdf at (Phi^-1(q_weak), Phi^-1(q_strong)) with correlation rho.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy import optimize, stats

from harness.run import simulate
from harness.spec import Suite
from harness.spec._models import World
from harness.traffic import sample_requests
from harness.world import Tape, sample_tape
from tests.unit.test_engine import make_suite

ROOT = Path(__file__).resolve().parents[2]
JUDGMENTS = ROOT / "fixtures" / "shared" / "alpacaeval" / "judgments.csv"
Q_SMALL, Q_BIG = 0.6, 0.8
N = 100_000


def both_right(qa: float, qb: float, rho: float) -> float:
    """P(both right) for two models of quality qa and qb at latent correlation rho."""
    a, b = stats.norm.ppf(qa), stats.norm.ppf(qb)
    cov = [[1.0, rho], [rho, 1.0]]
    return float(stats.multivariate_normal.cdf([a, b], cov=cov, abseps=1e-8, releps=1e-8))


def suite(rho: float | None = None, **over: Any) -> Suite:
    base: dict[str, Any] = {
        "traffic__requests": N,
        "traffic__rate_per_s": 1000.0,
        "models__small__quality": {"routine": Q_SMALL},
        "models__big__quality": {"routine": Q_BIG},
    }
    if rho is not None:
        base["world__correlation"] = rho
    return make_suite(**{**base, **over})


def tape_of(s: Suite) -> Tape:
    return sample_tape(s, sample_requests(s))


def right(s: Suite) -> tuple[Tape, np.ndarray]:
    """The tape and who is right on it: (n, models) bool, columns small, big."""
    tape = tape_of(s)
    return tape, tape.correct_u < np.array([Q_SMALL, Q_BIG])


@pytest.mark.parametrize("rho", [0.0, 0.3, World().correlation, 0.9])
def test_small_right_big_wrong_share_matches_the_bivariate_normal(rho: float) -> None:
    _, ok = right(suite(rho))
    share = float(np.mean(ok[:, 0] & ~ok[:, 1]))
    expected = Q_SMALL - both_right(Q_SMALL, Q_BIG, rho)
    se = math.sqrt(expected * (1 - expected) / N)
    assert share == pytest.approx(expected, abs=4 * se)
    assert share > 0  # the world is not nested


@pytest.mark.parametrize("rho", [0.0, 0.58, 1.0])
def test_each_models_success_rate_is_its_quality(rho: float) -> None:
    tape, ok = right(suite(rho))
    for j, q in enumerate((Q_SMALL, Q_BIG)):
        assert ok[:, j].mean() == pytest.approx(q, abs=4 * math.sqrt(q * (1 - q) / N))
        assert stats.kstest(tape.correct_u[:, j], "uniform").pvalue > 1e-3


def test_correlation_one_is_the_nested_world_exactly() -> None:
    tape, ok = right(suite(1.0))
    for j in range(ok.shape[1]):
        assert np.array_equal(tape.correct_u[:, j], tape.difficulty)
    assert not np.any(ok[:, 0] & ~ok[:, 1])


def test_correlation_zero_makes_models_independent() -> None:
    _, ok = right(suite(0.0))
    share = float(np.mean(ok[:, 0] & ~ok[:, 1]))
    expected = Q_SMALL * (1 - Q_BIG)
    assert share == pytest.approx(expected, abs=4 * math.sqrt(expected * (1 - expected) / N))


def test_copula_draws_are_deterministic_and_keyed_by_model() -> None:
    a, b = tape_of(suite()), tape_of(suite())
    assert np.array_equal(a.correct_u, b.correct_u)
    extra = tape_of(suite(models__extra={"tier": "premium", "quality": {"routine": 0.9}}))
    assert np.array_equal(a.correct_u, extra.correct_u[:, :2])
    assert not np.array_equal(a.correct_u, tape_of(suite(seed=8)).correct_u)


def tetrachoric(a: np.ndarray, b: np.ndarray) -> float:
    """The latent correlation at which a bivariate normal gives the observed joint success."""
    qa, qb, qab = float(a.mean()), float(b.mean()), float((a & b).mean())
    return float(optimize.brentq(lambda r: both_right(qa, qb, r) - qab, -0.99, 0.99))


def test_default_correlation_is_the_alpacaeval_fit() -> None:
    j = pd.read_csv(JUDGMENTS)
    ok = j.assign(ok=j["preference"] >= 1.1).pivot(index="id", columns="model", values="ok")
    assert ok.shape == (805, 6) and not ok.isna().any().any()
    pairs = list(itertools.combinations(ok.columns, 2))
    rhos = [tetrachoric(ok[x].to_numpy(bool), ok[y].to_numpy(bool)) for x, y in pairs]
    assert len(rhos) == 15
    assert World().correlation == pytest.approx(float(np.mean(rhos)), abs=0.02)


# --------------------------------------------------------------------------- escalation harm


def test_escalation_harm_is_set_exactly_when_escalation_lost_a_right_answer() -> None:
    """Every request escalates (threshold 1), so small answers, then big answers last."""
    s = suite(
        traffic__requests=3000,
        stack__escalation={"confidence_threshold": 1.0, "high_impact_route": None},
    )
    _, ok = right(s)
    req = simulate(s).requests.to_pandas()
    assert (req["tiers_tried"] == "fast>premium").all() and req["escalated"].all()
    assert np.array_equal(req["outcome"] == "wrong", ~ok[:, 1])
    harm = ok[:, 0] & ~ok[:, 1]
    assert harm.any() and np.array_equal(req["escalation_harm"].to_numpy(), harm)


def test_no_escalation_no_harm() -> None:
    req = simulate(suite(traffic__requests=3000)).requests.to_pandas()
    assert not req["escalated"].any() and not req["escalation_harm"].any()
    assert (req["outcome"] == "wrong").any()


def test_escalation_harm_rate_is_in_the_summary() -> None:
    s = suite(
        traffic__requests=3000,
        stack__escalation={"confidence_threshold": 1.0, "high_impact_route": None},
    )
    result = simulate(s)
    req = result.requests.to_pandas()
    summary = result.summary.to_pandas().set_index("route")
    assert summary.loc["all", "escalation_harm_rate"] == pytest.approx(
        req["escalation_harm"].mean()
    )
