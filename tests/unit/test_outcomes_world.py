"""Quality from per-prompt outcomes: the table's rates, joint outcomes, non-nesting."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from harness.data import DataError
from harness.run import simulate
from harness.spec import Suite
from harness.traffic import sample_requests
from harness.world import sample_tape, success_mask
from tests.unit.test_engine import make_suite

ROOT = Path(__file__).resolve().parents[2]
ALPACA = ROOT / "fixtures" / "shared" / "alpacaeval"
RULE = ">= 1.1"


def alpaca_suite(**over: Any) -> Suite:
    log = {"path": str(ALPACA / "instructions.csv"), "columns": {"id": "id", "text": "instruction"}}
    outcomes = {"path": str(ALPACA / "judgments.csv"), "score": "preference", "success": RULE,
                "models": {"small": "gemma-7b-it", "big": "claude-2.1"}}  # fmt: skip
    base = {"traffic__log": log, "world": {"outcomes": outcomes}}
    return make_suite(**{**base, **over})


def table_rates() -> pd.DataFrame:
    j = pd.read_csv(ALPACA / "judgments.csv")
    return j.assign(ok=j["preference"] >= 1.1).pivot(index="id", columns="model", values="ok")


def test_one_model_gives_exactly_its_rate_in_the_table() -> None:
    req = simulate(alpaca_suite()).requests.to_pandas()  # everything on `small`, never escalated
    assert len(req) == 805 and (req["served_by"] == "fast").all()
    ok = table_rates()["gemma-7b-it"]
    assert req["success"].sum() == ok.sum()
    by_id = req.set_index(req["source_id"].astype(int))["success"]
    assert (by_id.sort_index() == ok.sort_index()).all()


def test_a_two_model_cascade_gives_what_the_table_computes_offline() -> None:
    suite = alpaca_suite(stack__escalation={"confidence_threshold": 0.7, "high_impact_route": None})
    result = simulate(suite)
    req = result.requests.to_pandas().set_index("request_id")
    tape = sample_tape(suite, sample_requests(suite))
    rows = table_rates().loc[[int(v) for v in req["source_id"]]]
    small, big = rows["gemma-7b-it"].to_numpy(), rows["claude-2.1"].to_numpy()
    conf_small = np.where(small, tape.conf_right[:, 0], tape.conf_wrong[:, 0])
    escalate = conf_small < 0.7  # below the threshold the premium tier answers instead
    expect = np.where(escalate, big, small)
    assert escalate.any() and (~escalate).any()
    assert (req["escalated"].to_numpy() == escalate).all()
    assert (req["success"].to_numpy() == expect).all()


def test_correctness_is_not_nested() -> None:
    suite = alpaca_suite()
    tape = sample_tape(suite, sample_requests(suite))
    assert tape.correct is not None
    small_only = tape.correct[:, 0] & ~tape.correct[:, 1]
    assert small_only.sum() == (table_rates()["gemma-7b-it"] & ~table_rates()["claude-2.1"]).sum()
    assert small_only.sum() > 0


def test_without_ids_rows_are_drawn_per_request_by_class(tmp_path: Path) -> None:
    table = pd.DataFrame({"id": ["a", "b", "c", "d"], "model": ["small"] * 4,
                          "score": [1.0, 0.0, 1.0, 0.0], "cls": ["routine", "routine",
                          "hard", "hard"]})  # fmt: skip
    big = table.assign(model="big", score=1.0)
    path = tmp_path / "t.csv"
    pd.concat([table, big]).to_csv(path, index=False)
    suite = make_suite(
        traffic__requests=400,
        traffic__mix={"routine": {"weight": 1}, "hard": {"weight": 1}},
        stack__class_routes={"routine": "routine", "hard": "routine"},
        world={"outcomes": {"path": str(path), "task_class": "cls", "success": ">= 1"}},
    )
    reqs = sample_requests(suite)
    tape = sample_tape(suite, reqs)
    assert tape.outcome_row is not None
    classes = np.asarray(["routine", "routine", "hard", "hard"])[tape.outcome_row]
    assert (classes == np.asarray(reqs.class_names)[reqs.task_class]).all()
    again = sample_tape(suite, sample_requests(suite))
    assert again.outcome_row is not None
    assert (again.outcome_row == tape.outcome_row).all()


def test_a_request_id_without_outcomes_is_an_error(tmp_path: Path) -> None:
    j = pd.read_csv(ALPACA / "judgments.csv")
    path = tmp_path / "j.csv"
    j[j["id"] != 17].to_csv(path, index=False)
    suite = alpaca_suite(world={"outcomes": {"path": str(path), "score": "preference",
                                             "models": {"small": "gemma-7b-it",
                                                        "big": "claude-2.1"}}})  # fmt: skip
    with pytest.raises(DataError, match="request id '17'"):
        sample_tape(suite, sample_requests(suite))


def test_success_rules() -> None:
    x = np.array([1.0, 1.1, 1.5])
    assert success_mask(">= 1.1", x).tolist() == [False, True, True]
    assert success_mask("<1.1", x).tolist() == [True, False, False]
    assert success_mask("== 1.5", x).tolist() == [False, False, True]
