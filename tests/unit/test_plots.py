"""Plots: the Pareto rule, exactly, and frontier PNGs for typical and degenerate sweeps."""

from __future__ import annotations

import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.faults import SPIKE, TimeWindow, suite_windows
from harness.phases import manifest_windows
from harness.plots import (
    FRONTIER_COLUMNS,
    bucket_size,
    cost_png,
    frontier_png,
    latency_cdf_png,
    pareto_mask,
    paths_png,
    timeline_figure,
    timeline_png,
)
from harness.run import simulate
from harness.spec import load_suite

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(path: Path) -> tuple[int, int]:
    """Width and height of a PNG, read from its IHDR chunk; fails on anything else."""
    head = path.read_bytes()[:24]
    assert head[:8] == PNG_SIGNATURE
    assert head[12:16] == b"IHDR"
    width, height = struct.unpack(">II", head[16:24])
    return width, height


def sweep(n_screen: int = 200, n_confirm: int = 6, seed: int = 0) -> pd.DataFrame:
    """A plausible sweep: success rises with cost and saturates, p95 rises with cost."""
    rng = np.random.default_rng(seed)
    n = n_screen + n_confirm
    threshold = rng.uniform(0.3, 0.95, n)
    cost = 0.002 + 0.01 * threshold**2 + rng.normal(0, 0.0004, n)
    success = np.clip(0.97 - 0.16 * np.exp(-cost / 0.004) + rng.normal(0, 0.006, n), 0, 1)
    p95 = 900 + 180_000 * cost + rng.normal(0, 120, n)
    return pd.DataFrame(
        {
            "setting": np.arange(n),
            "label": [f"threshold={t:.2f}" for t in threshold],
            "stage": ["screen"] * n_screen + ["confirm"] * n_confirm,
            "success_rate": success,
            "cost_per_request_usd": cost,
            "p95_latency_ms": p95,
            "feasible": (success >= 0.9) & (p95 < 3000),
        }
    )


def one_setting(setting: int = 0, **values: object) -> dict[str, object]:
    row: dict[str, object] = {
        "setting": setting,
        "label": f"threshold=0.{setting:02d}",
        "stage": "confirm",
        "success_rate": 0.93,
        "cost_per_request_usd": 0.004,
        "p95_latency_ms": 1800.0,
        "feasible": True,
    }
    return row | values


# --- pareto_mask ------------------------------------------------------------------------


def brute_force_mask(cost: np.ndarray, success: np.ndarray) -> np.ndarray:
    """The definition, checked pair by pair."""
    mask = []
    for c, s in zip(cost, success, strict=True):
        if np.isnan(c) or np.isnan(s):
            mask.append(False)
            continue
        dominated = any(
            c2 <= c and s2 >= s and (c2 < c or s2 > s) for c2, s2 in zip(cost, success, strict=True)
        )
        mask.append(not dominated)
    return np.array(mask, dtype=bool)


@pytest.mark.parametrize(
    ("cost", "success", "expected"),
    [
        pytest.param([1, 2, 3], [0.5, 0.7, 0.9], [True, True, True], id="all-on"),
        pytest.param([1, 2, 3], [0.5, 0.7, 0.6], [True, True, False], id="dearer-and-worse"),
        pytest.param([3, 1, 2], [0.6, 0.5, 0.7], [False, True, True], id="order-kept"),
        pytest.param([1, 1], [0.5, 0.7], [False, True], id="same-cost"),
        pytest.param([1, 2], [0.7, 0.7], [True, False], id="same-success"),
        pytest.param([1, 1, 2], [0.7, 0.7, 0.8], [True, True, True], id="twins-on"),
        pytest.param([1, 2, 2], [0.9, 0.7, 0.7], [True, False, False], id="twins-off"),
        pytest.param([5, 5, 5], [0.8, 0.8, 0.8], [True, True, True], id="all-identical"),
        pytest.param([1, 2, 3, 4], [0.9, 0.5, 0.6, 0.95], [True, False, False, True], id="gap"),
        pytest.param([2], [0.1], [True], id="single"),
        pytest.param([], [], [], id="empty"),
    ],
)
def test_pareto_mask_exact(cost: list[float], success: list[float], expected: list[bool]) -> None:
    mask = pareto_mask(np.array(cost, dtype=float), np.array(success, dtype=float))
    assert mask.dtype == np.bool_
    assert mask.tolist() == expected


