"""Tenants: shares of the traffic, gateway limits at admission, summaries and thresholds."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.metrics import tenant_summary
from harness.run import simulate
from harness.spec import Suite, TenantLimits, advisories, load_suite
from harness.stack._tenants import SpendBudget, TenantState, TokenBucket
from harness.thresholds import compile_thresholds, evaluate
from harness.traffic import sample_requests
from tests.unit.test_engine import make_suite
from tests.unit.test_traffic_log import write_log

# ------------------------------------------------------------------ buckets and budgets


def reference_admissions(
    rpm: int | None, tpm: int | None, events: list[tuple[Fraction, int]]
) -> list[bool]:
    """A gateway written the slow, exact way: replay every take since t = 0 each time."""
    takes: dict[str, list[tuple[Fraction, int]]] = {"rpm": [], "tpm": []}

    def level(kind: str, per_min: int, now: Fraction) -> Fraction:
        rate, lvl, t = Fraction(per_min, 60), Fraction(per_min), Fraction(0)
        for at, amount in takes[kind]:
            lvl = min(Fraction(per_min), lvl + (at - t) * rate) - amount
            t = at
        return min(Fraction(per_min), lvl + (now - t) * rate)

    out = []
    for now, tokens in events:
        ok = (rpm is None or level("rpm", rpm, now) >= 1) and (
            tpm is None or level("tpm", tpm, now) >= 1
        )
        out.append(ok)
        if ok:
            if rpm is not None:
                takes["rpm"].append((now, 1))
            if tpm is not None:
                takes["tpm"].append((now, tokens))
    return out


@settings(max_examples=400, deadline=None)
@given(
    rpm=st.none() | st.sampled_from([15, 30, 60, 120]),
    tpm=st.none() | st.sampled_from([15, 60, 240, 960]),
    events=st.lists(
        st.tuples(
            st.integers(0, 8 * 1024) | st.sampled_from([256, 1024, 2048, 4096]),
            st.integers(0, 120),
        ),
        min_size=1,
        max_size=80,
    ),
)
def test_tenant_buckets_admit_exactly_what_a_reference_bucket_admits(
    rpm: int | None, tpm: int | None, events: list[tuple[int, int]]
) -> None:
    # times are multiples of 1/1024 s and rates (per minute / 60) are dyadic: float arithmetic
    # is exact, so the two must agree on every request, boundaries included
    times = np.cumsum([dt for dt, _ in events])
    timed = [(Fraction(int(t), 1024), tok) for t, (_, tok) in zip(times, events, strict=True)]
    state = TenantState(TenantLimits(rpm=rpm, tpm=tpm))
    got = []
    for now, tokens in timed:
        ok = state.admit(float(now)).wait_s == 0
        got.append(ok)
        if ok:
            state.charge(float(now), tokens, 0.0)
    assert got == reference_admissions(rpm, tpm, timed)


def test_token_bucket_says_how_long_until_it_admits() -> None:
    b = TokenBucket(2, 2 / 60)
    b.take(0.0, 2)
    assert b.wait_s(0.0) == pytest.approx(30.0)
    assert b.wait_s(30.0) == 0.0
    b.take(30.0, 5)  # overdrawn: debt is paid back first
    assert b.wait_s(30.0) == pytest.approx(150.0)


def test_spend_budget_refuses_then_recovers_at_the_window_boundary() -> None:
    b = SpendBudget(1.0, 10.0)
    b.charge(1.0, 0.6)
    assert b.wait_s(2.0) == 0.0
    b.charge(2.0, 0.6)
    assert b.wait_s(3.0) == pytest.approx(7.0)
    assert b.wait_s(9.99) == pytest.approx(0.01)
    assert b.wait_s(10.0) == 0.0


# ------------------------------------------------------------------ the stack, end to end


def log_run(tmp_path: Path, times: list[float], limits: dict[str, Any], **over: Any) -> Any:
    """Requests of tenant `acme` at exact `times`, 100 ms constant latency on `small`."""
    rows = [{"ts": t, "inp": 1000, "out": 500, "who": "acme"} for t in times]
    path = write_log(tmp_path, "csv", rows)
    columns = {"timestamp": "ts", "input_tokens": "inp", "output_tokens": "out", "tenant": "who"}
    suite = make_suite(
        traffic__log={"path": str(path), "columns": columns, "timestamp_unit": "s"},
        stack__tenants={"acme": limits},
        **over,
    )
    return simulate(suite)


def test_spend_budget_rejects_then_admits_again_at_the_boundary(tmp_path: Path) -> None:
    # each request costs (1000 * $1 + 500 * $2) / 1e6 = $0.002 on `small`
    times = [float(t) for t in range(13)]
    res = log_run(tmp_path, times, {"budget": {"usd": 0.005, "per": "10s"}})
    rows = res.requests.to_pylist()
    assert rows[0]["cost_usd"] == pytest.approx(0.002)
    routes = [r["route"] for r in rows]
    assert routes == ["routine"] * 3 + ["tenant_limit"] * 7 + ["routine"] * 3
    limited = [r for r in rows if r["route"] == "tenant_limit"]
    assert {r["outcome"] for r in limited} == {"error"}
    assert {r["cost_usd"] for r in limited} == {0.0}
    assert {r["tenant"] for r in rows} == {"acme"}
    spans = res.spans.to_pandas()
    check = spans[spans["name"] == "tenant_limit"]
    assert check["detail"].tolist() == ["budget:reject"] * 7
    assert check["request_id"].tolist() == list(range(3, 10))


def test_downgrade_routes_to_the_cheapest_tier(tmp_path: Path) -> None:
    res = log_run(
        tmp_path,
        [0.0, 1.0, 61.0],
        {"rpm": 1, "on_exceed": "downgrade"},
        stack__routes={"routine": {"tier": "premium"}},
    )
    rows = res.requests.to_pylist()
    assert [r["served_by"] for r in rows] == ["premium", "fast", "premium"]
    assert [r["tiers_tried"] for r in rows] == ["premium", "fast", "premium"]
    assert [r["route"] for r in rows] == ["routine"] * 3
    assert rows[1]["latency_ms"] == pytest.approx(100.0)


def test_queue_waits_until_the_bucket_refills(tmp_path: Path) -> None:
    res = log_run(tmp_path, [0.0, 1.0], {"rpm": 1, "on_exceed": "queue"})
    rows = res.requests.to_pylist()
    assert [r["outcome"] for r in rows] == ["success", "success"]
    # the second request waits from t=1 until the bucket holds a token again at t=60
    assert rows[1]["latency_ms"] == pytest.approx(59_100.0)
    spans = res.spans.to_pandas()
    waits = spans[(spans["request_id"] == 1) & (spans["kind"] == "backoff")]
    assert waits["name"].unique().tolist() == ["tenant_queue"]
    assert waits["duration_ms"].sum() == pytest.approx(59_000.0)
    chat = spans[(spans["request_id"] == 1) & (spans["kind"] == "chat")]
    assert chat["start_s"].tolist() == [pytest.approx(60.0)]


def test_queue_past_the_deadline_times_out(tmp_path: Path) -> None:
    res = log_run(
        tmp_path,
        [0.0, 1.0],
        {"rpm": 1, "on_exceed": "queue"},
        stack__timeouts={"request_deadline_ms": 30_000},
    )
    row = res.requests.to_pylist()[1]
    assert (row["outcome"], row["route"]) == ("timeout", "tenant_limit")
    assert row["latency_ms"] == pytest.approx(30_000.0)


def test_wildcard_limits_give_each_tenant_its_own_bucket(tmp_path: Path) -> None:
    rows = [{"ts": float(t), "inp": 10, "out": 5, "who": w} for t, w in enumerate("aabb")]
    path = write_log(tmp_path, "csv", rows)
    columns = {"timestamp": "ts", "input_tokens": "inp", "output_tokens": "out", "tenant": "who"}
    suite = make_suite(
        traffic__log={"path": str(path), "columns": columns, "timestamp_unit": "s"},
        stack__tenants={"*": {"rpm": 1}},
    )
    routes = [r["route"] for r in simulate(suite).requests.to_pylist()]
    assert routes == ["routine", "tenant_limit", "routine", "tenant_limit"]


def test_no_tenants_no_limits_and_an_empty_tenant_column() -> None:
    suite = make_suite(traffic__requests=20, traffic__rate_per_s=5.0)
    res = simulate(suite)
    assert set(res.requests.column("tenant").to_pylist()) == {""}
    assert tenant_summary(res.requests) is None


# ------------------------------------------------------------------ shares


def test_tenant_shares_are_respected_deterministic_and_move_no_other_draw() -> None:
    n = 40_000
    plain = make_suite(traffic__requests=n)
    suite = make_suite(
        traffic__requests=n, traffic__tenants={"acme": {"share": 3}, "globex": {"share": 1}}
    )
    a, b = sample_requests(suite), sample_requests(suite)
    tenant = a.extra["tenant"]
    assert (tenant == b.extra["tenant"]).all()
    share = float((tenant == "acme").mean())
    assert abs(share - 0.75) < 4 * np.sqrt(0.75 * 0.25 / n)
    base = sample_requests(plain)
    assert "tenant" not in base.extra
    assert np.array_equal(base.arrival_s, a.arrival_s)
    assert np.array_equal(base.task_class, a.task_class)
    assert np.array_equal(base.input_tokens, a.input_tokens)


def test_a_logs_tenant_column_overrides_the_shares(tmp_path: Path) -> None:
    rows = [{"ts": float(t), "inp": 10, "out": 5, "who": w} for t, w in enumerate("xyz")]
    path = write_log(tmp_path, "csv", rows)
    columns = {"timestamp": "ts", "input_tokens": "inp", "output_tokens": "out", "tenant": "who"}
    suite = make_suite(
        traffic__log={"path": str(path), "columns": columns},
        traffic__tenants={"acme": {"share": 1}},
    )
    assert sample_requests(suite).extra["tenant"].tolist() == ["x", "y", "z"]


# ------------------------------------------------------------------ thresholds and summary


def write_suite(tmp_path: Path, thresholds: str) -> Path:
    path = tmp_path / "suite.yaml"
    path.write_text(
        "name: tenants\nseed: 3\n"
        "traffic:\n  requests: 400\n  rate_per_s: 20\n  mix: {routine: {weight: 1}}\n"
        "  tenants: {acme: {share: 1}, noisy: {share: 3}}\n"
        "models:\n  small:\n    tier: fast\n    quality: {routine: 1.0}\n"
        "    price: {input_per_mtok: 1.0, output_per_mtok: 2.0}\n"
        "    latency: {dist: constant, p50_ms: 100}\n"
        "stack:\n  tiers: [fast]\n  classifier: {enabled: false}\n"
        "  routes: {routine: {tier: fast}}\n  class_routes: {routine: routine}\n"
        "  escalation: {high_impact_route: null}\n"
        "  tenants: {noisy: {rpm: 60}}\n"
        "policies: {actions: {high_impact_tiers: [fast]}}\n"
        f"thresholds:\n{thresholds}"
    )
    return path


def test_thresholds_and_summary_by_tenant(tmp_path: Path) -> None:
    loaded = load_suite(
        write_suite(
            tmp_path,
            '  success{tenant:acme}: ["rate>0.99"]\n  success{tenant:noisy}: ["rate>0.99"]\n',
        )
    )
    res = simulate(loaded.suite)
    outcomes = evaluate(compile_thresholds(loaded), res.requests)
    assert [o.passed for o in outcomes] == [True, False]
    table = tenant_summary(res.requests)
    assert table is not None
    by = table.set_index("tenant")
    assert by.loc["acme", "limited_rate"] == 0.0
    assert by.loc["noisy", "limited_rate"] > 0.5
    assert by["requests"].sum() == 400


def test_an_unknown_tenant_share_key_is_an_error() -> None:
    with pytest.raises(Exception, match="shares"):
        Suite.model_validate(
            {**make_suite().model_dump(), "traffic": {"mix": {"r": {"weight": 1}},
                                                      "tenants": {"a": {"shares": 1}}}}
        )  # fmt: skip


def test_limits_for_a_tenant_the_traffic_never_sends_are_a_warning() -> None:
    suite = make_suite(
        traffic__tenants={"acme": {"share": 1}},
        stack__tenants={"acmee": {"rpm": 5}, "*": {"rpm": 5}, "acme": {"rpm": 5}},
    )
    found = [(k, m) for k, m in advisories(suite) if k[:2] == ("stack", "tenants")]
    assert [k for k, _ in found] == [("stack", "tenants", "acmee")]
    assert "never apply" in found[0][1]
