"""Exact metrics of a confidence-threshold cascade for many thresholds at once.

A routing stack answers a request by walking up capability tiers. Attempt k of request r
(k < m_r) comes with a confidence c[r, k]; the stack accepts it when c[r, k] >= theta or
when it is the last attempt, so the accepted attempt is

    f_r(theta) = the first k < m_r - 1 with c[r, k] >= theta, else m_r - 1.

`screen` reports, for every threshold and every group plus `all`, what `screen_naive`
recomputes from scratch per threshold: the same numbers to the last bit, not estimates.

How. f_r(theta) >= k + 1 exactly when theta > M[r, k], the running maximum of
c[r, 0..k]. With the thresholds in ascending order (the *settings*), every attempt is
therefore accepted on one run of consecutive settings lo <= s < hi, and a total over the
accepted attempts is a difference array over settings: +x at lo, -x at hi, summed up.

- Counts (requests, successes, tiers, escalations) are integers and exact as such.
- Sums of floats (cost, tokens, latency) are split into fixed-point limbs of at most
  53 - log2(attempts) bits, so every partial sum of a limb is an integer a float64 holds
  exactly; the limbs of a total are then rounded once, correctly, with `math.fsum`.
  The reference sums with `math.fsum` too, so both give the correctly rounded sum.
- Percentiles follow numpy's default ('linear') method: the two order statistics around
  rank (n - 1) q / 100, interpolated with numpy's own formula. The order statistics come
  from the attempts sorted by latency and cut into buckets of equal size: per setting
  and bucket, how many attempts are accepted (the same difference arrays, in two
  dimensions) names the bucket that holds a rank; a scan of that one bucket finds the
  value. Every setting costs O(buckets + bucket size), never O(requests).

The percentiles run on a second thread (numpy releases the GIL), beside the rest.

Values beyond `count[r]` are padding and never read. The thresholds may come in any
order, repeat, and lie outside [0, 1] (inf included); NaN is refused.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
from numpy.typing import NDArray

Floats = NDArray[np.float64]
Ints = NDArray[np.int64]
Metrics = dict[str, NDArray[np.float64]]

DEFAULT_PERCENTILES: tuple[float, ...] = (50.0, 95.0, 99.0)
MEANS = (
    ("cost_per_request_usd", "cost_usd"),
    ("tokens_per_request", "tokens"),
    ("mean_latency_ms", "latency_ms"),
)
"""Mean metrics and the Attempts field each one averages."""
_CELLS = 1 << 22
"""Setting x bucket counts held at once by the percentile search (int64 each)."""
_SCAN = 1 << 20
"""Attempts scanned at once when the percentile search reads its buckets."""


def percentile_key(q: float) -> str:
    """The metric name of latency percentile `q` (`p95_latency_ms`)."""
    return f"p{q:g}_latency_ms"


# --------------------------------------------------------------------------- attempts


@dataclass(frozen=True)
class Attempts:
    """Every answer attempt of every request, padded to the longest cascade.

    Row r is request r, column k its attempt k, valid for k < count[r]; padding beyond
    may hold anything (NaN included) and is never read. Each value is what the request
    ends with if attempt k is accepted: latency, cost and tokens up to and including
    attempt k, its success and the tier that served it. The constructor converts to the
    documented dtypes and refuses, with the offending request, anything it cannot
    screen exactly: NaN confidences before the last attempt, non-finite values, tiers
    or groups out of range, counts outside 1..T.
    """

    confidence: Floats
    """(n, T) answer confidences; the last attempt's is never read."""
    latency_ms: Floats
    """(n, T) latency from arrival to the end of attempt k, ms."""
    cost_usd: Floats
    """(n, T) cost up to and including attempt k."""
    tokens: Floats | Ints
    """(n, T) tokens up to and including attempt k (integers below 2**53; kept as float64)."""
    success: NDArray[np.bool_]
    """(n, T) whether the request succeeds if attempt k is accepted."""
    tier: NDArray[np.int16]
    """(n, T) the tier index, 0..n_tiers-1, that served attempt k."""
    count: Ints
    """(n,) attempts per request, 1..T."""
    group: Ints
    """(n,) group (route) index, 0..n_groups-1."""
    n_tiers: int
    n_groups: int

    def __post_init__(self) -> None:
        if not (1 <= self.n_tiers <= 2**15 and self.n_groups >= 1):
            raise ValueError(
                f"Attempts: need 1 <= n_tiers <= 32768 and n_groups >= 1, got {self.n_tiers} "
                f"and {self.n_groups}"
            )
        conf = np.asarray(self.confidence, dtype=np.float64)
        if conf.ndim != 2 or conf.shape[1] < 1:
            raise ValueError(f"Attempts.confidence must be (n, T) with T >= 1, got {conf.shape}")
        n, width = conf.shape
        count = _indices("count", self.count, n, 1, width)
        group = _indices("group", self.group, n, 0, self.n_groups - 1)
        k = np.arange(width)
        valid = k < count[:, None]
        _refuse("confidence", (k < count[:, None] - 1) & np.isnan(conf), "NaN")
        fields: dict[str, NDArray[Any]] = {"confidence": conf, "count": count, "group": group}
        for name in ("latency_ms", "cost_usd", "tokens", "success", "tier"):
            raw = np.asarray(getattr(self, name))
            if raw.shape != conf.shape or raw.dtype.kind not in "biuf":
                raise ValueError(
                    f"Attempts.{name} must be numeric with shape {conf.shape}, got {raw.dtype} "
                    f"{raw.shape}"
                )
            fields[name] = raw
        for name in ("latency_ms", "cost_usd", "tokens"):
            fields[name] = _amounts(name, fields[name], valid)
        ok = fields["success"]
        _refuse("success", valid & (ok != 0) & (ok != 1), "neither 0 nor 1 (nor bool)")
        fields["success"] = valid & (ok == 1)
        tier = fields["tier"]
        _refuse("tier", valid & ((tier < 0) | (tier >= self.n_tiers) | (tier != tier // 1)),
                f"not a tier index 0..{self.n_tiers - 1}")  # fmt: skip
        fields["tier"] = np.where(valid, tier, 0).astype(np.int16)
        for name, value in fields.items():
            object.__setattr__(self, name, value)

    @property
    def n(self) -> int:
        """Requests."""
        return int(self.confidence.shape[0])

    @property
    def width(self) -> int:
        """T, the most attempts any request may have."""
        return int(self.confidence.shape[1])


def _refuse(name: str, bad: NDArray[np.bool_], what: str) -> None:
    """Raise for the first True in `bad`, naming the request and attempt."""
    where = np.argwhere(bad)
    if where.size:
        r, k = where[0]
        raise ValueError(f"Attempts.{name}[{r}, {k}] is {what}; only padding beyond count may be")


def _indices(name: str, raw: Any, n: int, low: int, high: int) -> Ints:
    """A per-request integer array, each value within low..high."""
    arr = np.asarray(raw)
    if arr.shape != (n,) or (n and arr.dtype.kind not in "iu"):
        raise ValueError(f"Attempts.{name} must be ({n},) integers, got {arr.dtype} {arr.shape}")
    bad = np.flatnonzero((arr < low) | (arr > high))
    if bad.size:
        raise ValueError(
            f"Attempts.{name} must lie in {low}..{high}; request {bad[0]} has {arr[bad[0]]}"
        )
    return arr.astype(np.int64)


def _amounts(name: str, raw: NDArray[Any], valid: NDArray[np.bool_]) -> Floats:
    """Latency, cost or tokens as float64: padding 0, -0.0 as 0.0, every total finite."""
    if raw.dtype.kind in "iu" and np.any(np.abs(raw[valid]) > 2**53):
        raise ValueError(f"Attempts.{name}: integers beyond 2**53 have no exact float64")
    values = np.where(valid, raw.astype(np.float64), 0.0) + 0.0
    _refuse(name, ~np.isfinite(values), "not finite")
    big = float(np.max(np.abs(values), initial=0.0))
    if not math.isfinite(big * 4.0 * max(len(values), 1)):
        raise ValueError(f"Attempts.{name}: values up to {big:g} overflow a total")
    return values


def accepted_attempt(att: Attempts, theta: float) -> Ints:
    """f_r(theta) for every request: the attempt a stack with threshold `theta` accepts."""
    k = np.arange(att.width)
    with np.errstate(invalid="ignore"):
        stop = (att.confidence >= theta) | (k >= att.count[:, None] - 1)
    accepted: Ints = np.argmax(stop, axis=1).astype(np.int64)
    return accepted


# --------------------------------------------------------------------------- runs


@dataclass(frozen=True)
class _Runs:
    """Which settings accept which attempt.

    Settings are the thresholds in ascending order. Attempt k of request r is accepted
    exactly at settings lo[r, k] <= s < hi[r, k]: a run, as f_r is non-decreasing in
    theta, and empty for attempts no setting accepts (and for padding). The flat arrays
    list the attempts with a non-empty run; each request has exactly one accepted
    attempt per setting.
    """

    lo_grid: Ints
    hi_grid: Ints
    request: Ints
    attempt: Ints
    lo: Ints
    hi: Ints
    group: Ints
    settings: int
    n_groups: int

    @cached_property
    def cells(self) -> tuple[Ints, Ints]:
        """Where each attempt starts and stops counting in a (settings + 1, groups) grid."""
        return self.lo * self.n_groups + self.group, self.hi * self.n_groups + self.group


def _escalation_points(att: Attempts) -> tuple[Floats, NDArray[np.bool_]]:
    """M[r, k], the running maximum of c[r, 0..k], and where it matters (k < m_r - 1).

    The request escalates past attempt k exactly when theta > M[r, k].
    """
    compared = np.arange(att.width) < att.count[:, None] - 1
    points = np.maximum.accumulate(np.where(compared, att.confidence, -np.inf), axis=1)
    return points, compared


def _runs(att: Attempts, ascending: Floats) -> _Runs:
    settings = len(ascending)
    points, compared = _escalation_points(att)
    hi = np.full(compared.shape, settings, np.int64)
    if att.width > 1:
        hi[:, :-1] = np.searchsorted(ascending, points[:, :-1], side="right")
        np.putmask(hi, ~compared, settings)
    del points
    lo = np.empty_like(hi)
    lo[:, 0] = 0
    lo[:, 1:] = hi[:, :-1]
    np.putmask(hi, np.arange(att.width) >= att.count[:, None], 0)
    flat = np.flatnonzero(lo < hi)
    request, attempt = np.divmod(flat, att.width)
    return _Runs(
        lo_grid=lo,
        hi_grid=hi,
        request=request,
        attempt=attempt,
        lo=lo.ravel()[flat],
        hi=hi.ravel()[flat],
        group=att.group[request],
        settings=settings,
        n_groups=att.n_groups,
    )


def _tally(
    runs: _Runs, weights: Floats | None = None, classes: Ints | None = None, n_classes: int = 1
) -> Ints:
    """Exact per-setting totals of integer `weights` (default 1) over accepted attempts.

    Returns (settings, n_groups + 1, n_classes), the last group being `all`. Weights
    must be integers small enough that no sum exceeds 2**53 (bincount adds in float64).
    """
    settings, n_groups = runs.settings, runs.n_groups
    size = (settings + 1) * n_groups * n_classes
    if classes is None and n_classes == 1:
        lo, hi = runs.cells
    else:
        width = n_groups * n_classes
        cell = runs.group * n_classes + (0 if classes is None else classes)
        lo, hi = runs.lo * width + cell, runs.hi * width + cell
    diff = np.bincount(lo, weights, size) - np.bincount(hi, weights, size)
    per_group = np.cumsum(
        diff.astype(np.int64).reshape(settings + 1, n_groups, n_classes)[:settings], axis=0
    )
    return np.concatenate([per_group, per_group.sum(axis=1, keepdims=True)], axis=1)


# --------------------------------------------------------------------------- exact sums


def _limbs(values: Floats, terms: int) -> Iterator[tuple[int, Floats]]:
    """Split `values` into fixed-point limbs: values == sum(limb * 2**exponent), exactly.

    Yields (exponent, limb) from the top; a limb array is only valid until the next is
    drawn (one buffer serves all). Limbs are integer-valued floats below 2**bits in
    magnitude, bits chosen so that any sum of `terms` limbs is an integer float64 holds.
    """
    rest = np.abs(values)
    biggest = float(rest.max(initial=0.0))
    if biggest == 0.0:
        return
    smallest = float(np.min(rest, where=rest > 0, initial=np.inf))
    top = math.frexp(biggest)[1]
    low = max(math.frexp(smallest)[1] - 53, -1074)
    limb = np.floor(rest)
    if np.array_equal(limb, rest):
        low = max(low, 0)
    bits = 53 - max(terms, 1).bit_length()
    negative = values < 0
    signed = bool(negative.any())
    scratch = np.empty_like(rest)
    for j in reversed(range(-(-(top - low) // bits))):
        exponent = low + j * bits
        np.floor(np.ldexp(rest, -exponent, out=limb), out=limb)
        rest -= np.ldexp(limb, exponent, out=scratch)
        if signed:
            np.negative(limb, out=limb, where=negative)
        yield exponent, limb


def _correctly_rounded(
    parts: list[tuple[int, NDArray[np.int64]]], shape: tuple[int, ...]
) -> Floats:
    """sum(total * 2**exponent) over the parts, rounded once to the nearest float."""
    if not parts:
        return np.zeros(shape)
    terms = np.stack([np.ldexp(total.astype(np.float64), e) for e, total in parts], axis=-1)
    sums = [math.fsum(row) for row in terms.reshape(-1, len(parts)).tolist()]
    return np.asarray(sums, dtype=np.float64).reshape(shape)


def _exact_sums(runs: _Runs, values: Floats, n_groups: int) -> Floats:
    """Per setting and group (plus all), the correctly rounded sum of accepted `values`."""
    parts = [(e, _tally(runs, weights=limb)[..., 0]) for e, limb in _limbs(values, len(values))]
    return _correctly_rounded(parts, (runs.settings, n_groups + 1))


# --------------------------------------------------------------------------- percentiles


def _linear_ranks(n: int, q: float) -> tuple[int, int, float]:
    """numpy's 'linear' percentile of n values: the two ranks it reads and its weight.

    Mirrors numpy.lib._function_base_impl (`_get_indexes`, `_get_gamma`), including the
    weight it uses when the index falls on the last value (index -1, weight v + 1).
    """
    virtual = (n - 1) * float(np.true_divide(q, 100))
    if virtual >= n - 1:
        return n - 1, n - 1, virtual + 1.0
    prev = math.floor(virtual)
    return prev, prev + 1, virtual - prev


def _lerp(a: Floats, b: Floats, t: float) -> Floats:
    """numpy's `_lerp`, operation for operation, so results match it bit for bit."""
    diff = b - a
    if t >= 0.5:
        return np.asarray(b - diff * (1 - t), dtype=np.float64)
    return np.asarray(a + diff * t, dtype=np.float64)


def _by_value(values: Floats) -> Ints:
    """argsort of finite floats (ties in any order), about twice as fast as numpy's.

    Sorts int64 keys holding each value's leading bits (ordered like the floats) above
    its index, then repairs, with a stable sort of the nearly sorted result, the values
    that only the dropped bits tell apart.
    """
    n = len(values)
    bits = max(1, (n - 1).bit_length())
    if bits > 32:
        return np.argsort(values)
    raw = values.view(np.int64)
    key = np.where(raw < 0, raw ^ np.int64(0x7FFF_FFFF_FFFF_FFFF), raw)
    key >>= bits
    key <<= bits
    key |= np.arange(n)
    key.sort()
    key &= (1 << bits) - 1
    got = values[key]
    if np.any(got[1:] < got[:-1]):
        key = key[np.argsort(got, kind="stable")]
    return key


@dataclass(frozen=True)
class _Pool:
    """Attempts sorted by value, padded to whole buckets of `size` (padding never accepted)."""

    lo: Ints
    hi: Ints
    values: Floats
    size: int

    @classmethod
    def of(cls, lo: Ints, hi: Ints, values: Floats, size: int, settings: int) -> _Pool:
        pad = -len(values) % size
        return cls(
            lo=np.concatenate([lo, np.full(pad, settings, np.int64)]),
            hi=np.concatenate([hi, np.zeros(pad, np.int64)]),
            values=np.concatenate([values, np.zeros(pad)]),
            size=size,
        )


def _select(lo: Ints, hi: Ints, values: Floats, settings: int, ranks: Ints) -> Floats:
    """The values at `ranks` (0-based) among the attempts each setting accepts.

    `values` ascending with their runs `lo`/`hi`; every setting accepts the same number
    of these attempts, more than max(ranks). Returns (settings, len(ranks)).

    Buckets of `size` consecutive attempts: counts[s, b], how many attempts in buckets
    0..b setting s accepts, names the bucket holding each rank; `_scan` reads it. About
    sqrt(ranks x attempts) buckets balance the two.
    """
    total = len(values)
    n_buckets = max(1, min(total, math.isqrt(len(ranks) * total)))
    size = -(-total // n_buckets)
    n_buckets = -(-total // size)
    pool = _Pool.of(lo, hi, values, size, settings)
    first = np.arange(total) // size
    out = np.empty((settings, len(ranks)))
    step = max(1, _CELLS // n_buckets - 1)
    for s0 in range(0, settings, step):
        s1 = min(settings, s0 + step)
        m = s1 - s0
        a, b = (lo, hi) if m == settings else (np.clip(lo, s0, s1) - s0, np.clip(hi, s0, s1) - s0)
        # bucket-major, so the scattered increments of a bucket stay within m + 1 cells
        cell = first * (m + 1)
        grid = np.bincount(cell + a, minlength=n_buckets * (m + 1))
        grid -= np.bincount(cell + b, minlength=n_buckets * (m + 1))
        grid = grid.reshape(n_buckets, m + 1)
        np.cumsum(grid, axis=1, out=grid)
        counts = np.ascontiguousarray(grid[:, :m].T)
        del grid
        np.cumsum(counts, axis=1, out=counts)
        # shift each row past the previous one's end: one searchsorted finds every bucket
        offset = np.arange(m, dtype=np.int64)[:, None] * (int(counts[0, -1]) + 1)
        counts += offset
        flat = counts.ravel()
        where = np.searchsorted(flat, (offset + ranks + 1).ravel())
        row, bucket = np.divmod(where, n_buckets)
        before = np.where(bucket > 0, flat[where - 1] - offset[row, 0], 0)
        local = np.tile(ranks, m) - before
        out[s0:s1] = _scan(pool, row + s0, bucket, local).reshape(m, len(ranks))
    return out


def _scan(pool: _Pool, setting: Ints, bucket: Ints, local: Ints) -> Floats:
    """Per query, the value of the `local`-th attempt (0-based) `setting` accepts in `bucket`."""
    size = pool.size
    n_buckets = len(pool.values) // size
    pairs, pair = np.unique(setting * n_buckets + bucket, return_inverse=True)
    pair_setting, pair_bucket = np.divmod(pairs, n_buckets)
    out = np.empty(len(setting))
    step = max(1, _SCAN // size)
    for u0 in range(0, len(pairs), step):
        u1 = min(len(pairs), u0 + step)
        pos = pair_bucket[u0:u1, None] * size + np.arange(size)
        s = pair_setting[u0:u1, None]
        seen = np.cumsum((pool.lo[pos] <= s) & (pool.hi[pos] > s), axis=1)
        seen += np.arange(u1 - u0)[:, None] * (size + 1)
        mine = np.flatnonzero((pair >= u0) & (pair < u1))
        hit = np.searchsorted(seen.ravel(), (pair[mine] - u0) * (size + 1) + local[mine] + 1)
        out[mine] = pool.values[pos.ravel()[hit]]
    return out


def _by_latency(att: Attempts) -> tuple[Ints, Floats]:
    """Every valid attempt (flat index into the (n, T) grid) by latency, and its latency."""
    flat = np.flatnonzero(np.arange(att.width) < att.count[:, None])
    latency = att.latency_ms.ravel()[flat]
    order = _by_value(latency)
    return flat[order], latency[order]


def _percentiles(
    att: Attempts, runs: _Runs, by_latency: Future[tuple[Ints, Floats]] | None, qs: list[float]
) -> Metrics:
    """Exact latency percentiles per setting and group (plus all): {key: (S, G + 1)}."""
    n_groups, sizes = att.n_groups, _sizes(att)
    out = {percentile_key(q): np.full((runs.settings, n_groups + 1), np.nan) for q in qs}
    if by_latency is None or not runs.settings or not att.n:
        return out
    flat, values = by_latency.result()
    lo, hi = runs.lo_grid.ravel()[flat], runs.hi_grid.ravel()[flat]
    group = att.group[flat // att.width]
    del flat

    def fill(c: int, part: slice) -> None:
        n = int(sizes[c])
        plan = [_linear_ranks(n, q) for q in qs]
        ranks = np.unique([r for a, b, _ in plan for r in (a, b)]).astype(np.int64)
        got = _select(lo[part], hi[part], values[part], runs.settings, ranks)
        column_of = {int(r): j for j, r in enumerate(ranks)}
        for q, (a, b, t) in zip(qs, plan, strict=True):
            out[percentile_key(q)][:, c] = _lerp(got[:, column_of[a]], got[:, column_of[b]], t)

    fill(n_groups, slice(None))
    if n_groups == 1:
        for column in out.values():
            column[:, 0] = column[:, 1]
        return out
    # each group's attempts, still ascending: a stable (radix) sort by group
    regroup = np.argsort(group.astype(np.int16 if n_groups < 2**15 else np.int64), kind="stable")
    lo, hi, values = lo[regroup], hi[regroup], values[regroup]
    end = np.cumsum(np.bincount(group, minlength=n_groups))
    del regroup, group
    for c in range(n_groups):
        if sizes[c]:
            fill(c, slice(end[c - 1] if c else 0, end[c]))
    return out


# --------------------------------------------------------------------------- the metrics


def _assemble(
    sizes: Ints,
    success: Ints,
    escalated: Ints,
    tiers: Ints,
    sums: Metrics,
    percentiles: Metrics,
) -> Metrics:
    """The metrics from per-setting totals; NaN wherever a group has no requests."""
    settings = success.shape[0]
    empty = sizes == 0
    n = np.where(empty, 1, sizes).astype(np.float64)

    def mean(total: Floats) -> Floats:
        return np.where(empty, np.nan, total / n)

    out: Metrics = {
        "requests": np.broadcast_to(sizes.astype(np.float64), (settings, len(sizes))).copy(),
        "success_rate": mean(success.astype(np.float64)),
    }
    out.update({metric: mean(sums[metric]) for metric, _ in MEANS})
    out.update({key: np.where(empty, np.nan, v) for key, v in percentiles.items()})
    out["share_tier"] = np.where(empty[:, None], np.nan, tiers / n[:, None])
    out["escalation_rate"] = mean(escalated.astype(np.float64))
    wins = success.astype(np.float64)
    out["cost_per_success_usd"] = np.where(
        success == 0, np.nan, sums["cost_per_request_usd"] / np.where(success == 0, 1.0, wins)
    )
    return out


def _check_thresholds(thresholds: NDArray[Any] | Sequence[float]) -> Floats:
    theta = np.asarray(thresholds, dtype=np.float64)
    if theta.ndim != 1:
        raise ValueError(f"thresholds must be one-dimensional, got shape {theta.shape}")
    if np.isnan(theta).any():
        raise ValueError("thresholds must not be NaN")
    return theta


def _check_percentiles(percentiles: Sequence[float]) -> list[float]:
    qs = list(dict.fromkeys(float(q) for q in percentiles))
    bad = [q for q in qs if not 0.0 <= q <= 100.0]
    if bad:
        raise ValueError(f"percentiles must lie in [0, 100], got {bad[0]:g}")
    return qs


def _sizes(att: Attempts) -> Ints:
    per_group = np.bincount(att.group, minlength=att.n_groups).astype(np.int64)
    return np.append(per_group, att.n)


def screen(
    att: Attempts,
    thresholds: NDArray[Any] | Sequence[float],
    percentiles: Sequence[float] = DEFAULT_PERCENTILES,
) -> Metrics:
    """Exact metrics of the accepted attempts for every threshold, group and `all`.

    Returns (S, G + 1) float64 arrays, row s for thresholds[s] and column G for all
    requests: `requests`, `success_rate`, `cost_per_request_usd`, `cost_per_success_usd`
    (total cost over successes; NaN without one), `tokens_per_request`,
    `mean_latency_ms`, one `p{q:g}_latency_ms` per percentile (numpy.percentile's
    default method, bit for bit), `share_tier` (S, G + 1, n_tiers) and
    `escalation_rate` (share accepted after the first attempt). Means are the correctly
    rounded sum divided by the count. A group without requests has requests 0 and NaN
    elsewhere. Equal to `screen_naive`, key for key and bit for bit.
    """
    theta = _check_thresholds(thresholds)
    qs = _check_percentiles(percentiles)
    order = np.argsort(theta, kind="stable")
    groups = att.n_groups
    sizes = _sizes(att)
    # percentiles on a second core (numpy releases the GIL), the rest here
    with ThreadPoolExecutor(max_workers=1) as worker:
        # sorting by latency needs no thresholds: it runs while _runs does
        by_latency = worker.submit(_by_latency, att) if qs else None
        runs = _runs(att, theta[order])
        pending = worker.submit(_percentiles, att, runs, by_latency, qs)
        at = (runs.request, runs.attempt)
        # one count per (tier, success, escalated) class serves all three
        kind = (att.tier[at].astype(np.int64) * 2 + att.success[at]) * 2 + (runs.attempt > 0)
        counts = _tally(runs, classes=kind, n_classes=4 * att.n_tiers)
        counts = counts.reshape(*counts.shape[:2], att.n_tiers, 2, 2)
        tiers = counts.sum(axis=(3, 4))
        success = counts[..., 1, :].sum(axis=(2, 3))
        escalated = counts[..., 1].sum(axis=(2, 3))
        sums = {m: _exact_sums(runs, getattr(att, field)[at], groups) for m, field in MEANS}
        pct = pending.result()
    ascending = _assemble(sizes, success, escalated, tiers, sums, pct)
    back = np.empty_like(order)
    back[order] = np.arange(len(order))
    return {key: value[back] for key, value in ascending.items()}


def screen_naive(
    att: Attempts,
    thresholds: NDArray[Any] | Sequence[float],
    percentiles: Sequence[float] = DEFAULT_PERCENTILES,
) -> Metrics:
    """`screen`, recomputed from scratch for each threshold: the reference it must equal.

    Sums with `math.fsum` (correctly rounded), percentiles with `numpy.percentile`.
    """
    theta = _check_thresholds(thresholds)
    qs = _check_percentiles(percentiles)
    groups, settings = att.n_groups, len(theta)
    members = [np.flatnonzero(att.group == g) for g in range(groups)] + [np.arange(att.n)]
    sizes = _sizes(att)
    success = np.zeros((settings, groups + 1), np.int64)
    escalated = np.zeros_like(success)
    tiers = np.zeros((settings, groups + 1, att.n_tiers), np.int64)
    sums = {metric: np.zeros((settings, groups + 1)) for metric, _ in MEANS}
    pct = {percentile_key(q): np.full((settings, groups + 1), np.nan) for q in qs}
    rows = np.arange(att.n)
    for s, t in enumerate(theta.tolist()):
        f = accepted_attempt(att, t)
        ok, tier, latency = att.success[rows, f], att.tier[rows, f], att.latency_ms[rows, f]
        values = {metric: getattr(att, field)[rows, f] for metric, field in MEANS}
        for c, idx in enumerate(members):
            if not len(idx):
                continue
            success[s, c] = np.count_nonzero(ok[idx])
            escalated[s, c] = np.count_nonzero(f[idx])
            tiers[s, c] = np.bincount(tier[idx], minlength=att.n_tiers)
            for metric, v in values.items():
                sums[metric][s, c] = math.fsum(v[idx].tolist())
            if qs:
                for q, p in zip(qs, np.percentile(latency[idx], qs), strict=True):
                    pct[percentile_key(q)][s, c] = p
    return _assemble(sizes, success, escalated, tiers, sums, pct)


def threshold_for_share(att: Attempts, tier: int, share: float, group: int | None = None) -> float:
    """The threshold at which the share of requests accepted at `tier` is closest to `share`.

    The share only changes where theta crosses a running maximum of confidences, so every
    such breakpoint (and +inf, where every request escalates to its last attempt) is
    tried, exactly. Each breakpoint b stands for the thresholds just below and at it:
    (previous breakpoint, b]. Among equally close shares the lowest threshold wins.
    Counts requests of `group`, or all requests when None.
    """
    if not 0 <= tier < att.n_tiers:
        raise ValueError(f"tier must lie in 0..{att.n_tiers - 1}, got {tier}")
    if not math.isfinite(share):
        raise ValueError(f"share must be a finite number, got {share}")
    if group is not None and not 0 <= group < att.n_groups:
        raise ValueError(f"group must lie in 0..{att.n_groups - 1} or be None, got {group}")
    column = att.n_groups if group is None else group
    sizes = _sizes(att)
    if sizes[column] == 0:
        raise ValueError(f"group {group} has no requests: no share to match")
    points, compared = _escalation_points(att)
    if group is not None:
        compared &= (att.group == group)[:, None]
    candidates = np.unique(np.append(points[compared], np.inf))
    runs = _runs(att, candidates)
    at_tier = (att.tier[runs.request, runs.attempt] == tier).astype(np.float64)
    hits = _tally(runs, weights=at_tier)[:, column, 0]
    gap = np.abs(hits / sizes[column] - share)
    return float(candidates[int(np.argmin(gap))])
