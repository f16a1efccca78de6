"""The fit report: what each figure draws (read back from the artists) and what the
Markdown says (the fit's own numbers)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from harness.data._fit_latency import LatencyFit, fit_latency
from harness.data._fit_quality import QualityFit, fit_quality
from harness.data._fit_traffic import TrafficFit, fit_traffic
from harness.data._fragment import Component, Source
from harness.data._gof import signed_percent
from harness.fit_report import (
    QQ_POINTS,
    cdf_figure,
    qq_figure,
    qq_probabilities,
    rate_figure,
    report_paths,
    success_figure,
    write_fit_report,
)

PNG = b"\x89PNG\r\n\x1a\n"


def latency_fit(n: int = 400) -> LatencyFit:
    rng = np.random.default_rng(0)
    out = rng.integers(50, 400, n)
    ttft = 0.2 * np.exp(0.3 * rng.standard_normal(n))
    lat = ttft + out * 0.02 * np.exp(0.1 * rng.standard_normal(n))
    table = pa.table(
        {
            "model": ["m"] * n,
            "ttft_s": ttft,
            "latency_s": lat,
            "input_tokens": pa.array(np.full(n, 550), pa.int64()),
            "output_tokens": pa.array(out, pa.int64()),
            "status": ["ok"] * n,
        }
    )
    src = Source("calls.json", "ab" * 32, n)
    return fit_latency(table, sources=[src], created="2024-05-01", command="evalx fit latency")


def traffic_fit() -> TrafficFit:
    rng = np.random.default_rng(3)
    t = np.cumsum(rng.exponential(1 / 20.0, 40_000))
    t = t[t < 1800]
    t = t[((t >= 600) & (t < 780)) | (rng.random(t.size) < 0.25)]  # 5/s, x4 in [600, 780)
    log = pa.table(
        {
            "timestamp_s": 1.7e9 + t,
            "input_tokens": np.maximum(1, np.rint(700 * np.exp(rng.normal(0, 0.6, t.size)))),
            "output_tokens": np.maximum(1, np.rint(150 * np.exp(rng.normal(0, 0.4, t.size)))),
        }
    )
    return fit_traffic(log, created="2024-05-01")


def quality_fit() -> QualityFit:
    rng = np.random.default_rng(1)
    u = rng.random(300)
    scores = {"big": u < 0.8, "mid": (u < 0.6) ^ (rng.random(300) < 0.1), "small": u < 0.4}
    table = pa.table(
        {
            "id": [str(i) for i in range(300)] * 3,
            "model": [m for m in scores for _ in range(300)],
            "score": np.concatenate([s.astype(float) for s in scores.values()]),
            "task_class": (["a", "b", "c"] * 100) * 3,
        }
    )
    return fit_quality(table, ">= 1", created="2024-05-01")


def by_gid(fig: Any, gid: str) -> list[Any]:
    (ax, *_) = fig.axes
    return [a for a in ax.get_children() if a.get_gid() == gid]


# --------------------------------------------------------------------------- figures


def test_qq_plot_draws_the_quantiles_against_y_equals_x() -> None:
    c = latency_fit().models["m"].component("per_output_token")
    fig = qq_figure(c)
    ax = fig.axes[0]
    (identity,) = by_gid(fig, "identity")
    x, y = identity.get_xdata(), identity.get_ydata()
    np.testing.assert_array_equal(x, y)
    (points,) = by_gid(fig, "quantiles")
    xy = points.get_offsets()
    p = qq_probabilities(c.observed.size)
    assert len(xy) == min(c.observed.size, QQ_POINTS) == 200
    np.testing.assert_allclose(xy[:, 0], np.quantile(c.observed, p))
    np.testing.assert_allclose(xy[:, 1], c.fitted_quantile(p))
    assert x[0] <= xy.min() and x[-1] >= xy.max()  # the line spans every point
    (marked,) = by_gid(fig, "marked")
    np.testing.assert_allclose(
        marked.get_offsets()[:, 0], np.quantile(c.observed, [0.5, 0.95, 0.99])
    )
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("observed (ms)", "fitted (ms)")
    assert ax.get_xscale() == "linear"  # 15-30 ms per token: narrow, no log axes


def test_qq_plot_of_a_small_wide_sample_uses_every_value_and_log_axes() -> None:
    from harness.data._dist import Dist
    from harness.data._gof import goodness_of_fit

    x = np.array([1.0, 3.0, 10.0, 40.0, 200.0])
    d = Dist.lognormal(10.0, 300.0)
    c = Component("k", "wide", x, goodness_of_fit(x, d), dist=d)
    fig = qq_figure(c)
    (points,) = by_gid(fig, "quantiles")
    assert len(points.get_offsets()) == 5
    assert fig.axes[0].get_xscale() == fig.axes[0].get_yscale() == "log"


def test_cdf_overlay_draws_the_observed_ecdf_over_the_fitted_cdf() -> None:
    c = latency_fit().models["m"].component("ttft")
    fig = cdf_figure(c)
    (observed,) = by_gid(fig, "observed")
    (fitted,) = by_gid(fig, "fitted")
    np.testing.assert_allclose(observed.get_xdata(), np.sort(c.observed))
    np.testing.assert_allclose(
        observed.get_ydata(), np.arange(1, c.observed.size + 1) / c.observed.size
    )
    np.testing.assert_allclose(fitted.get_ydata(), c.fitted_cdf(fitted.get_xdata()))
    assert fig.axes[0].get_ylabel() == "fraction at or below"


def test_rate_figure_shades_exactly_the_detected_spikes() -> None:
    fit = traffic_fit()
    assert len(fit.spikes) == 1
    fig = rate_figure(fit)
    ax = fig.axes[0]
    spans = by_gid(fig, "spike")
    assert [(s.get_x(), s.get_x() + s.get_width()) for s in spans] == [
        (w.start_s, w.start_s + w.duration_s) for w in fit.spikes
    ]
    bars = by_gid(fig, "bucket")
    assert len(bars) == fit.counts.size
    np.testing.assert_allclose([b.get_height() for b in bars], fit.bucket_rates)
    np.testing.assert_allclose([b.get_x() for b in bars], np.arange(fit.counts.size) * fit.bucket_s)
    (base,) = by_gid(fig, "base-rate")
    assert set(base.get_ydata()) == {fit.rate_per_s}
    (fitted,) = by_gid(fig, "fitted-rate")
    spike = fit.spikes[0]
    inside = (fitted.get_xdata() >= spike.start_s) & (
        fitted.get_xdata() < spike.start_s + spike.duration_s
    )
    np.testing.assert_allclose(fitted.get_ydata()[inside], fit.rate_per_s * spike.multiplier)
    assert ax.get_xlabel() == "seconds after the first arrival"
    assert ax.get_ylabel() == "arrivals per second"


def test_success_figure_draws_rates_with_wilson_intervals() -> None:
    fit = quality_fit()
    fig = success_figure(fit)
    (line,) = by_gid(fig, "success")
    rates = [fit.overall[n].rate for n in fit.names]
    np.testing.assert_allclose(line.get_xdata(), rates)
    (interval,) = by_gid(fig, "interval")
    ends = [(seg[0][0], seg[1][0]) for seg in interval.get_segments()]
    np.testing.assert_allclose(ends, [fit.overall[n].interval for n in fit.names])
    (dots,) = by_gid(fig, "class-rate")
    assert len(dots.get_offsets()) == 3 * 3  # three models x three classes
    ticks = fig.axes[0].get_yticklabels()
    top_down = sorted(ticks, key=lambda t: -t.get_position()[1])
    assert [t.get_text() for t in top_down] == list(fit.names)  # strongest on top
    np.testing.assert_allclose(sorted(line.get_ydata(), reverse=True), line.get_ydata())


# --------------------------------------------------------------------------- Markdown


def table_row(md: str, first_cell: str) -> list[str]:
    line = next(line for line in md.splitlines() if line.startswith(f"| {first_cell} |"))
    return [cell.strip() for cell in line.strip("|").split("|")]


def images(md: str) -> list[str]:
    return re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)


def test_latency_report(tmp_path: Path) -> None:
    fit = latency_fit()
    fragment = fit.write(tmp_path / "fitted.yaml")
    md_path = write_fit_report(fit, fragment)
    assert md_path == tmp_path / "fitted.md"
    md = md_path.read_text()
    assert "| `calls.json` | `" + "ab" * 32 + "` | 400 |" in md
    assert "- fitted by evalx" in md and "on 2024-05-01" in md
    for c in fit.components():
        row = table_row(md, f"`{c.key}`")
        assert row[1:5] == [c.describe, str(c.gof.n), f"{c.gof.ks:.3f}", f"{c.gof.ks_p:.2g}"]
        p95 = c.gof.at(0.95)
        assert row[8:11] == [
            f"{p95.observed:.4g}",
            f"{p95.fitted:.4g}",
            signed_percent(p95.rel_error),
        ]
    pictures = images(md)
    assert pictures == [
        f"fitted-m-{what}-{plot}.png"
        for what in ("ttft", "per_output_token", "end_to_end")
        for plot in ("qq", "cdf")
    ]
    for name in pictures:
        assert (tmp_path / name).read_bytes()[:8] == PNG


def test_traffic_report(tmp_path: Path) -> None:
    fit = traffic_fit()
    md = write_fit_report(fit, tmp_path).read_text()
    assert (tmp_path / "traffic.md").exists()
    assert f"- rate_per_s (outside spikes): {fit.rate_per_s:.4g}" in md
    s = fit.spikes[0]
    assert table_row(md, f"{s.start_s:g}") == [
        f"{s.start_s:g}",
        f"{s.duration_s:g}",
        f"{s.multiplier:g}",
        str(s.requests),
    ]
    c = fit.mix["default"]
    assert table_row(md, "default")[3:] == [
        f"{c.input_tokens}",
        f"{c.input_spread:g}",
        f"{c.output_tokens}",
        f"{c.output_spread:g}",
    ]
    assert images(md)[0] == "traffic-rate.png"
    assert "traffic-arrivals-qq.png" in images(md)
    assert all((tmp_path / name).exists() for name in images(md))


def test_quality_report(tmp_path: Path) -> None:
    fit = quality_fit()
    md = write_fit_report(fit, tmp_path / "q.md").read_text()
    for n in fit.names:
        r = fit.overall[n]
        lo, hi = r.interval
        assert table_row(md, n)[2:] == [
            f"{r.rate:.4f}",
            f"{r.successes} / {r.n}",
            f"{lo:.4f} - {hi:.4f}",
        ]
    for weak, strong, share, common in fit.non_nesting():
        line = (
            f"| {weak} | {strong} | {share:.4f} | {share / fit.overall[weak].rate:.3f} | {common} |"
        )
        assert line in md
    assert images(md) == ["q-success.png", "q-nonnesting.png"]


def test_report_paths() -> None:
    fit = quality_fit()
    assert report_paths(fit, "out/fit.yaml") == (Path("out/fit.md"), "fit")
    assert report_paths(fit, "out/fit.md") == (Path("out/fit.md"), "fit")
    assert report_paths(fit, "out") == (Path("out/quality.md"), "quality")


@pytest.mark.slow
def test_llmperf_report_renders(tmp_path: Path) -> None:
    """All nine LLMPerf exports in one fit: 54 figures (opt-in, a few seconds)."""
    import json

    root = Path(__file__).resolve().parents[2]
    data = next(
        p for p in (root / "fixtures" / "shared", root.parent / "shared" / "data") if p.is_dir()
    )
    tables = []
    for path in sorted((data / "llmperf-2023").glob("*.json")):
        records = json.loads(path.read_text())
        tables.append(
            pa.table(
                {
                    "model": [path.stem] * len(records),
                    "ttft_s": pa.array([r["ttft_s"] for r in records], pa.float64()),
                    "latency_s": pa.array(
                        [r["end_to_end_latency_s"] for r in records], pa.float64()
                    ),
                    "input_tokens": pa.array(
                        [r["number_input_tokens"] for r in records], pa.int64()
                    ),
                    "output_tokens": pa.array(
                        [r["number_output_tokens"] for r in records], pa.int64()
                    ),
                    "status": ["ok" if r["error_code"] is None else "error" for r in records],
                }
            )
        )
    fit = fit_latency(pa.concat_tables(tables))
    md = write_fit_report(fit, tmp_path / "llmperf.yaml").read_text()
    assert len(images(md)) == 9 * 3 * 2
