"""Human-facing views of results: terminal tables, report.md and report.html.

Only this module and `cli` import rich. Terminal tables fit 100 columns by default (short
headers, compact units from `harness.units`, the less-read columns left out); `wide=True`
gives every column at full precision, for a wider terminal or a file.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping
from typing import TYPE_CHECKING, Any

from rich import box
from rich.table import Table

from harness.intervals import WILSON
from harness.phases import manifest_windows
from harness.units import duration, number, usd

if TYPE_CHECKING:
    import pandas as pd

    from harness.compare import Comparison, Result
    from harness.phases import PhaseReport
    from harness.thresholds import Outcome

WIDTH = 100
"""Columns the default terminal tables fit in."""


def _ms(v: float) -> str:
    return "-" if math.isnan(v) else f"{v:,.0f}"


def _pct(v: float) -> str:
    return "-" if math.isnan(v) else f"{100 * v:.1f}%"


def _usd(v: float) -> str:
    return "-" if math.isnan(v) else f"${v:.5f}"


def _latency(v: float, wide: bool) -> str:
    """Full milliseconds in a wide table, else the compact unit (`8.5 s`, `26 min`)."""
    return _ms(v) if wide else duration(v)


def _cost(v: float, wide: bool) -> str:
    return _usd(v) if wide else usd(v)


def _table(title: str, caption: str | None = None) -> Table:
    """A terminal table in the house style: a bold header over a rule, no outer frame, one
    space between columns; a title short enough never to wrap."""
    return Table(title=title, title_justify="left", header_style="bold", caption=caption,
                 caption_justify="left", box=box.SIMPLE_HEAD, show_edge=False,
                 collapse_padding=True, padding=(0, 1))  # fmt: skip


def _success_ci(row: Mapping[Hashable, Any]) -> str:
    """A summary row's success interval in percent, starred when it is the Wilson fallback."""
    lo, hi = float(row["success_ci_low"]), float(row["success_ci_high"])
    if math.isnan(lo):
        return "-"
    star = "*" if row.get("ci_method") == WILSON else ""
    return f"{100 * lo:.1f}-{100 * hi:.1f}{star}"


CI_CAPTION = "* Wilson: too few requests (or no variation) for batch means"


POOLED_CAPTION = (
    "† the same in every replication: Wilson on the pooled count,\n"
    "  requests divided by the route's design effect"
)


def _caption(summary: pd.DataFrame) -> str | None:
    """CI_CAPTION when a row of `summary` carries the Wilson fallback."""
    wilson_rows = "ci_method" in summary and bool((summary["ci_method"] == WILSON).any())
    return CI_CAPTION if wilson_rows else None


def route_table(summary: pd.DataFrame, title: str = "Per route", wide: bool = False) -> Table:
    """The summary as a rich table: one row per route, `all` last and bold.

    Default: route, requests, success with its 95% interval, p50/p95/p99, cost per request,
    hand-off share and violations let through; `wide` adds escalations, fallbacks and
    prevented violations, latencies in ms and costs to five decimals."""
    table = _table(title, _caption(summary))
    columns = [
        ("route", "left", True),
        ("requests", "right", True),
        ("success", "right", True),
        ("95% CI (batch means)" if wide else "95% CI", "right", True),
        ("p50 ms" if wide else "p50", "right", True),
        ("p95 ms" if wide else "p95", "right", True),
        ("p99 ms" if wide else "p99", "right", True),
        ("cost/req", "right", True),
        ("escalate", "right", wide),
        ("fallback", "right", wide),
        ("handoff", "right", True),
        ("violations", "right", True),
        ("prevented", "right", wide),
    ]
    shown = [i for i, (_, _, show) in enumerate(columns) if show]
    for i in shown:
        name, justify, _ = columns[i]
        table.add_column(name, justify=justify, overflow="fold")  # type: ignore[arg-type]
    for row in summary.to_dict("records"):
        cells = [
            str(row["route"]),
            f"{int(row['requests']):,}",
            _pct(float(row["success_rate"])),
            _success_ci(row),
            _latency(float(row["p50_latency_ms"]), wide),
            _latency(float(row["p95_latency_ms"]), wide),
            _latency(float(row["p99_latency_ms"]), wide),
            _cost(float(row["cost_per_request_usd"]), wide),
            _pct(float(row["escalation_rate"])),
            _pct(float(row["fallback_rate"])),
            _pct(float(row["handoff_rate"])),
            str(int(row["violations"])),
            str(int(row["prevented"])),
        ]
        table.add_row(*(cells[i] for i in shown),
                      style="bold" if row["route"] == "all" else None)  # fmt: skip
    return table


