"""`evalx compare` end to end: real runs, real reports, exit codes, the CI summary."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

RunEvalx = Callable[..., subprocess.CompletedProcess[str]]
N = "traffic.requests=3000"


@pytest.fixture(scope="module")
def runs(evalx: RunEvalx, support_suite: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A baseline, an identical candidate, a worse candidate and another seed."""
    root = tmp_path_factory.mktemp("compare")
    for name, extra in {
        "base": [],
        "same": [],
        "worse": ["--set", "stack.escalation.confidence_threshold=0.0"],
        "seed": ["--seed", "5"],
    }.items():
        proc = evalx("run", support_suite, "--set", N, "--out", root / name, "-q", *extra)
        assert proc.returncode in (0, 1), proc.stderr  # thresholds may fail on the worse one
    return root


def test_identical_runs_pass_with_every_report(evalx: RunEvalx, runs: Path, tmp_path: Path) -> None:
    summary = tmp_path / "summary.md"
    summary.write_text("# earlier step\n", encoding="utf-8")
    proc = evalx(
        "compare", runs / "base", runs / "same", "--junit", tmp_path / "j.xml",
        "--markdown", tmp_path / "r.md", "--json", tmp_path / "r.json",
        env={"GITHUB_STEP_SUMMARY": str(summary)},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "PASS" in proc.stdout
    report = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))
    assert report["passed"] and report["paired"]
    assert {r["verdict"] for r in report["results"]} <= {"no change", "insufficient data"}
    suite = ET.parse(tmp_path / "j.xml").getroot()
    assert suite.tag == "testsuite" and suite.get("failures") == "0"
    assert int(suite.get("tests", "0")) == len(suite.findall("testcase")) > 10
    md = (tmp_path / "r.md").read_text(encoding="utf-8")
    assert md.startswith("## evalx compare: ✅ **pass**")
    assert summary.read_text(encoding="utf-8") == "# earlier step\n" + md  # appended, not replaced


def test_worse_candidate_fails_with_regressions_in_every_report(
    evalx: RunEvalx, runs: Path, tmp_path: Path
) -> None:
    proc = evalx(
        "compare", runs / "base", runs / "worse", "--junit", tmp_path / "j.xml",
        "--markdown", tmp_path / "r.md",
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    assert "regression" in proc.stdout and "FAIL" in proc.stdout
    failures = ET.parse(tmp_path / "j.xml").getroot().findall("testcase/failure")
    assert any(f.get("type") == "regression" for f in failures)
    assert "❌ **fail**" in (tmp_path / "r.md").read_text(encoding="utf-8")


def test_different_seeds_are_refused_unless_unpaired(evalx: RunEvalx, runs: Path) -> None:
    refused = evalx("compare", runs / "base", runs / "seed")
    assert refused.returncode == 2
    assert "--unpaired" in refused.stderr and "Traceback" not in refused.stderr
    unpaired = evalx("compare", runs / "base", runs / "seed", "--unpaired")
    assert unpaired.returncode in (0, 1), unpaired.stderr
    assert "unpaired" in unpaired.stdout


def test_bad_inputs_exit_2_with_one_line(evalx: RunEvalx, runs: Path, tmp_path: Path) -> None:
    missing = evalx("compare", runs / "base", tmp_path / "nope")
    assert missing.returncode == 2 and len(missing.stderr.strip().splitlines()) == 1
    gates = tmp_path / "gates.yaml"
    gates.write_text("tolerances:\n  p95_latncy_ms: +10%\n", encoding="utf-8")
    bad = evalx("compare", runs / "base", runs / "same", "--gates", gates)
    assert bad.returncode == 2
    assert bad.stderr.startswith(f"error: {gates}:2: tolerances.p95_latncy_ms: unknown metric")
    assert "p95_latency_ms" in bad.stderr


def test_different_schema_versions_are_refused(evalx: RunEvalx, runs: Path, tmp_path: Path) -> None:
    old = tmp_path / "old"
    shutil.copytree(runs / "same", old)
    manifest = json.loads((old / "manifest.json").read_text(encoding="utf-8"))
    manifest["schema_version"] = 0
    (old / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    proc = evalx("compare", old, runs / "base")
    assert proc.returncode == 2 and "schema" in proc.stderr
