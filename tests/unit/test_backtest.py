"""Back-test: splits, the judging rule, and the whole loop on calls of a known world."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from harness.backtest import BacktestError, _judge_rate, backtest, split_calls
from harness.data import CALLS_SCHEMA


def known_calls(n: int = 300, seed: int = 1, error_rate: float = 0.02) -> pa.Table:
    """Calls of a token-aware world: ttft and per-token time lognormal, tokens varying."""
    rng = np.random.default_rng(seed)
    ttft = rng.lognormal(np.log(0.3), 0.3, n)
    per_token = rng.lognormal(np.log(0.012), 0.2, n)
    tout = rng.integers(50, 400, n)
    tin = rng.integers(100, 1000, n)
    ok = rng.random(n) >= error_rate
    return pa.table(
        {
            "model": ["m"] * n,
            "start_s": 1e9 + np.cumsum(rng.exponential(0.5, n)),
            "ttft_s": np.where(ok, ttft, np.nan),
            "latency_s": np.where(ok, ttft + tout * per_token, np.nan),
            "input_tokens": tin,
            "output_tokens": tout,
            "status": np.where(ok, "ok", "error"),
            "error": np.where(ok, "", "500"),
            "source": ["known.csv"] * n,
            "row": np.arange(n),
        },
        schema=CALLS_SCHEMA,
    ).replace_schema_metadata(None)


def test_time_split_takes_the_first_share_by_start_time() -> None:
    calls = known_calls(10)
    reversed_calls = calls.take(pa.array(np.arange(10)[::-1]))
    fit, held = split_calls(reversed_calls, "time", 0.6)
    assert fit.num_rows == 6 and held.num_rows == 4
    assert pc.max(fit["start_s"]).as_py() < pc.min(held["start_s"]).as_py()


def test_random_split_is_seeded_and_disjoint() -> None:
    calls = known_calls(50)
    a = split_calls(calls, "random", 0.5, seed=3)
    b = split_calls(calls, "random", 0.5, seed=3)
    c = split_calls(calls, "random", 0.5, seed=4)
    assert a[0]["row"].equals(b[0]["row"]) and not a[0]["row"].equals(c[0]["row"])
    rows = set(a[0]["row"].to_pylist()) | set(a[1]["row"].to_pylist())
    assert rows == set(range(50))


def test_too_few_calls_to_split_is_a_user_error() -> None:
    with pytest.raises(BacktestError, match="at least 2"):
        split_calls(known_calls(3), "time", 0.5)


def test_rates_are_judged_relative_to_the_rarer_side() -> None:
    obs = np.r_[np.ones(1), np.zeros(199)]  # 0.5% errors, Wilson interval about [0.001, 0.028]
    judged = _judge_rate("e", "e", obs, np.full(1000, 0.0), 0.2)
    assert judged.passed and judged.allowed_high == pytest.approx(judged.observed_high + 0.002)
    assert _judge_rate("e", "e", obs, np.r_[np.ones(25), np.zeros(975)], 0.2).passed
    assert not _judge_rate("e", "e", obs, np.r_[np.ones(100), np.zeros(900)], 0.2).passed
    success = _judge_rate("s", "s", 1 - obs, np.full(1000, 1.0), 0.2)  # the same, mirrored
    assert success.passed and success.allowed_low == pytest.approx(1 - judged.allowed_high)


def test_a_known_world_passes() -> None:
    result = backtest(known_calls(), tolerance=0.2)
    assert result.passed, "\n".join(result.lines())
    assert result.train_calls == 150 and result.test_calls == 150 and result.timed
    keys = [m.key for m in result.metrics]
    assert keys[:5] == ["latency_p50_ms", "latency_p95_ms", "latency_p99_ms", "ttft_p50_ms",
                        "ttft_p95_ms"]  # fmt: skip
    cost = result.metrics[-1]
    assert cost.key == "cost_per_request_usd" and cost.passed is None  # no prices given


def test_a_world_that_changed_after_the_fit_fails() -> None:
    def slower(held: pa.Table) -> pa.Table:
        i = held.schema.get_field_index("latency_s")
        return held.set_column(i, "latency_s", pc.multiply(held["latency_s"], 2.0))

    result = backtest(known_calls(), transform=slower)
    assert not result.passed
    failed = {m.key for m in result.failed}
    assert {"latency_p50_ms", "latency_p95_ms"} <= failed
    assert "ttft_p50_ms" not in failed  # only the per-token part changed
    assert "FAIL: latency p50 (ms)" in result.lines()[-1]


def test_several_models_need_a_choice() -> None:
    a, b = known_calls(20), known_calls(20, seed=2)
    b = b.set_column(0, a.schema.field("model"), pa.array(["other"] * 20))
    both = pa.concat_tables([a, b])
    with pytest.raises(BacktestError, match="--model"):
        backtest(both)
    assert backtest(both, model="other").model == "other"
