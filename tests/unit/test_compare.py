"""Compare and gate: the tests, the Holm correction, tolerances, verdicts and run checks."""

from __future__ import annotations

import itertools
import math
import re
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import binomtest

from harness import storage
from harness.compare import (
    DEFAULT_TOLERANCES,
    METRICS,
    RATES,
    REQUIRED_COLUMNS,
    CompareError,
    Comparison,
    Gates,
    Result,
    Tolerance,
    _percentile_of_ranks,
    _ranks,
    _resampled_means,
    compare_runs,
    compare_tables,
    holm,
    load_gates,
    mcnemar_exact,
    pairing_problem,
    parse_tolerance,
    parse_tolerances,
)
from harness.errors import EvalxError, SpecError
from harness.integrity import documented
from harness.metrics import ALL
from harness.records import SCHEMA_VERSION, arrow_type
from harness.storage import MANIFEST, REQUESTS

# ---------------------------------------------------------------------------- helpers

ROUTES = {"routine": 3000, "reasoning": 2000, "escalation": 400}


def requests(routes: Mapping[str, int] = ROUTES, seed: int = 7) -> pd.DataFrame:
    """A synthetic requests table with every column a comparison reads."""
    rng = np.random.default_rng(seed)
    route = np.concatenate([np.full(n, name, dtype=object) for name, n in routes.items()])
    rng.shuffle(route)
    n = len(route)
    tokens_in = rng.integers(200, 3000, n)
    return pd.DataFrame(
        {
            "request_id": np.arange(n, dtype=np.int64),
            "arrival_s": np.cumsum(rng.exponential(0.1, n)),
            "task_class": rng.choice(np.array(["routine", "moderate", "hard"], dtype=object), n),
            "route": route,
            "success": rng.random(n) < 0.9,
            "violations": np.zeros(n, dtype=np.int16),
            "latency_ms": rng.lognormal(7.0, 0.8, n),
            "cost_usd": tokens_in * 2e-6,
            "input_tokens": tokens_in,
            "output_tokens": rng.integers(50, 800, n),
            "escalated": rng.random(n) < 0.2,
            "handoff": rng.random(n) < 0.01,
        }
    )


def write_run(
    path: Path,
    table: pd.DataFrame,
    *,
    suite: str = "support",
    seed: int = 42,
    schema_version: int = SCHEMA_VERSION,
    evalx: str = "0.1.0",
    policy: Mapping[str, str] | None = None,
) -> Path:
    """A minimal run directory: requests.parquet (in the documented types) and manifest.json."""
    arrow = pa.Table.from_pandas(table, preserve_index=False)
    docs = documented(REQUESTS)
    arrow = arrow.cast(pa.schema([
        pa.field(f.name, arrow_type(docs[f.name].type)) if f.name in docs else f
        for f in arrow.schema
    ]))  # fmt: skip
    manifest = {
        "schema_version": schema_version,
        "suite": suite,
        "suite_hash": "0" * 64,
        "seed": seed,
        "versions": {"evalx": evalx},
        "policy": dict(policy or {"name": "default", "version": "1.0.0", "hash": "8d6adfcd" * 8}),
    }
    storage.write_run(path, {REQUESTS: arrow}, manifest)
    return path


def by_key(comparison: Comparison) -> dict[tuple[str, str], Result]:
    return {(r.route, r.metric): r for r in comparison.results}


def every(metrics: tuple[str, ...] = METRICS, text: str = "0") -> dict[str, Tolerance]:
    return parse_tolerances(dict.fromkeys(metrics, text))


# --------------------------------------------------------------------------- McNemar


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 400), st.integers(0, 400))
def test_mcnemar_matches_scipy_binomtest(b: int, c: int) -> None:
    expected = 1.0 if b + c == 0 else binomtest(b, b + c, 0.5).pvalue
    assert mcnemar_exact(b, c) == pytest.approx(expected, rel=1e-9, abs=1e-300)


def test_mcnemar_known_values() -> None:
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(5, 5) == 1.0
    assert mcnemar_exact(10, 0) == pytest.approx(2 * 0.5**10)
    assert mcnemar_exact(3, 7) == mcnemar_exact(7, 3)


