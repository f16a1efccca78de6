"""Figures written as PNG files: the sweep's cost-vs-success frontier.

Matplotlib is imported inside the functions, so importing this module stays cheap. The
figures are bare `Figure` objects saved through Agg, never `pyplot`: no global backend
switch (an analyst's notebook keeps its inline backend), no figure registry to leak
into, and no display needed.

`pareto_mask` is the frontier rule the plot uses; other modules may call it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import numpy.typing as npt
    import pandas as pd
    from matplotlib.artist import Artist
    from matplotlib.axes import Axes
    from matplotlib.colors import Colormap, Normalize
    from matplotlib.figure import Figure
    from matplotlib.text import Annotation
    from matplotlib.transforms import Bbox

__all__ = [
    "FRONTIER_COLUMNS",
    "cost_png",
    "frontier_png",
    "latency_cdf_png",
    "pareto_mask",
    "paths_png",
    "timeline_png",
]

FRONTIER_COLUMNS = (
    "setting",
    "label",
    "stage",
    "success_rate",
    "cost_per_request_usd",
    "p95_latency_ms",
    "feasible",
)
"""The columns `frontier_png` reads; other columns are ignored."""

_STAGES = ("screen", "confirm")
_SIZE_IN = (9.0, 6.0)
_DPI = 120
_NO_LATENCY = "#bdbdbd"
_RECOMMENDED = "#d62728"
_CURRENT = "#1f3a93"
_OBJECTIVE = "#555555"
# Where an annotation's text may go, in points from its setting, best first: up-left is
# empty above a frontier (nothing is cheaper and better), down-right holds dominated points.
_OFFSETS = (
    (-80, 45),
    (-40, 50),
    (0, 55),
    (-120, 15),
    (-80, -50),
    (-40, -55),
    (0, -60),
    (40, 50),
    (80, 45),
    (40, -55),
    (80, -50),
    (115, 0),
)


def pareto_mask(
    cost: npt.ArrayLike,
    success: npt.ArrayLike,
) -> npt.NDArray[np.bool_]:
    """Which points are on the cost-success frontier (cheap is good, success is good).

    A point is off the frontier when another point costs no more and succeeds at least
    as often, and is strictly better in one of the two. Identical points do not dominate
    each other, so all copies of a frontier point are on it. A point with a NaN cost or
    success is never on the frontier and dominates nothing. Runs in O(n log n).
    """
    c_all = np.asarray(cost, dtype=float)
    s_all = np.asarray(success, dtype=float)
    if c_all.ndim != 1 or c_all.shape != s_all.shape:
        raise ValueError(
            f"cost and success must be 1-D and of one length, got shapes "
            f"{c_all.shape} and {s_all.shape}"
        )
    mask = np.zeros(c_all.shape, dtype=bool)
    valid = np.flatnonzero(~(np.isnan(c_all) | np.isnan(s_all)))
    if valid.size == 0:
        return mask
    order = valid[np.lexsort((-s_all[valid], c_all[valid]))]  # cost up, then success down
    c, s = c_all[order], s_all[order]
    new_cost = np.r_[True, c[1:] != c[:-1]]
    group = np.cumsum(new_cost) - 1
    group_best = s[new_cost]  # each cost's best success comes first in its group
    cheaper_best = np.r_[-np.inf, np.maximum.accumulate(group_best)[:-1]]
    mask[order] = (s == group_best[group]) & (s > cheaper_best[group])
    return mask


def frontier_png(
    points: pd.DataFrame,
    path: str | Path,
    *,
    recommended: int | None,
    current: int | None,
    title: str = "Sweep: cost vs success",
    constraint_success: float | None = None,
) -> Path:
    """Draw a sweep's settings as cost per request vs success rate; write a PNG; its path.

    `points` holds one row per setting (route `all`) with the `FRONTIER_COLUMNS`. Colour
    shows p95 latency (grey when unknown; no colorbar when none is known); screened
    settings are small and translucent, confirmed ones large with a black edge; settings
    that miss an objective are drawn as crosses. The Pareto frontier (`pareto_mask`) is a
    step line: the best success reachable at each cost. `recommended` and `current` are
    setting ids (a star and a diamond, each annotated with its label, once when they are
    the same); `constraint_success` (0..1) adds a dashed objective line. The image is
    9x6 in at 120 dpi (1080x720 px); the parent folder must exist. Each annotation goes
    where its text covers the fewest points without leaving the axes or overlapping the
    other. Raises ValueError when `points` lacks a column, repeats a setting, names an
    unknown stage, or does not contain `recommended` or `current`.
    """
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.figure import Figure

    _check_points(points, recommended=recommended, current=current)
    cost = points["cost_per_request_usd"].to_numpy(dtype=float)
    success = points["success_rate"].to_numpy(dtype=float)
    percent = 100 * success  # plotted in percent, so the ticks read 86, 88, ...
    p95 = points["p95_latency_ms"].to_numpy(dtype=float)
    feasible = points["feasible"].to_numpy(dtype=bool)
    confirmed = (points["stage"] == "confirm").to_numpy(dtype=bool)

    fig = Figure(figsize=_SIZE_IN, dpi=_DPI, layout="constrained")
    ax = fig.add_subplot()
    cmap = colormaps["viridis"]
    norm = _latency_norm(p95)
    colours = _colours(p95, cmap, norm)

    for stage_confirmed in (False, True):
        for ok in (True, False):
            sel = (confirmed == stage_confirmed) & (feasible == ok)
            if sel.any():
                _scatter(ax, cost[sel], percent[sel], colours[sel], stage_confirmed, ok)

    on_front = pareto_mask(cost, success)
    draw_front = np.unique(cost[on_front]).size > 1  # a lone point needs no line
    if draw_front:
        order = np.lexsort((success[on_front], cost[on_front]))
        ax.step(
            cost[on_front][order],
            percent[on_front][order],
            where="post",
            color="black",
            linewidth=1.2,
            alpha=0.8,
            zorder=3,
        )

    if constraint_success is not None:
        ax.axhline(
            100 * constraint_success, color=_OBJECTIVE, linestyle="--", linewidth=1.2, zorder=1
        )

    marked: list[tuple[str, int, str]] = []  # (text, row, colour)
    rows = {int(s): i for i, s in enumerate(points["setting"])}
    labels = [str(v) for v in points["label"]]
    if recommended is not None:
        i = rows[recommended]
        _ring(ax, cost[i], percent[i], marker="*", size=520, colour=_RECOMMENDED, zorder=6)
        text = "current = recommended" if recommended == current else "recommended"
        marked.append((f"{text}\n{labels[i]}", i, _RECOMMENDED))
    if current is not None:
        i = rows[current]
        _ring(ax, cost[i], percent[i], marker="D", size=230, colour=_CURRENT, zorder=5)
        if current != recommended:
            marked.append((f"current\n{labels[i]}", i, _CURRENT))

    if len(points) == 0:
        ax.text(0.5, 0.6, "no settings", transform=ax.transAxes, ha="center", va="center")
    ax.set_title(title)
    ax.set_xlabel("cost per request (USD)")
    ax.set_ylabel("success rate (%)")
    ax.ticklabel_format(style="plain", useOffset=False)
    ax.margins(x=0.06, y=0.1)
    ax.grid(True, color="#e5e5e5", linewidth=0.8, zorder=0)
    ax.set_axisbelow(True)
    if not (cost < 0).any():  # autoscaling may pad below zero; no request costs that
        ax.set_xlim(left=max(ax.get_xlim()[0], 0.0))
    if not np.isnan(p95).all():  # an all-unknown bar would show a made-up scale
        fig.colorbar(
            ScalarMappable(norm=norm, cmap=cmap), ax=ax, label="p95 latency (ms)", fraction=0.05
        )
    fig.legend(
        handles=_legend_handles(
            has_screen=bool((~confirmed).any()),
            has_confirm=bool(confirmed.any()),
            has_infeasible=bool((~feasible).any()),
            has_frontier=draw_front,
            has_unknown_latency=bool(np.isnan(p95).any()),
            recommended=recommended,
            current=current,
            constraint_success=constraint_success,
        ),
        loc="outside lower center",
        ncol=4,
        frameon=False,
        fontsize="small",
    )

    fig.draw_without_rendering()  # lay the figure out first: annotations are placed in pixels
    _annotate(ax, marked, cost, percent)

    out = Path(path)
    fig.savefig(out, format="png", dpi=_DPI)
    return out


def _check_points(points: pd.DataFrame, *, recommended: int | None, current: int | None) -> None:
    missing = [c for c in FRONTIER_COLUMNS if c not in points.columns]
    if missing:
        raise ValueError(f"points lacks column(s) {', '.join(missing)}")
    repeated = points["setting"][points["setting"].duplicated()].tolist()
    if repeated:
        raise ValueError(f"points must hold one row per setting; repeated: {repeated[:5]}")
    stages = set(points["stage"]) - set(_STAGES)
    if stages:
        raise ValueError(f"unknown stage(s) {sorted(map(str, stages))}; expected {_STAGES}")
    known = {int(s) for s in points["setting"]}
    for name, setting in (("recommended", recommended), ("current", current)):
        if setting is not None and setting not in known:
            raise ValueError(f"{name} setting {setting} is not in points")


def _latency_norm(p95: npt.NDArray[np.float64]) -> Normalize:
    from matplotlib.colors import Normalize

    known = p95[~np.isnan(p95)]
    if known.size == 0:
        return Normalize(vmin=0.0, vmax=1.0)  # unused: every point is drawn grey
    low, high = float(known.min()), float(known.max())
    if low == high:  # one latency: centre it on the bar instead of a zero-width range
        half = max(abs(low) * 0.05, 1.0)
        low, high = low - half, high + half
    return Normalize(vmin=low, vmax=high)


def _colours(
    p95: npt.NDArray[np.float64], cmap: Colormap, norm: Normalize
) -> npt.NDArray[np.float64]:
    from matplotlib.colors import to_rgba

    colours = np.empty((p95.size, 4))
    unknown = np.isnan(p95)
    colours[~unknown] = cmap(norm(p95[~unknown]))
    colours[unknown] = to_rgba(_NO_LATENCY)
    return colours


def _scatter(
    ax: Axes,
    cost: npt.NDArray[np.float64],
    success: npt.NDArray[np.float64],
    colours: npt.NDArray[np.float64],
    confirmed: bool,
    feasible: bool,
) -> None:
    marker = "o" if feasible else "X"
    if confirmed:
        ax.scatter(
            cost,
            success,
            s=80 if feasible else 95,
            marker=marker,
            c=colours,
            edgecolors="black",
            linewidths=1.0,
            zorder=4,
        )
    else:
        ax.scatter(
            cost,
            success,
            s=16 if feasible else 22,
            marker=marker,
            c=colours,
            alpha=0.5,
            linewidths=0,
            zorder=2,
        )


def _ring(
    ax: Axes, x: float, y: float, *, marker: str, size: float, colour: str, zorder: int
) -> None:
    """A hollow marker around one setting, so the setting's own colour stays visible."""
    ax.scatter(
        x,
        y,
        s=size,
        marker=marker,
        facecolors="none",
        edgecolors=colour,
        linewidths=2.0,
        zorder=zorder,
    )


