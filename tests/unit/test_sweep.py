"""Sweeps: grids, screening that matches the engine exactly without dynamics, recommendations."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from harness.errors import SpecError
from harness.executor import ProcessExecutor
from harness.run import simulate
from harness.spec import Suite, load_suite
from harness.sweep import expand, gaps, probe, run_sweep, screen
from harness.sweep._sweep import METRICS

ROOT = Path(__file__).resolve().parents[2]


def test_ranges_are_inclusive_and_clean() -> None:
    assert expand("0.3:0.5:0.1") == [0.3, 0.4, 0.5]
    assert expand("1:5:2") == [1, 3, 5]
    assert expand([0.1, "x"]) == [0.1, "x"]
    assert len(expand("0.30:0.90:0.01")) == 61
    with pytest.raises(ValueError, match="start:stop:step"):
        expand("0.3..0.5")


def calm(**extra: Any) -> Suite:
    """support.yaml without dynamics: no capacity, rate limits, breakers, budgets or faults."""
    data = load_suite(ROOT / "scenarios" / "support.yaml", ["traffic.requests=3000"]).suite
    d = data.model_dump()
    for section in ("models", "tools"):
        for spec in d[section].values():
            spec["capacity"] = None
            spec["rate_limit"] = None
    d["faults"] = []
    # the time of an action that follows an earlier, cheaper answer is not on the probe's
    # path: evasive actions (which run unguarded) make screening approximate; see README
    d["traffic"]["edge_cases"]["evasive"] = 0.0
    d["handoff"]["capacity"] = None
    d["traffic"]["spikes"] = []
    d["stack"]["breaker"]["enabled"] = False
    d["stack"]["retry_budget"] = None
    d.update(extra)
    return Suite.model_validate(d)


@pytest.mark.parametrize("theta", [0.0, 0.35, 0.6, 0.72, 0.9, 1.0])
def test_screen_equals_the_engine_exactly_without_dynamics(theta: float) -> None:
    suite = calm()
    pr = probe(suite)
    metrics = screen(pr.attempts, np.array([theta]), (50.0, 95.0, 99.0))
    d = suite.model_dump()
    d["stack"]["escalation"]["confidence_threshold"] = theta
    full = simulate(Suite.model_validate(d)).summary.to_pandas().set_index("route")
    for g, route in enumerate([*pr.routes, "all"]):
        row = full.loc[route]
        for metric in METRICS:
            got = float(metrics[metric][0, g])
            assert got == pytest.approx(float(row[metric]), rel=1e-12, abs=1e-12), (route, metric)
        assert metrics["requests"][0, g] == row["requests"]


def test_sweep_confirms_the_best_and_recommends_a_feasible_setting() -> None:
    loaded = load_suite(ROOT / "scenarios" / "support.yaml", ["traffic.requests=2000"])
    result = run_sweep(loaded, {"stack.escalation.confidence_threshold": "0.4:0.8:0.1"},
                       confirm=2)  # fmt: skip
    assert result.screened == 5
    assert result.current == 2  # 0.6 is the suite's own value
    confirmed = {r.setting for r in result.rows if r.stage == "confirm"}
    assert result.current in confirmed and len(confirmed) in (2, 3)
    if result.recommended is not None:
        assert result.feasible[(result.recommended, "confirm")]
    else:
        assert result.binding is not None


def test_bad_grid_values_are_located_errors(tmp_path: Path) -> None:
    loaded = load_suite(ROOT / "scenarios" / "support.yaml")
    with pytest.raises(SpecError):
        run_sweep(loaded, {"stack.escalation.confidence_threshold": [0.5, 2.0]}, confirm=1)


CALM = [
    "traffic.requests=1500",
    "traffic.edge_cases.evasive=0",
    "traffic.spikes=[]",
    "faults=[]",
    "models.mini.capacity=null",
    "models.mini.rate_limit=null",
    "models.mid.capacity=null",
    "models.large.capacity=null",
    "tools.kb_search.capacity=null",
    "tools.crm_lookup.capacity=null",
    "tools.refund.capacity=null",
    "stack.breaker.enabled=false",
    "stack.retry_budget=null",
    "handoff.capacity=null",
]


def test_without_dynamics_screen_and_confirm_agree_exactly() -> None:
    loaded = load_suite(ROOT / "scenarios" / "support.yaml", CALM)
    result = run_sweep(loaded, {"stack.escalation.confidence_threshold": "0.5:0.7:0.1"},
                       confirm=3)  # fmt: skip
    rows = {(r.setting, r.stage, r.route): r.metrics for r in result.rows}
    compared = 0
    for sid, by_route in result.at_seed.items():  # each finalist's run at the suite's seed
        for route, confirmed in by_route.items():
            screened = rows[(sid, "screen", route)]
            for metric in METRICS:
                assert screened[metric] == pytest.approx(confirmed[metric], rel=1e-12, abs=1e-12)
                compared += 1
    assert compared == 3 * len(METRICS) * len({r for (_, _, r) in rows})
    assert all(abs(g["difference"]) < 1e-9 for g in gaps(result))


def test_process_pool_gives_the_same_confirmations_as_inline() -> None:
    loaded = load_suite(ROOT / "scenarios" / "support.yaml", ["traffic.requests=800"])
    grid = {"stack.escalation.confidence_threshold": [0.5, 0.6]}
    inline = run_sweep(loaded, grid, confirm=2)
    pooled = run_sweep(loaded, grid, confirm=2, executor=ProcessExecutor(2))
    assert [(r.setting, r.stage, r.route, r.metrics) for r in inline.rows] == [
        (r.setting, r.stage, r.route, r.metrics) for r in pooled.rows
    ]
    assert inline.recommended == pooled.recommended


@pytest.mark.parametrize("theta", [0.3, 0.6, 0.8])
def test_screen_is_exact_when_a_request_goes_on_after_its_last_good_answer(theta: float) -> None:
    """The custom router asks the strong tier, which may time out after a good cheap answer:
    at a low threshold the cheap answer is accepted; the probe must not lose it."""
    from harness.sweep._screen import accepted_attempt

    path = ROOT / "examples" / "custom_router" / "suite.yaml"
    pr = probe(load_suite(path, ["traffic.requests=1500"]).suite)
    flags = ["traffic.requests=1500", f"stack.escalation.confidence_threshold={theta}"]
    full = simulate(load_suite(path, flags).suite).requests.to_pandas()
    k = accepted_attempt(pr.attempts, theta)
    rows = np.arange(len(k))
    assert pr.attempts.latency_ms[rows, k].tolist() == full["latency_ms"].tolist()
    assert pr.attempts.success[rows, k].tolist() == full["success"].tolist()


def test_the_probe_counts_the_requests_it_screens_only_approximately() -> None:
    """Evasive actions run after an answer; a cheaper earlier answer would run them too,
    at a time the probe never saw: those requests are counted, and none without them."""
    base = calm()
    assert probe(base).approximate == 0
    d = base.model_dump()
    d["traffic"]["edge_cases"]["evasive"] = 0.5
    assert probe(Suite.model_validate(d)).approximate > 0
