"""`evalx run` with service objectives: a THRESHOLDS block, exit 1 on failure, 2 on bad input."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

RunEvalx = Callable[..., subprocess.CompletedProcess[str]]


def test_failed_threshold_exits_1_after_writing_the_run(
    evalx: RunEvalx, support_suite: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    proc = evalx(
        "run", support_suite, "--set", "traffic.requests=1000", "--out", out,
        "--set", 'thresholds={"latency_ms": ["p(95)<1", "p(50)<1e9"], "violations": ["count==0"]}',
        "--set", "traffic.edge_cases.evasive=0",
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    block = proc.stdout[proc.stdout.index("THRESHOLDS") :]
    assert "✗ 'p(95)<1' p(95)=" in block
    assert "✓ 'p(50)<1e9' p(50)=" in block
    assert "✓ 'count==0' count=0" in block
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert [(t["expression"], t["passed"]) for t in manifest["thresholds"]] == [
        ("p(95)<1", False),
        ("p(50)<1e9", True),
        ("count==0", True),
    ]


def test_passing_thresholds_exit_0(evalx: RunEvalx, support_suite: Path, tmp_path: Path) -> None:
    proc = evalx("run", support_suite, "--out", tmp_path / "run", "-q")
    assert proc.returncode == 0, proc.stderr  # the shipped suite meets its own objectives


def test_unknown_metric_is_a_usage_error_before_running(
    evalx: RunEvalx, support_suite: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    proc = evalx("run", support_suite, "--out", out, "--set", 'thresholds={"sucess": ["rate>0.9"]}')
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "error: --set: thresholds.sucess: unknown metric 'sucess'; did you mean success?"
    )
    assert not out.exists()