def _percent(value: float) -> str:
    return f"{value * 100:.4g}%"


def _legend_handles(
    *,
    has_screen: bool,
    has_confirm: bool,
    has_infeasible: bool,
    has_frontier: bool,
    has_unknown_latency: bool,
    recommended: int | None,
    current: int | None,
    constraint_success: float | None,
) -> list[Artist]:
    """Legend entries for what the figure shows; marker colours are neutral (colour is p95)."""
    from matplotlib.lines import Line2D

    grey = "#8c8c8c"
    none = "none"
    handles: list[Artist] = []
    if has_screen:
        handles.append(
            Line2D(
                [], [], ls=none, marker="o", ms=5, color=grey, alpha=0.6, mew=0, label="screened"
            )
        )
    if has_confirm:
        handles.append(
            Line2D([], [], ls=none, marker="o", ms=9, color=grey, mec="black", label="confirmed")
        )
    if has_infeasible:
        handles.append(
            Line2D(
                [], [], ls=none, marker="X", ms=8, color=grey, mew=0, label="misses an objective"
            )
        )
    if has_unknown_latency:
        handles.append(
            Line2D([], [], ls=none, marker="o", ms=7, color=_NO_LATENCY, mew=0, label="p95 unknown")
        )
    if has_frontier:
        handles.append(Line2D([], [], color="black", lw=1.2, label="Pareto frontier"))
    if recommended is not None:
        handles.append(
            Line2D(
                [], [], ls=none, marker="*", ms=16, mfc=none, mec=_RECOMMENDED, label="recommended"
            )
        )
    if current is not None:
        handles.append(
            Line2D([], [], ls=none, marker="D", ms=9, mfc=none, mec=_CURRENT, label="current")
        )
    if constraint_success is not None:
        label = f"objective: success \u2265 {_percent(constraint_success)}"
        handles.append(Line2D([], [], color=_OBJECTIVE, ls="--", lw=1.2, label=label))
    return handles


