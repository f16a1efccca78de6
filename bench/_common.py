"""What every benchmark script shares: the machine it ran on and how targets are reported."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any

import numpy as np


def machine(**versions: str) -> dict[str, Any]:
    """What ran the benchmark; `versions` adds library versions (e.g. simpy=...)."""
    model = ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        lines = cpuinfo.read_text().splitlines()
        model = next(
            (ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), ""
        )
    return {
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_model": model or platform.processor(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "numpy": np.__version__,
        **versions,
        "platform": platform.platform(),
    }


def verdict(ok: bool) -> str:
    """PASS or MISS."""
    return "PASS" if ok else "MISS"


def print_targets(targets: dict[str, bool]) -> None:
    """One PASS/MISS line per target, after a blank line."""
    print()
    for name, ok in targets.items():
        print(f"{verdict(ok)}  {name}")


def write_json(path: Path | None, fig: dict[str, Any], targets: dict[str, bool]) -> None:
    """All figures and the verdicts as JSON, when asked for."""
    if path is None:
        return
    fig["targets"] = {name: verdict(ok) for name, ok in targets.items()}
    path.write_text(json.dumps(fig, indent=2) + "\n")
    print(f"wrote {path}")