def test_pareto_mask_nan_is_never_on_and_dominates_nothing() -> None:
    cost = np.array([np.nan, 1.0, 2.0, 0.5])
    success = np.array([1.0, 0.5, 0.8, np.nan])
    assert pareto_mask(cost, success).tolist() == [False, True, True, False]
    assert pareto_mask([np.nan], [np.nan]).tolist() == [False]


def test_pareto_mask_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="one length"):
        pareto_mask(np.zeros(3), np.zeros(2))
    with pytest.raises(ValueError, match="1-D"):
        pareto_mask(np.zeros((2, 2)), np.zeros((2, 2)))


small = st.one_of(st.integers(0, 4).map(float), st.just(float("nan")))


@given(st.lists(st.tuples(small, small), max_size=12))
def test_pareto_mask_matches_the_definition(pairs: list[tuple[float, float]]) -> None:
    cost = np.array([c for c, _ in pairs], dtype=float)
    success = np.array([s for _, s in pairs], dtype=float)
    assert pareto_mask(cost, success).tolist() == brute_force_mask(cost, success).tolist()


# --- frontier_png -----------------------------------------------------------------------


def test_typical_sweep(tmp_path: Path) -> None:
    points = sweep()
    out = frontier_png(
        points, tmp_path / "f.png", recommended=201, current=17, constraint_success=0.9
    )
    assert out == tmp_path / "f.png"
    assert png_size(out) == (1080, 720)


def test_accepts_a_string_path_and_extra_columns(tmp_path: Path) -> None:
    points = sweep(n_screen=20, n_confirm=2).assign(route="all", requests=1000)
    out = frontier_png(points, str(tmp_path / "f.png"), recommended=3, current=3, title="t")
    assert isinstance(out, Path)
    assert png_size(out) == (1080, 720)


@pytest.mark.parametrize(
    ("rows", "recommended", "current"),
    [
        pytest.param([one_setting(0)], 0, 0, id="one-point"),
        pytest.param([one_setting(i) for i in range(5)], 2, 4, id="identical-points"),
        pytest.param(
            [one_setting(i, p95_latency_ms=np.nan if i % 2 else 1500.0 + i) for i in range(6)],
            1,
            2,
            id="some-p95-nan",
        ),
        pytest.param(
            [one_setting(i, p95_latency_ms=np.nan, stage="screen") for i in range(4)],
            None,
            0,
            id="all-p95-nan",
        ),
        pytest.param(
            [one_setting(i, feasible=False, success_rate=0.5 + i / 100) for i in range(4)],
            None,
            None,
            id="nothing-feasible",
        ),
        pytest.param([], None, None, id="empty"),
    ],
)
def test_degenerate_sweeps(
    tmp_path: Path, rows: list[dict[str, object]], recommended: int | None, current: int | None
) -> None:
    points = pd.DataFrame(rows, columns=list(FRONTIER_COLUMNS))
    out = frontier_png(
        points,
        tmp_path / "f.png",
        recommended=recommended,
        current=current,
        constraint_success=0.9,
    )
    width, height = png_size(out)
    assert width > 500
    assert height > 500


def test_rejects_points_it_cannot_draw(tmp_path: Path) -> None:
    points = sweep(n_screen=5, n_confirm=1)
    target = tmp_path / "f.png"
    with pytest.raises(ValueError, match=r"lacks column.*feasible"):
        frontier_png(points.drop(columns="feasible"), target, recommended=None, current=None)
    with pytest.raises(ValueError, match="recommended setting 99"):
        frontier_png(points, target, recommended=99, current=None)
    with pytest.raises(ValueError, match="one row per setting"):
        frontier_png(pd.concat([points, points]), target, recommended=None, current=None)
    with pytest.raises(ValueError, match="unknown stage"):
        frontier_png(points.assign(stage="final"), target, recommended=None, current=None)
    assert not target.exists()


def test_importing_the_module_leaves_matplotlib_unloaded() -> None:
    code = "import sys, harness.plots; print('matplotlib' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == "False"


# --- request-level figures --------------------------------------------------------------

REQUEST_PLOTS = {
    "latency_cdf": latency_cdf_png,
    "timeline": timeline_png,
    "cost": cost_png,
    "paths": paths_png,
}