# ------------------------------------------------------------------------------ Holm


def test_holm_hand_computed() -> None:
    # sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, max(0.04*1, 0.06) = 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    assert holm([]) == []


@given(st.lists(st.floats(0.0, 1.0), max_size=40))
def test_holm_properties(ps: list[float]) -> None:
    adjusted = holm(ps)
    assert all(p <= a <= 1.0 for p, a in zip(ps, adjusted, strict=True))
    ranked = sorted(zip(ps, adjusted, strict=True))
    assert all(a1 <= a2 for (_, a1), (_, a2) in itertools.pairwise(ranked))
    assert all(a <= min(1.0, len(ps) * p) for p, a in zip(ps, adjusted, strict=True))


# ------------------------------------------------------------------ bootstrap pieces


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=60),
    st.sampled_from([0.0, 1.0, 50.0, 95.0, 99.0, 100.0]),
    st.integers(0, 2**32 - 1),
)
def test_percentile_of_ranks_is_numpy_percentile(values: list[float], q: float, seed: int) -> None:
    x = np.round(np.asarray(values), 1)  # ties on purpose
    idx = np.random.default_rng(seed).integers(0, len(x), size=(8, len(x)))
    ordered, ranks = _ranks(x)
    got = _percentile_of_ranks(ordered, ranks[idx], q)
    np.testing.assert_allclose(got, np.percentile(x[idx], q, axis=1), rtol=1e-12, atol=1e-9)
    ordered_only = _percentile_of_ranks(np.sort(x), idx.copy(), q)  # the unpaired form
    expected = np.percentile(np.sort(x)[idx], q, axis=1)
    np.testing.assert_allclose(ordered_only, expected, rtol=1e-12, atol=1e-9)


def test_resampled_means_by_counts_matches_resampling_indices() -> None:
    x = np.r_[np.zeros(900), np.ones(100)]
    by_counts = _resampled_means(x, 20_000, np.random.default_rng(1))
    by_index = x[np.random.default_rng(2).integers(0, len(x), (20_000, len(x)))].mean(axis=1)
    assert by_counts.mean() == pytest.approx(by_index.mean(), abs=5e-4)
    assert by_counts.std() == pytest.approx(by_index.std(), rel=0.03)
    assert by_counts.std() == pytest.approx(math.sqrt(0.1 * 0.9 / 1000), rel=0.03)


# ------------------------------------------------------------------------ tolerances


@pytest.mark.parametrize(
    ("text", "metric", "relative", "value", "worse"),
    [
        ("+10%", "p95_latency_ms", True, 0.10, 1),
        ("-1pp", "success_rate", False, -0.01, -1),
        ("+0.002", "cost_per_request_usd", False, 0.002, 1),
        ("+0pp", "violation_rate", False, 0.0, 1),
        ("0", "success_rate", False, 0.0, -1),  # zero: the metric's own worse direction
        ("+0%", "success_rate", True, 0.0, -1),
        ("0.5pp", "success_rate", False, -0.005, -1),  # unsigned: the metric's direction
        ("150", "p99_latency_ms", False, 150.0, 1),
        (" -2.5 % ", "tokens_per_request", True, -0.025, -1),  # explicit sign wins
        (0.002, "cost_per_request_usd", False, 0.002, 1),  # YAML reads +0.002 as a number
        (1e-3, "mean_latency_ms", False, 0.001, 1),
    ],
)
def test_parse_tolerance(
    text: str | float, metric: str, relative: bool, value: float, worse: int
) -> None:
    tol = parse_tolerance(text, metric)
    assert tol.relative is relative
    assert tol.value == pytest.approx(value, abs=0)
    assert tol.worse(metric) == worse
    assert tol.text == str(text).strip()


_SIGNS = st.sampled_from(["+", "-"])
_NUMBERS = st.one_of(
    st.integers(0, 10**6).map(str),
    st.tuples(st.integers(0, 999), st.integers(0, 999)).map(lambda t: f"{t[0]}.{t[1]:03d}"),
)


