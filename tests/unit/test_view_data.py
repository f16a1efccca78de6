"""The viewer's data (harness.view): what the page embeds, how it is bounded and escaped,
and the loopback server's answers. The page itself is tested in Chromium
(tests/e2e/test_view.py)."""

from __future__ import annotations

import http.client
import json
import re
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from harness.errors import EvalxError
from harness.integrity import IntegrityError
from harness.run import simulate, write
from harness.spec import load_suite
from harness.storage import REQUESTS, SPANS
from harness.view import (
    Run,
    changed_rows,
    detail,
    json_block,
    make_server,
    notable,
    open_run,
    payload,
    render,
)

ROOT = Path(__file__).resolve().parents[2]
SUITE = ROOT / "scenarios" / "support.yaml"
KEEP_TEXT = "policies.retention.store_text=true"


def make_run(out: Path, *overrides: str) -> Path:
    loaded = load_suite(SUITE, ["traffic.requests=300", *overrides])
    write(out, loaded, simulate(loaded.suite), out.name, ["test"])
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("view")
    texts = root / "texts.jsonl"
    texts.write_text(
        json.dumps({"id": "x1", "text": "</script><script>alert(1)</script>", "task_class":
                    "routine"}) + "\n"
        + json.dumps({"id": "x2", "text": "a \u2028 <!-- & \"q\"", "task_class": "routine"})
        + "\n",
        encoding="utf-8",
    )  # fmt: skip
    return {
        "base": make_run(root / "base", KEEP_TEXT),
        "cand": make_run(root / "cand", KEEP_TEXT, "stack.escalation.confidence_threshold=0.8"),
        "other_seed": make_run(root / "other", "seed=7"),
        "plain": make_run(root / "plain"),
        "texts": make_run(root / "texts", KEEP_TEXT, f"traffic.file={texts}"),
    }


@pytest.fixture(scope="module")
def base(runs: dict[str, Path]) -> Run:
    return open_run(runs["base"])


def decode(column: Any, n: int) -> list[Any]:
    if isinstance(column, dict) and "fill" in column:
        return [column["fill"]] * n
    if isinstance(column, dict):
        return [column["dict"][c] for c in column["codes"]]
    return list(column)


def test_the_table_holds_every_request_with_its_values(base: Run) -> None:
    data = payload([base])
    rows = data["runs"][0]["rows"]
    frame = pd.read_parquet(base.path / REQUESTS)
    assert rows["n"] == len(frame) == 300 and rows["row"] is None  # None: every row, in order
    cols = rows["columns"]
    for name in ("route", "outcome", "phase", "tenant", "violation_kinds", "success", "handoff"):
        assert decode(cols[name], 300) == frame[name].tolist(), name
    assert cols["tenant"] == {"fill": ""}  # one value throughout
    assert cols["request_id"] == frame["request_id"].tolist()
    assert np.allclose(cols["latency_ms"], frame["latency_ms"], atol=0.05)
    assert np.allclose(cols["cost_usd"], frame["cost_usd"], atol=5e-7)
    assert data["runs"][0]["rows_note"] is None and data["runs"][0]["details_note"] is None
    assert set(data["runs"][0]["details"]) == {str(i) for i in range(300)}  # 300 < MAX_DETAILS
    assert "pairing" not in data


def test_a_request_detail_is_its_spans_in_order(base: Run) -> None:
    spans = pd.read_parquet(base.path / SPANS)
    requests = pd.read_parquet(base.path / REQUESTS)
    row = int(spans.groupby("request_id").size().idxmax())
    got = detail(base, row)
    mine = spans[spans["request_id"] == row].sort_values("span_index")
    assert [s["kind"] for s in got["spans"]] == mine["kind"].tolist()
    assert [s["name"] for s in got["spans"]] == mine["name"].tolist()
    assert np.allclose([s["duration_ms"] for s in got["spans"]], mine["duration_ms"], atol=0.05)
    arrival = requests.loc[row, "arrival_s"]
    start = (mine["start_s"] - arrival) * 1000
    assert np.allclose([s["start_ms"] for s in got["spans"]], start, atol=0.05)
    assert got["prompt"] == requests.loc[row, "prompt"] != ""
    assert got["answer"] == requests.loc[row, "answer"]
    assert "route" not in got["request"] and "input_tokens" in got["request"]
    with pytest.raises(IndexError):
        detail(base, 300)


def test_text_is_left_out_when_the_policy_did_not_retain_it(runs: dict[str, Path]) -> None:
    run = open_run(runs["plain"])
    assert not run.text_retained
    data = payload([run], max_details=5)
    assert data["runs"][0]["text_retained"] is False
    assert all("prompt" not in d for d in data["runs"][0]["details"].values())


def test_details_are_bounded_notable_requests_first(base: Run) -> None:
    data = payload([base], max_details=10)
    info = data["runs"][0]
    embedded = [int(k) for k in info["details"]]
    keep = notable(base.requests)
    assert len(embedded) == 10 and keep.sum() >= 10
    assert keep[embedded].all()
    assert "10 of 300 requests" in info["details_note"] and "--serve" in info["details_note"]
    assert payload([base], max_details=10, served=True)["runs"][0]["details_note"] is None
    assert payload([base], max_details=0)["runs"][0]["details"] == {}


