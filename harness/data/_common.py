"""What every reader shares: opening a file, reading it as a table, finding a row in it,
and turning one column into a canonical one with an error at its first bad value.

Conversions work on whole columns (pyarrow compute and numpy). Only when a column fails
does a reader look at single values, to name the line or row a person should fix.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import stat
from collections.abc import Callable, Collection, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path, PurePath
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.json as pjson
import pyarrow.parquet as pq

from harness.data._errors import DataError
from harness.errors import InputError
from harness.limits import DATA_BYTES, read_input
from harness.spec._load import suggest

PathLike = str | os.PathLike[str]

TABLE_FORMATS = ("csv", "jsonl", "parquet")
SUFFIXES = {
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}
FORMAT_TEXT = {
    "csv": "a CSV file with a header row",
    "jsonl": "JSON lines (one JSON object a line)",
    "parquet": "a Parquet file",
}
UNITS = {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}
TIMESTAMP_UNITS = ("auto", *UNITS)
TIMESTAMP_FORMS = (
    "write ISO 8601 text (2023-11-16 18:17:03.97996; no zone means UTC), "
    "epoch time as a number (s, ms, us or ns), or seconds from the start (0.0, 1.5)"
)
COUNT_FIX = "write a non-negative whole number"
NUMBER_FIX = "write a number"

_NUMBER = r"^[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?$"
_INTEGER = r"^[-+]?\d+$"
_ZONE = r"(?i):\d\d(\.\d+)?\s*(z|[+-]\d\d(:?\d\d)?)$"
_ERRORS = (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError)
_SHOWN_COLUMNS = 20
_COLUMN_NAME = re.compile(r"[A-Za-z_][\w .()\[\]-]{0,63}")
_BLOCK = 1 << 20


@dataclass(frozen=True)
class Source:
    """One input file: its path as given, its bytes' hash, and the rows read from it.

    Readers fill it from the bytes they parsed; fits carry it as provenance."""

    path: str
    sha256: str | None
    """Hex digest of the file's bytes; None when the file could not be read."""
    rows: int

    @classmethod
    def of(cls, path: str | Path, rows: int) -> Source:
        """Describe `path`, hashing it when it is a readable local regular file (never a
        FIFO or a device: the path may come from a table's `source` column)."""
        h = hashlib.sha256()
        try:
            if not stat.S_ISREG(os.stat(path).st_mode):
                raise OSError("not a regular file")
            with Path(path).open("rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
            digest: str | None = h.hexdigest()
        except OSError:
            digest = None
        return cls(str(path), digest, int(rows))


@dataclass(frozen=True)
class RawFile:
    """A file's bytes as read once: every reader parses these and hashes these."""

    path: str
    data: bytes = field(repr=False)
    sha256: str


@dataclass(frozen=True)
class Where:
    """Turns a 0-based row of a table into the place a person finds it in the file.

    ``csv`` and ``jsonl`` give the file line (found by re-reading the file, only when
    an error needs it, so quoted multi-line values and blank lines are counted right);
    ``row``, ``record`` and ``span`` give ``<style> N``. With `index`, row i of the
    table is row ``index[i]`` of the file (a reader that kept only some records).
    Without `data`, the file is read again when a line is asked for.
    """

    path: str
    style: Literal["csv", "jsonl", "row", "record", "span"]
    data: bytes = field(default=b"", repr=False, compare=False)
    index: np.ndarray | None = field(default=None, repr=False, compare=False)

    def at(self, row: int) -> str:
        """``file:line`` or ``file:<style> N`` for `row`."""
        place = self.place(row)
        return f"{self.path}:{place.removeprefix('line ')}"

    def place(self, row: int) -> str:
        """``line N`` or ``<style> N`` for `row`, without the file."""
        if self.index is not None:
            row = int(self.index[row])
        if self.style not in ("csv", "jsonl"):
            return f"{self.style} {row}"
        data = self.data or _bytes_or_nothing(self.path)
        if self.style == "csv":
            line = _nth(_csv_rows(data), row + 1)
        else:
            line = _nth(_jsonl_texts(data), row)
        return f"line {line}" if line is not None else f"row {row}"

    def error(self, row: int, column: str, problem: str, fix: str) -> DataError:
        """The error for a bad value: ``file:where: column name: problem; fix``."""
        return DataError(f"{self.at(row)}: column {column}: {problem}; {fix}")


def load(path: PathLike, expected: str) -> RawFile:
    """Read `path` once; a missing, unreadable or empty file is a DataError naming `expected`.

    Only a regular file up to `DATA_BYTES` is read (a FIFO, a device or a huge file fails
    at once, see harness.limits).
    """
    name = os.fspath(path)
    file = Path(name)
    if file.is_dir():
        raise DataError(f"{name}: is a directory; expected {expected}")
    if not file.exists():
        raise DataError(f"{name}: no such file; expected {expected}")
    try:
        data = read_input(name, limit=DATA_BYTES, what="data file")
    except InputError as exc:
        raise DataError(f"{exc.one_line()}; expected {expected}") from None
    if not data.strip():
        raise DataError(f"{name}: the file is empty; expected {expected}")
    return RawFile(name, data, hashlib.sha256(data).hexdigest())


def table_format(path: str, format: str | None) -> str:
    """`format` checked, or the format its suffix names (.csv, .jsonl/.ndjson, .parquet/.pq)."""
    if format is not None:
        if format not in TABLE_FORMATS:
            raise DataError(
                f"{path}: format: unknown format {format!r}; {did_you_mean(format, TABLE_FORMATS)}"
                f"use one of {', '.join(TABLE_FORMATS)}"
            )
        return format
    suffix = PurePath(path).suffix.lower()
    if suffix not in SUFFIXES:
        raise DataError(
            f"{path}: cannot tell the format from the suffix {suffix or '(none)'!s}; "
            f"name the file {', '.join(SUFFIXES)} or pass the format (csv, jsonl or parquet)"
        )
    return SUFFIXES[suffix]


def read_table(
    raw: RawFile, format: str, *, text_columns: Collection[str] = ()
) -> tuple[pa.Table, Where]:
    """The file as an Arrow table (types as pyarrow infers them) and the way to locate rows.

    `text_columns` are read as text in CSV, so ``007`` stays ``007``. A file that is not
    the format, or has no rows, is a DataError.
    """
    if format == "csv":
        where = Where(raw.path, "csv", raw.data)
        parse = pcsv.ParseOptions(newlines_in_values=True)
        convert = pcsv.ConvertOptions(column_types={name: pa.string() for name in text_columns})
        try:
            table = _in_blocks(
                raw.data,
                lambda source, size: pcsv.read_csv(
                    source,
                    read_options=pcsv.ReadOptions(block_size=size),
                    parse_options=parse,
                    convert_options=convert,
                ),
            )
        except _ERRORS as exc:
            raise _csv_problem(raw, exc) from None
    elif format == "jsonl":
        where = Where(raw.path, "jsonl", raw.data)
        try:
            table = _in_blocks(
                raw.data,
                lambda source, size: pjson.read_json(
                    source, read_options=pjson.ReadOptions(block_size=size)
                ),
            )
        except _ERRORS as exc:
            raise _jsonl_problem(raw, exc) from None
    else:
        where = Where(raw.path, "row")
        try:
            table = pq.read_table(pa.BufferReader(raw.data))
        except (*_ERRORS, OSError) as exc:
            raise DataError(
                f"{raw.path}: not a Parquet file ({_first_line(exc)}); "
                f"expected {FORMAT_TEXT[format]}"
            ) from None
    if table.num_rows == 0:
        raise DataError(
            f"{raw.path}: no rows; expected {FORMAT_TEXT[format]} with at least one row"
        )
    return table, where


def _in_blocks(data: bytes, read: Callable[[pa.BufferReader, int], pa.Table]) -> pa.Table:
    """`read` in pyarrow's default blocks, or in one block when a value is longer than that
    (a long prompt in a log), which pyarrow cannot split."""
    try:
        return read(pa.BufferReader(data), _BLOCK)
    except pa.ArrowInvalid as exc:
        if "straddl" not in str(exc) or len(data) < _BLOCK:
            raise
        return read(pa.BufferReader(data), min(len(data) + 1, 2**31 - 1))


def check_fields(path: str, mapping: Mapping[str, str], fields: Sequence[str], key: str) -> None:
    """Every key of `mapping` is one of `fields`, and every value a column name."""
    for name, column in mapping.items():
        if name not in fields:
            raise DataError(
                f"{path}: {key}: unknown field {name!r}; {did_you_mean(name, fields)}"
                f"the fields are {', '.join(fields)}"
            )
        if not isinstance(column, str) or not column:
            raise DataError(f"{path}: {key}.{name}: {column!r} is not a column name; write one")


def check_columns(table: pa.Table, path: str, mapping: Mapping[str, str]) -> None:
    """Every column `mapping` names is in `table`, once; else a did-you-mean over its columns.

    The file's columns are shown only when they look like column names: a file named by
    mistake (/etc/passwd, a key file) must not have its first line repeated in an error.
    """
    names = table.column_names
    listable = all(_COLUMN_NAME.fullmatch(n) for n in names)
    for name, column in mapping.items():
        count = names.count(column)
        if count == 0:
            shown = ", ".join(names[:_SHOWN_COLUMNS]) + (
                " ..." if len(names) > _SHOWN_COLUMNS else ""
            )
            listed = (
                f"{did_you_mean(column, names)}its columns are {shown}"
                if listable
                else "its first line does not look like a header of column names"
            )
            raise DataError(f"{path}: {name}: no column {column!r} in the file; {listed}")
        if count > 1:
            raise DataError(
                f"{path}: {name}: the file has {count} columns named {column!r}; rename all but one"
            )


def did_you_mean(word: str, options: Sequence[str]) -> str:
    """``did you mean X? `` when an option is close to `word`, else nothing."""
    close = suggest(word, options)
    return f"did you mean {close}? " if close else ""


def show(value: object) -> str:
    """A value as it reads in the file, short enough for a one-line message."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, str):
        return repr(value if len(value) <= 40 else value[:37] + "...")
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def as_text(
    column: pa.ChunkedArray | pa.Array,
    where: Where,
    name: str,
    *,
    missing: Literal["error", "empty", "null"],
) -> pa.Array:
    """The column as text; numbers become their decimal text (0 -> "0").

    `missing` says what a null or empty value becomes: an error at its row, ``""``, or null.
    """
    arr = plain(column)
    if pa.types.is_null(arr.type):
        arr = pa.nulls(len(arr), pa.string())
    elif not pa.types.is_string(arr.type):
        if not (
            pa.types.is_integer(arr.type)
            or pa.types.is_floating(arr.type)
            or pa.types.is_boolean(arr.type)
            or pa.types.is_binary(arr.type)
        ):
            raise where.error(
                _first_valid(arr) or 0, name, f"a {arr.type} value is not text", "write text"
            )
        try:
            arr = arr.cast(pa.string())
        except _ERRORS:
            raise where.error(0, name, "not UTF-8 text", "save the file as UTF-8") from None
    if missing == "error":
        empty = pc.fill_null(pc.equal(arr, ""), True)
        row = first_true(empty)
        if row is not None:
            raise where.error(row, name, "empty value", "every row needs one")
        return arr
    if missing == "empty":
        return arr.fill_null("")
    return arr


def as_count(
    column: pa.ChunkedArray | pa.Array, where: Where, name: str, *, nullable: bool = False
) -> pa.Array:
    """The column as int64 non-negative whole numbers (text and whole floats accepted)."""
    arr = numeric(column, where, name, COUNT_FIX)
    if not nullable:
        require(arr, where, name, COUNT_FIX)
    valid = _valid(arr)
    if pa.types.is_floating(arr.type):
        values = arr.fill_null(0).to_numpy(zero_copy_only=False)
        bad = valid & ~(np.isfinite(values) & (values >= 0) & (values == np.floor(values)))
    else:
        values = arr.fill_null(0).cast(pa.int64()).to_numpy(zero_copy_only=False)
        bad = valid & (values < 0)
    row = first_true(bad)
    if row is not None:
        raise where.error(row, name, f"{show(arr[row].as_py())} is not a count", COUNT_FIX)
    return pa.array(values.astype(np.int64), mask=~valid)


def as_float(
    column: pa.ChunkedArray | pa.Array,
    where: Where,
    name: str,
    *,
    nullable: bool = False,
    booleans: bool = False,
) -> pa.Array:
    """The column as finite float64 (text numbers accepted; booleans as 0/1 if asked)."""
    arr = plain(column)
    if booleans and pa.types.is_boolean(arr.type):
        arr = arr.cast(pa.float64())
    arr = numeric(arr, where, name, NUMBER_FIX)
    if not nullable:
        require(arr, where, name, NUMBER_FIX)
    values = arr.cast(pa.float64()).fill_null(0.0).to_numpy(zero_copy_only=False)
    valid = _valid(arr)
    row = first_true(valid & ~np.isfinite(values))
    if row is not None:
        raise where.error(row, name, f"{show(arr[row].as_py())} is not a number", NUMBER_FIX)
    return pa.array(values, mask=~valid)


def as_epoch_seconds(
    column: pa.ChunkedArray | pa.Array,
    where: Where,
    name: str,
    *,
    unit: str = "auto",
    nullable: bool = False,
) -> pa.Array:
    """The column as float64 seconds: timestamps and ISO 8601 text as epoch seconds (UTC),
    numbers in `unit` (``auto``: by the magnitude of the median, >1e17 ns, >1e14 us,
    >1e11 ms, else s — so relative seconds such as 0.0 and 1.5 stay as they are)."""
    arr = plain(column)
    if pa.types.is_string(arr.type):
        arr = _blank_to_null(pc.utf8_trim_whitespace(arr))
        first = _first_valid(arr)
        if first is not None and re.match(_NUMBER, arr[first].as_py()) is None:
            if not nullable:
                require(arr, where, name, TIMESTAMP_FORMS, problem="empty timestamp")
            return _seconds_from_ticks(_iso_ns(arr, where, name), 10**9, _valid(arr))
    if pa.types.is_date(arr.type):
        arr = arr.cast(pa.timestamp("s"))
    if pa.types.is_timestamp(arr.type):
        if not nullable:
            require(arr, where, name, TIMESTAMP_FORMS, problem="empty timestamp")
        ticks = arr.cast(pa.int64()).fill_null(0).to_numpy(zero_copy_only=False)
        return _seconds_from_ticks(ticks, UNITS[arr.type.unit], _valid(arr))
    arr = numeric(arr, where, name, TIMESTAMP_FORMS, what="a timestamp")
    if not nullable:
        require(arr, where, name, TIMESTAMP_FORMS, problem="empty timestamp")
    valid = _valid(arr)
    numbers = arr.fill_null(0).to_numpy(zero_copy_only=False)
    row = first_true(valid & ~np.isfinite(numbers.astype(np.float64)))
    if row is not None:
        raise where.error(
            row, name, f"{show(arr[row].as_py())} is not a timestamp", TIMESTAMP_FORMS
        )
    per_second = UNITS[unit] if unit != "auto" else _auto_unit(numbers[valid])
    if pa.types.is_integer(arr.type):
        return _seconds_from_ticks(numbers.astype(np.int64), per_second, valid)
    return pa.array(numbers.astype(np.float64) / per_second, mask=~valid)


def numeric(
    column: pa.ChunkedArray | pa.Array, where: Where, name: str, fix: str, *, what: str = "a number"
) -> pa.Array:
    """The column as an integer or floating array; text is parsed (blank text is null).

    Whole-number text becomes int64 so that nanosecond times keep every digit.
    """
    arr = plain(column)
    if pa.types.is_null(arr.type):
        return pa.nulls(len(arr), pa.float64())
    if pa.types.is_integer(arr.type) or pa.types.is_floating(arr.type):
        return arr
    if pa.types.is_string(arr.type):
        arr = _blank_to_null(pc.utf8_trim_whitespace(arr))
        ok = pc.fill_null(pc.match_substring_regex(arr, _NUMBER), True)
        row = first_false(ok)
        if row is not None:
            raise where.error(row, name, f"{show(arr[row].as_py())} is not {what}", fix)
        whole = pc.all(pc.fill_null(pc.match_substring_regex(arr, _INTEGER), True)).as_py()
        try:
            return arr.cast(pa.int64() if whole else pa.float64())
        except _ERRORS:
            return arr.cast(pa.float64())
    row = _first_valid(arr)
    raise where.error(row or 0, name, f"a {arr.type} value is not {what}", fix)


def require(
    arr: pa.Array, where: Where, name: str, fix: str, *, problem: str = "empty value"
) -> None:
    """A DataError at the first null of `arr`, if any."""
    if arr.null_count:
        row = first_true(~_valid(arr))
        raise where.error(row or 0, name, problem, fix)


def plain(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    """One contiguous array, dictionaries decoded, every text type as ``string``."""
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    if pa.types.is_large_string(arr.type) or str(arr.type) == "string_view":
        arr = arr.cast(pa.string())
    return arr


def first_true(mask: np.ndarray) -> int | None:
    """Index of the first True in `mask`, or None."""
    hits = np.flatnonzero(mask)
    return int(hits[0]) if len(hits) else None


def first_false(mask: pa.Array) -> int | None:
    """Index of the first False in a boolean Arrow array without nulls, or None."""
    return first_true(~mask.to_numpy(zero_copy_only=False))


def seconds_from_ns(ns: np.ndarray, valid: np.ndarray) -> pa.Array:
    """Epoch nanoseconds (int64) as float64 seconds, exact to the float's precision."""
    return _seconds_from_ticks(ns, 10**9, valid)


def _valid(arr: pa.Array) -> np.ndarray:
    out: np.ndarray = pc.is_valid(arr).to_numpy(zero_copy_only=False)
    return out


def _first_valid(arr: pa.Array) -> int | None:
    return first_true(_valid(arr))


def _blank_to_null(arr: pa.Array) -> pa.Array:
    blank = pc.equal(arr, "")
    return pc.if_else(blank, pa.scalar(None, pa.string()), arr)


def _seconds_from_ticks(ticks: np.ndarray, per_second: int, valid: np.ndarray) -> pa.Array:
    ticks = np.where(valid, ticks, 0).astype(np.int64)
    whole, part = np.divmod(ticks, per_second)
    seconds = whole.astype(np.float64) + part.astype(np.float64) / per_second
    return pa.array(seconds, mask=~valid)


def _auto_unit(values: np.ndarray) -> int:
    if not len(values):
        return 1
    magnitude = abs(float(np.median(values.astype(np.float64))))
    for bound, unit in ((1e17, "ns"), (1e14, "us"), (1e11, "ms")):
        if magnitude > bound:
            return UNITS[unit]
    return 1


def _iso_ns(arr: pa.Array, where: Where, name: str) -> np.ndarray:
    """ISO 8601 text as epoch nanoseconds (UTC); text with a zone is converted to UTC."""
    zoned = pc.fill_null(pc.match_substring_regex(arr, _ZONE), False)
    nothing = pa.scalar(None, pa.string())
    try:
        naive = pc.if_else(zoned, nothing, arr).cast(pa.timestamp("ns")).cast(pa.int64())
        utc = pc.if_else(zoned, arr, nothing).cast(pa.timestamp("ns", "UTC")).cast(pa.int64())
    except _ERRORS:
        for row, (text, has_zone) in enumerate(
            zip(arr.to_pylist(), zoned.to_pylist(), strict=True)
        ):
            target = pa.timestamp("ns", "UTC") if has_zone else pa.timestamp("ns")
            try:
                pa.array([text], pa.string()).cast(target)
            except _ERRORS:
                raise where.error(
                    row, name, f"{show(text)} is not a timestamp", TIMESTAMP_FORMS
                ) from None
        raise
    ticks: np.ndarray = pc.if_else(zoned, utc, naive).fill_null(0).to_numpy(zero_copy_only=False)
    return ticks


def _bytes_or_nothing(path: str) -> bytes:
    try:
        return read_input(path, limit=DATA_BYTES, what="data file")
    except InputError:
        return b""


def _nth(items: Generator[tuple[int, Any]], n: int) -> int | None:
    """The line of the `n`-th item (0-based), or None if there are fewer."""
    try:
        for i, (line, _) in enumerate(items):
            if i == n:
                return line
        return None
    finally:
        items.close()


def _csv_rows(data: bytes) -> Generator[tuple[int, list[str]]]:
    """(first file line, fields) of each non-blank CSV record, the header first."""
    text = data.decode("utf-8-sig", errors="replace")
    limit = csv.field_size_limit()
    csv.field_size_limit(max(limit, len(text)))  # a value may be as long as the file
    try:
        reader = csv.reader(io.StringIO(text, newline=""))
        while True:
            start = reader.line_num + 1
            try:
                record = next(reader)
            except (StopIteration, csv.Error):
                return
            if record:
                yield start, record
    finally:
        csv.field_size_limit(limit)


def _jsonl_texts(data: bytes) -> Generator[tuple[int, bytes]]:
    """(file line, text) of each non-blank line; pyarrow skips blank ones too."""
    for number, text in enumerate(data.split(b"\n"), start=1):
        if text.strip():
            yield number, text


def _csv_problem(raw: RawFile, exc: Exception) -> DataError:
    """Why pyarrow could not read a CSV file, at the line that breaks it when we can tell."""
    header: list[str] | None = None
    for line, record in _csv_rows(raw.data):
        if header is None:
            header = record
        elif len(record) != len(header):
            return DataError(
                f"{raw.path}:{line}: {len(record)} fields where the header has {len(header)}; "
                "quote values that hold commas, or fix the row"
            )
    return DataError(
        f"{raw.path}: cannot read as CSV ({_first_line(exc)}); expected {FORMAT_TEXT['csv']}"
    )


def _jsonl_problem(raw: RawFile, exc: Exception) -> DataError:
    """Why pyarrow could not read JSON lines, at the first line that shows it."""
    changed = re.search(r"Column\(/([^)]*)\) changed from", str(exc))
    key = changed.group(1).split("/") if changed else None
    seen: tuple[int, str] | None = None
    for line, text in _jsonl_texts(raw.data):
        try:
            value = json.loads(text)
        except ValueError as err:
            if line == 1 and text.lstrip().startswith(b"["):
                return DataError(
                    f"{raw.path}: a JSON array, not JSON lines; expected {FORMAT_TEXT['jsonl']}"
                )
            return DataError(
                f"{raw.path}:{line}: not valid JSON ({getattr(err, 'msg', err)}); "
                f"expected {FORMAT_TEXT['jsonl']}"
            )
        if not isinstance(value, dict):
            return DataError(
                f"{raw.path}:{line}: a JSON {_json_kind(value)}, not an object; "
                f"expected {FORMAT_TEXT['jsonl']}"
            )
        if key is None:
            continue
        kind = _json_kind(_dig(value, key))
        if kind == "null":
            continue
        if seen is None:
            seen = (line, kind)
        elif kind != seen[1]:
            return DataError(
                f"{raw.path}:{line}: column {'.'.join(key)}: a {kind} where line {seen[0]} "
                f"has a {seen[1]}; give every value of a column the same JSON type"
            )
    return DataError(
        f"{raw.path}: cannot read as JSON lines ({_first_line(exc)}); "
        f"expected {FORMAT_TEXT['jsonl']}"
    )


def _dig(value: Any, keys: Sequence[str]) -> Any:
    for key in keys:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def _json_kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
