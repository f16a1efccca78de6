"""The k6 threshold grammar: parsing (with positions), checking against the schema, evaluating."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.errors import SpecError
from harness.spec import load_suite
from harness.thresholds import (
    METRICS,
    OPERATORS,
    TAGS,
    ThresholdSyntaxError,
    compile_thresholds,
    evaluate,
    parse_expression,
    parse_key,
)

ROOT = Path(__file__).resolve().parents[2]

AGGS = st.sampled_from(["avg", "min", "med", "max", "rate", "count"])
OPS = st.sampled_from(sorted(OPERATORS))
NUMBERS = st.floats(allow_nan=False, allow_infinity=False, width=32)


@given(agg=AGGS, op=OPS, limit=NUMBERS, spaces=st.sampled_from(["", " ", "  "]))
def test_expressions_round_trip(agg: str, op: str, limit: float, spaces: str) -> None:
    text = f"{agg}{spaces}{op}{spaces}{limit!r}"
    assert parse_expression(text) == (agg, None, op, float(repr(limit)))


@given(pct=st.floats(0, 100, allow_nan=False), op=OPS, limit=NUMBERS)
def test_percentiles_round_trip(pct: float, op: str, limit: float) -> None:
    assert parse_expression(f"p({pct!r}){op}{limit!r}") == ("p", pct, op, limit)


@given(
    metric=st.sampled_from(METRICS),
    tags=st.lists(
        st.tuples(st.sampled_from(TAGS), st.from_regex(r"[a-z0-9_>+-]{1,12}", fullmatch=True)),
        max_size=3,
    ),
)
def test_keys_round_trip(metric: str, tags: list[tuple[str, str]]) -> None:
    key = metric + ("{" + ",".join(f"{t}:{v}" for t, v in tags) + "}" if tags else "")
    assert parse_key(key) == (metric, tuple(tags))


@pytest.mark.parametrize(
    ("text", "message", "position"),
    [
        ("p(95<4000", "expected ')'", 4),
        ("avg 4000", "expected a comparison", 8),
        ("mean<3", "unknown aggregation 'mean'", 0),
        ("avg<fast", "expected a number, got 'fast'", 4),
        ("p(120)<3", "p(N) needs 0 <= N <= 100", 0),
        ("rate(5)>0.9", "unknown aggregation 'rate'", 0),
    ],
)
def test_syntax_errors_say_what_and_where(text: str, message: str, position: int) -> None:
    with pytest.raises(ThresholdSyntaxError) as info:
        parse_expression(text)
    assert message in str(info.value)
    assert info.value.position == position


@given(st.text(max_size=20))
def test_any_text_parses_or_raises_a_positioned_syntax_error(text: str) -> None:
    try:
        parse_expression(text)
    except ThresholdSyntaxError as err:
        assert 0 <= err.position <= len(text)


def requests(**cols: list[object]) -> pa.Table:
    return pa.table(cols)


def compiled(thresholds: dict[str, list[str]]) -> list:  # type: ignore[type-arg]
    loaded = load_suite(ROOT / "scenarios" / "support.yaml", [f"thresholds={thresholds!r}"])
    return compile_thresholds(loaded)


def test_evaluation_matches_numpy_and_filters_by_tags() -> None:
    table = requests(
        latency_ms=[100.0, 200.0, 300.0, 4000.0],
        success=[True, True, False, True],
        violations=[0, 0, 1, 0],
        input_tokens=[10, 10, 10, 10],
        output_tokens=[5, 5, 5, 5],
        route=["a", "a", "b", "b"],
    )
    outcomes = evaluate(
        compiled(
            {
                "latency_ms": ["p(95)<4000", "med<=250", "max==4000"],
                "success{route:a}": ["rate==1"],
                "success": ["rate>0.8"],
                "violations": ["count==0"],
                "tokens": ["avg==15"],
            }
        ),
        table,
    )
    got = [(o.threshold.expression, o.value, o.passed) for o in outcomes]
    p95 = float(np.percentile([100, 200, 300, 4000], 95))
    assert got == [
        ("p(95)<4000", p95, p95 < 4000),
        ("med<=250", 250.0, True),
        ("max==4000", 4000.0, True),
        ("rate==1", 1.0, True),
        ("rate>0.8", 0.75, False),
        ("count==0", 1.0, False),
        ("avg==15", 15.0, True),
    ]


def test_a_filter_matching_nothing_fails_instead_of_passing() -> None:
    (outcome,) = evaluate(
        compiled({"success{route:nowhere}": ["rate>0.5"]}),
        requests(success=[True], route=["a"]),
    )
    assert (outcome.matched, outcome.passed) == (0, False)
    assert math.isnan(outcome.value)


def test_unknown_metric_tag_and_bad_expression_are_located_errors(tmp_path: Path) -> None:
    suite = tmp_path / "s.yaml"
    suite.write_text(
        "\n".join(
            [
                "name: t",
                "traffic: {mix: {a: {weight: 1}}}",
                "models: {m: {tier: fast, quality: {}}}",
                "stack: {tiers: [fast], routes: {r: {tier: fast}}, class_routes: {a: r},",
                "        escalation: {high_impact_route: null}}",
                "policies: {actions: {high_impact_tiers: [fast]}}",
                "thresholds:",
                '  latncy_ms: ["p(95)<1"]',
                '  "success{rout:x}": ["rate>0.9"]',
                '  cost_usd: ["avg<1", "p(95<3"]',
            ]
        ),
        encoding="utf-8",
    )
    with pytest.raises(SpecError) as info:
        compile_thresholds(load_suite(suite))
    assert [str(p) for p in info.value.problems] == [
        f"{suite}:8: thresholds.latncy_ms: unknown metric 'latncy_ms'; did you mean latency_ms?",
        f"{suite}:9: thresholds.success{{rout:x}}: unknown tag 'rout'; did you mean route?",
        f"{suite}:10: thresholds.cost_usd.1: 'p(95<3': expected ')' at column 5",
    ]
