"""Probe runs: what every request would get under any threshold, starting tier and route.

A *probe* is one engine run of the suite with every dynamic off (no capacity or rate
limits, breakers or retry budget) and the answer-confidence threshold at 1 (always
escalate). It records every good answer a request gets on its way up the tiers, so for
any threshold the accepted answer is the first confident enough (harness.sweep._screen).

A *route probe* extends this to the routing tables and the classifier's minimum
confidence (`ROUTING`). Those change where a request starts (its route's tier, one tier
higher when the classifier is unsure) and, through the tier, the tool steps its models
take; they change nothing else a request does. So the route probe records the probe once
per starting tier (every route moved to that tier, the classifier's minimum confidence
at 0), and, when the grid moves classes between routes whose retry cap or degraded-
retrieval rule differ, once per such route profile too. A stack wrapper watches each
request's routing decision (route, starting tier, reason) and the classifier's answer
(predicted class and confidence), which the stack sees anyway. For any routing tables
the starting tier of every request follows from those, and its row is taken from the
probe where it started there. Without dynamics requests do not interact, so this is
exactly the engine's result, as the threshold screen is (tested).

What cannot be screened this way, and why (`routing_problem`): a custom stack (its
routing is its own), tenant gateway limits (a shared bucket couples requests and a
downgraded request starts at the cheapest tier whatever its route) and closed-loop
sessions (a turn arrives when the previous one ends, so rows from different starting
tiers do not fit together). The sweep then runs those settings through the engine.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from harness.engine import Engine
from harness.faults import phases, schedule
from harness.records import arrivals, requests_table
from harness.spec import Suite
from harness.stack import (
    CallModel,
    Final,
    Handler,
    ModelResult,
    Note,
    Outcome,
    RequestInfo,
    RoutingStack,
    make_stack,
)
from harness.sweep._screen import Attempts
from harness.traffic import Requests, sample_requests
from harness.world import sample_tape

THRESHOLD = "stack.escalation.confidence_threshold"
"""The answer-confidence threshold: screened for many values at once from one probe."""
ROUTING = (
    "stack.classifier.min_confidence",
    "stack.routes.<route>.tier",
    "stack.class_routes.<class>",
)
"""Routing parameters screened by a route probe (exactly; see the module docstring)."""
_ROUTING = re.compile(
    r"^stack\.(classifier\.min_confidence|routes\.[^.]+\.tier|class_routes\.[^.]+)$"
)


def is_routing(key: str) -> bool:
    """Whether a grid parameter is one of `ROUTING`."""
    return bool(_ROUTING.match(key))


def routing_problem(suite: Suite) -> str | None:
    """Why a route probe cannot screen this suite's routing exactly, or None if it can."""
    if suite.stack.factory is not None:
        return f"the suite's own stack ({suite.stack.factory}) routes by its own rules"
    if suite.stack.tenants:
        return (
            "stack.tenants limits couple requests (shared buckets) and start a downgraded "
            "request at the cheapest tier"
        )
    if suite.traffic.sessions is not None:
        return "in closed-loop sessions a turn's arrival depends on the previous turn's path"
    return None


# --------------------------------------------------------------------------- one probe run


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


class _Observer:
    """A stack wrapper that passes every effect and outcome through unchanged and notes,
    per request, the routing decision and the classifier's answer."""

    def __init__(self, stack: RoutingStack, n: int) -> None:
        self.stack = stack
        self.route: list[str | None] = [None] * n
        self.start: list[str | None] = [None] * n
        self.reason: list[str | None] = [None] * n
        self.predicted: list[str | None] = [None] * n
        self.confidence = np.full(n, np.nan)

    def handle(self, request: RequestInfo) -> Handler:
        inner = self.stack.handle(request)
        rid = request.request_id
        sent: Outcome | None = None
        while True:
            try:
                effect = inner.send(sent)  # type: ignore[arg-type]  # None starts it
            except StopIteration as stop:
                final: Final = stop.value
                return final
            if isinstance(effect, Note) and effect.kind == "router":
                tier, _, reason = effect.detail.rpartition(":")
                self.route[rid], self.start[rid], self.reason[rid] = effect.name, tier, reason
            sent = yield effect
            classified = isinstance(effect, CallModel) and effect.purpose == "classify"
            if classified and isinstance(sent, ModelResult) and sent.predicted_class is not None:
                self.predicted[rid] = sent.predicted_class
                self.confidence[rid] = sent.confidence


