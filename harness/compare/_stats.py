"""The statistics of a comparison: McNemar's exact test, Holm's correction and the
bootstraps (paired and unpaired, of means and percentiles) with their p-values.

Pure functions of numpy arrays and a generator; nothing here knows runs or gates.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value from the discordant pair counts `b` and `c`.

    The binomial test of min(b, c) successes in b + c trials with p = 1/2, doubled (the
    null distribution is symmetric); 1 when there are no discordant pairs.
    """
    n = b + c
    if n == 0:
        return 1.0
    from scipy.stats import binom

    return float(min(1.0, 2.0 * binom.cdf(min(b, c), n, 0.5)))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the order given.

    Reject test i at level alpha iff its adjusted p-value is below alpha; this controls
    the family-wise error rate under any dependence between the tests.
    """
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


_CELLS = 4_000_000
"""Resampled indices held at once per bootstrap chunk (bounds memory at ~100 MB)."""


def _indices(rng: np.random.Generator, n: int, rows: int) -> np.ndarray:
    """A rows x n matrix of indices drawn with replacement from range(n)."""
    return rng.integers(0, n, size=(rows, n), dtype=_index_type(n))


def _index_type(n: int) -> type[np.signedinteger[Any]]:
    return np.int32 if n < 2**31 else np.int64


def _chunks(total: int, n: int) -> Iterable[tuple[int, int]]:
    """(start, rows) pieces of `total` resamples of size n, within the `_CELLS` budget."""
    rows = max(1, _CELLS // max(n, 1))
    for start in range(0, total, rows):
        yield start, min(rows, total - start)


def _ranks(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`x` sorted, and the rank of each element of `x` in that order (ties by position)."""
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x), dtype=_index_type(len(x)))
    ranks[order] = np.arange(len(x))
    return x[order], ranks


def _percentile_of_ranks(ordered: np.ndarray, ranks: np.ndarray, q: float) -> np.ndarray:
    """The q-th percentile (numpy's linear method) of each row of ranks into `ordered`.

    A resample's order statistics are those of its ranks, so only two values per row are
    looked up: the rows are partitioned in place (integers, no gathered copy of values).
    """
    n = ranks.shape[1]
    position = (n - 1) * (q / 100.0)
    lo = int(position)
    hi = min(lo + 1, n - 1)
    ranks.partition(sorted({lo, hi}), axis=1)
    below, above = ordered[ranks[:, lo]], ordered[ranks[:, hi]]
    return np.asarray(below + (position - lo) * (above - below), dtype=np.float64)


_FEW_VALUES = 64
"""Means of vectors with at most this many distinct values are resampled by counts."""


def _resampled_means(x: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Means of `resamples` bootstrap resamples of `x`.

    With few distinct values (rates are 0/1; paired differences of rates -1/0/+1) the
    counts of each value are drawn from their multinomial: exactly the distribution of
    the mean of n indices drawn with replacement, at O(distinct values) per resample.
    """
    values, counts = np.unique(x, return_counts=True)
    if len(values) <= _FEW_VALUES:
        draws = rng.multinomial(len(x), counts / len(x), size=resamples)
        return np.asarray(draws @ values / len(x), dtype=np.float64)
    out = np.empty(resamples)
    for start, rows in _chunks(resamples, len(x)):
        out[start : start + rows] = x[_indices(rng, len(x), rows)].mean(axis=1)
    return out


def _resampled_percentiles(
    x: np.ndarray, q: float, resamples: int, rng: np.random.Generator
) -> np.ndarray:
    """q-th percentiles of `resamples` bootstrap resamples of `x`."""
    ordered = np.sort(x)
    out = np.empty(resamples)
    for start, rows in _chunks(resamples, len(x)):
        out[start : start + rows] = _percentile_of_ranks(ordered, _indices(rng, len(x), rows), q)
    return out


def _bootstrap(
    b: np.ndarray,
    c: np.ndarray,
    q: float | None,
    paired: bool,
    resamples: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """`resamples` bootstrap replicates of statistic(c) - statistic(b).

    Paired: one resample of request indices serves both runs (for means, the mean of the
    per-request differences: exactly 0 when the runs agree). Unpaired: each run is
    resampled on its own, the baseline first.
    """
    if not paired:
        if q is None:
            base = _resampled_means(b, resamples, rng)
            deltas = _resampled_means(c, resamples, rng)
        else:
            base = _resampled_percentiles(b, q, resamples, rng)
            deltas = _resampled_percentiles(c, q, resamples, rng)
        deltas -= base
        return deltas
    if q is None:
        return _resampled_means(c - b, resamples, rng)
    (b_ordered, b_ranks), (c_ordered, c_ranks) = _ranks(b), _ranks(c)
    out = np.empty(resamples)
    for start, rows in _chunks(resamples, len(b)):
        idx = _indices(rng, len(b), rows)
        out[start : start + rows] = _percentile_of_ranks(
            c_ordered, c_ranks[idx], q
        ) - _percentile_of_ranks(b_ordered, b_ranks[idx], q)
    return out


def _bootstrap_p(deltas: np.ndarray) -> float:
    """Two-sided percentile p-value of 'no difference', with the +1 correction."""
    k = len(deltas) + 1
    below = (1 + np.count_nonzero(deltas <= 0)) / k
    above = (1 + np.count_nonzero(deltas >= 0)) / k
    return float(min(1.0, 2.0 * min(below, above)))
