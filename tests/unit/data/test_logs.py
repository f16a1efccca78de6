"""Request logs: real traces read exactly, three formats read alike, every bad value located."""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from harness.data import DataError, Log, read_log

ROOT = Path(__file__).resolve().parents[3]
DATA = ROOT.parent / "shared" / "data"
AZURE = DATA / "azure-llm-2023" / "code.csv"
INSTRUCTIONS = DATA / "alpacaeval" / "instructions.csv"
AZURE_COLUMNS = {
    "timestamp": "TIMESTAMP",
    "input_tokens": "ContextTokens",
    "output_tokens": "GeneratedTokens",
}
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason="shared data sets not present")


def error_of(call: Callable[..., Any], *args: Any, **kwargs: Any) -> str:
    """The one-line message of the DataError `call` raises."""
    with pytest.raises(DataError) as info:
        call(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# ------------------------------------------------------------------ real data


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


@needs_data
def test_azure_trace_reads_exactly() -> None:
    raw = AZURE.read_text().splitlines()
    log = read_log(AZURE, columns=AZURE_COLUMNS)

    assert log.rows == len(raw) - 1 == log.table.num_rows
    assert log.table.column_names == ["timestamp_s", "input_tokens", "output_tokens"]
    assert log.table.schema.types == [pa.float64(), pa.int64(), pa.int64()]
    assert log.labels.num_columns == 0
    assert log.path == str(AZURE)
    assert log.sha256 == hashlib.sha256(AZURE.read_bytes()).hexdigest()
    for row, line in ((0, raw[1]), (log.rows - 1, raw[-1])):
        stamp, context, generated = line.split(",")
        got = log.table.slice(row, 1).to_pylist()[0]
        assert got["timestamp_s"] == pytest.approx(_epoch(stamp), abs=1e-6)
        assert (got["input_tokens"], got["output_tokens"]) == (int(context), int(generated))
    assert raw[1].startswith("2023-11-16 18:17:03.9799600")
    assert log.table.column("timestamp_s")[0].as_py() == pytest.approx(1700158623.97996, abs=1e-6)
    assert np.all(np.diff(log.table.column("timestamp_s").to_numpy()) >= 0)


@needs_data
def test_alpacaeval_instructions_keep_multiline_text_and_numeric_ids() -> None:
    with INSTRUCTIONS.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    log = read_log(
        INSTRUCTIONS, columns={"id": "id", "task_class": "dataset", "text": "instruction"}
    )

    assert log.rows == len(rows) == 805
    assert "timestamp_s" not in log.table.column_names
    assert log.table.column("id").to_pylist() == [r["id"] for r in rows]
    assert log.table.column("id")[0].as_py() == "0"
    assert log.table.column("task_class").to_pylist() == [r["dataset"] for r in rows]
    assert log.table.column("text").to_pylist() == [r["instruction"] for r in rows]
    assert any("\n" in r["instruction"] for r in rows)
    assert set(log.table.column("task_class").to_pylist()) == {
        "helpful_base",
        "koala",
        "oasst",
        "selfinstruct",
        "vicuna",
    }


@needs_data
def test_a_bad_value_after_multiline_text_names_the_real_line(tmp_path: Path) -> None:
    text = INSTRUCTIONS.read_text(encoding="utf-8")
    with INSTRUCTIONS.open(newline="", encoding="utf-8") as f:
        records = list(csv.reader(f))
    bad = write(tmp_path / "instructions.csv", text.rstrip("\n") + "\n,vicuna,no id here\n")
    message = error_of(read_log, bad, columns={"id": "id", "text": "instruction"})
    line = text.count("\n") + 1 + (0 if text.endswith("\n") else 1)
    assert len(records) - 1 + 2 < line  # multi-line values push lines past row + 2
    assert message == f"{bad}:{line}: column id: empty value; every row needs one"


# ------------------------------------------------------- one log, three formats

ROWS: list[dict[str, Any]] = [
    {"ts": "2024-03-01T12:00:00Z", "tin": 12, "tout": 3, "cls": "routine", "who": "acme",
     "sid": "s1", "prompt": "hi, there", "rid": 7, "region": "eu"},
    {"ts": "2024-03-01 12:00:00.5", "tin": 0, "tout": 40, "cls": "hard", "who": None,
     "sid": "s1", "prompt": None, "rid": 8, "region": "us"},
    {"ts": "2024-03-01T14:00:01.2500000+02:00", "tin": 900, "tout": 1, "cls": "routine",
     "who": "beta", "sid": None, "prompt": "line one\nline two", "rid": 9, "region": "eu"},
]  # fmt: skip
MAPPING = {
    "timestamp": "ts",
    "input_tokens": "tin",
    "output_tokens": "tout",
    "task_class": "cls",
    "tenant": "who",
    "session": "sid",
    "text": "prompt",
    "id": "rid",
}


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    text = str(value)
    return '"' + text.replace('"', '""') + '"' if any(c in text for c in ',"\n') else text


def write_all(tmp_path: Path, rows: list[dict[str, Any]], stem: str = "log") -> list[Path]:
    """`rows` as CSV, JSON lines and Parquet files."""
    names = list(rows[0])
    lines = [",".join(names)] + [",".join(_csv_cell(r[n]) for n in names) for r in rows]
    paths = [
        write(tmp_path / f"{stem}.csv", "\n".join(lines) + "\n"),
        write(tmp_path / f"{stem}.jsonl", "".join(json.dumps(r) + "\n" for r in rows)),
        tmp_path / f"{stem}.parquet",
    ]
    pq.write_table(pa.Table.from_pylist(rows), paths[2])
    return paths


def test_csv_jsonl_and_parquet_give_the_same_log(tmp_path: Path) -> None:
    logs = [read_log(p, columns=MAPPING) for p in write_all(tmp_path, ROWS)]

    expected = {
        "id": ["7", "8", "9"],
        "timestamp_s": [1709294400.0, 1709294400.5, 1709294401.25],
        "task_class": ["routine", "hard", "routine"],
        "tenant": ["acme", "", "beta"],
        "session": ["s1", "s1", ""],
        "input_tokens": [12, 0, 900],
        "output_tokens": [3, 40, 1],
        "text": ["hi, there", "", "line one\nline two"],
    }
    for log in logs:
        assert log.table.to_pydict() == expected
        assert log.labels.to_pydict() == {"region": ["eu", "us", "eu"]}
        assert log.rows == 3
    assert logs[0].table.equals(logs[1].table) and logs[1].table.equals(logs[2].table)


def test_format_can_be_named_when_the_suffix_does_not_say(tmp_path: Path) -> None:
    csv_path, jsonl_path, _ = write_all(tmp_path, ROWS)
    renamed = jsonl_path.rename(tmp_path / "requests.log")
    assert read_log(renamed, format="jsonl", columns={"id": "rid"}).table.column(
        "id"
    ).to_pylist() == ["7", "8", "9"]
    message = error_of(read_log, renamed, columns={"id": "rid"})
    assert message.startswith(f"{renamed}: cannot tell the format from the suffix .log;")
    assert "format: unknown format 'jsn'; did you mean" in error_of(
        read_log, csv_path, format="jsn", columns={"id": "rid"}
    )


def test_parquet_timestamps_and_dictionary_columns(tmp_path: Path) -> None:
    stamps = [datetime(2024, 3, 1, 12, 0, 0, 250000), datetime(2024, 3, 1, 12, 0, 1)]
    table = pa.table(
        {
            "t": pa.array(stamps, pa.timestamp("us")),
            "cls": pa.array(["a", "b"]).dictionary_encode(),
            "n": pa.array([1.0, 2.0]),
        }
    )
    path = tmp_path / "log.pq"
    pq.write_table(table, path)
    log = read_log(path, columns={"timestamp": "t", "task_class": "cls", "input_tokens": "n"})
    assert log.table.to_pydict() == {
        "timestamp_s": [1709294400.25, 1709294401.0],
        "task_class": ["a", "b"],
        "input_tokens": [1, 2],
    }


# ------------------------------------------------------------------ timestamps


@pytest.mark.parametrize(
    ("values", "unit", "seconds"),
    [
        (["0", "1.5", "1.5", "30"], "auto", [0.0, 1.5, 1.5, 30.0]),
        (["1700000000", "1700000001"], "auto", [1700000000.0, 1700000001.0]),
        (["1700000000250", "1700000001000"], "auto", [1700000000.25, 1700000001.0]),
        (["1700000000250000", "1700000001000000"], "auto", [1700000000.25, 1700000001.0]),
        (["1700000000250000001", "1700000001000000000"], "auto",
         [1700000000.250000001, 1700000001.0]),
        (["1700000000.5", "1700000001.25"], "auto", [1700000000.5, 1700000001.25]),
        (["1500", "2500"], "ms", [1.5, 2.5]),
        (["1500", "2500"], "auto", [1500.0, 2500.0]),
        (["2023-11-16 18:17:03.9799600", "2023-11-16T18:17:04Z"], "auto",
         [1700158623.97996, 1700158624.0]),
        (["2023-11-16", "2023-11-17"], "ms", [1700092800.0, 1700179200.0]),
    ],
)  # fmt: skip
def test_timestamp_forms(
    tmp_path: Path, values: list[str], unit: str, seconds: list[float]
) -> None:
    path = write(tmp_path / "t.csv", "t\n" + "\n".join(values) + "\n")
    log = read_log(path, columns={"timestamp": "t"}, timestamp_unit=unit)
    assert log.table.column("timestamp_s").to_pylist() == pytest.approx(seconds, abs=1e-9, rel=0)


def test_jsonl_numeric_timestamps_in_ns_keep_their_digits(tmp_path: Path) -> None:
    path = write(tmp_path / "t.jsonl", '{"t": 1700000000123456789}\n{"t": 1700000000123457789}\n')
    got = read_log(path, columns={"timestamp": "t"}).table.column("timestamp_s").to_numpy()
    assert got[1] - got[0] == pytest.approx(1e-6, abs=1e-7)


def test_out_of_order_rows_are_an_error_naming_both_values(tmp_path: Path) -> None:
    path = write(tmp_path / "log.csv", "t,n\n1.0,5\n3.0,6\n\n2.0,7\n")
    message = error_of(read_log, path, columns={"timestamp": "t", "input_tokens": "n"})
    assert message == (
        f"{path}:5: column t: 2.0 is earlier than the row before (3.0); "
        "sort the file by t, or set sort: true in traffic.log"
    )


def test_sort_orders_rows_stably_and_keeps_labels_aligned(tmp_path: Path) -> None:
    path = write(tmp_path / "log.csv", "t,n,tag\n3,1,a\n1,2,b\n3,3,c\n2,4,d\n")
    log = read_log(path, columns={"timestamp": "t", "input_tokens": "n"}, sort=True)
    assert log.table.to_pydict() == {
        "timestamp_s": [1.0, 2.0, 3.0, 3.0],
        "input_tokens": [2, 4, 1, 3],
    }
    assert log.labels.column("tag").to_pylist() == ["b", "d", "a", "c"]
    assert [log.row_of(i) for i in range(4)] == [1, 3, 0, 2]
    assert log.where(0) == f"{path}:3"
    unsorted = read_log(path, columns={"input_tokens": "n"})
    assert unsorted.row_of(1) == 1 and unsorted.where(1) == f"{path}:3"


@pytest.mark.parametrize(
    ("cell", "problem"),
    [
        ("yesterday", "'yesterday' is not a timestamp"),
        ("", "empty timestamp"),
        ("2023-13-45 10:00:00", "'2023-13-45 10:00:00' is not a timestamp"),
    ],
)
def test_bad_timestamps_name_line_column_and_the_accepted_forms(
    tmp_path: Path, cell: str, problem: str
) -> None:
    path = write(tmp_path / "log.csv", f"when,n\n2023-11-16 18:17:03,1\n{cell},2\n")
    message = error_of(read_log, path, columns={"timestamp": "when"})
    assert message.startswith(f"{path}:3: column when: {problem}; write ISO 8601 text")
    assert "epoch time as a number (s, ms, us or ns)" in message
    assert "seconds from the start" in message


def test_bad_numeric_timestamp_is_located(tmp_path: Path) -> None:
    path = write(tmp_path / "log.csv", "t\n1.0\n2.0\nsoon\n")
    message = error_of(read_log, path, columns={"timestamp": "t"})
    assert message.startswith(f"{path}:4: column t: 'soon' is not a timestamp; write ISO 8601")


def test_bad_timestamps_in_jsonl_and_parquet(tmp_path: Path) -> None:
    rows = [{"t": "2024-01-01T00:00:00Z"}, {"t": None}, {"t": "2024-01-01T00:00:02Z"}]
    _, jsonl, parquet = write_all(tmp_path, [{**r, "x": 1} for r in rows])
    assert error_of(read_log, jsonl, columns={"timestamp": "t"}).startswith(
        f"{jsonl}:2: column t: empty timestamp; write ISO 8601"
    )
    assert error_of(read_log, parquet, columns={"timestamp": "t"}).startswith(
        f"{parquet}:row 1: column t: empty timestamp; write ISO 8601"
    )


def test_unknown_timestamp_unit(tmp_path: Path) -> None:
    path = write(tmp_path / "log.csv", "t\n1\n")
    message = error_of(read_log, path, columns={"timestamp": "t"}, timestamp_unit="msec")
    assert message == (
        f"{path}: timestamp_unit: unknown unit 'msec'; did you mean ms? "
        "use one of auto, s, ms, us, ns"
    )


# ----------------------------------------------------------- tokens and text


@pytest.mark.parametrize(
    ("cell", "problem"),
    [
        ("-3", "-3 is not a count"),
        ("2.5", "2.5 is not a count"),
        ("many", "'many' is not a number"),
        ("", "empty value"),
    ],
)
def test_bad_token_counts_are_located(tmp_path: Path, cell: str, problem: str) -> None:
    path = write(tmp_path / "log.csv", f"a,b\n1,1\n2,{cell}\n")
    message = error_of(read_log, path, columns={"input_tokens": "a", "output_tokens": "b"})
    assert message == f"{path}:3: column b: {problem}; write a non-negative whole number"


def test_whole_float_tokens_are_counts(tmp_path: Path) -> None:
    path = write(tmp_path / "log.jsonl", '{"n": 3.0}\n{"n": 4}\n')
    assert read_log(path, columns={"input_tokens": "n"}).table.column(
        "input_tokens"
    ).to_pylist() == [
        3,
        4,
    ]


def test_bad_tokens_in_jsonl_and_parquet(tmp_path: Path) -> None:
    _, jsonl, parquet = write_all(tmp_path, [{"n": 1}, {"n": 2}, {"n": -1}])
    assert error_of(read_log, jsonl, columns={"input_tokens": "n"}) == (
        f"{jsonl}:3: column n: -1 is not a count; write a non-negative whole number"
    )
    assert error_of(read_log, parquet, columns={"input_tokens": "n"}) == (
        f"{parquet}:row 2: column n: -1 is not a count; write a non-negative whole number"
    )


def test_ids_and_classes_must_be_present_text_may_be_empty(tmp_path: Path) -> None:
    path = write(tmp_path / "log.csv", "id,cls,text\n007,a,\n008,,hello\n")
    log = read_log(path, columns={"id": "id", "text": "text"})
    assert log.table.to_pydict() == {"id": ["007", "008"], "text": ["", "hello"]}
    message = error_of(read_log, path, columns={"task_class": "cls"})
    assert message == f"{path}:3: column cls: empty value; every row needs one"


def test_null_id_in_jsonl_is_located(tmp_path: Path) -> None:
    path = write(tmp_path / "log.jsonl", '{"id": 1}\n\n{"id": null}\n')
    assert error_of(read_log, path, columns={"id": "id"}) == (
        f"{path}:3: column id: empty value; every row needs one"
    )


# ------------------------------------------------------------------ mappings


def test_unknown_field_suggests_the_closest(tmp_path: Path) -> None:
    path = write(tmp_path / "log.csv", "t\n1\n")
    message = error_of(read_log, path, columns={"timestmp": "t"})
    assert message == (
        f"{path}: columns: unknown field 'timestmp'; did you mean timestamp? the fields are "
        "id, timestamp, task_class, tenant, session, input_tokens, output_tokens, text"
    )


@needs_data
def test_missing_column_suggests_and_lists_the_columns() -> None:
    message = error_of(read_log, AZURE, columns={**AZURE_COLUMNS, "input_tokens": "ContextToken"})
    assert message == (
        f"{AZURE}: input_tokens: no column 'ContextToken' in the file; did you mean "
        "ContextTokens? its columns are TIMESTAMP, ContextTokens, GeneratedTokens"
    )


# --------------------------------------------------------------- bad files


def test_missing_directory_empty_and_header_only_files(tmp_path: Path) -> None:
    missing = tmp_path / "nope.csv"
    assert error_of(read_log, missing, columns={}) == (
        f"{missing}: no such file; expected a request log (a CSV file with a header row)"
    )
    folder = tmp_path / "dir.csv"
    folder.mkdir()
    assert error_of(read_log, folder, columns={}).startswith(f"{folder}: is a directory;")
    empty = write(tmp_path / "empty.jsonl", "\n")
    assert error_of(read_log, empty, columns={}) == (
        f"{empty}: the file is empty; expected a request log (JSON lines (one JSON object a line))"
    )
    header = write(tmp_path / "header.csv", "a,b\n")
    assert error_of(read_log, header, columns={}) == (
        f"{header}: no rows; expected a CSV file with a header row with at least one row"
    )


def test_files_that_are_not_the_format(tmp_path: Path) -> None:
    not_parquet = write(tmp_path / "log.parquet", "a,b\n1,2\n")
    assert error_of(read_log, not_parquet, columns={}).startswith(
        f"{not_parquet}: not a Parquet file ("
    )
    ragged = write(tmp_path / "log.csv", 'a,b\n1,2\n3,"x\ny"\n4,5,6\n')
    assert error_of(read_log, ragged, columns={}) == (
        f"{ragged}:5: 3 fields where the header has 2; quote values that hold commas, "
        "or fix the row"
    )
    bad_json = write(tmp_path / "log.jsonl", '{"a": 1}\n{"a": 2\n')
    assert error_of(read_log, bad_json, columns={}).startswith(f"{bad_json}:2: not valid JSON (")
    array = write(tmp_path / "array.jsonl", '[{"a": 1},\n {"a": 2}]\n')
    assert error_of(read_log, array, columns={}) == (
        f"{array}: a JSON array, not JSON lines; expected JSON lines (one JSON object a line)"
    )
    mixed = write(tmp_path / "mixed.jsonl", '{"id": 1}\n{"id": null}\n{"id": "x"}\n')
    assert error_of(read_log, mixed, columns={"id": "id"}) == (
        f"{mixed}:3: column id: a string where line 1 has a number; "
        "give every value of a column the same JSON type"
    )


def test_values_longer_than_a_read_block(tmp_path: Path) -> None:
    long_text = "word " * 600_000
    rows = [{"n": 1, "t": "short"}, {"n": 2, "t": long_text}, {"n": -3, "t": "x"}]
    csv_path, jsonl, _ = write_all(tmp_path, rows)
    for path, line in ((csv_path, 4), (jsonl, 3)):
        log = read_log(path, columns={"text": "t"})
        assert log.table.column("text")[1].as_py() == long_text
        assert error_of(read_log, path, columns={"input_tokens": "n"}) == (
            f"{path}:{line}: column n: -3 is not a count; write a non-negative whole number"
        )


def test_log_is_a_frozen_value(tmp_path: Path) -> None:
    path = write(tmp_path / "log.csv", "n\n1\n")
    log = read_log(path, columns={"input_tokens": "n"})
    assert isinstance(log, Log)
    with pytest.raises(AttributeError):
        log.rows = 2  # type: ignore[misc]
    assert log.sha256 == hashlib.sha256(b"n\n1\n").hexdigest()
