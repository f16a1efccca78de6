"""Prompt caching: hits follow shared prefixes and time, and cut cost and prefill exactly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from harness.engine._cache import PromptCache
from harness.run import simulate
from harness.spec import Cache, Price, Suite
from tests.unit.test_engine import make_suite

SYSTEM = 2000
TOKEN_LATENCY = {
    "ttft": {"dist": "constant", "p50_ms": 200},
    "per_output_token": {"dist": "constant", "p50_ms": 10},
    "per_input_token": {"dist": "constant", "p50_ms": 0.5},
}
CACHE = {"cached_input_per_mtok": 0.25, "prefill_saving": 0.8, "ttl_s": 300}
TOOLS = {
    name: {"latency": {"dist": "constant", "p50_ms": 50}, "args_example": {"q": name}}
    for name in ("kb", "crm")
}


def cache_suite(**over: Any) -> Suite:
    """One model (input $1/M, output $2/M, cached $0.25/M), a 2000-token system prompt."""
    base: dict[str, Any] = {
        "traffic__requests": 12,
        "traffic__rate_per_s": 0.5,
        "traffic__mix": {"routine": {"weight": 1, "input_tokens": 400, "output_tokens": 150}},
        "models__small__latency": TOKEN_LATENCY,
        "models__small__cache": CACHE,
        "stack__system_prompt_tokens": SYSTEM,
    }
    return make_suite(**{**base, **over})


def chat_spans(suite: Suite) -> tuple[pd.DataFrame, pd.DataFrame]:
    result = simulate(suite)
    spans = result.spans.to_pandas()
    return spans[spans["kind"] == "chat"].reset_index(drop=True), result.requests.to_pandas()


def test_the_system_prompt_is_cached_after_the_first_call() -> None:
    chat, _ = chat_spans(cache_suite())
    cached = chat["gen_ai.usage.cache_read.input_tokens"].tolist()
    assert cached == [0] + [SYSTEM] * (len(chat) - 1)
    assert (chat["gen_ai.usage.input_tokens"] > SYSTEM).all()  # the prompt counts in the input


def test_a_hit_lowers_cost_and_prefill_by_exactly_the_configured_amounts() -> None:
    chat, req = chat_spans(cache_suite())
    tin = chat["gen_ai.usage.input_tokens"].to_numpy()
    tout = chat["gen_ai.usage.output_tokens"].to_numpy()
    cached = chat["gen_ai.usage.cache_read.input_tokens"].to_numpy()
    expected = (tin - cached) * 1e-6 + cached * 0.25e-6 + tout * 2e-6
    np.testing.assert_allclose(chat["cost_usd"], expected, rtol=1e-12)
    np.testing.assert_allclose(chat["ttft_ms"], 200 + 0.5 * (tin - 0.8 * cached), rtol=1e-12)
    np.testing.assert_allclose(
        chat["duration_ms"], 200 + 0.5 * (tin - 0.8 * cached) + 10 * tout, rtol=1e-12
    )
    per_request = chat.groupby("request_id")["gen_ai.usage.cache_read.input_tokens"].sum()
    assert req.set_index("request_id")["cached_input_tokens"].equals(per_request)


def test_without_a_cache_nothing_is_read_and_every_token_is_billed() -> None:
    cold, _ = chat_spans(cache_suite(models__small__cache=None))
    hot, _ = chat_spans(cache_suite())
    assert (cold["gen_ai.usage.cache_read.input_tokens"] == 0).all()
    assert hot["cost_usd"].sum() < cold["cost_usd"].sum()
    saved = cold["cost_usd"].sum() - hot["cost_usd"].sum()
    read = hot["gen_ai.usage.cache_read.input_tokens"].sum()
    assert saved == pytest.approx(read * 0.75e-6, rel=1e-9)


def test_the_system_prompt_expires_after_ttl_without_calls() -> None:
    ttl = 2.0
    chat, _ = chat_spans(cache_suite(models__small__cache={**CACHE, "ttl_s": ttl}))
    # reference: one entry, renewed by every call, readable once the writer's prefill is done
    expected, last, ready = [], None, 0.0
    for start, ttft in zip(chat["start_s"], chat["ttft_ms"] / 1000.0, strict=True):
        live = last is not None and start - last <= ttl
        expected.append(SYSTEM if live and start >= ready else 0)
        if not live:
            ready = start + ttft
        last = start
    assert chat["gen_ai.usage.cache_read.input_tokens"].tolist() == expected
    assert 0 < expected.count(SYSTEM) < len(expected) - 1  # both hits and expiries happen


def test_prefixes_shorter_than_the_minimum_are_not_cached() -> None:
    chat, _ = chat_spans(cache_suite(stack__system_prompt_tokens=500))
    assert (chat["gen_ai.usage.cache_read.input_tokens"] == 0).all()


def test_each_agent_step_reads_the_conversation_sent_before() -> None:
    suite = cache_suite(
        stack__system_prompt_tokens=0,
        traffic__mix={
            "routine": {
                "weight": 1,
                "input_tokens": 1500,
                "output_tokens": 150,
                "tool_steps": 2,
                "tools": ["kb", "crm"],
            }
        },
        tools=TOOLS,
        models__small__invalid_tool_args_rate=0.0,
    )
    chat, _ = chat_spans(suite)
    hits = 0
    for _, calls in chat.groupby("request_id"):
        assert calls["name"].tolist() == ["step", "step", "answer"]
        tin = calls["gen_ai.usage.input_tokens"].tolist()
        read = [0, *(t if t >= 1024 else 0 for t in tin[:-1])]  # min_prefix_tokens: 1024
        assert calls["gen_ai.usage.cache_read.input_tokens"].tolist() == read
        hits += sum(1 for t in read if t)
    assert hits > len(chat) / 3


def test_plain_latency_is_unchanged_by_a_hit() -> None:
    plain = {"models__small__latency": {"dist": "constant", "p50_ms": 100}}
    chat, _ = chat_spans(cache_suite(**plain))
    assert chat["gen_ai.usage.cache_read.input_tokens"].iloc[1:].eq(SYSTEM).all()
    np.testing.assert_allclose(chat["duration_ms"], 100.0)


def test_caching_is_deterministic() -> None:
    a, ra = chat_spans(cache_suite())
    b, rb = chat_spans(cache_suite())
    pd.testing.assert_frame_equal(a, b)
    pd.testing.assert_frame_equal(ra, rb)


def test_the_cache_reads_the_longest_live_prefix_and_renews_it() -> None:
    cache = PromptCache(Cache(min_prefix_tokens=100, ttl_s=10.0), Price(input_per_mtok=3.0))
    assert cache.discount == pytest.approx(2.7e-6)  # cached price defaults to a tenth
    sent = [("a", 200), ("b", 900)]
    assert cache.read(0.0, sent) == 0
    cache.write(0.0, 0.5, sent)
    assert cache.read(0.2, sent) == 0  # the writer's prefill is not done yet
    assert cache.read(1.0, sent) == 900
    assert cache.read(5.0, [("b", 400)]) == 400  # a shorter prompt reads what it shares
    assert cache.read(11.5, [("a", 200)]) == 0  # `a` last used at 1.0: expired
    assert cache.read(11.5, [("b", 900)]) == 900  # `b` renewed at 5.0


def test_a_session_turn_reads_the_conversation_of_its_earlier_turns(tmp_path: Path) -> None:
    rows = [(0.0, 1500, "a"), (1.0, 1200, "b"), (5.0, 2600, "a"), (9.0, 3700, "a")]
    path = tmp_path / "log.csv"
    lines = ["ts,inp,sid", *(f"{t},{i},{s}" for t, i, s in rows)]
    path.write_text("\n".join(lines) + "\n")
    columns = {"timestamp": "ts", "input_tokens": "inp", "session": "sid"}
    log = {"path": str(path), "columns": columns}
    suite = cache_suite(stack__system_prompt_tokens=0, traffic__log=log)
    chat, _ = chat_spans(suite)
    # session a: each turn reads the previous turn's prompt; b has no earlier turn
    assert chat["gen_ai.usage.cache_read.input_tokens"].tolist() == [0, 0, 1500, 2600]
