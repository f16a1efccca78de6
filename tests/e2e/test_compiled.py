"""The compiled hot path and pure Python give the same records; the install compiles it.

`pip install -e .` (the README's commands; setup.py) compiles the hot path with mypyc.
Each shipped suite is simulated twice in fresh interpreters, once on the active path and
once with EVALX_PURE=1, and every table is compared to the byte. Without a compiled build
the comparison is skipped, unless CI is set: CI installs with the README's test command,
which must have compiled it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness._native import BUILD_DIR, MANIFEST

ROOT = Path(__file__).resolve().parents[2]
SUITES = (*sorted((ROOT / "scenarios").glob("*.yaml")), ROOT / "examples/custom_router/suite.yaml")
TABLES = ("requests", "spans", "summary", "sessions")

_SIMULATE = """
import json, sys
from pathlib import Path
import pyarrow.parquet as pq
import harness.engine
from harness.run import simulate
from harness.spec import load_suite
out = Path(sys.argv[1])
for path in map(Path, sys.argv[2:]):
    sys.path.insert(0, str(path.parent))  # a suite's own stack.factory module sits beside it
    result = simulate(load_suite(path, []).suite)
    for name in TABLES:
        pq.write_table(getattr(result, name), out / f"{path.stem}.{name}.parquet")
print(json.dumps({"compiled": harness.engine.COMPILED, "status": harness.engine.PATH}))
""".replace("TABLES", repr(TABLES))


def _path(pure: bool) -> dict[str, object]:
    """What `import harness.engine` reports in a fresh interpreter."""
    env = {**os.environ, "EVALX_PURE": "1" if pure else "0"}
    code = "import json, harness.engine as e; print(json.dumps({'compiled': e.COMPILED, "
    code += "'status': e.PATH}))"
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          check=True)  # fmt: skip
    out: dict[str, object] = json.loads(proc.stdout)
    return out


def test_the_active_path_is_reported() -> None:
    active, pure = _path(pure=False), _path(pure=True)
    print(f"active path: {active['status']}")  # shown with -rA / -s: which path this install runs
    assert active["compiled"] == str(active["status"]).startswith("compiled")
    assert pure == {"compiled": False, "status": "pure: EVALX_PURE=1"}


def test_the_install_compiles_the_hot_path() -> None:
    active = _path(pure=False)
    manifest = BUILD_DIR / MANIFEST
    made_by = json.loads(manifest.read_text()).get("made_by") if manifest.exists() else None
    print(f"active path: {active['status']}; build made by: {made_by}")
    if os.environ.get("CI"):  # the README's test command installed this checkout: it compiled
        assert active["compiled"] is True, active["status"]
        assert made_by == "pip install", f"the build was made by {made_by}, not the install"
    elif not active["compiled"]:
        pytest.skip(f"not compiled here: {active['status']}")
    else:
        assert made_by in ("pip install", "python -m harness.build")
    exe = Path(sys.executable).parent / "evalx"  # the installed command says which path it runs
    version = subprocess.run([exe, "--version"], capture_output=True, text=True, check=True).stdout
    assert f"engine: {active['status']}" in version


@pytest.fixture(scope="module")
def compiled() -> None:
    status = _path(pure=False)
    if not status["compiled"]:
        if os.environ.get("CI"):
            pytest.fail(
                f"the install compiles the hot path under CI, but it is not active: {status}"
            )
        pytest.skip(f"no compiled build ({status['status']})")


def _simulate(out: Path, pure: bool) -> dict[str, object]:
    out.mkdir()
    env = {**os.environ, "EVALX_PURE": "1" if pure else "0"}
    proc = subprocess.run([sys.executable, "-c", _SIMULATE, str(out), *map(str, SUITES)],
                          env=env, capture_output=True, text=True, timeout=900)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    status: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    return status


@pytest.fixture(scope="module")
def runs(compiled: None, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("compiled")
    assert _simulate(base / "compiled", pure=False)["compiled"] is True
    assert _simulate(base / "pure", pure=True)["compiled"] is False
    return base / "compiled", base / "pure"


@pytest.mark.parametrize("table", TABLES)
@pytest.mark.parametrize("suite", SUITES, ids=lambda p: p.stem)
def test_compiled_and_pure_records_are_identical(
    runs: tuple[Path, Path], suite: Path, table: str
) -> None:
    name = f"{suite.stem}.{table}.parquet"
    a, b = (d / name for d in runs)
    assert a.read_bytes() == b.read_bytes(), f"{name}: compiled and pure records differ"
