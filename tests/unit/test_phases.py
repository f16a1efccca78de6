"""A run read by phase: the table against the Parquet files, what report.md says about the
support suite (every figure recomputed here from requests and spans), a suite without
faults, windows that overlap, the HTML report, and the number formats the reports share."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.faults import SPIKE, TimeWindow, suite_windows
from harness.phases import BASELINE, PHASE_COLUMNS, phase_report, phase_table
from harness.report import run_html, run_markdown, run_phases
from harness.run import manifest, simulate
from harness.spec import load_suite
from harness.units import duration, number, pct, usd

ROOT = Path(__file__).resolve().parents[2]
SUPPORT = ROOT / "scenarios" / "support.yaml"


class Run:
    """A run as a report reads it: tables from Parquet, the manifest, the phase report."""

    def __init__(self, root: Path, overrides: list[str]) -> None:
        loaded = load_suite(SUPPORT, overrides)
        result = simulate(loaded.suite)
        result.requests.to_pandas().to_parquet(root / "requests.parquet")
        result.spans.to_pandas().to_parquet(root / "spans.parquet")
        self.requests = pd.read_parquet(root / "requests.parquet")
        self.spans = pd.read_parquet(root / "spans.parquet")
        self.summary = result.summary.to_pandas()
        self.manifest = manifest(loaded, result, "test", ["evalx"], [])
        self.phases = run_phases(self.requests, self.spans, self.manifest)
        self.md = run_markdown(self.summary, self.manifest, {}, self.phases)
        self.suite = loaded.suite

    def spans_of(self, phase: str) -> pd.DataFrame:
        ids = self.requests.loc[self.requests["phase"] == phase, "request_id"]
        return self.spans[self.spans["request_id"].isin(ids)]

    def said(self, phase: str) -> list[str]:
        """The sentences report.md gives for a phase: its bullet and the ones under it."""
        section = self.md[self.md.index("### What moved, and why") :]
        section = section[: section.index("\n\n## ")]
        blocks = re.split(r"\n(?=- )", section.split("\n\n", 1)[1])
        (block,) = [b for b in blocks if b.startswith(f"- **{phase}**")]
        return [line.lstrip(" -") for line in block.splitlines()]


@pytest.fixture(scope="module")
def support(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """scenarios/support.yaml as shipped: 8,000 requests, every window inside the run."""
    return Run(tmp_path_factory.mktemp("support"), [])


def one(sentences: list[str], pattern: str) -> re.Match[str]:
    hits = [m for m in (re.search(pattern, s) for s in sentences) if m]
    assert len(hits) == 1, (pattern, sentences)
    return hits[0]


# --------------------------------------------------------------------------- the table


def test_phases_in_order_with_their_windows(support: Run) -> None:
    table = support.phases.table
    assert list(table.columns) == [c.name for c in PHASE_COLUMNS]
    assert table["phase"].tolist() == [BASELINE, "crm-slow", SPIKE, "premium-outage",
                                       "stale-index"]  # fmt: skip
    windows = dict(zip(table["phase"], table["window"], strict=True))
    assert windows["crm-slow"] == "120-240 s" and windows[SPIKE] == "240-300 s"
    assert windows["premium-outage"] == "300-390 s" and windows["stale-index"] == "400-460 s"
    last = support.requests["arrival_s"].max()
    seconds = dict(zip(table["phase"], table["seconds"], strict=True))
    assert seconds == pytest.approx({BASELINE: last - 330, "crm-slow": 120, SPIKE: 60,
                                     "premium-outage": 90, "stale-index": 60})  # fmt: skip


def test_table_agrees_with_the_parquet_files(support: Run) -> None:
    req, spans = support.requests, support.spans
    for row in support.phases.table.to_dict("records"):
        mine = req[req["phase"] == row["phase"]]
        calls = support.spans_of(row["phase"])
        made = calls[calls["kind"].isin(["chat", "execute_tool", "retrieval"])]
        assert row["requests"] == len(mine)
        assert row["rate_per_s"] == pytest.approx(len(mine) / row["seconds"])
        assert row["success_rate"] == pytest.approx(mine["success"].mean())
        assert row["wrong_rate"] == pytest.approx((mine["outcome"] == "wrong").mean())
        assert row["p50_latency_ms"] == pytest.approx(np.quantile(mine["latency_ms"], 0.5))
        assert row["p95_latency_ms"] == pytest.approx(np.quantile(mine["latency_ms"], 0.95))
        answered = mine.loc[~mine["handoff"], "latency_ms"]
        assert row["p95_answered_ms"] == pytest.approx(np.quantile(answered, 0.95))
        assert row["cost_per_request_usd"] == pytest.approx(mine["cost_usd"].mean())
        assert row["handoff_rate"] == pytest.approx(mine["handoff"].mean())
        assert row["errors"] == made["status"].isin(["error", "malformed", "rate_limited"]).sum()
        assert row["timeouts"] == (made["status"] == "timeout").sum()
        assert row["rejected"] == (calls["kind"] == "breaker").sum()
    assert support.phases.table["requests"].sum() == len(req) and len(spans)


def test_report_md_holds_the_table(support: Run) -> None:
    lines = support.md.splitlines()
    start = lines.index("## By phase")
    header = next(i for i in range(start, len(lines)) if lines[i].startswith("| phase |"))
    rows = lines[header + 2 : header + 2 + len(support.phases.table)]
    for line, row in zip(rows, support.phases.table.to_dict("records"), strict=True):
        cells = [c.strip().strip("*") for c in line.strip("|").split("|")]
        assert cells[0] == row["phase"] and cells[1] == row["window"]
        assert cells[2] == f"{row['requests']:,}" and cells[4] == pct(row["success_rate"])
        assert cells[6] == duration(row["p95_latency_ms"])
        assert cells[8] == usd(row["cost_per_request_usd"])


# --------------------------------------------------------------------------- what it says


def test_premium_outage_names_fast_failures_breakers_and_the_faster_tail(support: Run) -> None:
    said = support.said("premium-outage")
    calls = support.spans_of("premium-outage")
    failed = calls[(calls["kind"] == "chat") & (calls["status"] == "error")]
    assert set(failed["gen_ai.request.model"]) == {"large"}
    assert set(failed["http.response.status_code"]) == {503}
    m = one(said, r"^(\d+) calls to large failed fast \(HTTP 503 after a median (.+?)\)")
    assert int(m[1]) == len(failed)
    assert m[2] == duration(failed["duration_ms"].median()) and failed["duration_ms"].max() < 1000
    refused = calls[calls["kind"] == "breaker"]
    m = one(said, r"Open circuit breakers refused ([\d,]+) calls")
    assert int(m[1].replace(",", "")) == len(refused) > 0
    # the p95 dip of the stack's own answers: premium (the slowest tier) stopped answering
    mine = support.requests[support.requests["phase"] == "premium-outage"]
    base = support.requests[support.requests["phase"] == BASELINE]
    fast = np.quantile(mine.loc[~mine["handoff"], "latency_ms"], 0.95)
    before = np.quantile(base.loc[~base["handoff"], "latency_ms"], 0.95)
    assert fast < 0.9 * before
    m = one(said, r"^The stack's own answers were faster at the tail: p95 (.+?) against (.+?) "
                  r"at baseline, as premium answered (.+?) of them")  # fmt: skip
    assert (m[1], m[2]) == (duration(fast), duration(before))
    assert m[3] == pct((mine.loc[~mine["handoff"], "served_by"] == "premium").mean()) == "0.0%"
    assert "premium is the slowest tier" in m.string
    large = refused[refused["name"] == "large"]
    assert f"its calls failed fast ({len(failed)}) or an open breaker refused them " \
           f"({len(large)})" in m.string  # fmt: skip


def test_spike_names_traffic_queueing_timeouts_and_the_human_queue(support: Run) -> None:
    said = support.said(SPIKE)
    row = support.phases.table.set_index("phase").loc[SPIKE]
    base = support.phases.table.set_index("phase").loc[BASELINE]
    m = one(said, r"^Traffic arrived at ([\d.]+)/s, ([\d.]+)x the baseline's ([\d.]+)/s")
    assert float(m[1]) == round(row["rate_per_s"], 1)
    assert float(m[3]) == round(base["rate_per_s"], 1)
    assert float(m[2]) == pytest.approx(row["rate_per_s"] / base["rate_per_s"], abs=0.05)
    calls = support.spans_of(SPIKE)
    chat = calls[calls["kind"] == "chat"]
    large = chat[chat["gen_ai.request.model"] == "large"]
    m = one(said, r"large \(premium, capacity 12\) a mean (.+?) \(p95")
    assert m[1] == duration(large["queue_ms"].mean()) and large["queue_ms"].mean() > 1000
    timed = chat[chat["status"] == "timeout"]
    m = one(said, r"^([\d,]+) model calls hit their timeout \(a median (.+?);.*a median (.+?) of "
                  r"it spent queued for capacity")  # fmt: skip
    assert int(m[1].replace(",", "")) == len(timed)
    assert m[2] == duration(timed["duration_ms"].median()) == "12 s"  # stack.timeouts
    assert m[3] == duration(timed["queue_ms"].median())
    handed = support.requests[(support.requests["phase"] == SPIKE) & support.requests["handoff"]]
    m = one(said, r"^([\d,]+) requests \((.+?)\) went to the human team.*waited a median (.+?) "
                  r"for one of 40 people")  # fmt: skip
    assert int(m[1].replace(",", "")) == len(handed) and m[2] == pct(row["handoff_rate"])
    assert m[3] == duration(handed["handoff_wait_ms"].median())
    m = one(said, r"^The p95 \((.+?)\) is the human team, not the stack")
    assert m[1] == duration(row["p95_latency_ms"])


def test_crm_slow_and_stale_index_name_their_fault(support: Run) -> None:
    for phase, kind, target in (("crm-slow", "latency", "crm_lookup"),
                                ("stale-index", "degraded_retrieval", "retrieval")):  # fmt: skip
        calls = support.spans_of(phase)
        hit = calls[calls["fault"].str.split(",").apply(lambda f, p=phase: p in f)]
        m = one(support.said(phase), rf"^The {phase} fault \({kind} on {target}\) hit ([\d,]+)")
        assert int(m[1].replace(",", "")) == len(hit) > 0
    stale = support.phases.table.set_index("phase").loc["stale-index"]
    base = support.phases.table.set_index("phase").loc[BASELINE]
    m = one(support.said("stale-index"), r"^Wrong answers rose from (.+?) to (.+?) of requests")
    assert (m[1], m[2]) == (pct(base["wrong_rate"]), pct(stale["wrong_rate"]))


def test_headline_says_what_moved_against_the_baseline(support: Run) -> None:
    table = support.phases.table.set_index("phase")
    base = table.loc[BASELINE]
    head = support.said("premium-outage")[0]
    row = table.loc["premium-outage"]
    drop = 100 * (base["success_rate"] - row["success_rate"])
    assert f"success fell {drop:.1f} pp to {pct(row['success_rate'])}" in head
    assert (f"hand-offs rose from {pct(base['handoff_rate'])} to {pct(row['handoff_rate'])}"
            in head)  # fmt: skip
    assert support.said(BASELINE)[0].startswith("**baseline** (outside every window: ")


def test_figure_notes_explain_the_cdf_at_the_timeout_and_the_timeline(support: Run) -> None:
    cdf, timeline = support.phases.figures
    latency = support.requests["latency_ms"]
    above = ((latency >= 12_000) & (latency < 13_200)).sum()
    assert cdf.startswith(f"Latency CDF at the model call timeout (12 s): {above} requests "
                          f"({pct(above / len(latency))}) end within 10% above it")  # fmt: skip
    bucket = (support.requests["arrival_s"] // 10).astype(int)
    p95 = support.requests.groupby(bucket)["latency_ms"].quantile(0.95)
    assert f"above a minute in {(p95 > 60_000).sum()} of {len(p95)} buckets" in timeline
    assert "## Reading the figures" in support.md and timeline in support.md


# --------------------------------------------------------------------------- other runs


def test_a_suite_without_faults_gets_just_a_baseline_phase(tmp_path: Path) -> None:
    run = Run(tmp_path, ["faults=[]", "traffic.spikes=[]", "traffic.requests=600"])
    assert not suite_windows(run.suite)
    assert run.phases.table["phase"].tolist() == [BASELINE]
    assert run.phases.table.loc[0, "requests"] == 600
    assert list(run.phases.notes) == [BASELINE]
    (line,) = run.phases.notes[BASELINE]
    assert "no fault windows or spikes: the whole run is its baseline" in line
    section = run.md[run.md.index("## By phase") : run.md.index("### What moved")]
    assert len([x for x in section.splitlines() if x.startswith("| **baseline**")]) == 1
    assert len([x for x in section.splitlines() if x.startswith("| ")]) == 2  # header + one


def synthetic(arrivals: list[float], phases: list[str]) -> pd.DataFrame:
    n = len(arrivals)
    return pd.DataFrame({
        "request_id": np.arange(n), "arrival_s": arrivals, "phase": phases,
        "success": [True] * n, "outcome": ["success"] * n, "latency_ms": [100.0] * n,
        "cost_usd": [0.01] * n, "handoff": [False] * n, "escalated": [False] * n,
        "handoff_wait_ms": [0.0] * n, "served_by": ["fast"] * n,
    })  # fmt: skip


def test_overlapping_windows_make_their_own_phase_without_spans() -> None:
    windows = [TimeWindow(10, 30, "a"), TimeWindow(20, 40, SPIKE)]
    requests = synthetic([0, 5, 15, 25, 35, 50], ["baseline", "baseline", "a", f"a+{SPIKE}",
                                                  SPIKE, "baseline"])  # fmt: skip
    table = phase_table(requests, None, windows)
    assert table["phase"].tolist() == [BASELINE, "a", f"a+{SPIKE}", SPIKE]
    assert table["window"].tolist() == ["0-10, 40-50 s", "10-20 s", "20-30 s", "30-40 s"]
    assert table["seconds"].tolist() == [20, 10, 10, 10]
    assert table[["errors", "timeouts", "rejected", "queue_ms"]].isna().all().all()
    notes = phase_report(requests, None, {"parameters": {
        "faults.0.kind": {"value": "outage"}, "faults.0.start_s": {"value": 10.0},
        "faults.0.duration_s": {"value": 20.0}, "faults.0.name": {"value": "a"},
        "traffic.spikes.0.start_s": {"value": 20.0}, "traffic.spikes.0.duration_s": {"value": 20.0},
    }}).notes  # fmt: skip
    assert list(notes) == [BASELINE, "a", f"a+{SPIKE}", SPIKE]
    assert all(len(lines) == 1 for lines in notes.values())  # nothing moved, nothing to name


# --------------------------------------------------------------------------- HTML


def test_html_report_has_phases_sortable_tables_and_worded_results(support: Run) -> None:
    manifest = dict(support.manifest, thresholds=[
        {"key": "success", "expression": "rate>0.9", "value": 0.93, "passed": True},
        {"key": "handoff", "expression": "rate<0.01", "value": 0.08, "passed": False},
    ])  # fmt: skip
    html = run_html(support.summary, manifest, {}, support.phases)
    assert "<h2>By phase</h2>" in html and "<h3>What moved, and why</h3>" in html
    assert html.count('<table class="sortable">') == html.count("<table") >= 4
    assert "<th>result</th>" in html
    assert '<td class="l"><span class="pass">pass</span></td>' in html
    assert '<td class="l"><span class="fail">fail</span></td>' in html
    assert "✅" not in html and "❌" not in html
    assert "white-space:nowrap" in html and "addEventListener('click'" in html
    assert "<li><strong>premium-outage</strong>" in html


# --------------------------------------------------------------------------- formats


@given(st.floats(min_value=-1e12, max_value=1e12, allow_nan=False))
def test_numbers_never_use_an_exponent(v: float) -> None:
    for text in (number(v), number(v, sign=True), usd(abs(v)), duration(abs(v))):
        assert "e+" not in text and "e-" not in text, text
    if abs(v) >= 1000:
        assert number(v) == f"{v:,.0f}"


@pytest.mark.parametrize(
    ("fn", "value", "text"),
    [
        (duration, 20.0, "20 ms"), (duration, 8_500.0, "8.5 s"), (duration, 47_000.0, "47 s"),
        (duration, 150_000.0, "2.5 min"), (duration, 1_560_000.0, "26 min"),
        (duration, 7_200_000.0, "2.0 h"), (duration, math.nan, "-"),
        (usd, 0.0, "$0"), (usd, 0.00767, "$0.0077"), (usd, 0.134, "$0.134"), (usd, 1.5, "$1.50"),
        (number, 15_900.0, "15,900"), (number, 0.04585, "0.04585"), (number, 0.9, "0.9"),
        (number, 0.00001234, "0.00001234"),
    ],
)  # fmt: skip
def test_formats(fn: Callable[[float], str], value: float, text: str) -> None:
    assert fn(value) == text


def test_signed_margins_read_one_way() -> None:
    assert [number(v, sign=True) for v in (15_900.0, 7_877.0, 0.04585, -0.005454)] == [
        "+15,900", "+7,877", "+0.04585", "-0.005454",
    ]  # fmt: skip
