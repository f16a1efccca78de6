"""Sessions: multi-turn conversations, planned up front and timed by the engine.

A session is a run of turns by one user. Everything about a turn except *when* it
arrives is sampled here, vectorised and keyed like any request (by seed and request
id): its class, sizes and labels, the think time before it, the roll that decides
whether the user leaves after a failure. Request ids are assigned session by session,
turn by turn (session 0's turns, then session 1's, ...), so the same seed gives the same
ids whatever routing does. Sessions start as the traffic's Poisson process; turn k+1's
arrival is decided by the engine: turn k's final answer plus its think time (closed
loop), so `arrival_s` is not monotone in request id.

Input tokens of a turn are its own prompt plus the conversation so far: `context_growth`
times the prompts and (sampled, before a model's verbosity) answers of its earlier turns,
cut to the most recent tokens so that the input fits `context_window`.

A log's `session` column groups its rows into sessions as they were logged (open loop:
the log's times already include the users' think time).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from harness.spec import Sessions, Traffic, Turns
from harness.util import BLOCK, blocks, generator
from harness.world import sample_latency

if TYPE_CHECKING:
    from harness.traffic import Draws

_TURNS, _THINK, _ABANDON = 71, 72, 73


@dataclass(frozen=True)
class SessionPlan:
    """Per request: its session, its turn, and what the closed loop needs to time it."""

    session: np.ndarray  # int64: session index, in order of the session's first turn
    turn: np.ndarray  # int16: 0 for a session's first turn
    planned: np.ndarray  # int16: turns its session plans (after the run's cap)
    think_s: np.ndarray | None = None
    """float64: the user's think time before this turn (0 for a first turn); None: open
    loop (a log), every request arrives at its own time."""
    abandon_u: np.ndarray | None = None
    """float64 uniforms: after a failed turn the user leaves when u < abandon_after_failure."""
    abandon: float = 1.0

    @property
    def closed(self) -> bool:
        """Whether later turns are timed by the engine (synthetic sessions)."""
        return self.think_s is not None


def turn_counts(turns: int | Turns, seed: int, total: int) -> np.ndarray:
    """Turns of sessions 0, 1, ... until they add up to `total` (the last one cut short)."""
    parts: list[np.ndarray] = []
    have = 0
    b = 0
    while have < total:
        if isinstance(turns, int):
            counts = np.full(BLOCK, turns, dtype=np.int64)
        elif turns.dist == "constant":
            counts = np.full(BLOCK, int(turns.mean), dtype=np.int64)
        else:
            counts = generator(seed, _TURNS, b).geometric(1.0 / turns.mean, BLOCK)
        if not isinstance(turns, int) and turns.max is not None:
            counts = np.minimum(counts, turns.max)
        parts.append(counts)
        have += int(counts.sum())
        b += 1
    counts = np.concatenate(parts)
    ends = np.cumsum(counts)
    k = int(np.searchsorted(ends, total))  # the session that reaches the total
    counts = counts[: k + 1].copy()
    counts[k] -= int(ends[k]) - total
    return counts


def plan(traffic: Traffic, seed: int) -> tuple[np.ndarray, SessionPlan]:
    """(turns per session, the plan of `traffic.requests` turns) for synthetic sessions."""
    spec = traffic.sessions
    assert spec is not None
    n = traffic.requests
    counts = turn_counts(spec.turns, seed, n)
    session = np.repeat(np.arange(len(counts), dtype=np.int64), counts)
    first = np.concatenate([[0], np.cumsum(counts)[:-1]])
    turn = (np.arange(n) - first[session]).astype(np.int16)
    think = np.empty(n)
    abandon = np.empty(n)
    for b, lo, hi in blocks(n):
        think[lo:hi] = sample_latency(spec.think_time, generator(seed, _THINK, b), (BLOCK,))[
            : hi - lo
        ]
        abandon[lo:hi] = generator(seed, _ABANDON, b).random(BLOCK)[: hi - lo]
    think[turn == 0] = 0.0
    planned = counts[session].astype(np.int16)
    return counts, SessionPlan(session, turn, planned, think, abandon, spec.abandon_after_failure)


def with_context(
    spec: Sessions, plan: SessionPlan, prompt: np.ndarray, answer: np.ndarray
) -> np.ndarray:
    """Input tokens of every turn: its prompt plus the carried conversation (see module)."""
    sizes = prompt.astype(np.int64) + answer.astype(np.int64)
    total = np.cumsum(sizes)
    before = total - sizes  # every earlier request's tokens
    starts = np.flatnonzero(plan.turn == 0)
    first = starts[np.searchsorted(starts, np.arange(len(sizes)), side="right") - 1]
    carried = np.rint(spec.context_growth * (before - before[first])).astype(np.int64)
    if spec.context_window is not None:
        carried = np.minimum(carried, np.maximum(0, spec.context_window - prompt))
    out: np.ndarray = (prompt + carried).astype(np.int32)
    return out


def sample(traffic: Traffic, seed: int, draws: Draws) -> tuple[np.ndarray, np.ndarray, SessionPlan]:
    """(arrivals, input tokens, plan) of synthetic sessions.

    First turns arrive at the session starts; later turns' arrivals are NaN until the
    engine decides them.
    """
    from harness.traffic import arrival_times, token_sizes

    spec = traffic.sessions
    assert spec is not None
    counts, p = plan(traffic, seed)
    starts = arrival_times(traffic.model_copy(update={"requests": len(counts)}), seed)
    arrivals = np.full(traffic.requests, np.nan)
    arrivals[p.turn == 0] = starts
    prompt = token_sizes(traffic, draws.task_class, draws.z_in, "input")
    answer = token_sizes(traffic, draws.task_class, draws.z_out, "output")
    return arrivals, with_context(spec, p, prompt, answer), p


def from_labels(values: np.ndarray, arrivals: np.ndarray) -> SessionPlan:
    """Sessions of a log: rows with one `session` value form a session, turns in time order.

    Sessions are numbered in order of their first row; an empty value is a session of
    its own row.
    """
    n = len(values)
    keys = [v if v not in ("", None) else ("row", i) for i, v in enumerate(values)]
    index: dict[object, int] = {}
    session = np.array([index.setdefault(k, len(index)) for k in keys], dtype=np.int64)
    order = np.lexsort((np.arange(n), arrivals, session))
    turn = np.empty(n, dtype=np.int16)
    counts = np.bincount(session, minlength=len(index))
    first = np.concatenate([[0], np.cumsum(counts)[:-1]])
    turn[order] = np.arange(n) - first[session[order]]
    return SessionPlan(session, turn, counts[session].astype(np.int16))
