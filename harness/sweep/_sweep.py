"""Sweeping routing parameters: screen on the tape, confirm with the engine, recommend.

Screening: parameters that only change routing decisions (the answer-confidence
threshold) are evaluated without re-running the engine. One *probe* run per combination
of the other parameters, with every dynamic off (no capacity limits, rate limits,
breakers or retry budget) and the threshold at 1 (always escalate), records every good
answer a request gets on its way up the tiers. For any threshold the accepted answer is
then the first with enough confidence, so success, cost, tokens and exact latency
percentiles follow from the recorded attempts (harness.sweep._screen). Failures keep their
price: timed-out calls before an answer are billed in its cost, and an answer that would
go to a human for approval carries the human's time, price and verdict (the tape's). With
no dynamics in the suite (the human team's capacity included) this is exactly what the
engine would produce.

Confirmation: the best settings and the current one run through the full engine (queues,
breakers, faults) on an executor, because routing changes load and load changes latency.
Parameters that change dynamics (retries, timeouts, capacity, ...) are always run in full.
The recommendation is the best feasible confirmed setting: every threshold of the suite
is a constraint, `sweep.objective` the objective.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from harness.engine import Engine
from harness.errors import EvalxError, Problem, SpecError
from harness.executor import Executor, InlineExecutor
from harness.faults import phases, schedule
from harness.records import arrivals, requests_table
from harness.spec import LoadedSuite, Suite, load_suite
from harness.spec._load import locate_key, suggest
from harness.stack import make_stack
from harness.sweep._screen import Attempts, screen
from harness.thresholds import (
    OPERATORS,
    Threshold,
    as_records,
    compile_thresholds,
    evaluate,
)
from harness.traffic import Requests, sample_requests
from harness.world import sample_tape

SCREENABLE = ("stack.escalation.confidence_threshold",)
"""Parameters that only change routing decisions, so the tape can evaluate them."""
METRICS = (
    "success_rate", "cost_per_request_usd", "cost_per_success_usd", "tokens_per_request",
    "mean_latency_ms", "p50_latency_ms", "p95_latency_ms", "p99_latency_ms",
)  # fmt: skip
"""Metrics a sweep reports per setting and route (all in the run summary too)."""
_RANGE = re.compile(r"^\s*([-+0-9.eE]+)\s*:\s*([-+0-9.eE]+)\s*:\s*([-+0-9.eE]+)\s*$")


class SweepError(EvalxError):
    """A sweep that cannot run as asked."""


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
        return ", ".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in self.params.items())


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


# --------------------------------------------------------------------------- screening


def _without_dynamics(suite: Suite, threshold: float) -> Suite:
    """The suite with no queues (humans' included), rate limits, breakers or retry budget,
    always escalating; session users never leave (screening sees every turn)."""
    data = suite.model_dump()
    for section in ("models", "tools"):
        for spec in data[section].values():
            spec["capacity"] = None
            spec["rate_limit"] = None
    data["handoff"]["capacity"] = None
    data["stack"]["breaker"]["enabled"] = False
    data["stack"]["retry_budget"] = None
    data["stack"]["escalation"]["confidence_threshold"] = threshold
    if data["traffic"].get("sessions") is not None:  # every turn arrives: one row per request
        data["traffic"]["sessions"]["abandon_after_failure"] = 0.0
    return Suite.model_validate(data)


@dataclass
class Probe:
    """Attempts of one probe run, with the names needed to read them."""

    attempts: Attempts
    routes: list[str]
    tiers: list[str]
    approximate: int = 0
    """Requests whose earlier answers carry an evasive action: its time after such an
    answer is not on the probe's path, so screening is approximate for them."""


def _recognised_high_impact(s: Suite, reqs: Requests) -> np.ndarray:
    """Requests whose high-impact action the stack's recognizer sees in the call the world
    proposes for it (an evasive one goes through a tool and arguments it does not know)."""
    from harness.content import evasive_call
    from harness.guardrails import ActionRecognizer

    act = s.policies.actions
    rec = ActionRecognizer([*act.prohibited, *act.high_impact], act.phrases)
    ec = s.traffic.edge_cases
    plain = rec.of_call(ec.high_impact_action, None) in act.high_impact
    out = np.zeros(len(reqs), dtype=bool)
    for r in np.flatnonzero(reqs.high_impact).tolist():
        if reqs.evasive[r]:
            call = rec.of_call(*evasive_call(ec.evasive_tool, r))
            out[r] = call in act.high_impact
        else:
            out[r] = plain
    return out


def probe(suite: Suite) -> Probe:
    """Run the dynamics-free, always-escalating probe and collect every good answer."""
    s = _without_dynamics(suite, 1.0)
    reqs = sample_requests(s)
    tape = sample_tape(s, reqs)
    engine = Engine(s, reqs, tape, schedule(s), make_stack(s), probe=True)
    trace = engine.run()
    arrival = arrivals(trace, reqs)  # closed-loop sessions: the probe's own turn times
    table = requests_table(trace, reqs, phases(s, arrival))
    human_s, human_right = tape.handoff_s, tape.handoff_u < s.handoff.quality
    del engine.tape, tape
    n = len(reqs)
    tiers = list(s.stack.tiers)
    model_tier = np.array([tiers.index(m.tier) for m in s.models.values()], dtype=np.int16)
    rows = engine.attempts or []
    rid = np.array([r[0] for r in rows], dtype=np.int64)
    counts = np.bincount(rid, minlength=n) if rows else np.zeros(n, np.int64)
    # Did a request go on asking for answers after its last good one (a higher tier that
    # then failed)? Then that answer was not accepted at threshold 1, and the request's real
    # ending is one more attempt, accepted whatever the threshold.
    last_ok = np.full(n, -np.inf)
    if rows:
        np.maximum.at(last_ok, rid, np.array([r[1] for r in rows], dtype=np.float64))
    answer = engine.codes["name"].index.get("answer")
    last_ask = np.full(n, -np.inf)
    if answer is not None:
        span_rid = engine.spans.column("request_id")
        asked = engine.spans.column("name") == answer
        np.maximum.at(last_ask, span_rid[asked], engine.spans.column("start_s")[asked])
    went_on = (counts > 0) & (last_ask >= last_ok)
    width = int(max(1, (counts + went_on).max() if n else 1))
    shape = (n, width)
    conf = np.full(shape, np.inf)
    lat = np.zeros(shape)
    ends = np.zeros(shape)  # virtual time each answer arrived
    cost = np.zeros(shape)
    tokens = np.zeros(shape)
    ok = np.zeros(shape, bool)
    tier = np.zeros(shape, np.int16)
    if rows:
        order = np.argsort(rid, kind="stable")
        start = np.concatenate([[0], np.cumsum(counts)[:-1]])
        k = np.arange(len(rows)) - start[rid[order]]
        r = rid[order]
        cols = list(zip(*[rows[i] for i in order], strict=True))
        t_end = np.asarray(cols[1], dtype=np.float64)
        conf[r, k] = np.asarray(cols[5], dtype=np.float64)
        lat[r, k] = (t_end - arrival[r]) * 1000.0
        ends[r, k] = t_end
        cost[r, k] = np.asarray(cols[2], dtype=np.float64)
        tokens[r, k] = np.asarray(cols[3], dtype=np.float64) + np.asarray(cols[4], np.float64)
        ok[r, k] = np.asarray(cols[6], dtype=bool)
        tier[r, k] = model_tier[np.asarray(cols[7], dtype=np.int64)]
    # the last attempt is where the probe request really ended: take its recorded outcome
    m = np.maximum(counts + went_on, 1)
    last = m - 1
    idx = np.arange(n)
    conf[idx, last] = np.inf
    lat[idx, last] = table["latency_ms"].to_numpy()
    cost[idx, last] = table["cost_usd"].to_numpy()
    tokens[idx, last] = table["input_tokens"].to_numpy() + table["output_tokens"].to_numpy()
    ok[idx, last] = table["success"].to_numpy()
    served = table["served_by"].to_pylist()
    served_tier = np.array([tiers.index(t) if t in tiers else -1 for t in served])
    tier[idx[went_on], last[went_on]] = np.where(
        served_tier[went_on] >= 0, served_tier[went_on], tier[idx[went_on], last[went_on] - 1]
    )
    no_answer = counts == 0
    tier[no_answer] = np.array([tiers.index(t) if t in tiers else 0 for t in served])[no_answer][
        :, None
    ]
    # an earlier answer from a tier that may not take the request's high-impact action
    # would have gone to a human for approval: the human's time, price and verdict
    if s.policies.enforce:
        allowed = np.array([t in s.policies.actions.high_impact_tiers for t in tiers])
        high = _recognised_high_impact(s, reqs)[:, None] & ~allowed[tier]
        earlier = np.arange(width)[None, :] < last[:, None]
        r, k = np.nonzero(high & earlier)
        if len(r):
            lat[r, k] = (ends[r, k] + human_s[r] - arrival[r]) * 1000.0
            cost[r, k] += s.handoff.cost_usd
            ok[r, k] = human_right[r]
    routes = [str(r) for r in table["route"].to_pylist()]
    route_names = sorted(set(routes))
    group = np.searchsorted(np.asarray(route_names, dtype=object), np.asarray(routes, dtype=object))
    att = Attempts(
        confidence=conf, latency_ms=lat, cost_usd=cost, tokens=tokens, success=ok, tier=tier,
        count=m, group=group.astype(np.int64), n_tiers=len(tiers), n_groups=len(route_names),
    )  # fmt: skip
    acts = reqs.prohibited | reqs.high_impact | reqs.injection
    approximate = int(((m > 1) & reqs.evasive & acts).sum())
    return Probe(att, route_names, tiers, approximate)


# --------------------------------------------------------------------------- full runs


@dataclass(frozen=True)
class Unit:
    """A full run to do: the suite file, its flags and the setting's flags."""

    path: str
    flags: tuple[str, ...]
    policy: str | None


def full_run(unit: Unit) -> dict[str, Any]:
    """Simulate one setting through the engine; summary rows and threshold outcomes."""
    from harness.run import simulate

    loaded = load_suite(unit.path, list(unit.flags), unit.policy)
    result = simulate(loaded.suite)
    outcomes = evaluate(compile_thresholds(loaded), result.requests)
    return {"summary": result.summary.to_pylist(), "thresholds": as_records(outcomes)}


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
    executor: Executor | None = None,
    policy: str | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> SweepResult:
    """Screen the grid, confirm the best and the current setting, recommend one."""
    ex = executor or InlineExecutor()
    thresholds = compile_thresholds(loaded)
    objective = objective_of(loaded)
    settings = grid_settings(loaded, grid)
    flags = _flags(loaded)
    current = _current_setting(loaded, settings)
    result = SweepResult(settings, [], current, {}, {}, objective)
    screen_keys = [k for k in settings[0].params if k in SCREENABLE]
    groups: dict[tuple[tuple[str, Any], ...], list[Setting]] = {}
    for st in settings:
        dyn = tuple((k, v) for k, v in st.params.items() if k not in SCREENABLE)
        groups.setdefault(dyn, []).append(st)
    percentiles = sorted({50.0, 95.0, 99.0} | {
        t.percentile for t in thresholds if t.aggregation == "p" and t.percentile is not None
    })  # fmt: skip
    to_confirm: list[int] = []
    if screen_keys:
        done = 0
        for dyn, members in groups.items():
            group_flags = [*flags, *[f"{k}={_yaml(v)}" for k, v in dyn]]
            base = load_suite(loaded.path, group_flags, policy).suite
            pr = probe(base)
            if pr.approximate:
                result.notes.append(
                    f"screening is approximate for {pr.approximate} requests whose cheaper "
                    "answers would carry an evasive action (its run time is not on the probe's "
                    "path); confirmed rows are exact"
                )
            thetas = np.array([float(m.params[screen_keys[0]]) for m in members])
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
            done += len(members)
            result.screened = done
            if progress is not None:
                progress("screen", done, len(settings))
        ranked = sorted(
            (s for s in settings),
            key=lambda s: (
                not result.feasible[(s.id, "screen")],
                _objective_value(result, s.id, "screen"),
            ),
        )
        to_confirm = [s.id for s in ranked[:confirm]]
        if current is not None and current not in to_confirm:
            to_confirm.append(current)
    if any(k not in SCREENABLE for k in settings[0].params):
        to_confirm = [s.id for s in settings]  # dynamics can only be judged by full runs
        result.notes.append("the grid changes dynamics: every setting ran through the engine")
    units = [Unit(str(loaded.path), (*flags, *settings[i].overrides()), policy) for i in to_confirm]
    for n_done, (sid, out) in enumerate(zip(to_confirm, ex.map(full_run, units), strict=True)):
        for summary in out["summary"]:
            result.rows.append(Row(sid, "confirm", str(summary["route"]), _metrics_row(summary)))
        result.checks[(sid, "confirm")] = out["thresholds"]
        result.feasible[(sid, "confirm")] = all(t["passed"] for t in out["thresholds"])
        result.confirmed = n_done + 1
        if progress is not None:
            progress("confirm", n_done + 1, len(units))
    _recommend(result, to_confirm)
    return result


def _current_setting(loaded: LoadedSuite, settings: Sequence[Setting]) -> int | None:
    """The grid point equal to the suite's own values, if the grid contains it."""
    params = loaded.parameters()
    for s in settings:
        if all(_same(params.get(k, {}).get("value"), v) for k, v in s.params.items()):
            return s.id
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


def _recommend(result: SweepResult, confirmed: list[int]) -> None:
    """Best feasible confirmed setting; else the binding constraint and the closest setting."""
    feasible = [s for s in confirmed if result.feasible[(s, "confirm")]]
    if feasible:
        result.recommended = min(feasible, key=lambda s: _objective_value(result, s, "confirm"))
        return
    misses: dict[str, int] = {}
    shortfall: dict[int, float] = {}
    for s in confirmed:
        total = 0.0
        for c in result.checks[(s, "confirm")]:
            if not c["passed"]:
                name = f"{c['key']} {c['expression']}"
                misses[name] = misses.get(name, 0) + 1
                total += 1.0
        shortfall[s] = total
    if misses:
        result.binding = max(misses, key=lambda k: misses[k])
    if shortfall:
        result.closest = min(shortfall, key=lambda s: (shortfall[s], _objective_value(
            result, s, "confirm")))  # fmt: skip


def margins(checks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """How far each constraint is from binding: limit - value, signed so positive is slack."""
    out = []
    for c in checks:
        m = re.match(r"^\s*[a-z]+(?:\([^)]*\))?\s*(<=|>=|==|!=|<|>)\s*(\S+)\s*$", c["expression"])
        value = c["value"]
        if not m or value is None:
            out.append({**c, "margin": None})
            continue
        op, limit = m.group(1), float(m.group(2))
        slack = (limit - value) if op in ("<", "<=") else (value - limit)
        out.append({**c, "limit": limit, "margin": slack if op not in ("==", "!=") else None})
    return out


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
    got = screen(pr.attempts, np.array([theta]), (95.0,))
    g = group if group is not None else pr.attempts.n_groups
    return {
        "target": target,
        "parameter": SCREENABLE[0],
        "threshold": theta,
        "share": float(got["share_tier"][0, g, pr.tiers.index(tier)]),
        "set": f"--set {SCREENABLE[0]}={theta!r}",
    }


# --------------------------------------------------------------------------- outputs


def sweep_frame(result: SweepResult) -> Any:
    """sweep.parquet as a DataFrame: one row per setting x stage x route, parameters as columns."""
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


def _all_row(result: SweepResult, sid: int, stage: str) -> dict[str, float] | None:
    for row in result.rows:
        if row.setting == sid and row.stage == stage and row.route == "all":
            return row.metrics
    return None


def gaps(result: SweepResult) -> list[dict[str, Any]]:
    """Screen vs confirm on route `all` for every confirmed setting that was screened."""
    out = []
    for s in result.settings:
        screened, confirmed = _all_row(result, s.id, "screen"), _all_row(result, s.id, "confirm")
        if screened is None or confirmed is None:
            continue
        for metric in METRICS:
            a, b = screened[metric], confirmed[metric]
            out.append({"setting": s.id, "label": s.label(), "metric": metric, "screen": a,
                        "confirm": b, "difference": b - a})  # fmt: skip
    return out


def recommendation(result: SweepResult, suite_path: str) -> dict[str, Any]:
    """recommendation.json: the pick, its margins, the --set line; or what binds."""

    def describe(sid: int | None) -> dict[str, Any] | None:
        if sid is None:
            return None
        s = result.settings[sid]
        return {
            "setting": sid,
            "parameters": s.params,
            "set": " ".join(f"--set {flag}" for flag in s.overrides()),
            "command": f"evalx run {suite_path} " + " ".join(f"--set {f}" for f in s.overrides()),
            "metrics": _all_row(result, sid, "confirm") or _all_row(result, sid, "screen"),
            "constraints": margins(result.checks.get((sid, "confirm"), [])),
            "feasible": result.feasible.get((sid, "confirm")),
        }

    sense, metric = result.objective
    return {
        "objective": {"sense": sense, "metric": metric},
        "settings": len(result.settings),
        "screened": result.screened,
        "confirmed": result.confirmed,
        "feasible": result.recommended is not None,
        "recommended": describe(result.recommended),
        "current": describe(result.current),
        "binding_constraint": result.binding,
        "closest": describe(result.closest),
        "screen_vs_confirm": gaps(result),
        "target": result.target,
        "notes": result.notes,
    }
