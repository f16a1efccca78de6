"""Distributions in the suite's own terms, and the rule that fits one to a sample.

A `Dist` is exactly one of the shapes a suite accepts for a time in milliseconds:

    {dist: lognormal, p50_ms, p99_ms}   exactly through its median and 99th percentile
    {dist: exponential, mean_ms}
    {dist: constant, p50_ms}
    {dist: empirical, values_ms: [...]} resampled uniformly with replacement

and draws the way the simulator does, so a goodness-of-fit check on a `Dist` checks
what a run would see. `fit_dist` chooses the shape (`AUTO_RULE`) and rounds every
number to `SIGNIFICANT` digits *before* checking it, so the checked fit is the written
one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from scipy import stats

from harness.data._gof import ks_test

__all__ = [
    "AUTO_KS",
    "AUTO_MIN_N",
    "AUTO_P",
    "AUTO_RULE",
    "EMPIRICAL_MAX",
    "SIGNIFICANT",
    "Dist",
    "DistKind",
    "choose_dist",
    "fit_dist",
    "round_sig",
]

DistKind = Literal["lognormal", "exponential", "constant", "empirical"]
FitKind = Literal["auto", "lognormal", "exponential", "constant", "empirical"]
FloatArray = npt.NDArray[np.float64]

Z99 = float(stats.norm.ppf(0.99))
EMPIRICAL_MAX = 512
"""Most values an empirical distribution stores (quantiles at (i + 0.5) / K beyond)."""
SIGNIFICANT = 5
"""Significant digits of a fitted parameter (sampling error is far above 1e-5)."""
VALUE_SIGNIFICANT = 4
"""Significant digits of each value of an empirical distribution."""
AUTO_KS = 0.05
"""`auto` leaves the lognormal when its KS distance to the sample exceeds this..."""
AUTO_P = 0.01
"""...and the KS test rejects it at this level..."""
AUTO_MIN_N = 20
"""...and the sample has at least this many values."""
AUTO_RULE = (
    f"constant when every value is equal; otherwise lognormal through the sample's p50 "
    f"and p99, unless that is undefined (p50 <= 0 or p99 == p50) or, with n >= "
    f"{AUTO_MIN_N}, its KS distance exceeds {AUTO_KS} with p < {AUTO_P}: then empirical"
)
"""The `auto` choice in words (written into fit reports)."""


def round_sig(x: float, digits: int = SIGNIFICANT) -> float:
    """`x` rounded to `digits` significant digits (0, inf and nan unchanged)."""
    x = float(x)
    if x == 0 or not math.isfinite(x):
        return x
    return round(x, digits - 1 - math.floor(math.log10(abs(x))))


@dataclass(frozen=True)
class Dist:
    """A non-negative distribution (milliseconds, or any unit) in one of the suite's shapes.

    Build with the class methods; the constructor checks the parameters the way the
    suite does (lognormal needs 0 < p50 < p99, values must be finite and >= 0).
    """

    kind: DistKind
    p50_ms: float | None = None
    p99_ms: float | None = None
    mean_ms: float | None = None
    values_ms: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        problem = self._problem()
        if problem:
            raise ValueError(f"{self.kind} distribution: {problem}")

    def _problem(self) -> str | None:
        if self.kind == "lognormal":
            if self.p50_ms is None or self.p99_ms is None:
                return "needs p50_ms and p99_ms"
            if not 0 < self.p50_ms < self.p99_ms < math.inf:
                return f"needs 0 < p50_ms < p99_ms, got {self.p50_ms} and {self.p99_ms}"
        elif self.kind == "exponential":
            if self.mean_ms is None or not 0 < self.mean_ms < math.inf:
                return f"needs a positive mean_ms, got {self.mean_ms}"
        elif self.kind == "constant":
            if self.p50_ms is None or not 0 <= self.p50_ms < math.inf:
                return f"needs a finite p50_ms >= 0, got {self.p50_ms}"
        elif self.kind == "empirical":
            v = np.asarray(self.values_ms, dtype=np.float64)
            if v.size == 0:
                return "needs at least one value"
            if not (np.isfinite(v).all() and (v >= 0).all()):
                return "values must be finite and >= 0"
        else:
            return "unknown kind"
        return None

    @classmethod
    def lognormal(cls, p50_ms: float, p99_ms: float) -> Dist:
        """Lognormal exactly through `p50_ms` and `p99_ms` (p99 > p50 > 0)."""
        return cls("lognormal", p50_ms=float(p50_ms), p99_ms=float(p99_ms))

    @classmethod
    def exponential(cls, mean_ms: float) -> Dist:
        """Exponential with mean `mean_ms`."""
        return cls("exponential", mean_ms=float(mean_ms))

    @classmethod
    def constant(cls, value_ms: float) -> Dist:
        """Always `value_ms`."""
        return cls("constant", p50_ms=float(value_ms))

    @classmethod
    def empirical(cls, values_ms: npt.ArrayLike) -> Dist:
        """Uniform resampling of `values_ms` (store at most `EMPIRICAL_MAX`)."""
        return cls("empirical", values_ms=tuple(float(v) for v in np.ravel(values_ms)))

    # ----------------------------------------------------------------- suite form

    def to_dict(self) -> dict[str, Any]:
        """The suite's mapping for this distribution, e.g. `{dist: lognormal, p50_ms, p99_ms}`."""
        if self.kind == "lognormal":
            return {"dist": "lognormal", "p50_ms": self.p50_ms, "p99_ms": self.p99_ms}
        if self.kind == "exponential":
            return {"dist": "exponential", "mean_ms": self.mean_ms}
        if self.kind == "constant":
            return {"dist": "constant", "p50_ms": self.p50_ms}
        return {"dist": "empirical", "values_ms": list(self.values_ms)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Dist:
        """Inverse of `to_dict`; ValueError on anything else."""
        kind = d.get("dist")
        if kind == "lognormal":
            return cls.lognormal(d["p50_ms"], d["p99_ms"])
        if kind == "exponential":
            return cls.exponential(d["mean_ms"])
        if kind == "constant":
            return cls.constant(d["p50_ms"])
        if kind == "empirical":
            return cls.empirical(d["values_ms"])
        raise ValueError(f"unknown dist {kind!r}")

    # ----------------------------------------------------------------- as a distribution

    @property
    def _mu_sigma(self) -> tuple[float, float]:
        assert self.p50_ms is not None and self.p99_ms is not None
        mu = math.log(self.p50_ms)
        return mu, (math.log(self.p99_ms) - mu) / Z99

    @property
    def continuous(self) -> bool:
        """Lognormal and exponential have continuous cdfs; constant and empirical are steps."""
        return self.kind in ("lognormal", "exponential")

    def support(self) -> FloatArray:
        """The equally likely values of a discrete distribution (empty for continuous ones)."""
        if self.kind == "empirical":
            return np.asarray(self.values_ms, dtype=np.float64)
        if self.kind == "constant":
            assert self.p50_ms is not None
            return np.array([self.p50_ms])
        return np.empty(0)

    def sample(self, rng: np.random.Generator, size: int | tuple[int, ...]) -> FloatArray:
        """Draws as the simulator makes them (lognormal: exp(mu + sigma * z))."""
        if self.kind == "lognormal":
            mu, sigma = self._mu_sigma
            return np.exp(mu + sigma * rng.standard_normal(size))
        if self.kind == "exponential":
            assert self.mean_ms is not None
            return rng.exponential(self.mean_ms, size)
        if self.kind == "constant":
            assert self.p50_ms is not None
            return np.full(size, self.p50_ms)
        support = self.support()
        return support[rng.integers(0, support.size, size)]

    def cdf(self, x: npt.ArrayLike) -> FloatArray:
        """P(X <= x)."""
        xs = np.asarray(x, dtype=np.float64)
        if self.kind == "lognormal":
            mu, sigma = self._mu_sigma
            return np.asarray(stats.lognorm.cdf(xs, s=sigma, scale=math.exp(mu)), np.float64)
        if self.kind == "exponential":
            return np.asarray(stats.expon.cdf(xs, scale=self.mean_ms), np.float64)
        support = np.sort(self.support())
        return np.searchsorted(support, xs, side="right") / support.size

    def quantile(self, q: npt.ArrayLike) -> FloatArray:
        """The q-quantiles (empirical: numpy's linear rule on the stored values)."""
        qs = np.asarray(q, dtype=np.float64)
        if self.kind == "lognormal":
            mu, sigma = self._mu_sigma
            return np.exp(mu + sigma * np.asarray(stats.norm.ppf(qs), np.float64))
        if self.kind == "exponential":
            assert self.mean_ms is not None
            return -self.mean_ms * np.log1p(-qs)
        return np.asarray(np.quantile(self.support(), qs), np.float64)

    def describe(self) -> str:
        """Short text: `lognormal p50=210 p99=480`, `empirical (150 values)`."""
        if self.kind == "lognormal":
            return f"lognormal p50={self.p50_ms:g} p99={self.p99_ms:g}"
        if self.kind == "exponential":
            return f"exponential mean={self.mean_ms:g}"
        if self.kind == "constant":
            return f"constant {self.p50_ms:g}"
        return f"empirical ({len(self.values_ms)} values)"


# --------------------------------------------------------------------------- fitting


def _values(values: npt.ArrayLike) -> FloatArray:
    x = np.asarray(values, dtype=np.float64).ravel()
    x = x[~np.isnan(x)]
    if x.size == 0:
        raise ValueError("no values to fit")
    if not np.isfinite(x).all() or (x < 0).any():
        raise ValueError("values must be finite and >= 0")
    return x


def _empirical(x: FloatArray) -> Dist:
    if x.size > EMPIRICAL_MAX:
        k = EMPIRICAL_MAX
        x = np.quantile(x, (np.arange(k) + 0.5) / k)
    return Dist.empirical([round_sig(float(v), VALUE_SIGNIFICANT) for v in np.sort(x)])


def _lognormal(x: FloatArray) -> Dist | None:
    p50, p99 = (round_sig(float(v)) for v in np.quantile(x, [0.5, 0.99]))
    if not 0 < p50 < p99:
        return None
    return Dist.lognormal(p50, p99)


def choose_dist(values: npt.ArrayLike, kind: FitKind = "auto") -> tuple[Dist, str]:
    """`fit_dist` plus one line saying why this shape (for the fit report)."""
    x = _values(values)
    if kind == "empirical":
        return _empirical(x), "empirical as asked"
    if kind == "exponential":
        mean = round_sig(float(x.mean()))
        if mean <= 0:
            raise ValueError("an exponential needs a positive mean; every value is 0")
        return Dist.exponential(mean), "exponential as asked (mean of the sample)"
    if kind == "constant":
        return Dist.constant(round_sig(float(np.median(x)))), "constant as asked (median)"
    equal = bool((x == x[0]).all())
    if kind == "auto" and equal:
        return Dist.constant(round_sig(float(x[0]))), "constant: every value is equal"
    logn = _lognormal(x)
    if kind == "lognormal":
        if logn is None:
            raise ValueError(
                "a lognormal through p50 and p99 needs 0 < p50 < p99; "
                f"the sample has p50={np.quantile(x, 0.5):g}, p99={np.quantile(x, 0.99):g}"
            )
        return logn, "lognormal as asked (through p50 and p99)"
    if kind != "auto":
        raise ValueError(
            f"unknown kind {kind!r}; use auto, lognormal, empirical, exponential or constant"
        )
    if logn is None:
        return _empirical(
            x
        ), "empirical: no lognormal passes through p50 and p99 (p50 <= 0 or p99 == p50)"
    ks, p = ks_test(x, logn.cdf)
    if x.size >= AUTO_MIN_N and ks > AUTO_KS and p < AUTO_P:
        return _empirical(x), f"empirical: the lognormal's KS={ks:.3f} (p={p:.2g}) is too far"
    return logn, f"lognormal: KS={ks:.3f} (p={p:.2g}) is close enough"


def fit_dist(values_ms: npt.ArrayLike, kind: FitKind = "auto") -> Dist:
    """Fit one of the suite's distributions to a sample (NaNs dropped, values >= 0).

    - `lognormal`: exactly through the sample's p50 and p99 -- the suite's own
      parametrisation, not maximum likelihood, so the two numbers a person reads are
      the sample's;
    - `empirical`: the sample itself when it has at most `EMPIRICAL_MAX` values, else
      that many quantiles at probabilities (i + 0.5) / K (resampling them is resampling
      the empirical quantile function);
    - `exponential`: the sample mean; `constant`: the sample median;
    - `auto`: see `AUTO_RULE`. The KS threshold is a practical one (0.05 is a cdf gap a
      reader would notice) guarded by significance, so a small sample is not pushed
      to the empirical shape by noise alone, and a large one not by trivia.

    Parameters are rounded to `SIGNIFICANT` digits, values to `VALUE_SIGNIFICANT`.
    Raises ValueError on an empty or negative sample, or a shape the sample cannot take.
    """
    return choose_dist(values_ms, kind)[0]