def _annotate(
    ax: Axes,
    marked: Sequence[tuple[str, int, str]],
    x: npt.NDArray[np.float64],
    y: npt.NDArray[np.float64],
) -> None:
    """Label the marked settings, each where its text covers the fewest points.

    A candidate offset is rejected when its text would leave the axes or overlap a text
    already placed; among the rest, the one covering the fewest points wins, ties going
    to the earlier offset in `_OFFSETS`.
    """
    if not marked:
        return
    finite = ~(np.isnan(x) | np.isnan(y))
    xy = ax.transData.transform(np.column_stack([x[finite], y[finite]]))
    frame = ax.get_window_extent()
    placed: list[Bbox] = []
    for text, row, colour in marked:
        ann = ax.annotate(
            text,
            xy=(float(x[row]), float(y[row])),
            xytext=_OFFSETS[0],
            textcoords="offset points",
            ha="center",
            va="center",
            fontsize="small",
            color=colour,
            bbox={"boxstyle": "round,pad=0.3", "fc": "white", "ec": colour, "alpha": 0.9},
            arrowprops={"arrowstyle": "-", "color": colour, "linewidth": 1.0, "shrinkB": 9},
            zorder=7,
        )
        ann.set_in_layout(False)  # keep the layout the placement was computed on
        best: tuple[int, tuple[int, int]] | None = None
        for offset in _OFFSETS:
            box = _text_box(ann, offset)
            if not _inside(box, frame) or any(box.overlaps(p) for p in placed):
                continue
            covered = int(np.count_nonzero(_contains(box.padded(4), xy)))
            if best is None or covered < best[0]:
                best = (covered, offset)
        chosen = _OFFSETS[0] if best is None else best[1]
        placed.append(_text_box(ann, chosen))


