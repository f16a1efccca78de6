"""Quality fits: the success grammar, rates with intervals, correlation and non-nesting,
on a table small enough to check by hand and on AlpacaEval."""

from __future__ import annotations

import math
import operator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

from harness.data._fit_quality import Rate, fit_quality, parse_success
from harness.spec import Outcomes

ROOT = Path(__file__).resolve().parents[3]
DATA = next(
    p for p in (ROOT / "fixtures" / "shared", ROOT.parent / "shared" / "data") if p.is_dir()
)


def outcomes(rows: list[tuple[str, str, float, str]]) -> pa.Table:
    ids, models, scores, classes = zip(*rows, strict=True)
    return pa.table(
        {
            "id": pa.array(ids),
            "model": pa.array(models),
            "score": pa.array(scores, pa.float64()),
            "task_class": pa.array(classes),
        }
    )


# id: (class, big's score, small's score); success is score >= 1
SMALL_TABLE = {
    "p1": ("easy", 1.0, 1.0),
    "p2": ("easy", 1.0, 0.0),
    "p3": ("easy", 1.0, 1.0),
    "p4": ("hard", 1.0, 0.0),
    "p5": ("hard", 0.0, 1.0),  # the small model wins where the big one loses
    "p6": ("hard", 0.0, 0.0),
}


def small_table() -> pa.Table:
    rows = []
    for pid, (cls, big, small) in SMALL_TABLE.items():
        rows += [(pid, "big-v1", big, cls), (pid, "small-v1", small, cls)]
    return outcomes(rows)


# --------------------------------------------------------------------------- grammar


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        (">= 1.5", [False, True, True]),
        ("> 1.5", [False, False, True]),
        ("<= 1.5", [True, True, False]),
        ("< 1.5", [True, False, False]),
        ("== 1.5", [False, True, False]),
        ("  >=1.5e0 ", [False, True, True]),
        (">= .5", [True, True, True]),
        ("> -2", [True, True, True]),
    ],
)
def test_success_conditions(rule: str, expected: list[bool]) -> None:
    assert parse_success(rule)(np.array([1.0, 1.5, 2.0])).tolist() == expected


@pytest.mark.parametrize("rule", ["1.5", ">= ", "=> 1.5", ">= 1.5 and < 2", "≥ 1.5", "", ">= x"])
def test_bad_success_conditions_say_how_to_write_one(rule: str) -> None:
    with pytest.raises(ValueError, match=r"bad success condition .*e\.g\. '>= 1\.5'"):
        parse_success(rule)


def test_a_missing_score_never_succeeds() -> None:
    assert not parse_success("<= 10")(np.array([math.nan])).any()


@given(
    st.sampled_from([">=", ">", "<=", "<", "=="]),
    st.floats(-1e6, 1e6, allow_nan=False),
    st.lists(st.floats(-1e6, 1e6, allow_nan=False), max_size=20),
)
def test_the_grammar_agrees_with_python(op: str, threshold: float, scores: list[float]) -> None:
    python = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt}.get(
        op, operator.eq
    )
    passes = parse_success(f"{op} {threshold!r}")(np.array(scores, dtype=float))
    assert passes.tolist() == [python(s, threshold) for s in scores]


# --------------------------------------------------------------------------- fitting


def test_rates_intervals_correlation_and_non_nesting_by_hand() -> None:
    fit = fit_quality(small_table(), ">= 1", created="2024-05-01")
    assert fit.names == ("big-v1", "small-v1")  # strongest first
    assert fit.overall["big-v1"] == Rate(4, 6)
    assert fit.overall["small-v1"] == Rate(3, 6)
    ci = stats.binomtest(4, 6).proportion_ci(0.95, method="wilson")
    assert fit.overall["big-v1"].interval == pytest.approx((ci.low, ci.high))
    assert fit.by_class["big-v1"] == {"easy": Rate(3, 3), "hard": Rate(1, 3)}
    assert fit.by_class["small-v1"] == {"easy": Rate(2, 3), "hard": Rate(1, 3)}
    big = np.array([1, 1, 1, 1, 0, 0])
    small = np.array([1, 0, 1, 0, 1, 0])
    assert fit.correlation[0, 1] == pytest.approx(np.corrcoef(big, small)[0, 1])
    assert fit.wins_over[1, 0] == pytest.approx(1 / 6)  # small succeeds, big fails: p5
    assert fit.wins_over[0, 1] == pytest.approx(2 / 6)  # p2, p4
    ((weak, strong, share, common),) = fit.non_nesting()
    assert (weak, strong, common) == ("small-v1", "big-v1", 6)
    assert share == pytest.approx(1 / 6)
    assert fit.prompts == 6 and fit.provenance.rows_used == 12
    assert fit.to_fragment() == {
        "models": {
            "big-v1": {"quality": {"easy": 1.0, "hard": 0.3333}, "default_quality": 0.6667},
            "small-v1": {"quality": {"easy": 0.6667, "hard": 0.3333}, "default_quality": 0.5},
        },
        # both succeed on 2 of 6 = 4/6 x 3/6: the latent correlation is 0
        "world": {"correlation": 0.0},
    }


