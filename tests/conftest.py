"""Shared fixtures: the example suite and a runner for the real `evalx` command."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

RunEvalx = Callable[..., subprocess.CompletedProcess[str]]


def pytest_report_header(config: pytest.Config) -> str:
    """Which engine path the tests run: compiled (the install's mypyc build) or pure, and why."""
    from harness._native import STATUS

    return f"evalx engine: {STATUS}"


@pytest.fixture(scope="session")
def support_suite() -> Path:
    """The example suite shipped in scenarios/."""
    return ROOT / "scenarios" / "support.yaml"


def _copy_suite(name: str, into: Path) -> Path:
    shutil.copytree(ROOT / "policies", into / "policies", dirs_exist_ok=True)
    (into / "scenarios").mkdir(exist_ok=True)
    return Path(shutil.copy(ROOT / "scenarios" / name, into / "scenarios" / name))


@pytest.fixture(scope="session")
def copy_suite() -> Callable[[str, Path], Path]:
    """Copy scenarios/<name> and the policies it refers to into a folder; the copy's path."""
    return _copy_suite


@pytest.fixture(scope="session")
def evalx_exe() -> Path:
    """The installed console script (next to the interpreter running the tests)."""
    exe = Path(sys.executable).parent / "evalx"
    assert exe.exists(), f"{exe} is not installed; pip install -e . first"
    return exe


@pytest.fixture(scope="session")
def evalx(evalx_exe: Path) -> RunEvalx:
    """Run `evalx *args` as a subprocess; returns the completed process (text, not checked)."""

    def run(
        *args: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(evalx_exe), *map(str, args)],
            cwd=cwd,
            env={**os.environ, **env} if env else None,
            capture_output=True,
            text=True,
            timeout=120,
        )

    return run