def _text_box(ann: Annotation, offset: tuple[int, int]) -> Bbox:
    from matplotlib.text import Text

    ann.xyann = offset
    ann.get_window_extent()  # moves the text to the new offset
    return Text.get_window_extent(ann).padded(3)  # the text alone, not the arrow


def _inside(box: Bbox, frame: Bbox) -> bool:
    return bool(
        box.x0 >= frame.x0 and box.x1 <= frame.x1 and box.y0 >= frame.y0 and box.y1 <= frame.y1
    )


def _contains(box: Bbox, xy: npt.NDArray[np.float64]) -> npt.NDArray[np.bool_]:
    x, y = xy[:, 0], xy[:, 1]
    inside: npt.NDArray[np.bool_] = (x >= box.x0) & (x <= box.x1) & (y >= box.y0) & (y <= box.y1)
    return inside


# --- request-level figures --------------------------------------------------------------


def latency_cdf_png(
    requests: pd.DataFrame,
    path: str | Path,
    *,
    title: str = "Latency distribution by route",
) -> Path:
    """Draw the empirical CDF of latency per route and for all requests; write a PNG; its path.

    `requests` holds requests.parquet rows (`route` and `latency_ms` are read). The x axis
    is logarithmic in ms, the y axis the fraction of the route's requests at or below a
    latency; `all` is black, and its p95 and p99 (numpy's linear percentiles, as in the
    summary table) are dashed vertical lines. NaN latencies are left out of every
    fraction. Latencies of 0 ms (requests blocked before any call) count in the fractions
    but cannot sit on a log axis, so a curve starts at their share; a route with no
    positive latency is only listed in the legend. An empty table draws "no requests".
    """
    fig, ax = _figure()
    if _no_requests(fig, ax, requests, title):
        return _save(fig, path)
    _check_columns(requests, ("route", "latency_ms"), "latency_cdf_png")
    latency = requests["latency_ms"].to_numpy(dtype=float)
    known = ~np.isnan(latency)
    if not known.any():
        _blank(ax, title, "no known latencies")
        return _save(fig, path)

    route = _text(requests["route"])
    routes = _by_count(route[known])
    colours = _route_colours(routes)
    for name in routes:
        values = latency[known & (route == name)]
        _ecdf(ax, values, colour=colours[name], label=_route_label(name, values), width=1.4)
    everything = latency[known]
    _ecdf(ax, everything, colour="black", label=_route_label("all", everything), width=2.4)

    p95, p99 = (float(v) for v in np.percentile(everything, [95, 99]))
    marks = (("p95", p95, "#444444", -4, "right"), ("p99", p99, _RECOMMENDED, 4, "left"))
    for name, value, colour, dx, side in marks:  # labels face apart, so close lines stay legible
        label = f"{name} (all) = {_ms(value)}"
        if value > 0:
            ax.axvline(value, color=colour, linestyle="--", linewidth=1.3, label=label, zorder=1)
            ax.annotate(
                name,
                xy=(value, 0.5),
                xycoords=ax.get_xaxis_transform(),
                xytext=(dx, 0),
                textcoords="offset points",
                rotation=90,
                ha=side,
                va="center",
                color=colour,
                fontsize="small",
                bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "none", "alpha": 0.8},
            )
        else:  # nothing to mark on a log axis; the value still belongs in the legend
            ax.plot([], [], color=colour, linestyle="--", linewidth=1.3, label=label)

    positive = everything[everything > 0]
    if positive.size:
        low, high = float(positive.min()), float(positive.max())
        ax.set_xscale("log")
        ax.set_xlim(low / 1.4, high * 1.4)
        _plain_log_ticks(ax)
    else:
        ax.set_xticks([])
        _message(ax, "every known latency is 0 ms")
    zeros = int(np.count_nonzero(everything <= 0))
    if zeros:
        ax.text(
            0.01,
            0.98,
            f"{zeros:,} request(s) at 0 ms (blocked before any call): counted in the\n"
            "fractions, not drawable on a log axis, so curves start above 0",
            transform=ax.transAxes,
            ha="left",
            va="top",
            fontsize="small",
            color="#555555",
        )
    ax.set_ylim(0.0, 1.0)
    ax.set_title(title)
    ax.set_xlabel("latency (ms, log scale)")
    ax.set_ylabel("fraction of requests at or below")
    _grid(ax)
    ax.legend(loc="lower right", fontsize="small", framealpha=0.95)
    return _save(fig, path)


