"""Sweeping routing parameters: screen on the tape, confirm with the engine, recommend.

Screening: parameters that only change routing decisions are evaluated without
re-running the engine. The answer-confidence threshold comes from one *probe* run with
every dynamic off (no capacity limits, rate limits, breakers or retry budget) and the
threshold at 1 (always escalate), which records every good answer a request gets on its
way up the tiers; for any threshold the accepted answer is then the first with enough
confidence, so success, cost, tokens and exact latency percentiles follow from the
recorded attempts (harness.sweep._screen). The classifier's minimum confidence and the
route tables (`ROUTING`) come from a *route probe*, the probe recorded from every
starting tier (harness.sweep._probe). Failures keep their price: timed-out calls before an
answer are billed in its cost, and an answer that would go to a human for approval
carries the human's time, price and verdict (the tape's). With no dynamics in the suite
(the human team's capacity included) this is exactly what the engine would produce. A
grid over parameters that change dynamics (retries, timeouts, capacity, ...) is screened
by one full run per setting at the suite's seed instead.

Confirmation (harness.sweep._confirm): the best settings and the current one run through
the full engine (queues, breakers, faults), because routing changes load and load
changes latency: R replications each, plus one run at the suite's seed. Every threshold of
the suite is a constraint judged at its confidence bound; `--gates` adds CI's gates
against a baseline. The recommendation is the best feasible finalist by the mean of
`sweep.objective`, with warnings when its value sits on the edge of the grid and a plain
statement of any mechanism it switches off (harness.sweep._advice).
"""

from __future__ import annotations

import itertools
import math
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from harness.errors import Problem, SpecError
from harness.executor import Executor, InlineExecutor
from harness.spec import LoadedSuite, load_suite
from harness.spec._load import locate_key, suggest
from harness.sweep._advice import edge_warnings, short_names, switched_off
from harness.sweep._confirm import (
    Baseline,
    SweepError,
    Unit,
    across,
    constraints,
    full_run,
    read_baseline,
)
from harness.sweep._probe import (
    ROUTING,
    THRESHOLD,
    Probe,
    is_routing,
    probe,
    route_probe,
    routing_problem,
)
from harness.sweep._screen import screen
from harness.thresholds import OPERATORS, Threshold, compile_thresholds

if TYPE_CHECKING:
    from harness.compare import Gates

__all__ = [
    "ROUTING", "SCREENABLE", "Probe", "SweepError", "Unit", "full_run", "probe", "short_names",
]  # fmt: skip

SCREENABLE = (THRESHOLD,)
"""The parameter screened for many values at once from one probe (the threshold); the
routing parameters in `ROUTING` are screened too, from a route probe."""
METRICS = (
    "success_rate", "cost_per_request_usd", "cost_per_success_usd", "tokens_per_request",
    "mean_latency_ms", "p50_latency_ms", "p95_latency_ms", "p99_latency_ms",
)  # fmt: skip
"""Metrics a sweep reports per setting and route (all in the run summary too)."""
INTERVAL_METRICS = (*METRICS, "escalation_rate")
"""Metrics confirmed rows carry an across-replication interval for (`<m>_ci_low/high`)."""
_RANGE = re.compile(r"^\s*([-+0-9.eE]+)\s*:\s*([-+0-9.eE]+)\s*:\s*([-+0-9.eE]+)\s*$")


# --------------------------------------------------------------------------- the grid


def expand(values: list[Any] | str) -> list[Any]:
    """A list as is, or an inclusive `start:stop:step` range (float steps rounded cleanly)."""
    if isinstance(values, list):
        return values
    m = _RANGE.match(values)
    if not m:
        raise ValueError(f"expected a list or start:stop:step, got {values!r}")
    start, stop, step = (float(x) for x in m.groups())
    if step <= 0 or stop < start:
        raise ValueError(f"need step > 0 and stop >= start in {values!r}")
    count = math.floor((stop - start) / step + 1e-9) + 1
    digits = max(0, -math.floor(math.log10(step)) + 2) if step < 1 else 6
    out = [round(start + i * step, digits) for i in range(count)]
    return [int(v) if all(float(x).is_integer() for x in m.groups()) else v for v in out]


