"""Human-facing views of results: the per-route terminal table.

Only this module and `cli` import rich.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping
from typing import TYPE_CHECKING, Any

from rich.table import Table

from harness.intervals import WILSON

if TYPE_CHECKING:
    import pandas as pd

    from harness.compare import Comparison, Result
    from harness.thresholds import Outcome


def _ms(v: float) -> str:
    return "-" if math.isnan(v) else f"{v:,.0f}"


def _pct(v: float) -> str:
    return "-" if math.isnan(v) else f"{100 * v:.1f}%"


def _usd(v: float) -> str:
    return "-" if math.isnan(v) else f"${v:.5f}"


def _success_ci(row: Mapping[Hashable, Any]) -> str:
    """A summary row's success interval in percent, starred when it is the Wilson fallback."""
    lo, hi = float(row["success_ci_low"]), float(row["success_ci_high"])
    if math.isnan(lo):
        return "-"
    star = "*" if row.get("ci_method") == WILSON else ""
    return f"{100 * lo:.1f}-{100 * hi:.1f}{star}"


CI_CAPTION = "* Wilson: too few requests (or no variation) for batch means"


POOLED_CAPTION = (
    "† the same in every replication: Wilson on the pooled count, requests divided by the "
    "route's design effect"
)


def _caption(summary: pd.DataFrame) -> str | None:
    """CI_CAPTION when a row of `summary` carries the Wilson fallback."""
    wilson_rows = "ci_method" in summary and bool((summary["ci_method"] == WILSON).any())
    return CI_CAPTION if wilson_rows else None


def route_table(summary: pd.DataFrame, title: str = "Per route") -> Table:
    """The summary as a rich table: one row per route, `all` last and bold."""
    table = Table(title=title, title_justify="left", header_style="bold",
                  caption=_caption(summary), caption_justify="left")  # fmt: skip
    for name, justify in [
        ("route", "left"),
        ("requests", "right"),
        ("success", "right"),
        ("95% CI (batch means)", "right"),
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
        table.add_row(
            str(row["route"]),
            f"{int(row['requests']):,}",
            _pct(float(row["success_rate"])),
            _success_ci(row),
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


def tenant_table(tenants: pd.DataFrame) -> Table:
    """Per tenant (metrics.tenant_summary): success, p95, cost and the share a limit refused."""
    table = Table(title="Per tenant", title_justify="left", header_style="bold")
    for name in ("tenant", "requests", "success", "p95 ms", "cost/req", "total cost", "limited"):
        table.add_column(name, justify="left" if name == "tenant" else "right")
    for row in tenants.to_dict("records"):
        table.add_row(
            str(row["tenant"]) or "(none)",
            f"{int(row['requests']):,}",
            _pct(float(row["success_rate"])),
            _ms(float(row["p95_latency_ms"])),
            _usd(float(row["cost_per_request_usd"])),
            f"${float(row['total_cost_usd']):,.4f}",
            _pct(float(row["limited_rate"])),
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


def compare_table(c: Comparison) -> Table:
    """The comparison as a rich table, regressions first."""
    table = Table(title="Compare: " + _header(c).replace("`", ""), title_justify="left",
                  header_style="bold")  # fmt: skip
    for name in ("route", "metric", "baseline", "candidate", "delta", "CI", "p (Holm)",
                 "tolerance", "verdict"):  # fmt: skip
        table.add_column(
            name, justify="left" if name in ("route", "metric", "verdict") else "right"
        )
    order = {"regression": 0, "improvement": 1, "insufficient data": 2, "no change": 3}
    for r in sorted(c.results, key=lambda r: order[r.verdict]):
        style = {"regression": "red", "improvement": "green"}.get(r.verdict)
        table.add_row(
            r.route, r.metric, _value(r.metric, r.baseline), _value(r.metric, r.candidate),
            _delta(r.metric, r), _ci(r.metric, r), _p(r.p_adjusted), r.tolerance,
            f"{_MARKS[r.verdict]} {r.verdict}", style=style,
        )  # fmt: skip
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
            value = "no data" if t["value"] is None else f"{t['value']:,.6g}"
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
            seen = "no matching requests" if t["value"] is None else f"{t['value']:,.6g}"
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


def sweep_table(frame: pd.DataFrame, params: list[str], objective: str, top: int = 10) -> Table:
    """The best settings on route `all`: confirmed first, then by feasibility and objective."""
    sense, metric = objective.split()
    rows = frame[frame["route"] == "all"].copy()
    rows["_stage"] = (rows["stage"] != "confirm").astype(int)
    rows["_key"] = rows[metric] if sense == "min" else -rows[metric]
    rows = rows.sort_values(["_stage", "feasible", "_key"], ascending=[True, False, True])
    table = Table(title=f"Top settings ({objective}; route all)", title_justify="left",
                  header_style="bold")  # fmt: skip
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


def fault_windows(manifest: Mapping[str, Any]) -> tuple[list[tuple[float, float, str]],
                                                         list[tuple[float, float]]]:  # fmt: skip
    """(faults as (start, end, label), spikes as (start, end)) from a manifest's parameters."""
    params = manifest.get("parameters", {})

    def get(key: str) -> Any:
        return params.get(key, {}).get("value")

    faults = []
    i = 0
    while get(f"faults.{i}.kind") is not None:
        start, duration = float(get(f"faults.{i}.start_s")), float(get(f"faults.{i}.duration_s"))
        label = get(f"faults.{i}.name") or f"{get(f'faults.{i}.kind')}:{get(f'faults.{i}.target')}"
        faults.append((start, start + duration, str(label)))
        i += 1
    spikes = []
    j = 0
    while get(f"traffic.spikes.{j}.start_s") is not None:
        start = float(get(f"traffic.spikes.{j}.start_s"))
        spikes.append((start, start + float(get(f"traffic.spikes.{j}.duration_s"))))
        j += 1
    return faults, spikes


def plot_files(requests: pd.DataFrame, manifest: Mapping[str, Any]) -> dict[str, bytes]:
    """Every figure of a run report as PNG bytes."""
    import tempfile
    from pathlib import Path

    from harness.plots import cost_png, latency_cdf_png, paths_png, timeline_png

    faults, spikes = fault_windows(manifest)
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
    summary: pd.DataFrame, manifest: Mapping[str, Any], images: Mapping[str, str]
) -> str:
    """report.md: what happened in a run, readable without code. `images`: name -> src."""
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
    ]
    thresholds = manifest.get("thresholds", [])
    if thresholds:
        lines += ["## Thresholds", "", "| metric | objective | value | |", "|---|---|--:|---|"]
        for t in thresholds:
            value = "no data" if t["value"] is None else f"{t['value']:,.6g}"
            mark = "✅" if t["passed"] else "❌"
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


def run_html(
    summary: pd.DataFrame, manifest: Mapping[str, Any], images: Mapping[str, bytes]
) -> str:
    """report.html: one self-contained file (images inlined as data URIs)."""
    import base64
    import html

    inline = {n: "data:image/png;base64," + base64.b64encode(b).decode() for n, b in images.items()}
    body = []
    for line in run_markdown(summary, manifest, {}).splitlines():
        body.append(line)
    rows, out, in_table = [], [], False
    for line in body:
        if line.startswith("|"):
            if set(line.replace("|", "").strip()) <= set("-: "):
                continue
            cells = [html.escape(c.strip().strip("*`")) for c in line.strip("|").split("|")]
            tag = "th" if not in_table else "td"
            rows.append("<tr>" + "".join(f"<{tag}>{c}</{tag}>" for c in cells) + "</tr>")
            in_table = True
            continue
        if in_table:
            out.append("<table>" + "".join(rows) + "</table>")
            rows, in_table = [], False
        if line.startswith("# "):
            out.append(f"<h1>{html.escape(line[2:])}</h1>")
        elif line.startswith("## "):
            out.append(f"<h2>{html.escape(line[3:])}</h2>")
        elif line.strip():
            out.append(f"<p>{html.escape(line).replace('`', '')}</p>")
    if in_table:
        out.append("<table>" + "".join(rows) + "</table>")
    if inline:
        out.append("<h2>Figures</h2>")
        for name, src in inline.items():
            title = html.escape(PLOTS.get(name, name))
            out.append(
                f'<figure><img alt="{title}" src="{src}"><figcaption>{title}</figcaption></figure>'
            )
    style = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}"
             "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;"
             "padding:4px 8px;text-align:right}th{background:#f4f4f4}td:first-child,"
             "th:first-child{text-align:left}img{max-width:100%}")  # fmt: skip
    title = html.escape(f"evalx run: {manifest.get('suite', '?')}")
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}"
            f"</title><style>{style}</style></head><body>\n" + "\n".join(out)
            + "\n</body></html>\n")  # fmt: skip