def timeline_png(
    requests: pd.DataFrame,
    path: str | Path,
    *,
    faults: Sequence[tuple[float, float, str]] = (),
    spikes: Sequence[tuple[float, float]] = (),
    bucket_s: float | None = None,
    title: str = "Success rate and p95 latency over time",
) -> Path:
    """Draw success rate and p95 latency per time bucket, with faults and spikes; its path.

    Requests are bucketed by `arrival_s` (seconds since the start); the top panel is the
    bucket's success rate, the bottom its p95 latency (ms, NaN latencies left out), both
    against one time axis; a bucket without requests is a gap. Dashed lines show the whole
    run's value. `faults` are `(start_s, duration_s, label)` windows, shaded in both
    panels and labelled above the top one (labels that would collide go on a higher row);
    `spikes` are `(start_s, duration_s)` traffic spikes, hatched and labelled "spike".
    Windows are clipped to the run's time range; one wholly outside it is only named in
    the legend. `bucket_s` defaults to a round size giving 40-80 buckets. An empty table
    draws "no requests". Raises ValueError for a non-positive `bucket_s`.
    """
    from matplotlib.figure import Figure

    if bucket_s is not None and not bucket_s > 0:
        raise ValueError(f"bucket_s must be positive, got {bucket_s}")
    if len(requests) == 0:
        fig, ax = _figure()
        _no_requests(fig, ax, requests, title)
        return _save(fig, path)
    _check_columns(requests, ("arrival_s", "success", "latency_ms"), "timeline_png")
    arrival = requests["arrival_s"].to_numpy(dtype=float)
    success = requests["success"].to_numpy(dtype=float)
    latency = requests["latency_ms"].to_numpy(dtype=float)

    span = max(float(np.nanmax(arrival)) if not np.isnan(arrival).all() else 0.0, 0.0)
    size = bucket_s if bucket_s is not None else _bucket_size(span)
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
        _Window(start, start + duration, label, _FAULT_COLOURS[i % len(_FAULT_COLOURS)], False)
        for i, (start, duration, label) in enumerate(faults)
    ] + [_Window(start, start + duration, "spike", _SPIKE, True) for start, duration in spikes]
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
    return _save(fig, path)


