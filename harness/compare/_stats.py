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


def _block_rows(rng: np.random.Generator, n: int, b: int, rows: int) -> np.ndarray:
    """A rows x (k * b) matrix of circular moving-block indices into range(n + b - 1),
    k = ceil(n / b): positions past n - 1 stand for the start again (`_wrap` a series).

    Each row strings together k blocks of b consecutive positions whose starts are drawn
    uniformly: the circular block bootstrap of Politis & Romano (1992). With b == 1 it is
    the ordinary bootstrap.
    """
    k = -(-n // b)
    starts = rng.integers(0, n, size=(rows, k, 1), dtype=_index_type(n + b))
    idx: np.ndarray = (starts + np.arange(b, dtype=starts.dtype)).reshape(rows, k * b)
    return idx


def _wrap(x: np.ndarray, b: int) -> np.ndarray:
    """`x` followed by its first b - 1 values: what `_block_rows` indices point into."""
    return np.concatenate([x, x[: b - 1]])


def _block_sums(x: np.ndarray, b: int) -> np.ndarray:
    """Sum of the b values starting at each position of `x`, wrapping at the end."""
    cs = np.concatenate([[0.0], np.cumsum(_wrap(x, b), dtype=np.float64)])
    sums: np.ndarray = cs[b : b + len(x)] - cs[: len(x)]
    return sums


def _resampled_block_means(
    x: np.ndarray, b: int, resamples: int, rng: np.random.Generator
) -> np.ndarray:
    """Means of `resamples` circular block bootstrap resamples of `x` (blocks of b)."""
    if b <= 1:
        return _resampled_means(x, resamples, rng)
    n = len(x)
    k = -(-n // b)
    sums = _block_sums(x, b)
    out = np.empty(resamples)
    rows = max(1, _CELLS // k)
    for start in range(0, resamples, rows):
        m = min(rows, resamples - start)
        starts = rng.integers(0, n, size=(m, k))
        out[start : start + m] = sums[starts].sum(axis=1) / (k * b)
    return out


def _block_percentiles(
    x: np.ndarray, q: float, b: int, resamples: int, rng: np.random.Generator
) -> np.ndarray:
    """q-th percentiles of `resamples` circular block bootstrap resamples of `x`."""
    if b <= 1:
        return _resampled_percentiles(x, q, resamples, rng)
    ordered, ranks = _ranks(x)
    ranks = _wrap(ranks, b)
    width = -(-len(x) // b) * b
    out = np.empty(resamples)
    for start, rows in _chunks(resamples, width):
        idx = _block_rows(rng, len(x), b, rows)
        out[start : start + rows] = _percentile_of_ranks(ordered, ranks[idx], q)
    return out


def block_bootstrap(
    b: np.ndarray,
    c: np.ndarray,
    q: float | None,
    paired: bool,
    resamples: int,
    rng: np.random.Generator,
    blocks: tuple[int, int],
) -> np.ndarray:
    """`resamples` replicates of statistic(c) - statistic(b), each series in arrival order.

    `blocks` are the block lengths of the baseline and the candidate (1: independent
    requests, the plain bootstrap). Paired: one set of block starts serves both runs, with
    the longer of the two lengths (for means, blocks of the per-request differences).
    Unpaired: each run is resampled on its own, with its own block length.
    """
    if not paired:
        if q is None:
            base = _resampled_block_means(b, blocks[0], resamples, rng)
            deltas = _resampled_block_means(c, blocks[1], resamples, rng)
        else:
            base = _block_percentiles(b, q, blocks[0], resamples, rng)
            deltas = _block_percentiles(c, q, blocks[1], resamples, rng)
        deltas -= base
        return deltas
    length = max(blocks)
    if length <= 1:
        return _bootstrap(b, c, q, paired, resamples, rng)
    if q is None:
        return _resampled_block_means(c - b, length, resamples, rng)
    (b_ordered, b_ranks), (c_ordered, c_ranks) = _ranks(b), _ranks(c)
    b_ranks, c_ranks = _wrap(b_ranks, length), _wrap(c_ranks, length)
    out = np.empty(resamples)
    width = -(-len(b) // length) * length
    for start, rows in _chunks(resamples, width):
        idx = _block_rows(rng, len(b), length, rows)
        out[start : start + rows] = _percentile_of_ranks(
            c_ordered, c_ranks[idx], q
        ) - _percentile_of_ranks(b_ordered, b_ranks[idx], q)
    return out


def welch(b: np.ndarray, c: np.ndarray, alpha: float) -> tuple[float, float, float]:
    """(p-value, low, high): Welch's t-test and (1 - alpha) interval of mean(c) - mean(b),
    for one value per replication on each side (at least 2 each)."""
    from scipy import stats

    delta = float(c.mean() - b.mean())
    vb, vc = float(b.var(ddof=1)) / len(b), float(c.var(ddof=1)) / len(c)
    se2 = vb + vc
    if se2 == 0:
        p = 1.0 if delta == 0 else 0.0
        return p, delta, delta
    df = se2**2 / (vb**2 / (len(b) - 1) + vc**2 / (len(c) - 1))
    t = delta / np.sqrt(se2)
    p = float(2 * stats.t.sf(abs(t), df))
    half = float(stats.t.ppf(1 - alpha / 2, df) * np.sqrt(se2))
    return p, delta - half, delta + half
