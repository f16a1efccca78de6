"""One interface for running independent work units: in-process or a process pool.

Sweeps (and later replications and distributed backends) hand a list of units to an
executor and get the results back in the same order. Units and results must be
picklable for the process pool; the work function must be a module-level function.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Protocol, TypeVar

U = TypeVar("U")
R = TypeVar("R")


class Executor(Protocol):
    """Runs `fn` on every unit; yields results in unit order as they become available."""

    def map(self, fn: Callable[[U], R], units: Sequence[U]) -> Iterator[R]: ...


class InlineExecutor:
    """Runs units one after another in this process (the default; easiest to debug)."""

    def map(self, fn: Callable[[U], R], units: Sequence[U]) -> Iterator[R]:
        for unit in units:
            yield fn(unit)


class ProcessExecutor:
    """Runs units in a pool of worker processes; results come back in unit order."""

    def __init__(self, workers: int) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self.workers = workers

    def map(self, fn: Callable[[U], R], units: Sequence[U]) -> Iterator[R]:
        with ProcessPoolExecutor(max_workers=self.workers) as pool:
            yield from pool.map(fn, units)


def executor(workers: int) -> Executor:
    """Inline for one worker, a process pool for more."""
    return InlineExecutor() if workers <= 1 else ProcessExecutor(workers)
