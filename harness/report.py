"""Human-facing views of results: the per-route terminal table.

Only this module and `cli` import rich.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from rich.table import Table

if TYPE_CHECKING:
    import pandas as pd

    from harness.thresholds import Outcome


def _ms(v: float) -> str:
    return "-" if math.isnan(v) else f"{v:,.0f}"


def _pct(v: float) -> str:
    return "-" if math.isnan(v) else f"{100 * v:.1f}%"


def _usd(v: float) -> str:
    return "-" if math.isnan(v) else f"${v:.5f}"


def route_table(summary: pd.DataFrame, title: str = "Per route") -> Table:
    """The summary as a rich table: one row per route, `all` last and bold."""
    table = Table(title=title, title_justify="left", header_style="bold")
    for name, justify in [
        ("route", "left"),
        ("requests", "right"),
        ("success", "right"),
        ("95% CI", "right"),
        ("p50 ms", "right"),
        ("p95 ms", "right"),
        ("p99 ms", "right"),
        ("cost/req", "right"),
        ("escalate", "right"),
        ("fallback", "right"),
        ("handoff", "right"),
        ("violations", "right"),
        ("prevented", "right"),
    ]:
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for row in summary.to_dict("records"):
        lo, hi = float(row["success_ci_low"]), float(row["success_ci_high"])
        table.add_row(
            str(row["route"]),
            f"{int(row['requests']):,}",
            _pct(float(row["success_rate"])),
            "-" if math.isnan(lo) else f"{100 * lo:.1f}-{100 * hi:.1f}",
            _ms(float(row["p50_latency_ms"])),
            _ms(float(row["p95_latency_ms"])),
            _ms(float(row["p99_latency_ms"])),
            _usd(float(row["cost_per_request_usd"])),
            _pct(float(row["escalation_rate"])),
            _pct(float(row["fallback_rate"])),
            _pct(float(row["handoff_rate"])),
            str(int(row["violations"])),
            str(int(row["prevented"])),
            style="bold" if row["route"] == "all" else None,
        )
    return table


def violations_table(summary: pd.DataFrame) -> Table | None:
    """Violations let through and prevented, by kind and route; None when there are none."""
    from harness.spec import VIOLATION_KINDS

    kinds = [
        k
        for k in VIOLATION_KINDS
        if summary[f"violations_{k}"].sum() or summary[f"prevented_{k}"].sum()
    ]
    if not kinds:
        return None
    table = Table(
        title="Governance: violations let through / prevented, by kind",
        title_justify="left",
        header_style="bold",
    )
    table.add_column("route")
    for k in kinds:
        table.add_column(k, justify="right")
    for row in summary.to_dict("records"):
        cells = [f"{int(row[f'violations_{k}'])} / {int(row[f'prevented_{k}'])}" for k in kinds]
        table.add_row(str(row["route"]), *cells, style="bold" if row["route"] == "all" else None)
    return table


def thresholds_block(outcomes: list[Outcome]) -> str:
    """k6's THRESHOLDS block: per metric, a mark, the expression and the observed value."""
    lines = ["[bold]THRESHOLDS[/bold]"]
    key = None
    for o in outcomes:
        t = o.threshold
        if t.key != key:
            key = t.key
            lines.append(f"  {key}")
        mark = "[green]✓[/green]" if o.passed else "[red]✗[/red]"
        seen = "no matching requests" if o.matched == 0 else f"{t.label()}={o.value:,.6g}"
        lines.append(f"  {mark} '{t.expression}' {seen}")
    return "\n".join(lines)
