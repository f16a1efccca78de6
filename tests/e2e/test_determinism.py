"""Same suite and seed, run twice through the real CLI: identical Parquet, to the byte."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from pandas.testing import assert_frame_equal

RunEvalx = Callable[..., subprocess.CompletedProcess[str]]

TABLES = ("requests.parquet", "spans.parquet", "summary.parquet")
SMALL = "traffic.requests=1200"


@pytest.fixture(scope="module")
def runs(
    evalx: RunEvalx, support_suite: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("determinism")
    out = {"a": base / "a", "b": base / "b", "other_seed": base / "c"}
    for name, extra in (("a", []), ("b", []), ("other_seed", ["--seed", "43"])):
        proc = evalx("run", support_suite, "--set", SMALL, *extra, "--out", out[name], "-q")
        assert proc.returncode == 0, proc.stderr
    return out


@pytest.mark.parametrize("name", TABLES)
def test_same_seed_same_content(runs: dict[str, Path], name: str) -> None:
    a, b = pq.read_table(runs["a"] / name), pq.read_table(runs["b"] / name)
    assert a.num_rows > 0
    assert a.schema.equals(b.schema, check_metadata=True)
    # Table.equals treats NaN as unequal to itself (e.g. `confidence` without an answer)
    assert_frame_equal(a.to_pandas(), b.to_pandas(), check_exact=True)


@pytest.mark.parametrize("name", TABLES)
def test_same_seed_same_bytes(runs: dict[str, Path], name: str) -> None:
    assert (runs["a"] / name).read_bytes() == (runs["b"] / name).read_bytes()


def test_same_seed_same_manifest_apart_from_when_and_how_long(runs: dict[str, Path]) -> None:
    a, b = (json.loads((runs[k] / "manifest.json").read_text(encoding="utf-8")) for k in "ab")
    varying = {"run_id", "started_at", "wall_seconds", "command", "integrity"}
    assert {k: v for k, v in a.items() if k not in varying} == {
        k: v for k, v in b.items() if k not in varying
    }
    # the records hash alike; report.md names the run id and wall time, so it does not
    files_a, files_b = (m["integrity"]["files"] for m in (a, b))
    assert {n: files_a[n] for n in TABLES} == {n: files_b[n] for n in TABLES}


def test_other_seed_differs(runs: dict[str, Path]) -> None:
    a = pq.read_table(runs["a"] / "requests.parquet")
    c = pq.read_table(runs["other_seed"] / "requests.parquet")
    assert a.num_rows == c.num_rows == 1200
    assert a.schema.equals(c.schema, check_metadata=True)
    assert not a.equals(c)
    assert a.column("arrival_s") != c.column("arrival_s")
    manifest = json.loads((runs["other_seed"] / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["seed"] == 43
    assert manifest["parameters"]["seed"] == {"value": 43, "source": "--set"}