def phase_table(phases: pd.DataFrame, wide: bool = False) -> Table:
    """Per phase (harness.phases.phase_table): baseline first, then each window and spike.

    Default: requests, arrivals per second, success, p50/p95, cost per request, hand-offs,
    failed and timed-out calls; `wide` adds the window, the p95 of the requests the stack
    answered, wrong answers, escalations, breaker refusals and the mean queue wait."""
    table = _table("Per phase (by arrival)")
    columns = [
        ("phase", True), ("window", wide), ("requests", True), ("per s", True),
        ("success", True), ("p50", True), ("p95", True), ("p95 answered", wide),
        ("cost/req", True), ("handoff", True), ("wrong", wide), ("escalate", wide),
        ("errors", True), ("timeouts", True), ("refused", wide), ("queue", wide),
    ]  # fmt: skip
    shown = [i for i, (_, show) in enumerate(columns) if show]
    for i in shown:
        name = columns[i][0]
        table.add_column(name, justify="left" if name in ("phase", "window") else "right",
                         overflow="fold")  # fmt: skip
    for row in phases.to_dict("records"):
        cells = [
            str(row["phase"]), str(row["window"]), f"{int(row['requests']):,}",
            "-" if math.isnan(row["rate_per_s"]) else f"{row['rate_per_s']:.1f}",
            _pct(row["success_rate"]), duration(row["p50_latency_ms"]),
            duration(row["p95_latency_ms"]), duration(row["p95_answered_ms"]),
            _cost(row["cost_per_request_usd"], wide), _pct(row["handoff_rate"]),
            _pct(row["wrong_rate"]), _pct(row["escalation_rate"]), _count(row["errors"]),
            _count(row["timeouts"]), _count(row["rejected"]), duration(row["queue_ms"]),
        ]  # fmt: skip
        table.add_row(*(cells[i] for i in shown),
                      style="bold" if row["phase"] == "baseline" else None)  # fmt: skip
    return table


def _count(v: float) -> str:
    return "-" if math.isnan(v) else f"{int(v):,}"


def tenant_table(tenants: pd.DataFrame, wide: bool = False) -> Table:
    """Per tenant (metrics.tenant_summary): success, p95, cost and the share a limit refused."""
    table = _table("Per tenant")
    for name in ("tenant", "requests", "success", "p95 ms" if wide else "p95", "cost/req",
                 "total cost", "limited"):  # fmt: skip
        table.add_column(name, justify="left" if name == "tenant" else "right", overflow="fold")
    for row in tenants.to_dict("records"):
        total = float(row["total_cost_usd"])
        table.add_row(
            str(row["tenant"]) or "(none)",
            f"{int(row['requests']):,}",
            _pct(float(row["success_rate"])),
            _latency(float(row["p95_latency_ms"]), wide),
            _cost(float(row["cost_per_request_usd"]), wide),
            f"${total:,.4f}" if wide else usd(total),
            _pct(float(row["limited_rate"])),
        )
    return table


VIOLATION_HEADERS = {
    "pii_leak": "pii leak",
    "prohibited_action_executed": "prohibited",
    "unapproved_high_impact": "high impact",
    "invalid_tool_args_executed": "bad tool args",
    "injection_followed": "injection",
    "budget_overrun": "over budget",
}
"""Short column headers for the violation kinds (the full names with `wide`)."""


