"""evalx: production-like scenario evaluation for multi-model LLM routing stacks.

The package is imported by the `evalx` command; heavy libraries (pandas, pyarrow)
load only when a run needs them, so `evalx --help` stays fast. For analysts:
`harness.load_runs(root)` reads a folder of runs as one dataset (lazy import).
"""

from __future__ import annotations

from typing import Any

from harness import _native

_native.install()  # the compiled hot path, when built and current (harness/_native.py)

__version__ = "0.1.0"
__all__ = ["__version__", "load_runs"]


def __getattr__(name: str) -> Any:
    if name == "load_runs":
        from harness.dataset import load_runs

        return load_runs
    raise AttributeError(f"module 'harness' has no attribute {name!r}")