@dataclass
class _Recorded:
    """One probe run, per request: what it ends with if attempt k is accepted."""

    confidence: np.ndarray
    latency_ms: np.ndarray
    cost_usd: np.ndarray
    tokens: np.ndarray
    success: np.ndarray
    tier: np.ndarray
    count: np.ndarray
    routes: list[str]
    """Each request's route in this run."""
    approximate: int
    observed: _Observer | None = None


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


def _record(s: Suite, observe: bool = False) -> _Recorded:
    """Run the dynamics-free suite `s` (always escalating) and collect every good answer."""
    reqs = sample_requests(s)
    tape = sample_tape(s, reqs)
    stack = make_stack(s)
    observer = _Observer(stack, len(reqs)) if observe else None
    engine = Engine(s, reqs, tape, schedule(s), observer or stack, probe=True)
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
    acts = reqs.prohibited | reqs.high_impact | reqs.injection
    return _Recorded(
        confidence=conf, latency_ms=lat, cost_usd=cost, tokens=tokens, success=ok, tier=tier,
        count=m, routes=[str(r) for r in table["route"].to_pylist()],
        approximate=int(((m > 1) & reqs.evasive & acts).sum()), observed=observer,
    )  # fmt: skip


def _attempts(rec: _Recorded, routes: Sequence[str], n_tiers: int) -> tuple[Attempts, list[str]]:
    """Attempts grouped by the given per-request routes; the sorted route names."""
    names = sorted(set(routes))
    group = np.searchsorted(np.asarray(names, dtype=object), np.asarray(routes, dtype=object))
    att = Attempts(
        confidence=rec.confidence, latency_ms=rec.latency_ms, cost_usd=rec.cost_usd,
        tokens=rec.tokens, success=rec.success, tier=rec.tier, count=rec.count,
        group=group.astype(np.int64), n_tiers=n_tiers, n_groups=max(1, len(names)),
    )  # fmt: skip
    return att, names


@dataclass
class Probe:
    """Attempts of one probe run, with the names needed to read them."""

    attempts: Attempts
    routes: list[str]
    tiers: list[str]
    approximate: int = 0
    """Requests whose earlier answers carry an evasive action: its time after such an
    answer is not on the probe's path, so screening is approximate for them."""


def probe(suite: Suite) -> Probe:
    """Run the dynamics-free, always-escalating probe and collect every good answer."""
    s = _without_dynamics(suite, 1.0)
    rec = _record(s)
    tiers = list(s.stack.tiers)
    att, names = _attempts(rec, rec.routes, len(tiers))
    return Probe(att, names, tiers, rec.approximate)


# --------------------------------------------------------------------------- route probes


def _profile(route: Any) -> tuple[int, str]:
    """What a route changes besides the starting tier: its retry cap and degraded rule."""
    return int(route.max_retries), str(route.on_degraded_retrieval)


