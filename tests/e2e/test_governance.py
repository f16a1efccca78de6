"""Governance end to end: the policy suite with enforcement on and off, redaction, policy files."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from harness.content import Content
from harness.spec import VIOLATION_KINDS, load_suite
from harness.traffic import sample_requests

RunEvalx = Callable[..., subprocess.CompletedProcess[str]]
ROOT = Path(__file__).resolve().parents[2]
SUITE = ROOT / "scenarios" / "policy-edge-cases.yaml"
N = "traffic.requests=1500"


def run(evalx: RunEvalx, out: Path, *args: str) -> dict[str, int]:
    proc = evalx("run", SUITE, "--set", N, "--out", out, *args)
    assert proc.returncode == 0, proc.stderr
    summary = pq.read_table(out / "summary.parquet").to_pandas().set_index("route")
    every = summary.loc["all"]
    return {k: int(every[k]) for k in summary.columns if k.startswith(("violations", "prevented"))}


@pytest.fixture(scope="module")
def enforced(
    evalx: RunEvalx, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, dict[str, int]]:
    out = tmp_path_factory.mktemp("gov") / "on"
    return out, run(evalx, out, "--set", "policies.retention.store_text=true")


def test_enforced_policy_lets_through_only_what_its_detectors_cannot_see(
    enforced: tuple[Path, dict[str, int]],
) -> None:
    out, counts = enforced
    assert counts["violations"] > 0  # the suite's evasive edge cases
    requests = pq.read_table(out / "requests.parquet").to_pandas()
    violated = requests[requests["violations"] > 0]
    assert violated["evasive"].all(), violated[~violated["evasive"]]
    assert (requests.loc[~requests["evasive"], "violations"] == 0).all()
    for kind in ("pii_leak", "prohibited_action_executed", "invalid_tool_args_executed",
                 "injection_followed", "budget_overrun"):  # fmt: skip
        assert counts[f"prevented_{kind}"] > 0, kind


def test_observing_only_lets_violations_through(
    evalx: RunEvalx, tmp_path: Path, enforced: tuple[Path, dict[str, int]]
) -> None:
    counts = run(evalx, tmp_path / "off", "--set", "policies.enforce=false")
    assert counts["violations"] > 0 and counts["prevented"] == 0
    for kind in ("pii_leak", "prohibited_action_executed", "invalid_tool_args_executed",
                 "injection_followed", "budget_overrun"):  # fmt: skip
        assert counts[f"violations_{kind}"] > 0, kind


def test_every_violation_is_attributed_to_a_request_span_and_stage(
    evalx: RunEvalx, tmp_path: Path
) -> None:
    run(evalx, tmp_path / "off", "--set", "policies.enforce=false")
    spans = pq.read_table(tmp_path / "off" / "spans.parquet").to_pandas()
    requests = pq.read_table(tmp_path / "off" / "requests.parquet").to_pandas()
    marked = spans[spans.violation != ""]
    assert set(marked.violation) <= set(VIOLATION_KINDS)
    assert (marked.stage != "").all()
    assert len(marked) == requests.violations.sum()
    per_request = marked.groupby("request_id").size()
    assert (per_request == requests.set_index("request_id").violations[per_request.index]).all()


def test_no_planted_personal_data_in_any_string_column(
    enforced: tuple[Path, dict[str, int]],
) -> None:
    out, _ = enforced
    suite = load_suite(SUITE, [N]).suite
    reqs = sample_requests(suite)
    content = Content(suite, reqs)
    # personal data written in formats the detector knows (evasive formats it cannot see,
    # and those leaks are counted as violations by the other tests)
    plain = [i for i in range(len(reqs)) if not reqs.evasive[i]]
    planted = {content.input_pii(i) for i in plain} - {None}
    planted |= {v for i in range(len(reqs)) for v in content.customer_pii(i)}
    assert len(planted) > 500
    requests = pq.read_table(out / "requests.parquet")
    assert any(requests.column("prompt").to_pylist())  # text was kept, so the check bites
    for name in ("requests", "spans", "summary"):
        table = pq.read_table(out / f"{name}.parquet")
        for field in table.schema:
            if pa.types.is_string(field.type):
                for text in set(table.column(field.name).to_pylist()):
                    assert not any(v in text for v in planted if isinstance(v, str)), (
                        name, field.name, text,
                    )  # fmt: skip


def test_policy_swap_is_one_flag_and_is_recorded(evalx: RunEvalx, tmp_path: Path) -> None:
    out = tmp_path / "strict"
    counts = run(evalx, out, "--policy", str(ROOT / "policies" / "strict.yaml"))
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["policy"]["name"] == "strict"
    assert manifest["policy"]["version"] == "1.0.0"
    assert manifest["parameters"]["policies.file"]["source"] == "--policy"
    requests = pq.read_table(out / "requests.parquet").to_pandas()
    assert (requests.loc[~requests["evasive"], "violations"] == 0).all()
    assert counts["prevented_unapproved_high_impact"] > 0  # strict: no tier may act alone


def test_policy_file_error_names_file_line_and_key(
    evalx: RunEvalx, tmp_path: Path, copy_suite: Callable[[str, Path], Path]
) -> None:
    suite = copy_suite("policy-edge-cases.yaml", tmp_path)
    policy = tmp_path / "policies" / "default.yaml"
    lines = policy.read_text(encoding="utf-8").splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("  repair_attempts"))
    lines[at] = "  repair_atempts: 1"
    policy.write_text("\n".join(lines) + "\n", encoding="utf-8")
    proc = evalx("run", suite, "--out", tmp_path / "out")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    shown = suite.parent / ".." / "policies" / "default.yaml"  # as the suite refers to it
    assert proc.stderr.strip() == (
        f"error: {shown}:{at + 1}: tools.repair_atempts: unknown key; did you mean repair_attempts?"
    )
    assert not (tmp_path / "out").exists()


def test_missing_policy_file_points_at_the_suite_line(
    evalx: RunEvalx, tmp_path: Path, copy_suite: Callable[[str, Path], Path]
) -> None:
    suite = copy_suite("policy-edge-cases.yaml", tmp_path)
    (tmp_path / "policies" / "default.yaml").unlink()
    line = suite.read_text(encoding="utf-8").splitlines().index("  file: ../policies/default.yaml")
    proc = evalx("validate", suite)
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"error: {suite}:{line + 1}: policies.file: policy file ")
    bad = evalx("run", suite, "--policy", tmp_path / "nope.yaml")
    assert bad.returncode == 2 and "--policy" in bad.stderr and "Traceback" not in bad.stderr
