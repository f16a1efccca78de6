"""`evalx --help` must start fast: the CLI module may not import the heavy libraries."""

from __future__ import annotations

import subprocess
import sys


def test_cli_import_leaves_pandas_pyarrow_numpy_unloaded() -> None:
    code = (
        "import sys, harness.cli; "
        "print(sorted(m for m in ('pandas', 'pyarrow', 'numpy', 'scipy', 'pydantic') "
        "if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == "[]"