def test_rows_past_the_bound_keep_every_notable_request_and_thin_the_rest(base: Run) -> None:
    keep = notable(base.requests)
    cap = int(keep.sum()) + 20
    info = payload([base], max_rows=cap, max_details=0)["runs"][0]
    shown = info["rows"]["row"]
    assert len(shown) == info["rows"]["n"] == cap and shown == sorted(shown)
    assert set(np.flatnonzero(keep)) <= set(shown)
    route = decode(info["rows"]["columns"]["route"], cap)
    assert route == base.requests["route"].iloc[shown].tolist()
    assert info["rows_note"].startswith(f"showing {cap:,} of 300 requests")


def test_two_runs_of_one_seed_pair_and_list_the_changed_requests(
    runs: dict[str, Path], base: Run
) -> None:
    cand = open_run(runs["cand"])
    b, c = base.requests, cand.requests
    expected = (
        (b["success"] != c["success"]) | (b["outcome"] != c["outcome"]) | (b["route"] != c["route"])
    )
    rows, what = changed_rows(b, c)
    assert rows.tolist() == np.flatnonzero(expected).tolist() and len(rows) > 0
    assert all(w and set(w.split(", ")) <= {"success", "outcome", "route"} for w in what)
    data = payload([base, cand], max_details=len(rows))
    pair = data["pairing"]
    assert pair["paired"] and pair["problem"] is None and pair["changed"] == rows.tolist()
    for side in data["runs"]:  # the changed requests come first in the embedded details
        assert set(side["details"]) == {str(r) for r in rows}


def test_runs_of_different_seeds_are_not_paired(runs: dict[str, Path], base: Run) -> None:
    data = payload([base, open_run(runs["other_seed"])], max_details=0)
    assert data["pairing"]["paired"] is False
    assert "seeds differ (42 vs 7)" in data["pairing"]["problem"]
    assert data["pairing"]["changed"] == []


def test_the_data_block_cannot_end_its_script_element(runs: dict[str, Path]) -> None:
    run = open_run(runs["texts"])
    data = payload([run])
    assert data["runs"][0]["details"]["0"]["prompt"] == "</script><script>alert(1)</script>"
    page = render(data)
    block = re.search(r'<script type="application/json" id="evalx-data">(.*?)</script>', page,
                      re.S)  # fmt: skip
    assert block is not None and "<" not in block.group(1) and "\u2028" not in block.group(1)
    assert json.loads(block.group(1)) == data
    assert page.count("<script") == 2  # the data block and the viewer's own script
    assert json.loads(json_block({"t": "<&>\u2029"})) == {"t": "<&>\u2029"}


def test_the_page_allows_only_its_own_script_and_style(base: Run) -> None:
    page = render(payload([base], max_details=0))
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', page)
    assert csp is not None
    policy = csp.group(1)
    assert "default-src &#x27;none&#x27;" in policy and "script-src &#x27;sha256-" in policy
    assert "unsafe-inline" not in policy and "http" not in policy


def test_missing_and_damaged_runs_are_refused(base: Run, tmp_path: Path) -> None:
    with pytest.raises(EvalxError, match="no such run directory"):
        open_run(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(EvalxError, match="not a run directory"):
        open_run(tmp_path / "empty")
    copy = Path(shutil.copytree(base.path, tmp_path / "copy"))
    body = (copy / SPANS).read_bytes()
    (copy / SPANS).write_bytes(body[: len(body) // 2])
    with pytest.raises(IntegrityError, match="truncated"):
        open_run(copy)


@pytest.fixture
def server(base: Run) -> Iterator[tuple[str, int]]:
    srv = make_server([base], "<!DOCTYPE html><title>t</title>", 0)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield srv.server_address[0], srv.server_address[1]
    finally:
        srv.shutdown()
        srv.server_close()


def get(address: tuple[str, int], path: str, host: str | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(*address, timeout=10)
    try:
        conn.putrequest("GET", path, skip_host=True)
        conn.putheader("Host", host or f"127.0.0.1:{address[1]}")
        conn.endheaders()
        res = conn.getresponse()
        return res.status, res.read()
    finally:
        conn.close()


def test_the_server_answers_the_page_and_any_request_on_loopback_only(
    server: tuple[str, int], base: Run
) -> None:
    assert server[0] == "127.0.0.1"
    status, body = get(server, "/")
    assert status == 200 and body.startswith(b"<!DOCTYPE html>")
    status, body = get(server, "/api/detail?run=0&row=17")
    assert status == 200 and json.loads(body) == json.loads(json.dumps(detail(base, 17)))
    assert get(server, "/api/detail?run=0&row=17", host=f"localhost:{server[1]}")[0] == 200
    assert get(server, "/", host="evil.example:80")[0] == 403  # DNS rebinding
    assert get(server, "/api/detail?run=0&row=300")[0] == 404
    assert get(server, "/api/detail?run=1&row=0")[0] == 400
    assert get(server, "/api/detail?row=x")[0] == 400
    assert get(server, "/etc/passwd")[0] == 404
