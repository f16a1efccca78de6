"""The fit report: Markdown and PNG figures beside a fitted suite fragment.

A reviewer of `evalx fit` output asks two things: where did these numbers come from
(provenance), and would I believe a run built on them (goodness of fit)? The report
answers both for every fitted quantity, with

- a quantile-quantile plot (observed vs fitted quantiles; on the line y = x the fit is
  exact; log axes when the values are positive and span more than `LOG_RATIO`),
- a CDF overlay (the observed empirical CDF over the fitted one),
- the goodness-of-fit table (n, KS, p50/p95/p99 observed vs fitted, relative error),

plus, for traffic, the arrival rate per bucket with the detected spikes shaded and the
fitted rate drawn over it, and for quality, each model's success with its interval,
per-class rates, the correlation of success across models and the non-nesting shares.

Figures are bare matplotlib `Figure` objects saved through Agg (never `pyplot`), built
by the `*_figure` functions so that tests can read back what is drawn. Artists a
reader (or a test) looks for carry a `gid`: `identity`, `quantiles`, `marked`,
`observed`, `fitted`, `bucket`, `spike`, `base-rate`, `fitted-rate`, `success`,
`interval`, `class-rate`, `wins-over`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from harness.data._fit_latency import LatencyFit
from harness.data._fit_quality import QualityFit
from harness.data._fit_traffic import TrafficFit
from harness.data._fragment import Component, Fit
from harness.data._gof import QS, signed_percent

if TYPE_CHECKING:
    import numpy.typing as npt
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "LOG_RATIO",
    "QQ_POINTS",
    "cdf_figure",
    "nonnesting_figure",
    "qq_figure",
    "qq_probabilities",
    "rate_figure",
    "report_paths",
    "success_figure",
    "write_fit_report",
]

QQ_POINTS = 200
"""Quantiles drawn in a QQ plot (every value when the sample is smaller)."""
CDF_GRID = 600
"""Points at which a fitted CDF is drawn."""
LOG_RATIO = 20.0
"""Positive values spanning more than this ratio (max / min) get log axes."""
_SIZE_IN = (6.4, 4.8)
_DPI = 110
_OBSERVED = "#1f77b4"
_FITTED = "#d62728"
_SPIKE = "#ff7f0e"
_GREY = "#555555"


# --------------------------------------------------------------------------- helpers


def _figure(size: tuple[float, float] = _SIZE_IN) -> tuple[Figure, Axes]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=_DPI, layout="constrained")
    return fig, fig.add_subplot()


def _save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, format="png", dpi=_DPI)
    return path


def _grid(ax: Axes) -> None:
    ax.grid(True, color="#e5e5e5", linewidth=0.8, zorder=0)
    ax.set_axisbelow(True)


def _wide(*arrays: npt.NDArray[np.float64]) -> bool:
    """Positive everywhere and spanning more than LOG_RATIO: worth log axes."""
    values = np.concatenate([a[np.isfinite(a)] for a in arrays])
    return bool(values.size and values.min() > 0 and values.max() / values.min() > LOG_RATIO)


def _axis_label(c: Component, who: str) -> str:
    return f"{who} ({c.unit})" if c.unit else who


def _gof_box(ax: Axes, c: Component) -> None:
    g = c.gof
    text = f"n={g.n}  KS={g.ks:.3f} (p={g.ks_p:.2g})\n" + "  ".join(
        f"{q.label} {signed_percent(q.rel_error)}" for q in g.quantiles
    )
    ax.text(
        0.02,
        0.98,
        text,
        transform=ax.transAxes,
        va="top",
        ha="left",
        fontsize="small",
        bbox={"facecolor": "white", "edgecolor": "#cccccc", "alpha": 0.9},
    )


def qq_probabilities(n: int) -> npt.NDArray[np.float64]:
    """Plotting positions (i + 0.5) / m, m = min(n, QQ_POINTS)."""
    m = max(1, min(n, QQ_POINTS))
    return (np.arange(m) + 0.5) / m


# --------------------------------------------------------------------------- figures


def qq_figure(c: Component) -> Figure:
    """Observed (x) against fitted (y) quantiles at `qq_probabilities`, the y = x line,
    and p50/p95/p99 marked; log axes when `_wide`."""
    fig, ax = _figure()
    p = qq_probabilities(c.observed.size)
    x = np.quantile(c.observed, p)
    y = c.fitted_quantile(p)
    log = _wide(x, y)
    ax.scatter(x, y, s=12, color=_OBSERVED, alpha=0.8, zorder=3, gid="quantiles", label="quantiles")
    qs = np.asarray(QS)
    mx, my = np.quantile(c.observed, qs), c.fitted_quantile(qs)
    ax.scatter(
        mx, my, s=60, marker="D", color=_FITTED, zorder=4, gid="marked", label="p50, p95, p99"
    )
    for q, xi, yi in zip(qs, mx, my, strict=True):
        ax.annotate(
            f"p{q * 100:g}", (xi, yi), xytext=(6, -10), textcoords="offset points", fontsize="small"
        )
    both = np.concatenate([x, y, mx, my])
    lo, hi = float(both.min()), float(both.max())
    if hi == lo:
        lo, hi = (lo / 2, hi * 2) if log else (lo - 0.5, hi + 0.5)
    ax.plot(
        [lo, hi],
        [lo, hi],
        color=_GREY,
        linestyle="--",
        linewidth=1.0,
        zorder=2,
        gid="identity",
        label="y = x",
    )
    if log:
        ax.set_xscale("log")
        ax.set_yscale("log")
    ax.set_xlabel(_axis_label(c, "observed"))
    ax.set_ylabel(_axis_label(c, "fitted"))
    ax.set_title(f"{c.title}\nQQ: {c.describe}", fontsize="medium")
    ax.legend(loc="lower right", fontsize="small")
    _gof_box(ax, c)
    _grid(ax)
    return fig


def cdf_figure(c: Component) -> Figure:
    """The observed empirical CDF (step) over the fitted CDF (evaluated on a grid)."""
    fig, ax = _figure()
    obs = np.sort(c.observed)
    frac = np.arange(1, obs.size + 1) / obs.size
    ends = c.fitted_quantile(np.array([0.001, 0.999]))
    lo, hi = float(min(obs[0], ends[0])), float(max(obs[-1], ends[1]))
    log = _wide(obs, ends)
    grid = np.geomspace(lo, hi, CDF_GRID) if log else np.linspace(lo, hi, CDF_GRID)
    ax.step(
        obs,
        frac,
        where="post",
        color=_OBSERVED,
        linewidth=1.6,
        gid="observed",
        label=f"observed (n={obs.size})",
        zorder=3,
    )
    ax.plot(
        grid,
        c.fitted_cdf(grid),
        color=_FITTED,
        linewidth=1.4,
        linestyle="--",
        gid="fitted",
        label=f"fitted: {c.describe}",
        zorder=4,
    )
    if log:
        ax.set_xscale("log")
    ax.set_ylim(0, 1.02)
    ax.set_xlabel(_axis_label(c, "value"))
    ax.set_ylabel("fraction at or below")
    ax.set_title(f"{c.title}\nCDF", fontsize="medium")
    ax.legend(loc="lower right", fontsize="small")
    _gof_box(ax, c)
    _grid(ax)
    return fig


def rate_figure(fit: TrafficFit) -> Figure:
    """Arrivals per second in each bucket (bars; raised buckets in the spike colour),
    the detected spike windows shaded, the base rate and the fitted rate (spikes
    included) drawn over them. x is seconds after the first arrival."""
    fig, ax = _figure((9.0, 4.8))
    starts = np.arange(fit.counts.size) * fit.bucket_s
    colours = np.where(fit.raised, _SPIKE, _OBSERVED)
    ax.bar(
        starts,
        fit.bucket_rates,
        width=fit.exposure_s,
        align="edge",
        color=colours,
        alpha=0.75,
        gid="bucket",
        zorder=2,
    )
    for s in fit.spikes:
        ax.axvspan(
            s.start_s, s.start_s + s.duration_s, color=_SPIKE, alpha=0.15, gid="spike", zorder=1
        )
    ax.axhline(
        fit.rate_per_s, color=_GREY, linestyle="--", linewidth=1.2, gid="base-rate", zorder=4
    )
    edges = [0.0]
    level = [fit.rate_per_s]
    for s in fit.spikes:
        edges += [s.start_s, s.start_s + s.duration_s]
        level += [fit.rate_per_s * s.multiplier, fit.rate_per_s]
    edges.append(fit.duration_s)
    ax.step(
        edges,
        [*level, level[-1]],
        where="post",
        color=_FITTED,
        linewidth=1.4,
        gid="fitted-rate",
        zorder=5,
    )
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles = [
        Patch(color=_OBSERVED, alpha=0.75, label=f"arrivals per s ({fit.bucket_s:g} s buckets)"),
        Patch(color=_SPIKE, alpha=0.4, label=f"spike windows ({len(fit.spikes)})"),
        Line2D([], [], color=_GREY, linestyle="--", label=f"base rate {fit.rate_per_s:g}/s"),
        Line2D([], [], color=_FITTED, label="fitted rate"),
    ]
    ax.legend(handles=handles, loc="upper right", fontsize="small")
    ax.set_xlim(0, fit.duration_s)
    ax.set_xlabel("seconds after the first arrival")
    ax.set_ylabel("arrivals per second")
    ax.set_title(
        f"Arrival rate: {fit.requests} requests over {fit.duration_s:,.0f} s", fontsize="medium"
    )
    _grid(ax)
    return fig


def success_figure(fit: QualityFit) -> Figure:
    """Each model's success rate with its Wilson 95% interval (strongest on top), and
    its per-class rates as small dots."""
    fig, ax = _figure((8.0, 0.8 + 0.6 * max(len(fit.models), 2)))
    names = list(fit.names)
    y = np.arange(len(names))[::-1].astype(float)
    rates = np.array([fit.overall[n].rate for n in names])
    lows = np.array([fit.overall[n].interval[0] for n in names])
    highs = np.array([fit.overall[n].interval[1] for n in names])
    bars = ax.errorbar(
        rates,
        y,
        xerr=[rates - lows, highs - rates],
        fmt="o",
        color=_OBSERVED,
        capsize=4,
        zorder=3,
        label="success, Wilson 95%",
    )
    bars.lines[0].set_gid("success")
    bars.lines[2][0].set_gid("interval")
    cx = [r.rate for n in names for r in fit.by_class[n].values()]
    cy = [yi for n, yi in zip(names, y, strict=True) for _ in fit.by_class[n]]
    if cx:
        ax.scatter(
            cx, cy, s=14, color=_GREY, alpha=0.6, zorder=2, gid="class-rate", label="per task class"
        )
    ax.set_yticks(y, names)
    ax.set_xlabel(f"success rate (score {fit.success})")
    ax.set_xlim(left=0)
    ax.set_title("Success per model", fontsize="medium")
    ax.legend(loc="lower right", fontsize="small")
    _grid(ax)
    return fig


def nonnesting_figure(fit: QualityFit) -> Figure:
    """Heat map of `wins_over`: row model succeeds where column model fails (share of prompts)."""
    k = len(fit.models)
    fig, ax = _figure((1.6 + 1.1 * k, 1.2 + 0.9 * k))
    image = ax.imshow(fit.wins_over, cmap="Oranges", vmin=0, gid="wins-over")
    for i in range(k):
        for j in range(k):
            if i != j and np.isfinite(fit.wins_over[i, j]):
                ax.text(
                    j, i, f"{fit.wins_over[i, j]:.3f}", ha="center", va="center", fontsize="small"
                )
    names = list(fit.names)
    ax.set_xticks(range(k), names, rotation=30, ha="right")
    ax.set_yticks(range(k), names)
    ax.set_xlabel("... and this model fails")
    ax.set_ylabel("this model succeeds ...")
    ax.set_title("Share of prompts: row succeeds where column fails", fontsize="medium")
    fig.colorbar(image, ax=ax, fraction=0.05)
    return fig


# --------------------------------------------------------------------------- Markdown


def _f(x: float) -> str:
    """A number as the report prints it: 4 significant digits."""
    return f"{x:.4g}"


def _gof_table(components: Sequence[Component]) -> list[str]:
    head = (
        "| quantity | fit | n | KS | KS p | "
        + " | ".join(f"p{q * 100:g} obs | p{q * 100:g} fit | p{q * 100:g} err" for q in QS)
        + " |"
    )
    lines = [head, "|" + "---|" * (5 + 3 * len(QS))]
    for c in components:
        cells = [f"`{c.key}`", c.describe, str(c.gof.n), f"{c.gof.ks:.3f}", f"{c.gof.ks_p:.2g}"]
        for q in QS:
            chk = c.gof.at(q)
            cells += [_f(chk.observed), _f(chk.fitted), signed_percent(chk.rel_error)]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _provenance(fit: Fit) -> list[str]:
    p = fit.provenance
    lines = [
        "## Provenance",
        "",
        f"- fitted by evalx {p.version} on {p.created}",
        f"- command: `{p.command}`" if p.command else "- command: (fitted from Python)",
        f"- rows used: {p.rows_used}",
    ]
    if p.sources:
        lines += ["", "| source | sha256 | rows |", "|---|---|---|"]
        lines += [f"| `{s.path}` | `{s.sha256 or 'unreadable'}` | {s.rows} |" for s in p.sources]
    return lines


def _figures(pairs: Sequence[tuple[str, str]]) -> list[str]:
    return [f"![{alt}]({name})" for alt, name in pairs]


def _latency_md(fit: LatencyFit) -> list[str]:
    lines = [
        "## Models",
        "",
        "| model | calls | ok | error rate | form | used |",
        "|---|---|---|---|---|---|",
    ]
    for m in fit.models.values():
        form = "ttft + tokens x per-token" if m.token_aware else ("total" if m.total else "none")
        if m.per_input_token is not None:
            form += " + prefill"
        lines.append(f"| {m.name} | {m.calls} | {m.ok} | {_f(m.error_rate)} | {form} | {m.used} |")
    return lines


def _traffic_md(fit: TrafficFit) -> list[str]:
    lines = [
        "## Traffic",
        "",
        f"- requests: {fit.requests}",
        f"- rate_per_s (outside spikes): {_f(fit.rate_per_s)}",
        f"- median bucket rate the spike test used: {_f(fit.base_guess_per_s)}",
        f"- buckets: {fit.counts.size} of {fit.bucket_s:g} s over {fit.duration_s:g} s",
        f"- spikes: {len(fit.spikes)}",
    ]
    if fit.spikes:
        lines += ["", "| start_s | duration_s | multiplier | requests |", "|---|---|---|---|"]
        lines += [
            f"| {s.start_s:g} | {s.duration_s:g} | {s.multiplier:g} | {s.requests} |"
            for s in fit.spikes
        ]
    lines += [
        "",
        "| class | weight | requests | input_tokens | input_spread | output_tokens"
        " | output_spread |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, c in fit.mix.items():
        cells = [c.input_tokens, c.input_spread, c.output_tokens, c.output_spread]
        text = ["-" if v is None else f"{v:g}" for v in cells]
        lines.append(f"| {name} | {c.weight:g} | {c.requests} | " + " | ".join(text) + " |")
    return lines


def _quality_md(fit: QualityFit) -> list[str]:
    names = list(fit.names)
    lines = [
        "## Success per model",
        "",
        f"Success: score {fit.success}; {fit.prompts} prompts.",
        "",
    ]
    lines += [
        "| model | table model | success | successes / n | Wilson 95% |",
        "|---|---|---|---|---|",
    ]
    for n in names:
        r = fit.overall[n]
        lo, hi = r.interval
        lines.append(
            f"| {n} | {fit.models[n]} | {r.rate:.4f} | {r.successes} / {r.n} "
            f"| {lo:.4f} - {hi:.4f} |"
        )
    classes = sorted({c for n in names for c in fit.by_class[n]})
    if classes:
        lines += [
            "",
            "### Per task class (success, n)",
            "",
            "| model | " + " | ".join(classes) + " |",
            "|---|" + "---|" * len(classes),
        ]
        for n in names:
            per = fit.by_class[n]
            cells = [f"{per[c].rate:.4f} ({per[c].n})" if c in per else "-" for c in classes]
            lines.append(f"| {n} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "### Correlation of success across prompts (phi)",
        "",
        "| | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for i, n in enumerate(names):
        lines.append(f"| {n} | " + " | ".join(f"{v:.3f}" for v in fit.correlation[i]) + " |")
    lines += [
        "",
        "### Non-nesting",
        "",
        "Share of prompts where the weaker model succeeds and the stronger fails; the last "
        "column is that share over all of the weaker model's successes.",
        "",
        "| weaker | stronger | share of prompts | of weaker's successes | prompts |",
        "|---|---|---|---|---|",
    ]
    for weak, strong, share, common in fit.non_nesting():
        rate = fit.overall[weak].rate
        of_wins = share / rate if rate > 0 else float("nan")
        lines.append(f"| {weak} | {strong} | {share:.4f} | {of_wins:.3f} | {common} |")
    return lines


# --------------------------------------------------------------------------- writing


def report_paths(fit: Fit, out: str | Path) -> tuple[Path, str]:
    """(Markdown path, file stem of the figures) for `out`: a `.md` path, the fragment's
    `.yaml` path (the report goes beside it), or a folder (`<kind>.md` in it)."""
    path = Path(out)
    if path.suffix in (".md", ".yaml", ".yml"):
        return path.with_suffix(".md"), path.stem
    return path / f"{fit.kind}.md", fit.kind


def write_fit_report(fit: Fit, out: str | Path) -> Path:
    """Write the Markdown report and its PNG figures; the Markdown's path.

    `out` is read by `report_paths`; its folder must exist. Figures are named
    `<stem>-<what>-qq.png` and `<stem>-<what>-cdf.png` per fitted quantity, plus
    `<stem>-rate.png` (traffic) and `<stem>-success.png`, `<stem>-nonnesting.png`
    (quality), and linked from the Markdown by relative path.
    """
    md_path, stem = report_paths(fit, out)
    folder = md_path.parent
    title = {"latency": "latency", "traffic": "traffic", "quality": "quality"}.get(
        fit.kind, fit.kind
    )
    lines = [f"# Fitted {title}: {stem}", ""]
    lines += _provenance(fit)
    notes = fit.notes()
    if notes:
        lines += ["", "## Rules and decisions", ""]
        lines += [f"- {n}" for n in notes]
    lines.append("")
    if isinstance(fit, LatencyFit):
        lines += _latency_md(fit)
    elif isinstance(fit, TrafficFit):
        lines += _traffic_md(fit)
        name = f"{stem}-rate.png"
        _save(rate_figure(fit), folder / name)
        lines += ["", *_figures([("arrival rate per bucket", name)])]
    elif isinstance(fit, QualityFit):
        lines += _quality_md(fit)
        pairs = [("success per model", f"{stem}-success.png")]
        _save(success_figure(fit), folder / pairs[0][1])
        if len(fit.models) > 1:
            pairs.append(("non-nesting shares", f"{stem}-nonnesting.png"))
            _save(nonnesting_figure(fit), folder / pairs[1][1])
        lines += ["", *_figures(pairs)]
    comps = fit.components()
    if comps:
        lines += ["", "## Goodness of fit", "", *_gof_table(comps)]
        for c in comps:
            slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", c.slug)
            qq, cdf = f"{stem}-{slug}-qq.png", f"{stem}-{slug}-cdf.png"
            _save(qq_figure(c), folder / qq)
            _save(cdf_figure(c), folder / cdf)
            lines += ["", f"### {c.title}", "", f"{c.describe}. {c.note}".strip(), ""]
            lines += _figures([(f"{c.title}: QQ", qq), (f"{c.title}: CDF", cdf)])
    md_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return md_path
