"""Outcome tables: AlpacaEval judgments read exactly, scores lined up prompt by model."""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from harness.data import DataError, Outcomes, read_outcomes, score_matrix

ROOT = Path(__file__).resolve().parents[3]
JUDGMENTS = ROOT.parent / "shared" / "data" / "alpacaeval" / "judgments.csv"
MODELS = [
    "gemma-2b-it",
    "gemma-7b-it",
    "gpt-3.5-turbo-1106",
    "Mixtral-8x7B-Instruct-v0.1_concise",
    "claude-2.1",
    "claude-2",
]
needs_data = pytest.mark.skipif(not JUDGMENTS.is_file(), reason="shared data sets not present")


def error_of(call: Callable[..., Any], *args: Any, **kwargs: Any) -> str:
    with pytest.raises(DataError) as info:
        call(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@needs_data
def test_alpacaeval_judgments_read_exactly() -> None:
    with JUDGMENTS.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    outcomes = read_outcomes(JUDGMENTS, id="id", model="model", score="preference")

    assert isinstance(outcomes, Outcomes)
    assert outcomes.rows == len(rows) == 805 * 6
    assert outcomes.sha256 == hashlib.sha256(JUDGMENTS.read_bytes()).hexdigest()
    assert outcomes.table.schema == pa.schema(
        [("id", pa.string()), ("model", pa.string()), ("score", pa.float64())]
    )
    assert outcomes.table.column("id").to_pylist() == [r["id"] for r in rows]
    assert outcomes.table.column("model").to_pylist() == [r["model"] for r in rows]
    assert outcomes.table.column("score").to_pylist() == [float(r["preference"]) for r in rows]

    ids, matrix, classes = score_matrix(outcomes, MODELS)
    assert ids == [str(i) for i in range(805)]
    assert matrix.shape == (805, 6) and matrix.dtype == np.float64
    assert classes is None
    expected = {(r["id"], r["model"]): float(r["preference"]) for r in rows}
    for i in (0, 404, 804):
        assert matrix[i].tolist() == [expected[ids[i], m] for m in MODELS]
    assert np.all((matrix >= 1.0) & (matrix <= 2.0))


@needs_data
def test_an_unknown_model_suggests_the_closest() -> None:
    outcomes = read_outcomes(JUDGMENTS, id="id", model="model", score="preference")
    message = error_of(score_matrix, outcomes, ["gemma-2b", "claude-2"])
    assert message.startswith(
        f"{JUDGMENTS}: model 'gemma-2b' has no scores in the table; did you mean gemma-2b-it? "
        "its models are "
    )
    assert "claude-2.1" in message


@needs_data
def test_a_missing_column_suggests_and_lists_the_columns() -> None:
    message = error_of(read_outcomes, JUDGMENTS, id="id", model="model", score="prefernce")
    assert message == (
        f"{JUDGMENTS}: score: no column 'prefernce' in the file; did you mean preference? "
        "its columns are id, model, preference, output_chars"
    )


ROWS: list[dict[str, Any]] = [
    {"prompt": 1, "llm": "small", "ok": 1.0, "kind": "easy"},
    {"prompt": 1, "llm": "large", "ok": 1.0, "kind": "easy"},
    {"prompt": 2, "llm": "large", "ok": 0.0, "kind": "hard"},
    {"prompt": 3, "llm": "large", "ok": 0.5, "kind": "hard"},
    {"prompt": 3, "llm": "small", "ok": 0.0, "kind": "hard"},
    {"prompt": 2, "llm": "tiny", "ok": 1.0, "kind": "hard"},
]
COLUMNS = {"id": "prompt", "model": "llm", "score": "ok", "task_class": "kind"}


def _write_three(tmp_path: Path, rows: list[dict[str, Any]]) -> list[Path]:
    names = list(rows[0])
    text = "\n".join(
        [
            ",".join(names),
            *(",".join("" if r[n] is None else str(r[n]) for n in names) for r in rows),
        ]
    )
    paths = [
        write(tmp_path / "o.csv", text + "\n"),
        write(tmp_path / "o.jsonl", "".join(json.dumps(r) + "\n" for r in rows)),
        tmp_path / "o.parquet",
    ]
    pq.write_table(pa.Table.from_pylist(rows), paths[2])
    return paths


def test_three_formats_and_the_matrix(tmp_path: Path) -> None:
    for path in _write_three(tmp_path, ROWS):
        outcomes = read_outcomes(path, **COLUMNS)
        assert outcomes.table.to_pydict() == {
            "id": ["1", "1", "2", "3", "3", "2"],
            "model": ["small", "large", "large", "large", "small", "tiny"],
            "score": [1.0, 1.0, 0.0, 0.5, 0.0, 1.0],
            "task_class": ["easy", "easy", "hard", "hard", "hard", "hard"],
        }
        ids, matrix, classes = score_matrix(outcomes, ["large", "small"])
        assert ids == ["1", "3"]
        assert matrix.tolist() == [[1.0, 1.0], [0.5, 0.0]]
        assert classes == ["easy", "hard"]
        ids, matrix, classes = score_matrix(outcomes, ["tiny"])
        assert (ids, matrix.tolist(), classes) == (["2"], [[1.0]], ["hard"])


def test_boolean_scores_are_zero_or_one(tmp_path: Path) -> None:
    path = write(
        tmp_path / "o.jsonl", '{"i": "a", "m": "x", "s": true}\n{"i": "b", "m": "x", "s": false}\n'
    )
    table = read_outcomes(path, id="i", model="m", score="s").table
    assert table.column("score").to_pylist() == [1.0, 0.0]


@pytest.mark.parametrize(
    ("cell", "problem"),
    [("good", "'good' is not a number"), ("", "empty value"), ("inf", "inf is not a number")],
)
def test_bad_scores_are_located(tmp_path: Path, cell: str, problem: str) -> None:
    path = write(tmp_path / "o.csv", f"id,model,score\n1,a,0.5\n2,a,{cell}\n")
    assert error_of(read_outcomes, path, id="id", model="model", score="score") == (
        f"{path}:3: column score: {problem}; write a number"
    )


def test_bad_scores_in_jsonl_and_parquet(tmp_path: Path) -> None:
    rows = [{"id": 1, "m": "a", "s": 0.5}, {"id": 2, "m": "a", "s": None}]
    _, jsonl, parquet = _write_three(tmp_path, rows)
    assert error_of(read_outcomes, jsonl, id="id", model="m", score="s") == (
        f"{jsonl}:2: column s: empty value; write a number"
    )
    assert error_of(read_outcomes, parquet, id="id", model="m", score="s") == (
        f"{parquet}:row 1: column s: empty value; write a number"
    )


def test_duplicate_pairs_name_both_lines(tmp_path: Path) -> None:
    path = write(
        tmp_path / "o.csv", 'id,model,score,note\n1,a,0.5,"two\nlines"\n2,a,1,\n1,a,0.3,\n'
    )
    assert error_of(read_outcomes, path, id="id", model="model", score="score") == (
        f"{path}:5: columns id, model: ('1', 'a') is also on line 2; keep one row per id and model"
    )


def test_empty_ids_and_models_are_located(tmp_path: Path) -> None:
    path = write(tmp_path / "o.csv", "id,model,score\n1,a,0.5\n,a,1\n")
    assert error_of(read_outcomes, path, id="id", model="model", score="score") == (
        f"{path}:3: column id: empty value; every row needs one"
    )


def test_score_matrix_argument_errors(tmp_path: Path) -> None:
    path = write(tmp_path / "o.csv", "id,model,score\n1,a,0.5\n")
    outcomes = read_outcomes(path, id="id", model="model", score="score")
    assert error_of(score_matrix, outcomes, []) == (
        f"{path}: no models asked for; name at least one of a"
    )
    assert error_of(score_matrix, outcomes, ["a", "a"]) == (
        f"{path}: model 'a' is asked for twice; list it once"
    )
