"""Within-run confidence intervals that respect dependence in time.

Requests in one run are not independent: they share queues, breakers, traffic spikes
and outages, so an interval that treats them as independent (Wilson) is too narrow.
Here a series (one value per request, in arrival order) is cut into contiguous
arrival-time blocks and the interval is a t-interval on the block means with
(blocks - 1) degrees of freedom: non-overlapping batch means (Carlstein 1986;
Law & Kelton, *Simulation Modeling and Analysis*, ch. 9).

Block length rule (what a caller may rely on): ``b = max(ceil(n ** 0.6), 3 * b_pw)``
requests, capped at ``n // MIN_BLOCKS`` so there are always at least ``MIN_BLOCKS``
blocks. ``b_pw`` is the automatic block length of Politis & White (2004, *Econometric
Reviews* 23:53-70, with the correction of Patton, Politis & White 2009) for the non-
overlapping block (batch means) variance estimator: a flat-top lag window whose
bandwidth is picked from where the sample autocorrelations stop being significant,
``b_pw = (G / sigma2_inf) ** (2/3) * n ** (1/3)``; the more autocorrelated the series,
the longer the blocks. ``b_pw`` minimises the mean squared error of the variance
estimate, which leaves it biased low by about (dependence length / b): right for a point
estimate, not for an interval or a test, where a variance 20% low shows as a 9-10%
false-alarm rate at alpha 5% (tests/unit/test_compare_dependence.py, episodes of 100
requests). Three times ``b_pw`` brings that to 4-7%. The ``n ** 0.6`` floor is there
because a 0/1 series hides slow, non-stationary effects (a spike, an outage) from its
autocorrelations, so ``b_pw`` alone is often 1. Batch means is consistent for any ``b =
n ** theta`` with 0 < theta < 1; Flegal & Jones (2010, *Ann. Statist.* 38:1034-1070)
recommend theta = 1/2. On the support suite (bench/coverage.py) theta = 1/2 under-covers
`all` (82%), and growing blocks until the lag-1 autocorrelation of block means is
insignificant over-covers (99-100% on reasoning); theta = 0.6 lands at 95-98% on every
route.
Under ``MIN_BLOCKS * MIN_BLOCKS`` values, or when every block mean is equal (no
variation to estimate from), a share falls back to Wilson and says so in `method`.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

__all__ = [
    "BATCH_MEANS",
    "IID_T",
    "MIN_BLOCKS",
    "PW_FACTOR",
    "WILSON",
    "Interval",
    "block_length",
    "design_effect",
    "interval",
    "politis_white",
    "wilson",
]

MIN_BLOCKS = 10
"""Fewest blocks a batch-means interval is computed from; fewer: Wilson."""
FLOOR_EXPONENT = 0.6
"""Blocks hold at least n ** FLOOR_EXPONENT requests (see the module docstring)."""
PW_FACTOR = 3.0
"""Blocks hold at least PW_FACTOR times the Politis-White length (see the module docstring)."""
BATCH_MEANS = "batch means"
WILSON = "wilson"
IID_T = "t (independent)"
Z95 = 1.959963984540054


def wilson(successes: float, n: float, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a proportion of independent trials; (nan, nan) when n == 0."""
    if n <= 0:
        return math.nan, math.nan
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    lo = 0.0 if successes <= 0 else max(0.0, centre - half)
    hi = 1.0 if successes >= n else min(1.0, centre + half)
    return lo, hi


class Interval(NamedTuple):
    """A 95% interval, the method that produced it and its block length in requests
    (1 for Wilson or the independent t-interval, 0 when there are no values)."""

    low: float
    high: float
    method: str
    block: int


def _autocov(x: np.ndarray, max_lag: int) -> np.ndarray:
    """Sample autocovariances at lags 0..max_lag (divisor n), by FFT."""
    n = x.size
    xc = x - x.mean()
    size = 1 << (2 * n - 1).bit_length()
    f = np.fft.rfft(xc, size)
    acov: np.ndarray = np.fft.irfft(f * np.conj(f), size)[: max_lag + 1] / n
    return acov


