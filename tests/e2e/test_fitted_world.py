"""A world fitted from real LLMPerf measurements, run through the real engine, reproduces
the measured end-to-end latency (p50 and p95 within 10%) with the same token counts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from harness.data import read_calls
from harness.data._fit_latency import fit_latency
from harness.run import simulate
from harness.spec import load_suite

ROOT = Path(__file__).resolve().parents[2]
FILES = sorted((ROOT / "fixtures" / "shared" / "llmperf-2023").glob("*.json"))


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_fitted_latency_reproduces_llmperf(tmp_path: Path, path: Path) -> None:
    calls = read_calls([path], format="llmperf", model="m")
    fit_latency(calls.table, sources=calls.sources).write(tmp_path / "fit.yaml")
    ok = [r for r in json.loads(path.read_text()) if r["error_code"] is None]
    log = tmp_path / "log.jsonl"
    log.write_text("".join(json.dumps({"ts": i * 10.0, "inp": r["number_input_tokens"],
                                       "out": r["number_output_tokens"]}) + "\n"
                           for i, r in enumerate(ok)))  # fmt: skip
    suite = tmp_path / "suite.yaml"
    suite.write_text("""\
name: llmperf
include: [fit.yaml]
traffic:
  log: {path: log.jsonl, columns: {timestamp: ts, input_tokens: inp, output_tokens: out}}
  mix: {chat: {weight: 1}}
models:
  m: {tier: premium, quality: {chat: 1.0}, error_rate: 0}
stack:
  tiers: [premium]
  classifier: {enabled: false}
  routes: {chat: {tier: premium, max_retries: 0}}
  class_routes: {chat: chat}
  escalation: {confidence_threshold: 0, high_impact_route: null}
  timeouts: {model_call_ms: 600000, request_deadline_ms: 600000}
  budgets: {step_output_tokens: null}
""")
    result = simulate(load_suite(suite).suite)
    chat = result.spans.to_pandas().query("kind == 'chat'")
    assert len(chat) == len(ok)
    simulated = chat["duration_ms"].to_numpy()
    measured = np.array([r["end_to_end_latency_s"] * 1000 for r in ok])
    for q in (50, 95):
        sim, obs = np.percentile(simulated, q), np.percentile(measured, q)
        assert abs(sim / obs - 1) < 0.10, f"p{q}: simulated {sim:.0f} ms, measured {obs:.0f} ms"