@given(_SIGNS, _NUMBERS, st.sampled_from(["%", "pp", ""]), st.sampled_from(METRICS))
def test_tolerance_round_trips(sign: str, number: str, unit: str, metric: str) -> None:
    if unit == "pp" and metric not in RATES:
        unit = "%"
    text = f"{sign}{number}{unit}"
    tol = parse_tolerance(text, metric)
    expected = (1 if sign == "+" else -1) * float(number) / (100.0 if unit else 1.0)
    assert tol == Tolerance(text, unit == "%", expected)
    assert parse_tolerance(tol.text, metric) == tol
    assert str(tol) == text
    if float(number) != 0:
        assert tol.worse(metric) == (1 if sign == "+" else -1)


_TOLERANCE_LIKE = re.compile(r"\s*[+-]?\s*(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?\s*")


@given(st.text(max_size=12))
def test_tolerance_rejects_anything_else(text: str) -> None:
    plain = re.sub(r"\s*(%|pp)\s*$", "", text)
    if _TOLERANCE_LIKE.fullmatch(plain):
        return  # a valid tolerance (or one that overflows), covered elsewhere
    with pytest.raises(CompareError, match="write a signed change: \\+10%"):
        parse_tolerance(text, "success_rate")


def test_tolerance_errors() -> None:
    with pytest.raises(CompareError) as err:
        parse_tolerance("10 percent", "p95_latency_ms")
    assert str(err.value) == (
        "p95_latency_ms: cannot read '10 percent' as a tolerance; write a signed change: "
        "+10% (relative to the baseline), -1pp (percentage points, for rates) or +0.002 "
        "(in the metric's units); 0 means any significant worsening"
    )
    with pytest.raises(CompareError, match=r"'pp' .* applies only to rates"):
        parse_tolerance("+5pp", "p95_latency_ms")
    with pytest.raises(CompareError, match="unknown metric 'sucess_rate'; did you mean succ"):
        parse_tolerance("-1pp", "sucess_rate")
    with pytest.raises(CompareError, match="expected a tolerance"):
        parse_tolerance(True, "success_rate")
    with pytest.raises(CompareError, match="not a finite number"):
        parse_tolerance("+1e999", "p95_latency_ms")


def test_default_gates() -> None:
    gates = Gates()
    assert {m: t.text for m, t in gates.tolerances.items()} == {
        "success_rate": "-1pp",
        "violation_rate": "+0pp",
        "p95_latency_ms": "+10%",
        "p99_latency_ms": "+20%",
        "cost_per_request_usd": "+5%",
        "tokens_per_request": "+10%",
    }
    assert (gates.alpha, gates.min_requests, gates.bootstrap, gates.seed) == (0.05, 30, 2000, 0)
    assert gates.max_new_violations == 0
    assert gates.tolerances is not DEFAULT_TOLERANCES
    assert hash(gates) == hash(Gates())


def test_gates_validate() -> None:
    with pytest.raises(CompareError, match=r"unknown metric 'p95_latency'.*did you mean p95_lat"):
        Gates(tolerances={"p95_latency": DEFAULT_TOLERANCES["p95_latency_ms"]})
    with pytest.raises(CompareError, match="alpha must be between 0 and 1"):
        Gates(alpha=1.5)
    with pytest.raises(CompareError, match="max_new_violations must be >= 0 or None"):
        Gates(max_new_violations=-1)
    with pytest.raises(CompareError, match="must be a Tolerance"):
        Gates(tolerances={"success_rate": "-1pp"})  # type: ignore[dict-item]
    reordered = Gates(tolerances=every(("handoff_rate", "success_rate")))
    assert list(reordered.tolerances) == ["success_rate", "handoff_rate"]


# ----------------------------------------------------------------------- gates files