def cost_png(
    requests: pd.DataFrame,
    path: str | Path,
    *,
    title: str = "Total cost by route and serving tier",
) -> Path:
    """Draw total cost (USD) per route as bars stacked by serving tier; write a PNG; its path.

    Reads `route`, `served_by` and `cost_usd` (NaN costs count as 0). Routes go from the
    dearest to the cheapest, each labelled with its request count; stacks go fast,
    balanced, premium, any other tier, then `human` and "" (not served); a tier that cost
    nothing anywhere is left out. Each bar carries its total and cost per request. An
    empty table draws "no requests".
    """
    fig, ax = _figure()
    if _no_requests(fig, ax, requests, title):
        return _save(fig, path)
    _check_columns(requests, ("route", "served_by", "cost_usd"), "cost_png")
    frame = _frame(
        route=_text(requests["route"]),
        tier=_text(requests["served_by"]),
        cost=np.nan_to_num(requests["cost_usd"].to_numpy(dtype=float)),
    )
    table = frame.pivot_table(
        index="route", columns="tier", values="cost", aggfunc="sum", fill_value=0.0
    )
    counts = frame["route"].value_counts()
    totals = table.sum(axis=1)
    routes = sorted(table.index, key=lambda r: (-float(totals[r]), str(r)))
    tiers = [t for t in _tier_order(table.columns) if float(table[t].sum()) > 0]
    x = np.arange(len(routes))
    base = np.zeros(len(routes))
    for tier in tiers:
        values = table.loc[routes, tier].to_numpy(dtype=float)
        ax.bar(
            x,
            values,
            bottom=base,
            width=0.6,
            color=_tier_colour(tier),
            edgecolor="white",
            linewidth=0.6,
            label=_tier_label(tier),
            zorder=3,
        )
        base += values
    for i, name in enumerate(routes):
        total = float(totals[name])
        per = total / int(counts[name])
        ax.annotate(
            f"{_usd(total)}\n{_usd(per)}/req",
            xy=(float(x[i]), total),
            xytext=(0, 3),
            textcoords="offset points",
            ha="center",
            va="bottom",
            fontsize="small",
        )
    ax.set_xticks(x, [f"{r}\n{int(counts[r]):,} req" for r in routes])
    high = float(totals.max())
    ax.set_ylim(0, high * 1.18 if high > 0 else 1.0)
    half = max(len(routes), _MIN_SLOTS / 2) / 2  # few bars stay bar-sized, centred
    ax.set_xlim((len(routes) - 1) / 2 - half - 0.1, (len(routes) - 1) / 2 + half + 0.1)
    ax.set_title(title)
    ax.set_xlabel("route")
    ax.set_ylabel("total cost (USD)")
    _grid(ax, axis="y")
    if tiers:
        ax.legend(title="served by", loc="upper right", fontsize="small", framealpha=0.95)
    else:
        _message(ax, "no request cost anything")
    return _save(fig, path)


