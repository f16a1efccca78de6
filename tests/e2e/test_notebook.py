"""reports/analysis.ipynb runs top to bottom on a fresh folder of runs.

The kernel is the `python3` kernelspec ipykernel installs into the environment
(`<sys.prefix>/share/jupyter/kernels`); jupyter_client starts it with this interpreter,
so `pip install -e .[dev]` is all the setup it needs.
"""

from __future__ import annotations

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


def test_notebook_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "runs"
    # same suite and seed, two thresholds: the notebook's paired comparison runs too
    make_run(root / "suite=support" / "run=base", 7, ["traffic.requests=400"])
    make_run(
        root / "suite=support" / "run=strict",
        7,
        ["traffic.requests=400", "stack.escalation.confidence_threshold=0.7"],
    )
    monkeypatch.setenv("EVALX_RUNS", str(root))
    monkeypatch.setenv("MPLBACKEND", "agg")
    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")  # silences jupyter_core's path warning
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(
        nb, kernel_name="python3", timeout=120, resources={"metadata": {"path": str(REPO)}}
    )
    client.execute()  # raises CellExecutionError, with the cell and traceback, on any error
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
    text = "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))
    assert "base vs strict: 400 paired requests" in text
