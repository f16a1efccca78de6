"""The compiled hot path, when one is built: which modules it covers and how they load.

`python -m harness.build` compiles `MODULES` with mypyc into `harness/_compiled/` and
writes a manifest with a checksum of each source it compiled. At `import harness`,
`install()` puts a finder first on `sys.meta_path` that loads those modules from the
build, but only when every source still hashes as it did (an edited `.py` always wins:
the whole build is set aside, never a mix of compiled and edited modules), the build was
made for this interpreter, and `EVALX_PURE` is not `1`. Otherwise nothing changes and
the pure-Python modules load as usual. `STATUS` says which path is active and why.

Compiled and pure paths give identical records (tests/e2e/test_compiled.py); a user's
own stack (`stack.factory`) is ordinary Python either way.
"""

from __future__ import annotations

import json
import os
import sys
import zlib
from importlib.machinery import EXTENSION_SUFFIXES, ModuleSpec
from importlib.util import spec_from_file_location
from pathlib import Path
from types import ModuleType

MODULES = (
    "harness.engine._kernel",
    "harness.engine._trace",
    "harness.engine._request",
    "harness.engine._servers",
    "harness.engine._scoring",
    "harness.engine._cache",
    "harness.engine._calls",
    "harness.engine._lifecycle",
    "harness.stack._effects",
    "harness.stack._breaker",
    "harness.stack._tenants",
    "harness.stack._sessions",
    "harness.stack._reference",
    "harness.guardrails",
    "harness.content",
)
"""What the build compiles: the engine loop, the reference stack, its breaker, token
buckets and session budgets, the guardrail scanners and the generated content."""

PURE_ENV = "EVALX_PURE"
"""Set to 1 to run pure Python even when a compiled build is present."""

PACKAGE = Path(__file__).resolve().parent
BUILD_DIR = PACKAGE / "_compiled"
MANIFEST = "manifest.json"

STATUS = "pure: not built (python -m harness.build compiles the hot path)"
"""Which path `install()` chose, in words: starts with 'compiled' or 'pure'."""


def source(module: str) -> Path:
    """The `.py` file of one of `MODULES`."""
    return PACKAGE.parent.joinpath(*module.split(".")).with_suffix(".py")


def digest(path: Path) -> str:
    """A file's size and CRC-32: enough to tell an edited source from the one compiled, and
    cheap at every `import harness` (hashlib would load OpenSSL: 15-25 ms)."""
    data = path.read_bytes()
    return f"{len(data)}:{zlib.crc32(data):08x}"


class _Finder:
    """Loads the compiled modules (and mypyc's shared libraries) from the build directory."""

    def __init__(self, files: dict[str, Path]) -> None:
        self.files = files

    def find_spec(
        self, fullname: str, path: object = None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        f = self.files.get(fullname)
        return None if f is None else spec_from_file_location(fullname, f)


def _check(build: Path) -> tuple[dict[str, Path] | None, str]:
    """The module -> extension file map of a usable build, or None and why not."""
    try:
        manifest = json.loads((build / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None, "pure: not built (python -m harness.build compiles the hot path)"
    if manifest.get("suffix") not in EXTENSION_SUFFIXES:
        return None, "pure: the build is for another interpreter (rebuild: python -m harness.build)"
    sources: dict[str, str] = manifest.get("sources", {})
    for module in MODULES:
        try:
            same = sources.get(module) == digest(source(module))
        except OSError:
            same = False
        if not same:
            return None, f"pure: {module} changed since the build (python -m harness.build)"
    files = {name: build / rel for name, rel in manifest.get("files", {}).items()}
    if not all(f.exists() for f in files.values()) or not set(MODULES) <= set(files):
        return None, "pure: the build is incomplete (python -m harness.build)"
    return files, f"compiled: {len(MODULES)} modules (mypyc)"


def install(build: Path = BUILD_DIR) -> str:
    """Route imports of the compiled modules to a usable build; return and keep `STATUS`.

    Must run before any of `MODULES` is imported (`harness/__init__` calls it).
    """
    global STATUS
    if os.environ.get(PURE_ENV, "") == "1":
        STATUS = f"pure: {PURE_ENV}=1"
        return STATUS
    files, STATUS = _check(build)
    if files is not None and not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder(files))
    return STATUS


def compiled(module: ModuleType) -> bool:
    """Whether `module` was loaded from a compiled extension."""
    return str(getattr(module, "__file__", "")).endswith(tuple(EXTENSION_SUFFIXES))
