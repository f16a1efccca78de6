"""Damaged runs, unwritable outputs and oversized requests through the real `evalx`:
each refused with exit 2 and one line naming the file (or key) and a fix, never PASS."""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from harness.integrity import file_digest

RunEvalx = Callable[..., subprocess.CompletedProcess[str]]
N = "traffic.requests=600"
RERUN = "re-run the suite with this evalx to write the run again"
RESTORE = "restore the file from a copy or " + RERUN


@pytest.fixture(scope="module")
def runs(evalx: RunEvalx, support_suite: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A baseline with its report and an identical candidate without one."""
    root = tmp_path_factory.mktemp("integrity")
    for name, extra in {"base": [], "cand": ["--no-report"]}.items():
        proc = evalx("run", support_suite, "--set", N, "--out", root / name, "-q", *extra)
        assert proc.returncode in (0, 1), proc.stderr
    return root


@pytest.fixture
def cand(runs: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(runs / "cand", tmp_path / "cand"))


@pytest.fixture
def base(runs: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(runs / "base", tmp_path / "base"))


def refused(proc: subprocess.CompletedProcess[str], message: str) -> None:
    """Exit 2, the one-line message, no traceback, no verdict."""
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr == f"error: {message}\n"
    assert "PASS" not in proc.stdout and "Traceback" not in proc.stderr


def edit_manifest(run: Path, change: Callable[[dict[str, object]], object]) -> None:
    manifest = json.loads((run / "manifest.json").read_text(encoding="utf-8"))
    change(manifest)
    (run / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")


def test_identical_runs_still_pass(evalx: RunEvalx, runs: Path) -> None:
    proc = evalx("compare", runs / "base", runs / "cand")
    assert proc.returncode == 0 and "PASS" in proc.stdout, proc.stderr


CORRUPTIONS = [(seed, where, width) for seed in (0, 1, 2) for where, width in
               (("middle", 512), ("start", 64), ("end", 200), ("random", 16))]  # fmt: skip


@pytest.mark.parametrize(("seed", "where", "width"), CORRUPTIONS)
def test_random_bytes_in_requests_are_always_refused(
    evalx: RunEvalx, base: Path, cand: Path, seed: int, where: str, width: int
) -> None:
    rng = np.random.default_rng(seed)
    path = base / "requests.parquet"  # the run with figures: report re-reads no requests
    body = bytearray(path.read_bytes())
    start = {"middle": len(body) // 2 - width // 2, "start": 4, "end": len(body) - width - 8,
             "random": int(rng.integers(0, len(body) - width))}[where]  # fmt: skip
    body[start : start + width] = rng.bytes(width)
    path.write_bytes(bytes(body))
    message = f"{path}: sha256 differs from the manifest's (damaged or changed after the run "
    message += f"was written); {RESTORE}"
    refused(evalx("compare", base, cand), message)
    refused(evalx("report", base), message)


def test_report_refuses_damaged_manifests(evalx: RunEvalx, base: Path) -> None:
    manifest = base / "manifest.json"
    text = manifest.read_text(encoding="utf-8")
    cases = {
        text[: len(text) // 2].encode(): "cannot read the manifest (Unterminated string",
        b"": "cannot read the manifest (the file is empty)",
        os.urandom(64) + b"\xff": "cannot read the manifest (binary, not UTF-8 JSON)",
        json.dumps([json.loads(text)]).encode(): "not an evalx run manifest (JSON a list",
    }
    for body, message in cases.items():
        manifest.write_bytes(body)
        proc = evalx("report", base)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.startswith(f"error: {manifest}: {message}")
        assert proc.stderr.endswith(f"; {RERUN}\n") and "Traceback" not in proc.stderr


def test_report_refuses_a_corrupt_summary(evalx: RunEvalx, cand: Path) -> None:
    path = cand / "summary.parquet"
    path.write_bytes(path.read_bytes()[:-100])
    size = file_digest(path)["bytes"]
    recorded = size + 100
    refused(evalx("report", cand), f"{path}: {size:,} bytes, but the manifest records "
            f"{recorded:,} (truncated or changed after the run was written); "
            f"{RESTORE}")  # fmt: skip


def test_report_and_compare_refuse_runs_without_hashes(
    evalx: RunEvalx, base: Path, cand: Path
) -> None:
    edit_manifest(cand, lambda m: m.pop("integrity"))
    message = (f"{cand / 'manifest.json'}: records no file hashes, so the run cannot be "
               f"verified (written by an older evalx, or by another tool); {RERUN}")  # fmt: skip
    refused(evalx("compare", base, cand), message)
    refused(evalx("report", cand), message)
    refused(evalx("export-traces", cand), message)


@pytest.mark.parametrize(
    ("thresholds", "message"),
    [
        ("p(95)<4000", "thresholds: input should be a valid list (got \"p(95)<4000\")"),
        ([{"key": "latency_ms"}], "thresholds.0.expression: field required (got {\"key\": "),
        ([{"key": "k", "expression": "e", "passed": "no"}],
         "thresholds.0.passed: input should be a valid boolean (got \"no\")"),
    ],
)  # fmt: skip
def test_compare_refuses_malformed_thresholds(
    evalx: RunEvalx, base: Path, cand: Path, thresholds: object, message: str
) -> None:
    edit_manifest(cand, lambda m: m.update(thresholds=thresholds))
    proc = evalx("compare", base, cand)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.startswith(f"error: {cand / 'manifest.json'}: {message}")
    assert proc.stderr.endswith(f"; damaged; {RERUN}\n") and "PASS" not in proc.stdout


def test_compare_refuses_success_stored_as_text(evalx: RunEvalx, base: Path, cand: Path) -> None:
    path = cand / "requests.parquet"
    table = pq.read_table(path)
    text = pa.array([str(v).lower() for v in table["success"].to_pylist()])
    pq.write_table(table.set_column(table.schema.get_field_index("success"), "success", text), path)
    edit_manifest(cand, lambda m: m["integrity"]["files"].update({path.name: file_digest(path)}))
    refused(evalx("compare", base, cand),
            f"{path}: column success is string, but schema version 1 stores bool; "
            f"{RERUN}")  # fmt: skip


def test_compare_refuses_a_negative_cost_even_with_a_matching_hash(
    evalx: RunEvalx, base: Path, cand: Path
) -> None:
    path = cand / "requests.parquet"
    table = pq.read_table(path)
    cost = table["cost_usd"].to_numpy().copy()
    cost[42] = -4.9e303
    i = table.schema.get_field_index("cost_usd")
    pq.write_table(table.set_column(i, table.field(i), pa.array(cost)), path)
    edit_manifest(cand, lambda m: m["integrity"]["files"].update({path.name: file_digest(path)}))
    refused(evalx("compare", base, cand), f"{path}: column cost_usd is negative at row 42 "
            f"(a damaged file, or not written by evalx); {RESTORE}")  # fmt: skip


def test_export_traces_on_zero_requests(evalx: RunEvalx, runs: Path, tmp_path: Path) -> None:
    from harness.storage import write_run

    src = runs / "cand"
    manifest = json.loads((src / "manifest.json").read_text(encoding="utf-8"))
    manifest.update(requests=0, spans=0)
    names = ("requests.parquet", "spans.parquet", "summary.parquet", "sessions.parquet")
    tables = {n: pq.read_table(src / n).slice(0, 0) for n in names}
    write_run(tmp_path / "zero", tables, manifest)
    proc = evalx("export-traces", tmp_path / "zero")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "note: the run has no requests; the trace file holds no spans\n"
    doc = json.loads((tmp_path / "zero" / "traces.otlp.json").read_text(encoding="utf-8"))
    assert doc["resourceSpans"][0]["scopeSpans"][0]["spans"] == []


def test_unwritable_outputs_are_refused_before_any_work(
    evalx: RunEvalx, runs: Path, tmp_path: Path
) -> None:
    a, b = runs / "base", runs / "cand"
    blocker = tmp_path / "file"
    blocker.write_text("x", encoding="utf-8")
    for option in ("--junit", "--json", "--markdown"):
        refused(evalx("compare", a, b, option, tmp_path),
                f"{option} {tmp_path}: is a directory; name a file")  # fmt: skip
        refused(evalx("compare", a, b, option, blocker / "out"),
                f"{option} {blocker / 'out'}: {blocker} is a file, not a folder; "
                "choose another path")  # fmt: skip
    summary = {"GITHUB_STEP_SUMMARY": str(tmp_path)}
    refused(evalx("compare", a, b, env=summary),
            f"$GITHUB_STEP_SUMMARY {tmp_path}: is a directory; name a file")  # fmt: skip
    summary = {"GITHUB_STEP_SUMMARY": str(tmp_path / "gone" / "summary.md")}
    refused(evalx("compare", a, b, env=summary),
            f"$GITHUB_STEP_SUMMARY {tmp_path / 'gone' / 'summary.md'}: folder "
            f"{tmp_path / 'gone'} does not exist; create it first")  # fmt: skip
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]  # nothing half-written


def test_bootstrap_is_bounded(evalx: RunEvalx, runs: Path, tmp_path: Path) -> None:
    gates = tmp_path / "gates.yaml"
    gates.write_text("alpha: 0.05\nbootstrap: 1000000000000\n", encoding="utf-8")
    refused(evalx("compare", runs / "base", runs / "cand", "--gates", gates),
            f"{gates}:2: bootstrap: must be <= 100000")  # fmt: skip


def test_a_run_too_large_for_memory_is_refused(
    evalx: RunEvalx, support_suite: Path, tmp_path: Path
) -> None:
    start = time.perf_counter()
    proc = evalx("run", support_suite, "--set", "traffic.requests=1000000000",
                 "--out", tmp_path / "big", "-q")  # fmt: skip
    assert time.perf_counter() - start < 30
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith(
        "error: traffic.requests=1,000,000,000: the run needs about 1,800.2 GiB of memory "
        "(1.8 GiB per million requests) but only "
    )
    assert "is available (" in proc.stderr and "lower traffic.requests (about " in proc.stderr
    assert "--replications R --set traffic.requests=N/R, on --executor dask" in proc.stderr
    assert not (tmp_path / "big").exists()


def _limited(evalx_exe: Path, *args: str | Path, limit: int) -> subprocess.CompletedProcess[str]:
    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    return subprocess.run([str(evalx_exe), *map(str, args)], capture_output=True, text=True,
                          timeout=120, preexec_fn=cap, check=False)  # fmt: skip


def test_an_address_space_limit_is_respected(
    evalx_exe: Path, support_suite: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    proc = _limited(evalx_exe, "run", support_suite, "--set", "traffic.requests=1000000",
                    "--out", out, "-q", limit=1_500_000_000)  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith(
        "error: traffic.requests=1,000,000: the run needs about 1.8 GiB of memory (1.8 GiB "
        "per million requests) but only "
    )
    assert "(headroom under RLIMIT_AS of 1.4 GiB)" in proc.stderr
    assert not out.exists()


def test_resume_refuses_a_damaged_part(
    evalx: RunEvalx, support_suite: Path, tmp_path: Path
) -> None:
    from harness.replicate import Unit, replication_seed, run_unit

    flags = ("traffic.requests=300",)
    parts = tmp_path / ".reps.parts"  # what an interrupted `--out reps` leaves for --resume
    for r in range(2):
        run_unit(Unit(str(support_suite), flags, None, r, replication_seed(42, r), str(parts)))
    part = parts / "replication=0001"
    path = part / "spans.parquet"
    body = bytearray(path.read_bytes())
    body[len(body) // 2 : len(body) // 2 + 512] = bytes(512)
    path.write_bytes(bytes(body))
    args = ("run", support_suite, "--set", flags[0], "--replications", "2", "--out",
            tmp_path / "reps", "-q", "--resume")  # fmt: skip
    refused(evalx(*args), f"{path}: sha256 differs from the manifest's (damaged or changed "
            f"after the run was written); remove {part} and rerun with --resume to run it "
            "again")  # fmt: skip
    shutil.rmtree(part)
    proc = evalx(*args)
    assert proc.returncode == 0, proc.stderr
    assert not parts.exists() and (tmp_path / "reps" / "replications.parquet").exists()


def test_a_run_removes_stale_partials_of_killed_runs(
    evalx: RunEvalx, support_suite: Path, tmp_path: Path
) -> None:
    parent = tmp_path / "suite=support"
    stale = parent / ".run-old.4194304-abcd1234.partial"  # pid beyond pid_max: not running
    stale.mkdir(parents=True)
    (stale / "requests.parquet.partial").write_bytes(b"half")
    os.utime(stale / "requests.parquet.partial", (1, 1))
    os.utime(stale, (1, 1))
    proc = evalx("run", support_suite, "--set", "traffic.requests=200", "--out",
                 parent / "run=new", "-q", "--no-report")  # fmt: skip
    assert proc.returncode in (0, 1), proc.stderr
    assert sorted(p.name for p in parent.iterdir()) == ["run=new"]