def violations_table(summary: pd.DataFrame, wide: bool = False) -> Table | None:
    """Violations let through and prevented, by kind and route; None when there are none."""
    from harness.spec import VIOLATION_KINDS

    kinds = [
        k
        for k in VIOLATION_KINDS
        if summary[f"violations_{k}"].sum() or summary[f"prevented_{k}"].sum()
    ]
    if not kinds:
        return None
    table = _table("Governance: violations let through / prevented, by kind")
    table.add_column("route", overflow="fold")
    for k in kinds:
        table.add_column(k if wide else VIOLATION_HEADERS.get(k, k), justify="right",
                         overflow="fold")  # fmt: skip
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
        seen = "no matching requests" if o.matched == 0 else f"{t.label()}={number(o.value)}"
        lines.append(f"  {mark} '{t.expression}' {seen}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- compare


def _value(metric: str, v: float) -> str:
    """A metric's value in its natural unit."""
    if math.isnan(v):
        return "-"
    if metric.endswith("_rate"):
        return f"{100 * v:.2f}%"
    if metric.endswith("_ms"):
        return f"{v:,.0f} ms"
    if metric.endswith("_usd"):
        return f"${v:.5f}"
    return f"{v:,.1f}"


def _delta(metric: str, r: Result) -> str:
    """A delta in points for rates, else in units and percent."""
    if math.isnan(r.delta):
        return "-"
    if metric.endswith("_rate"):
        return f"{100 * r.delta:+.2f}pp"
    rel = "" if math.isnan(r.relative_delta) else f" ({100 * r.relative_delta:+.1f}%)"
    return _signed(metric, r.delta) + rel


def _signed(metric: str, v: float) -> str:
    return ("+" if v >= 0 else "-") + _value(metric, abs(v))


def _ci(metric: str, r: Result) -> str:
    if math.isnan(r.ci_low):
        return "-"
    if metric.endswith("_rate"):
        return f"[{100 * r.ci_low:+.2f}, {100 * r.ci_high:+.2f}]pp"
    return f"[{_signed(metric, r.ci_low)}, {_signed(metric, r.ci_high)}]"


def _p(p: float) -> str:
    return "-" if math.isnan(p) else ("<0.0001" if p < 1e-4 else f"{p:.4f}")


_MARKS = {"regression": "❌", "improvement": "✅", "no change": "·", "insufficient data": "?"}


def _header(c: Comparison) -> str:
    how = "paired by request id (same suite and seed)" if c.paired else "unpaired samples"
    return (
        f"baseline `{c.baseline}` vs candidate `{c.candidate}`: {how}; "
        f"alpha {c.gates.alpha} with Holm correction across {len(c.results)} tests"
    )


def compare_lines(c: Comparison) -> list[str]:
    """What the terminal prints above the comparison table: each run, and how it compared."""
    how = "paired by request id (same suite and seed)" if c.paired else "unpaired samples"
    return [
        f"baseline:  {c.baseline}",
        f"candidate: {c.candidate}",
        f"{how}; alpha {c.gates.alpha}, Holm correction across {len(c.results)} tests",
    ]


def compare_verdict(c: Comparison, failed_thresholds: int = 0) -> str:
    """The last line of a terminal comparison: PASS, or FAIL and what failed, counted."""
    gates = sum(not g.passed for g in c.absolute)
    counts = ((len(c.regressions), "regression"), (gates, "absolute gate"),
              (failed_thresholds, "threshold"))  # fmt: skip
    parts = [f"{n} {word}{'s' if n != 1 else ''}" for n, word in counts if n]
    if parts:
        return "FAIL: " + ", ".join(parts)
    return f"PASS: no regression in {len(c.results)} tests; every gate and threshold holds"


_SHORT_METRICS = {
    "success_rate": "success",
    "violation_rate": "violations",
    "p50_latency_ms": "p50",
    "p95_latency_ms": "p95",
    "p99_latency_ms": "p99",
    "mean_latency_ms": "mean lat.",
    "cost_per_request_usd": "cost/req",
    "tokens_per_request": "tokens/req",
    "escalation_rate": "escalation",
    "handoff_rate": "handoff",
}
_VERDICTS = {"insufficient data": "too few"}


def _compact_value(metric: str, v: float, sign: bool = False) -> str:
    if math.isnan(v):
        return "-"
    plus = ("+" if v >= 0 else "-") if sign else ""
    if metric.endswith("_rate"):
        return f"{100 * v:{'+' if sign else ''}.2f}{' pp' if sign else '%'}"
    if metric.endswith("_ms"):
        return plus + duration(abs(v) if sign else v)
    if metric.endswith("_usd"):
        return plus + usd(abs(v) if sign else v)
    return number(v, sign=sign)


_UNITS = ((3_600_000.0, "h"), (60_000.0, "min"), (1000.0, "s"), (1.0, "ms"))


def _compact_ci(metric: str, r: Result) -> str:
    """An interval in one unit: `[-3.24, -1.41] pp`, `[-25, -3.8] min`, `[-$0.023, +$0.044]`."""
    if math.isnan(r.ci_low):
        return "-"
    lo, hi = r.ci_low, r.ci_high
    if metric.endswith("_rate"):
        return f"[{100 * lo:+.2f}, {100 * hi:+.2f}] pp"
    if metric.endswith("_ms"):
        size, unit = next(u for u in _UNITS if max(abs(lo), abs(hi)) >= u[0] or u[1] == "ms")
        ends = [number(v / size, sign=True, digits=2 if size > 1 else 4) for v in (lo, hi)]
        return f"[{ends[0]}, {ends[1]}] {unit}"
    return f"[{_compact_value(metric, lo, True)}, {_compact_value(metric, hi, True)}]"


def compare_table(c: Comparison, wide: bool = False) -> Table:
    """The comparison as a rich table, regressions first; a short title (the runs and the
    method are `compare_lines`). `wide` adds the relative change and the tolerance, with
    full metric names and values at full precision."""
    table = _table("Compare: per route and metric, regressions first")
    names = ["route", "metric", "baseline", "candidate", "delta", "95% CI", "p (Holm)",
             *(["tolerance"] if wide else []), "verdict"]  # fmt: skip
    for name in names:
        left = name in ("route", "metric", "verdict")
        table.add_column(name, justify="left" if left else "right", overflow="fold")
    order = {"regression": 0, "improvement": 1, "insufficient data": 2, "no change": 3}
    for r in sorted(c.results, key=lambda r: order[r.verdict]):
        style = {"regression": "red", "improvement": "green"}.get(r.verdict)
        if wide:
            cells = [r.route, r.metric, _value(r.metric, r.baseline),
                     _value(r.metric, r.candidate), _delta(r.metric, r), _ci(r.metric, r),
                     _p(r.p_adjusted), r.tolerance, r.verdict]  # fmt: skip
        else:
            cells = [r.route, _SHORT_METRICS.get(r.metric, r.metric),
                     _compact_value(r.metric, r.baseline), _compact_value(r.metric, r.candidate),
                     _compact_value(r.metric, r.delta, sign=True), _compact_ci(r.metric, r),
                     _p(r.p_adjusted), _VERDICTS.get(r.verdict, r.verdict)]  # fmt: skip
        table.add_row(*cells, style=style)
    return table


def compare_markdown(c: Comparison, thresholds: list[dict[str, Any]] | None = None) -> str:
    """The comparison as GitHub-flavoured Markdown (for $GITHUB_STEP_SUMMARY and PR comments)."""
    verdict = "❌ **fail**" if c.failed else "✅ **pass**"
    lines = [f"## evalx compare: {verdict}", "", _header(c) + ".", ""]
    lines += [f"> ⚠️ {w}" for w in c.warnings] + ([""] if c.warnings else [])
    regressions = c.regressions
    if regressions:
        lines.append(f"**{len(regressions)} regression(s):** " + ", ".join(
            f"`{r.metric}` on `{r.route}` ({_delta(r.metric, r)})" for r in regressions
        ))  # fmt: skip
        lines.append("")
    lines += [
        "| route | metric | baseline | candidate | delta | CI | p (Holm) | tolerance | verdict |",
        "|---|---|--:|--:|--:|--:|--:|--:|---|",
    ]
    lines.insert(-2, _tests_line(c) + "\n")
    for r in c.results:
        lines.append(
            f"| {r.route} | {r.metric} | {_value(r.metric, r.baseline)} | "
            f"{_value(r.metric, r.candidate)} | {_delta(r.metric, r)} | {_ci(r.metric, r)} | "
            f"{_p(r.p_adjusted)} | {r.tolerance} | {_MARKS[r.verdict]} {r.verdict} |"
        )
    if c.absolute:
        lines += ["", "| absolute gate | baseline | candidate | limit | result |",
                  "|---|--:|--:|--:|---|"]  # fmt: skip
        for g in c.absolute:
            mark = "✅ pass" if g.passed else f"❌ {g.message}"
            lines.append(f"| {g.name} | {g.baseline:g} | {g.candidate:g} | {g.limit:g} | {mark} |")
    if thresholds:
        lines += ["", "| threshold (candidate) | value | result |", "|---|--:|---|"]
        for t in thresholds:
            value = "no data" if t["value"] is None else number(t["value"])
            mark = "✅" if t["passed"] else "❌"
            lines.append(f"| `{t['key']}` `{t['expression']}` | {value} | {mark} |")
    return "\n".join(lines) + "\n"


def _tests_line(c: Comparison) -> str:
    """Which tests the comparison used, with their block lengths, in words."""
    from harness.compare import TESTS

    used: dict[str, set[int]] = {}
    for r in c.results:
        if r.verdict != "insufficient data":
            used.setdefault(r.test, set()).add(r.block)
    parts = []
    for test, blocks in used.items():
        lo, hi = min(blocks), max(blocks)
        unit = "replications per side" if test == "welch-replications" else "requests per block"
        size = f"; {lo}{'-' + str(hi) if hi > lo else ''} {unit}" if hi > 1 else ""
        parts.append(f"`{test}` ({TESTS.get(test, test)}{size})")
    return "Tests: " + "; ".join(parts) + "." if parts else "Tests: none had enough data."


def compare_junit(c: Comparison, thresholds: list[dict[str, Any]] | None = None) -> str:
    """JUnit XML: one testcase per gate; a regression is a failure, unusable data an error."""
    from xml.etree import ElementTree as ET

    suite = ET.Element("testsuite", name="evalx compare")
    failures = errors = skipped = 0
    for r in c.results:
        case = ET.SubElement(suite, "testcase", classname=f"evalx.{r.route}", name=r.metric)
        detail = (
            f"{r.metric} on {r.route}: baseline {_value(r.metric, r.baseline)}, candidate "
            f"{_value(r.metric, r.candidate)}, delta {_delta(r.metric, r)}, CI {_ci(r.metric, r)}, "
            f"p(Holm) {_p(r.p_adjusted)}, tolerance {r.tolerance}, test {r.test}"
            + (f" (block {r.block})" if r.block > 1 else "")
        )
        if r.verdict == "regression":
            failures += 1
            ET.SubElement(case, "failure", message=f"regression: {detail}", type="regression")
        elif r.verdict == "insufficient data":
            if math.isnan(r.baseline) and math.isnan(r.candidate):
                errors += 1
                ET.SubElement(case, "error", message=f"no data: {detail}", type="bad-data")
            else:
                skipped += 1
                ET.SubElement(case, "skipped", message=f"insufficient data: {detail}")
        ET.SubElement(case, "system-out").text = detail
    for g in c.absolute:
        case = ET.SubElement(suite, "testcase", classname="evalx.absolute", name=g.name)
        if not g.passed:
            failures += 1
            ET.SubElement(case, "failure", message=g.message, type="absolute-gate")
    for t in thresholds or []:
        name = f"{t['key']} {t['expression']}"
        case = ET.SubElement(suite, "testcase", classname="evalx.thresholds", name=name)
        if not t["passed"]:
            failures += 1
            seen = "no matching requests" if t["value"] is None else number(t["value"])
            ET.SubElement(case, "failure", message=f"threshold failed: {seen}", type="threshold")
    suite.set("tests", str(len(suite)))
    suite.set("failures", str(failures))
    suite.set("errors", str(errors))
    suite.set("skipped", str(skipped))
    ET.indent(suite)
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(suite, encoding="unicode") + "\n"
    )


