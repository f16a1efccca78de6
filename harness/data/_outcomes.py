"""Per-prompt outcome tables (RouterBench / AlpacaEval style) as one canonical table.

Quality fits and correctness-from-a-table worlds need, for each prompt, each model's
score. An outcome table holds one row per (prompt, model); `read_outcomes` maps its
columns to canonical ones and `score_matrix` lines the scores up prompt by model.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from harness.data._common import (
    FORMAT_TEXT,
    PathLike,
    Source,
    as_float,
    as_text,
    check_columns,
    did_you_mean,
    load,
    read_table,
    show,
    table_format,
)
from harness.data._errors import DataError


@dataclass(frozen=True)
class Outcomes:
    """An outcome table read into canonical columns, with where it came from.

    `table` has ``id`` string, ``model`` string, ``score`` float64 (finite, never null)
    and, when mapped, ``task_class`` string; rows in file order, and no two rows with the
    same (id, model). `sha256` is the hex digest of the file's bytes.
    """

    table: pa.Table
    path: str
    sha256: str
    rows: int

    @property
    def source(self) -> Source:
        """The file as a provenance entry."""
        return Source(self.path, self.sha256, self.rows)


def read_outcomes(
    path: PathLike,
    *,
    id: str,
    model: str,
    score: str,
    task_class: str | None = None,
    format: str | None = None,
) -> Outcomes:
    """Read an outcome table; `id`, `model`, `score` and `task_class` name its columns.

    `format` is ``csv``, ``jsonl`` or ``parquet`` (None: from the suffix). Ids given as
    numbers become their decimal text; scores may be numbers, numeric text or booleans
    (1.0 and 0.0). Raises DataError at the first empty id or model, non-numeric or empty
    score, or repeated (id, model) pair (naming both lines).
    """
    name = os.fspath(path)
    fmt = table_format(name, format)
    mapping = {"id": id, "model": model, "score": score}
    if task_class is not None:
        mapping["task_class"] = task_class
    raw = load(path, f"an outcome table ({FORMAT_TEXT[fmt]})")
    texts = [column for field, column in mapping.items() if field != "score"]
    table, where = read_table(raw, fmt, text_columns=texts)
    check_columns(table, name, mapping)

    out = {
        "id": as_text(table.column(id), where, id, missing="error"),
        "model": as_text(table.column(model), where, model, missing="error"),
        "score": as_float(table.column(score), where, score, booleans=True),
    }
    if task_class is not None:
        out["task_class"] = as_text(table.column(task_class), where, task_class, missing="error")

    pair = pc.binary_join_element_wise(out["id"], out["model"], "\x1f")
    codes = pc.dictionary_encode(pair).indices.to_numpy(zero_copy_only=False)
    _, first = np.unique(codes, return_index=True)
    earlier = first[codes]
    repeats = np.flatnonzero(earlier != np.arange(len(codes)))
    if len(repeats):
        row = int(repeats[0])
        key = f"({show(out['id'][row].as_py())}, {show(out['model'][row].as_py())})"
        raise DataError(
            f"{where.at(row)}: columns {id}, {model}: {key} is also on "
            f"{where.place(int(earlier[row]))}; keep one row per id and model"
        )
    return Outcomes(pa.table(out), name, raw.sha256, table.num_rows)


def score_matrix(
    outcomes: Outcomes, models: Sequence[str]
) -> tuple[list[str], np.ndarray, list[str] | None]:
    """The scores as a matrix: one row per id that every one of `models` scored.

    Returns (ids in order of first appearance, a float64 array of shape
    (len(ids), len(models)) with column j for ``models[j]``, and each id's task class
    (from its first row) or None when the table has none). A listed model the table
    lacks is a DataError with a did-you-mean over the table's models.
    """
    table = outcomes.table
    known = pc.unique(table.column("model")).to_pylist()
    if not models:
        raise DataError(
            f"{outcomes.path}: no models asked for; name at least one of {', '.join(known)}"
        )
    for name in models:
        if name not in known:
            raise DataError(
                f"{outcomes.path}: model {name!r} has no scores in the table; "
                f"{did_you_mean(name, known)}its models are {', '.join(known)}"
            )
    if len(set(models)) != len(models):
        repeated = next(m for m in models if list(models).count(m) > 1)
        raise DataError(f"{outcomes.path}: model {repeated!r} is asked for twice; list it once")

    encoded = pc.dictionary_encode(table.column("id")).combine_chunks()
    ids = encoded.indices.to_numpy(zero_copy_only=False)
    column = pc.index_in(table.column("model"), value_set=pa.array(list(models), pa.string()))
    listed = pc.is_valid(column).to_numpy(zero_copy_only=False)
    which = column.fill_null(0).to_numpy(zero_copy_only=False)
    scores = table.column("score").to_numpy()

    shape = (len(encoded.dictionary), len(models))
    matrix = np.full(shape, np.nan)
    scored = np.zeros(shape, dtype=bool)
    matrix[ids[listed], which[listed]] = scores[listed]
    scored[ids[listed], which[listed]] = True
    keep = np.flatnonzero(scored.all(axis=1))

    task_class = None
    if "task_class" in table.column_names:
        _, first_row = np.unique(ids, return_index=True)
        task_class = table.column("task_class").take(pa.array(first_row[keep])).to_pylist()
    return encoded.dictionary.take(pa.array(keep)).to_pylist(), matrix[keep], task_class
