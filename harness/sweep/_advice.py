"""What a recommendation should say besides its numbers: a best value on the edge of the
grid (the optimum may lie beyond it: here is a wider grid) and a mechanism it switches off.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from harness.errors import EvalxError
from harness.spec import LoadedSuite, load_suite


def short_names(keys: Sequence[str]) -> dict[str, str]:
    """Each dotted key's shortest tail that no other key shares (`large.capacity`)."""
    out = {}
    for key in keys:
        parts = key.split(".")
        for n in range(1, len(parts) + 1):
            tail = ".".join(parts[-n:])
            if not any(other != key and other.endswith("." + tail) for other in keys):
                break
        out[key] = tail
    return out


EDGE_STEPS = 0.25
"""A wider grid extends past the edge by this share of the grid's values (at least one)."""


def _numeric(values: list[Any]) -> bool:
    return len(values) >= 2 and all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in values
    )


def _valid(loaded: LoadedSuite, flags: list[str], key: str, value: float) -> bool:
    try:
        load_suite(loaded.path, [*flags, f"{key}={value}"])
    except EvalxError:
        return False
    return True


def _fmt(v: float, integral: bool) -> str:
    return str(round(v)) if integral else f"{v:.10g}"


def edge_warnings(
    loaded: LoadedSuite,
    flags: list[str],
    grid: Mapping[str, list[Any] | str],
    axes: Mapping[str, list[Any]],
    params: Mapping[str, Any],
) -> list[dict[str, Any]]:
    """For each numeric axis whose best value is its lowest or highest, the wider grid to
    try: the same step, about a quarter more values past that edge, as far as the
    parameter's valid range allows (an edge that is the range's own limit is no warning)."""
    out = []
    for key, values in axes.items():
        if key not in params or not _numeric(values):
            continue
        ordered = sorted(float(v) for v in values)
        best = float(params[key])
        low, high = ordered[0], ordered[-1]
        if best not in (low, high) or low == high:
            continue
        side = "lowest" if best == low else "highest"
        step = (ordered[1] - ordered[0]) if side == "lowest" else (ordered[-1] - ordered[-2])
        integral = all(float(v).is_integer() for v in values)
        sign = -1.0 if side == "lowest" else 1.0
        steps = max(1, math.ceil(EDGE_STEPS * len(values)))
        edge = None
        for k in range(steps, 0, -1):  # the furthest value the parameter's range allows
            candidate = round(best + sign * k * step, 10)
            if _valid(loaded, flags, key, candidate):
                edge, steps = candidate, k
                break
        if edge is None:
            continue  # the grid already reaches the parameter's limit
        new_low, new_high = (edge, high) if side == "lowest" else (low, edge)
        spec = grid.get(key)
        if isinstance(spec, str):
            parts = (_fmt(x, integral) for x in (new_low, new_high, step))
            suggestion = '"' + ":".join(parts) + '"'
        else:
            extra = [round(best + sign * i * step, 10) for i in range(1, steps + 1)]
            merged = sorted({*ordered, *extra})
            suggestion = "[" + ", ".join(_fmt(v, integral) for v in merged) + "]"
        name = short_names(list(params))[key]
        out.append({
            "parameter": key,
            "value": params[key],
            "edge": side,
            "suggested": f"{key}: {suggestion}",
            "message": f"the best {name} ({params[key]}) is the grid's {side} value: the "
                       f"optimum may lie beyond it; widen the grid: {key}: {suggestion}",
        })  # fmt: skip
    return out


# --------------------------------------------------------------------------- switched off

_Rule = tuple[str, Callable[[Any], bool], str]
_RULES: tuple[_Rule, ...] = (
    (r"stack\.escalation\.confidence_threshold", lambda v: float(v) <= 0.0,
     "escalation on low answer confidence is off: no confidence is below {v}, so no answer "
     "ever moves up a tier"),
    (r"stack\.escalation\.confidence_threshold", lambda v: float(v) >= 1.0,
     "the cascade is off: at threshold {v} every answer below the top tier escalates, so "
     "the cheaper tiers' answers are never kept"),
    (r"stack\.classifier\.min_confidence", lambda v: float(v) <= 0.0,
     "starting a tier higher on low classifier confidence is off (min_confidence {v})"),
    (r"stack\.classifier\.min_confidence", lambda v: float(v) >= 1.0,
     "every classified request starts a tier higher (min_confidence {v})"),
    (r"stack\.classifier\.enabled", lambda v: v is False,
     "the classifier is off: every request takes the first route"),
    (r"stack\.routes\.(?P<route>[^.]+)\.max_retries", lambda v: int(v) == 0,
     "retries are off on route {route} (max_retries 0)"),
    (r"stack\.breaker\.enabled", lambda v: v is False, "circuit breakers are off"),
    (r"stack\.retry_budget", lambda v: v is None,
     "the retry budget is off: retries are capped only per route"),
    (r"stack\.handoff", lambda v: v is False, "human handoff is off"),
    (r"stack\.fallback_down", lambda v: v is False, "falling back to lower tiers is off"),
    (r"stack\.escalation\.high_impact_route", lambda v: v is None,
     "high-impact requests no longer take a dedicated route"),
)  # fmt: skip


def _value(loaded: LoadedSuite, key: str) -> Any:
    """The suite's own value at a dotted key (None where there is none)."""
    node: Any = loaded.suite
    for part in key.split("."):
        node = node.get(part) if isinstance(node, Mapping) else getattr(node, part, None)
        if node is None:
            return None
    return node


def switched_off(loaded: LoadedSuite, params: Mapping[str, Any]) -> list[str]:
    """Mechanisms the setting `params` turns off, each said plainly, and whether the suite
    as it stands has it on."""
    out = []
    for key, value in params.items():
        for pattern, off, text in _RULES:
            m = re.fullmatch(pattern, key)
            try:
                hit = m is not None and off(value)
            except (TypeError, ValueError):
                hit = False
            if not hit or m is None:
                continue
            message = "the recommendation switches a mechanism off: " + text.format(
                v=value, **m.groupdict()
            )
            current = _value(loaded, key)
            try:
                was_on = not off(current)
            except (TypeError, ValueError):
                was_on = False
            if was_on:
                message += f" (the suite has {key.rsplit('.', 1)[-1]}={current})"
            out.append(message)
    return out
