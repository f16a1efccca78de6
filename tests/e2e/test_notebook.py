"""reports/analysis.ipynb runs top to bottom on a fresh folder of runs.

The kernel is the `python3` kernelspec ipykernel installs into the environment
(`<sys.prefix>/share/jupyter/kernels`); jupyter_client starts it with this interpreter,
so `pip install -e .[dev]` is all the setup it needs. One test drives it with nbclient
and `EVALX_RUNS`, the other as a user would: `jupyter execute` from another folder, the
runs found in the project root.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from harness.run import simulate, write
from harness.spec import load_suite

REPO = Path(__file__).parents[2]
NOTEBOOK = REPO / "reports" / "analysis.ipynb"


def make_run(out: Path, seed: int, overrides: list[str]) -> None:
    loaded = load_suite(REPO / "scenarios" / "support.yaml", [f"seed={seed}", *overrides])
    write(out, loaded, simulate(loaded.suite), out.name.removeprefix("run="), ["test"])


def test_committed_notebook_has_no_outputs() -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("project") / "runs"
    # same suite and seed, two thresholds: the notebook's paired comparison runs too
    make_run(root / "suite=support" / "run=base", 7, ["traffic.requests=400"])
    make_run(
        root / "suite=support" / "run=strict",
        7,
        ["traffic.requests=400", "stack.escalation.confidence_threshold=0.7"],
    )
    return root


def printed(nb: nbformat.NotebookNode) -> str:
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
    return "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))


def test_notebook_runs(runs_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVALX_RUNS", str(runs_root))
    monkeypatch.setenv("MPLBACKEND", "agg")
    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")  # silences jupyter_core's path warning
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(
        nb, kernel_name="python3", timeout=120, resources={"metadata": {"path": str(REPO)}}
    )
    client.execute()  # raises CellExecutionError, with the cell and traceback, on any error
    assert "base vs strict: 400 paired requests" in printed(nb)


def test_jupyter_execute_finds_the_project_runs_from_any_folder(
    runs_root: Path, tmp_path: Path
) -> None:
    """As shipped: the notebook in <project>/reports/, runs in <project>/runs/, no
    EVALX_RUNS, `jupyter execute` started from an unrelated folder."""
    project = runs_root.parent
    (project / "reports").mkdir(exist_ok=True)
    notebook = Path(shutil.copy(NOTEBOOK, project / "reports" / "analysis.ipynb"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "EVALX_RUNS"}
    env |= {"MPLBACKEND": "agg", "JUPYTER_PLATFORM_DIRS": "1"}
    jupyter = Path(sys.executable).parent / "jupyter"
    proc = subprocess.run(
        [str(jupyter), "execute", str(notebook), "--output=executed"],
        cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    nb = nbformat.read(project / "reports" / "executed.ipynb", as_version=4)
    assert "base vs strict: 400 paired requests" in printed(nb)