def test_load_gates(tmp_path: Path) -> None:
    path = tmp_path / "gates.yaml"
    path.write_text(
        "alpha: 0.01\n"
        "min_requests: 50\n"
        "bootstrap: 500\n"
        "seed: 3\n"
        "max_new_violations: null\n"
        "tolerances:\n"
        "  success_rate: -0.5pp\n"
        "  p95_latency_ms: +15%\n"
        "  cost_per_request_usd: +0.002\n"
        "  escalation_rate: 2pp\n"
        "  tokens_per_request: off\n"
        "  p99_latency_ms: null\n"
    )
    gates = load_gates(path)
    assert (gates.alpha, gates.min_requests, gates.bootstrap, gates.seed) == (0.01, 50, 500, 3)
    assert gates.max_new_violations is None
    assert gates.file == str(path)
    tols = gates.tolerances
    assert list(tols) == [
        "success_rate",
        "violation_rate",
        "p95_latency_ms",
        "cost_per_request_usd",
        "escalation_rate",
    ]
    assert tols["success_rate"] == Tolerance("-0.5pp", False, -0.005)
    assert tols["p95_latency_ms"] == Tolerance("+15%", True, 0.15)
    assert tols["cost_per_request_usd"] == Tolerance("0.002", False, 0.002)
    assert tols["escalation_rate"] == Tolerance("2pp", False, 0.02)
    assert tols["violation_rate"] == DEFAULT_TOLERANCES["violation_rate"]


def test_load_gates_empty_mapping_keeps_defaults(tmp_path: Path) -> None:
    path = tmp_path / "gates.yaml"
    path.write_text("alpha: 0.05\n")
    assert load_gates(path).tolerances == dict(DEFAULT_TOLERANCES)


def test_load_gates_errors_name_file_line_and_key(tmp_path: Path) -> None:
    path = tmp_path / "gates.yaml"
    path.write_text(
        "alpha: 0.05\n"
        "tolerances:\n"
        "  sucess_rate: -1pp\n"
        "  p95_latency_ms: 10 percent\n"
        "  p99_latency_ms: +2pp\n"
        "  brand_new_metric: +1%\n"
    )
    with pytest.raises(SpecError) as err:
        load_gates(path)
    lines = str(err.value).splitlines()
    assert lines[0] == (
        f"{path}:3: tolerances.sucess_rate: unknown metric; did you mean success_rate?"
    )
    assert lines[1] == (
        f"{path}:4: tolerances.p95_latency_ms: cannot read '10 percent' as a tolerance; "
        "write a signed change: +10% (relative to the baseline), -1pp (percentage points, "
        "for rates) or +0.002 (in the metric's units); 0 means any significant worsening"
    )
    assert lines[2].startswith(f"{path}:5: tolerances.p99_latency_ms: 'pp' (percentage points)")
    assert lines[3].startswith(f"{path}:6: tolerances.brand_new_metric: unknown metric; metrics: ")
    assert len(err.value.problems) == 4


def test_load_gates_structure_errors(tmp_path: Path) -> None:
    path = tmp_path / "gates.yaml"
    path.write_text("alpha: 2\nmin_request: 10\ntolerances: [1, 2]\n")
    with pytest.raises(SpecError) as err:
        load_gates(path)
    text = str(err.value)
    assert f"{path}:1: alpha: must be < 1" in text
    assert f"{path}:2: min_request: unknown key; did you mean min_requests?" in text
    assert f"{path}:3: tolerances: expected a mapping" in text


# --------------------------------------------------------------- verdicts on tables


def test_identical_tables_no_change_exactly() -> None:
    table = requests({"routine": 500, "reasoning": 300})
    result = compare_tables(table, table.copy(), Gates(tolerances=every()))
    assert result.paired
    assert not result.failed
    assert {r.verdict for r in result.results} == {"no change"}
    for r in result.results:
        assert (r.delta, r.ci_low, r.ci_high, r.p_value, r.p_adjusted) == (0, 0, 0, 1, 1)


