"""Fault schedule: targets resolved to endpoints, windows and per-call rolls, phase labels."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from harness.faults import Window, hits, phases, schedule
from harness.spec import Suite


def make_suite(faults: list[dict[str, Any]], spikes: list[dict[str, Any]] | None = None) -> Suite:
    return Suite.model_validate(
        {
            "name": "faults",
            "traffic": {"mix": {"a": {"weight": 1}}, "spikes": spikes or []},
            "models": {
                "mini": {"tier": "fast", "quality": {}},
                "mini2": {"tier": "fast", "quality": {}},
                "mid": {"tier": "balanced", "quality": {}},
                "large": {"tier": "premium", "quality": {}},
            },
            "tools": {
                "kb": {"kind": "retrieval"},
                "docs": {"kind": "retrieval"},
                "crm": {},
            },
            "faults": faults,
        }
    )


def labels(windows: tuple[Window, ...]) -> list[str]:
    return [w.label for w in windows]


def by_model(suite: Suite) -> dict[str, list[str]]:
    return {name: labels(w) for name, w in zip(suite.models, schedule(suite).models, strict=True)}


def by_tool(suite: Suite) -> dict[str, list[str]]:
    return {name: labels(w) for name, w in zip(suite.tools, schedule(suite).tools, strict=True)}


def test_no_faults_no_windows() -> None:
    sched = schedule(make_suite([]))
    assert sched.models == ((), (), (), ())
    assert sched.tools == ((), (), ())


def test_tier_target_hits_every_model_of_the_tier() -> None:
    suite = make_suite([{"kind": "outage", "target": "fast"}])
    assert by_model(suite) == {
        "mini": ["outage:fast"],
        "mini2": ["outage:fast"],
        "mid": [],
        "large": [],
    }
    assert by_tool(suite) == {"kb": [], "docs": [], "crm": []}


def test_model_target_hits_only_that_model() -> None:
    suite = make_suite([{"kind": "http_error", "target": "mini2", "status": 500}])
    assert by_model(suite) == {"mini": [], "mini2": ["http_error:mini2"], "mid": [], "large": []}


def test_retrieval_target_hits_every_retrieval_tool_only() -> None:
    suite = make_suite([{"kind": "degraded_retrieval", "target": "retrieval", "name": "stale"}])
    assert by_tool(suite) == {"kb": ["stale"], "docs": ["stale"], "crm": []}
    assert all(not w for w in schedule(suite).models)


def test_tool_target_by_name() -> None:
    suite = make_suite(
        [
            {"kind": "latency", "target": "crm", "add_ms": 100},
            {"kind": "flaky_tool", "target": "kb"},
        ]
    )
    assert by_tool(suite) == {"kb": ["flaky_tool:kb"], "docs": [], "crm": ["latency:crm"]}


def test_kinds_apply_only_where_they_make_sense() -> None:
    suite = make_suite(
        [
            {"kind": "malformed", "target": "crm"},  # a model fault on a tool: ignored
            {"kind": "flaky_tool", "target": "fast"},  # a tool fault on models: ignored
            {"kind": "degraded_retrieval", "target": "crm"},  # not a retrieval tool
            {"kind": "slow_first_token", "target": "large"},
        ]
    )
    assert by_tool(suite) == {"kb": [], "docs": [], "crm": []}
    assert by_model(suite) == {
        "mini": [],
        "mini2": [],
        "mid": [],
        "large": ["slow_first_token:large"],
    }


def test_windows_keep_suite_order_and_convert_units() -> None:
    suite = make_suite(
        [
            {
                "kind": "latency",
                "target": "mid",
                "start_s": 10,
                "duration_s": 5,
                "add_ms": 250,
                "jitter_ms": 100,
                "probability": 0.4,
                "name": "slow",
            },
            {"kind": "rate_limit", "target": "balanced", "retry_after_s": 2.5},
        ]
    )
    slow, limited = schedule(suite).models[2]
    assert slow == Window(
        kind="latency",
        start_s=10.0,
        end_s=15.0,
        probability=0.4,
        label="slow",
        add_s=0.25,
        jitter_s=0.1,
        status=503,
        retry_after_s=1.0,
        quality_penalty=0.5,
        amount=0.2,
        factor=2.0,
        max_tokens=0,
        truncate=False,
    )
    assert limited.kind == "rate_limit" and limited.label == "rate_limit:balanced"
    assert limited.retry_after_s == 2.5
    assert limited.start_s == 0.0 and limited.end_s == 1e12  # default: the whole run


def test_hits_checks_window_and_probability() -> None:
    suite = make_suite(
        [{"kind": "outage", "target": "mid", "start_s": 10, "duration_s": 5, "probability": 0.3}]
    )
    windows = schedule(suite).models[2]
    assert hits(windows, 9.999, 0.0) == []
    assert hits(windows, 10.0, 0.0) == list(windows)  # start inclusive
    assert hits(windows, 14.999, 0.299) == list(windows)
    assert hits(windows, 15.0, 0.0) == []  # end exclusive
    assert hits(windows, 12.0, 0.3) == []  # roll must fall under the probability


# --------------------------------------------------------------------------- phases

TWO = [
    {"kind": "outage", "target": "premium", "start_s": 10, "duration_s": 10, "name": "a"},
    {"kind": "latency", "target": "crm", "start_s": 15, "duration_s": 10, "name": "b"},
]


def test_phases_baseline_without_windows() -> None:
    got = phases(make_suite([]), np.array([0.0, 5.0, 1e6]))
    assert got.tolist() == ["baseline"] * 3


def test_phases_label_overlaps_in_suite_order() -> None:
    arrivals = np.array([0.0, 9.99, 10.0, 14.9, 15.0, 19.99, 20.0, 24.9, 25.0, 100.0])
    got = phases(make_suite(TWO), arrivals)
    assert got.tolist() == [
        "baseline",
        "baseline",
        "a",
        "a",
        "a+b",
        "a+b",
        "b",
        "b",
        "baseline",
        "baseline",
    ]
    assert got.dtype == object


def test_phases_default_labels_and_spikes() -> None:
    faults = [{"kind": "outage", "target": "large", "start_s": 0, "duration_s": 3}]
    spikes = [{"start_s": 2, "duration_s": 2}]
    got = phases(make_suite(faults, spikes), np.array([1.0, 2.5, 3.5, 4.0]))
    assert got.tolist() == ["outage:large", "outage:large+spike", "spike", "baseline"]


def test_phases_name_overlapping_spikes_once() -> None:
    spikes = [{"start_s": 0, "duration_s": 10}, {"start_s": 5, "duration_s": 10}]
    got = phases(make_suite([], spikes), np.array([1.0, 6.0, 12.0, 20.0]))
    assert got.tolist() == ["spike", "spike", "spike", "baseline"]


@pytest.mark.parametrize("n", [1, 7, 5000])
def test_phases_one_label_per_arrival(n: int) -> None:
    arrivals = np.sort(np.random.default_rng(n).uniform(0, 40, n))
    got = phases(make_suite(TWO), arrivals)
    assert got.shape == (n,)
    expected = [
        "+".join(lab for lab, (s, e) in (("a", (10, 20)), ("b", (15, 25))) if s <= t < e)
        or "baseline"
        for t in arrivals
    ]
    assert got.tolist() == expected