def compare_json(c: Comparison, thresholds: list[dict[str, Any]] | None = None) -> str:
    """The comparison as JSON (NaN as null)."""
    import json
    from dataclasses import asdict

    def clean(v: object) -> object:
        if isinstance(v, float) and math.isnan(v):
            return None
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [clean(x) for x in v]
        return v

    body = {
        "passed": not c.failed and all(t["passed"] for t in thresholds or []),
        "baseline": c.baseline,
        "candidate": c.candidate,
        "paired": c.paired,
        "alpha": c.gates.alpha,
        "warnings": list(c.warnings),
        "results": [asdict(r) for r in c.results],
        "absolute": [asdict(g) for g in c.absolute],
        "thresholds": thresholds or [],
    }
    return json.dumps(clean(body), indent=2) + "\n"


# --------------------------------------------------------------------------- sweep


SWEEP_LEGEND = "★ recommended   ◆ the suite's current setting"
"""The legend of the marks in the sweep's tables."""


def sweep_table(frame: pd.DataFrame, params: list[str], objective: str, top: int = 10) -> Table:
    """The best settings on route `all`: confirmed first, then by feasibility and objective."""
    sense, metric = objective.split()
    rows = frame[frame["route"] == "all"].copy()
    rows["_stage"] = (rows["stage"] != "confirm").astype(int)
    rows["_key"] = rows[metric] if sense == "min" else -rows[metric]
    rows = rows.sort_values(["_stage", "feasible", "_key"], ascending=[True, False, True])
    table = Table(title=f"Top settings ({objective}; route all)", title_justify="left",
                  header_style="bold", caption=SWEEP_LEGEND, caption_justify="left")  # fmt: skip
    for name in ["", "stage", *(p.rsplit(".", 1)[-1] for p in params), "success", "p95 ms",
                 "p99 ms", "cost/req", "feasible"]:  # fmt: skip
        table.add_column(name, justify="left" if name in ("", "stage") else "right")
    for row in rows.head(top).to_dict("records"):
        mark = "★" if row["recommended"] and row["stage"] == "confirm" else (
            "◆" if row["current"] else "")  # fmt: skip
        table.add_row(
            mark, str(row["stage"]), *(f"{row[p]:g}" if isinstance(row[p], float) else str(row[p])
                                       for p in params),
            _pct(float(row["success_rate"])), _ms(float(row["p95_latency_ms"])),
            _ms(float(row["p99_latency_ms"])), _usd(float(row["cost_per_request_usd"])),
            "yes" if row["feasible"] else "no",
        )  # fmt: skip
    return table


