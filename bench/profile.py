"""Where the engine loop's time goes: a `perf` profile of the support suite, in buckets.

A benchmark, not a test: it prints a table and always exits 0 (it says so when `perf` or
the compiled build is missing).

    python bench/profile.py [--requests N] [--pure] [--top N] [--json FILE]

A fresh interpreter samples the support suite at N requests (default 200,000), then runs
the engine loop under `perf record` (DWARF call graphs; started and stopped by the child
itself through perf's control pipe, so imports and sampling are left out). Self time is
summed per symbol into buckets: evalx's compiled code, the interpreter running Python
bytecode, allocation and garbage collection, dictionary and attribute lookups, regular
expressions, strings, calls and conversions, numpy, the kernel, and the rest. A second
view gives the inclusive share of evalx's own functions (compiled `CPyDef_*` symbols;
none with --pure, as the loop is interpreted), from perf's call graph: what a function
and everything it calls cost.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

_CHILD = """
import os, sys
sys.path.insert(0, {bench!r})
import engine as b
suite = b.load({requests})
reqs, tape = b.sample(suite)
ctl = os.open({ctl!r}, os.O_WRONLY)
ack = os.open({ack!r}, os.O_RDONLY)
os.write(ctl, b"enable\\n"); os.read(ack, 16)
b.run_engine(suite, reqs, tape)
os.write(ctl, b"disable\\n"); os.read(ack, 16)
"""

BUCKETS: tuple[tuple[str, str], ...] = (
    ("evalx compiled code (mypyc)", r"__mypyc|CPyDef_|CPyPy_|CPy[A-Z]"),
    ("allocation and garbage collection",
     r"Malloc|_Free|malloc|free|gc_|visit_|dealloc|_alloc|GC_|_Py_Dealloc|NewReference"
     r"|tupletraverse|list_traverse|subtype_traverse|_New$|FromDouble|FromLong|Realloc"
     r"|clear_page|folio"),
    ("interpreter (Python bytecode)", r"_PyEval_EvalFrameDefault|_PyEval_Vector"),
    ("dict and attribute lookups",
     r"lookup|Lookup|GetAttr|SetAttr|GetItem|_Py_dict|dict_|getattro|GetMethod|IsSubtype"),
    ("regular expressions", r"sre_|_sre"),
    ("string operations", r"Unicode|unicode|build_string|replace|memmove|memcpy|strlen"),
    ("calls, comparisons, conversions",
     r"Vectorcall|Call|PyIter_Send|initialize_locals|IsTrue|RichCompare|IS_GC|_PyErr"
     r"|AsDouble|AsLong|FromArray|List_Append|set_lookkey"),
    ("numpy", r"multiarray|umath|npy|PyArray|DOUBLE_|LONG_|FLOAT_"),
    ("kernel", r"\[k\]|kallsyms"),
)  # fmt: skip
"""Buckets in order: a symbol goes into the first whose pattern matches its DSO or name."""

_ROW = re.compile(r"^\s+([0-9.]+)%\s+(?:([0-9.]+)%\s+)?(\S+)\s+\[(.)\]\s+(.+?)\s*$")


def bucket(dso: str, sym: str) -> str:
    """The bucket of one symbol."""
    text = f"{dso} {sym}"
    for name, pattern in BUCKETS:
        if re.search(pattern, text):
            return name
    return "other"


def perf_rows(data: Path, children: bool) -> list[tuple[float, str, str]]:
    """(percent, dso, symbol) rows of `perf report` on `data`, self or inclusive time."""
    cmd = ["perf", "report", "-i", str(data), "--stdio", "--sort", "dso,sym", "-g", "none",
           "--children" if children else "--no-children"]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    rows = []
    for line in out.splitlines():
        m = _ROW.match(line)
        if m:
            rows.append((float(m.group(1)), m.group(3), m.group(5)))
    return rows


def profile(requests: int, pure: bool) -> dict[str, Any]:
    """Run the loop under perf in a child; the buckets and the top functions."""
    with tempfile.TemporaryDirectory(prefix="evalx-perf-") as tmp:
        work = Path(tmp)
        ctl, ack, data = work / "ctl", work / "ack", work / "perf.data"
        os.mkfifo(ctl)
        os.mkfifo(ack)
        code = _CHILD.format(bench=str(Path(__file__).parent), requests=requests,
                             ctl=str(ctl), ack=str(ack))  # fmt: skip
        env = {**os.environ, "EVALX_PURE": "1" if pure else "0"}
        cmd = ["perf", "record", "-F", "499", "--call-graph", "dwarf,8192", "-D", "-1", "--control",
               f"fifo:{ctl},{ack}", "-o", str(data), "--", sys.executable, "-c", code]  # fmt: skip
        subprocess.run(cmd, env=env, capture_output=True, check=True)
        status = subprocess.run(
            [sys.executable, "-c", "import harness.engine as e; print(e.PATH)"],
            env=env, capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        self_rows = perf_rows(data, children=False)
        incl_rows = perf_rows(data, children=True)
    sums: dict[str, float] = defaultdict(float)
    for pct, dso, sym in self_rows:
        sums[bucket(dso, sym)] += pct
    own = [(pct, sym) for pct, _, sym in incl_rows if sym.startswith("CPyDef_harness")]
    names = [(pct, _readable(sym)) for pct, sym in own if not sym.endswith("_glue")]
    return {
        "path": status,
        "requests": requests,
        "buckets": dict(sorted(sums.items(), key=lambda kv: -kv[1])),
        "top_self": [(pct, dso, sym) for pct, dso, sym in self_rows[:25]],
        "top_other": [
            (pct, dso, sym) for pct, dso, sym in self_rows if bucket(dso, sym).startswith("other")
        ][:25],
        "inclusive": names,
    }


def _readable(sym: str) -> str:
    """`CPyDef_harness___engine____calls___Calls____call_model` -> `engine._calls.Calls._call_model`
    (mypyc's mangling of module, class and method names, undone for reading)."""
    name = sym.removeprefix("CPyDef_harness___").replace("_____mypyc_generator_helper__", "")
    return name.replace("____", "._").replace("___", ".")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python bench/profile.py", description=__doc__.split("\n")[0])
    p.add_argument("--requests", type=int, default=200_000)
    p.add_argument("--pure", action="store_true", help="profile the pure-Python path")
    p.add_argument("--top", type=int, default=20, help="evalx functions to list (inclusive)")
    p.add_argument("--json", type=Path, help="write the figures to this file")
    args = p.parse_args(argv)
    if shutil.which("perf") is None:
        print("perf is not installed (apt-get install linux-perf): nothing to profile")
        return 0
    fig = profile(args.requests, args.pure)
    print(f"support at {fig['requests']:,} requests, engine loop only; path: {fig['path']}")
    print("\nself time by bucket (perf, % of samples in the loop)")
    for name, pct in fig["buckets"].items():
        print(f"  {pct:5.1f}%  {name}")
    if fig["inclusive"]:
        print("\nevalx functions, inclusive (the function and what it calls)")
        seen = set()
        for pct, name in fig["inclusive"]:
            if name in seen:
                continue
            seen.add(name)
            print(f"  {pct:5.1f}%  {name}")
            if len(seen) >= args.top:
                break
    print("\ntop symbols, self time")
    for pct, dso, sym in fig["top_self"][:15]:
        print(f"  {pct:5.1f}%  {sym[:60]:60s} {dso[:30]}")
    if args.json:
        args.json.write_text(json.dumps(fig, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
