"""Latency fits: token-aware terms, prefill, total call time, errors, and the LLMPerf check."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from harness.data._fit_latency import fit_latency, prefill_slope
from harness.spec import Latency

ROOT = Path(__file__).resolve().parents[3]
DATA = next(
    p for p in (ROOT / "fixtures" / "shared", ROOT.parent / "shared" / "data") if p.is_dir()
)
LLMPERF = sorted((DATA / "llmperf-2023").glob("*.json"))


def calls(
    model: str | list[str],
    latency_s: np.ndarray,
    *,
    ttft_s: np.ndarray | None = None,
    input_tokens: np.ndarray | None = None,
    output_tokens: np.ndarray | None = None,
    status: list[str] | None = None,
    source: str = "calls.csv",
) -> pa.Table:
    """A canonical calls table."""
    n = len(latency_s)
    models = model if isinstance(model, list) else [model] * n

    def col(values: np.ndarray | None, kind: pa.DataType) -> pa.Array:
        return pa.nulls(n, kind) if values is None else pa.array(values, kind)

    return pa.table(
        {
            "model": pa.array(models, pa.string()),
            "start_s": pa.nulls(n, pa.float64()),
            "ttft_s": col(ttft_s, pa.float64()),
            "latency_s": col(latency_s, pa.float64()),
            "input_tokens": col(input_tokens, pa.int64()),
            "output_tokens": col(output_tokens, pa.int64()),
            "status": pa.array(status or ["ok"] * n, pa.string()),
            "error": pa.array([""] * n, pa.string()),
            "source": pa.array([source] * n, pa.string()),
            "row": pa.array(np.arange(n), pa.int64()),
        }
    )


def llmperf(path: Path) -> pa.Table:
    """An LLMPerf export as the calls table (read here, independent of the readers)."""
    records = json.loads(path.read_text())
    status = ["ok" if r["error_code"] is None else "error" for r in records]
    return calls(
        path.stem,
        np.array([r["end_to_end_latency_s"] for r in records], dtype=float),
        ttft_s=np.array([r["ttft_s"] for r in records], dtype=float),
        input_tokens=np.array([r["number_input_tokens"] for r in records]),
        output_tokens=np.array([r["number_output_tokens"] for r in records]),
        status=status,
        source=str(path),
    )


def token_calls(n: int = 2000, seed: int = 0, prefill_ms: float = 0.0) -> pa.Table:
    rng = np.random.default_rng(seed)
    out = rng.integers(50, 400, n)
    inp = (
        np.rint(np.exp(rng.normal(np.log(800), 0.8, n))).astype(int)
        if prefill_ms
        else np.full(n, 550)
    )
    ttft = 0.2 * np.exp(0.3 * rng.standard_normal(n)) + prefill_ms / 1000 * inp
    per_tok = 0.02 * np.exp(0.1 * rng.standard_normal(n))
    status = ["ok"] * n
    for i in range(0, n, 50):
        status[i] = "timeout" if i % 100 else "error"
    return calls(
        "m", ttft + out * per_tok, ttft_s=ttft, input_tokens=inp, output_tokens=out, status=status
    )


def test_token_aware_terms_are_recovered() -> None:
    fit = fit_latency(token_calls(), created="2024-05-01")
    m = fit.models["m"]
    assert m.token_aware and m.per_input_token is None
    assert (m.calls, m.ok, m.used) == (2000, 1960, 1960)
    assert m.error_rate == 0.02
    assert m.ttft is not None and m.per_output_token is not None
    assert m.ttft.quantile(0.5) == pytest.approx(200.0, rel=0.03)
    assert m.per_output_token.quantile(0.5) == pytest.approx(20.0, rel=0.02)
    e2e = m.component("end_to_end")
    assert e2e.predicted is not None and e2e.predicted.size >= 20_000
    assert e2e.gof.ks < 0.05
    for q in (0.5, 0.95, 0.99):
        assert abs(e2e.gof.at(q).rel_error) < 0.05
    assert [c.key for c in m.components] == [
        "models.m.latency.ttft",
        "models.m.latency.per_output_token",
        "models.m.end_to_end",
    ]
    assert "prefill not fitted: input tokens barely vary (CV=0.00)" in m.notes


def test_prefill_is_fitted_when_input_sizes_vary_and_ttft_rises_with_them() -> None:
    fit = fit_latency(token_calls(prefill_ms=0.05))
    m = fit.models["m"]
    assert m.per_input_token is not None and m.per_input_token.kind == "constant"
    assert m.per_input_token.p50_ms == pytest.approx(0.05, rel=0.1)
    assert m.ttft is not None and m.ttft.quantile(0.5) == pytest.approx(200.0, rel=0.05)
    ttft = m.component("ttft")
    assert ttft.dist is None and ttft.predicted is not None  # ttft = head + slope x input
    assert ttft.gof.ks < 0.05
    assert abs(m.component("end_to_end").gof.at(0.95).rel_error) < 0.05
    latency = fit.to_fragment()["models"]["m"]["latency"]
    assert latency["per_input_token"] == {"dist": "constant", "p50_ms": m.per_input_token.p50_ms}
    assert Latency.model_validate(latency).token_aware


def test_prefill_rule() -> None:
    rng = np.random.default_rng(5)
    inp = rng.integers(100, 5000, 400)
    flat = 200 * np.exp(0.3 * rng.standard_normal(400))
    slope, why = prefill_slope(flat, inp)
    assert slope is None and "does not rise significantly" in why
    slope, why = prefill_slope(flat + 0.1 * inp, inp)
    assert slope == pytest.approx(0.1, rel=0.1) and why.startswith("prefill fitted")
    slope, why = prefill_slope(flat, np.full(400, 550))
    assert slope is None and "barely vary" in why
    assert prefill_slope([1.0, 2.0], [1, 2])[0] is None


def test_without_ttft_the_total_call_time_is_fitted() -> None:
    lat = 0.8 * np.exp(0.5 * np.random.default_rng(1).standard_normal(500))
    fit = fit_latency(calls("m", lat), created="2024-05-01")
    m = fit.models["m"]
    assert not m.token_aware and m.total is not None
    (comp,) = m.components
    assert comp.key == "models.m.latency" and comp.dist == m.total
    latency = fit.to_fragment()["models"]["m"]["latency"]
    assert latency == m.total.to_dict()
    assert not Latency.model_validate(latency).token_aware


def test_each_model_separately_or_one_on_request() -> None:
    a, b = token_calls(300, seed=1), token_calls(300, seed=2)
    b = b.set_column(0, "model", pa.array(["b"] * 300))
    both = pa.concat_tables([a, b])
    assert list(fit_latency(both).models) == ["m", "b"]
    assert list(fit_latency(both, "b").models) == ["b"]
    with pytest.raises(ValueError, match="no calls of model 'c'; the table has m, b"):
        fit_latency(both, "c")


def test_a_model_that_never_succeeded_has_only_an_error_rate() -> None:
    fit = fit_latency(calls("m", np.array([1.0, 2.0]), status=["error", "timeout"]))
    assert fit.to_fragment() == {"models": {"m": {"error_rate": 1.0}}}
    assert fit.models["m"].components == ()


def test_sources_come_from_the_source_column(tmp_path: Path) -> None:
    path = tmp_path / "calls.csv"
    path.write_text("whatever\n")
    fit = fit_latency(token_calls(100).set_column(8, "source", pa.array([str(path)] * 100)))
    (src,) = fit.provenance.sources
    assert src.path == str(path)
    assert src.sha256 == hashlib.sha256(b"whatever\n").hexdigest()
    assert src.rows == 100
    assert fit.provenance.rows_used == 100


def test_the_fit_is_reproducible() -> None:
    one, two = fit_latency(token_calls(300)), fit_latency(token_calls(300))
    g1, g2 = (f.models["m"].component("end_to_end").gof for f in (one, two))
    assert g1 == g2
    assert one.to_fragment() == two.to_fragment()


@pytest.mark.parametrize("path", LLMPERF, ids=[p.stem for p in LLMPERF])
def test_llmperf_end_to_end_p50_and_p95_within_10_percent(path: Path) -> None:
    """The acceptance check: the fitted model, simulated on the measured token counts,
    reproduces the measured end-to-end median and p95 within 10%."""
    fit = fit_latency(llmperf(path))
    m = fit.models[path.stem]
    assert m.token_aware and m.per_input_token is None  # every prompt is ~550 tokens
    e2e = m.component("end_to_end").gof
    assert e2e.n == m.ok
    assert abs(e2e.at(0.5).rel_error) < 0.10
    assert abs(e2e.at(0.95).rel_error) < 0.10


def test_llmperf_why_auto_matters() -> None:
    """Forced through p50 and p99, ttft's lognormal is pulled by one slow first token
    (100 s among 0.4-0.7 s ones): the simulated p95 is several times the measured."""
    path = next(p for p in LLMPERF if p.stem == "together_13b")
    forced = fit_latency(llmperf(path), kind="lognormal").models[path.stem]
    assert forced.component("end_to_end").gof.at(0.95).rel_error > 1.0
    auto = fit_latency(llmperf(path)).models[path.stem]
    assert auto.ttft is not None and auto.ttft.kind == "empirical"
    assert auto.error_rate == pytest.approx(1 / 150, rel=1e-3)
