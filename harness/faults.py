"""The fault schedule: which windows apply to which model or tool, and the phase labels.

Faults are data. The engine asks `active(...)` for the windows that hit one call and
turns them into outcomes (an error status, added latency, a hang); nothing raises.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from harness.spec import DRIFT_KINDS, Fault, Suite

MODEL_KINDS = frozenset(
    {"latency", "outage", "timeout", "http_error", "rate_limit", "malformed", "slow_first_token"}
    | DRIFT_KINDS
)
TOOL_KINDS = frozenset(
    {"latency", "outage", "timeout", "http_error", "rate_limit", "flaky_tool", "degraded_retrieval"}
)


@dataclass(frozen=True, slots=True)
class Window:
    """One fault window resolved for one target, with the fields the engine needs."""

    kind: str
    start_s: float
    end_s: float
    probability: float
    label: str
    add_s: float
    jitter_s: float
    status: int
    retry_after_s: float
    quality_penalty: float
    amount: float
    factor: float
    max_tokens: int
    truncate: bool

    @classmethod
    def of(cls, f: Fault) -> Window:
        return cls(
            kind=f.kind,
            start_s=f.start_s,
            end_s=f.start_s + f.duration_s,
            probability=f.probability,
            label=f.label,
            add_s=f.add_ms / 1000.0,
            jitter_s=f.jitter_ms / 1000.0,
            status=f.status,
            retry_after_s=f.retry_after_s,
            quality_penalty=f.quality_penalty,
            amount=f.amount,
            factor=f.factor,
            max_tokens=f.max_tokens or 0,
            truncate=f.on_exceed == "truncate",
        )


@dataclass(frozen=True)
class Schedule:
    """Fault windows per model index and per tool index (in suite order)."""

    models: tuple[tuple[Window, ...], ...]
    tools: tuple[tuple[Window, ...], ...]


def schedule(suite: Suite) -> Schedule:
    """Resolve each fault's target (model, tier, tool or `retrieval`) to concrete endpoints."""
    models = []
    for name, m in suite.models.items():
        models.append(
            tuple(
                Window.of(f)
                for f in suite.faults
                if f.target in (name, m.tier) and f.kind in MODEL_KINDS
            )
        )
    tools = []
    for name, t in suite.tools.items():
        targets = {name, "retrieval"} if t.kind == "retrieval" else {name}
        tools.append(
            tuple(
                Window.of(f)
                for f in suite.faults
                if f.target in targets
                and f.kind in TOOL_KINDS
                and (f.kind != "degraded_retrieval" or t.kind == "retrieval")
            )
        )
    return Schedule(models=tuple(models), tools=tuple(tools))


def hits(windows: tuple[Window, ...], now: float, u: float) -> list[Window]:
    """The windows active at `now` whose probability the call's roll `u` falls under."""
    return [w for w in windows if w.start_s <= now < w.end_s and u < w.probability]


class TimeWindow(NamedTuple):
    """A scheduled window, `[start_s, end_s)` in seconds after the run start, and its name.

    The one shape in which fault windows and traffic spikes travel from a suite or a
    manifest to the phase labels, the phase report and the timeline figure: an end, never
    a duration.
    """

    start_s: float
    end_s: float
    label: str


SPIKE = "spike"
"""The phase label of a traffic spike."""


def suite_windows(suite: Suite) -> list[TimeWindow]:
    """The suite's fault windows in suite order, then its spikes (labelled `spike`)."""
    windows = [TimeWindow(f.start_s, f.start_s + f.duration_s, f.label) for f in suite.faults]
    windows += [
        TimeWindow(s.start_s, s.start_s + s.duration_s, SPIKE) for s in suite.traffic.spikes
    ]
    return windows


def label_phases(windows: Sequence[TimeWindow], times_s: np.ndarray) -> np.ndarray:
    """Per time, the labels of the windows active then, joined 'a+b' in window order (each
    label once), or 'baseline' when none is."""
    n = times_s.shape[0]
    if not windows:
        return np.full(n, "baseline", dtype=object)
    masks = np.stack([(times_s >= w.start_s) & (times_s < w.end_s) for w in windows])
    labels = [w.label for w in windows]
    codes, inverse = np.unique(masks.T, axis=0, return_inverse=True)
    names = [
        "+".join(dict.fromkeys(lab for lab, on in zip(labels, row, strict=False) if on))
        or "baseline"
        for row in codes
    ]
    return np.asarray(names, dtype=object)[inverse.reshape(-1)]


def phases(suite: Suite, arrival_s: np.ndarray) -> np.ndarray:
    """Per request, the fault windows (and spikes) active at its arrival: 'a+b' or 'baseline'."""
    return label_phases(suite_windows(suite), arrival_s)
