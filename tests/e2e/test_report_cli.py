"""Reports after a run: report.md with its figures, a self-contained HTML, OTLP traces."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path

RunEvalx = Callable[..., subprocess.CompletedProcess[str]]
FIGURES = {"latency_cdf.png", "timeline.png", "cost.png", "paths.png"}


class Images(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.sources: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            self.sources.append(dict(attrs).get("src") or "")


def test_run_writes_report_md_with_its_figures(
    evalx: RunEvalx, support_suite: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    proc = evalx("run", support_suite, "--set", "traffic.requests=1200", "--out", out, "-q",
                 "--otlp-json", tmp_path / "traces.json")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert {p.name for p in out.iterdir()} >= FIGURES
    for name in FIGURES:
        body = (out / name).read_bytes()
        assert body[:8] == b"\x89PNG\r\n\x1a\n" and len(body) > 20_000
    md = (out / "report.md").read_text(encoding="utf-8")
    assert md.startswith("# evalx run: support")
    assert "## Per route" in md and "## Thresholds" in md
    for name in FIGURES:
        assert f"]({name})" in md
    traces = json.loads((tmp_path / "traces.json").read_text(encoding="utf-8"))
    assert len(traces["resourceSpans"][0]["scopeSpans"][0]["spans"]) > 1200


def test_html_report_is_one_file_with_inlined_images(
    evalx: RunEvalx, support_suite: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    assert evalx("run", support_suite, "--set", "traffic.requests=600", "--out", out, "-q",
                 "--no-report").returncode == 0  # fmt: skip
    assert not (out / "report.md").exists()
    proc = evalx("report", out, "--format", "html")
    assert proc.returncode == 0, proc.stderr
    page = (out / "report.html").read_text(encoding="utf-8")
    parser = Images()
    parser.feed(page)
    assert len(parser.sources) == 4
    assert all(src.startswith("data:image/png;base64,") for src in parser.sources)
    assert '<table class="sortable">' in page and "evalx run: support" in page
    traces = evalx("export-traces", out)
    assert traces.returncode == 0 and (out / "traces.otlp.json").exists()


def test_report_on_a_non_run_is_a_usage_error(evalx: RunEvalx, tmp_path: Path) -> None:
    proc = evalx("report", tmp_path)
    assert proc.returncode == 2 and "not a run directory" in proc.stderr