def paths_png(
    requests: pd.DataFrame,
    path: str | Path,
    *,
    top: int = 12,
    title: str = "Tier paths: which tiers each request tried",
) -> Path:
    """Draw request counts per `tiers_tried` path as horizontal bars; write a PNG; its path.

    The `top` most common paths come first (ties by name), the rest share one "other"
    bar; "" (no tier tried) is shown as "(none: blocked at input)". Each bar is coloured
    by the last tier on its path and annotated with its count and success rate (`success`
    as stored: blocked counts as success). An empty table draws "no requests". Raises
    ValueError for `top` < 1.
    """
    if top < 1:
        raise ValueError(f"top must be at least 1, got {top}")
    from matplotlib.ticker import MaxNLocator

    fig, ax = _figure()
    if _no_requests(fig, ax, requests, title):
        return _save(fig, path)
    _check_columns(requests, ("tiers_tried", "success"), "paths_png")
    frame = _frame(
        path=_text(requests["tiers_tried"]),
        success=requests["success"].to_numpy(dtype=float),
    )
    stats = frame.groupby("path")["success"].agg(["size", "sum"]).reset_index()
    stats = stats.sort_values(["size", "path"], ascending=[False, True], kind="stable")
    rows = [
        (_path_label(str(p)), int(n), float(s), _tier_colour(str(p).split(">")[-1]))
        for p, n, s in stats.head(top).itertuples(index=False)
    ]
    rest = stats.iloc[top:]
    if len(rest):
        rows.append(
            (
                f"other ({len(rest)} paths)",
                int(rest["size"].sum()),
                float(rest["sum"].sum()),
                _OTHER,
            )
        )
    y = np.arange(len(rows))
    counts = np.array([n for _, n, _, _ in rows], dtype=float)
    ax.barh(y, counts, height=0.7, color=[c for *_, c in rows], zorder=3)
    for i, (_, n, good, _) in enumerate(rows):
        ax.annotate(
            f"{n:,}  ({good / n:.1%} success)",
            xy=(float(counts[i]), float(y[i])),
            xytext=(4, 0),
            textcoords="offset points",
            ha="left",
            va="center",
            fontsize="small",
        )
    ax.set_yticks(y, [label for label, *_ in rows])
    ax.set_ylim(max(len(rows), _MIN_SLOTS) - 0.5, -0.5)  # top down; few bars stay bar-sized
    ax.set_xlim(0, float(counts.max()) * 1.3)
    ax.set_title(title)
    ax.set_xlabel("requests")
    ax.set_ylabel("tiers tried, in order")
    _comma_ticks(ax, "x")
    ax.xaxis.set_major_locator(
        MaxNLocator(integer=True, steps=[1, 2, 2.5, 5, 10])
    )  # counts: no 0.2 of a request
    _grid(ax, axis="x")
    last = {c for *_, c in rows}
    handles = [
        _patch(_tier_colour(t), _tier_label(t)) for t in _TIER_ORDER if _tier_colour(t) in last
    ]
    if _OTHER in last:
        handles.append(_patch(_OTHER, "other paths"))
    ax.legend(handles=handles, title="last tier tried", loc="best", fontsize="small")
    return _save(fig, path)


# --- helpers for the request-level figures ----------------------------------------------

_TIER_ORDER = ("fast", "balanced", "premium", "human", "")
_TIER_COLOURS = {
    "fast": "#2ca02c",
    "balanced": "#1f77b4",
    "premium": "#9467bd",
    "human": "#8c8c8c",
    "": "#c7c7c7",
}
_OTHER_TIER = "#bcbd22"
_OTHER = "#dddddd"
_NO_PATH = "(none: blocked at input)"
_SPIKE = "#555555"
_FAULT_COLOURS = ("#ff7f0e", "#d62728", "#8c564b", "#e377c2", "#17becf", "#bcbd22")
# Round bucket sizes in seconds; neighbours are at most 2x apart, so one gives 40-80 buckets.
_BUCKETS = tuple(
    sorted({m * 10.0**k for m in (1.0, 2.0, 2.5, 5.0) for k in range(-2, 7)} | {15.0, 30.0, 60.0})
)
_MAX_BUCKETS = 80
_CDF_POINTS = 4000
_MIN_SLOTS = 6  # room for this many bars in a bar chart, however few are drawn
_ROUTE_PALETTE = (0, 1, 2, 4, 5, 6, 8, 9)  # tab10 without red (p99) and grey (the text)


def _frame(**columns: object) -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame(columns)


def _figure() -> tuple[Figure, Axes]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=_SIZE_IN, dpi=_DPI, layout="constrained")
    return fig, fig.add_subplot()


def _save(fig: Figure, path: str | Path) -> Path:
    out = Path(path)
    fig.savefig(out, format="png", dpi=_DPI)
    return out


def _no_requests(fig: Figure, ax: Axes, requests: pd.DataFrame, title: str) -> bool:
    """Turn `ax` into a "no requests" panel when `requests` is empty; whether it was."""
    if len(requests):
        return False
    _blank(ax, title, "no requests")
    return True


def _blank(ax: Axes, title: str, text: str) -> None:
    """A titled panel with only `text` in it: no ticks, nothing that reads as data."""
    _message(ax, text)
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])


