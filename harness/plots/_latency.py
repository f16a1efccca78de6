"""The latency figure: the empirical CDF of latency per route and for all requests, on a
log axis, with the run's p95 and p99 marked.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from harness.plots._common import (
    _RECOMMENDED,
    _blank,
    _check_columns,
    _figure,
    _grid,
    _message,
    _ms,
    _no_requests,
    _number,
    _save,
    _text,
)

if TYPE_CHECKING:
    import numpy.typing as npt
    import pandas as pd
    from matplotlib.axes import Axes

_CDF_POINTS = 4000
_ROUTE_PALETTE = (0, 1, 2, 4, 5, 6, 8, 9)  # tab10 without red (p99) and grey (the text)


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
