"""One interface for running independent work units: in-process, a process pool or Dask.

Sweeps (and later replications) hand a list of units to an executor and get the results
back in the same order. Units and results must be picklable for the process pool and
Dask; the work function must be a module-level function.

A unit whose work function raises (after Dask's retries) surfaces as `UnitError`, the
same on every executor, naming the unit's index. It is not an `EvalxError`: a failing
unit is a harness bug or an error in user code, so the CLI shows its traceback.

Dask and distributed are imported only when a `DaskExecutor` maps, so importing this
module stays cheap.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import TYPE_CHECKING, Protocol, TypeVar, cast

if TYPE_CHECKING:
    from distributed import LocalCluster

U = TypeVar("U")
R = TypeVar("R")

KINDS = ("inline", "process", "dask")


class UnitError(Exception):
    """The work function raised on one unit; `cause` is what it raised (also `__cause__`)."""

    def __init__(self, index: int, unit: object, cause: BaseException) -> None:
        super().__init__(index, unit, cause)
        self.index = index
        self.unit = unit
        self.cause = cause

    def __str__(self) -> str:
        return (
            f"unit {self.index} ({self.unit!r}) failed: {type(self.cause).__name__}: {self.cause}"
        )


class Executor(Protocol):
    """Runs `fn` on every unit; yields results in unit order as they become available.

    Raises `UnitError` for the first unit (in unit order) whose `fn` raised.
    """

    def map(self, fn: Callable[[U], R], units: Sequence[U]) -> Iterator[R]: ...


class InlineExecutor:
    """Runs units one after another in this process (the default; easiest to debug)."""

    def map(self, fn: Callable[[U], R], units: Sequence[U]) -> Iterator[R]:
        for index, unit in enumerate(units):
            try:
                result = fn(unit)
            except Exception as err:
                raise UnitError(index, unit, err) from err
            yield result


class ProcessExecutor:
    """Runs units in a pool of worker processes; results come back in unit order."""

    def __init__(self, workers: int) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self.workers = workers

    def map(self, fn: Callable[[U], R], units: Sequence[U]) -> Iterator[R]:
        pool = ProcessPoolExecutor(max_workers=self.workers)
        try:
            futures = [pool.submit(fn, unit) for unit in units]
            yield from _in_order(units, (f.result for f in futures))
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


class DaskExecutor:
    """Runs units as Dask tasks: on a local cluster started for each `map`, or on `scheduler`.

    Without `scheduler`, `map` starts a `LocalCluster` of `workers` single-threaded worker
    processes on 127.0.0.1 and closes it (and its processes) when the iteration ends or is
    abandoned. With `scheduler` ("tcp://host:port"), `map` joins that cluster and `workers`
    is ignored. A failing unit is retried `retries` times, possibly on another worker.
    """

    def __init__(self, workers: int = 2, scheduler: str | None = None, retries: int = 1) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        if retries < 0:
            raise ValueError(f"retries must be 0 or more, got {retries}")
        if scheduler is not None and "://" not in scheduler:
            raise ValueError(
                f"scheduler {scheduler!r}: give an address such as tcp://127.0.0.1:8786"
            )
        self.workers = workers
        self.scheduler = scheduler
        self.retries = retries

    def map(self, fn: Callable[[U], R], units: Sequence[U]) -> Iterator[R]:
        from distributed import Client

        with contextlib.ExitStack() as stack:
            if self.scheduler is None:
                cluster = stack.enter_context(local_cluster(self.workers))
                client = stack.enter_context(Client(cluster))  # type: ignore[no-untyped-call]
            else:
                client = stack.enter_context(
                    Client(self.scheduler)  # type: ignore[no-untyped-call]
                )
            # Unique keys: several maps may share one cluster, and retries stay per unit.
            run = uuid.uuid4().hex
            name = getattr(fn, "__name__", "unit")
            futures = [
                client.submit(fn, unit, key=f"{name}-{run}-{i}", retries=self.retries, pure=False)
                for i, unit in enumerate(units)
            ]
            try:
                getters = (cast(Callable[[], R], f.result) for f in futures)
                yield from _in_order(units, getters)
            finally:
                client.cancel(futures)


def local_cluster(workers: int) -> LocalCluster:
    """A Dask cluster of `workers` single-threaded processes on 127.0.0.1; use it with `with`.

    No dashboard, and the scheduler's HTTP endpoint on a free port (it would otherwise try
    8787 even without a dashboard, and warn when that port is taken).
    """
    from distributed import LocalCluster

    return LocalCluster(  # type: ignore[no-untyped-call]
        n_workers=workers,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        scheduler_port=0,
        host="127.0.0.1",
        scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
    )


def _in_order(units: Sequence[U], results: Iterable[Callable[[], R]]) -> Iterator[R]:
    """Call each result getter in unit order; a raised error becomes `UnitError`."""
    for index, (unit, get) in enumerate(zip(units, results, strict=True)):
        try:
            result = get()
        except Exception as err:
            raise UnitError(index, unit, err) from err
        yield result


def executor(
    kind: str | int = "inline", workers: int = 1, scheduler: str | None = None
) -> Executor:
    """The executor of `kind` ("inline", "process" or "dask") with `workers` workers.

    For backward compatibility an int as the first argument means a worker count: inline
    for one worker, a process pool for more.
    """
    if isinstance(kind, int):
        return InlineExecutor() if kind <= 1 else ProcessExecutor(kind)
    if kind == "inline":
        return InlineExecutor()
    if kind == "process":
        return ProcessExecutor(workers)
    if kind == "dask":
        return DaskExecutor(workers=workers, scheduler=scheduler)
    raise ValueError(f"unknown executor kind {kind!r}: use one of {', '.join(KINDS)}")
