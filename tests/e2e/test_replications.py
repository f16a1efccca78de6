"""Replications on every executor: identical bytes; failures reported; --resume exact."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from harness.executor import InlineExecutor
from harness.replicate import ReplicationError, replicate, replication_seed

RunEvalx = Callable[..., subprocess.CompletedProcess[str]]
ROOT = Path(__file__).resolve().parents[2]
SUITE = str(ROOT / "scenarios" / "support.yaml")
FLAGS = ["traffic.requests=500"]
TABLES = ("requests.parquet", "spans.parquet", "summary.parquet", "replications.parquet")


def test_seeds_come_from_seedsequence_not_hash() -> None:
    assert replication_seed(42, 0) == replication_seed(42, 0)
    assert len({replication_seed(42, r) for r in range(50)}) == 50
    assert replication_seed(42, 1) != replication_seed(43, 1)


@pytest.mark.parametrize("kind", ["process", "dask"])
def test_every_executor_writes_the_same_bytes(evalx: RunEvalx, tmp_path: Path, kind: str) -> None:
    runs = {}
    for k in ("inline", kind):
        out = tmp_path / k
        proc = evalx("run", SUITE, "--set", FLAGS[0], "--replications", "3", "--executor", k,
                     "--workers", "2", "--out", out, "-q")  # fmt: skip
        assert proc.returncode == 0, proc.stdout + proc.stderr
        runs[k] = out
    for name in TABLES:
        assert (runs["inline"] / name).read_bytes() == (runs[kind] / name).read_bytes(), name
    requests = pq.read_table(runs["inline"] / "requests.parquet")
    assert requests.num_rows == 1500
    assert sorted(set(requests.column("replication").to_pylist())) == [0, 1, 2]
    stats = pq.read_table(runs["inline"] / "replications.parquet").to_pandas()
    row = stats[(stats.route == "all") & (stats.metric == "success_rate")].iloc[0]
    assert row.replications == 3 and row.ci_low <= row["mean"] <= row.ci_high


class FailingOnce:
    """An executor that loses one unit the first time (a crashed worker), inline otherwise."""

    def __init__(self, fail: int) -> None:
        self.fail = fail
        self.failed = False

    def map(self, fn: Callable[[Any], Any], units: Sequence[Any]) -> Iterator[Any]:
        for unit in units:
            if unit.replication == self.fail and not self.failed:
                self.failed = True
                raise RuntimeError(f"worker lost replication {unit.replication}")
            yield fn(unit)


def test_a_failed_unit_leaves_no_result_and_resume_matches_an_uninterrupted_run(
    tmp_path: Path,
) -> None:
    whole = tmp_path / "whole"
    replicate(SUITE, FLAGS, None, 3, whole, executor=InlineExecutor())
    out = tmp_path / "resumed"
    flaky = FailingOnce(fail=1)
    with pytest.raises(RuntimeError, match="replication 1"):
        replicate(SUITE, FLAGS, None, 3, out, executor=flaky)
    assert not out.exists()  # nothing that looks complete
    with pytest.raises(ReplicationError, match="--resume"):
        replicate(SUITE, FLAGS, None, 3, out, executor=InlineExecutor())
    result = replicate(SUITE, FLAGS, None, 3, out, executor=flaky, resume=True)
    assert result["manifest"]["resumed"] == 1  # replication 0 was reused
    for name in TABLES:
        assert (whole / name).read_bytes() == (out / name).read_bytes(), name


def test_out_can_be_an_fsspec_url_with_the_same_bytes(evalx: RunEvalx, tmp_path: Path) -> None:
    args = ["run", SUITE, "--set", FLAGS[0], "-q", "--no-report"]
    local = evalx(*args, "--out", tmp_path / "local")
    remote = evalx(*args, "--out", f"local://{tmp_path / 'remote'}")
    assert local.returncode == 0 and remote.returncode == 0, remote.stderr
    for name in ("requests.parquet", "spans.parquet", "summary.parquet"):
        assert (tmp_path / "local" / name).read_bytes() == (tmp_path / "remote" / name).read_bytes()
    again = evalx(*args, "--out", f"local://{tmp_path / 'remote'}")
    assert again.returncode == 2 and "not empty" in again.stderr


def test_sweep_confirmations_on_dask_equal_inline(evalx: RunEvalx, tmp_path: Path) -> None:
    grid = tmp_path / "grid.yaml"
    grid.write_text("stack.escalation.confidence_threshold: [0.5, 0.6, 0.7]\n", encoding="utf-8")
    for kind in ("inline", "dask"):
        proc = evalx("sweep", SUITE, "--set", FLAGS[0], "--grid", grid, "--confirm", "2",
                     "--executor", kind, "--workers", "2", "--out", tmp_path / kind)  # fmt: skip
        assert proc.returncode in (0, 1), proc.stderr
    a = (tmp_path / "inline" / "sweep.parquet").read_bytes()
    assert a == (tmp_path / "dask" / "sweep.parquet").read_bytes()


def test_unpaired_compare_of_replicated_runs_uses_welch(evalx: RunEvalx, tmp_path: Path) -> None:
    """Replications on both sides: the unpaired comparison tests per-replication values."""
    small = ["--set", "traffic.requests=400", "--replications", "3"]
    for name, seed in (("a", 1), ("b", 2)):
        proc = evalx("run", SUITE, *small, "--set", f"seed={seed}", "--out", tmp_path / name)
        assert proc.returncode == 0, proc.stderr
    report = tmp_path / "cmp.json"
    proc = evalx("compare", tmp_path / "a", tmp_path / "b", "--unpaired", "--json", report)
    assert proc.returncode in (0, 1), proc.stderr
    results = json.loads(report.read_text(encoding="utf-8"))["results"]
    tested = [r for r in results if r["verdict"] != "insufficient data"]
    assert tested and {r["test"] for r in tested} == {"welch-replications"}
    assert all(r["block"] == 3 for r in tested)
    assert "one run per side" not in proc.stdout