def gaps_table(gaps: list[dict[str, Any]]) -> Table | None:
    """How far screening was from the full run, per confirmed setting and metric."""
    if not gaps:
        return None
    table = Table(title="Screen vs confirm (route all): what the first-order screen missed",
                  title_justify="left", header_style="bold")  # fmt: skip
    metrics = list(dict.fromkeys(g["metric"] for g in gaps))
    table.add_column("setting")
    for m in metrics:
        table.add_column(m.replace("_latency_ms", "").replace("_per_request", "/req"),
                         justify="right")  # fmt: skip
    by_setting: dict[str, dict[str, dict[str, Any]]] = {}
    for g in gaps:
        by_setting.setdefault(g["label"], {})[g["metric"]] = g
    for label, per in by_setting.items():
        cells = []
        for m in metrics:
            d = per[m]["difference"]
            if m.endswith("_rate"):
                cells.append(f"{100 * d:+.2f}pp")
            elif m.endswith("_usd"):
                cells.append(f"{d:+.5f}")
            else:
                cells.append(f"{d:+,.0f}")
        table.add_row(label, *cells)
    return table


# --------------------------------------------------------------------------- run reports

PLOTS = {
    "latency_cdf.png": "Latency CDF per route",
    "timeline.png": "Success and p95 latency over time, with fault windows and spikes",
    "cost.png": "Cost per route and tier",
    "paths.png": "Escalation and fallback paths",
}
"""The figures of a run report, by file name."""


