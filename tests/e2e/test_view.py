"""`evalx view` in a real headless Chromium (Debian's chromium and chromium-driver, driven
by selenium): the table, its filters and sorting, a request's waterfall against
spans.parquet, escaping, two runs' changed requests, the served viewer and the bounds.

Without Chromium the tests are skipped, except in CI (CI=true), where they must run.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

RunEvalx = Callable[..., subprocess.CompletedProcess[str]]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1400,1000")  # fmt: skip
KEEP_TEXT = "policies.retention.store_text=true"
XSS = '<script>window.__xss = 1</script><img src=x onerror="window.__xss = 2"> & done'


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).exists()]
    if missing:
        why = f"{', '.join(missing)} not installed (apt-get install chromium chromium-driver)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{why}; the viewer must be tested in CI")
        pytest.skip(why)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="evalx-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def make_run(evalx: RunEvalx, support: Path, out: Path, *sets: str) -> Path:
    args = [a for s in ("traffic.requests=300", KEEP_TEXT, *sets) for a in ("--set", s)]
    done = evalx("run", support, *args, "--out", out, "--quiet")
    assert out.joinpath("manifest.json").exists(), done.stderr
    return out


@pytest.fixture(scope="module")
def runs(
    evalx: RunEvalx, support_suite: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("view")
    texts = root / "texts.jsonl"
    lines = [{"id": XSS, "text": XSS, "task_class": "routine"},
             {"id": "plain", "text": "Where is order A123?", "task_class": "routine"}]  # fmt: skip
    texts.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return {
        "base": make_run(evalx, support_suite, root / "base"),
        "cand": make_run(
            evalx, support_suite, root / "cand", "stack.escalation.confidence_threshold=0.8"
        ),
        "texts": make_run(evalx, support_suite, root / "texts", f"traffic.file={texts}"),
    }


@pytest.fixture(scope="module")
def base_view(evalx: RunEvalx, runs: dict[str, Path]) -> Path:
    done = evalx("view", runs["base"])
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(runs["base"] / "view.html")
    return runs["base"] / "view.html"


def requests(run: Path) -> pd.DataFrame:
    return pd.read_parquet(run / "requests.parquet")


def spans(run: Path, rid: int) -> pd.DataFrame:
    frame = pd.read_parquet(run / "spans.parquet")
    return frame[frame["request_id"] == rid].sort_values("span_index")


def load(driver: Any, url: str) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)
    WebDriverWait(driver, 30).until(lambda d: d.find_element("id", "count").text)


def table(driver: Any) -> list[dict[str, str]]:
    """The visible table, one dict per row: column key -> the cell's text."""
    rows: list[dict[str, str]] = driver.execute_script(
        "return [...document.querySelectorAll('#requests tbody tr')].map(tr =>"
        " Object.fromEntries([...tr.cells].map(td => [td.dataset.key, td.textContent])))"
    )
    return rows


def ids(driver: Any) -> list[int]:
    return [int(r["request_id"]) for r in table(driver)]


def choose(driver: Any, filter_id: str, value: str) -> None:
    from selenium.webdriver.support.ui import Select

    Select(driver.find_element("id", filter_id)).select_by_value(value)


def search(driver: Any, text: str) -> None:
    """Replace the search box's text by typing, as a user does."""
    from selenium.webdriver.common.keys import Keys

    box = driver.find_element("id", "f-q")
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(Keys.BACKSPACE)
    if text:
        box.send_keys(text)


def open_request(driver: Any, rid: int, sides: int = 1) -> list[Any]:
    """Type the id into the search box, click its row, wait for its waterfall(s)."""
    from selenium.webdriver.support.ui import WebDriverWait

    search(driver, str(rid))
    row = [r for r in driver.find_elements("css selector", "#requests tbody tr")
           if r.find_element("css selector", "td").text == str(rid)]  # fmt: skip
    assert len(row) == 1
    row[0].click()
    WebDriverWait(driver, 30).until(
        lambda d: d.find_element("id", "detail-title").text.startswith(f"Request {rid}")
    )
    found: list[Any] = driver.find_elements("css selector", "#detail .side")
    assert len(found) == sides
    return found


