"""The timeline figure: success rate and p95 latency per time bucket, with fault and
spike windows shaded and labelled.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from harness.plots._common import (
    _CURRENT,
    _DPI,
    _OBJECTIVE,
    _SIZE_IN,
    _check_columns,
    _comma_ticks,
    _figure,
    _grid,
    _message,
    _ms,
    _no_requests,
    _number,
    _patch,
    _save,
)

if TYPE_CHECKING:
    import numpy.typing as npt
    import pandas as pd
    from matplotlib.artist import Artist
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from harness.faults import TimeWindow

_SPIKE = "#555555"
_FAULT_COLOURS = ("#ff7f0e", "#d62728", "#8c564b", "#e377c2", "#17becf", "#bcbd22")
# Round bucket sizes in seconds; neighbours are at most 2x apart, so one gives 40-80 buckets.
_BUCKETS = tuple(
    sorted({m * 10.0**k for m in (1.0, 2.0, 2.5, 5.0) for k in range(-2, 7)} | {15.0, 30.0, 60.0})
)
_MAX_BUCKETS = 80


def timeline_png(
    requests: pd.DataFrame,
    path: str | Path,
    *,
    faults: Sequence[TimeWindow] = (),
    spikes: Sequence[TimeWindow] = (),
    bucket_s: float | None = None,
    title: str = "Success rate and p95 latency over time",
) -> Path:
    """Draw `timeline_figure` and write it as a PNG; its path. The parent folder must exist."""
    fig = timeline_figure(requests, faults=faults, spikes=spikes, bucket_s=bucket_s, title=title)
    return _save(fig, path)


def timeline_figure(
    requests: pd.DataFrame,
    *,
    faults: Sequence[TimeWindow] = (),
    spikes: Sequence[TimeWindow] = (),
    bucket_s: float | None = None,
    title: str = "Success rate and p95 latency over time",
) -> Figure:
    """Success rate and p95 latency per time bucket, with faults and spikes, as a Figure.

    Requests are bucketed by `arrival_s` (seconds since the start); the top panel is the
    bucket's success rate, the bottom its p95 latency (ms, NaN latencies left out), both
    against one time axis; a bucket without requests is a gap. Dashed lines show the whole
    run's value. `faults` and `spikes` are `TimeWindow`s (start and *end* in seconds,
    `harness.faults`): faults are shaded in both panels and labelled above the top one
    (labels that would collide go on a higher row); spikes are hatched and labelled with
    their label ("spike"). Windows are clipped to the run's time range; one wholly outside
    it is only named in the legend. `bucket_s` defaults to a round size giving 40-80
    buckets. An empty table draws "no requests". Raises ValueError for a non-positive
    `bucket_s`.
    """
    from matplotlib.figure import Figure

    if bucket_s is not None and not bucket_s > 0:
        raise ValueError(f"bucket_s must be positive, got {bucket_s}")
    if len(requests) == 0:
        fig, ax = _figure()
        _no_requests(fig, ax, requests, title)
        return fig
    _check_columns(requests, ("arrival_s", "success", "latency_ms"), "timeline_png")
    arrival = requests["arrival_s"].to_numpy(dtype=float)
    success = requests["success"].to_numpy(dtype=float)
    latency = requests["latency_ms"].to_numpy(dtype=float)

    span = max(float(np.nanmax(arrival)) if not np.isnan(arrival).all() else 0.0, 0.0)
    size = bucket_s if bucket_s is not None else bucket_size(span)
    n_buckets = max(int(np.floor(span / size)) + 1, 1)
    end = n_buckets * size
    bucket = np.clip(np.floor(np.nan_to_num(arrival, nan=-1.0) / size), -1, n_buckets - 1)
    timed = bucket >= 0
    index = bucket[timed].astype(int)
    counts = np.bincount(index, minlength=n_buckets)
    good = np.bincount(index, weights=np.nan_to_num(success[timed]), minlength=n_buckets)
    rate = np.full(n_buckets, np.nan)
    rate[counts > 0] = 100 * good[counts > 0] / counts[counts > 0]
    p95 = _bucket_p95(index, latency[timed], n_buckets)
    centre = (np.arange(n_buckets) + 0.5) * size

    fig = Figure(figsize=_SIZE_IN, dpi=_DPI, layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(1, 1))
    fig.suptitle(title)
    top.plot(centre, rate, color=_CURRENT, marker="o", markersize=3, linewidth=1.4, zorder=3)
    bottom.plot(centre, p95, color=_CURRENT, marker="o", markersize=3, linewidth=1.4, zorder=3)
    overall_rate = 100 * float(np.nanmean(success)) if not np.isnan(success).all() else np.nan
    known_latency = latency[~np.isnan(latency)]
    overall_p95 = float(np.percentile(known_latency, 95)) if known_latency.size else np.nan
    handles: list[Artist] = []
    if not np.isnan(overall_rate):
        top.axhline(overall_rate, color=_OBJECTIVE, linestyle="--", linewidth=1.0, zorder=2)
    if np.isnan(overall_p95):
        _message(bottom, "no known latencies")
    else:
        bottom.axhline(overall_p95, color=_OBJECTIVE, linestyle="--", linewidth=1.0, zorder=2)
    handles += _timeline_line_handles(overall_rate, overall_p95, size)

    windows = [
        _Window(w.start_s, w.end_s, w.label, _FAULT_COLOURS[i % len(_FAULT_COLOURS)], False)
        for i, w in enumerate(faults)
    ] + [_Window(w.start_s, w.end_s, w.label, _SPIKE, True) for w in spikes]
    for window in windows:
        shown = window.start < end and window.end > 0
        if shown:
            for ax in (top, bottom):
                window.shade(ax, end)
        handles.append(window.handle(shown))

    top.set_ylabel("success rate (%)")
    top.set_ylim(bottom=max(0.0, min(float(np.nanmin(rate)), overall_rate) - 5), top=101)
    bottom.set_ylabel("p95 latency (ms)")
    bottom.set_ylim(bottom=0)
    bottom.set_xlabel(f"time since start (s), by arrival; {_number(size)} s buckets")
    bottom.set_xlim(0, end)
    _comma_ticks(bottom, "y")
    for ax in (top, bottom):
        _grid(ax)
    fig.legend(
        handles=handles,
        loc="outside lower center",
        ncol=min(len(handles), 3),
        frameon=False,
        fontsize="small",
    )
    _label_windows(fig, top, [w for w in windows if w.start < end and w.end > 0], end)
    return fig


def bucket_size(span: float) -> float:
    """The smallest round size giving at most `_MAX_BUCKETS` buckets over `span` seconds."""
    for size in _BUCKETS:
        if span / size <= _MAX_BUCKETS:
            return size
    return _BUCKETS[-1]


def _bucket_p95(
    index: npt.NDArray[np.int_], latency: npt.NDArray[np.float64], n_buckets: int
) -> npt.NDArray[np.float64]:
    out = np.full(n_buckets, np.nan)
    known = ~np.isnan(latency)
    index, latency = index[known], latency[known]
    order = np.argsort(index, kind="stable")
    index, latency = index[order], latency[order]
    bounds = np.searchsorted(index, np.arange(n_buckets + 1))
    for i in range(n_buckets):
        chunk = latency[bounds[i] : bounds[i + 1]]
        if chunk.size:
            out[i] = np.percentile(chunk, 95)
    return out


def _timeline_line_handles(overall_rate: float, overall_p95: float, size: float) -> list[Artist]:
    from matplotlib.lines import Line2D

    handles: list[Artist] = [
        Line2D([], [], color=_CURRENT, marker="o", ms=3, lw=1.4, label=f"per {_number(size)} s")
    ]
    parts = []
    if not np.isnan(overall_rate):
        parts.append(f"{overall_rate:.1f}% success")
    if not np.isnan(overall_p95):
        parts.append(f"p95 {_ms(overall_p95)}")
    if parts:
        label = "whole run: " + ", ".join(parts)
        handles.append(Line2D([], [], color=_OBJECTIVE, ls="--", lw=1.0, label=label))
    return handles


@dataclass(frozen=True)
class _Window:
    """A fault or spike window on the timeline."""

    start: float
    end: float
    label: str
    colour: str
    spike: bool

    def shade(self, ax: Axes, limit: float) -> None:
        low, high = max(self.start, 0.0), min(self.end, limit)
        if self.spike:
            ax.axvspan(
                low,
                high,
                facecolor="none",
                edgecolor=self.colour,
                hatch="//",
                linewidth=0.0,
                alpha=0.45,
                zorder=1,
            )
        else:
            ax.axvspan(low, high, facecolor=self.colour, alpha=0.15, linewidth=0, zorder=1)

    def handle(self, shown: bool) -> Artist:
        text = self.label if shown else f"{self.label} (not in the run)"
        if self.spike:
            return _patch("none", text, hatch="//", edge=self.colour)
        return _patch(self.colour, text, alpha=0.3)


def _label_windows(fig: Figure, ax: Axes, windows: Sequence[_Window], limit: float) -> None:
    """Name each window above `ax`, centred on it, raising a label that would hit another.

    A label is kept within the axes' width (shifted sideways at the edges), so none is
    cut off by the figure's border.
    """
    if not windows:
        return
    fig.draw_without_rendering()  # text widths and the axes' pixel scale are known after this
    frame = ax.get_window_extent()
    rows: list[list[tuple[float, float]]] = []
    for window in sorted(windows, key=lambda w: (max(w.start, 0.0), w.end)):
        middle = (max(window.start, 0.0) + min(window.end, limit)) / 2
        text = ax.annotate(
            window.label,
            xy=(middle, 1.0),
            xycoords=ax.get_xaxis_transform(),
            xytext=(0, 3),
            textcoords="offset points",
            ha="center",
            va="bottom",
            fontsize="small",
            color=window.colour if not window.spike else "#333333",
            annotation_clip=False,
        )
        box = text.get_window_extent()
        shift = min(frame.x1 - box.x1, 0.0) or max(frame.x0 - box.x0, 0.0)  # stay over the axes
        span = (box.x0 + shift - 6, box.x1 + shift + 6)
        row = next(
            (
                i
                for i, taken in enumerate(rows)
                if all(span[1] <= a or span[0] >= b for a, b in taken)
            ),
            len(rows),
        )
        if row == len(rows):
            rows.append([])
        rows[row].append(span)
        text.xyann = (shift * 72 / fig.dpi, 3 + 13 * row)
