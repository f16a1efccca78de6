"""`evalx sweep` end to end: outputs, a recommendation that `evalx run` confirms and that
passes `evalx compare` with CI's gates, the warnings it prints, errors."""

from __future__ import annotations

import json
import shlex
import subprocess
from collections.abc import Callable
from pathlib import Path

import pyarrow.parquet as pq
import pytest

RunEvalx = Callable[..., subprocess.CompletedProcess[str]]
ROOT = Path(__file__).resolve().parents[2]
SMALL = ["--set", "traffic.requests=2500"]
FAST = ["--replications", "3"]
LENIENT = ["--set", 'thresholds={"success": ["rate>0.5"], "cost_usd": ["avg<1.0"]}']
GATES = ROOT / "reports" / "gates.yaml"


def fits(text: str, width: int = 100) -> bool:
    return all(len(line) <= width for line in text.splitlines())


def test_sweep_writes_outputs_and_its_recommendation_meets_every_threshold(
    evalx: RunEvalx, support_suite: Path, tmp_path: Path
) -> None:
    out = tmp_path / "sweep"
    proc = evalx("sweep", support_suite, *SMALL, *FAST, "--confirm", "2", "--out", out,
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
    confirmed = frame[frame.stage == "confirm"]
    assert (confirmed["replications"] == 3).all()
    assert (confirmed["success_rate_ci_low"] <= confirmed["success_rate"]).all()
    rec = json.loads((out / "recommendation.json").read_text(encoding="utf-8"))
    assert rec["feasible"] and rec["recommended"]["feasible"]
    assert rec["replications"] == 3 and len(rec["seeds"]) == 3
    for c in rec["recommended"]["constraints"]:
        assert c["passed"] and len(c["values"]) == 3 and 0.0 <= c["p_holds"] <= 1.0
        if c["bound"] == "lower":
            assert c["margin_low"] > 0 and c["ci_low"] > c["limit"]
        if c["bound"] == "upper":
            assert c["margin_low"] > 0 and c["ci_high"] < c["limit"]
    assert 0.0 <= rec["target"]["threshold"] <= 1.0
    assert abs(rec["target"]["share"] - 0.2) < 0.01
    assert "Finalists: mean ±95% CI over 3 replications" in proc.stdout
    assert "margin [95% CI]" in proc.stdout and fits(proc.stdout)
    # apply the recommendation with its --set line: `evalx run` must meet every threshold
    flags = shlex.split(rec["recommended"]["set"])
    run = evalx("run", support_suite, *SMALL, *flags, "--out", tmp_path / "run", "-q")
    assert run.returncode == 0, run.stderr


def test_nothing_feasible_names_the_binding_constraint(
    evalx: RunEvalx, support_suite: Path, tmp_path: Path
) -> None:
    proc = evalx("sweep", support_suite, *SMALL, "--replications", "2", "--confirm", "1",
                 "--out", tmp_path / "s",
                 "--set", 'thresholds={"success": ["rate>0.999"]}')  # fmt: skip
    assert proc.returncode == 1
    assert "no feasible setting; binding: success rate>0.999 (2 of 2 settings)" in proc.stdout
    rec = json.loads((tmp_path / "s" / "recommendation.json").read_text(encoding="utf-8"))
    assert rec["recommended"] is None and rec["closest"] is not None
    assert rec["closest"]["why_not"][0]["detail"] == "fails at its lower 95% bound"


def test_grid_file_and_bad_grid(evalx: RunEvalx, support_suite: Path, tmp_path: Path) -> None:
    grid = tmp_path / "grid.yaml"
    grid.write_text(
        "stack.escalation.confidence_threshold: [0.5, 0.7]\nstack.retry.base_ms: [100, 300]\n",
        encoding="utf-8",
    )
    proc = evalx("sweep", support_suite, "--set", "traffic.requests=800", "--grid", grid,
                 "--confirm", "1", "--replications", "2", "--out", tmp_path / "g")  # fmt: skip
    assert proc.returncode in (0, 1), proc.stderr
    frame = pq.read_table(tmp_path / "g" / "sweep.parquet").to_pandas()
    assert frame["setting"].nunique() == 4
    assert "screened by one full run each" in proc.stdout
    assert "stack.retry.base_ms: what the tape cannot replay" in " ".join(proc.stdout.split())
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


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        (["--replications", "0"], "error: --replications must be at least 1, got 0"),
        (["--gates", "nope.yaml"], "nope.yaml: file not found"),
        (["--baseline", "no-such-run"], "error: --baseline no-such-run: no such run directory"),
        (["--confirm", "0"], "error: --confirm must be at least 1, got 0"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    evalx: RunEvalx, support_suite: Path, tmp_path: Path, flags: list[str], says: str
) -> None:
    proc = evalx("sweep", support_suite, *SMALL, *flags, "--out", tmp_path / "s", cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and says in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "s").exists()


def test_an_edge_of_the_grid_is_a_warning_with_the_wider_grid(
    evalx: RunEvalx, support_suite: Path, tmp_path: Path
) -> None:
    grid = tmp_path / "grid.yaml"
    grid.write_text('stack.escalation.confidence_threshold: "0.30:0.40:0.05"\n', encoding="utf-8")
    proc = evalx("sweep", support_suite, "--set", "traffic.requests=1000", *LENIENT,
                 "--grid", grid, "--confirm", "1", "--replications", "2",
                 "--out", tmp_path / "s")  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = " ".join(proc.stdout.split())  # rich wraps long lines at 100 columns
    assert "recommended: confidence_threshold=0.3" in text
    assert (
        "warning: the best confidence_threshold (0.3) is the grid's lowest value: the optimum "
        "may lie beyond it; widen the grid: stack.escalation.confidence_threshold: "
        '"0.25:0.4:0.05"'
    ) in text
    assert fits(proc.stdout)
    rec = json.loads((tmp_path / "s" / "recommendation.json").read_text(encoding="utf-8"))
    assert rec["wider_grid"] == ['stack.escalation.confidence_threshold: "0.25:0.4:0.05"']
    assert rec["switched_off"] == []


def test_a_recommendation_that_switches_escalation_off_says_so(
    evalx: RunEvalx, support_suite: Path, tmp_path: Path
) -> None:
    grid = tmp_path / "grid.yaml"
    grid.write_text("stack.escalation.confidence_threshold: [0.0, 0.5]\n", encoding="utf-8")
    proc = evalx("sweep", support_suite, "--set", "traffic.requests=1000", *LENIENT,
                 "--grid", grid, "--confirm", "1", "--replications", "2",
                 "--out", tmp_path / "s")  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = " ".join(proc.stdout.split())
    assert "recommended: confidence_threshold=0.0" in text
    assert (
        "note: the recommendation switches a mechanism off: escalation on low answer "
        "confidence is off: no confidence is below 0.0, so no answer ever moves up a tier "
        "(the suite has confidence_threshold=0.6)"
    ) in text
    assert "warning:" not in text  # 0 is the threshold's own limit: no wider grid to try
    rec = json.loads((tmp_path / "s" / "recommendation.json").read_text(encoding="utf-8"))
    assert len(rec["switched_off"]) == 1


def _gated_recommendation_passes_compare(
    evalx: RunEvalx, suite: Path, tmp_path: Path, flags: list[str], baseline: Path, *extra: str
) -> dict[str, object]:
    """Sweep with CI's gates against `baseline`, run the recommendation at the suite's seed
    and gate that run with `evalx compare`: it must pass."""
    proc = evalx("sweep", suite, *flags, "--gates", GATES, "--baseline", baseline, *extra,
                 "--out", tmp_path / "s")  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert fits(proc.stdout)
    rec = json.loads((tmp_path / "s" / "recommendation.json").read_text(encoding="utf-8"))
    chosen = rec["recommended"]
    assert chosen["gate"]["passed"] and chosen["gate"]["paired"]
    assert rec["gating"] == {"gates": str(GATES), "baseline": str(baseline)}
    assert f"gates {GATES} vs {baseline} (paired): pass" in " ".join(proc.stdout.split())
    run = evalx("run", suite, *flags, *shlex.split(chosen["set"]), "--out", tmp_path / "run",
                "-q", "--no-report")  # fmt: skip
    assert run.returncode == 0, run.stderr
    gate = evalx("compare", baseline, tmp_path / "run", "--gates", GATES)
    assert gate.returncode == 0, gate.stdout + gate.stderr
    return rec


def test_a_gated_recommendation_passes_evalx_compare_on_a_small_suite(
    evalx: RunEvalx, support_suite: Path, tmp_path: Path
) -> None:
    flags = ["--set", "traffic.requests=1500"]
    base = evalx("run", support_suite, *flags, "--out", tmp_path / "base", "-q", "--no-report")
    assert base.returncode == 0, base.stderr
    rec = _gated_recommendation_passes_compare(
        evalx, support_suite, tmp_path, flags, tmp_path / "base", "--replications", "3",
        "--confirm", "2",
    )  # fmt: skip
    assert rec["finalists"] and all(f["gate"] is not None for f in rec["finalists"])


@pytest.mark.slow
def test_a_gated_recommendation_passes_evalx_compare_against_the_shipped_baseline(
    evalx: RunEvalx, support_suite: Path, tmp_path: Path
) -> None:
    """scenarios/support.yaml at full size against reports/baseline with reports/gates.yaml:
    the ungated pick (the grid's cheapest edge) fails the gates; the gated one passes."""
    rec = _gated_recommendation_passes_compare(
        evalx, support_suite, tmp_path, [], ROOT / "reports" / "baseline",
        "--confirm", "2", "--workers", "2",
    )  # fmt: skip
    rejected = {r["parameters"]["stack.escalation.confidence_threshold"]: r["gate"]
                for r in rec["gate_rejected"]}  # fmt: skip
    assert all(not g["passed"] for g in rejected.values())
