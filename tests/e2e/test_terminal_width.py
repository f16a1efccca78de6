"""The terminal at 100 columns, and the help and output nits of issue 17.

Every table `evalx run`, `compare`, `sweep` and `report` print fits 100 columns with no cell
cut short ('…') and every table title and caption printed whole on one line; `--wide`
gives the full tables. The commands run in-process through typer's CliRunner (COLUMNS set
as a terminal would) so that the tables' titles can be read as they are made; the help
and usage checks run the installed `evalx`.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.table import Table
from rich.text import Text
from typer.testing import CliRunner

from harness.cli import _workers, app

RunEvalx = Callable[..., subprocess.CompletedProcess[str]]
WIDTH = 100
SMALL = ["--set", "traffic.requests=2500"]


class Output:
    """What a command printed, with the titles and captions of the tables it made."""

    def __init__(self, code: int, stdout: str, stderr: str, titles: list[str]) -> None:
        self.code, self.stdout, self.stderr, self.titles = code, stdout, stderr, titles

    @property
    def lines(self) -> list[str]:
        return self.stdout.splitlines()

    def check_fits(self, width: int = WIDTH) -> None:
        """No line past `width`, no cell cut, every title and caption line whole."""
        too_long = [line for line in self.lines if len(line) > width]
        assert not too_long, "\n".join(too_long)
        assert "…" not in self.stdout
        shown = {line.strip() for line in self.lines}
        for title in self.titles:
            for line in Text.from_markup(title).plain.splitlines():
                assert line.strip() in shown, f"{line!r} wraps or is cut:\n{self.stdout}"


@pytest.fixture
def evalx_in_process(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Output]]:
    """Run `evalx *args` in this process as a 100-column terminal would."""
    titles: list[str] = []
    made = Table.__init__

    def recording(self: Table, *args: Any, **kwargs: Any) -> None:
        made(self, *args, **kwargs)
        for part in (self.title, self.caption):
            if isinstance(part, str) and part:
                titles.append(part)

    monkeypatch.setattr(Table, "__init__", recording)

    def run(*args: str | Path, columns: int = WIDTH) -> Output:
        titles.clear()
        result = CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": str(columns)})
        if result.exception and not isinstance(result.exception, SystemExit):
            raise result.exception
        return Output(result.exit_code, result.stdout, result.stderr, list(titles))

    yield run


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, support_suite: Path) -> Path:
    """The support suite as shipped, and a candidate that escalates less."""
    root = tmp_path_factory.mktemp("runs")
    for name, extra in {"base": [], "cand": ["stack.escalation.confidence_threshold=0.5"]}.items():
        sets = [x for v in extra for x in ("--set", v)]
        result = CliRunner().invoke(app, ["run", str(support_suite), "--out", str(root / name),
                                          "-q", *sets])  # fmt: skip
        assert result.exit_code in (0, 1), result.stdout
    return root


# --------------------------------------------------------------------------- tables


def test_run_fits_100_columns_with_a_phase_table(
    evalx_in_process: Callable[..., Output], support_suite: Path, tmp_path: Path
) -> None:
    out = evalx_in_process("run", support_suite, "--out", tmp_path / "run", "--no-report")
    assert out.code == 0, out.stdout + out.stderr
    out.check_fits()
    for title in ("Per route", "Per phase (by arrival)", "Governance: violations let through "
                  "/ prevented, by kind"):  # fmt: skip
        assert title in out.titles
    phases = out.stdout[out.stdout.index("Per phase") :].splitlines()
    for phase in ("baseline", "crm-slow", "spike", "premium-outage", "stale-index"):
        assert any(line.startswith(f" {phase} ") for line in phases), phase
    header = next(line for line in out.lines if line.startswith(" route ") and "p95" in line)
    assert header.split() == ["route", "requests", "success", "95%", "CI", "p50", "p95", "p99",
                              "cost/req", "handoff", "violations"]  # fmt: skip
    assert re.search(r" all +8,000 +\d+\.\d% .* \$0\.\d{3} ", out.stdout)  # compact units


def test_run_wide_prints_every_column(
    evalx_in_process: Callable[..., Output], support_suite: Path, tmp_path: Path
) -> None:
    out = evalx_in_process("run", support_suite, *SMALL, "--out", tmp_path / "run",
                           "--no-report", "--wide")  # fmt: skip
    assert out.code in (0, 1), out.stdout + out.stderr
    assert max(len(line) for line in out.lines) > WIDTH
    for column in ("escalate", "fallback", "prevented", "p95 ms", "p95 answered", "refused",
                   "prohibited_action_executed"):  # fmt: skip
        assert column in out.stdout, column
    assert "…" not in out.stdout


def test_compare_fits_and_says_what_failed(
    evalx_in_process: Callable[..., Output], runs: Path, tmp_path: Path, support_suite: Path
) -> None:
    gates = support_suite.parents[1] / "reports" / "gates.yaml"
    out = evalx_in_process("compare", runs / "base", runs / "cand", "--gates", gates,
                           "--json", tmp_path / "r.json")  # fmt: skip
    assert out.code == 1
    out.check_fits()
    report = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))
    regressions = sum(r["verdict"] == "regression" for r in report["results"])
    gates_failed = sum(not g["passed"] for g in report["absolute"])
    thresholds = sum(not t["passed"] for t in report["thresholds"])
    assert regressions and gates_failed
    parts = [f"{regressions} regression{'s' if regressions > 1 else ''}",
             f"{gates_failed} absolute gate{'s' if gates_failed > 1 else ''}"]  # fmt: skip
    parts += [f"{thresholds} threshold{'s' if thresholds > 1 else ''}"] if thresholds else []
    assert out.lines[-1] == "FAIL: " + ", ".join(parts)
    assert out.lines[0] == f"baseline:  {runs / 'base'}"
    same = evalx_in_process("compare", runs / "base", runs / "base")
    assert same.code == 0 and same.lines[-1].startswith("PASS: no regression in ")
    wide = evalx_in_process("compare", runs / "base", runs / "cand", "--wide")
    assert "tolerance" in wide.stdout and "p99_latency_ms" in wide.stdout


def test_replications_and_report_fit(
    evalx_in_process: Callable[..., Output], support_suite: Path, runs: Path
) -> None:
    reps = evalx_in_process("run", support_suite, "--set", "traffic.requests=1000",
                            "--replications", "2", "--out", runs / "reps")  # fmt: skip
    assert reps.code == 0, reps.stdout + reps.stderr
    reps.check_fits()
    assert "Across replications (mean and 95% t-interval)" in reps.titles
    for fmt in ("md", "html"):
        out = evalx_in_process("report", runs / "base", "--format", fmt)
        assert out.code == 0 and out.lines == [str(runs / "base" / f"report.{fmt}")]
        out.check_fits()


def test_sweep_fits_explains_its_marks_and_writes_where_its_help_says(
    evalx_in_process: Callable[..., Output],
    evalx: RunEvalx,
    support_suite: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)  # no --out: the documented default, under the working folder
    out = evalx_in_process("sweep", support_suite, *SMALL, "--replications", "2", "--confirm",
                           "1", "--target", "share{served_by:premium}=0.2")  # fmt: skip
    assert out.code in (0, 1), out.stdout + out.stderr
    out.check_fits()
    assert "★ recommended   ◆ the suite's current setting" in {x.strip() for x in out.lines}
    constraints = out.stdout[out.stdout.find("margin [95% CI]") :]
    assert not re.search(r"\de[+-]\d", constraints), constraints
    (sweep_dir,) = (tmp_path / "runs" / "suite=support").glob("sweep=*")
    assert (sweep_dir / "recommendation.json").exists()
    help_text = " ".join(evalx("sweep", "--help", env={"COLUMNS": "100"}).stdout.split())
    assert "(default: runs/suite=<name>/sweep=<id>/)" in help_text
    rec = json.loads((sweep_dir / "recommendation.json").read_text(encoding="utf-8"))
    threshold = rec["target"]["threshold"]
    assert len(repr(threshold)) <= 8, threshold  # 0.7458, not 0.7355452179908752
    assert rec["target"]["set"].endswith(f"={threshold!r}")
    assert f"threshold {threshold} gives share" in out.stdout


# --------------------------------------------------------------------------- help and usage


def test_command_list_is_never_cut(evalx: RunEvalx) -> None:
    for columns in ("80", "100"):
        for group in ([], ["fit"]):
            text = evalx(*group, "--help", env={"COLUMNS": columns}).stdout
            listed = text[text.index("Commands:") :].splitlines()[1:]
            assert listed and not [line for line in listed if line.rstrip().endswith("...")]


MY_COMMANDS = ("validate", "run", "record", "compare", "sweep", "report", "export-traces")


def commands(evalx: RunEvalx, *group: str) -> list[str]:
    text = evalx(*group, "--help").stdout
    return re.findall(r"^  ([a-z-]+)  ", text[text.index("Commands:") :], re.M)


def option_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if re.match(r"^  (-[a-z], )?--[a-z]", line)]


def test_options_name_their_values_in_words(evalx: RunEvalx) -> None:
    """Every option of every command, fit's included: FILE, N, KEY=VALUE, never typer's
    <path>, <int> or <list[str]>."""
    names = [[c] for c in commands(evalx) if c != "fit"] + [["fit", c] for c in
                                                             commands(evalx, "fit")]  # fmt: skip
    assert set(MY_COMMANDS) <= {n[0] for n in names} and len(names) > len(MY_COMMANDS)
    for name in names:
        text = evalx(*name, "--help", env={"COLUMNS": "100"}).stdout
        typed = [
            line for line in option_lines(text) if re.search(r"--[a-z-]+ <[A-Za-z\[\]]+>", line)
        ]
        assert not typed, (name, typed)
    run = evalx("run", "--help", env={"COLUMNS": "100"}).stdout
    assert "--set KEY=VALUE" in run and "Usage: evalx run [OPTIONS] {SUITE}" in run
    assert "--executor inline|process|dask" in run and "--workers N" in run


@pytest.mark.parametrize(
    "flags",
    [["--executor", "foo"], ["--executor", "process"], ["--workers", "3"],
     ["--scheduler", "tcp://127.0.0.1:1"], ["--resume"]],
)  # fmt: skip
def test_replication_options_need_replications(
    evalx: RunEvalx, support_suite: Path, tmp_path: Path, flags: list[str]
) -> None:
    proc = evalx("run", support_suite, "--out", tmp_path / "run", *flags)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith(f"error: {flags[0]}: only with --replications R")
    assert not (tmp_path / "run").exists()


def test_workers_default_the_same_way_for_run_and_sweep(evalx: RunEvalx) -> None:
    def workers_help(command: str) -> str:
        text = " ".join(evalx(command, "--help", env={"COLUMNS": "100"}).stdout.split())
        return text[text.index("--workers N") : text.index(")", text.index("--workers N")) + 1]

    assert workers_help("run") == workers_help("sweep")
    assert "default: 2 with --executor process or dask, else 1" in workers_help("run")
    assert _workers(None, None) == ("inline", 1)
    assert _workers(None, 3) == ("process", 3)
    assert _workers("process", None) == ("process", 2)
    assert _workers("dask", None) == ("dask", 2)
    assert _workers("inline", None) == ("inline", 1)
