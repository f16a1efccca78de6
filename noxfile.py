"""Developer sessions: tests, lint, typecheck, bench. `nox -s tests` is what CI runs."""

from __future__ import annotations

import nox

nox.options.sessions = ["lint", "typecheck", "tests"]
nox.options.reuse_existing_virtualenvs = True

PY = "3.11"


@nox.session(python=PY)
def tests(session: nox.Session) -> None:
    """Unit, property and end-to-end tests."""
    session.install("-e", ".[dev]")
    session.run("pytest", *session.posargs)


@nox.session(python=PY)
def lint(session: nox.Session) -> None:
    """ruff lint and format check."""
    session.install("ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=PY)
def typecheck(session: nox.Session) -> None:
    """mypy --strict on the package."""
    session.install("-e", ".[dev]")
    session.run("mypy")


@nox.session(python=PY)
def bench(session: nox.Session) -> None:
    """Engine speed and memory, compare's false alarms and power, the sweep's screening speed."""
    session.install("-e", ".[dev]")
    session.run("python", "bench/engine.py", *session.posargs)
    session.run("python", "bench/profile.py")
    session.run("python", "bench/compare.py")
    session.run("python", "bench/screen.py")
    session.run("python", "bench/scale.py")
    session.run("python", "bench/replay.py")