fault_windows = manifest_windows
"""A run's (faults, spikes) as `harness.faults.TimeWindow`s, from its manifest."""


def plot_files(requests: pd.DataFrame, manifest: Mapping[str, Any]) -> dict[str, bytes]:
    """Every figure of a run report as PNG bytes."""
    import tempfile
    from pathlib import Path

    from harness.plots import cost_png, latency_cdf_png, paths_png, timeline_png

    faults, spikes = manifest_windows(manifest)
    out: dict[str, bytes] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        latency_cdf_png(requests, root / "latency_cdf.png")
        timeline_png(requests, root / "timeline.png", faults=faults, spikes=spikes)
        cost_png(requests, root / "cost.png")
        paths_png(requests, root / "paths.png")
        for name in PLOTS:
            out[name] = (root / name).read_bytes()
    return out


def run_phases(
    requests: pd.DataFrame, spans: pd.DataFrame | None, manifest: Mapping[str, Any]
) -> PhaseReport:
    """The run read by phase (harness.phases), its figure notes at the timeline's buckets."""
    from harness.phases import phase_report
    from harness.plots import bucket_size

    last = float(requests["arrival_s"].max()) if len(requests) else 0.0
    return phase_report(requests, spans, manifest, bucket_size(max(last, 0.0)))


