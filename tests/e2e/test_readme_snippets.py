"""The README's runnable snippets run in order in a fresh folder, as a newcomer would.

A block is runnable when the line before its fence is `<!-- run -->`. They run top to
bottom in one folder: bash blocks in bash (exit 0), SQL in DuckDB (at least one row), Python
in one namespace. The folder starts with links to the repository's scenarios, policies and
fixtures, a copy of the notebook (a copy: the notebook looks for runs/ above its own
folder), and the opening block's `evalx run` (its install is this test environment's), so
a later snippet meets every run an earlier one wrote: the DuckDB queries after the
governance example's runs, the notebook after everything.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
MARKED = re.compile(r"^<!-- run -->\n```(\w+)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def snippets() -> list[tuple[str, str]]:
    text = README.read_text(encoding="utf-8")
    opening = text.split("```bash\n")[1].split("\n")[0]  # venv && install && run
    first = ("bash", opening.split("&& ")[-1].removeprefix(".venv/bin/"))
    return [first, *((lang, body) for lang, body in MARKED.findall(text))]


def test_the_runnable_snippets_are_the_ones_a_newcomer_needs() -> None:
    found = snippets()
    assert found[0] == ("bash", "evalx run scenarios/support.yaml")
    assert {lang for lang, _ in found} == {"bash", "sql", "python"}
    bash = "\n".join(body for lang, body in found if lang == "bash")
    for command in ("evalx init", "evalx validate", "evalx schema", "--policy policies/strict",
                    "jupyter execute reports/analysis.ipynb"):  # fmt: skip
        assert command in bash
    assert sum(lang == "sql" for lang, _ in found) >= 3


def test_readme_snippets_run_in_order_in_a_fresh_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("scenarios", "policies", "fixtures"):
        (tmp_path / name).symlink_to(ROOT / name)
    (tmp_path / "reports").mkdir()
    shutil.copy(ROOT / "reports" / "analysis.ipynb", tmp_path / "reports")
    env = {k: v for k, v in os.environ.items() if k != "EVALX_RUNS"}
    env |= {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
            "MPLBACKEND": "agg", "JUPYTER_PLATFORM_DIRS": "1"}  # fmt: skip
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    for i, (lang, body) in enumerate(snippets()):
        where = f"snippet {i} ({lang}):\n{body}"
        if lang == "bash":
            proc = subprocess.run(["bash", "-euo", "pipefail", "-c", body], cwd=tmp_path,
                                  env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
            assert proc.returncode == 0, f"{where}\n{proc.stdout[-2000:]}{proc.stderr[-3000:]}"
        elif lang == "sql":
            rows = duckdb.sql(body).fetchall()
            assert rows, where
        elif lang == "python":
            exec(compile(body, f"README snippet {i}", "exec"), namespace)
        else:
            pytest.fail(f"{where}\nno runner for {lang}")
    assert (tmp_path / "my-suite" / "suite.yaml").is_file()
    assert (tmp_path / "suite.schema.json").read_text(encoding="utf-8").startswith("{")
    runs = namespace["runs"]
    suites = set(runs.manifests["suite"])  # type: ignore[attr-defined]
    assert suites == {"support", "two-tier", "policy-edge-cases"}