def test_success_drop_on_one_route_is_a_regression_there() -> None:
    base = requests()
    cand = base.copy()
    reasoning = np.flatnonzero((base["route"] == "reasoning") & base["success"])
    flipped = np.random.default_rng(1).choice(reasoning, size=60, replace=False)  # 3% of 2000
    cand.loc[flipped, "success"] = False
    result = by_key(compare_tables(base, cand))
    hit = result[("reasoning", "success_rate")]
    assert hit.verdict == "regression"
    assert hit.delta == pytest.approx(-0.03)
    assert hit.test == "mcnemar-rao-scott"
    assert hit.p_value == pytest.approx(binomtest(60, 60, 0.5).pvalue)
    assert hit.ci_high < 0
    assert result[("routine", "success_rate")].verdict == "no change"
    assert result[("routine", "success_rate")].p_value == 1.0
    assert result[(ALL, "success_rate")].delta == pytest.approx(-60 / 5400)
    assert result[(ALL, "success_rate")].verdict == "regression"  # -1.1pp, beyond -1pp
    others = [r for r in result.values() if r.metric != "success_rate"]
    assert {r.verdict for r in others} == {"no change"}


def test_small_significant_change_within_tolerance_is_no_change() -> None:
    base = requests()
    cand = base.copy()
    routine = np.flatnonzero((base["route"] == "routine") & base["success"])
    spread = np.random.default_rng(3).choice(routine, size=20, replace=False)
    cand.loc[spread, "success"] = False  # -0.67pp on routine: significant, within -1pp
    hit = by_key(compare_tables(base, cand))[("routine", "success_rate")]
    assert hit.p_adjusted < 0.05
    assert hit.verdict == "no change"
    zero = Gates(tolerances=every(("success_rate",)))
    assert by_key(compare_tables(base, cand, zero))[("routine", "success_rate")].verdict == (
        "regression"
    )


def test_latency_increase_is_a_p95_regression() -> None:
    base = requests()
    cand = base.assign(latency_ms=base["latency_ms"] * 1.2)
    result = compare_tables(base, cand)
    assert result.failed
    for route in [*ROUTES, ALL]:
        hit = by_key(result)[(route, "p95_latency_ms")]
        assert hit.verdict == "regression"
        assert hit.test == "paired-block-bootstrap"
        assert hit.relative_delta == pytest.approx(0.2)
        assert 0 < hit.ci_low <= hit.delta <= hit.ci_high
        assert hit.p_value < 1e-6  # from the bootstrap standard error: no resampling floor
    assert {r.metric for r in result.regressions} <= {"p95_latency_ms", "p99_latency_ms"}


