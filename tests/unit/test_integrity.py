"""Run-directory integrity (harness.integrity), stale partial directories
(harness.storage) and the memory estimate (harness.memory), without the CLI."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from harness import memory, storage
from harness.dataset import DUCKDB_QUERY, DatasetError, load_runs
from harness.integrity import (
    IntegrityError,
    file_digest,
    read_manifest,
    read_table,
    verify,
)
from harness.run import simulate, write
from harness.spec import load_suite
from harness.storage import MANIFEST, REQUESTS, SESSIONS, SPANS, SUMMARY

ROOT = Path(__file__).resolve().parents[2]
SUITE = ROOT / "scenarios" / "support.yaml"
TABLES = (REQUESTS, SPANS, SUMMARY, SESSIONS)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    loaded = load_suite(SUITE, ["traffic.requests=400"])
    out = tmp_path_factory.mktemp("runs") / "suite=support" / "run=r1"
    write(out, loaded, simulate(loaded.suite), "r1", ["test"])
    return out


@pytest.fixture
def copy(run_dir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(run_dir, tmp_path / "suite=support" / "run=r1"))


def rewrite(run: Path, name: str, table: pa.Table) -> None:
    """Replace a table and record its new hash: a tool that keeps the manifest honest."""
    pq.write_table(table, run / name)
    manifest = json.loads((run / MANIFEST).read_text(encoding="utf-8"))
    manifest["integrity"]["files"][name] = file_digest(run / name)
    (run / MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")


def edit_manifest(run: Path, change: Callable[[dict[str, object]], None]) -> None:
    manifest = json.loads((run / MANIFEST).read_text(encoding="utf-8"))
    change(manifest)
    (run / MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")


# ---------------------------------------------------------------------------- writing


def test_manifest_hashes_every_file_written(run_dir: Path) -> None:
    manifest = read_manifest(run_dir)
    files = manifest["integrity"]["files"]
    assert manifest["integrity"]["algorithm"] == "sha256"
    assert sorted(files) == sorted(TABLES)
    for name, entry in files.items():
        assert entry == file_digest(run_dir / name)
    verify(run_dir, manifest, TABLES)
    assert not [p for p in run_dir.iterdir() if p.name.endswith(".partial")]


def test_extra_files_are_hashed_and_records_stay_deterministic(tmp_path: Path) -> None:
    table = pa.table({"x": [1, 2, 3]})
    for name in ("a", "b"):
        storage.write_run(tmp_path / name, {"t.parquet": table}, {"k": 1}, {"r.md": "# hi\n"})
    a, b = (read_manifest(tmp_path / n)["integrity"] for n in ("a", "b"))
    assert a == b
    assert set(a["files"]) == {"t.parquet", "r.md"}


def test_a_remote_run_records_the_same_hashes(tmp_path: Path) -> None:
    import fsspec

    tables = {"t.parquet": pa.table({"x": [1, 2, 3]})}
    storage.write_run(tmp_path / "local", tables, {}, {"r.md": "# hi\n"})
    storage.write_run("memory://integrity/remote", tables, {}, {"r.md": "# hi\n"})
    remote = json.loads(fsspec.filesystem("memory").cat("/integrity/remote/manifest.json"))
    assert remote["integrity"] == read_manifest(tmp_path / "local")["integrity"]


# ---------------------------------------------------------------------------- hashes


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4, 5])
def test_random_bytes_anywhere_in_requests_are_refused(copy: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    path = copy / REQUESTS
    body = bytearray(path.read_bytes())
    width = 512 if seed < 2 else int(rng.integers(1, 64))
    start = len(body) // 2 - width // 2 if seed < 2 else int(rng.integers(0, len(body) - width))
    body[start : start + width] = rng.bytes(width)
    path.write_bytes(bytes(body))
    with pytest.raises(IntegrityError, match=r"requests\.parquet: sha256 differs"):
        read_table(copy, REQUESTS, read_manifest(copy))


def test_truncated_missing_and_unlisted_files(copy: Path) -> None:
    manifest = read_manifest(copy)
    (copy / SPANS).write_bytes((copy / SPANS).read_bytes()[:100])
    with pytest.raises(IntegrityError) as err:
        verify(copy, manifest, [SPANS])
    assert str(err.value) == (
        f"{copy / SPANS}: 100 bytes, but the manifest records "
        f"{manifest['integrity']['files'][SPANS]['bytes']:,} (truncated or changed after the "
        "run was written); restore the file from a copy or re-run the suite with this evalx "
        "to write the run again"
    )
    (copy / SPANS).unlink()
    with pytest.raises(IntegrityError, match=r"spans\.parquet: missing, but the manifest lists"):
        verify(copy, manifest, [SPANS])
    with pytest.raises(IntegrityError, match=r"other\.parquet: not among the files"):
        verify(copy, manifest, ["other.parquet"])


def test_a_run_without_hashes_is_refused(copy: Path) -> None:
    edit_manifest(copy, lambda m: m.pop("integrity"))
    with pytest.raises(IntegrityError, match="records no file hashes") as err:
        read_table(copy, REQUESTS, read_manifest(copy))
    assert str(err.value).endswith("re-run the suite with this evalx to write the run again")


# ---------------------------------------------------------------------------- the manifest


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "cannot read the manifest (the file is empty)"),
        (b'{"schema_version": 1, "suite": "sup', "cannot read the manifest (Unterminated string"),
        (b"\x89PNG\r\n\x1a\n\x00\xff", "cannot read the manifest (binary, not UTF-8 JSON)"),
        (b"[1, 2]", "not an evalx run manifest (JSON a list, expected an object)"),
        (b"[" * 100_000, "cannot read the manifest (nested too deep)"),
        (b'{"thresholds": "p95<1"}', "thresholds: input should be a valid list"),
        (b'{"thresholds": [{"key": "x", "expression": "y"}]}', "thresholds.0.passed: field"),
        (b'{"thresholds": [{"key": "x", "expression": "y", "passed": "yes"}]}',
         "thresholds.0.passed: input should be a valid boolean"),
        (b'{"policy": "strict"}', "policy: input should be a valid dictionary"),
        (b'{"requests": -5}', "requests: input should be greater than or equal to 0"),
        (b'{"integrity": {"algorithm": "md5", "files": {}}}', "integrity.algorithm"),
    ],
)  # fmt: skip
def test_damaged_manifests_are_refused(tmp_path: Path, body: bytes, message: str) -> None:
    (tmp_path / MANIFEST).write_bytes(body)
    with pytest.raises(IntegrityError) as err:
        read_manifest(tmp_path)
    assert str(err.value).startswith(f"{tmp_path / MANIFEST}: {message}")


def test_a_manifest_that_is_not_a_regular_file(tmp_path: Path) -> None:
    (tmp_path / MANIFEST).mkdir()
    with pytest.raises(IntegrityError, match=r"manifest\.json: is a directory, not a run"):
        read_manifest(tmp_path)
    (tmp_path / MANIFEST).rmdir()
    os.mkfifo(tmp_path / MANIFEST)  # opening it would block
    with pytest.raises(IntegrityError, match=r"json: is a named pipe \(FIFO\), not a run"):
        read_manifest(tmp_path)


# ---------------------------------------------------------------------------- types and ranges


def test_success_stored_as_text_is_refused(copy: Path) -> None:
    table = pq.read_table(copy / REQUESTS)
    i = table.schema.get_field_index("success")
    text = pa.array(["True" if v else "False" for v in table["success"].to_pylist()])
    rewrite(copy, REQUESTS, table.set_column(i, "success", text))
    with pytest.raises(IntegrityError) as err:
        read_table(copy, REQUESTS, read_manifest(copy))
    assert str(err.value) == (
        f"{copy / REQUESTS}: column success is string, but schema version 1 stores bool; "
        "re-run the suite with this evalx to write the run again"
    )


@pytest.mark.parametrize(
    ("name", "column", "value", "problem"),
    [
        (REQUESTS, "cost_usd", -0.25, "is negative at row 7"),
        (REQUESTS, "cost_usd", float("inf"), "is infinite at row 7"),
        (REQUESTS, "latency_ms", float("nan"), "is NaN at row 7"),
        (REQUESTS, "confidence", 1.5, "is outside [0, 1] at row 7"),
        (REQUESTS, "input_tokens", -3, "is negative at row 7"),
        (SPANS, "duration_ms", -1.0, "is negative at row 7"),
        (SUMMARY, "success_rate", 1.01, "is outside [0, 1] at row 1"),
        (SUMMARY, "p95_latency_ms", float("-inf"), "is infinite at row 1"),
    ],
)
def test_out_of_range_values_are_refused(
    copy: Path, name: str, column: str, value: float, problem: str
) -> None:
    table = pq.read_table(copy / name)
    row = 1 if name == SUMMARY else 7
    values = table[column].to_pylist()
    values[row] = value
    i = table.schema.get_field_index(column)
    rewrite(
        copy, name, table.set_column(i, table.field(column), pa.array(values, table[column].type))
    )
    with pytest.raises(IntegrityError) as err:
        read_table(copy, name, read_manifest(copy))
    assert str(err.value).startswith(f"{copy / name}: column {column} {problem} (a damaged file")


def test_values_that_may_be_missing_pass(copy: Path) -> None:
    requests = read_table(copy, REQUESTS, read_manifest(copy))
    assert requests["ttft_ms"].null_count > 0 or np.isnan(requests["confidence"]).any()
    summary = read_table(copy, SUMMARY, read_manifest(copy))
    assert summary.num_rows > 1


def test_missing_columns_are_named(copy: Path) -> None:
    with pytest.raises(IntegrityError, match="lacks columns nope, nada"):
        read_table(copy, REQUESTS, read_manifest(copy), columns=["request_id", "nope", "nada"])


# ---------------------------------------------------------------------------- load_runs


def test_load_runs_refuses_a_damaged_run(copy: Path) -> None:
    root = copy.parents[1]
    assert len(load_runs(root, spans=False).requests) == 400
    body = bytearray((copy / SUMMARY).read_bytes())
    body[len(body) // 2] ^= 0xFF
    (copy / SUMMARY).write_bytes(bytes(body))
    with pytest.raises(DatasetError, match=r"summary\.parquet: sha256 differs"):
        load_runs(root, spans=False)


# ---------------------------------------------------------------------------- stale partials


def _kill_mid_write(out: Path) -> None:
    """Start write_run in a child that SIGKILLs itself after its first table."""
    script = f"""