@dataclass
class RouteProbe:
    """Probe runs from every starting tier (and route profile); `probe_for` picks rows."""

    variants: list[_Recorded]
    starts: np.ndarray
    """(V, n) tier index each request started at in each variant; -1 without a decision."""
    profiles: list[tuple[int, str] | None]
    """Per variant, the route profile every route had (None: each route kept its own)."""
    tiers: list[str]
    approximate: int = 0
    _stacked: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        width = max(v.confidence.shape[1] for v in self.variants)
        n = len(self.variants[0].count)
        for name, fill in (("confidence", np.inf), ("latency_ms", 0.0), ("cost_usd", 0.0),
                           ("tokens", 0.0), ("success", False), ("tier", 0)):  # fmt: skip
            first = getattr(self.variants[0], name)
            out = np.full((len(self.variants), n, width), fill, dtype=first.dtype)
            for j, v in enumerate(self.variants):
                arr = getattr(v, name)
                out[j, :, : arr.shape[1]] = arr
            self._stacked[name] = out
        self._stacked["count"] = np.stack([v.count for v in self.variants])

    def probe_for(self, suite: Suite) -> Probe:
        """The probe of `suite`'s routing (tiers, class routes, classifier minimum
        confidence): each request's row from the variant where it started where `suite`
        would start it. Raises ValueError if no variant did (a harness bug)."""
        st = suite.stack
        obs = self.variants[0].observed
        assert obs is not None
        n = len(obs.reason)
        tiers = self.tiers
        top = len(tiers) - 1
        default = next(iter(st.routes))
        routes = list(self.variants[0].routes)
        desired = np.full(n, -1, np.int64)
        profile_ids = np.full(n, -1, np.int64)
        known = [p for p in self.profiles if p is not None]
        for r in range(n):
            reason = obs.reason[r]
            if reason is None:
                continue  # decided before routing (blocked): any variant's row
            bump = 0
            if reason in ("class", "low_classifier_confidence"):
                route = st.class_routes.get(obs.predicted[r] or "", default)
                bump = int(obs.confidence[r] < st.classifier.min_confidence)
            elif reason == "classifier_failed":
                route, bump = default, 1
            elif reason == "default":
                route = default
            else:  # high_impact: the suite's high-impact route, never bumped
                route = obs.route[r] or default
            routes[r] = route
            desired[r] = min(tiers.index(st.routes[route].tier) + bump, top)
            if known:
                profile_ids[r] = known.index(_profile(st.routes[route]))
        ok = (self.starts == desired[None, :]) | (desired[None, :] < 0)
        if known:
            ids = np.array([known.index(p) if p is not None else -1 for p in self.profiles])
            ok &= (ids[:, None] == profile_ids[None, :]) | (profile_ids[None, :] < 0)
        if not ok.any(axis=0).all():
            r = int(np.argmin(ok.any(axis=0)))
            raise ValueError(f"route probe: no variant started request {r} at tier {desired[r]}")
        pick = np.argmax(ok, axis=0)
        idx = np.arange(n)
        rec = _Recorded(
            **{name: arr[pick, idx] for name, arr in self._stacked.items()},
            routes=routes, approximate=self.approximate,
        )  # fmt: skip
        att, names = _attempts(rec, routes, len(tiers))
        return Probe(att, names, tiers, self.approximate)


def route_probe(suite: Suite, keys: Sequence[str]) -> RouteProbe:
    """Record the probe from every starting tier (and route profile, when `keys` move
    classes between routes that differ in more than their tier)."""
    base = _without_dynamics(suite, 1.0)
    profiles: list[tuple[int, str] | None] = [None]
    if any(k.startswith("stack.class_routes.") for k in keys):
        distinct = sorted({_profile(r) for r in base.stack.routes.values()})
        if len(distinct) > 1:
            profiles = list(distinct)
    variants: list[_Recorded] = []
    starts: list[np.ndarray] = []
    labels: list[tuple[int, str] | None] = []
    tiers = list(base.stack.tiers)
    for tier in tiers:
        for p in profiles:
            data = base.model_dump()
            data["stack"]["classifier"]["min_confidence"] = 0.0
            for route in data["stack"]["routes"].values():
                route["tier"] = tier
                if p is not None:
                    route["max_retries"], route["on_degraded_retrieval"] = p
            rec = _record(Suite.model_validate(data), observe=True)
            obs = rec.observed
            assert obs is not None
            starts.append(np.array([tiers.index(x) if x in tiers else -1 for x in obs.start]))
            variants.append(rec)
            labels.append(p)
    approximate = max(v.approximate for v in variants)
    return RouteProbe(variants, np.stack(starts), labels, tiers, approximate)
