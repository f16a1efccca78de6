"""Per phase: how a run behaved in each fault window and spike, against its baseline, and why.

A request's phase (`requests.phase`, from `harness.faults.label_phases`) names the fault
windows and spikes active at its arrival, or `baseline`. `phase_table` gives one row per
phase (`PHASE_COLUMNS`): baseline first, the others in the order they begin.
`explain` says in words, per phase, what moved against the baseline and the mechanisms
behind it. Every figure in a sentence is computed from the requests and spans, and a
mechanism is named only when the data shows it: more traffic, calls waiting for capacity,
calls that hit their timeout (and how much of it was spent queued), calls that failed
fast, open circuit breakers refusing calls, rate limits, the calls a fault hit, hand-offs
and the human queue's wait, a p95 that is the human queue rather than the stack, and
answers that got faster or slower at the tail because a tier stopped (or started)
answering. `figure_notes` explains two features of a run's figures the same way: a step
in the latency CDF at the call timeout, and timeline buckets whose p95 is the human queue.

Spans are optional (an observed run may have none); without them the call-level columns
are missing and only the request-level mechanisms are named.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from harness.faults import SPIKE, TimeWindow, label_phases
from harness.records import Column
from harness.units import count, duration, number, pct, usd

if TYPE_CHECKING:
    import pandas as pd

BASELINE = "baseline"

PHASE_COLUMNS: tuple[Column, ...] = (
    Column("phase", "string", "Phase label: 'baseline', a fault's name, 'spike', or 'a+b'."),
    Column("window", "string", "When the phase held, seconds after the start (by arrival)."),
    Column("seconds", "float64", "How long the phase held, up to the last arrival."),
    Column("requests", "int64", "Requests that arrived in the phase."),
    Column("rate_per_s", "float64", "Arrivals per second over the phase's seconds."),
    Column("success_rate", "float64", "Share of the phase's requests with success."),
    Column("wrong_rate", "float64", "Share that ended with a wrong answer."),
    Column("p50_latency_ms", "float64", "Median latency, milliseconds."),
    Column("p95_latency_ms", "float64", "95th percentile latency, milliseconds."),
    Column(
        "p95_answered_ms",
        "float64",
        "95th percentile latency of the requests the stack answered (no hand-off), ms.",
    ),
    Column("cost_per_request_usd", "float64", "Mean cost per request, humans included."),
    Column("handoff_rate", "float64", "Share handed to the human team."),
    Column("escalation_rate", "float64", "Share escalated to a higher tier."),
    Column("errors", "float64", "Model and tool calls that failed (error, malformed, 429)."),
    Column("timeouts", "float64", "Model and tool calls that hit their timeout."),
    Column("rejected", "float64", "Calls an open circuit breaker refused without making them."),
    Column("queue_ms", "float64", "Mean wait for capacity per model or tool call, ms."),
)

CALL_KINDS = ("chat", "execute_tool", "retrieval")
_FAILED = ("error", "malformed", "rate_limited")
_FAST_MS = 1000.0
"""A failed call this quick failed fast: it cost the request (almost) no time."""
SPAN_COLUMNS_READ = [
    "request_id", "kind", "name", "gen_ai.request.model", "gen_ai.tool.name", "tier",
    "status", "http.response.status_code", "duration_ms", "queue_ms", "fault",
]  # fmt: skip
"""The span columns the phase report reads (convert only these from a large run)."""
_Row = Mapping[Any, Any]
"""A row of the phase table as a dict (`DataFrame.to_dict("records")`)."""


@dataclass(frozen=True)
class PhaseReport:
    """A run read by phase: the table, the sentences per phase, the notes on the figures."""

    table: pd.DataFrame
    notes: dict[str, list[str]]
    figures: list[str]


def manifest_windows(manifest: Mapping[str, Any]) -> tuple[list[TimeWindow], list[TimeWindow]]:
    """A run's fault windows (suite order) and spikes, from its manifest's parameters."""
    params = manifest.get("parameters", {})

    def get(key: str) -> Any:
        return params.get(key, {}).get("value")

    faults = []
    i = 0
    while get(f"faults.{i}.kind") is not None:
        start, length = float(get(f"faults.{i}.start_s")), float(get(f"faults.{i}.duration_s"))
        label = get(f"faults.{i}.name") or f"{get(f'faults.{i}.kind')}:{get(f'faults.{i}.target')}"
        faults.append(TimeWindow(start, start + length, str(label)))
        i += 1
    spikes = []
    j = 0
    while get(f"traffic.spikes.{j}.start_s") is not None:
        start = float(get(f"traffic.spikes.{j}.start_s"))
        end = start + float(get(f"traffic.spikes.{j}.duration_s"))
        spikes.append(TimeWindow(start, end, SPIKE))
        j += 1
    return faults, spikes


def phase_report(
    requests: pd.DataFrame,
    spans: pd.DataFrame | None,
    manifest: Mapping[str, Any],
    bucket_s: float | None = None,
) -> PhaseReport:
    """The table, explanations and figure notes of one run (`bucket_s`: the timeline's)."""
    faults, spikes = manifest_windows(manifest)
    params = {k: v.get("value") for k, v in manifest.get("parameters", {}).items()}
    table = phase_table(requests, spans, [*faults, *spikes])
    return PhaseReport(
        table=table,
        notes=explain(table, requests, spans, params),
        figures=figure_notes(requests, spans, params, bucket_s),
    )


# --------------------------------------------------------------------------- the table


def _segments(windows: Sequence[TimeWindow], end: float) -> dict[str, list[tuple[float, float]]]:
    """Per phase label, the stretches of [0, end] it held, merged, in time order."""
    edges = sorted({0.0, end, *(t for w in windows for t in (w.start_s, w.end_s) if 0 < t < end)})
    out: dict[str, list[tuple[float, float]]] = {}
    if end <= 0:
        return out
    pairs = list(itertools.pairwise(edges))
    labels = label_phases(windows, np.array([(a + b) / 2 for a, b in pairs]))
    for (a, b), label in zip(pairs, labels, strict=True):
        spans = out.setdefault(str(label), [])
        if spans and spans[-1][1] == a:
            spans[-1] = (spans[-1][0], b)
        else:
            spans.append((a, b))
    return out


def _window_text(stretches: list[tuple[float, float]]) -> str:
    if not stretches:
        return ""
    return ", ".join(f"{number(a)}-{number(b)}" for a, b in stretches) + " s"


def _calls(requests: pd.DataFrame, spans: pd.DataFrame | None) -> pd.DataFrame | None:
    """The spans that matter here, each with its request's phase and its target's name."""
    if spans is None:
        return None
    import pandas as pd

    s = spans[[c for c in SPAN_COLUMNS_READ if c in spans.columns]].copy()
    phase = pd.Series(requests["phase"].to_numpy(), index=requests["request_id"].to_numpy())
    s["phase"] = phase.reindex(s["request_id"].to_numpy()).to_numpy()
    tool = s["gen_ai.tool.name"].where(s["gen_ai.tool.name"] != "", s["name"])
    s["target"] = s["gen_ai.request.model"].where(s["kind"] == "chat", tool)
    return s


def phase_table(
    requests: pd.DataFrame, spans: pd.DataFrame | None, windows: Sequence[TimeWindow]
) -> pd.DataFrame:
    """One row per phase with requests (`PHASE_COLUMNS`): baseline first, then by start."""
    import pandas as pd

    last = float(requests["arrival_s"].max()) if len(requests) else 0.0
    stretches = _segments(windows, last)
    calls = _calls(requests, spans)
    rows = []
    for name, df in requests.groupby("phase", sort=False):
        label = str(name)
        held = stretches.get(label, [])
        seconds = sum(b - a for a, b in held)
        answered = df.loc[~df["handoff"].astype(bool), "latency_ms"]
        row: dict[str, Any] = {
            "phase": label,
            "window": _window_text(held),
            "seconds": seconds,
            "requests": len(df),
            "rate_per_s": len(df) / seconds if seconds > 0 else np.nan,
            "success_rate": float(df["success"].mean()),
            "wrong_rate": float((df["outcome"] == "wrong").mean()),
            "p50_latency_ms": _quantile(df["latency_ms"], 0.5),
            "p95_latency_ms": _quantile(df["latency_ms"], 0.95),
            "p95_answered_ms": _quantile(answered, 0.95),
            "cost_per_request_usd": float(df["cost_usd"].mean()),
            "handoff_rate": float(df["handoff"].mean()),
            "escalation_rate": float(df["escalated"].mean()),
        }
        row.update(_call_counts(None if calls is None else calls[calls["phase"] == label]))
        rows.append((0 if label == BASELINE else 1, held[0][0] if held else np.inf,
                     float(df["arrival_s"].min()), row))  # fmt: skip
    rows.sort(key=lambda r: r[:3])
    frame = pd.DataFrame([r[3] for r in rows], columns=[c.name for c in PHASE_COLUMNS])
    return frame.astype({"requests": "int64"})


def _quantile(values: pd.Series[Any], q: float) -> float:
    known = values.dropna()
    return float(np.quantile(known, q)) if len(known) else np.nan


def _call_counts(calls: pd.DataFrame | None) -> dict[str, float]:
    if calls is None:
        return {"errors": np.nan, "timeouts": np.nan, "rejected": np.nan, "queue_ms": np.nan}
    made = calls[calls["kind"].isin(CALL_KINDS)]
    return {
        "errors": float(made["status"].isin(_FAILED).sum()),
        "timeouts": float((made["status"] == "timeout").sum()),
        "rejected": float((calls["kind"] == "breaker").sum()),
        "queue_ms": float(made["queue_ms"].mean()) if len(made) else np.nan,
    }


# --------------------------------------------------------------------------- explanations


def explain(
    table: pd.DataFrame,
    requests: pd.DataFrame,
    spans: pd.DataFrame | None,
    params: Mapping[str, Any],
) -> dict[str, list[str]]:
    """Per phase, in table order: what moved against the baseline, and why (see module doc).

    `params` are the run's parameter values by dotted key (capacities are named when known).
    """
    calls = _calls(requests, spans)
    rows = {str(r["phase"]): r for r in table.to_dict("records")}
    base = rows.get(BASELINE)
    out: dict[str, list[str]] = {}
    for name, row in rows.items():
        if name == BASELINE:
            out[name] = [_baseline_line(row, only=len(rows) == 1)]
            continue
        mine = requests[requests["phase"] == name]
        here = None if calls is None else calls[calls["phase"] == name]
        there = None if calls is None else calls[calls["phase"] == BASELINE]
        n, n0 = len(mine), base["requests"] if base is not None else 0
        lines = [_headline(row, base)]
        lines += _traffic(row, base)
        waits: list[str] = []
        if here is not None:
            waits = _queueing(here, there, params) + _timeouts(here, there, n, n0)
            lines += waits
            lines += _failures(here, there, n, n0)
            lines += _breakers(here, there, n, n0)
            lines += _fault_hits(here, name, params)
        lines += _handoffs(row, base, mine, here, params)
        lines += _tail(row, base, mine, requests[requests["phase"] == BASELINE], here, calls,
                       queued=bool(waits))  # fmt: skip
        lines += _shares(row, base)
        out[name] = lines
    return out


def _baseline_line(row: _Row, only: bool) -> str:
    where = (
        "no fault windows or spikes: the whole run is its baseline"
        if only
        else f"outside every window: {row['window']}"
    )
    return (
        f"**baseline** ({where}; {count(row['requests'])} requests, "
        f"{_rate(row['rate_per_s'])}): success {pct(row['success_rate'])}, "
        f"p50 {duration(row['p50_latency_ms'])}, p95 {duration(row['p95_latency_ms'])}, "
        f"cost per request {usd(row['cost_per_request_usd'])}, hand-offs "
        f"{pct(row['handoff_rate'])}."
    )


def _headline(row: _Row, base: _Row | None) -> str:
    head = (
        f"**{row['phase']}** ({row['window']}; {count(row['requests'])} requests, "
        f"{_rate(row['rate_per_s'])})"
    )
    if base is None:
        return (
            f"{head}: success {pct(row['success_rate'])}, p95 "
            f"{duration(row['p95_latency_ms'])}, cost per request "
            f"{usd(row['cost_per_request_usd'])}; the run has no baseline requests to compare "
            "with."
        )
    moved, same = [], []
    d = row["success_rate"] - base["success_rate"]
    if abs(d) >= 0.01:
        moved.append(
            f"success {'fell' if d < 0 else 'rose'} {abs(100 * d):.1f} pp to "
            f"{pct(row['success_rate'])}"
        )
    else:
        same.append(f"success ({pct(row['success_rate'])})")
    for key, what, show, step in (
        ("p50_latency_ms", "p50", duration, 0.25),
        ("p95_latency_ms", "p95", duration, 0.25),
        ("cost_per_request_usd", "cost per request", usd, 0.10),
    ):
        new, old = float(row[key]), float(base[key])
        if np.isnan(new) or np.isnan(old):
            continue
        if (old > 0 and abs(new / old - 1) < step) or old == new:
            same.append(f"{what} ({show(new)})")
        else:
            times = f", {number(new / old, digits=2)}x" if old > 0 and new / old >= 2 else ""
            verb = "rose" if new > old else "fell"
            moved.append(f"{what} {verb} from {show(old)} to {show(new)}{times}")
    d = row["handoff_rate"] - base["handoff_rate"]
    if abs(d) >= 0.01:
        moved.append(
            f"hand-offs {'rose' if d > 0 else 'fell'} from {pct(base['handoff_rate'])} to "
            f"{pct(row['handoff_rate'])}"
        )
    text = f"{head}: " + ("; ".join(moved) if moved else "nothing moved against the baseline")
    if same and moved:
        text += "; about the same: " + ", ".join(same)
    return text + "."


def _traffic(row: _Row, base: _Row | None) -> list[str]:
    if base is None or not base["rate_per_s"] > 0 or not row["rate_per_s"] > 0:
        return []
    ratio = row["rate_per_s"] / base["rate_per_s"]
    if ratio < 1.25:
        return []
    return [
        f"Traffic arrived at {_rate(row['rate_per_s'])}, {number(ratio, digits=2)}x the "
        f"baseline's {_rate(base['rate_per_s'])}."
    ]


def _rate(per_s: float) -> str:
    return "-" if np.isnan(per_s) else f"{per_s:.1f}/s"


def _n(n: int, word: str) -> str:
    """`1 call`, `2 calls`."""
    return f"{count(n)} {word}{'' if n == 1 else 's'}"


def _material(n: int, per_request: float, before: float) -> bool:
    """Worth naming: at least 3, and at least twice the baseline's rate per request."""
    return n >= 3 and per_request >= 2 * before


def _made(calls: pd.DataFrame | None) -> pd.DataFrame | None:
    return None if calls is None else calls[calls["kind"].isin(CALL_KINDS)]


def _capacity(target: str, tier: str, params: Mapping[str, Any]) -> str:
    cap = params.get(f"models.{target}.capacity", params.get(f"tools.{target}.capacity"))
    parts = [p for p in (tier, f"capacity {cap}" if cap else "") if p]
    return f" ({', '.join(parts)})" if parts else ""


def _queueing(
    here: pd.DataFrame, there: pd.DataFrame | None, params: Mapping[str, Any]
) -> list[str]:
    made, base = _made(here), _made(there)
    assert made is not None
    if not len(made):
        return []
    stats = made.groupby("target").agg(mean=("queue_ms", "mean"), tier=("tier", "first"),
                                       p95=("queue_ms", lambda q: q.quantile(0.95)))  # fmt: skip
    before = base.groupby("target")["queue_ms"].mean() if base is not None else None
    parts = []
    for target, r in stats.sort_values("mean", ascending=False).iterrows():
        old = float(before.get(target, 0.0)) if before is not None else 0.0
        if r["mean"] < 100 or r["mean"] < 2 * old:
            continue
        parts.append(
            f"{target}{_capacity(str(target), str(r['tier'] or ''), params)} a mean "
            f"{duration(r['mean'])} (p95 {duration(r['p95'])}; baseline {duration(old)})"
        )
    if not parts:
        return []
    return ["Calls waited for capacity: " + ", ".join(parts[:3]) + "."]


def _by_target(calls: pd.DataFrame, top: int = 3) -> str:
    counts = calls["target"].value_counts()
    text = ", ".join(f"{t} {count(n)}" for t, n in counts.head(top).items())
    rest = int(counts.iloc[top:].sum())
    return text + (f" and {count(rest)} more" if rest else "")


def _timeouts(here: pd.DataFrame, there: pd.DataFrame | None, n: int, n0: int) -> list[str]:
    made, base = _made(here), _made(there)
    assert made is not None
    hit = made[made["status"] == "timeout"]
    hit_before = base[base["status"] == "timeout"] if base is not None else None
    lines = []
    for chat, what in ((True, "model"), (False, "tool")):
        group = hit[(hit["kind"] == "chat") == chat]
        before = 0 if hit_before is None else int(((hit_before["kind"] == "chat") == chat).sum())
        if not _material(len(group), len(group) / max(n, 1), before / n0 if n0 else 0.0):
            continue
        limit = float(group["duration_ms"].median())
        queued = float(group["queue_ms"].median())
        why = (
            f"a median {duration(queued)} of it spent queued for capacity"
            if queued >= 0.1 * limit
            else f"the calls themselves slow (queued a median {duration(queued)})"
        )
        lines.append(
            f"{_n(len(group), f'{what} call')} hit their timeout (a median {duration(limit)}; "
            f"{_by_target(group)}), {why}; baseline: {count(before)} in "
            f"{_n(n0, 'request')}."
        )
    return lines


def _failures(here: pd.DataFrame, there: pd.DataFrame | None, n: int, n0: int) -> list[str]:
    made, base = _made(here), _made(there)
    assert made is not None
    failed = made[made["status"].isin(_FAILED)]
    before = (
        base[base["status"].isin(_FAILED)].groupby(["target", "status"]).size()
        if base is not None
        else None
    )
    found = []
    for (target, status), g in failed.groupby(["target", "status"]):
        was = float(before.get((target, status), 0)) if before is not None else 0.0
        if not _material(len(g), len(g) / max(n, 1), was / n0 if n0 else 0.0):
            continue
        if status == "rate_limited":
            found.append((len(g), f"{_n(len(g), 'call')} to {target} were rate-limited (HTTP 429)"))
            continue
        took = float(g["duration_ms"].median())
        how = "failed fast" if took < _FAST_MS else "failed"
        codes = ", ".join(f"HTTP {int(c)}" if c else "no status"
                          for c in sorted(g["http.response.status_code"].unique()))  # fmt: skip
        found.append((len(g), f"{_n(len(g), 'call')} to {target} {how} ({codes} after a "
                              f"median {duration(took)})"))  # fmt: skip
    found.sort(key=lambda x: -x[0])
    if not found:
        return []
    text = "; ".join(t for _, t in found[:4])
    return [text[0].upper() + text[1:] + "."]


def _breakers(here: pd.DataFrame, there: pd.DataFrame | None, n: int, n0: int) -> list[str]:
    refused = here[here["kind"] == "breaker"]
    before = int((there["kind"] == "breaker").sum()) if there is not None else 0
    if not _material(len(refused), len(refused) / max(n, 1), before / n0 if n0 else 0.0):
        return []
    refused = refused.assign(target=refused["name"])
    return [
        f"Open circuit breakers refused {_n(len(refused), 'call')} without making them "
        f"({_by_target(refused)}; baseline {count(before)})."
    ]


def _fault_hits(here: pd.DataFrame, phase: str, params: Mapping[str, Any]) -> list[str]:
    if "fault" not in here.columns:
        return []
    kinds = {}
    i = 0
    while params.get(f"faults.{i}.kind") is not None:
        kind, target = params[f"faults.{i}.kind"], params.get(f"faults.{i}.target")
        kinds[params.get(f"faults.{i}.name") or f"{kind}:{target}"] = f" ({kind} on {target})"
        i += 1
    lines = []
    for label in phase.split("+"):
        if label == SPIKE:
            continue
        hit = here[here["fault"].str.contains(rf"(?:^|,){re.escape(label)}(?:,|$)")]
        if len(hit):
            lines.append(
                f"The {label} fault{kinds.get(label, '')} hit {_n(len(hit), 'call')} "
                f"({_by_target(hit)}): {_status_mix(hit)}."
            )
    return lines


def _status_mix(calls: pd.DataFrame) -> str:
    counts = calls["status"].value_counts()
    return ", ".join(f"{count(n)} {status}" for status, n in counts.items())


def _handoffs(
    row: _Row,
    base: _Row | None,
    mine: pd.DataFrame,
    here: pd.DataFrame | None,
    params: Mapping[str, Any],
) -> list[str]:
    handed = mine[mine["handoff"].astype(bool)]
    before = base["handoff_rate"] if base is not None else 0.0
    if not len(handed) or row["handoff_rate"] - before < 0.01:
        return []
    why, work = "", ""
    if here is not None:
        spans = here[here["kind"] == "handoff"]
        reasons = spans["name"].value_counts()
        if len(reasons):
            why = ": " + ", ".join(
                f"{count(n)} {'as a last resort' if r == 'last_resort' else f'for {r}'}"
                for r, n in reasons.items()
            )
            human = float((spans["duration_ms"] - spans["queue_ms"]).median())
            work = f", then a median {duration(human)} of a person's time"
    people = params.get("handoff.capacity")
    team = f" for one of {people} people" if people else " for a person"
    wait = float(handed["handoff_wait_ms"].median())
    waited = f"waited a median {duration(wait)}{team}" if wait > 0 else "found a person free"
    price = params.get("handoff.cost_usd")
    paid = ""
    if price and row["cost_per_request_usd"] > 0:
        share = len(handed) * float(price) / (row["cost_per_request_usd"] * row["requests"])
        paid = (f". At {usd(float(price))} a case, hand-offs are {pct(min(share, 1.0), 0)} of "
                "the phase's cost")  # fmt: skip
    return [
        f"{_n(len(handed), 'request')} ({pct(row['handoff_rate'])}) went to the human "
        f"team{why}; they {waited}{work}{paid}."
    ]


def _tail(
    row: _Row,
    base: _Row | None,
    mine: pd.DataFrame,
    before: pd.DataFrame,
    here: pd.DataFrame | None,
    calls: pd.DataFrame | None,
    queued: bool,
) -> list[str]:
    lines = []
    p95, answered = row["p95_latency_ms"], row["p95_answered_ms"]
    if row["handoff_rate"] > 0.05 and p95 > 2 * answered:
        was = f" (baseline {duration(base['p95_answered_ms'])})" if base is not None else ""
        lines.append(
            f"The p95 ({duration(p95)}) is the human team, not the stack: more than 5% of the "
            f"phase's requests were handed off; the requests the stack answered had a p95 of "
            f"{duration(answered)}{was}."
        )
    if base is None or np.isnan(answered) or not base["p95_answered_ms"] > 0:
        return lines
    ratio = answered / base["p95_answered_ms"]
    if 0.9 < ratio < 1.25:
        return lines
    faster = ratio <= 0.9
    why = ": the waits above" if queued and not faster else _tier_shift(
        mine, before, here, calls, faster)  # fmt: skip
    lines.append(
        f"The stack's own answers were {'faster' if faster else 'slower'} at the tail: p95 "
        f"{duration(answered)} against {duration(base['p95_answered_ms'])} at baseline{why}."
    )
    return lines


def _tier_shift(
    mine: pd.DataFrame,
    before: pd.DataFrame,
    here: pd.DataFrame | None,
    calls: pd.DataFrame | None,
    faster: bool,
) -> str:
    """Why answers got faster or slower: the tier whose share of answers moved most, whether
    it is the slowest tier at baseline, and how its calls ended in the phase."""
    answered = mine[~mine["handoff"].astype(bool)]
    answered_before = before[~before["handoff"].astype(bool)]
    if not len(answered) or not len(answered_before):
        return ""
    now = answered["served_by"].value_counts(normalize=True)
    was = answered_before["served_by"].value_counts(normalize=True)
    change = now.reindex(was.index.union(now.index), fill_value=0.0) - was.reindex(
        was.index.union(now.index), fill_value=0.0
    )
    tier = str(change.idxmin() if faster else change.idxmax())
    text = (
        f", as {tier} answered {pct(now.get(tier, 0.0))} of them "
        f"({pct(was.get(tier, 0.0))} at baseline)"
    )
    made = _made(calls)
    if made is not None:
        ok = made[(made["kind"] == "chat") & (made["status"] == "ok") & (made["phase"] == BASELINE)]
        speed = ok.groupby("tier")["duration_ms"].median()
        if len(speed) > 1 and tier in speed.index and speed.idxmax() == tier:
            text += (f"; {tier} is the slowest tier (a median call of "
                     f"{duration(float(speed[tier]))} at baseline)")  # fmt: skip
    if faster and here is not None:
        models = set(here.loc[(here["kind"] == "chat") & (here["tier"] == tier), "target"])
        fast = here[(here["kind"] == "chat") & (here["tier"] == tier)
                    & here["status"].isin(_FAILED) & (here["duration_ms"] < _FAST_MS)]  # fmt: skip
        refused = here[(here["kind"] == "breaker") & here["name"].isin(models)]
        if len(fast) or len(refused):
            text += (f": its calls failed fast ({count(len(fast))}) or an open breaker refused "
                     f"them ({count(len(refused))}), so requests fell back at once")  # fmt: skip
    return text


def _shares(row: _Row, base: _Row | None) -> list[str]:
    if base is None:
        return []
    lines = []
    d = row["wrong_rate"] - base["wrong_rate"]
    if d >= 0.02:
        lines.append(f"Wrong answers rose from {pct(base['wrong_rate'])} to "
                     f"{pct(row['wrong_rate'])} of requests.")  # fmt: skip
    d = row["escalation_rate"] - base["escalation_rate"]
    if abs(d) >= 0.05:
        verb = "rose" if d > 0 else "fell"
        lines.append(f"Escalations {verb} from {pct(base['escalation_rate'])} to "
                     f"{pct(row['escalation_rate'])}.")  # fmt: skip
    return lines


# --------------------------------------------------------------------------- the figures


def figure_notes(
    requests: pd.DataFrame,
    spans: pd.DataFrame | None,
    params: Mapping[str, Any],
    bucket_s: float | None = None,
) -> list[str]:
    """What explains two features of the figures: the latency CDF at the model call
    timeout, and timeline buckets (of `bucket_s` seconds) whose p95 is the human queue."""
    notes = []
    cdf = _timeout_step(requests, spans, params)
    if cdf:
        notes.append(cdf)
    if bucket_s:
        timeline = _timeline_jumps(requests, bucket_s)
        if timeline:
            notes.append(timeline)
    return notes


def _timeout_step(
    requests: pd.DataFrame, spans: pd.DataFrame | None, params: Mapping[str, Any]
) -> str:
    calls = _made(_calls(requests, spans))
    timed = None if calls is None else calls[(calls["kind"] == "chat")
                                             & (calls["status"] == "timeout")]  # fmt: skip
    if timed is not None and len(timed):
        limit = float(timed["duration_ms"].median())
    else:
        limit = float(params.get("stack.timeouts.model_call_ms") or np.nan)
    if np.isnan(limit) or not len(requests):
        return ""
    latency = requests["latency_ms"].to_numpy(dtype=float)
    above = int(((latency >= limit) & (latency < 1.1 * limit)).sum())
    below = int(((latency >= limit / 1.1) & (latency < limit)).sum())
    text = (
        f"Latency CDF at the model call timeout ({duration(limit)}): {count(above)} requests "
        f"({pct(above / len(latency))}) end within 10% above it, {count(below)} within 10% "
        "below it"
    )
    if above >= 2 * max(below, 1) and above >= 0.01 * len(latency):
        text += (
            ": that is the step at the timeout, requests whose call timed out and that were "
            "answered right after by a fallback"
        )
    else:
        text += ": no step there"
    if timed is not None and len(timed):
        ids = timed["request_id"].unique()
        hit = requests[requests["request_id"].isin(ids)]
        text += (
            f". {count(len(timed))} calls timed out, in {count(len(hit))} requests; "
            f"{pct(float(hit['handoff'].mean()))} of those ended with the human team, minutes "
            "later"
        )
    return text + "."


def _and(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _timeline_jumps(requests: pd.DataFrame, bucket_s: float) -> str:
    if not len(requests):
        return ""
    bucket = np.floor(requests["arrival_s"].to_numpy(dtype=float) / bucket_s).astype(int)
    frame = requests.assign(_bucket=bucket)
    groups = frame.groupby("_bucket")
    p95 = groups["latency_ms"].quantile(0.95)
    handed = groups["handoff"].mean()
    slow = p95 > 60_000
    if not slow.any():
        return ""
    queued = slow & (handed > 0.05)
    phase = groups["phase"].agg(lambda p: p.mode().iloc[0])
    both = [str(p) for p in dict.fromkeys(phase[slow].tolist()) if not slow[phase == p].all()]
    text = (
        f"Timeline: the p95 of a {number(bucket_s)} s bucket is above a minute in "
        f"{count(int(slow.sum()))} of {count(len(slow))} buckets, and {count(int(queued.sum()))} "
        "of those had more than 5% of their requests handed off: their p95 is a hand-off's "
        "time (the human queue and a person's work), not the stack's"
    )
    if both:
        text += (
            f". Within {_and(both)} the line jumps between seconds and minutes as a "
            "bucket's hand-offs cross 5% of its requests"
        )
    return text + "."