import os, signal
import pyarrow as pa
from harness import storage
real = storage.write_table
def dying(table, path):
    real(table, path)
    os.kill(os.getpid(), signal.SIGKILL)
storage.write_table = dying
t = pa.table({{"request_id": pa.array([1], pa.int64())}})
storage.write_run({str(out)!r}, {{"requests.parquet": t, "spans.parquet": t}}, {{}})
"""
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, check=False)
    assert proc.returncode == -signal.SIGKILL


def test_a_killed_write_leaves_nothing_readers_see(copy: Path) -> None:
    root = copy.parents[1]
    out = root / "suite=support" / "run=killed"
    _kill_mid_write(out)
    (leftover,) = [p for p in out.parent.iterdir() if p.name.endswith(".partial")]
    assert re.fullmatch(r"\.run-killed\.[0-9]+-[a-z0-9_]{8}\.partial", leftover.name)
    assert [p.name for p in leftover.iterdir()] == ["requests.parquet.partial"]
    assert not out.exists()
    # the README's query and DUCKDB_QUERY read past it; load_runs skips it
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    glob = "read_parquet('runs/suite=*/run=*/requests.parquet'"
    (query,) = [b for b in readme.split("```sql\n")
                if "GROUP BY ALL ORDER BY ALL" in b and glob in b and "count(*)" in b]  # fmt: skip
    query = query.split("```")[0].replace("'runs/", f"'{root}/")
    assert duckdb.sql(query).df()["requests"].tolist() == [400]
    assert duckdb.sql(DUCKDB_QUERY.format(root=root)).df()["run"].tolist() == ["r1"]
    assert load_runs(root, spans=False).manifests["run"].tolist() == ["r1"]


def test_the_next_write_removes_stale_partials(copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    parent = copy.parent
    _kill_mid_write(parent / "run=killed")
    dead = next(p for p in parent.iterdir() if p.name.endswith(".partial"))
    old_style = parent / ".run-old.abcd1234.partial"  # before the pid was in the name
    old_style.mkdir()
    alive = parent / f".run-busy.{os.getppid()}-abcd1234.partial"  # a live writer's
    alive.mkdir()
    fresh = parent / ".run-new.zz99yy88.partial"  # touched after this process started
    fresh.mkdir()
    mine = parent / ".notes.partial"  # not evalx's pattern
    mine.mkdir()
    later = time.time() + 1
    os.utime(fresh, (later + 5, later + 5))
    monkeypatch.setattr(storage, "_STARTED", later)
    storage.write_run(parent / "run=next", {"t.parquet": pa.table({"x": [1]})}, {})
    left = {p.name for p in parent.iterdir() if p.name.endswith(".partial")}
    assert left == {alive.name, fresh.name, mine.name}
    assert not dead.exists() and not old_style.exists()


# ---------------------------------------------------------------------------- output files


def test_check_file_out(tmp_path: Path) -> None:
    storage.check_file_out(tmp_path / "new" / "deeper" / "j.xml", "--junit")  # created later
    (tmp_path / "exists.xml").write_text("x")
    storage.check_file_out(tmp_path / "exists.xml", "--junit")
    with pytest.raises(storage.OutputError) as err:
        storage.check_file_out(tmp_path, "--junit")
    assert str(err.value) == f"--junit {tmp_path}: is a directory; name a file"
    with pytest.raises(storage.OutputError, match=r"exists\.xml is a file, not a folder"):
        storage.check_file_out(tmp_path / "exists.xml" / "j.xml", "--json")
    with pytest.raises(storage.OutputError, match=r"folder .*missing does not exist"):
        storage.check_file_out(tmp_path / "missing" / "s.md", "$GITHUB_STEP_SUMMARY", append=True)


# ---------------------------------------------------------------------------- memory


def test_memory_estimate_and_refusal(monkeypatch: pytest.MonkeyPatch) -> None:
    assert memory.estimate(1_000_000) == pytest.approx(1.8 * memory.GIB, rel=1e-3)
    assert memory.estimate(1000, processes=3) == 3 * 1000 * memory.BYTES_PER_REQUEST + (
        2 * memory.BASE_BYTES
    )
    monkeypatch.setattr(memory, "available", lambda: memory.Available(4 * memory.GIB, "test"))
    memory.check(2_000_000)
    with pytest.raises(memory.MemoryLimitError) as err:
        memory.check(3_000_000)
    assert str(err.value) == (
        "traffic.requests=3,000,000: the run needs about 5.4 GiB of memory (1.8 GiB per "
        "million requests) but only 4.0 GiB is available (test); lower traffic.requests "
        "(about 2,200,000 fit), or run smaller worlds (--replications R --set "
        "traffic.requests=N/R, on --executor dask to use other machines); "
        "EVALX_MEMORY_CHECK=0 skips this check"
    )
    with pytest.raises(memory.MemoryLimitError, match="in each of 2 processes"):
        memory.check(1_500_000, processes=2)
    monkeypatch.setenv("EVALX_MEMORY_CHECK", "0")
    memory.check(10**9)


def test_available_memory_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    have = memory.available()
    assert have is not None and have.bytes > 0
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    monkeypatch.setattr(resource, "getrlimit", lambda _: (3 * memory.GIB, hard))
    limited = memory.available()
    assert limited is not None
    assert limited.bytes <= 3 * memory.GIB - memory.ADDRESS_SPACE_BASE
    assert limited.source == "headroom under RLIMIT_AS of 3.0 GiB"