def _message(ax: Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", color="#555555")


def _tier_order(tiers: Iterable[object]) -> list[str]:
    """Known tiers in escalation order, then unknown ones by name, then human and ""."""
    names = {str(t) for t in tiers}
    rank = {t: i for i, t in enumerate(_TIER_ORDER)}
    middle = len(_TIER_ORDER) - 2  # after premium, before human
    return sorted(names, key=lambda t: (rank.get(t, middle - 0.5), t))


def _tier_colour(tier: str) -> str:
    return _TIER_COLOURS.get(tier, _OTHER_TIER)


def _tier_label(tier: str) -> str:
    return tier if tier else "none (blocked)"


def _path_label(path: str) -> str:
    return " > ".join(path.split(">")) if path else _NO_PATH


def _check_columns(requests: pd.DataFrame, columns: Sequence[str], who: str) -> None:
    missing = [c for c in columns if c not in requests.columns]
    if missing:
        raise ValueError(f"{who}: requests lacks column(s) {', '.join(missing)}")


def _text(column: pd.Series[Any]) -> npt.NDArray[np.object_]:
    """A text column as plain `str` objects, missing values as ""."""
    return np.array(["" if v is None or v != v else str(v) for v in column], dtype=object)


def _by_count(values: npt.NDArray[np.object_]) -> list[str]:
    names, counts = np.unique(values.astype(str), return_counts=True)
    return [str(n) for _, n in sorted(zip(-counts, names, strict=True))]


def _route_colours(routes: Sequence[str]) -> dict[str, str]:
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    palette = colormaps["tab10"]
    usable = [palette(i) for i in _ROUTE_PALETTE]
    return {r: to_hex(usable[i % len(usable)]) for i, r in enumerate(sorted(routes))}


def _route_label(name: str, values: npt.NDArray[np.float64]) -> str:
    label = f"{name} (n={values.size:,})"
    return label if (values > 0).any() else f"{label}, all at 0 ms"


def _ecdf(
    ax: Axes, values: npt.NDArray[np.float64], *, colour: str, label: str, width: float
) -> None:
    """A step line of the fraction at or below each positive value (thinned when long)."""
    ordered = np.sort(values)
    fraction = np.arange(1, ordered.size + 1) / ordered.size
    first = int(np.searchsorted(ordered, 0.0, side="right"))
    x, y = ordered[first:], fraction[first:]
    if x.size > _CDF_POINTS:
        keep = np.unique(np.linspace(0, x.size - 1, _CDF_POINTS).astype(int))
        x, y = x[keep], y[keep]
    if x.size:  # the jump from the share at 0 ms up to the first positive value
        x, y = np.r_[x[0], x], np.r_[first / ordered.size, y]
    ax.step(x, y, where="post", color=colour, linewidth=width, label=label, zorder=3)


def _plain_log_ticks(ax: Axes) -> None:
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: _number(v)))
    ax.xaxis.set_minor_formatter(NullFormatter())


def _comma_ticks(ax: Axes, axis: str) -> None:
    from matplotlib.ticker import FuncFormatter

    target = ax.yaxis if axis == "y" else ax.xaxis
    target.set_major_formatter(FuncFormatter(lambda v, _: _number(v)))


def _number(value: float) -> str:
    """1,000 and 0.5 rather than 1000.0 and 5e-01."""
    return f"{value:,.0f}" if abs(value) >= 10 or value == int(value) else f"{value:.3g}"


def _ms(value: float) -> str:
    return f"{value:,.0f} ms"


def _usd(value: float) -> str:
    if value == 0:
        return "$0"
    return f"${value:,.2f}" if abs(value) >= 1 else f"${value:.3g}"


def _grid(ax: Axes, axis: str = "both") -> None:
    ax.grid(True, axis=axis, color="#e5e5e5", linewidth=0.8, zorder=0)  # type: ignore[arg-type]
    ax.set_axisbelow(True)


def _bucket_size(span: float) -> float:
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


def _patch(
    colour: str, label: str, *, hatch: str | None = None, edge: str = "none", alpha: float = 1.0
) -> Artist:
    from matplotlib.patches import Patch

    return Patch(facecolor=colour, edgecolor=edge, hatch=hatch, alpha=alpha, label=label)


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
