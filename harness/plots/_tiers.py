"""The serving-tier figures: total cost per route stacked by tier (`cost_png`) and the
paths of tiers requests tried (`paths_png`), with the tier order, colours and labels
both use.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from harness.plots._common import (
    _check_columns,
    _comma_ticks,
    _figure,
    _grid,
    _message,
    _no_requests,
    _patch,
    _save,
    _text,
)

if TYPE_CHECKING:
    import pandas as pd

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
_MIN_SLOTS = 6  # room for this many bars in a bar chart, however few are drawn


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


def _frame(**columns: object) -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame(columns)


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


def _usd(value: float) -> str:
    if value == 0:
        return "$0"
    return f"${value:,.2f}" if abs(value) >= 1 else f"${value:.3g}"
