"""Compile the hot path with mypyc: `pip install` does it (setup.py), or `python -m harness.build`.

Compiles `harness._native.MODULES` into `harness/_compiled/` with a manifest of the
sources' hashes, which `harness._native` checks at import. Needs mypyc (it ships with
mypy, which `pip install` brings into its build environment) and a C compiler; without
either it says so and exits 0, and evalx runs pure Python, which gives the same records.
After editing a compiled module, run this again (or re-install): until then the whole
build is set aside and evalx runs pure Python. `--clean` removes the build.

    python -m harness.build            # build (about a minute on a small machine)
    python -m harness.build --check    # say which path `import harness` takes, and why
    python -m harness.build --clean
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Sequence
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

from harness._native import BUILD_DIR, MANIFEST, MODULES, STATUS, digest, source

_SETUP = """\
import sys
from setuptools import setup
from mypyc.build import mypycify

setup(
    name="evalx_compiled",
    ext_modules=mypycify(
        ["--ignore-missing-imports", "--follow-imports=silent", *sys.argv[1:]],
        opt_level="3",
        separate=True,
        target_dir={target!r},
    ),
    script_args=["-q", "build_ext", "--build-lib", {lib!r}, "--build-temp", {temp!r},
                 "--parallel", str({jobs})],
)
"""


def missing() -> str | None:
    """Why a build cannot be made here, or None when mypyc and a C compiler are present."""
    try:
        import mypyc.build  # noqa: F401
    except ImportError:
        return "mypyc is not installed (it ships with mypy: pip install mypy)"
    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(os.environ.get("CC", cc)) is None:
        return f"no C compiler ({os.environ.get('CC', cc)}) on PATH"
    if not Path(sysconfig.get_paths()["include"], "Python.h").exists():
        return "no Python headers (Python.h) for this interpreter"
    return None


def build(
    out: Path = BUILD_DIR, jobs: int | None = None, made_by: str = "python -m harness.build"
) -> str:
    """Compile `MODULES` into `out`; return what happened in one line.

    `made_by` goes into the manifest: what made the build (the install, or this command).

    The build is made in a temporary directory and moved into place only when complete,
    so a failed or interrupted build leaves the previous state (built or not) as it was.
    """
    why = missing()
    if why is not None:
        return f"not compiled: {why}; evalx runs pure Python"
    sources = {m: digest(source(m)) for m in MODULES}
    with tempfile.TemporaryDirectory(prefix="evalx-build-") as tmp:
        work = Path(tmp)
        lib = work / "lib"
        script = work / "setup.py"
        script.write_text(
            _SETUP.format(target=str(work / "c"), lib=str(lib), temp=str(work / "o"),
                          jobs=jobs or os.cpu_count() or 1),
            encoding="utf-8",
        )  # fmt: skip
        proc = subprocess.run(
            [sys.executable, str(script), *(str(source(m)) for m in MODULES)],
            cwd=work,
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-20:])
            return f"not compiled: mypyc failed; evalx runs pure Python\n{tail}"
        suffix = EXTENSION_SUFFIXES[0]
        files = {
            str(p.relative_to(lib))[: -len(suffix)].replace("/", "."): str(p.relative_to(lib))
            for p in lib.rglob(f"*{suffix}")
        }
        if not set(MODULES) <= set(files):
            return f"not compiled: the build lacks {sorted(set(MODULES) - set(files))}"
        if any(digest(source(m)) != h for m, h in sources.items()):
            return "not compiled: sources changed during the build; run it again"
        manifest = {"suffix": suffix, "python": sys.version, "made_by": made_by, "sources": sources,
                    "files": files}  # fmt: skip
        (lib / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        staged = out.with_name(out.name + ".new")
        shutil.rmtree(staged, ignore_errors=True)
        shutil.copytree(lib, staged)
        shutil.rmtree(out, ignore_errors=True)
        staged.rename(out)
    return f"compiled: {len(MODULES)} modules into {out}"


def clean(out: Path = BUILD_DIR) -> str:
    """Remove the build; evalx runs pure Python."""
    shutil.rmtree(out, ignore_errors=True)
    return f"removed {out}"


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m harness.build [--check | --clean] [--jobs N]`; 0 unless a build is broken."""
    p = argparse.ArgumentParser(prog="python -m harness.build", description=__doc__)
    p.add_argument("--check", action="store_true", help="say which path is active and exit")
    p.add_argument("--clean", action="store_true", help="remove the compiled build")
    p.add_argument("--jobs", type=int, help="parallel C compiles (default: CPU count)")
    args = p.parse_args(argv)
    if args.check:
        print(STATUS)
        return 0
    if args.clean:
        print(clean())
        return 0
    print("compiling the hot path with mypyc (a few minutes)...", flush=True)
    line = build(jobs=args.jobs)
    print(line)
    if line.startswith("compiled"):  # a fresh interpreter imports it, as evalx will
        check = [sys.executable, "-c", "import harness._native as n; print(n.STATUS)"]
        status = subprocess.run(check, capture_output=True, text=True).stdout.strip()
        print(f"import harness -> {status}")
        return 0 if status.startswith("compiled") else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