def test_suite_names_map_to_table_names_and_the_world_points_at_the_table() -> None:
    fit = fit_quality(
        small_table(),
        ">= 1",
        {"premium": "big-v1", "fast": "small-v1"},
        path="data/outcomes.csv",
        columns={"score": "judge"},
    )
    frag = fit.to_fragment()
    assert list(frag["models"]) == ["premium", "fast"]
    world = frag["world"]["outcomes"]
    assert world == {
        "path": "data/outcomes.csv",
        "id": "id",
        "model": "model",
        "score": "judge",
        "success": ">= 1",
        "models": {"premium": "big-v1", "fast": "small-v1"},
    }
    Outcomes.model_validate(world)
    with pytest.raises(
        ValueError, match="no outcomes of model 'mid'; the table has big-v1, small-v1"
    ):
        fit_quality(small_table(), ">= 1", {"x": "mid"})


def test_rows_without_a_score_are_left_out_and_duplicates_refused() -> None:
    rows = [("a", "m", 1.0, "c"), ("b", "m", math.nan, "c"), ("c", "m", 0.0, "c")]
    fit = fit_quality(outcomes(rows), "> 0.5")
    assert fit.overall["m"] == Rate(1, 2) and fit.provenance.rows_used == 2
    with pytest.raises(ValueError, match="prompt 'a' has more than one outcome for model 'm'"):
        fit_quality(outcomes([*rows, ("a", "m", 0.0, "c")]), "> 0.5")


def test_without_a_class_column_only_the_default_quality() -> None:
    fit = fit_quality(small_table().drop_columns(["task_class"]), ">= 1")
    assert fit.to_fragment()["models"]["small-v1"] == {"quality": {}, "default_quality": 0.5}


def alpacaeval() -> pa.Table:
    opts = pcsv.ConvertOptions(column_types={"id": pa.string()})
    judged = pcsv.read_csv(DATA / "alpacaeval" / "judgments.csv", convert_options=opts)
    prompts = pcsv.read_csv(DATA / "alpacaeval" / "instructions.csv", convert_options=opts)
    joined = judged.join(prompts.select(["id", "dataset"]), "id")
    return pa.table(
        {
            "id": joined["id"],
            "model": joined["model"],
            "score": joined["preference"],
            "task_class": joined["dataset"],
        }
    )


def test_alpacaeval() -> None:
    table = alpacaeval()
    fit = fit_quality(table, ">= 1.5")
    assert fit.prompts == 805
    assert fit.names == (
        "claude-2",
        "claude-2.1",
        "Mixtral-8x7B-Instruct-v0.1_concise",
        "gpt-3.5-turbo-1106",
        "gemma-7b-it",
        "gemma-2b-it",
    )
    assert fit.overall["claude-2"] == Rate(132, 805)
    assert fit.overall["gemma-2b-it"] == Rate(23, 805)
    frame = table.to_pandas()
    frame["ok"] = frame["score"] >= 1.5
    wide = frame.pivot(index="id", columns="model", values="ok")
    for name in fit.names:
        assert fit.overall[name].successes == int(wide[name].sum())
        per = frame[frame["model"] == name].groupby("task_class")["ok"].agg(["sum", "count"])
        assert {c: (r.successes, r.n) for c, r in fit.by_class[name].items()} == {
            c: (int(s), int(n)) for c, (s, n) in per.iterrows()
        }
    for weak, strong, share, common in fit.non_nesting():
        assert common == 805
        assert share == pytest.approx(float((wide[weak] & ~wide[strong]).mean()))
        assert share > 0  # correlated, not nested: every weaker model sometimes wins
    assert np.nanmin(fit.correlation) > 0.1  # strengths are correlated across prompts


def test_the_fit_writes_the_copula_correlation_of_the_table() -> None:
    """The fragment's `world.correlation` is the mean tetrachoric correlation of success, the
    value the suite's default was fitted to on AlpacaEval."""
    from pathlib import Path

    import pyarrow.csv as pcsv

    from harness.data import fit_quality
    from harness.spec import World

    root = Path(__file__).resolve().parents[3]
    raw = pcsv.read_csv(root / "fixtures" / "shared" / "alpacaeval" / "judgments.csv")
    table = raw.select(["id", "model", "preference"]).rename_columns(["id", "model", "score"])
    table = table.set_column(0, "id", table.column("id").cast("string"))
    fit = fit_quality(table, ">= 1.1")
    assert fit.latent_correlation is not None
    assert abs(fit.latent_correlation - World().correlation) < 0.01
    assert fit.to_fragment()["world"]["correlation"] == round(fit.latent_correlation, 2)
