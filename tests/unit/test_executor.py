"""Executors: same results in unit order everywhere, per-unit retries on Dask, UnitError."""

from __future__ import annotations

import multiprocessing
from collections.abc import Generator, Iterator
from pathlib import Path

import numpy as np
import pytest

from harness.executor import (
    DaskExecutor,
    Executor,
    InlineExecutor,
    ProcessExecutor,
    UnitError,
    executor,
    local_cluster,
)

UNITS = list(range(12))


def square_seeded(u: int) -> tuple[int, float]:
    """Deterministic per unit, different across units."""
    rng = np.random.default_rng(u)
    return u * u, float(rng.normal(size=1000).sum())


def fail_once(marker: str) -> str:
    """Raises on the first call for `marker`, succeeds on the next (any process)."""
    path = Path(marker)
    if not path.exists():
        path.write_text("failed once")
        raise RuntimeError(f"first attempt at {marker}")
    return path.name


def fail_on_three(u: int) -> int:
    if u == 3:
        raise ValueError("three is bad")
    return u


@pytest.fixture(scope="module")
def scheduler() -> Iterator[str]:
    """One two-worker local cluster for the tests that need not start their own."""
    with local_cluster(2) as cluster:
        yield cluster.scheduler_address


def test_every_executor_gives_the_inline_results_in_unit_order(scheduler: str) -> None:
    expected = [square_seeded(u) for u in UNITS]
    executors: list[Executor] = [
        InlineExecutor(),
        ProcessExecutor(2),
        DaskExecutor(scheduler=scheduler),
    ]
    for ex in executors:
        assert list(ex.map(square_seeded, UNITS)) == expected, type(ex).__name__


@pytest.mark.parametrize("workers", [1, 2])
def test_dask_local_cluster_gives_the_same_results_and_leaves_no_process(workers: int) -> None:
    before = {p.pid for p in multiprocessing.active_children()}
    results = list(DaskExecutor(workers).map(square_seeded, UNITS))
    assert results == [square_seeded(u) for u in UNITS]
    assert {p.pid for p in multiprocessing.active_children()} == before


def test_dask_local_cluster_closes_when_iteration_is_abandoned() -> None:
    before = {p.pid for p in multiprocessing.active_children()}
    it = DaskExecutor(1).map(square_seeded, UNITS)
    assert next(it) == square_seeded(0)
    assert {p.pid for p in multiprocessing.active_children()} > before  # the worker runs
    assert isinstance(it, Generator)
    it.close()
    assert {p.pid for p in multiprocessing.active_children()} == before


def test_dask_retries_a_unit_that_fails_once(scheduler: str, tmp_path: Path) -> None:
    units = [str(tmp_path / f"unit{i}") for i in range(3)]
    results = list(DaskExecutor(scheduler=scheduler, retries=1).map(fail_once, units))
    assert results == ["unit0", "unit1", "unit2"]


def test_dask_without_retries_reports_the_failure(scheduler: str, tmp_path: Path) -> None:
    units = [str(tmp_path / "unit0")]
    with pytest.raises(UnitError) as info:
        list(DaskExecutor(scheduler=scheduler, retries=0).map(fail_once, units))
    assert info.value.index == 0
    assert isinstance(info.value.cause, RuntimeError)


@pytest.mark.parametrize("kind", ["inline", "process", "dask"])
def test_a_unit_that_always_fails_raises_unit_error_naming_it(kind: str, scheduler: str) -> None:
    ex = executor(kind, workers=2, scheduler=scheduler if kind == "dask" else None)
    seen: list[int] = []
    with pytest.raises(UnitError) as info:
        seen.extend(ex.map(fail_on_three, UNITS))
    assert seen == [0, 1, 2]
    err = info.value
    assert (err.index, err.unit) == (3, 3)
    assert isinstance(err.cause, ValueError)
    assert err.__cause__ is err.cause
    assert str(err).startswith("unit 3 (3) failed: ValueError: three is bad")


def test_factory_kinds_and_backward_compatible_worker_count() -> None:
    assert isinstance(executor(), InlineExecutor)
    assert isinstance(executor(1), InlineExecutor)
    pool = executor(2)
    assert isinstance(pool, ProcessExecutor) and pool.workers == 2
    assert isinstance(executor("process", workers=3), ProcessExecutor)
    dask = executor("dask", workers=3, scheduler="tcp://127.0.0.1:8786")
    assert isinstance(dask, DaskExecutor)
    assert (dask.workers, dask.scheduler, dask.retries) == (3, "tcp://127.0.0.1:8786", 1)
    with pytest.raises(ValueError, match="inline, process, dask"):
        executor("ray")


@pytest.mark.parametrize(
    "kwargs", [{"workers": 0}, {"retries": -1}, {"scheduler": "127.0.0.1:8786"}]
)
def test_dask_executor_rejects_bad_arguments(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        DaskExecutor(**kwargs)  # type: ignore[arg-type]
