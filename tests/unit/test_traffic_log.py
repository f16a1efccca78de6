"""Replaying a request log: arrivals and token counts exactly as logged, windows, errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from harness.data import DataError
from harness.run import simulate
from harness.spec import Suite
from harness.traffic import sample_requests
from tests.unit.test_engine import make_suite

ROOT = Path(__file__).resolve().parents[2]
AZURE = ROOT / "fixtures" / "shared" / "azure-llm-2023" / "code.csv"

ROWS: list[dict[str, Any]] = [
    {"ts": 1_700_000_000.0 + t, "inp": i, "out": o, "who": w, "cls": c, "region": r}
    for t, i, o, w, c, r in [
        (0.0, 100, 10, "acme", "routine", "eu"),
        (0.5, 200, 20, "acme", "hard", "us"),
        (0.5, 300, 30, "globex", "routine", "eu"),
        (2.25, 400, 40, "acme", "routine", "us"),
        (7.0, 500, 50, "globex", "hard", "eu"),
    ]
]
COLUMNS = {"timestamp": "ts", "input_tokens": "inp", "output_tokens": "out",
           "tenant": "who", "task_class": "cls"}  # fmt: skip


def write_log(tmp_path: Path, fmt: str, rows: list[dict[str, Any]] = ROWS) -> Path:
    path = tmp_path / f"log.{fmt}"
    if fmt == "csv":
        keys = list(rows[0])
        lines = [",".join(keys)] + [",".join(str(r[k]) for k in keys) for r in rows]
        path.write_text("\n".join(lines) + "\n")
    elif fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def log_suite(path: Path, **log: Any) -> Suite:
    mix = {"routine": {"weight": 1}, "hard": {"weight": 1}}
    routes = {"routine": "routine", "hard": "routine"}
    return make_suite(
        traffic__mix=mix,
        stack__class_routes=routes,
        traffic__log={"path": str(path), "columns": COLUMNS, **log},
    )


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_arrivals_and_tokens_are_the_logged_ones(tmp_path: Path, fmt: str) -> None:
    result = simulate(log_suite(write_log(tmp_path, fmt)))
    req = result.requests.to_pandas()
    assert req["arrival_s"].tolist() == [0.0, 0.5, 0.5, 2.25, 7.0]
    assert req["task_class"].tolist() == [r["cls"] for r in ROWS]
    assert req["tenant"].tolist() == [r["who"] for r in ROWS]
    assert req["label_region"].tolist() == [r["region"] for r in ROWS]
    chat = result.spans.to_pandas().query("kind == 'chat' and name == 'answer'")
    first = chat.groupby("request_id").first()
    assert first["gen_ai.usage.input_tokens"].tolist() == [r["inp"] for r in ROWS]
    assert first["gen_ai.usage.output_tokens"].tolist() == [r["out"] for r in ROWS]


def test_speed_window_and_prefix(tmp_path: Path) -> None:
    path = write_log(tmp_path, "csv")
    fast = sample_requests(log_suite(path, speed=2.0))
    assert fast.arrival_s.tolist() == [0.0, 0.25, 0.25, 1.125, 3.5]
    window = sample_requests(log_suite(path, start_s=0.5, duration_s=2.0))
    assert window.arrival_s.tolist() == [0.0, 0.0, 1.75]
    assert window.input_tokens.tolist() == [200, 300, 400]
    prefix = sample_requests(log_suite(path, requests=2))
    assert prefix.input_tokens.tolist() == [100, 200]


def test_fields_the_log_lacks_come_from_the_mix(tmp_path: Path) -> None:
    path = write_log(tmp_path, "csv")
    suite = make_suite(traffic__log={"path": str(path), "columns": {"timestamp": "ts"}},
                       traffic__mix={"routine": {"weight": 1, "input_tokens": 700,
                                                 "token_spread": 0}})  # fmt: skip
    req = sample_requests(suite)
    assert req.input_tokens.tolist() == [700] * 5
    assert req.arrival_s.tolist() == [0.0, 0.5, 0.5, 2.25, 7.0]
    assert sorted(req.extra) == ["label_cls", "label_inp", "label_out", "label_region", "label_who"]


def test_the_azure_trace_replays_exactly() -> None:
    import pyarrow.csv as pcsv

    raw = pcsv.read_csv(AZURE, convert_options=pcsv.ConvertOptions(column_types={
        "TIMESTAMP": pa.string()})).to_pydict()  # fmt: skip
    from datetime import UTC, datetime

    stamps = [datetime.fromisoformat(t[:26]).replace(tzinfo=UTC).timestamp() for t in
              raw["TIMESTAMP"][:500]]  # fmt: skip
    cols = {"timestamp": "TIMESTAMP", "input_tokens": "ContextTokens",
            "output_tokens": "GeneratedTokens"}  # fmt: skip
    suite = make_suite(traffic__log={"path": str(AZURE), "columns": cols, "requests": 500})
    req = sample_requests(suite)
    np.testing.assert_allclose(req.arrival_s, np.array(stamps) - stamps[0], atol=1e-6)
    assert req.input_tokens.tolist() == raw["ContextTokens"][:500]
    assert req.output_tokens.tolist() == [max(1, v) for v in raw["GeneratedTokens"][:500]]


def test_unknown_task_class_names_file_line_and_column(tmp_path: Path) -> None:
    rows = [dict(r) for r in ROWS]
    rows[3]["cls"] = "weird"
    path = write_log(tmp_path, "csv", rows)
    with pytest.raises(DataError, match=r"log\.csv:5: column cls: task class 'weird' is not in"):
        sample_requests(log_suite(path))


def test_an_empty_window_is_an_error(tmp_path: Path) -> None:
    path = write_log(tmp_path, "csv")
    with pytest.raises(DataError, match="window has no requests"):
        sample_requests(log_suite(path, start_s=100.0))
