"""Sessions: closed-loop turns, carried context, the session table and session budgets.

Latencies and think times are constant, so arrival times and token counts are exact.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from harness.records import sessions_table
from harness.run import simulate
from harness.sessions import turn_counts
from harness.spec import Suite, Turns, load_suite
from harness.traffic import sample_requests
from tests.unit.test_engine import with_overrides

ROOT = Path(__file__).resolve().parents[2]

THINK_MS = 2000.0
CALL_MS = 100.0


def make_suite(sessions: dict[str, Any] | None = None, **over: Any) -> Suite:
    """One fast model with constant latency and fixed sizes; no classifier, no tools."""
    base: dict[str, Any] = {
        "name": "sessions",
        "seed": 11,
        "traffic": {
            "requests": 40,
            "rate_per_s": 0.5,
            "mix": {
                "routine": {
                    "weight": 1,
                    "input_tokens": 100,
                    "output_tokens": 50,
                    "token_spread": 0.0,
                }
            },
            "sessions": {
                "turns": 4,
                "think_time": {"dist": "constant", "p50_ms": THINK_MS},
                **(sessions or {}),
            },
        },
        "models": {
            "small": {
                "tier": "fast",
                "latency": {"dist": "constant", "p50_ms": CALL_MS},
                "quality": {"routine": 1.0},
                "price": {"input_per_mtok": 1.0, "output_per_mtok": 2.0},
            },
        },
        "stack": {
            "tiers": ["fast"],
            "classifier": {"enabled": False},
            "routes": {"routine": {"tier": "fast", "max_retries": 0}},
            "class_routes": {"routine": "routine"},
            "escalation": {"confidence_threshold": 0.0, "high_impact_route": None},
            "retry_budget": None,
            "breaker": {"enabled": False},
            "handoff": False,
        },
    }
    return Suite.model_validate(with_overrides(base, over))


def requests_df(suite: Suite) -> pd.DataFrame:
    return simulate(suite).requests.to_pandas()


def test_turns_never_overlap_and_follow_answer_plus_think_time() -> None:
    df = requests_df(make_suite())
    assert len(df) == 40
    assert df["session_id"].nunique() == 10
    assert (df.groupby("session_id")["turn"].apply(list) == [[0, 1, 2, 3]] * 10).all()
    for _, g in df.groupby("session_id"):
        g = g.sort_values("turn")
        end = (g["arrival_s"] + g["latency_ms"] / 1000.0).to_numpy()
        arrival = g["arrival_s"].to_numpy()
        assert np.allclose(arrival[1:], end[:-1] + THINK_MS / 1000.0)
        assert (arrival[1:] > end[:-1]).all()
    # ids go session by session, turn by turn
    assert df["request_id"].tolist() == list(range(40))
    assert df["session_id"].tolist() == [i // 4 for i in range(40)]


def test_context_grows_and_is_cut_at_the_window() -> None:
    grown = sample_requests(make_suite()).input_tokens[:4].tolist()
    assert grown == [100, 250, 400, 550]  # prompt + every earlier prompt and answer
    half = sample_requests(make_suite({"context_growth": 0.5})).input_tokens[:4].tolist()
    assert half == [100, 175, 250, 325]
    cut = sample_requests(make_suite({"context_window": 300})).input_tokens[:4].tolist()
    assert cut == [100, 250, 300, 300]
    # the stack sees (and the model is billed for) the grown input
    df = requests_df(make_suite())
    assert df["input_tokens"].tolist()[:4] == [100, 250, 400, 550]


def test_session_table_agrees_with_requests() -> None:
    suite = make_suite(
        {"turns": {"dist": "geometric", "mean": 3}, "abandon_after_failure": 1.0},
        **{"models__small__quality": {"routine": 0.7}},
    )
    result = simulate(suite)
    req = result.requests.to_pandas()
    ses = result.sessions.to_pandas()
    assert ses["session_id"].tolist() == sorted(req["session_id"].unique())
    g = req.groupby("session_id")
    assert ses["turns"].tolist() == g.size().tolist()
    assert np.allclose(ses["cost_usd"], g["cost_usd"].sum())
    assert ses["input_tokens"].tolist() == g["input_tokens"].sum().tolist()
    assert ses["successes"].tolist() == g["success"].sum().tolist()
    # abandoned: its last turn failed and turns are missing; never after a success
    for row in ses.itertuples():
        turns = req[req["session_id"] == row.session_id].sort_values("turn")
        if row.abandoned:
            assert not turns["success"].iloc[-1]
            assert row.turns < row.planned_turns
            assert not row.all_success
        else:
            assert row.turns == row.planned_turns
            assert row.all_success == bool(turns["success"].all())
    # every failed turn that is not a session's last planned turn ended the session
    assert ses["abandoned"].any()
    assert ses["planned_turns"].sum() == suite.traffic.requests
    summary = result.summary.to_pandas().set_index("route")
    assert summary.loc["all", "sessions"] == len(ses)
    assert summary.loc["all", "abandon_rate"] == pytest.approx(ses["abandoned"].mean())
    assert summary.loc["all", "session_success_rate"] == pytest.approx(ses["all_success"].mean())
    assert summary.loc["all", "turns_per_session"] == pytest.approx(ses["turns"].mean())
    assert summary.loc["all", "cost_per_session_usd"] == pytest.approx(ses["cost_usd"].mean())
    assert pd.isna(summary.loc["routine", "sessions"])


def test_without_abandonment_every_turn_arrives() -> None:
    suite = make_suite(
        {"abandon_after_failure": 0.0}, **{"models__small__quality": {"routine": 0.5}}
    )
    result = simulate(suite)
    assert result.requests.num_rows == 40
    assert not result.sessions.to_pandas()["abandoned"].any()


def test_session_budget_refuses_the_turn_that_would_exceed_it() -> None:
    # turn k costs input 100 + 150k plus a 50-token answer; max_tokens reserve 50
    suite = make_suite(**{"stack__budgets": {"session_tokens": 800, "step_output_tokens": 50}})
    df = requests_df(suite)
    first = df[df["session_id"] == 0].sort_values("turn")
    # spent 150 after turn 0, 450 after turn 1; turn 2 needs 400 + 50 more -> 900 > 800
    assert first["outcome"].tolist() == ["success", "success", "budget_exhausted"]
    assert first["model_calls"].tolist() == [1, 1, 0]
    assert first["cost_usd"].iloc[-1] == 0.0


def test_session_usd_budget() -> None:
    # turn 0 costs 100 * 1 + 50 * 2 = 200 micro-USD, turn 1: 250 + 100 = 350
    suite = make_suite(**{"stack__budgets": {"session_usd": 0.0006, "step_output_tokens": 50}})
    df = requests_df(suite)
    first = df[df["session_id"] == 0].sort_values("turn")
    # after 550e-6, turn 2 would cost 400e-6 + 100e-6 more
    assert first["outcome"].tolist() == ["success", "success", "budget_exhausted"]


def test_same_seed_same_records() -> None:
    suite = make_suite({"turns": {"dist": "geometric", "mean": 2.5},
                        "think_time": {"p50_ms": 1000, "p99_ms": 9000}},
                       **{"models__small__quality": {"routine": 0.8}})  # fmt: skip
    a, b = simulate(suite), simulate(suite)
    assert a.requests.equals(b.requests)
    assert a.sessions.equals(b.sessions)
    assert a.spans.equals(b.spans)


def test_turn_counts_are_capped_to_the_total() -> None:
    counts = turn_counts(Turns(mean=3.0), 5, 1000)
    assert counts.sum() == 1000 and (counts >= 1).all()
    assert turn_counts(Turns(mean=3.0), 5, 2000)[: len(counts) - 1].tolist() == counts[:-1].tolist()
    assert turn_counts(3, 0, 10).tolist() == [3, 3, 3, 1]
    assert turn_counts(Turns(dist="constant", mean=2, max=1), 0, 3).tolist() == [1, 1, 1]


def test_without_sessions_each_request_is_its_own_session() -> None:
    suite = make_suite()
    plain = Suite.model_validate(
        {**suite.model_dump(), "traffic": {**suite.traffic.model_dump(), "sessions": None}}
    )
    result = simulate(plain)
    df = result.requests.to_pandas()
    assert df["session_id"].tolist() == df["request_id"].tolist()
    assert (df["turn"] == 0).all()
    assert result.sessions.num_rows == len(df)
    assert sessions_table(result.requests).num_rows == len(df)


def test_a_log_session_column_groups_turns(tmp_path: Path) -> None:
    log = tmp_path / "log.csv"
    log.write_text(
        "ts,conv,tokens\n0,a,10\n1,b,10\n2,a,20\n3,,10\n4,b,30\n5,a,40\n", encoding="utf-8"
    )
    suite = make_suite()
    traffic = suite.traffic.model_dump()
    columns = {"timestamp": "ts", "session": "conv", "input_tokens": "tokens"}
    traffic.update(sessions=None, log={"path": str(log), "timestamp_unit": "s", "columns": columns})
    result = simulate(Suite.model_validate({**suite.model_dump(), "traffic": traffic}))
    df = result.requests.to_pandas()
    assert df["arrival_s"].tolist() == [0, 1, 2, 3, 4, 5]  # logged times, open loop
    assert df["session"].tolist() == ["a", "b", "a", "", "b", "a"]
    assert df["session_id"].tolist() == [0, 1, 0, 2, 1, 0]
    assert df["turn"].tolist() == [0, 0, 1, 0, 1, 2]
    assert result.sessions.to_pandas()["turns"].tolist() == [3, 2, 1]


def test_sessions_and_a_log_do_not_mix() -> None:
    suite = make_suite()
    traffic = suite.traffic.model_dump()
    traffic["log"] = {"path": "x.csv", "columns": {"timestamp": "ts"}}
    with pytest.raises(ValueError, match="sessions are sampled"):
        Suite.model_validate({**suite.model_dump(), "traffic": traffic})


def test_the_sweep_probe_sees_every_turn() -> None:
    from harness.sweep._sweep import probe

    suite = make_suite(**{"models__small__quality": {"routine": 0.5}})
    got = probe(suite)
    assert len(got.routes) >= 1
    assert got.attempts is not None


def test_a_session_belongs_to_one_tenant() -> None:
    suite = load_suite(ROOT / "scenarios" / "sessions.yaml").suite
    reqs = sample_requests(suite)
    assert reqs.sessions is not None
    tenant = reqs.extra["tenant"]
    by_session: dict[int, set[str]] = {}
    for s, t in zip(reqs.sessions.session.tolist(), tenant.tolist(), strict=True):
        by_session.setdefault(s, set()).add(t)
    assert all(len(v) == 1 for v in by_session.values())
    assert len({t for v in by_session.values() for t in v}) == 3
