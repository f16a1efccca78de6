"""Service objectives in k6's grammar, checked against a run's requests.

    thresholds:
      latency_ms: ["p(95)<4000", "p(99)<10000"]
      "success{route:escalation}": ["rate>0.95"]
      violations: ["count==0"]
      cost_usd: ["avg<0.01"]

A key is a metric (any numeric or boolean request column, `tokens` = input + output, or
`ttft` = `ttft_ms`, where requests without an answer are left out of percentiles)
with optional tag filters on string request columns; an expression is an aggregation
(`avg, min, med, max, p(N), rate, count`), a comparison and a number. `rate` is the share
of non-zero values, `count` their sum (so `violations: count==0` means none at all).
Unknown metrics, tags and aggregations are errors with the file and line; a filter that
matches no request fails the threshold rather than passing silently.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from harness.errors import Problem, SpecError
from harness.records import REQUEST_COLUMNS
from harness.spec._load import locate_key, suggest

if TYPE_CHECKING:
    import pyarrow as pa

    from harness.spec import LoadedSuite

AGGREGATIONS = ("avg", "min", "med", "max", "p(N)", "rate", "count")
OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    ">": operator.gt,
}
ALIASES = {"ttft": "ttft_ms"}
"""Short metric names and the request column they read."""
METRICS = tuple(
    [c.name for c in REQUEST_COLUMNS if c.type != "string" and c.name != "request_id"]
    + ["tokens", *ALIASES]
)
"""Metric names a threshold may use."""
TAGS = tuple(c.name for c in REQUEST_COLUMNS if c.type == "string")
"""Request columns a tag filter may use."""

_KEY = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(?:\{(.*)\})?\s*$")
_EXPR = re.compile(
    r"^\s*(?P<agg>[a-z]+)(?:\(\s*(?P<arg>[^)]*?)\s*\))?\s*(?P<op><=|>=|==|!=|<|>)\s*(?P<num>\S+)\s*$"
)


class ThresholdSyntaxError(ValueError):
    """A threshold that does not parse; `position` is the 0-based column of the problem."""

    def __init__(self, message: str, position: int) -> None:
        super().__init__(message)
        self.position = position


@dataclass(frozen=True)
class Threshold:
    """One parsed expression on one (possibly filtered) metric."""

    key: str
    metric: str
    tags: tuple[tuple[str, str], ...]
    expression: str
    aggregation: str  # "avg", "min", "med", "max", "rate", "count" or "p"
    percentile: float | None
    op: str
    limit: float

    def label(self) -> str:
        """The aggregation as k6 prints it: `p(95)`, `avg`, ..."""
        return f"p({self.percentile:g})" if self.aggregation == "p" else self.aggregation


@dataclass(frozen=True)
class Outcome:
    """A threshold evaluated on a run."""

    threshold: Threshold
    value: float
    matched: int  # requests the filter matched
    passed: bool


def parse_key(key: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    """`metric{tag:value,...}` -> (metric, ((tag, value), ...))."""
    m = _KEY.match(key)
    if not m:
        bad = next((i for i, ch in enumerate(key) if not (ch.isalnum() or ch == "_")), 0)
        raise ThresholdSyntaxError("expected metric or metric{tag:value}", bad)
    tags: list[tuple[str, str]] = []
    if m.group(2) is not None:
        body = m.group(2)
        offset = key.index("{") + 1
        for part in body.split(","):
            if ":" not in part:
                raise ThresholdSyntaxError(f"expected tag:value, got {part.strip()!r}", offset)
            tag, value = (s.strip() for s in part.split(":", 1))
            if not tag or not value:
                raise ThresholdSyntaxError("expected tag:value with both sides", offset)
            tags.append((tag, value))
            offset += len(part) + 1
    return m.group(1), tuple(tags)


def parse_expression(text: str) -> tuple[str, float | None, str, float]:
    """`p(95)<4000` -> ("p", 95.0, "<", 4000.0); raises ThresholdSyntaxError with a position."""
    m = _EXPR.match(text)
    if not m:
        op_at = min((i for i in (text.find(o) for o in OPERATORS) if i >= 0), default=-1)
        if op_at < 0:
            raise ThresholdSyntaxError("expected a comparison (<, <=, >, >=, ==, !=)", len(text))
        if "(" in text[:op_at] and ")" not in text[:op_at]:
            raise ThresholdSyntaxError("expected ')'", op_at)
        raise ThresholdSyntaxError("expected aggregation, comparison and number", 0)
    agg, arg, op, num = m.group("agg"), m.group("arg"), m.group("op"), m.group("num")
    percentile: float | None = None
    if agg == "p":
        try:
            percentile = float(arg) if arg is not None else math.nan
        except ValueError:
            percentile = math.nan
        if not 0 <= percentile <= 100:
            raise ThresholdSyntaxError("p(N) needs 0 <= N <= 100", m.start("agg"))
    elif arg is not None or agg not in AGGREGATIONS:
        close = "avg" if agg == "mean" else suggest(agg, [a for a in AGGREGATIONS if a != "p(N)"])
        hint = f"; did you mean {close}?" if close and close != "p" else ""
        raise ThresholdSyntaxError(
            f"unknown aggregation {agg!r} (expected {', '.join(AGGREGATIONS)}){hint}",
            m.start("agg"),
        )
    try:
        limit = float(num)
    except ValueError:
        raise ThresholdSyntaxError(f"expected a number, got {num!r}", m.start("num")) from None
    return agg, percentile, op, limit


def compile_thresholds(loaded: LoadedSuite) -> list[Threshold]:
    """Parse and check every threshold of a suite; SpecError lists all problems with lines."""
    raw = loaded.suite.thresholds or {}
    problems: list[Problem] = []
    out: list[Threshold] = []

    def problem(path: tuple[str | int, ...], message: str, hint: str | None = None) -> None:
        file, line = locate_key(
            path,
            file=str(loaded.path),
            lines=loaded.lines,
            overridden=loaded.overrides,
            files=loaded.files,
        )
        problems.append(Problem(file, line, ".".join(map(str, path)), message, hint))

    for key, exprs in raw.items():
        try:
            metric, tags = parse_key(key)
        except ThresholdSyntaxError as err:
            problem(("thresholds", key), f"{err} at column {err.position + 1}")
            continue
        if metric not in METRICS:
            close = suggest(metric, METRICS)
            problem(
                ("thresholds", key),
                f"unknown metric {metric!r}",
                f"did you mean {close}?" if close else "metrics: " + ", ".join(METRICS),
            )
            continue
        bad_tags = [t for t, _ in tags if t not in TAGS]
        for tag in bad_tags:
            close = suggest(tag, TAGS)
            problem(
                ("thresholds", key),
                f"unknown tag {tag!r}",
                f"did you mean {close}?" if close else "tags: " + ", ".join(TAGS),
            )
        if bad_tags:
            continue
        for i, expr in enumerate(exprs):
            try:
                agg, pct, op, limit = parse_expression(expr)
            except ThresholdSyntaxError as err:
                problem(("thresholds", key, i), f"{expr!r}: {err} at column {err.position + 1}")
                continue
            out.append(Threshold(key, metric, tags, expr, agg, pct, op, limit))
    if problems:
        raise SpecError(problems)
    return out


def _values(requests: pa.Table, t: Threshold) -> np.ndarray:
    import pyarrow as pa
    import pyarrow.compute as pc

    table = requests
    for tag, value in t.tags:
        table = table.filter(pc.equal(table[tag], pa.scalar(value)))
    if t.metric == "tokens":
        both = pc.add(table["input_tokens"], table["output_tokens"])
        return np.asarray(both.to_numpy(), dtype=np.float64)
    column = ALIASES.get(t.metric, t.metric)
    return np.asarray(table[column].to_numpy(zero_copy_only=False), dtype=np.float64)


def _aggregate(values: np.ndarray, t: Threshold) -> float:
    if t.aggregation == "count":
        return float(np.nansum(values))
    if not values.size:
        return math.nan
    if t.aggregation == "rate":
        return float(np.mean(values != 0))
    if t.aggregation == "avg":
        return float(np.nanmean(values))
    if t.aggregation == "min":
        return float(np.nanmin(values))
    if t.aggregation == "max":
        return float(np.nanmax(values))
    q = 50.0 if t.aggregation == "med" else float(t.percentile or 0.0)
    return float(np.nanpercentile(values, q))


def evaluate(thresholds: list[Threshold], requests: pa.Table) -> list[Outcome]:
    """Each threshold on the run's requests. No matching request fails the threshold."""
    out = []
    for t in thresholds:
        values = _values(requests, t)
        value = _aggregate(values, t)
        passed = bool(values.size) and not math.isnan(value) and OPERATORS[t.op](value, t.limit)
        out.append(Outcome(t, value, int(values.size), passed))
    return out


def as_records(outcomes: list[Outcome]) -> list[dict[str, Any]]:
    """Outcomes as plain data for the manifest and JSON reports."""
    return [
        {
            "key": o.threshold.key,
            "expression": o.threshold.expression,
            "value": None if math.isnan(o.value) else o.value,
            "matched": o.matched,
            "passed": o.passed,
        }
        for o in outcomes
    ]
