"""The requests of a run: arrival times, task classes, sizes and edge-case labels.

Sampled up front and vectorised from the suite's seed, in blocks, so request i's
draws depend only on (seed, i) and the traffic section: never on routing settings,
and not on how many requests follow it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from harness.spec import Suite, Traffic
from harness.util import BLOCK, blocks, generator

if TYPE_CHECKING:
    from harness.sessions import SessionPlan

_ARRIVALS, _MIX, _TOKENS, _LABELS, _EVASIVE = 1, 2, 3, 4, 5
_TENANTS = 63  # own stream: adding tenants moves no other draw


@dataclass(frozen=True)
class Requests:
    """Column arrays, one entry per request, in arrival order (request id = index)."""

    arrival_s: np.ndarray  # float64, non-decreasing; NaN: a later session turn (engine-timed)
    task_class: np.ndarray  # int16 index into class_names
    class_names: tuple[str, ...]
    input_tokens: np.ndarray  # int32
    output_tokens: np.ndarray  # int32, before a model's verbosity
    tool_steps: np.ndarray  # int16
    pii: np.ndarray  # bool
    injection: np.ndarray  # bool
    prohibited: np.ndarray  # bool
    high_impact: np.ndarray  # bool
    evasive: np.ndarray  # bool: its edge cases are written so the shipped detectors miss them
    texts: tuple[str, ...] | None = None  # from a requests file or log; None: synthetic text
    ids: tuple[str, ...] | None = None  # a log's request ids
    extra: dict[str, np.ndarray] = field(default_factory=dict)
    """A log's other columns, row-aligned: `tenant`, `session` when mapped, and every
    unmapped column as `label_<name>`. Kept in requests.parquet as they are."""
    sessions: SessionPlan | None = None
    """Each request's session and turn (`harness.sessions`); None: every request is a
    session of its own."""

    def __len__(self) -> int:
        return int(self.arrival_s.shape[0])


def rate_breakpoints(traffic: Traffic) -> tuple[np.ndarray, np.ndarray]:
    """The piecewise-constant arrival rate: (times, rate from each time on)."""
    edges = {0.0}
    for s in traffic.spikes:
        edges.update((s.start_s, s.start_s + s.duration_s))
    times = np.array(sorted(edges))
    rates = np.full(times.shape, traffic.rate_per_s)
    for s in traffic.spikes:
        inside = (times >= s.start_s) & (times < s.start_s + s.duration_s)
        rates[inside] *= s.multiplier
    return times, rates


def arrival_times(traffic: Traffic, seed: int) -> np.ndarray:
    """Poisson arrivals with spikes, by inverting the cumulative intensity (exact, vectorised)."""
    n = traffic.requests
    parts = []
    for b, lo, hi in blocks(n):
        parts.append(generator(seed, _ARRIVALS, b).standard_exponential(hi - lo))
    ops = np.cumsum(np.concatenate(parts))  # arrival epochs of a unit-rate process
    times, rates = rate_breakpoints(traffic)
    cum = np.concatenate([[0.0], np.cumsum(np.diff(times) * rates[:-1])])
    seg = np.searchsorted(cum, ops, side="right") - 1
    return np.asarray(times[seg] + (ops - cum[seg]) / rates[seg], dtype=np.float64)


def sample_requests(suite: Suite) -> Requests:
    """Every request of the suite, deterministic in `suite.seed`, with its tenant."""
    return with_tenants(suite, _sampled(suite))


def with_tenants(suite: Suite, requests: Requests) -> Requests:
    """`requests` with `extra["tenant"]` drawn from `traffic.tenants` (its own stream, keyed
    by request: no other draw moves), unless they already carry one (a log's column).

    A session belongs to one tenant: every turn takes its first turn's draw."""
    tenants = suite.traffic.tenants
    if not tenants or "tenant" in requests.extra:
        return requests
    n = len(requests)
    weights = np.array([t.share for t in tenants.values()], dtype=np.float64)
    cdf = np.cumsum(weights / weights.sum())
    pick = np.empty(n, dtype=np.int64)
    for b, lo, hi in blocks(n):
        u = generator(suite.seed, _TENANTS, b).random(BLOCK)[: hi - lo]
        pick[lo:hi] = np.minimum(np.searchsorted(cdf, u, side="right"), len(weights) - 1)
    if requests.sessions is not None:
        session = requests.sessions.session
        _, first = np.unique(session, return_index=True)  # sessions are numbered 0, 1, ...
        pick = pick[first[session]]
    names = np.asarray(list(tenants), dtype=object)
    return replace(requests, extra={**requests.extra, "tenant": names[pick]})


def _sampled(suite: Suite) -> Requests:
    """Every request of the suite, deterministic in `suite.seed`.

    With `traffic.file` the requests (class, labels) come from the file, in its order,
    and only arrival times and answer sizes are sampled. With `traffic.log` arrivals,
    token counts and classes come from the log where it has them (see `harness.traffic_log`).
    """
    if suite.traffic.file is not None:
        return _from_file(suite)
    if suite.traffic.log is not None:
        from harness.traffic_log import from_log

        return from_log(suite)
    n = suite.traffic.requests
    draws = sample_draws(suite.traffic, suite.seed, n)
    if suite.traffic.sessions is not None:
        from harness.sessions import sample

        arrivals, input_tokens, plan = sample(suite.traffic, suite.seed, draws)
        return assemble(suite.traffic, arrivals, draws, input_tokens, sessions=plan)
    return assemble(suite.traffic, arrival_times(suite.traffic, suite.seed), draws)


@dataclass(frozen=True)
class Draws:
    """The per-request draws of synthetic traffic, before they are turned into requests."""

    task_class: np.ndarray  # int16
    z_in: np.ndarray  # standard normal, prompt size
    z_out: np.ndarray  # standard normal, answer size
    labels: np.ndarray  # (n, 4) uniform: pii, injection, prohibited, high impact
    evasive_u: np.ndarray  # uniform: the edge cases are evasive when < edge_cases.evasive


def sample_draws(traffic: Traffic, seed: int, n: int) -> Draws:
    """Class, size and edge-case draws of `n` requests, in blocks (prefix-stable)."""
    classes = list(traffic.mix.values())
    weights = np.array([c.weight for c in classes], dtype=np.float64)
    cdf = np.cumsum(weights / weights.sum())
    cls = np.empty(n, dtype=np.int16)
    z_in = np.empty(n)
    z_out = np.empty(n)
    labels = np.empty((n, 4))
    evasive = np.empty(n)
    for b, lo, hi in blocks(n):
        cls[lo:hi] = np.minimum(
            np.searchsorted(cdf, generator(seed, _MIX, b).random(hi - lo), side="right"),
            len(classes) - 1,
        )
        z = generator(seed, _TOKENS, b).standard_normal((2, BLOCK))  # full block: prefix-stable
        z_in[lo:hi], z_out[lo:hi] = z[0, : hi - lo], z[1, : hi - lo]
        labels[lo:hi] = generator(seed, _LABELS, b).random((hi - lo, 4))
        evasive[lo:hi] = generator(seed, _EVASIVE, b).random(BLOCK)[: hi - lo]
    return Draws(cls, z_in, z_out, labels, evasive)


def token_sizes(traffic: Traffic, cls: np.ndarray, z: np.ndarray, which: str) -> np.ndarray:
    """Token counts (int32, >= 1) of `which` (`input` or `output`) from standard normals."""
    classes = list(traffic.mix.values())
    med = np.array([getattr(c, f"{which}_tokens") for c in classes], dtype=np.float64)[cls]
    spreads = [getattr(c, f"{which}_spread") for c in classes]
    spread = np.array(
        [c.token_spread if s is None else s for c, s in zip(classes, spreads, strict=True)]
    )[cls]
    out: np.ndarray = np.maximum(1, np.rint(med * np.exp(spread * z))).astype(np.int32)
    return out


def assemble(
    traffic: Traffic,
    arrivals: np.ndarray,
    draws: Draws,
    input_tokens: np.ndarray | None = None,
    output_tokens: np.ndarray | None = None,
    **given: Any,
) -> Requests:
    """Requests from draws; token counts given (e.g. logged) replace the sampled ones."""
    cls = draws.task_class
    classes = list(traffic.mix.values())
    ec = traffic.edge_cases
    labels = draws.labels
    return Requests(
        arrival_s=arrivals,
        task_class=cls,
        class_names=tuple(traffic.mix),
        input_tokens=(
            token_sizes(traffic, cls, draws.z_in, "input") if input_tokens is None else input_tokens
        ),
        output_tokens=(
            token_sizes(traffic, cls, draws.z_out, "output")
            if output_tokens is None
            else output_tokens
        ),
        tool_steps=np.array([c.tool_steps for c in classes], dtype=np.int16)[cls],
        pii=labels[:, 0] < ec.pii,
        injection=labels[:, 1] < ec.prompt_injection,
        prohibited=labels[:, 2] < ec.prohibited_action,
        high_impact=labels[:, 3] < ec.high_impact,
        evasive=draws.evasive_u < ec.evasive,
        **given,
    )


def _from_file(suite: Suite) -> Requests:
    from harness.requests_file import load

    traffic = suite.traffic
    assert traffic.file is not None
    names = tuple(traffic.mix)
    rows = load(traffic.file, names)
    n = len(rows)
    timed = traffic.model_copy(update={"requests": n})
    classes = list(traffic.mix.values())
    cls = np.array([names.index(r.task_class) for r in rows], dtype=np.int16)

    def label(name: str) -> np.ndarray:
        return np.array([name in r.labels for r in rows], dtype=bool)

    return Requests(
        arrival_s=arrival_times(timed, suite.seed),
        task_class=cls,
        class_names=names,
        input_tokens=np.array([max(1, len(r.text) // 4) for r in rows], dtype=np.int32),
        output_tokens=np.array([classes[c].output_tokens for c in cls], dtype=np.int32),
        tool_steps=np.array([c.tool_steps for c in classes], dtype=np.int16)[cls],
        pii=label("pii"),
        injection=label("prompt_injection"),
        prohibited=label("prohibited_action"),
        high_impact=label("high_impact"),
        evasive=label("evasive"),
        texts=tuple(r.text for r in rows),
        ids=tuple(r.id for r in rows),
    )
