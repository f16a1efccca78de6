"""`pip install` compiles evalx's hot path with mypyc when it can (see harness/build.py).

The compiled modules go into `harness/_compiled/` (in the source tree for an editable
install, in the wheel otherwise). Without a C compiler or Python's headers the install
still succeeds and evalx runs pure Python, which gives the same records;
`python -m harness.build --check` says which path is active. `EVALX_PURE=1` at install
time skips the build.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent


class BuildPy(build_py):
    """Copies the package as usual, then compiles the hot path next to it."""

    def run(self) -> None:
        super().run()
        if os.environ.get("EVALX_PURE", "") == "1":
            return
        sys.path.insert(0, str(HERE))
        from harness import build

        editable = bool(getattr(self, "editable_mode", False))
        out = build.BUILD_DIR if editable else Path(self.build_lib) / "harness" / "_compiled"
        print(f"evalx: {build.build(out=out, made_by='pip install')}", file=sys.stderr)


setup(cmdclass={"build_py": BuildPy})