def _md_phases(phases: PhaseReport) -> list[str]:
    """The per-phase table of report.md, then what moved in each phase and why."""
    lines = [
        "## By phase",
        "",
        "A request's phase is the fault windows and spikes active when it arrived. *p95 "
        "answered*: the p95 of the requests the stack answered itself (no hand-off); "
        "*errors*, *timeouts*, *refused*: model and tool calls that failed, timed out, or "
        "that an open circuit breaker refused.",
        "",
        "| phase | window | requests | per s | success | p50 | p95 | p95 answered | cost/req "
        "| handoff | wrong | errors | timeouts | refused |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for r in phases.table.to_dict("records"):
        name = f"**{r['phase']}**" if r["phase"] == "baseline" else str(r["phase"])
        rate = "-" if math.isnan(r["rate_per_s"]) else f"{r['rate_per_s']:.1f}"
        lines.append(
            f"| {name} | {r['window']} | {int(r['requests']):,} | {rate} | "
            f"{_pct(r['success_rate'])} | {duration(r['p50_latency_ms'])} | "
            f"{duration(r['p95_latency_ms'])} | {duration(r['p95_answered_ms'])} | "
            f"{usd(r['cost_per_request_usd'])} | {_pct(r['handoff_rate'])} | "
            f"{_pct(r['wrong_rate'])} | {_count(r['errors'])} | {_count(r['timeouts'])} | "
            f"{_count(r['rejected'])} |"
        )
    lines += ["", "### What moved, and why", ""]
    for sentences in phases.notes.values():
        head, *why = sentences
        lines.append(f"- {head}")
        lines += [f"  - {w}" for w in why]
    lines.append("")
    if phases.figures:
        lines += ["## Reading the figures", ""]
        lines += [f"- {note}" for note in phases.figures]
        lines.append("")
    return lines


def _md_table(summary: pd.DataFrame) -> list[str]:
    lines = [
        "| route | requests | success (95% CI, batch means; * Wilson) | p50 ms | p95 ms | p99 ms"
        " | cost/req | escalated | fallback | handoff | violations | prevented |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for r in summary.to_dict("records"):
        ci = f"{_pct(float(r['success_rate']))} ({_success_ci(r)})"
        name = f"**{r['route']}**" if r["route"] == "all" else str(r["route"])
        lines.append(
            f"| {name} | {int(r['requests']):,} | {ci} | {_ms(float(r['p50_latency_ms']))} | "
            f"{_ms(float(r['p95_latency_ms']))} | {_ms(float(r['p99_latency_ms']))} | "
            f"{_usd(float(r['cost_per_request_usd']))} | {_pct(float(r['escalation_rate']))} | "
            f"{_pct(float(r['fallback_rate']))} | {_pct(float(r['handoff_rate']))} | "
            f"{int(r['violations'])} | {int(r['prevented'])} |"
        )
    return lines


def run_markdown(
    summary: pd.DataFrame,
    manifest: Mapping[str, Any],
    images: Mapping[str, str],
    phases: PhaseReport | None = None,
) -> str:
    """report.md: what happened in a run, readable without code. `images`: name -> src;
    `phases` (`run_phases`) adds the per-phase table, what moved in each phase and why,
    and notes on reading the figures."""
    from harness.spec import VIOLATION_KINDS

    pol = manifest.get("policy", {})
    lines = [
        f"# evalx run: {manifest.get('suite', '?')}",
        "",
        f"Run `{manifest.get('run_id', '?')}`: seed {manifest.get('seed')}, "
        f"{int(manifest.get('requests', 0)):,} requests over "
        f"{float(manifest.get('simulated_seconds', 0)):,.0f} s of traffic "
        f"(computed in {float(manifest.get('wall_seconds', 0)):.2f} s); policy "
        f"{pol.get('name', '?')} {pol.get('version', '')}; evalx "
        f"{manifest.get('versions', {}).get('evalx', '?')}; suite hash "
        f"`{str(manifest.get('suite_hash', ''))[:12]}`.",
        "",
        "## Per route",
        "",
        *_md_table(summary),
        "",
        *(_md_phases(phases) if phases is not None else []),
    ]
    thresholds = manifest.get("thresholds", [])
    if thresholds:
        lines += ["## Thresholds", "", "| metric | objective | value | result |",
                  "|---|---|--:|---|"]  # fmt: skip
        for t in thresholds:
            value = "no data" if t["value"] is None else number(t["value"])
            mark = "✅ pass" if t["passed"] else "❌ fail"
            lines.append(f"| `{t['key']}` | `{t['expression']}` | {value} | {mark} |")
        lines.append("")
    kinds = [k for k in VIOLATION_KINDS
             if summary[f"violations_{k}"].sum() or summary[f"prevented_{k}"].sum()]  # fmt: skip
    if kinds:
        lines += ["## Governance: violations let through / prevented", "",
                  "| route | " + " | ".join(kinds) + " |",
                  "|---|" + "--:|" * len(kinds)]  # fmt: skip
        for r in summary.to_dict("records"):
            cells = [f"{int(r[f'violations_{k}'])} / {int(r[f'prevented_{k}'])}" for k in kinds]
            lines.append(f"| {r['route']} | " + " | ".join(cells) + " |")
        lines.append("")
    if images:
        lines += ["## Figures", ""]
        for name, src in images.items():
            lines += [f"### {PLOTS.get(name, name)}", "", f"![{PLOTS.get(name, name)}]({src})", ""]
    return "\n".join(lines)


_HTML_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:1280px;margin:2em auto;color:#222}"
    ".scroll{overflow-x:auto}table{border-collapse:collapse;margin:1em 0}"
    "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right;white-space:nowrap}"
    "th{background:#f4f4f4;cursor:pointer;user-select:none}th:hover{background:#e8e8e8}"
    "th[aria-sort=ascending]::after{content:' \\25B2'}"
    "th[aria-sort=descending]::after{content:' \\25BC'}"
    "td:first-child,th:first-child,td.l{text-align:left}img{max-width:100%}"
    ".pass{color:#1a7f37;font-weight:600}.fail{color:#cf222e;font-weight:600}"
    "li{margin:.2em 0}code{background:#f4f4f4;padding:0 3px}"
)

_SORT_JS = """
document.querySelectorAll('table.sortable').forEach(function (table) {
  var heads = table.tHead.rows[0].cells;
  Array.prototype.forEach.call(heads, function (th, col) {
    th.title = 'sort by ' + th.textContent;
    th.addEventListener('click', function () {
      var down = th.getAttribute('aria-sort') === 'ascending';
      Array.prototype.forEach.call(heads, function (h) { h.removeAttribute('aria-sort'); });
      th.setAttribute('aria-sort', down ? 'descending' : 'ascending');
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      rows.sort(function (a, b) {
        var x = key(a.cells[col].textContent), y = key(b.cells[col].textContent);
        var c = (typeof x === typeof y) ? (x < y ? -1 : x > y ? 1 : 0)
                                        : (typeof x === 'number' ? -1 : 1);
        return down ? -c : c;
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
});
function key(text) {
  var t = text.trim();
  var m = t.match(/^([-+]?)\\$?([0-9][0-9,]*\\.?[0-9]*)\\s*(ms|min|s|h|%|pp)?(?![a-z])/);
  if (!m) { return t.toLowerCase(); }
  var v = parseFloat(m[2].replace(/,/g, '')) * (m[1] === '-' ? -1 : 1);
  return v * ({ms: 0.001, s: 1, min: 60, h: 3600}[m[3]] || 1);
}
"""
"""Click a header to sort its table (again to reverse); a cell sorts by its leading number
(durations in any unit by seconds), else by its text."""


def _inline(text: str) -> str:
    """One line of report Markdown as HTML: escaped, with **bold**, `code` and a result
    cell's mark (✅ pass / ❌ fail) as a coloured word, never an emoji alone."""
    import html
    import re

    out = html.escape(text)
    out = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", out)
    out = re.sub(r"`(.+?)`", r"<code>\1</code>", out)
    out = re.sub(r"\*(.+?)\*", r"<em>\1</em>", out)
    out = out.replace("✅ pass", '<span class="pass">pass</span>')
    return out.replace("❌ fail", '<span class="fail">fail</span>')


def _html_table(rows: list[list[str]]) -> str:
    """A sortable table; cells that do not start with a figure are aligned left."""
    import re

    head, *body = rows
    figure = re.compile(r"^[-+]?\$?[0-9]")

    def cell(c: str) -> str:
        text = re.sub(r"<[^>]+>", "", c).strip()
        return f"<td>{c}</td>" if figure.match(text) or text == "-" else f'<td class="l">{c}</td>'

    return (
        '<div class="scroll"><table class="sortable"><thead><tr>'
        + "".join(f"<th>{c}</th>" for c in head)
        + "</tr></thead><tbody>"
        + "".join("<tr>" + "".join(cell(c) for c in r) + "</tr>" for r in body)
        + "</tbody></table></div>"
    )


def run_html(
    summary: pd.DataFrame,
    manifest: Mapping[str, Any],
    images: Mapping[str, bytes],
    phases: PhaseReport | None = None,
) -> str:
    """report.html: one self-contained file (images inlined as data URIs): report.md's
    content, with tables sortable by a click on a header, cells that never wrap, and each
    threshold's result as a coloured pass or fail."""
    import base64
    import html

    inline = {n: "data:image/png;base64," + base64.b64encode(b).decode() for n, b in images.items()}
    out: list[str] = []
    rows: list[list[str]] = []
    depth = 0  # open <ul> levels
    for line in run_markdown(summary, manifest, {}, phases).splitlines():
        if line.startswith("|"):
            if not set(line.replace("|", "").strip()) <= set("-: "):
                rows.append([_inline(c.strip()) for c in line.strip().strip("|").split("|")])
            continue
        if rows:
            out.append(_html_table(rows))
            rows = []
        item = line.lstrip(" ")
        level = (len(line) - len(item)) // 2 + 1 if item.startswith("- ") else 0
        while depth > level:
            out.append("</li></ul>")
            depth -= 1
        if level:
            if depth == level:
                out.append("</li>")
            while depth < level:
                out.append("<ul>")
                depth += 1
            out.append(f"<li>{_inline(item[2:])}")
        elif line.startswith("# "):
            out.append(f"<h1>{_inline(line[2:])}</h1>")
        elif line.startswith("### "):
            out.append(f"<h3>{_inline(line[4:])}</h3>")
        elif line.startswith("## "):
            out.append(f"<h2>{_inline(line[3:])}</h2>")
        elif line.strip():
            out.append(f"<p>{_inline(line)}</p>")
    if rows:
        out.append(_html_table(rows))
    out += ["</li></ul>"] * depth
    if inline:
        out.append("<h2>Figures</h2>")
        for name, src in inline.items():
            title = html.escape(PLOTS.get(name, name))
            out.append(
                f'<figure><img alt="{title}" src="{src}"><figcaption>{title}</figcaption></figure>'
            )
    title = html.escape(f"evalx run: {manifest.get('suite', '?')}")
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}"
            f"</title><style>{_HTML_STYLE}</style></head><body>\n" + "\n".join(out)
            + f"\n<script>{_SORT_JS}</script>\n</body></html>\n")  # fmt: skip


