"""Request logs (CSV, JSON lines, Parquet) as one canonical table, for traffic replay.

A log is whatever a service wrote: its own column names, its own time format. The
caller says which column holds which evalx field; `read_log` returns those columns
under canonical names and types, and every other column, untouched, as labels.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from harness.data._common import (
    FORMAT_TEXT,
    TIMESTAMP_UNITS,
    PathLike,
    Source,
    Where,
    as_count,
    as_epoch_seconds,
    as_text,
    check_columns,
    check_fields,
    did_you_mean,
    first_true,
    load,
    read_table,
    show,
    table_format,
)
from harness.data._errors import DataError

LOG_FIELDS = (
    "id",
    "timestamp",
    "task_class",
    "tenant",
    "session",
    "input_tokens",
    "output_tokens",
    "text",
)
"""The evalx fields a log's columns can be mapped to, in the order of `Log.table`."""

_COUNTS = ("input_tokens", "output_tokens")
_REQUIRED_TEXT = ("id", "task_class")
_TEXT = ("id", "task_class", "tenant", "session", "text")


@dataclass(frozen=True)
class Log:
    """A request log read into canonical columns, with where it came from.

    `table` holds only the mapped fields, in `LOG_FIELDS` order and under these names:
    ``id`` string, ``timestamp_s`` float64 (seconds: epoch seconds UTC for dates and
    epoch numbers, as given for relative seconds; never null, never decreasing),
    ``task_class`` string, ``tenant`` string, ``session`` string, ``input_tokens`` int64,
    ``output_tokens`` int64 (non-negative) and ``text`` string. ``id`` and ``task_class``
    are never empty; a missing tenant, session or text is ``""``.

    `labels` holds every column that was not mapped, under its own name and type, row for
    row with `table`. `rows` is the number of rows; `sha256` the hex digest of the file's
    bytes, so that a fit or a replay can name exactly what it was made from. `where(i)`
    locates row i of `table` in the file, for the errors a caller finds later.
    """

    table: pa.Table
    labels: pa.Table
    path: str
    rows: int
    sha256: str
    file_rows: np.ndarray | None = field(default=None, repr=False, compare=False)
    """The file's 0-based data row of each table row; None when they are the same."""
    locate: Where | None = field(default=None, repr=False, compare=False)
    """How rows map to places in the file; callers use `where`."""

    @property
    def source(self) -> Source:
        """The file as a provenance entry."""
        return Source(self.path, self.sha256, self.rows)

    def row_of(self, i: int) -> int:
        """The 0-based data row in the file of row `i` of `table` (they differ after sort)."""
        return int(self.file_rows[i]) if self.file_rows is not None else i

    def where(self, i: int) -> str:
        """Row `i` of `table` as ``file:line`` (CSV, JSON lines) or ``file:row N`` (Parquet),
        counting multi-line CSV values right; the start of a DataError message."""
        if self.locate is None:
            return f"{self.path}:row {self.row_of(i)}"
        return self.locate.at(self.row_of(i))


def read_log(
    path: PathLike,
    *,
    format: str | None = None,
    columns: Mapping[str, str],
    timestamp_unit: str = "auto",
    sort: bool = False,
) -> Log:
    """Read a request log; `columns` maps evalx fields (`LOG_FIELDS`) to the log's columns.

    `format` is ``csv``, ``jsonl`` or ``parquet`` (None: from the suffix). Without a
    ``timestamp`` mapping there is no ``timestamp_s`` column and the caller samples
    arrivals. Timestamps may be ISO 8601 text (no zone means UTC) or numbers in
    `timestamp_unit` (``s``, ``ms``, ``us``, ``ns``, or ``auto``: by magnitude). Rows stay
    in file order; a row earlier than the one before is an error unless `sort` is true,
    in which case rows are stably sorted by timestamp.

    Raises DataError naming the file, line (or row) and column of the first bad value.
    """
    name = os.fspath(path)
    check_fields(name, columns, LOG_FIELDS, "columns")
    if timestamp_unit not in TIMESTAMP_UNITS:
        raise DataError(
            f"{name}: timestamp_unit: unknown unit {timestamp_unit!r}; "
            f"{did_you_mean(timestamp_unit, TIMESTAMP_UNITS)}"
            f"use one of {', '.join(TIMESTAMP_UNITS)}"
        )
    fmt = table_format(name, format)
    raw = load(path, f"a request log ({FORMAT_TEXT[fmt]})")
    text_columns = [columns[f] for f in _TEXT if f in columns]
    table, where = read_table(raw, fmt, text_columns=text_columns)
    check_columns(table, name, columns)

    out: dict[str, pa.Array] = {}
    for key in LOG_FIELDS:
        if key not in columns:
            continue
        column = columns[key]
        values = table.column(column)
        if key == "timestamp":
            out["timestamp_s"] = as_epoch_seconds(values, where, column, unit=timestamp_unit)
        elif key in _COUNTS:
            out[key] = as_count(values, where, column)
        else:
            required = key in _REQUIRED_TEXT
            out[key] = as_text(values, where, column, missing="error" if required else "empty")

    canonical = pa.table(out) if out else table.select([])
    labels = table.drop_columns(sorted(set(columns.values())))
    file_rows: np.ndarray | None = None
    if "timestamp_s" in out:
        seconds = out["timestamp_s"].to_numpy(zero_copy_only=False)
        column = columns["timestamp"]
        if sort:
            order = np.argsort(seconds, kind="stable")
            if np.any(order != np.arange(len(order))):
                indices = pa.array(order)
                canonical, labels = canonical.take(indices), labels.take(indices)
                file_rows = order
        else:
            row = first_true(np.diff(seconds) < 0)
            if row is not None:
                raw_values = table.column(column)
                earlier, before = raw_values[row + 1].as_py(), raw_values[row].as_py()
                raise where.error(
                    row + 1,
                    column,
                    f"{show(earlier)} is earlier than the row before ({show(before)})",
                    f"sort the file by {column}, or set sort: true in traffic.log",
                )
    locate = dataclasses.replace(where, data=b"")  # re-read only if a caller needs a line
    return Log(canonical, labels, name, table.num_rows, raw.sha256, file_rows, locate)
