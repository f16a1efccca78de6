"""A real request log as traffic: arrivals at the logged times, logged sizes, real text.

The log is read once into a canonical table (`harness.data.read_log`); here it becomes
`Requests`. Times are relative to the first logged request, cut to the window
`[start_s, start_s + duration_s)` of log time, divided by `speed`, and cut to the first
`requests` rows. Logged token counts are used as they are; a field the log lacks comes
from the suite's mix exactly as for synthetic traffic (same draws, keyed by request),
and a log without timestamps takes sampled Poisson arrivals. Columns that are not
mapped are kept, row-aligned, as `label_<column>`.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from harness.data import DataError, Log, read_log
from harness.spec import Suite, TrafficLog
from harness.traffic import Requests, arrival_times, assemble, sample_draws


def from_log(suite: Suite) -> Requests:
    """The requests of `suite.traffic.log`. Raises `DataError` on a bad log or mapping."""
    traffic = suite.traffic
    spec = traffic.log
    assert spec is not None
    mapping = {k: v for k, v in spec.columns.model_dump().items() if v is not None}
    log = read_log(spec.path, format=spec.format, columns=mapping,
                   timestamp_unit=spec.timestamp_unit, sort=spec.sort)  # fmt: skip
    table = log.table
    keep = np.arange(table.num_rows)
    arrivals: np.ndarray | None = None
    if "timestamp_s" in table.column_names:
        t = table.column("timestamp_s").to_numpy()
        rel = t - t[0] if len(t) else t
        end = np.inf if spec.duration_s is None else spec.start_s + spec.duration_s
        keep = np.flatnonzero((rel >= spec.start_s) & (rel < end))
        arrivals = (rel[keep] - spec.start_s) / spec.speed
    if spec.requests is not None:
        keep = keep[: spec.requests]
        if arrivals is not None:
            arrivals = arrivals[: spec.requests]
    n = len(keep)
    if n == 0:
        raise DataError(
            f"{spec.path}: the replayed window has no requests (log of {table.num_rows} rows, "
            f"start_s={spec.start_s}, duration_s={spec.duration_s}); widen traffic.log's window"
        )
    if arrivals is None:
        timed = traffic.model_copy(update={"requests": n})
        arrivals = arrival_times(timed, suite.seed) / spec.speed
    draws = sample_draws(traffic, suite.seed, n)
    cls = draws.task_class
    if "task_class" in table.column_names:
        cls = _classes(log, spec, keep, tuple(traffic.mix))
        draws = dataclasses.replace(draws, task_class=cls)
    cols = table.column_names

    def ints(name: str) -> np.ndarray | None:
        if name not in cols:
            return None
        out: np.ndarray = np.maximum(table.column(name).to_numpy()[keep], 1).astype(np.int32)
        return out

    def strings(name: str) -> tuple[str, ...] | None:
        if name not in cols:
            return None
        values = table.column(name).to_pylist()
        return tuple("" if values[i] is None else str(values[i]) for i in keep)

    extra: dict[str, np.ndarray] = {}
    for name in ("tenant", "session"):
        got = strings(name)
        if got is not None:
            extra[name] = np.asarray(got, dtype=object)
    for name in log.labels.column_names:
        values = log.labels.column(name).to_pylist()
        extra[f"label_{name}"] = np.asarray([values[i] for i in keep], dtype=object)
    arrivals = np.ascontiguousarray(arrivals, dtype=np.float64)
    sessions = None
    if "session" in extra:  # turns of a logged session keep their logged times (open loop)
        from harness.sessions import from_labels

        sessions = from_labels(extra["session"], arrivals)
    return assemble(
        traffic,
        arrivals,
        draws,
        input_tokens=ints("input_tokens"),
        output_tokens=ints("output_tokens"),
        texts=strings("text"),
        ids=strings("id"),
        extra=extra,
        sessions=sessions,
    )


def _classes(log: Log, spec: TrafficLog, keep: np.ndarray, names: tuple[str, ...]) -> np.ndarray:
    """The log's task classes as indices into the mix; an unknown class is located."""
    values = log.table.column("task_class").to_pylist()
    index = {name: i for i, name in enumerate(names)}
    out = np.empty(len(keep), dtype=np.int16)
    for j, i in enumerate(keep):
        c = index.get(values[i])
        if c is None:
            column = spec.columns.task_class
            raise DataError(
                f"{log.where(int(i))}: column {column}: task class {values[i]!r} is not in "
                f"traffic.mix ({', '.join(names)}); add it to the mix or map another column"
            )
        out[j] = c
    return out