def replications_table(stats: pd.DataFrame, pooled: pd.DataFrame, wide: bool = False) -> Table:
    """Per route: across-replication mean and 95% t-interval, next to the pooled run.

    An interval from the pooled count (a rate at 0 or 1 in every replication) is marked
    with a dagger, explained in the caption."""
    pooled_rows = "method" in stats and bool((stats["method"] != "t").any())
    captions = [c for c in (_caption(pooled), POOLED_CAPTION if pooled_rows else None) if c]
    table = _table("Across replications (mean and 95% t-interval)", "\n".join(captions) or None)
    for name in ("route", "replications" if wide else "runs", "success", "success CI",
                 "pooled CI (batch means)" if wide else "pooled CI", "p95 ms" if wide else "p95",
                 "p95 CI", "cost/req", "cost CI"):  # fmt: skip
        table.add_column(name, justify="left" if name == "route" else "right", overflow="fold")
    for route, g in stats.groupby("route", sort=True):
        m = {str(r["metric"]): r for r in g.to_dict("records")}
        s, p, c = m["success_rate"], m["p95_latency_ms"], m["cost_per_request_usd"]
        pool = pooled[pooled["route"] == route].to_dict("records")
        pooled_ci = "-" if not pool else _success_ci(pool[0])
        dagger = "†" if s.get("method", "t") != "t" else ""
        lat = [_latency(float(p[k]), wide) for k in ("mean", "ci_low", "ci_high")]
        cost = [_cost(float(c[k]), wide) for k in ("mean", "ci_low", "ci_high")]
        table.add_row(
            str(route), str(int(s["replications"])), _pct(float(s["mean"])),
            f"{100 * float(s['ci_low']):.1f}-{100 * float(s['ci_high']):.1f}{dagger}", pooled_ci,
            lat[0], f"{lat[1]}-{lat[2]}", cost[0], f"{cost[1]}-{cost[2]}",
        )  # fmt: skip
    return table
