"""What several figures share: the figure size, the colours that mean the same thing in
more than one figure, and the helpers that make, label, format and save a figure.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import numpy.typing as npt
    import pandas as pd
    from matplotlib.artist import Artist
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

_SIZE_IN = (9.0, 6.0)
_DPI = 120
_RECOMMENDED = "#d62728"
_CURRENT = "#1f3a93"
_OBJECTIVE = "#555555"


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


def _check_columns(requests: pd.DataFrame, columns: Sequence[str], who: str) -> None:
    missing = [c for c in columns if c not in requests.columns]
    if missing:
        raise ValueError(f"{who}: requests lacks column(s) {', '.join(missing)}")


def _text(column: pd.Series[Any]) -> npt.NDArray[np.object_]:
    """A text column as plain `str` objects, missing values as ""."""
    return np.array(["" if v is None or v != v else str(v) for v in column], dtype=object)


def _comma_ticks(ax: Axes, axis: str) -> None:
    from matplotlib.ticker import FuncFormatter

    target = ax.yaxis if axis == "y" else ax.xaxis
    target.set_major_formatter(FuncFormatter(lambda v, _: _number(v)))


def _number(value: float) -> str:
    """1,000 and 0.5 rather than 1000.0 and 5e-01."""
    return f"{value:,.0f}" if abs(value) >= 10 or value == int(value) else f"{value:.3g}"


def _ms(value: float) -> str:
    return f"{value:,.0f} ms"


def _grid(ax: Axes, axis: str = "both") -> None:
    ax.grid(True, axis=axis, color="#e5e5e5", linewidth=0.8, zorder=0)  # type: ignore[arg-type]
    ax.set_axisbelow(True)


def _patch(
    colour: str, label: str, *, hatch: str | None = None, edge: str = "none", alpha: float = 1.0
) -> Artist:
    from matplotlib.patches import Patch

    return Patch(facecolor=colour, edgecolor=edge, hatch=hatch, alpha=alpha, label=label)