def waterfall(side: Any) -> list[tuple[str, str, str]]:
    """(kind, name, duration text) of each span row, as shown."""
    return [
        (r.get_attribute("data-kind"), r.get_attribute("data-name"),
         r.find_element("css selector", ".span-duration").text)
        for r in side.find_elements("css selector", ".span-row")
    ]  # fmt: skip


def expected(frame: pd.DataFrame) -> list[tuple[str, str, str]]:
    """(kind, name, duration text) of each span, as the page should show them."""
    rows = zip(frame["kind"], frame["name"], frame["duration_ms"], strict=True)
    return [(kind, name, f"{round(ms, 1):,.1f} ms") for kind, name, ms in rows]


# --------------------------------------------------------------------------- one run


def test_the_table_shows_every_request(
    browser: Any, base_view: Path, runs: dict[str, Path]
) -> None:
    load(browser, base_view.as_uri())
    frame = requests(runs["base"])
    assert ids(browser) == frame["request_id"].tolist()
    assert browser.find_element("id", "count").text == "300 of 300 requests"
    first = table(browser)[0]
    assert first["route"] == frame["route"][0] and first["outcome"] == frame["outcome"][0]
    assert first["latency_ms"] == f"{round(frame['latency_ms'][0], 1):,.1f}"
    assert browser.get_log("browser") == []  # no script error, no CSP violation


def test_filters_by_route_and_outcome(browser: Any, base_view: Path, runs: dict[str, Path]) -> None:
    load(browser, base_view.as_uri())
    frame = requests(runs["base"])
    choose(browser, "f-route", "reasoning")
    shown = table(browser)
    assert {r["route"] for r in shown} == {"reasoning"}
    assert ids(browser) == frame.loc[frame["route"] == "reasoning", "request_id"].tolist()
    choose(browser, "f-outcome", "wrong")
    both = frame[(frame["route"] == "reasoning") & (frame["outcome"] == "wrong")]
    assert len(both) > 0 and ids(browser) == both["request_id"].tolist()
    assert browser.find_element("id", "count").text == f"{len(both)} of 300 requests"
    choose(browser, "f-route", "")
    assert ids(browser) == frame.loc[frame["outcome"] == "wrong", "request_id"].tolist()


def test_sorts_by_latency_both_ways(browser: Any, base_view: Path, runs: dict[str, Path]) -> None:
    load(browser, base_view.as_uri())
    frame = requests(runs["base"]).assign(shown=lambda f: f["latency_ms"].round(1))
    header = browser.find_element("css selector", 'th[data-key="latency_ms"]')
    header.find_element("tag name", "button").click()
    header = browser.find_element("css selector", 'th[data-key="latency_ms"]')
    assert header.get_attribute("aria-sort") == "ascending"
    up = frame.sort_values(["shown", "request_id"])
    assert ids(browser) == up["request_id"].tolist()
    latencies = [float(r["latency_ms"].replace(",", "")) for r in table(browser)]
    assert latencies == sorted(latencies)
    header.find_element("tag name", "button").click()
    header = browser.find_element("css selector", 'th[data-key="latency_ms"]')
    assert header.get_attribute("aria-sort") == "descending"
    down = frame.assign(neg=-frame["shown"]).sort_values(["neg", "request_id"])
    assert ids(browser) == down["request_id"].tolist()


def test_a_request_opens_as_a_waterfall_of_its_spans(
    browser: Any, base_view: Path, runs: dict[str, Path]
) -> None:
    load(browser, base_view.as_uri())
    every = pd.read_parquet(runs["base"] / "spans.parquet")
    retried = every.loc[every["kind"] == "backoff", "request_id"]  # a retry with a backoff
    rid = int(retried.iloc[0]) if len(retried) else int(every["request_id"].mode()[0])
    (side,) = open_request(browser, rid)
    mine = spans(runs["base"], rid)
    assert waterfall(side) == expected(mine)
    bars = side.find_elements("css selector", ".span-row .wf-bar")
    assert len(bars) == len(mine) and all(b.size["width"] >= 1 for b in bars)
    frame = requests(runs["base"]).set_index("request_id")
    assert side.find_element("css selector", "pre.text-prompt").text == frame.loc[rid, "prompt"]
    assert side.find_element("css selector", "pre.text-answer").text == frame.loc[rid, "answer"]
    if len(retried):
        assert "retry" in [t.text for t in side.find_elements("css selector", ".tag")]


