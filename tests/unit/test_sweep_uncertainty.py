"""Sweeps under uncertainty: constraints at their confidence bounds, the chance of holding at
another seed, replications seeded as `evalx run --replications`, advice on grid edges and
switched-off mechanisms, the frontier figure, and exact screening of routing tables."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

from harness.plots import CONFIRMED_FRONTIER, INTERVAL_COLUMNS, SCREENED, frontier_figure
from harness.replicate import replication_seed
from harness.run import simulate
from harness.spec import Suite, load_suite
from harness.sweep import (
    constraint,
    frontier_points,
    p_next,
    route_probe,
    routing_problem,
    run_sweep,
    screen,
)
from harness.sweep._advice import edge_warnings, switched_off
from harness.sweep._sweep import METRICS
from harness.thresholds import Threshold
from tests.unit.test_sweep import calm  # the support suite without dynamics

ROOT = Path(__file__).resolve().parents[2]
SUPPORT = ROOT / "scenarios" / "support.yaml"
LENIENT = 'thresholds={"success": ["rate>0.5"], "cost_usd": ["avg<1.0"]}'


def threshold(expression: str, aggregation: str, op: str, limit: float) -> Threshold:
    return Threshold("success", "success", (), expression, aggregation, None, op, limit)


def runs(values: list[float], op: str, limit: float) -> list[dict[str, Any]]:
    ops = {"<": limit.__gt__, ">": limit.__lt__}
    return [{"value": v, "passed": bool(ops[op](v))} for v in values]


# --------------------------------------------------------------------------- statistics


def test_a_constraint_holds_only_at_its_confidence_bound() -> None:
    t = threshold("rate>0.85", "rate", ">", 0.85)
    values = [0.87, 0.90, 0.86]  # every replication passes, the mean too
    c = constraint(t, runs(values, ">", 0.85))
    mean, sd = float(np.mean(values)), float(np.std(values, ddof=1))
    half = stats.t.ppf(0.975, 2) * sd / math.sqrt(3)
    assert c["value"] == pytest.approx(mean)
    assert c["ci_low"] == pytest.approx(mean - half) and c["ci_low"] < 0.85
    assert c["bound"] == "lower" and c["passed"] is False  # the lower bound misses
    assert c["margin"] == pytest.approx(mean - 0.85)
    assert c["margin_low"] == pytest.approx(c["ci_low"] - 0.85)
    assert c["replications_passed"] == 3
    tight = constraint(t, runs([0.90, 0.905, 0.91], ">", 0.85))
    assert tight["passed"] is True and tight["margin_low"] > 0


def test_rate_intervals_are_clipped_and_one_replication_is_a_point_value() -> None:
    t = threshold("rate<0.10", "rate", "<", 0.10)
    c = constraint(t, runs([0.001, 0.0, 0.06], "<", 0.10))
    assert c["ci_low"] == 0.0 and c["margin_high"] == pytest.approx(0.10)
    single = constraint(t, runs([0.05], "<", 0.10))
    assert single["bound"] == "point value (no interval)" and single["passed"] is True
    assert single["p_holds"] == pytest.approx(2 / 3)  # rule of succession: (1 + 1) / (1 + 2)


def test_p_next_is_the_t_predictive_probability() -> None:
    values = [1.0, 2.0, 3.0]
    z = (4.0 - 2.0) / (1.0 * math.sqrt(1 + 1 / 3))
    assert p_next(values, [True] * 3, "<", 4.0) == pytest.approx(stats.t.cdf(z, 2))
    assert p_next(values, [False] * 3, ">", 4.0) == pytest.approx(1 - stats.t.cdf(z, 2))
    # no spread: Laplace's rule of succession over the replications that passed
    assert p_next([0.0, 0.0, 0.0, 0.0], [True] * 4, "<", 0.05) == pytest.approx(5 / 6)
    assert p_next([1.0, 2.0], [True, False], "==", 1.0) == pytest.approx(2 / 4)


@given(
    st.lists(st.floats(0, 1, allow_nan=False), min_size=2, max_size=8),
    st.floats(0, 1, allow_nan=False),
    st.floats(0, 1, allow_nan=False),
)
def test_p_next_is_a_probability_that_grows_with_the_slack(
    values: list[float], a: float, b: float
) -> None:
    lo, hi = sorted((a, b))
    passes = [v < hi for v in values]
    p_lo, p_hi = p_next(values, passes, "<", lo), p_next(values, passes, "<", hi)
    assert 0.0 <= p_lo <= 1.0 and 0.0 <= p_hi <= 1.0
    if np.std(values) > 0:
        assert p_lo <= p_hi + 1e-12


# --------------------------------------------------------------------------- replications


def test_replications_are_the_worlds_of_evalx_run_replications() -> None:
    flags = ["traffic.requests=600", LENIENT]
    loaded = load_suite(SUPPORT, flags)
    grid = {"stack.escalation.confidence_threshold": [0.5, 0.6]}
    result = run_sweep(loaded, grid, confirm=1, replications=2)
    root = loaded.suite.seed
    assert result.seeds == [replication_seed(root, 0), replication_seed(root, 1)]
    sid = result.finalists[0]
    value = result.settings[sid].params["stack.escalation.confidence_threshold"]
    per_seed = [
        simulate(load_suite(SUPPORT, [*flags, f"stack.escalation.confidence_threshold={value}",
                                      f"seed={s}"]).suite).summary.to_pandas()
        for s in result.seeds
    ]  # fmt: skip
    want = np.mean([float(t.set_index("route").loc["all", "success_rate"]) for t in per_seed])
    row = next(r for r in result.rows if (r.setting, r.stage, r.route) == (sid, "confirm", "all"))
    assert row.metrics["success_rate"] == pytest.approx(want, abs=1e-12)
    assert row.metrics["replications"] == 2
    assert row.metrics["success_rate_ci_low"] <= want <= row.metrics["success_rate_ci_high"]
    # and the run at the suite's seed is the one `evalx run` reproduces
    own = simulate(load_suite(SUPPORT, [*flags, f"stack.escalation.confidence_threshold={value}"])
                   .suite).summary.to_pandas().set_index("route")  # fmt: skip
    assert result.at_seed[sid]["all"]["success_rate"] == float(own.loc["all", "success_rate"])
    assert result.runs == 2 * 3  # two finalists (the best and the current), 2 + 1 runs each


def test_same_inputs_give_the_same_recommendation() -> None:
    loaded = load_suite(SUPPORT, ["traffic.requests=500", LENIENT])
    grid = {"stack.escalation.confidence_threshold": "0.4:0.7:0.1"}
    a = run_sweep(loaded, grid, confirm=2, replications=2)
    b = run_sweep(loaded, grid, confirm=2, replications=2)
    assert a.recommended is not None and a.recommended == b.recommended
    assert [(r.setting, r.stage, r.route, r.metrics) for r in a.rows] == [
        (r.setting, r.stage, r.route, r.metrics) for r in b.rows
    ]
    assert a.checks == b.checks


def test_bad_replications_and_baselines_are_errors(tmp_path: Path) -> None:
    from harness.sweep import SweepError

    loaded = load_suite(SUPPORT, ["traffic.requests=300"])
    grid = {"stack.escalation.confidence_threshold": [0.5]}
    with pytest.raises(SweepError, match="--replications must be at least 1"):
        run_sweep(loaded, grid, confirm=1, replications=0)
    with pytest.raises(SweepError, match="no such run directory"):
        run_sweep(loaded, grid, confirm=1, baseline=tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SweepError, match="not a run directory"):
        run_sweep(loaded, grid, confirm=1, baseline=tmp_path / "empty")


# --------------------------------------------------------------------------- advice


def test_a_best_value_on_the_grid_edge_names_a_wider_grid() -> None:
    loaded = load_suite(SUPPORT)
    key = "stack.escalation.confidence_threshold"
    grid: dict[str, Any] = {key: "0.30:0.90:0.01"}
    axes = {key: [round(0.30 + i / 100, 2) for i in range(61)]}
    (low,) = edge_warnings(loaded, [], grid, axes, {key: 0.3})
    assert low["edge"] == "lowest"
    assert low["suggested"] == f'{key}: "0.14:0.9:0.01"'
    assert "widen the grid" in low["message"] and "(0.3)" in low["message"]
    (high,) = edge_warnings(loaded, [], grid, axes, {key: 0.9})
    assert high["suggested"] == f'{key}: "0.3:1:0.01"'  # 1.06 is no probability: stop at 1
    assert edge_warnings(loaded, [], grid, axes, {key: 0.5}) == []
    # the grid already reaches the parameter's own limit: nothing wider to try
    assert edge_warnings(loaded, [], {key: [0.0, 0.5]}, {key: [0.0, 0.5]}, {key: 0.0}) == []
    ints = "models.large.capacity"
    (cap,) = edge_warnings(loaded, [], {ints: [12, 16, 24]}, {ints: [12, 16, 24]}, {ints: 24})
    assert cap["suggested"] == f"{ints}: [12, 16, 24, 32]"


@pytest.mark.parametrize(
    ("params", "says"),
    [
        ({"stack.escalation.confidence_threshold": 0.0},
         "escalation on low answer confidence is off"),
        ({"stack.escalation.confidence_threshold": 1.0}, "the cascade is off"),
        ({"stack.routes.reasoning.max_retries": 0}, "retries are off on route reasoning"),
        ({"stack.breaker.enabled": False}, "circuit breakers are off"),
        ({"stack.classifier.min_confidence": 0.0}, "low classifier confidence is off"),
    ],
)  # fmt: skip
def test_switching_a_mechanism_off_is_said_plainly(params: dict[str, Any], says: str) -> None:
    (message,) = switched_off(load_suite(SUPPORT), params)
    assert message.startswith("the recommendation switches a mechanism off: ")
    assert says in message
    assert "(the suite has" in message  # the suite as it stands has it on


def test_nothing_switched_off_says_nothing() -> None:
    params = {"stack.escalation.confidence_threshold": 0.45, "stack.breaker.enabled": True}
    assert switched_off(load_suite(SUPPORT), params) == []


# --------------------------------------------------------------------------- the frontier


def _legend(fig: Any) -> list[str]:
    return [t.get_text() for legend in fig.legends for t in legend.get_texts()]


def test_frontier_joins_confirmed_settings_only_and_draws_their_intervals() -> None:
    points = pd.DataFrame({
        "setting": [0, 1, 2, 3],
        "label": ["a", "b", "c", "d"],
        "stage": ["confirm", "confirm", "confirm", "screen"],
        "success_rate": [0.90, 0.93, 0.95, 0.99],
        "cost_per_request_usd": [0.010, 0.020, 0.030, 0.005],  # d dominates all: screened
        "p95_latency_ms": [1000.0, 1500.0, 2000.0, 800.0],
        "feasible": [True, True, True, True],
        "success_low": [0.89, 0.92, 0.94, np.nan],
        "success_high": [0.91, 0.94, 0.96, np.nan],
        "cost_low": [0.009, 0.018, 0.028, np.nan],
        "cost_high": [0.011, 0.022, 0.032, np.nan],
    })  # fmt: skip
    fig = frontier_figure(points, recommended=1, current=2)
    ax = fig.axes[0]
    (front,) = [line for line in ax.get_lines() if line.get_label() == CONFIRMED_FRONTIER]
    assert sorted(set(front.get_xdata())) == [0.010, 0.020, 0.030]  # not the screened 0.005
    (bars,) = [c for c in ax.containers if c.get_label() == "95% CI over replications"]
    (vertical,) = [c for c in bars.lines[2] if all(a[0] == b[0] for a, b in c.get_segments())]
    segments = vertical.get_segments()  # one success interval per confirmed setting
    assert sorted(seg[0][1] for seg in segments) == pytest.approx([89.0, 92.0, 94.0])
    screened = [c for c in ax.collections if c.get_label() == SCREENED]
    assert len(screened) == 1 and screened[0].get_offsets().tolist() == [[0.005, 99.0]]
    labels = _legend(fig)
    for label in (SCREENED, "confirmed", "95% CI over replications", CONFIRMED_FRONTIER):
        assert label in labels
    assert "Pareto frontier" not in labels


def test_frontier_of_a_real_sweep_has_error_bars_for_every_finalist() -> None:
    loaded = load_suite(SUPPORT, ["traffic.requests=500", LENIENT])
    result = run_sweep(loaded, {"stack.escalation.confidence_threshold": "0.4:0.8:0.1"},
                       confirm=2, replications=2)  # fmt: skip
    points = frontier_points(result)
    assert set(INTERVAL_COLUMNS) <= set(points.columns)
    confirmed = points[points["stage"] == "confirm"]
    assert len(confirmed) == len(result.finalists)
    assert confirmed[list(INTERVAL_COLUMNS)].notna().all().all()
    fig = frontier_figure(points, recommended=result.recommended, current=result.current)
    ax = fig.axes[0]
    (bars,) = [c for c in ax.containers if c.get_label() == "95% CI over replications"]
    assert all(len(c.get_segments()) == len(result.finalists) for c in bars.lines[2])
    assert SCREENED in _legend(fig)


# --------------------------------------------------------------------------- routing screens


@pytest.fixture(scope="module")
def calm_probe() -> tuple[Suite, Any]:
    suite = calm()
    keys = ["stack.classifier.min_confidence", "stack.class_routes.hard",
            "stack.routes.reasoning.tier"]  # fmt: skip
    return suite, route_probe(suite, keys)


def _with(suite: Suite, values: dict[str, Any]) -> Suite:
    data = suite.model_dump()
    for key, value in values.items():
        node = data
        *path, last = key.split(".")
        for part in path:
            node = node[part]
        node[last] = value
    return Suite.model_validate(data)


@pytest.mark.parametrize(
    "values",
    [
        {"stack.classifier.min_confidence": 0.8},
        {"stack.classifier.min_confidence": 0.0},
        {"stack.class_routes.hard": "escalation"},
        {"stack.routes.reasoning.tier": "premium", "stack.classifier.min_confidence": 0.75},
        {"stack.routes.routine.tier": "balanced"},
    ],
)
@pytest.mark.parametrize("theta", [0.0, 0.6, 0.9])
def test_routing_tables_screen_exactly_like_the_engine_without_dynamics(
    calm_probe: tuple[Suite, Any], values: dict[str, Any], theta: float
) -> None:
    suite, rp = calm_probe
    own = _with(suite, {**values, "stack.escalation.confidence_threshold": theta})
    pr = rp.probe_for(own)
    got = screen(pr.attempts, np.array([theta]))
    full = simulate(own).summary.to_pandas().set_index("route")
    assert [*pr.routes, "all"] == [*sorted(full.index.drop("all")), "all"]
    for g, route in enumerate([*pr.routes, "all"]):
        for metric in METRICS:
            want = float(full.loc[route, metric])
            assert float(got[metric][0, g]) == pytest.approx(want, rel=1e-12, abs=1e-12), (
                route, metric)  # fmt: skip


def test_the_route_probe_records_every_starting_tier_and_route_profile(
    calm_probe: tuple[Suite, Any],
) -> None:
    suite, rp = calm_probe
    tiers = list(suite.stack.tiers)
    profiles = sorted(
        {(r.max_retries, r.on_degraded_retrieval) for r in suite.stack.routes.values()}
    )
    assert len(rp.variants) == len(tiers) * len(profiles)  # class routes moved: per profile too
    assert sorted(set(rp.profiles)) == profiles


def test_what_cannot_be_screened_says_why_and_runs_in_full(tmp_path: Path) -> None:
    custom = load_suite(ROOT / "examples" / "custom_router" / "suite.yaml").suite
    assert "routes by its own rules" in (routing_problem(custom) or "")
    sessions = load_suite(ROOT / "scenarios" / "sessions.yaml")
    assert "stack.tenants limits couple requests" in (routing_problem(sessions.suite) or "")
    untenanted = load_suite(sessions.path, ["stack.tenants={}"]).suite
    assert "closed-loop sessions" in (routing_problem(untenanted) or "")
    assert routing_problem(load_suite(SUPPORT).suite) is None
    loaded = load_suite(ROOT / "examples" / "custom_router" / "suite.yaml",
                        ["traffic.requests=300"])  # fmt: skip
    result = run_sweep(loaded, {"stack.classifier.min_confidence": [0.5, 0.7]}, confirm=1,
                       replications=1)  # fmt: skip
    assert not result.tape
    assert any("cannot be screened on the tape" in n and "its own rules" in n
               for n in result.notes)  # fmt: skip
    assert any("screened by one full run at the suite's seed" in n for n in result.notes)


def test_a_min_confidence_grid_is_screened_on_the_tape() -> None:
    loaded = load_suite(SUPPORT, ["traffic.requests=600", LENIENT])
    grid = {"stack.classifier.min_confidence": [0.0, 0.6, 0.9],
            "stack.escalation.confidence_threshold": [0.5, 0.7]}  # fmt: skip
    result = run_sweep(loaded, grid, confirm=1, replications=1)
    assert result.tape and result.screened == 6
    assert any("screened on the tape from a route probe" in n for n in result.notes)
    screened = {
        r.setting: r.metrics for r in result.rows if r.stage == "screen" and r.route == "all"
    }
    assert len(screened) == 6
    # a higher minimum confidence starts more requests a tier up: never cheaper on the tape
    by = {tuple(s.params.values()): screened[s.id] for s in result.settings}
    for theta in (0.5, 0.7):
        costs = [by[(m, theta)]["cost_per_request_usd"] for m in (0.0, 0.6, 0.9)]
        assert costs == sorted(costs)