Windows = list[TimeWindow]


@pytest.fixture(scope="module")
def run() -> tuple[pd.DataFrame, Windows, Windows]:
    """A small real run of the support suite, with its fault windows and spikes."""
    suite = load_suite("scenarios/support.yaml", ["traffic.requests=1500"]).suite
    requests = simulate(suite).requests.to_pandas()
    windows = suite_windows(suite)
    faults = [w for w in windows if w.label != SPIKE]
    return requests, faults, [w for w in windows if w.label == SPIKE]


def draw(name: str, requests: pd.DataFrame, path: Path, **kwargs: object) -> Path:
    out = REQUEST_PLOTS[name](requests, path, **kwargs)  # type: ignore[operator]
    assert out == path
    width, height = png_size(out)
    assert width >= 500
    assert height >= 500
    return out


@pytest.mark.parametrize("name", REQUEST_PLOTS)
def test_request_plots_on_a_real_run(
    tmp_path: Path, run: tuple[pd.DataFrame, list, list], name: str
) -> None:
    requests, faults, spikes = run
    kwargs: dict[str, object] = {"faults": faults, "spikes": spikes} if name == "timeline" else {}
    out = draw(name, requests, tmp_path / f"{name}.png", **kwargs)
    assert png_size(out) == (1080, 720)


def some_nan_latency(requests: pd.DataFrame) -> pd.DataFrame:
    every_third = np.arange(len(requests)) % 3 == 0
    return requests.assign(latency_ms=np.where(every_third, np.nan, requests["latency_ms"]))


DEGENERATE: dict[str, Callable[[pd.DataFrame], pd.DataFrame]] = {
    "empty": lambda r: r.iloc[:0],
    "no-columns": lambda r: pd.DataFrame(),
    "one-row": lambda r: r.iloc[:1],
    "blocked-only": lambda r: r[r["tiers_tried"] == ""],
    "some-nan-latency": some_nan_latency,
    "all-nan-latency": lambda r: r.assign(latency_ms=np.nan),
    "missing-text": lambda r: r.assign(route=None, served_by=None, tiers_tried=None),
}


@pytest.mark.parametrize("case", DEGENERATE)
@pytest.mark.parametrize("name", REQUEST_PLOTS)
def test_request_plots_on_degenerate_inputs(
    tmp_path: Path, run: tuple[pd.DataFrame, list, list], name: str, case: str
) -> None:
    requests, faults, _ = run
    kwargs: dict[str, object] = {"faults": faults} if name == "timeline" else {}
    draw(name, DEGENERATE[case](requests), tmp_path / f"{name}.png", **kwargs)


def test_timeline_with_crowded_windows_and_a_fixed_bucket(
    tmp_path: Path, run: tuple[pd.DataFrame, list, list]
) -> None:
    requests, _, _ = run
    faults = [TimeWindow(10.0, 40.0, "a-long-fault-name"), TimeWindow(15.0, 45.0, "b"),
              TimeWindow(20.0, 25.0, "c"), TimeWindow(-5, 3, "d")]  # fmt: skip
    out = draw(
        "timeline",
        requests,
        tmp_path / "t.png",
        faults=faults,
        spikes=[TimeWindow(12.0, 32.0, SPIKE), TimeWindow(10_000.0, 10_005.0, SPIKE)],
        bucket_s=0.5,
    )
    assert png_size(out) == (1080, 720)


def test_paths_keeps_the_top_and_pools_the_rest(
    tmp_path: Path, run: tuple[pd.DataFrame, list, list]
) -> None:
    requests, _, _ = run
    draw("paths", requests, tmp_path / "p.png", top=1)


@pytest.mark.parametrize(
    ("span", "expected"), [(550.0, 10.0), (124.0, 2.0), (0.0, 0.01), (1e6, 2e4)]
)
def test_bucket_size_gives_forty_to_eighty_buckets(span: float, expected: float) -> None:
    assert bucket_size(span) == expected
    if span >= 1:
        assert 40 <= span / expected <= 80


