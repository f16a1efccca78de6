"""The real `evalx` command on real files: outputs, the manifest, and bad input."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import harness
from harness.records import REQUEST_COLUMNS, SCHEMA_VERSION, SPAN_COLUMNS

RunEvalx = Callable[..., subprocess.CompletedProcess[str]]

REQUESTS = 1500
ISSUE_REQUEST_COLUMNS = [
    "request_id",
    "arrival_s",
    "task_class",
    "route",
    "served_by",
    "tiers_tried",
    "outcome",
    "success",
    "latency_ms",
    "cost_usd",
    "input_tokens",
    "output_tokens",
    "escalated",
    "retries",
    "fallbacks",
    "handoff",
    "violations",
    "phase",
]
ISSUE_SUMMARY_COLUMNS = [
    "route",
    "requests",
    "success_rate",
    "p50_latency_ms",
    "p95_latency_ms",
    "p99_latency_ms",
    "cost_per_request_usd",
    "escalation_rate",
    "violations",
]
FILES = {"requests.parquet", "spans.parquet", "summary.parquet", "sessions.parquet",
         "manifest.json", "report.md", "latency_cdf.png", "timeline.png", "cost.png",
         "paths.png"}  # fmt: skip


@pytest.fixture(scope="module")
def run_dir(
    evalx: RunEvalx, support_suite: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, subprocess.CompletedProcess[str]]:
    out = tmp_path_factory.mktemp("cli") / "run"
    proc = evalx("run", support_suite, "--set", f"traffic.requests={REQUESTS}", "--out", out)
    return out, proc


@pytest.fixture
def typo_suite(
    support_suite: Path, tmp_path: Path, copy_suite: Callable[[str, Path], Path]
) -> tuple[Path, int]:
    """support.yaml with `stack: {retries_budget: ...}`; returns (path, line of the typo)."""
    lines = support_suite.read_text(encoding="utf-8").splitlines()
    at = lines.index("stack:") + 1
    lines.insert(at, "  retries_budget: {ratio: 0.1}")
    path = copy_suite("support.yaml", tmp_path).with_name("typo.yaml")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path, at + 1


def one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    """Bad input: exit 2, and stderr is exactly one `error: ...` line with no traceback."""
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def no_partial_dirs(where: Path) -> None:
    assert not list(where.rglob("*.partial")), sorted(where.rglob("*"))


# --------------------------------------------------------------------------- a good run


def test_run_exits_0_and_prints_the_route_table(
    run_dir: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    out, proc = run_dir
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "Per route" in proc.stdout
    header = next(line for line in proc.stdout.splitlines() if "route" in line and "p95" in line)
    for column in ("requests", "success", "p50", "p95", "p99", "cost/req"):
        assert column in header
    summary = pq.read_table(out / "summary.parquet").to_pandas()
    for route in summary["route"]:
        assert re.search(rf"\b{re.escape(route)}\b", proc.stdout), route
    assert f"{REQUESTS:,}" in proc.stdout
    assert f"run directory: {out}" in proc.stdout


def test_run_directory_holds_exactly_the_run_files(
    run_dir: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    out, _ = run_dir
    assert {p.name for p in out.iterdir()} == FILES
    assert {p.name for p in out.parent.iterdir()} == {"run"}  # no temporary sibling left
    no_partial_dirs(out.parent)


def test_requests_parquet(run_dir: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    out, _ = run_dir
    table = pq.read_table(out / "requests.parquet")
    assert table.num_rows == REQUESTS
    assert table.column_names == [c.name for c in REQUEST_COLUMNS]
    assert set(ISSUE_REQUEST_COLUMNS) <= set(table.column_names)
    df = table.to_pandas()
    assert df["request_id"].tolist() == list(range(REQUESTS))
    assert df["arrival_s"].is_monotonic_increasing
    assert set(df["task_class"]) == {"routine", "moderate", "hard"}
    assert set(df["outcome"]) <= {
        "success",
        "wrong",
        "timeout",
        "error",
        "blocked",
        "handoff",
        "budget_exhausted",
    }
    # success is judged by ground truth: a right answer, a refusal of a prohibited request,
    # or a handoff the human got right
    assert (df.loc[df["outcome"] == "success", "success"]).all()
    assert not df.loc[df["outcome"].isin(["wrong", "timeout", "error"]), "success"].any()
    blocked = df[df["outcome"] == "blocked"]
    assert (blocked["success"] == blocked["prohibited_action"]).all()
    assert (df["latency_ms"] >= 0).all() and (df["cost_usd"] >= 0).all()
    assert (df["handoff"] == (df["served_by"] == "human")).all()
    phase_parts = {part for phase in df["phase"] for part in phase.split("+")}
    assert "baseline" in phase_parts
    assert phase_parts <= {"baseline", "spike", "premium-outage", "crm-slow", "stale-index"}


def test_summary_parquet(run_dir: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    out, _ = run_dir
    summary = pq.read_table(out / "summary.parquet").to_pandas()
    requests = pq.read_table(out / "requests.parquet").to_pandas()
    assert set(ISSUE_SUMMARY_COLUMNS) <= set(summary.columns)
    routes = sorted(set(requests["route"]))
    assert summary["route"].tolist() == [*routes, "all"]
    counts = requests["route"].value_counts()
    for row in summary.itertuples():
        expected = REQUESTS if row.route == "all" else counts[row.route]
        assert row.requests == expected, row.route
    every = summary.iloc[-1]
    assert every["success_rate"] == pytest.approx(requests["success"].mean())
    assert every["violations"] == requests["violations"].sum()


def test_spans_reference_existing_requests(
    run_dir: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    out, _ = run_dir
    spans = pq.read_table(out / "spans.parquet")
    assert spans.column_names == [c.name for c in SPAN_COLUMNS]
    df = spans.to_pandas()
    assert len(df) > REQUESTS
    assert set(df["request_id"]) == set(range(REQUESTS))  # every request left a trace
    ordered = df[["request_id", "span_index"]].to_records(index=False).tolist()
    assert ordered == sorted(ordered)
    assert (
        df.groupby("request_id")["span_index"].nunique() == df.groupby("request_id").size()
    ).all()
    chat = df[df["kind"] == "chat"]
    assert set(chat["gen_ai.request.model"]) <= {"mini", "mid", "large"}


def test_manifest(run_dir: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    out, _ = run_dir
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["schema_version"] == SCHEMA_VERSION
    assert re.fullmatch(r"[0-9a-f]{64}", manifest["suite_hash"])
    assert manifest["seed"] == 42
    assert manifest["requests"] == REQUESTS
    assert set(manifest["files"]) == {"requests.parquet", "spans.parquet", "summary.parquet",
                                      "sessions.parquet", "manifest.json"}  # fmt: skip
    params = manifest["parameters"]
    assert params["traffic.requests"] == {"value": REQUESTS, "source": "--set"}
    assert params["seed"] == {"value": 42, "source": "suite"}
    assert params["traffic.rate_per_s"]["source"] == "suite"
    assert params["stack.retry.base_ms"] == {"value": 200.0, "source": "default"}
    assert params["stack.timeouts.model_call_ms"] == {"value": 12000.0, "source": "suite"}
    assert {p["source"] for p in params.values()} == {"default", "suite", "--set", "policy"}
    assert params["policies.enforce"] == {"value": True, "source": "policy"}
    assert params["policies.file"]["source"] == "suite"
    policy = manifest["policy"]
    assert (policy["name"], policy["version"]) == ("default", "1.0.0")
    assert re.fullmatch(r"[0-9a-f]{64}", policy["hash"])


def test_parquet_files_carry_the_schema_version(
    run_dir: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    out, _ = run_dir
    for name in ("requests.parquet", "spans.parquet", "summary.parquet", "sessions.parquet"):
        metadata = pq.read_schema(out / name).metadata
        assert metadata[b"evalx.schema_version"] == str(SCHEMA_VERSION).encode(), name


def test_run_directory_permissions_follow_the_umask(
    run_dir: tuple[Path, subprocess.CompletedProcess[str]], tmp_path: Path
) -> None:
    out, _ = run_dir
    plain = tmp_path / "plain"
    plain.mkdir()
    assert out.stat().st_mode & 0o777 == plain.stat().st_mode & 0o777


def test_default_output_directory(
    evalx: RunEvalx, tmp_path: Path, copy_suite: Callable[[str, Path], Path]
) -> None:
    copy_suite("support.yaml", tmp_path)
    proc = evalx(
        "run", "scenarios/support.yaml", "--set", "traffic.requests=200", "--quiet", cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    printed = proc.stdout.strip()
    assert re.fullmatch(r"runs/suite=support/run=\d{8}T\d{6}Z-[0-9a-f]{8}", printed), printed
    (run,) = (tmp_path / "runs" / "suite=support").iterdir()
    assert run == tmp_path / printed
    assert {p.name for p in run.iterdir()} == FILES
    manifest = json.loads((run / "manifest.json").read_text(encoding="utf-8"))
    assert f"run={manifest['run_id']}" == run.name
    assert run.name.endswith(manifest["suite_hash"][:8])


def test_help_and_version(evalx: RunEvalx) -> None:
    proc = evalx("--help")
    assert proc.returncode == 0
    assert "run" in proc.stdout and "validate" in proc.stdout
    run_help = evalx("run", "--help")
    assert run_help.returncode == 0
    assert "--set" in run_help.stdout and "--out" in run_help.stdout and "--seed" in run_help.stdout
    version = evalx("--version")
    assert version.returncode == 0
    first, engine = version.stdout.strip().splitlines()
    assert first == f"evalx {harness.__version__}"
    assert engine.startswith(("engine: compiled: ", "engine: pure: "))  # which path, and why


def test_validate_good_suite(evalx: RunEvalx, support_suite: Path) -> None:
    proc = evalx("validate", support_suite)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == (
        f"{support_suite}: ok (support: 8000 requests, 3 models, 4 tools, 3 faults; "
        "policy default 1.0.0)"
    )
    assert proc.stderr == ""


# --------------------------------------------------------------------------- bad input


def test_typo_key_is_one_line_naming_file_line_key_and_hint(
    evalx: RunEvalx, typo_suite: tuple[Path, int], tmp_path: Path
) -> None:
    path, line = typo_suite
    for proc in (
        evalx("run", path, "--out", tmp_path / "out"),
        evalx("validate", path),
    ):
        message = one_error_line(proc)
        assert f"{path}:{line}:" in message
        assert "stack.retries_budget" in message
        assert "did you mean retry_budget?" in message
        assert proc.stdout == ""
    assert not (tmp_path / "out").exists()
    no_partial_dirs(tmp_path)


def test_bad_set_value(evalx: RunEvalx, support_suite: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    message = one_error_line(
        evalx("run", support_suite, "--set", "traffic.requests=abc", "--out", out)
    )
    assert "--set" in message and "traffic.requests" in message and "'abc'" in message
    message = one_error_line(
        evalx("run", support_suite, "--set", "stack.retries_budget=3", "--out", out)
    )
    assert "stack.retries_budget" in message and "did you mean retry_budget?" in message
    assert not out.exists()
    no_partial_dirs(tmp_path)


def test_existing_non_empty_out_is_refused_and_left_untouched(
    evalx: RunEvalx, support_suite: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("precious\n", encoding="utf-8")
    message = one_error_line(
        evalx("run", support_suite, "--set", "traffic.requests=100", "--out", out)
    )
    assert str(out) in message and "not empty" in message
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert (out / "keep.txt").read_text(encoding="utf-8") == "precious\n"
    assert {p.name for p in tmp_path.iterdir()} == {"out"}


def test_existing_empty_out_is_used(evalx: RunEvalx, support_suite: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    proc = evalx("run", support_suite, "--set", "traffic.requests=100", "--out", out, "-q")
    assert proc.returncode == 0, proc.stderr
    assert {p.name for p in out.iterdir()} == FILES
    no_partial_dirs(tmp_path)


def test_missing_suite_file(evalx: RunEvalx, tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    for proc in (evalx("run", missing, "--out", tmp_path / "out"), evalx("validate", missing)):
        message = one_error_line(proc)
        assert str(missing) in message and "file not found" in message
    assert {p.name for p in tmp_path.iterdir()} == set()


@pytest.mark.parametrize(
    "args",
    [["run"], ["bogus"], ["run", "suite.yaml", "--bogus"], ["run", "suite.yaml", "--seed", "abc"]],
    ids=["missing-argument", "unknown-command", "unknown-option", "bad-seed"],
)
def test_usage_errors_exit_2_without_traceback(args: list[str], evalx: RunEvalx) -> None:
    proc = evalx(*args)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "Usage: evalx" in proc.stderr


def test_out_under_a_file_is_a_usage_error(
    evalx: RunEvalx, support_suite: Path, tmp_path: Path
) -> None:
    (tmp_path / "afile").write_text("", encoding="utf-8")
    proc = evalx(
        "run", support_suite, "--set", "traffic.requests=50", "--out", tmp_path / "afile" / "run"
    )
    assert "Traceback" not in proc.stderr
    assert proc.returncode == 2
    no_partial_dirs(tmp_path)


def test_failed_run_leaves_no_partial_directory(
    evalx: RunEvalx, support_suite: Path, tmp_path: Path
) -> None:
    """Whatever stops a run (here: a file where the run directory's parent should be)."""
    (tmp_path / "afile").write_text("", encoding="utf-8")
    evalx("run", support_suite, "--set", "traffic.requests=50", "--out", tmp_path / "afile" / "r")
    assert {p.name for p in tmp_path.iterdir()} == {"afile"}
    no_partial_dirs(tmp_path)
    assert os.path.getsize(tmp_path / "afile") == 0