def replications_table(stats: pd.DataFrame, pooled: pd.DataFrame) -> Table:
    """Per route: across-replication mean and 95% t-interval, next to the pooled run.

    An interval from the pooled count (a rate at 0 or 1 in every replication) is marked
    with a dagger, explained in the caption."""
    pooled_rows = "method" in stats and bool((stats["method"] != "t").any())
    captions = [c for c in (_caption(pooled), POOLED_CAPTION if pooled_rows else None) if c]
    table = Table(title="Across replications (mean and 95% t-interval)", title_justify="left",
                  header_style="bold", caption="\n".join(captions) or None,
                  caption_justify="left")  # fmt: skip
    for name in ("route", "replications", "success", "success CI", "pooled CI (batch means)",
                 "p95 ms", "p95 CI", "cost/req", "cost CI"):  # fmt: skip
        table.add_column(name, justify="left" if name == "route" else "right")
    for route, g in stats.groupby("route", sort=True):
        m = {str(r["metric"]): r for r in g.to_dict("records")}
        s, p, c = m["success_rate"], m["p95_latency_ms"], m["cost_per_request_usd"]
        pool = pooled[pooled["route"] == route].to_dict("records")
        pooled_ci = "-" if not pool else _success_ci(pool[0])
        dagger = "†" if s.get("method", "t") != "t" else ""
        table.add_row(
            str(route), str(int(s["replications"])), _pct(float(s["mean"])),
            f"{100 * float(s['ci_low']):.1f}-{100 * float(s['ci_high']):.1f}{dagger}", pooled_ci,
            _ms(float(p["mean"])), f"{_ms(float(p['ci_low']))}-{_ms(float(p['ci_high']))}",
            _usd(float(c["mean"])), f"{_usd(float(c['ci_low']))}-{_usd(float(c['ci_high']))}",
        )  # fmt: skip
    return table
