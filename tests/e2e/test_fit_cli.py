"""`evalx fit`, `evalx import` and `evalx backtest` on real files, through the real CLI."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[2]
RunEvalx = Callable[..., subprocess.CompletedProcess[str]]
LLMPERF = ROOT / "fixtures" / "shared" / "llmperf-2023"
SHARED = ROOT / "fixtures" / "shared"

TINY = """\
name: tiny
seed: 3
traffic:
  requests: 400
  rate_per_s: 2
  mix:
    chat: {weight: 1, input_tokens: 500, output_tokens: 150, token_spread: 0.5}
models:
  m1:
    tier: fast
    latency:
      ttft: {p50_ms: 300, p99_ms: 900}
      per_output_token: {p50_ms: 12, p99_ms: 25}
    error_rate: 0.03
    quality: {chat: 1.0}
    price: {input_per_mtok: 1.0, output_per_mtok: 2.0}
stack:
  tiers: [fast]
  classifier: {enabled: false}
  routes: {m1: {tier: fast, max_retries: 0}}
  class_routes: {chat: m1}
  escalation: {confidence_threshold: 0.0, high_impact_route: null}
  retry_budget: null
  breaker: {enabled: false}
  fallback_down: false
  handoff: false
policies:
  actions: {high_impact_tiers: [fast]}
