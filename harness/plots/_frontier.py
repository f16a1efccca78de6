"""The sweep's figure: settings as cost per request vs success rate; confirmed settings
with their across-replication intervals and the Pareto frontier (`pareto_mask`) through
them alone; screened settings apart, as another marker; and labels for the recommended and
current settings placed where they cover the fewest points.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from harness.plots._common import _CURRENT, _DPI, _OBJECTIVE, _RECOMMENDED, _SIZE_IN

if TYPE_CHECKING:
    import numpy.typing as npt
    import pandas as pd
    from matplotlib.artist import Artist
    from matplotlib.axes import Axes
    from matplotlib.colors import Colormap, Normalize
    from matplotlib.figure import Figure
    from matplotlib.text import Annotation
    from matplotlib.transforms import Bbox

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
INTERVAL_COLUMNS = ("success_low", "success_high", "cost_low", "cost_high")
"""Optional: 95% intervals of a confirmed setting's success rate and cost (error bars)."""
CONFIRMED_FRONTIER = "confirmed frontier"
SCREENED = "screened (not confirmed)"
INTERVAL_LABEL = "95% CI over replications"

_STAGES = ("screen", "confirm")
_NO_LATENCY = "#bdbdbd"
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
    """Draw `frontier_figure` and write it as a PNG; its path. The parent folder must exist."""
    fig = frontier_figure(points, recommended=recommended, current=current, title=title,
                          constraint_success=constraint_success)  # fmt: skip
    out = Path(path)
    fig.savefig(out, format="png", dpi=_DPI)
    return out


def frontier_figure(
    points: pd.DataFrame,
    *,
    recommended: int | None,
    current: int | None,
    title: str = "Sweep: cost vs success",
    constraint_success: float | None = None,
) -> Figure:
    """A sweep's settings as cost per request vs success rate, as a matplotlib Figure.

    `points` holds one row per setting (route `all`) with the `FRONTIER_COLUMNS`, and
    optionally `INTERVAL_COLUMNS` for confirmed settings. Colour shows p95 latency (grey
    when unknown; no colorbar when none is known). Confirmed settings are large circles
    with a black edge and, where intervals are given, error bars labelled
    `INTERVAL_LABEL`; screened settings are small translucent triangles labelled
    `SCREENED`, never joined to the frontier; settings that miss an objective are drawn
    as crosses. The Pareto frontier (`pareto_mask`) runs through confirmed settings only
    (all settings when none is confirmed): a step line labelled `CONFIRMED_FRONTIER`, the
    best success reachable at each cost. `recommended` and `current` are setting ids (a
    star and a diamond, each annotated with its label, once when they are the same);
    `constraint_success` (0..1) adds a dashed objective line. The figure is 9x6 in at
    120 dpi (1080x720 px). Each annotation goes where its text covers the fewest points
    without leaving the axes or overlapping the other. Raises ValueError when `points`
    lacks a column, repeats a setting, names an unknown stage, or does not contain
    `recommended` or `current`.
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
    has_intervals = _error_bars(ax, points, confirmed, cost, percent)

    basis = confirmed if confirmed.any() else np.ones_like(confirmed)
    on_front = np.zeros_like(confirmed)
    on_front[basis] = pareto_mask(cost[basis], success[basis])
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
            label=CONFIRMED_FRONTIER if confirmed.any() else "Pareto frontier",
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
            frontier_label=CONFIRMED_FRONTIER if confirmed.any() else "Pareto frontier",
            has_intervals=has_intervals,
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
    return fig


def _error_bars(
    ax: Axes,
    points: pd.DataFrame,
    confirmed: npt.NDArray[np.bool_],
    cost: npt.NDArray[np.float64],
    percent: npt.NDArray[np.float64],
) -> bool:
    """95% intervals of the confirmed settings as error bars; whether any were drawn."""
    if not all(c in points.columns for c in INTERVAL_COLUMNS) or not confirmed.any():
        return False
    lo_s, hi_s, lo_c, hi_c = (points[c].to_numpy(dtype=float)[confirmed] for c in INTERVAL_COLUMNS)
    x, y = cost[confirmed], percent[confirmed]
    known = ~(np.isnan(lo_s) | np.isnan(hi_s) | np.isnan(lo_c) | np.isnan(hi_c))
    if not known.any():
        return False
    yerr = np.vstack([y - 100 * lo_s, 100 * hi_s - y])[:, known]
    xerr = np.vstack([x - lo_c, hi_c - x])[:, known]
    ax.errorbar(x[known], y[known], yerr=np.maximum(yerr, 0), xerr=np.maximum(xerr, 0),
                fmt="none", ecolor="#444444", elinewidth=1.0, capsize=3, zorder=3.5,
                label=INTERVAL_LABEL)  # fmt: skip
    return True


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
    if confirmed:
        ax.scatter(
            cost,
            success,
            s=80 if feasible else 95,
            marker="o" if feasible else "X",
            c=colours,
            edgecolors="black",
            linewidths=1.0,
            zorder=4,
            label="confirmed" if feasible else "confirmed, misses an objective",
        )
    else:
        ax.scatter(
            cost,
            success,
            s=22 if feasible else 24,
            marker="^" if feasible else "x",
            c=colours,
            alpha=0.5,
            linewidths=0 if feasible else 1.0,
            zorder=2,
            label=SCREENED if feasible else f"{SCREENED}, misses an objective",
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
    frontier_label: str = "Pareto frontier",
    has_intervals: bool = False,
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
            Line2D([], [], ls=none, marker="^", ms=6, color=grey, alpha=0.6, mew=0, label=SCREENED)
        )
    if has_confirm:
        handles.append(
            Line2D([], [], ls=none, marker="o", ms=9, color=grey, mec="black", label="confirmed")
        )
    if has_intervals:
        handles.append(
            Line2D([], [], color="#444444", lw=1.0, marker="|", ms=8, label=INTERVAL_LABEL)
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
        handles.append(Line2D([], [], color="black", lw=1.2, label=frontier_label))
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