def test_request_text_renders_as_text_never_as_markup(
    browser: Any, evalx: RunEvalx, runs: dict[str, Path], tmp_path: Path
) -> None:
    page = tmp_path / "texts.html"
    assert evalx("view", runs["texts"], "--out", page).returncode == 0
    load(browser, page.as_uri())
    (side,) = open_request(browser, 0)
    assert side.find_element("css selector", "pre.text-prompt").text == XSS
    assert browser.execute_script("return window.__xss") is None
    assert browser.execute_script("return document.querySelectorAll('img, script').length") == 2
    assert browser.get_log("browser") == []


# --------------------------------------------------------------------------- two runs


def test_two_runs_show_exactly_the_changed_requests_side_by_side(
    browser: Any, evalx: RunEvalx, runs: dict[str, Path]
) -> None:
    done = evalx("view", runs["base"], runs["cand"])
    assert done.returncode == 0, done.stderr
    page = runs["cand"] / "view-vs-base.html"
    assert done.stdout.strip() == str(page)
    b, c = requests(runs["base"]), requests(runs["cand"])
    flipped = (
        (b["success"] != c["success"]) | (b["outcome"] != c["outcome"]) | (b["route"] != c["route"])
    )
    want = b.loc[flipped, "request_id"].tolist()
    assert want, "the candidate setting changed no request"
    load(browser, page.as_uri())
    assert browser.find_element("id", "tab-changed").get_attribute("aria-selected") == "true"
    assert ids(browser) == want
    shown = table(browser)[0]
    rid = want[0]
    assert (shown["b.outcome"], shown["c.outcome"]) == (b["outcome"][rid], c["outcome"][rid])
    left, right = open_request(browser, rid, sides=2)
    assert waterfall(left) == expected(spans(runs["base"], rid))
    assert waterfall(right) == expected(spans(runs["cand"], rid))
    browser.find_element("id", "tab-run1").click()
    search(browser, "")
    assert ids(browser) == c["request_id"].tolist()
    assert table(browser)[rid]["outcome"] == c["outcome"][rid]


# --------------------------------------------------------------------------- served, bounded


def test_a_file_past_its_detail_bound_says_how_to_see_the_rest(
    browser: Any, evalx: RunEvalx, runs: dict[str, Path], tmp_path: Path
) -> None:
    page = tmp_path / "bounded.html"
    assert evalx("view", runs["base"], "--details", "0", "--out", page).returncode == 0
    load(browser, page.as_uri())
    assert "spans and text of 0 of 300 requests" in browser.find_element("id", "notes").text
    (side,) = open_request(browser, 5)
    assert side.find_elements("css selector", ".span-row") == []
    assert "--serve" in side.text


def test_the_served_viewer_loads_any_request_on_demand(browser: Any, evalx_exe: Path,
                                                      runs: dict[str, Path]) -> None:  # fmt: skip
    proc = subprocess.Popen(
        [str(evalx_exe), "view", str(runs["base"]), "--port", "0", "--details", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        line: list[str] = []
        reader = threading.Thread(target=lambda: line.append(proc.stdout.readline()))  # type: ignore[union-attr]
        reader.start()
        reader.join(60)
        assert line and line[0].startswith("serving http://127.0.0.1:"), line
        url = line[0].split()[1]
        load(browser, url)
        assert browser.find_element("id", "notes").text.count("spans and text of") == 0
        rid = 7
        (side,) = open_request(browser, rid)
        assert waterfall(side) == expected(spans(runs["base"], rid))
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def test_missing_or_damaged_runs_exit_2_with_one_line(
    evalx: RunEvalx, runs: dict[str, Path], tmp_path: Path
) -> None:
    done = evalx("view", tmp_path / "nope")
    assert done.returncode == 2 and done.stderr.strip().count("\n") == 0
    assert done.stderr.startswith("error: ") and "no such run directory" in done.stderr
    copy = Path(shutil.copytree(runs["base"], tmp_path / "copy"))
    (copy / "view.html").unlink(missing_ok=True)
    body = (copy / "requests.parquet").read_bytes()
    (copy / "requests.parquet").write_bytes(body[:-100])
    done = evalx("view", copy)
    assert done.returncode == 2 and done.stderr.strip().count("\n") == 0
    assert "requests.parquet" in done.stderr and "truncated" in done.stderr
    assert not (copy / "view.html").exists()