def politis_white(x: ArrayLike) -> float:
    """Politis & White (2004) block length for non-overlapping batch means of `x`
    (NaN when `x` has no variation)."""
    v = np.asarray(x, dtype=np.float64)
    n = v.size
    if n < 4:
        return math.nan
    kn = max(5, math.ceil(math.sqrt(math.log10(n))))
    max_lag = min(n - 1, math.ceil(math.sqrt(n)) + kn)
    acov = _autocov(v, max_lag)
    if acov[0] <= 0:
        return math.nan
    rho = acov[1:] / acov[0]
    small = np.abs(rho) < 2.0 * math.sqrt(math.log10(n) / n)
    runs = np.convolve(small.astype(np.int64), np.ones(kn, dtype=np.int64), mode="valid")
    first = np.flatnonzero(runs == kn)
    m = int(first[0]) if first.size else max_lag
    big_m = min(2 * m, max_lag)
    lags = np.arange(big_m + 1)
    t = lags / big_m if big_m else np.zeros(1)
    lam = np.where(t <= 0.5, 1.0, 2.0 * (1.0 - t))
    r = acov[: big_m + 1]
    g = 2.0 * float(np.sum(lam[1:] * lags[1:] * r[1:]))
    sigma2 = float(r[0] + 2.0 * np.sum(lam[1:] * r[1:]))
    if sigma2 <= 0:
        return math.nan
    return float(abs(g / sigma2) ** (2.0 / 3.0) * n ** (1.0 / 3.0))


def block_length(x: ArrayLike) -> int:
    """Requests per block for `x` (values in arrival order), by the module's rule."""
    v = np.asarray(x, dtype=np.float64)
    n = v.size
    floor = math.ceil(n**FLOOR_EXPONENT) if n else 0
    pw = politis_white(v)
    b = floor if math.isnan(pw) else max(floor, math.ceil(PW_FACTOR * pw))
    return int(min(b, n // MIN_BLOCKS)) if n >= MIN_BLOCKS else n


def _block_means(v: np.ndarray, b: int) -> np.ndarray:
    """Means of n // b contiguous, nearly equal blocks covering every value."""
    k = v.size // b
    idx = (np.arange(v.size) * k) // v.size
    means: np.ndarray = np.bincount(idx, weights=v, minlength=k) / np.bincount(idx, minlength=k)
    return means


def interval(x: ArrayLike, share: bool = True, level: float = 0.95) -> Interval:
    """Dependence-aware interval for the mean of `x` (values in arrival order).

    `share`: `x` is 0/1 and the interval is clipped to [0, 1]; its fallback is Wilson.
    Otherwise the fallback is the independent t-interval (`IID_T`).
    """
    v = np.asarray(x, dtype=np.float64)
    n = v.size
    if n == 0:
        return Interval(math.nan, math.nan, WILSON if share else IID_T, 0)
    mean = float(v.mean())
    b = block_length(v) if n >= MIN_BLOCKS * MIN_BLOCKS else 0
    means = _block_means(v, b) if b else np.zeros(0)
    if means.size >= MIN_BLOCKS and float(np.ptp(means)) > 0:
        k = means.size
        half = float(stats.t.ppf(0.5 + level / 2, k - 1)) * float(means.std(ddof=1)) / math.sqrt(k)
        lo, hi = mean - half, mean + half
        if share:
            lo, hi = max(0.0, lo), min(1.0, hi)
        return Interval(lo, hi, BATCH_MEANS, b)
    if share:
        z = float(stats.norm.ppf(0.5 + level / 2))
        lo, hi = wilson(float(v.sum()), n, z)
        return Interval(lo, hi, WILSON, 1)
    if n < 2:
        return Interval(math.nan, math.nan, IID_T, 1)
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * float(v.std(ddof=1)) / math.sqrt(n)
    return Interval(mean - half, mean + half, IID_T, 1)


def design_effect(x: ArrayLike) -> float:
    """Variance of the mean of `x` (arrival order) by batch means over the variance it would
    have if the values were independent; at least 1, and 1 under ``MIN_BLOCKS ** 2`` values
    or without variation. Dividing counts by it gives effective counts (Rao & Scott 1981).
    """
    v = np.asarray(x, dtype=np.float64)
    n = v.size
    if n < MIN_BLOCKS * MIN_BLOCKS:
        return 1.0
    iid = float(v.var(ddof=1)) / n
    if iid <= 0:
        return 1.0
    means = _block_means(v, block_length(v))
    return max(1.0, float(means.var(ddof=1)) / means.size / iid)