def test_improvements() -> None:
    base = requests()
    cand = base.assign(latency_ms=base["latency_ms"] * 0.7, cost_usd=base["cost_usd"] * 0.5)
    failures = np.flatnonzero(~base["success"].to_numpy())
    cand.loc[failures[: len(failures) // 2], "success"] = True
    result = compare_tables(base, cand)
    assert not result.failed
    verdicts = {(r.route, r.metric): r.verdict for r in result.results}
    for metric in ("success_rate", "p95_latency_ms", "p99_latency_ms", "cost_per_request_usd"):
        assert verdicts[(ALL, metric)] == "improvement", metric
    assert verdicts[(ALL, "tokens_per_request")] == "no change"


def test_relative_tolerance_with_zero_baseline_uses_the_absolute_delta() -> None:
    base = requests({"routine": 400}).assign(cost_usd=0.0)
    small = base.assign(cost_usd=0.01)  # +0.01 USD: within "+5%" read as 0.05 absolute
    large = base.assign(cost_usd=0.10)
    assert by_key(compare_tables(base, small))[(ALL, "cost_per_request_usd")].verdict == (
        "no change"
    )
    hit = by_key(compare_tables(base, large))[(ALL, "cost_per_request_usd")]
    assert hit.verdict == "regression"
    assert math.isnan(hit.relative_delta)


def test_min_requests_gives_insufficient_data() -> None:
    table = requests({"routine": 500, "rare": 12})
    cand = table.assign(latency_ms=table["latency_ms"] * 3)
    result = by_key(compare_tables(table, cand))
    rare = [r for (route, _), r in result.items() if route == "rare"]
    assert rare and {r.verdict for r in rare} == {"insufficient data"}
    assert all(math.isnan(r.p_value) and math.isnan(r.p_adjusted) for r in rare)
    assert rare[0].n_baseline == rare[0].n_candidate == 12
    assert result[("rare", "p95_latency_ms")].delta > 0  # values are still reported
    assert result[("routine", "p95_latency_ms")].verdict == "regression"
    everything = by_key(compare_tables(table, cand, Gates(min_requests=10)))
    assert everything[("rare", "p95_latency_ms")].verdict != "insufficient data"


def test_holm_counts_only_tests_with_data() -> None:
    table = requests({"routine": 500, "rare": 5})
    cand = table.copy()
    cand.loc[np.flatnonzero(cand["success"])[:40], "success"] = False
    gates = Gates(tolerances=every(("success_rate",)))
    result = by_key(compare_tables(table, cand, gates))
    tested = [result[("routine", "success_rate")], result[(ALL, "success_rate")]]
    assert holm([r.p_value for r in tested]) == [r.p_adjusted for r in tested]


def test_tests_are_deterministic_and_independent_of_the_others() -> None:
    base = requests({"routine": 800, "reasoning": 400})
    cand = base.assign(latency_ms=base["latency_ms"] * rng_factor(len(base)))
    alone = by_key(compare_tables(base, cand, Gates(tolerances=every(("p95_latency_ms",)))))
    full = by_key(compare_tables(base, cand, Gates(tolerances=every())))
    again = by_key(compare_tables(base, cand, Gates(tolerances=every())))
    assert full == again
    for key, r in alone.items():
        assert (r.p_value, r.ci_low, r.ci_high) == (
            full[key].p_value,
            full[key].ci_low,
            full[key].ci_high,
        )
    other_seed = by_key(compare_tables(base, cand, Gates(tolerances=every(), seed=1)))
    assert other_seed[(ALL, "p95_latency_ms")].ci_low != full[(ALL, "p95_latency_ms")].ci_low


def rng_factor(n: int) -> np.ndarray:
    return np.random.default_rng(3).uniform(0.9, 1.15, n)


def test_new_violations_gate() -> None:
    base = requests({"routine": 300})
    cand = base.copy()
    cand.loc[[3, 9], "violations"] = np.array([1, 2], dtype=np.int16)
    result = compare_tables(base, cand)
    (gate,) = result.absolute
    assert (gate.name, gate.baseline, gate.candidate, gate.limit) == ("new violations", 0, 3, 0)
    assert not gate.passed
    assert gate.message == "violations let through: 0 -> 3 (+3); no new ones allowed"
    assert result.failed
    relaxed = compare_tables(base, cand, Gates(max_new_violations=3))
    assert relaxed.absolute[0].passed
    assert compare_tables(base, cand, Gates(max_new_violations=None)).absolute == ()


def test_paired_tables_must_be_the_same_requests() -> None:
    base = requests({"routine": 100})
    moved = base.assign(arrival_s=base["arrival_s"] + (base["request_id"] == 5) * 1.0)
    assert pairing_problem(base, moved) == "arrival_s differs (first at request_id 5)"
    assert pairing_problem(base, base.iloc[:50]) == "request counts differ (100 vs 50)"
    with pytest.raises(CompareError, match="pass --unpaired"):
        compare_tables(base, moved)
    with pytest.raises(CompareError, match="candidate: the requests table lacks column route"):
        compare_tables(base, base.drop(columns="route"))


def test_unpaired_tables() -> None:
    base = requests({"routine": 800, "reasoning": 400, "old": 100}, seed=1)
    cand = requests({"routine": 900, "reasoning": 350, "new": 80}, seed=2)
    result = by_key(compare_tables(base, cand, paired=False))
    small = {"new", "old"}  # under 100 requests on a side: independent-sample tests
    tests = {(r.route in small, r.metric in RATES): r.test for r in result.values()}
    assert tests == {
        (False, True): "block-bootstrap",
        (False, False): "block-bootstrap",
        (True, True): "fisher-exact",
        (True, False): "bootstrap",
    }
    assert result[("old", "success_rate")].verdict == "insufficient data"
    assert result[("old", "success_rate")].n_candidate == 0
    assert result[("new", "success_rate")].n_baseline == 0
    assert result[("routine", "success_rate")].n_candidate == 900
    assert not any(r.verdict == "regression" for r in result.values())


# -------------------------------------------------------------------- run directories


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return write_run(tmp_path / "base", requests())


def test_aa_byte_copy_is_no_change_exactly(run_dir: Path, tmp_path: Path) -> None:
    copy = Path(shutil.copytree(run_dir, tmp_path / "copy"))
    result = compare_runs(run_dir, copy, Gates(tolerances=every()))
    assert result.paired and not result.failed and result.warnings == ()
    assert (result.baseline, result.candidate) == (str(run_dir), str(copy))
    assert len(result.results) == len(METRICS) * (len(ROUTES) + 1)
    assert {r.verdict for r in result.results} == {"no change"}
    assert all(r.p_value == 1.0 and r.p_adjusted == 1.0 for r in result.results)
    assert {r.test for r in result.results if r.metric in RATES} == {"mcnemar-rao-scott"}


def test_not_a_run_directory(run_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(CompareError) as err:
        compare_runs(run_dir, tmp_path / "empty")
    assert str(err.value) == (
        f"{tmp_path / 'empty'}: not a run directory (no requests.parquet and no "
        "manifest.json); pass a directory written by evalx run"
    )
    (run_dir / MANIFEST).rename(tmp_path / "kept.json")
    with pytest.raises(CompareError, match=r"base: not a run directory \(no manifest.json\)"):
        compare_runs(run_dir, run_dir)
    with pytest.raises(CompareError, match="missing: no such run directory"):
        compare_runs(tmp_path / "missing", run_dir)
    with pytest.raises(CompareError, match=r"kept.json: not a run directory \(a file\)"):
        compare_runs(tmp_path / "kept.json", run_dir)


def test_broken_manifest_or_table(run_dir: Path, tmp_path: Path) -> None:
    bad = Path(shutil.copytree(run_dir, tmp_path / "bad"))
    (bad / MANIFEST).write_text("{not json")
    with pytest.raises(CompareError, match="cannot read the manifest"):
        compare_runs(run_dir, bad)
    (bad / MANIFEST).write_text("{}")
    with pytest.raises(CompareError, match="not an evalx run manifest"):
        compare_runs(run_dir, bad)
    thin = write_run(tmp_path / "thin", requests().drop(columns=["handoff", "escalated"]))
    with pytest.raises(CompareError, match="lacks columns escalated, handoff"):
        compare_runs(run_dir, thin)
    (thin / REQUESTS).write_bytes(b"not parquet")
    with pytest.raises(CompareError, match="11 bytes, but the manifest records"):
        compare_runs(run_dir, thin)


def test_schema_versions_must_match(run_dir: Path, tmp_path: Path) -> None:
    newer = write_run(tmp_path / "newer", requests(), schema_version=2)
    with pytest.raises(CompareError) as err:
        compare_runs(run_dir, newer)
    assert str(err.value) == "refusing to compare schema versions 1 and 2; re-run the baseline"
    with pytest.raises(CompareError, match="versions 2 and 1; re-run the candidate"):
        compare_runs(newer, run_dir)
    assert isinstance(err.value, EvalxError)


def test_unpairable_runs_need_unpaired(run_dir: Path, tmp_path: Path) -> None:
    other_seed = write_run(tmp_path / "seed7", requests(seed=8), seed=7)
    with pytest.raises(CompareError) as err:
        compare_runs(run_dir, other_seed)
    assert str(err.value) == (
        f"cannot pair {run_dir} and {other_seed}: seeds differ (42 vs 7); "
        "pass --unpaired to compare them as independent samples"
    )
    same_seed = write_run(tmp_path / "same", requests(seed=8))
    with pytest.raises(CompareError, match=r"request_id differs|arrival_s differs"):
        compare_runs(run_dir, same_seed)
    other_suite = write_run(tmp_path / "suite", requests(), suite="billing")
    with pytest.raises(CompareError, match="suites differ \\('support' vs 'billing'\\)"):
        compare_runs(run_dir, other_suite)


def test_unpaired_runs_work_and_warn(run_dir: Path, tmp_path: Path) -> None:
    other_seed = write_run(tmp_path / "seed7", requests(seed=8), seed=7)
    result = compare_runs(run_dir, other_seed, unpaired=True)
    assert not result.paired
    assert result.warnings[0].startswith("unpaired comparison (seeds differ (42 vs 7)): ")
    assert {r.test for r in result.results} == {"block-bootstrap"}
    assert not result.failed
    forced = compare_runs(run_dir, run_dir, unpaired=True)
    assert not forced.paired
    assert "pairable, but --unpaired was given" in forced.warnings[0]


def test_manifest_differences_warn(run_dir: Path, tmp_path: Path) -> None:
    strict = {"name": "strict", "version": "2.0.0", "hash": "1234abcd" * 8}
    other = write_run(tmp_path / "other", requests(), evalx="0.2.0", policy=strict)
    result = compare_runs(run_dir, other)
    assert result.paired
    assert result.warnings == (
        "harness versions differ: 0.1.0 vs 0.2.0",
        "policies differ: default 1.0.0 (8d6adfcd) vs strict 2.0.0 (1234abcd)",
    )


def test_coarse_bootstrap_warns() -> None:
    """Only the percentile p-values of small groups have a resolution floor."""
    table = requests({"routine": 80})
    result = compare_tables(table, table, Gates(bootstrap=50, min_requests=30))
    assert any("raise bootstrap to at least" in w for w in result.warnings)
    assert not any("bootstrap" in w for w in compare_tables(table, table).warnings)
    big = requests({"routine": 200})  # block bootstraps: p-values from the standard error
    assert not any("bootstrap" in w for w in compare_tables(big, big, Gates(bootstrap=50)).warnings)


def test_required_columns_are_request_columns() -> None:
    from harness.records import REQUEST_COLUMNS

    assert set(REQUIRED_COLUMNS) <= {c.name for c in REQUEST_COLUMNS}


# ------------------------------------------------------------------ real runs, end to end


@pytest.fixture(scope="module")
def real_runs(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    from harness.run import run_id, simulate, write
    from harness.spec import load_suite

    suite = Path(__file__).resolve().parents[2] / "scenarios" / "support.yaml"
    root = tmp_path_factory.mktemp("runs")
    made: dict[str, Path] = {}

    def run(name: str, *overrides: str) -> Path:
        if name not in made:
            # no evasive edge cases: never escalating would also let more of them through,
            # and these runs pin a change whose only regression is success
            loaded = load_suite(suite, ["traffic.requests=2000", "traffic.edge_cases.evasive=0",
                                        *overrides])  # fmt: skip
            made[name] = write(root / name, loaded, simulate(loaded.suite), run_id(loaded), [])
        return made[name]

    def named(name: str) -> Path:
        extra = {"never-escalate": ("stack.escalation.confidence_threshold=0.0",)}
        return run(name, *extra.get(name, ()))

    return named


def test_real_runs_never_escalating_loses_success(real_runs: Callable[[str], Path]) -> None:
    base, cand = real_runs("baseline"), real_runs("never-escalate")
    result = compare_runs(base, cand)
    assert result.paired and result.failed
    assert result.warnings == ()
    hits = by_key(result)
    assert hits[(ALL, "success_rate")].verdict == "regression"
    assert hits[(ALL, "success_rate")].delta < -0.01
    assert all(g.passed for g in result.absolute)
    assert all(r.verdict != "regression" for r in result.results if r.metric != "success_rate")


def test_real_run_against_its_copy(real_runs: Callable[[str], Path], tmp_path: Path) -> None:
    base = real_runs("baseline")
    copy = Path(shutil.copytree(base, tmp_path / "copy"))
    result = compare_runs(base, copy)
    assert not result.failed
    assert not any(r.verdict in ("regression", "improvement") for r in result.results)
    rates = [r for r in result.results if r.metric in RATES and r.verdict != "insufficient data"]
    assert rates and all(r.p_value == 1.0 for r in rates)