"""


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory, evalx: RunEvalx) -> Path:
    """A run of a one-model token-aware world, with its spans exported as OTLP JSON."""
    folder = tmp_path_factory.mktemp("world")
    (folder / "tiny.yaml").write_text(TINY, encoding="utf-8")
    done = evalx("run", folder / "tiny.yaml", "--out", folder / "run", "--no-report",
                 "--otlp-json", folder / "run.otlp.json", "-q")  # fmt: skip
    assert done.returncode == 0, done.stderr
    return folder


def test_fit_latency_fragment_loads_into_a_suite_and_runs(tmp_path: Path, evalx: RunEvalx) -> None:
    from harness.run import simulate
    from harness.spec import load_suite

    done = evalx("fit", "latency", LLMPERF / "together_70b.json", "--out", tmp_path / "fit.yaml")
    assert done.returncode == 0, done.stderr
    assert "models.together_70b.end_to_end" in done.stdout and "KS=" in done.stdout
    text = (tmp_path / "fit.yaml").read_text(encoding="utf-8")
    assert text.startswith("# Fitted by evalx") and "sha256:268b0375" in text
    assert (tmp_path / "fit.md").is_file()
    assert len(list(tmp_path.glob("fit-*.png"))) == 6  # qq + cdf for ttft, per-token, e2e
    assert not list(tmp_path.glob(".*partial"))
    suite = TINY.replace("m1:", "together_70b:").replace("{chat: m1}", "{chat: together_70b}")
    suite = suite.replace("seed: 3\n", "seed: 3\ninclude: [fit.yaml]\n")
    suite = suite.replace("output_tokens: 150, token_spread: 0.5", "output_tokens: 150")
    (tmp_path / "suite.yaml").write_text(suite, encoding="utf-8")
    loaded = load_suite(tmp_path / "suite.yaml", ["models.together_70b.error_rate=0"])
    assert loaded.suite.models["together_70b"].latency.ttft is not None
    req = simulate(loaded.suite).requests.to_pandas()
    # the LLMPerf calls: ~155 output tokens, p50 2.4 s end to end, ttft p50 ~0.6 s
    assert 1800 < req["latency_ms"].median() < 3000
    assert 400 < req["ttft_ms"].median() < 900


def test_fit_traffic_and_quality_write_fragments(tmp_path: Path, evalx: RunEvalx) -> None:
    done = evalx("fit", "traffic", SHARED / "azure-llm-2023" / "code.csv", "--columns",
                 "timestamp=TIMESTAMP,input_tokens=ContextTokens,output_tokens=GeneratedTokens",
                 "--out", tmp_path / "traffic.yaml")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "traffic.arrivals" in done.stdout
    assert "rate_per_s:" in (tmp_path / "traffic.yaml").read_text(encoding="utf-8")
    assert (tmp_path / "traffic-rate.png").is_file()
    done = evalx("fit", "quality", SHARED / "alpacaeval" / "judgments.csv", "--score",
                 "preference", "--success", ">= 1.1", "--models", "big=claude-2,small=gemma-2b-it",
                 "--out", tmp_path / "quality.yaml")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "big: 0.245 (197/805" in done.stdout
    text = (tmp_path / "quality.yaml").read_text(encoding="utf-8")
    assert "outcomes:" in text and "success: '>= 1.1'" in text
    path = text.split("path: ", 1)[1].split("\n", 1)[0]
    assert (tmp_path / path).resolve() == (SHARED / "alpacaeval" / "judgments.csv").resolve()


def test_a_world_simulated_by_evalx_backtests_pass(
    simulated: Path, tmp_path: Path, evalx: RunEvalx
) -> None:
    done = evalx("backtest", simulated / "run.otlp.json", "--format", "otlp",
                 "--price-in", "1", "--price-out", "2", "--out", tmp_path / "bt")  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert (
        "m1: fitted on 200 calls" in done.stdout and "predicting 200 held-out calls" in done.stdout
    )
    assert all(len(line) <= 100 for line in done.stdout.splitlines() if "written:" not in line)
    report = json.loads((tmp_path / "bt" / "backtest.json").read_text(encoding="utf-8"))
    assert report["passed"] is True and report["timed"] is True
    judged = {m["key"]: m["passed"] for m in report["metrics"]}
    assert judged["cost_per_request_usd"] is True and judged["ttft_p95_ms"] is True
    assert (tmp_path / "bt" / "backtest.md").is_file() and (tmp_path / "bt" / "fit.yaml").is_file()


def test_a_world_that_changed_after_the_fit_fails(
    simulated: Path, tmp_path: Path, evalx: RunEvalx
) -> None:
    spans = pd.read_parquet(simulated / "run" / "spans.parquet").query("kind == 'chat'")
    slow = (spans["start_s"] > spans["start_s"].median()).to_numpy()  # the held-out half
    factor = np.where(slow, 2.0, 1.0)
    calls = pd.DataFrame(
        {
            "start": 1.7e9 + spans["start_s"],
            "latency_ms": spans["duration_ms"] * factor,
            "ttft_ms": spans["ttft_ms"],
            "input_tokens": spans["gen_ai.usage.input_tokens"],
            "output_tokens": spans["gen_ai.usage.output_tokens"],
            "status": spans["status"],
        }
    )
    path = tmp_path / "calls.csv"
    calls.to_csv(path, index=False)
    done = evalx("backtest", path, "--format", "csv", "--model", "m1")
    assert done.returncode == 1, done.stdout + done.stderr
    verdict = done.stdout.strip().splitlines()[-1]
    assert verdict.startswith("FAIL: latency p50 (ms), latency p95 (ms)")


def test_backtest_on_real_llmperf_together_70b(tmp_path: Path, evalx: RunEvalx) -> None:
    done = evalx("backtest", LLMPERF / "together_70b.json", "--out", tmp_path / "bt")
    assert done.returncode in (0, 1), done.stderr
    assert "no start times in the data (closed-loop" in done.stdout.lower()
    report = json.loads((tmp_path / "bt" / "backtest.json").read_text(encoding="utf-8"))
    assert report["passed"] is (done.returncode == 0)
    judged = {m["key"]: m for m in report["metrics"]}
    for key in ("latency_p50_ms", "latency_p95_ms", "ttft_p50_ms"):
        assert judged[key]["passed"], judged[key]
        assert abs(judged[key]["predicted"] / judged[key]["observed"] - 1) < 0.15


@pytest.mark.parametrize("path", sorted(LLMPERF.glob("*.json")), ids=lambda p: p.stem)
def test_backtest_predicts_llmperf_medians_and_p95(path: Path) -> None:
    from harness.backtest import backtest
    from harness.data import read_calls

    result = backtest(read_calls(path, format="llmperf").table)
    judged = {m.key: m for m in result.metrics}
    for key in ("latency_p50_ms", "latency_p95_ms"):
        assert judged[key].passed, "\n".join(result.lines())


def test_import_then_compare_unpaired_and_report(tmp_path: Path, evalx: RunEvalx) -> None:
    obs = tmp_path / "observed"
    done = evalx("import", LLMPERF / "together_70b.json", "--out", obs, "--price-in", "0.9",
                 "--price-out", "0.9")  # fmt: skip
    assert done.returncode == 0, done.stderr
    manifest = json.loads((obs / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["observed"] is True and manifest["sources"][0]["sha256"].startswith("268b0375")
    assert pd.read_parquet(obs / "requests.parquet")["route"].unique().tolist() == ["together_70b"]
    fit = evalx("fit", "latency", LLMPERF / "together_70b.json", "--out", tmp_path / "fit.yaml")
    assert fit.returncode == 0, fit.stderr
    suite = TINY.replace("m1", "together_70b").replace("requests: 400", "requests: 150")
    suite = suite.replace("seed: 3\n", "seed: 3\ninclude: [fit.yaml]\n")
    suite = suite.replace("input_tokens: 500, output_tokens: 150, token_spread: 0.5",
                          "input_tokens: 550, output_tokens: 155, token_spread: 0.05")  # fmt: skip
    (tmp_path / "suite.yaml").write_text(suite, encoding="utf-8")
    run = evalx("run", tmp_path / "suite.yaml", "--out", tmp_path / "sim", "--no-report", "-q",
                "--set", "models.together_70b.error_rate=0")  # fmt: skip
    assert run.returncode == 0, run.stderr
    done = evalx("compare", obs, tmp_path / "sim", "--unpaired", "--json", tmp_path / "c.json")
    assert done.returncode in (0, 1), done.stderr
    assert "together_70b" in done.stdout
    assert json.loads((tmp_path / "c.json").read_text(encoding="utf-8"))
    done = evalx("report", obs, "--format", "html")
    assert done.returncode == 0, done.stderr
    assert (obs / "report.html").is_file() and (obs / "report.md").is_file()


def test_bad_input_exits_2_naming_the_file_and_writes_nothing(
    tmp_path: Path, evalx: RunEvalx
) -> None:
    missing = tmp_path / "nope.json"
    for args in (
        ("fit", "latency", missing, "--out", tmp_path / "f.yaml"),
        ("import", missing, "--out", tmp_path / "imp"),
        ("backtest", missing, "--out", tmp_path / "bt"),
    ):
        done = evalx(*args)
        assert done.returncode == 2, (args, done.stderr)
        assert str(missing) in done.stderr and len(done.stderr.strip().splitlines()) == 1
    bad = tmp_path / "calls.csv"
    bad.write_text("start,duration\n1,2\n", encoding="utf-8")
    done = evalx("fit", "latency", bad, "--format", "csv", "--out", tmp_path / "f.yaml")
    assert done.returncode == 2 and f"{bad}: columns: no latency column" in done.stderr
    done = evalx("backtest", LLMPERF / "together_70b.json", "--train", "1.5")
    assert done.returncode == 2 and "--train" in done.stderr
    done = evalx(
        "fit", "latency", LLMPERF / "together_70b.json", "--out", tmp_path / "x" / "f.yaml"
    )
    assert done.returncode == 2 and "does not exist" in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["calls.csv"]