def test_request_plots_reject_what_they_cannot_draw(
    tmp_path: Path, run: tuple[pd.DataFrame, list, list]
) -> None:
    requests, _, _ = run
    target = tmp_path / "x.png"
    with pytest.raises(ValueError, match="bucket_s must be positive"):
        timeline_png(requests, target, bucket_s=0)
    with pytest.raises(ValueError, match="top must be at least 1"):
        paths_png(requests, target, top=0)
    with pytest.raises(ValueError, match=r"lacks column.*latency_ms"):
        latency_cdf_png(requests.drop(columns="latency_ms"), target)
    with pytest.raises(ValueError, match=r"lacks column.*cost_usd"):
        cost_png(requests.drop(columns="cost_usd"), target)
    assert not target.exists()


# --- the timeline's windows are the fault schedule ----------------------------------------

SUPPORT_SCHEDULE = {
    "crm-slow": (120.0, 240.0),
    "spike": (240.0, 300.0),
    "premium-outage": (300.0, 390.0),
    "stale-index": (400.0, 460.0),
}
"""scenarios/support.yaml's faults and spike, start and end in seconds (not durations)."""


@pytest.fixture(scope="module")
def full_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[pd.DataFrame, Windows, Windows]:
    """The support suite as shipped (8,000 requests, about 550 s of arrivals: every window
    inside the run), with its windows read back from the run's manifest as a report does."""
    from harness.run import manifest

    loaded = load_suite("scenarios/support.yaml")
    result = simulate(loaded.suite)
    faults, spikes = manifest_windows(manifest(loaded, result, "r", ["evalx"], []))
    return result.requests.to_pandas(), faults, spikes


def shaded(ax: object) -> dict[str, list[tuple[float, float]]]:
    """The x-extents of an axes' window patches: fault shading (filled) and spikes (hatched)."""
    from matplotlib.patches import Rectangle

    out: dict[str, list[tuple[float, float]]] = {"fault": [], "spike": []}
    for patch in ax.patches:  # type: ignore[attr-defined]
        assert isinstance(patch, Rectangle)
        x0, x1 = patch.get_x(), patch.get_x() + patch.get_width()
        out["spike" if patch.get_hatch() else "fault"].append((round(x0, 6), round(x1, 6)))
    return {k: sorted(v) for k, v in out.items()}


def test_the_suite_schedule_is_what_the_test_expects() -> None:
    windows = suite_windows(load_suite("scenarios/support.yaml").suite)
    assert {w.label: (w.start_s, w.end_s) for w in windows} == SUPPORT_SCHEDULE


def test_manifest_windows_carry_ends_not_durations(
    full_run: tuple[pd.DataFrame, Windows, Windows],
) -> None:
    _, faults, spikes = full_run
    assert all(isinstance(w, TimeWindow) for w in [*faults, *spikes])
    assert {w.label: (w.start_s, w.end_s) for w in [*faults, *spikes]} == SUPPORT_SCHEDULE


def test_timeline_shades_exactly_the_fault_schedule(
    tmp_path: Path, full_run: tuple[pd.DataFrame, Windows, Windows]
) -> None:
    """Both panels shade each fault over [start, end) and hatch the spike over its 60 s, and
    the labels above the top panel sit over the middle of their window."""
    requests, faults, spikes = full_run
    fig = timeline_figure(requests, faults=faults, spikes=spikes)
    top, bottom = fig.axes
    faults_expected = sorted(v for k, v in SUPPORT_SCHEDULE.items() if k != "spike")
    for ax in (top, bottom):
        assert shaded(ax) == {"fault": faults_expected, "spike": [SUPPORT_SCHEDULE["spike"]]}
    labels = {t.get_text(): t.xy[0] for t in top.texts if hasattr(t, "xy")}
    assert labels == {k: (a + b) / 2 for k, (a, b) in SUPPORT_SCHEDULE.items()}
    assert bottom.get_xlim()[1] >= max(b for _, b in SUPPORT_SCHEDULE.values())
    timeline_png(requests, tmp_path / "timeline.png", faults=faults, spikes=spikes)
    assert png_size(tmp_path / "timeline.png") == (1080, 720)


def test_timeline_clips_a_window_past_the_run(
    run: tuple[pd.DataFrame, Windows, Windows],
) -> None:
    requests, _, _ = run
    end = float(requests["arrival_s"].max())
    fig = timeline_figure(requests, faults=[TimeWindow(end - 10, end + 1000, "late")])
    ((low, high),) = shaded(fig.axes[0])["fault"]
    assert low == round(end - 10, 6)
    assert high == round(fig.axes[0].get_xlim()[1], 6) < end + 1000
