"""Bring your own router: the example in examples/custom_router runs end to end."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pyarrow.parquet as pq

RunEvalx = Callable[..., subprocess.CompletedProcess[str]]
ROOT = Path(__file__).resolve().parents[2]
SUITE = ROOT / "examples" / "custom_router" / "suite.yaml"


def test_custom_router_runs_with_the_same_metrics_and_thresholds(
    evalx: RunEvalx, tmp_path: Path
) -> None:
    proc = evalx("run", SUITE, "--set", "traffic.requests=1500", "--out", tmp_path / "run")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "THRESHOLDS" in proc.stdout
    requests = pq.read_table(tmp_path / "run" / "requests.parquet").to_pandas()
    assert set(requests["route"]) == {"cheap-then-strong"}
    assert set(requests["tiers_tried"]) <= {"fast", "fast>premium"}
    assert requests["escalated"].any() and not requests["escalated"].all()
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["parameters"]["stack.factory"]["value"] == "my_router:make_stack"


def test_custom_router_can_be_swept(evalx: RunEvalx, tmp_path: Path) -> None:
    proc = evalx("sweep", SUITE, "--set", "traffic.requests=1500", "--confirm", "1",
                 "--out", tmp_path / "sweep")  # fmt: skip
    assert proc.returncode in (0, 1), proc.stderr
    assert (tmp_path / "sweep" / "recommendation.json").exists()


def test_a_factory_that_cannot_be_imported_is_a_usage_error(
    evalx: RunEvalx, tmp_path: Path
) -> None:
    proc = evalx("run", SUITE, "--set", "stack.factory=nope_router:make", "--out", tmp_path / "x")
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: stack.factory: cannot import 'nope_router'")
    assert not (tmp_path / "x").exists()