@dataclass(frozen=True)
class Setting:
    """One point of the grid."""

    id: int
    params: dict[str, Any]

    def overrides(self) -> list[str]:
        """The `--set` flags that apply this setting."""
        return [f"{k}={_yaml(v)}" for k, v in self.params.items()]

    def label(self) -> str:
        """`name=value, ...` with each parameter's shortest name that tells it apart."""
        names = short_names(list(self.params))
        return ", ".join(f"{names[k]}={v}" for k, v in self.params.items())


def _yaml(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def grid_settings(loaded: LoadedSuite, grid: Mapping[str, list[Any] | str]) -> list[Setting]:
    """The cartesian product of the grid, each value checked by loading the suite with it."""
    problems: list[Problem] = []
    axes: dict[str, list[Any]] = {}
    for key, values in grid.items():
        try:
            axes[key] = expand(values)
        except ValueError as err:
            where, line = locate_key(("sweep", "grid", key), file=str(loaded.path),
                                     lines=loaded.lines, overridden=loaded.overrides)  # fmt: skip
            problems.append(Problem(where, line, f"sweep.grid.{key}", str(err)))
    if problems:
        raise SpecError(problems)
    if not axes:
        raise SweepError(
            f"{loaded.path}: nothing to sweep; add `sweep: {{grid: {{param: [values]}}}}` "
            "or pass --grid FILE"
        )
    for key, values in axes.items():  # each value must make a valid suite
        for v in {_yaml(x) for x in values}:
            load_suite(loaded.path, [*_flags(loaded), f"{key}={v}"])
    combos = itertools.product(*axes.values())
    return [Setting(i, dict(zip(axes, c, strict=True))) for i, c in enumerate(combos)]


def _flags(loaded: LoadedSuite) -> list[str]:
    return [text for text in loaded.overrides.values()]


# --------------------------------------------------------------------------- constraints


_PCT = {"med": 50.0}


def screen_value(t: Threshold, row: Mapping[str, float]) -> float | None:
    """A threshold's value from screened metrics of its route, or None if screening can't tell."""
    agg, metric = t.aggregation, t.metric
    if metric == "success" and agg == "rate":
        return row["success_rate"]
    if metric == "latency_ms" and agg in ("p", "med"):
        q = t.percentile if agg == "p" else 50.0
        return row.get(f"p{q:g}_latency_ms")
    if metric == "latency_ms" and agg == "avg":
        return row["mean_latency_ms"]
    if metric == "cost_usd" and agg == "avg":
        return row["cost_per_request_usd"]
    if metric == "tokens" and agg == "avg":
        return row["tokens_per_request"]
    return None


def objective_of(loaded: LoadedSuite) -> tuple[str, str]:
    """`min cost_per_request_usd` -> ("min", "cost_per_request_usd"); bad ones are located."""
    text = loaded.suite.sweep.objective
    parts = text.split()
    metrics = [*METRICS, "escalation_rate"]
    problem = None
    if len(parts) != 2 or parts[0] not in ("min", "max"):
        problem = (f"expected `min METRIC` or `max METRIC`, got {text!r}",
                   "e.g. min cost_per_request_usd")  # fmt: skip
    elif parts[1] not in metrics:
        close = suggest(parts[1], metrics)
        hint = f"did you mean {close}?" if close else "metrics: " + ", ".join(metrics)
        problem = (f"unknown metric {parts[1]!r}", hint)
    if problem is not None:
        where, line = locate_key(("sweep", "objective"), file=str(loaded.path),
                                 lines=loaded.lines, overridden=loaded.overrides)  # fmt: skip
        raise SpecError([Problem(where, line, "sweep.objective", *problem)])
    return parts[0], parts[1]


@dataclass
class Row:
    """One setting on one route at one stage."""

    setting: int
    stage: str
    route: str
    metrics: dict[str, float]


@dataclass
class SweepResult:
    """Everything a sweep found."""

    settings: list[Setting]
    rows: list[Row]
    current: int | None
    feasible: dict[tuple[int, str], bool]
    checks: dict[tuple[int, str], list[dict[str, Any]]]
    objective: tuple[str, str]
    recommended: int | None = None
    binding: str | None = None
    closest: int | None = None
    target: dict[str, Any] | None = None
    screened: int = 0
    confirmed: int = 0
    notes: list[str] = field(default_factory=list)
    replications: int = 1
    seeds: list[int] = field(default_factory=list)
    """The replications' seeds (`replication_seed(root, r)`), the same for every finalist."""
    seed: int = 0
    """The suite's own seed: every finalist also runs once at it."""
    runs: int = 0
    """Full runs through the engine, all stages."""
    tape: bool = False
    """Screened on the tape (else by one full run per setting)."""
    finalists: list[int] = field(default_factory=list)
    at_seed: dict[int, dict[str, dict[str, float]]] = field(default_factory=dict)
    """Per finalist, its run at the suite's seed: metrics per route."""
    gates: dict[int, dict[str, Any]] = field(default_factory=dict)
    """Per finalist, the gate verdict (`harness.sweep._confirm.gate`)."""
    gating: dict[str, Any] | None = None
    """The gates file and baseline, when gated."""
    reasons: dict[int, list[dict[str, str]]] = field(default_factory=dict)
    """Per finalist (and gate-rejected setting), why it is infeasible: `constraint` (what
    failed) and `detail` (how); empty when feasible."""
    warnings: list[dict[str, Any]] = field(default_factory=list)
    """Edge-of-grid warnings for the recommended (or closest) setting."""
    switched_off: list[str] = field(default_factory=list)
    """Mechanisms the recommended setting turns off, said plainly."""
    gate_rejected: list[int] = field(default_factory=list)
    """Settings gated at the suite's seed that failed, before any replication."""


def _metrics_row(summary: Mapping[str, Any]) -> dict[str, float]:
    return {k: float(summary[k]) for k in METRICS} | {
        "requests": float(summary["requests"]),
        "violations": float(summary.get("violations", 0)),
        "escalation_rate": float(summary["escalation_rate"]),
    }


def _screen_checks(
    thresholds: list[Threshold], by_route: Mapping[str, Mapping[str, float]]
) -> list[dict[str, Any]]:
    out = []
    for t in thresholds:
        routes = [v for k, v in t.tags if k == "route"]
        other = [k for k, _ in t.tags if k != "route"]
        route = routes[0] if routes else "all"
        row = by_route.get(route)
        value = screen_value(t, row) if row is not None and not other else None
        if value is None or math.isnan(value):
            continue  # confirmation checks it
        passed = OPERATORS[t.op](value, t.limit)
        out.append({"key": t.key, "expression": t.expression, "value": value, "passed": passed})
    return out


def run_sweep(
    loaded: LoadedSuite,
    grid: Mapping[str, list[Any] | str],
    *,
    confirm: int,
    replications: int = 5,
    gates: Gates | None = None,
    baseline: str | Path | None = None,
    executor: Executor | None = None,
    policy: str | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> SweepResult:
    """Screen the grid, confirm the best and the current setting, recommend one.

    Stages: screen every setting (on the tape, or by one full run at the suite's seed when
    the grid changes dynamics); with gates, run the best screened settings at the suite's
    seed and gate them as `evalx compare` would, in screen order, until `confirm` pass
    (at most `GATE_BUDGET` x `confirm` runs); then `replications` full runs of each
    finalist (the `confirm` best, and the current setting) judge the constraints at their
    confidence bounds. `gates` and `baseline` turn the gates on (either alone: the default
    gates, or the suite as it stands as the baseline).
    """
    from harness.replicate import replication_seed

    if replications < 1:
        raise SweepError(f"--replications must be at least 1, got {replications}")
    if confirm < 1:
        raise SweepError(f"--confirm must be at least 1, got {confirm}")
    base = read_baseline(baseline) if baseline is not None else None
    gated = gates is not None or base is not None
    if gated and gates is None:
        from harness.compare import Gates

        gates = Gates()
    ex = executor or InlineExecutor()
    thresholds = compile_thresholds(loaded)
    objective = objective_of(loaded)
    settings = grid_settings(loaded, grid)
    flags = _flags(loaded)
    root = loaded.suite.seed
    seeds = [replication_seed(root, r) for r in range(replications)]
    result = SweepResult(settings, [], _current_setting(loaded, settings), {}, {}, objective,
                         replications=replications, seeds=seeds, seed=root)  # fmt: skip
    keys = list(settings[0].params)
    routing = [k for k in keys if is_routing(k)]
    problem = routing_problem(loaded.suite) if routing else None
    if problem is not None:
        result.notes.append(f"{', '.join(routing)} cannot be screened on the tape: {problem}")
    dynamic = [k for k in keys if k != THRESHOLD and (problem is not None or not is_routing(k))]
    path, name = str(loaded.path), loaded.suite.name

    def run(stage: str, units: list[Unit]) -> list[dict[str, Any]]:
        outs = []
        for done, out in enumerate(ex.map(full_run, units)):
            outs.append(out)
            if progress is not None:
                progress(stage, done + 1, len(units))
        result.runs += len(units)
        return outs

    if gated and base is None:  # the suite as it stands, at its seed
        own = run("baseline", [Unit(path, (*flags, f"seed={root}"), policy, requests=True)])[0]
        base = Baseline(f"the suite as it stands (seed {root})", own["requests"].to_pandas(),
                        name, root)  # fmt: skip
    rule = None
    if gated:
        assert gates is not None and base is not None
        result.gating = {"gates": gates.file or "default gates", "baseline": base.name}
        rule = (base, gates, name, root)

    def unit(sid: int, seed: int) -> Unit:
        return Unit(path, (*flags, *settings[sid].overrides(), f"seed={seed}"), policy,
                    gate=rule if seed == root else None)  # fmt: skip

    at_seed: dict[int, dict[str, Any]] = {}
    if not dynamic:
        _screen_on_tape(result, loaded, routing, thresholds, policy, progress)
        if gated and result.current is not None:
            assert gates is not None
            _screen_gates(result, gates)
    else:
        result.notes.append(
            f"{', '.join(dynamic)}: what the tape cannot replay (dynamics, or a stack's own "
            f"routing); every setting was screened by one full run at the suite's seed ({root})"
        )
        for st, out in zip(settings, run("screen", [unit(s.id, root) for s in settings]),
                           strict=True):  # fmt: skip
            at_seed[st.id] = out
            for summary in out["summary"]:
                result.rows.append(Row(st.id, "screen", str(summary["route"]),
                                       _metrics_row(summary)))  # fmt: skip
            result.checks[(st.id, "screen")] = out["thresholds"]
            result.feasible[(st.id, "screen")] = all(t["passed"] for t in out["thresholds"])
        result.screened = len(settings)
    order = {s.id: (not result.feasible[(s.id, "screen")], _objective_value(result, s.id, "screen"))
             for s in settings}  # fmt: skip
    ranked = sorted(order, key=lambda sid: order[sid])
    if gated:
        finalists = _gate_stage(result, ranked, confirm, at_seed,
                                lambda ids: run("gates", [unit(i, root) for i in ids]))  # fmt: skip
    else:
        finalists = ranked[:confirm]
    if result.current is not None and result.current not in finalists:
        finalists.append(result.current)
    result.finalists = finalists
    plan = [(sid, r) for sid in finalists for r in range(replications)]
    plan += [(sid, -1) for sid in finalists if sid not in at_seed]  # -1: the suite's seed
    outs = run("confirm", [unit(sid, seeds[r] if r >= 0 else root) for sid, r in plan])
    outputs = dict(zip(plan, outs, strict=True))
    at_seed.update({sid: out for (sid, r), out in outputs.items() if r == -1})
    for n_done, sid in enumerate(finalists):
        reps = [outputs[(sid, r)] for r in range(replications)]
        for route, metrics in sorted(across([o["summary"] for o in reps],
                                            INTERVAL_METRICS).items()):  # fmt: skip
            result.rows.append(Row(sid, "confirm", route, metrics))
        checks = constraints(thresholds, [o["thresholds"] for o in reps])
        result.checks[(sid, "confirm")] = checks
        own = at_seed[sid]
        result.at_seed[sid] = {str(s["route"]): _metrics_row(s) for s in own["summary"]}
        reasons = [{"constraint": f"{c['key']} {c['expression']}", "detail": _how(c)}
                   for c in checks if not c["passed"]]  # fmt: skip
        if gated:
            result.gates[sid] = own["gate"]
            reasons += _gate_reasons(own["gate"])
        else:
            reasons += [{"constraint": f"{t['key']} {t['expression']}",
                         "detail": f"fails at the suite's seed ({root})"}
                        for t in own["thresholds"] if not t["passed"]]  # fmt: skip
        result.reasons[sid] = reasons
        result.feasible[(sid, "confirm")] = not reasons
        result.confirmed = n_done + 1
    _recommend(result, finalists)
    _replication_notes(result)
    pick = result.recommended if result.recommended is not None else result.closest
    if pick is not None:
        axes = {k: expand(v) for k, v in grid.items()}
        result.warnings = edge_warnings(loaded, flags, grid, axes, settings[pick].params)
    if result.recommended is not None:
        result.switched_off = switched_off(loaded, settings[result.recommended].params)
    return result


def _replication_notes(result: SweepResult) -> None:
    """Say which constraints' intervals the replications are too few for (bench/coverage.py
    measured t-intervals under-covering below `harness.replicate.min_replications`)."""
    r = result.replications
    short: dict[str, int] = {}
    for sid in result.finalists:
        for c in result.checks[(sid, "confirm")]:
            if c["min_replications"] > r:
                name = f"{c['key']} {c['expression']}"
                short[name] = max(short.get(name, 0), c["min_replications"])
    if not short:
        return
    need = max(short.values())
    names = "; ".join(short) if len(short) <= 3 else f"{len(short)} constraints"
    result.notes.append(
        f"{r} replications are too few for the intervals of {names}: they under-cover "
        f"(bench/coverage.py); --replications {need} for every constraint"
    )


def _how(c: Mapping[str, Any]) -> str:
    """How a constraint failed over the replications."""
    if c["bound"] in ("upper", "lower"):
        return f"fails at its {c['bound']} 95% bound"
    return f"fails in {c['replications'] - c['replications_passed']} of {c['replications']} runs"


def _gate_reasons(verdict: Mapping[str, Any]) -> list[dict[str, str]]:
    return [{"constraint": f"gate {f['check']}", "detail": f["detail"]}
            for f in verdict["failures"]]  # fmt: skip


GATE_BUDGET = 3
"""With gates, at most this many times `confirm` settings are gated at the suite's seed
while looking for `confirm` that pass."""


def _gate_stage(
    result: SweepResult,
    ranked: list[int],
    confirm: int,
    at_seed: dict[int, dict[str, Any]],
    run: Callable[[list[int]], list[dict[str, Any]]],
) -> list[int]:
    """Gate settings in screen order at the suite's seed until `confirm` pass; those are
    the finalists. Settings already run at the seed (a full-run screen) cost no new run."""
    passed: list[int] = []
    checked = 0
    i = 0
    while len(passed) < confirm and i < len(ranked) and checked < GATE_BUDGET * confirm:
        batch = ranked[i : i + confirm - len(passed)]
        i += len(batch)
        todo = [sid for sid in batch if sid not in at_seed]
        at_seed.update(zip(todo, run(todo), strict=True) if todo else ())
        checked += len(todo)
        for sid in batch:
            verdict = at_seed[sid]["gate"]
            result.gates[sid] = verdict
            if verdict["passed"]:
                passed.append(sid)
            else:
                result.reasons[sid] = _gate_reasons(verdict)
    rejected = [sid for sid in ranked[:i] if sid not in passed]
    if rejected:
        result.notes.append(
            f"gated at the suite's seed before replicating: {i} settings in screen order, "
            f"{len(rejected)} failed the gates (see recommendation.json: gate_rejected)"
        )
    result.gate_rejected = rejected
    return passed


def _screen_gates(result: SweepResult, gates: Gates) -> None:
    """Rank by the gates too: a screened setting whose screened metrics are worse than the
    current setting's by more than a gate's tolerance (significance aside) is ranked as
    infeasible. A heuristic for the order only; the gate stage decides."""
    current = result.current
    assert current is not None
    ref = {r.route: r.metrics for r in result.rows if r.setting == current and r.stage == "screen"}
    rows: dict[int, dict[str, dict[str, float]]] = {}
    for r in result.rows:
        if r.stage == "screen":
            rows.setdefault(r.setting, {})[r.route] = r.metrics
    for sid, by_route in rows.items():
        misses = []
        for route, metrics in by_route.items():
            for metric, tol in gates.tolerances.items():
                a, b = ref.get(route, {}).get(metric), metrics.get(metric)
                if a is None or b is None or math.isnan(a) or math.isnan(b):
                    continue
                change = (b - a) / abs(a) if tol.relative and a else b - a
                if tol.worse(metric) * change > abs(tol.value):
                    misses.append({"key": f"gate {metric}{{route:{route}}}",
                                   "expression": f"vs current ({tol.text})", "value": b,
                                   "passed": False})  # fmt: skip
        if misses:
            result.checks[(sid, "screen")] = [*result.checks[(sid, "screen")], *misses]
            result.feasible[(sid, "screen")] = False


def _screen_on_tape(
    result: SweepResult,
    loaded: LoadedSuite,
    routing: list[str],
    thresholds: list[Threshold],
    policy: str | None,
    progress: Callable[[str, int, int], None] | None,
) -> None:
    """Screen every setting on the tape: one probe, or a route probe for routing tables."""
    settings = result.settings
    flags = _flags(loaded)
    base = load_suite(loaded.path, flags, policy).suite
    percentiles = sorted({50.0, 95.0, 99.0} | {
        t.percentile for t in thresholds if t.aggregation == "p" and t.percentile is not None
    })  # fmt: skip
    groups: dict[tuple[tuple[str, Any], ...], list[Setting]] = {}
    for st in settings:
        groups.setdefault(tuple((k, st.params[k]) for k in routing), []).append(st)
    rp = route_probe(base, routing) if routing else None
    approximate = 0
    default = base.stack.escalation.confidence_threshold
    for values, members in groups.items():
        if rp is None:
            pr = probe(base)
        else:
            own = load_suite(loaded.path, [*flags, *[f"{k}={_yaml(v)}" for k, v in values]],
                             policy).suite  # fmt: skip
            pr = rp.probe_for(own)
        approximate = max(approximate, pr.approximate)
        thetas = np.array([float(m.params.get(THRESHOLD, default)) for m in members])
        metrics = screen(pr.attempts, thetas, percentiles)
        for j, member in enumerate(members):
            by_route: dict[str, dict[str, float]] = {}
            for g, route in enumerate([*pr.routes, "all"]):
                row = {k: float(metrics[k][j, g]) for k in metrics if k != "share_tier"}
                for ti, tier in enumerate(pr.tiers):
                    row[f"share_{tier}"] = float(metrics["share_tier"][j, g, ti])
                by_route[route] = row
                result.rows.append(Row(member.id, "screen", route, row))
            checks = _screen_checks(thresholds, by_route)
            result.checks[(member.id, "screen")] = checks
            result.feasible[(member.id, "screen")] = all(c["passed"] for c in checks)
        result.screened += len(members)
        if progress is not None:
            progress("screen", result.screened, len(settings))
    result.tape = True
    if routing:
        result.notes.append(
            f"{', '.join(routing)} screened on the tape from a route probe (one probe run per "
            "starting tier): exact without dynamics, like the threshold"
        )
    if approximate:
        result.notes.append(
            f"screening is approximate for {approximate} requests whose cheaper answers "
            "would carry an evasive action (its run time is not on the probe's path); "
            "confirmed rows are exact"
        )


def _current_setting(loaded: LoadedSuite, settings: Sequence[Setting]) -> int | None:
    """The grid point equal to the suite's own values, if the grid contains it."""
    params = loaded.parameters()
    for s in settings:
        if all(_same(params.get(k, {}).get("value"), v) for k, v in s.params.items()):
            return int(s.id)
    return None


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, int | float) and isinstance(b, int | float):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
    return bool(a == b)


def _objective_value(result: SweepResult, sid: int, stage: str) -> float:
    sense, metric = result.objective
    for row in result.rows:
        if row.setting == sid and row.stage == stage and row.route == "all":
            v = row.metrics.get(metric, math.nan)
            return (v if sense == "min" else -v) if not math.isnan(v) else math.inf
    return math.inf


def _recommend(result: SweepResult, finalists: list[int]) -> None:
    """Best feasible finalist by its mean objective; else the most common reason it
    fails (the binding constraint) and the finalist with the fewest reasons."""
    feasible = [s for s in finalists if result.feasible[(s, "confirm")]]
    if feasible:
        result.recommended = min(feasible, key=lambda s: _objective_value(result, s, "confirm"))
        return
    looked = [*finalists, *result.gate_rejected]
    misses = Counter(
        c for s in looked for c in dict.fromkeys(r["constraint"] for r in result.reasons[s])
    )
    if misses:
        binding = max(misses, key=lambda k: misses[k])
        result.binding = f"{binding} ({misses[binding]} of {len(looked)} settings)"
    if finalists:
        rank = {s: (len(result.reasons[s]), _objective_value(result, s, "confirm"))
                for s in finalists}  # fmt: skip
        result.closest = min(finalists, key=lambda s: rank[s])


def target_share(loaded: LoadedSuite, target: str, policy: str | None = None) -> dict[str, Any]:
    """The RouteLLM question: the threshold that sends a share of traffic to a tier.

    `target` reads `share{served_by:premium}=0.2`, optionally with `,route:NAME`.
    """
    from harness.sweep._screen import threshold_for_share

    m = re.match(r"^\s*share\{([^}]*)\}\s*=\s*([0-9.]+)\s*$", target)
    if not m:
        raise SweepError(f"--target {target!r}: write share{{served_by:TIER}}=SHARE")
    tags = dict(part.split(":", 1) for part in m.group(1).split(",") if ":" in part)
    share = float(m.group(2))
    pr = probe(load_suite(loaded.path, _flags(loaded), policy).suite)
    tier = tags.get("served_by")
    if tier not in pr.tiers:
        raise SweepError(f"--target: served_by must be one of {', '.join(pr.tiers)}")
    route = tags.get("route")
    group = None
    if route is not None:
        if route not in pr.routes:
            raise SweepError(f"--target: route must be one of {', '.join(pr.routes)}")
        group = pr.routes.index(route)
    theta = threshold_for_share(pr.attempts, pr.tiers.index(tier), share, group)
    theta = min(max(theta, 0.0), 1.0)  # +inf: escalate everything, which 1.0 also does
    # The shortest decimal with exactly the breakpoint's share: 0.7355, not 0.7355452179908752.
    candidates = np.array([*(round(theta, places) for places in range(1, 11)), theta])
    got = screen(pr.attempts, candidates, (95.0,))
    g = group if group is not None else pr.attempts.n_groups
    shares = got["share_tier"][:, g, pr.tiers.index(tier)]
    first = int(np.flatnonzero(shares == shares[-1])[0])
    theta = float(candidates[first])
    return {
        "target": target,
        "parameter": THRESHOLD,
        "threshold": theta,
        "share": float(shares[first]),
        "set": f"--set {THRESHOLD}={theta!r}",
    }


# --------------------------------------------------------------------------- outputs


def sweep_frame(result: SweepResult) -> Any:
    """sweep.parquet as a DataFrame: one row per setting x stage x route, parameters as
    columns; confirmed rows hold means over the replications and their intervals."""
    import pandas as pd

    records = []
    for row in result.rows:
        setting = result.settings[row.setting]
        records.append({
            "setting": row.setting,
            "stage": row.stage,
            "route": row.route,
            **setting.params,
            **row.metrics,
            "feasible": result.feasible.get((row.setting, row.stage), False),
            "current": row.setting == result.current,
            "recommended": row.setting == result.recommended,
        })  # fmt: skip
    return pd.DataFrame.from_records(records)


def frontier_points(result: SweepResult, frame: Any | None = None) -> Any:
    """One row per setting on route `all` for `harness.plots.frontier_png`: confirmed
    settings at their means with 95% intervals, the others as screened."""
    import pandas as pd

    frame = sweep_frame(result) if frame is None else frame
    rows = frame[frame["route"] == "all"]
    best = rows.sort_values("stage").drop_duplicates("setting", keep="first")  # confirm first
    nan = pd.Series(math.nan, index=best.index)
    return pd.DataFrame({
        "setting": best["setting"],
        "label": [result.settings[s].label() for s in best["setting"]],
        "stage": best["stage"],
        "success_rate": best["success_rate"],
        "cost_per_request_usd": best["cost_per_request_usd"],
        "p95_latency_ms": best["p95_latency_ms"],
        "feasible": best["feasible"],
        "success_low": best.get("success_rate_ci_low", nan),
        "success_high": best.get("success_rate_ci_high", nan),
        "cost_low": best.get("cost_per_request_usd_ci_low", nan),
        "cost_high": best.get("cost_per_request_usd_ci_high", nan),
    })  # fmt: skip


def _all_row(result: SweepResult, sid: int, stage: str) -> dict[str, float] | None:
    for row in result.rows:
        if row.setting == sid and row.stage == stage and row.route == "all":
            return row.metrics
    return None


def gaps(result: SweepResult) -> list[dict[str, Any]]:
    """Screen vs full run on route `all`, both at the suite's seed, for every finalist
    screened on the tape: what the dynamics-free screen missed."""
    if not result.tape:
        return []
    out = []
    for s in result.settings:
        screened = _all_row(result, s.id, "screen")
        confirmed = result.at_seed.get(s.id, {}).get("all")
        if screened is None or confirmed is None:
            continue
        for metric in METRICS:
            a, b = screened[metric], confirmed[metric]
            out.append({"setting": s.id, "label": s.label(), "metric": metric, "screen": a,
                        "confirm": b, "difference": b - a})  # fmt: skip
    return out


def _clean(value: Any) -> Any:
    """NaN as None, recursively: recommendation.json stays strict JSON."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def recommendation(result: SweepResult, suite_path: str) -> dict[str, Any]:
    """recommendation.json: the pick, its constraints with margins, intervals and chances
    of holding at another seed, its gate verdict, the --set line; or what binds."""

    def describe(sid: int | None) -> dict[str, Any] | None:
        if sid is None:
            return None
        s = result.settings[sid]
        flags = " ".join(f"--set {flag}" for flag in s.overrides())
        return {
            "setting": sid,
            "parameters": s.params,
            "set": flags,
            "command": f"evalx run {suite_path} {flags}",
            "replications": result.replications if sid in result.finalists else 0,
            "metrics": _all_row(result, sid, "confirm") or _all_row(result, sid, "screen"),
            "at_suite_seed": result.at_seed.get(sid, {}).get("all"),
            "constraints": result.checks.get((sid, "confirm"), []),
            "gate": result.gates.get(sid),
            "feasible": result.feasible.get((sid, "confirm")),
            "why_not": result.reasons.get(sid, []),
        }

    sense, metric = result.objective
    finalists = [describe(s) for s in result.finalists]
    out: dict[str, Any] = _clean(
        {
            "objective": {"sense": sense, "metric": metric},
            "settings": len(result.settings),
            "screened": result.screened,
            "screened_on": "tape" if result.tape else "one full run per setting",
            "confirmed": result.confirmed,
            "replications": result.replications,
            "seeds": result.seeds,
            "suite_seed": result.seed,
            "runs": result.runs,
            "gating": result.gating,
            "feasible": result.recommended is not None,
            "recommended": describe(result.recommended),
            "switched_off": result.switched_off,
            "warnings": [w["message"] for w in result.warnings],
            "wider_grid": [w["suggested"] for w in result.warnings],
            "current": describe(result.current),
            "binding_constraint": result.binding,
            "closest": describe(result.closest),
            "finalists": finalists,
            "gate_rejected": [
                {
                    "setting": sid,
                    "parameters": result.settings[sid].params,
                    "gate": result.gates.get(sid),
                }
                for sid in result.gate_rejected
            ],
            "screen_vs_confirm": gaps(result),
            "target": result.target,
            "notes": result.notes,
        }
    )
    return out
