"""`evalx sweep` end to end: outputs, a recommendation that `evalx run` confirms, errors."""

from __future__ import annotations

import json
import shlex
import subprocess
from collections.abc import Callable
from pathlib import Path

import pyarrow.parquet as pq

RunEvalx = Callable[..., subprocess.CompletedProcess[str]]
SMALL = ["--set", "traffic.requests=2500"]


def test_sweep_writes_outputs_and_its_recommendation_meets_every_threshold(
    evalx: RunEvalx, support_suite: Path, tmp_path: Path
) -> None:
    out = tmp_path / "sweep"
    proc = evalx("sweep", support_suite, *SMALL, "--confirm", "2", "--out", out,
                 "--target", "share{served_by:premium}=0.2")  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert {p.name for p in out.iterdir()} == {
        "sweep.parquet", "recommendation.json", "frontier.png", "manifest.json",
    }  # fmt: skip
    assert (out / "frontier.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    frame = pq.read_table(out / "sweep.parquet").to_pandas()
    assert set(frame["stage"]) == {"screen", "confirm"}
    assert "stack.escalation.confidence_threshold" in frame.columns
    assert frame[frame.stage == "screen"]["setting"].nunique() == 61
    rec = json.loads((out / "recommendation.json").read_text(encoding="utf-8"))
    assert rec["feasible"] and rec["recommended"]["feasible"]
    assert all(c["passed"] for c in rec["recommended"]["constraints"])
    assert 0.0 <= rec["target"]["threshold"] <= 1.0
    assert abs(rec["target"]["share"] - 0.2) < 0.01
    # apply the recommendation with its --set line: `evalx run` must meet every threshold
    flags = shlex.split(rec["recommended"]["set"])
    run = evalx("run", support_suite, *SMALL, *flags, "--out", tmp_path / "run", "-q")
    assert run.returncode == 0, run.stderr


def test_nothing_feasible_names_the_binding_constraint(
    evalx: RunEvalx, support_suite: Path, tmp_path: Path
) -> None:
    proc = evalx("sweep", support_suite, *SMALL, "--confirm", "1", "--out", tmp_path / "s",
                 "--set", 'thresholds={"success": ["rate>0.999"]}')  # fmt: skip
    assert proc.returncode == 1
    assert "no feasible setting; binding: success rate>0.999" in proc.stdout
    rec = json.loads((tmp_path / "s" / "recommendation.json").read_text(encoding="utf-8"))
    assert rec["recommended"] is None and rec["closest"] is not None


def test_grid_file_and_bad_grid(evalx: RunEvalx, support_suite: Path, tmp_path: Path) -> None:
    grid = tmp_path / "grid.yaml"
    grid.write_text(
        "stack.escalation.confidence_threshold: [0.5, 0.7]\nstack.retry.base_ms: [100, 300]\n",
        encoding="utf-8",
    )
    proc = evalx("sweep", support_suite, "--set", "traffic.requests=800", "--grid", grid,
                 "--confirm", "1", "--out", tmp_path / "g")  # fmt: skip
    assert proc.returncode in (0, 1), proc.stderr
    frame = pq.read_table(tmp_path / "g" / "sweep.parquet").to_pandas()
    assert frame["setting"].nunique() == 4
    bad = tmp_path / "bad.yaml"
    bad.write_text("stack.escalation.confidence_treshold: [0.5]\n", encoding="utf-8")
    err = evalx("sweep", support_suite, "--grid", bad, "--out", tmp_path / "b")
    assert err.returncode == 2 and "did you mean confidence_threshold" in err.stderr
    assert not (tmp_path / "b").exists()


def test_bad_objective_is_a_located_usage_error(
    evalx: RunEvalx, support_suite: Path, tmp_path: Path
) -> None:
    proc = evalx("sweep", support_suite, "--set", "sweep.objective=min cost_per_reqest_usd",
                 "--out", tmp_path / "s")  # fmt: skip
    assert proc.returncode == 2 and not (tmp_path / "s").exists()
    assert proc.stderr.strip() == (
        "error: --set: sweep.objective: unknown metric 'cost_per_reqest_usd'; "
        "did you mean cost_per_request_usd?"
    )
