"""Goodness of fit: how far a fitted distribution is from the data it was fitted on.

Two numbers answer "is this fit any good?" for a reviewer of a fitted suite:

- the Kolmogorov-Smirnov distance (the largest gap between the two cumulative
  distribution functions, 0..1) with its p-value, which sees the whole shape;
- the relative error of the quantiles people set objectives on (p50, p95, p99), which
  says how wrong a latency objective computed from the fit would be.

A fitted value is compared either analytically (a continuous distribution's cdf and
quantile function) or through a sample drawn from it; `goodness_of_fit` takes either.
P-values of a distribution fitted on the same data are optimistic (the fit has already
bent towards the sample); they rank fits, they do not certify them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt
from scipy import stats

__all__ = [
    "QS",
    "Fitted",
    "GoodnessOfFit",
    "QuantileCheck",
    "goodness_of_fit",
    "ks_distance",
    "ks_test",
    "quantile_errors",
    "signed_percent",
]

QS = (0.5, 0.95, 0.99)
"""Quantiles every goodness-of-fit check reports."""

FloatArray = npt.NDArray[np.float64]
Cdf = Callable[[FloatArray], FloatArray]


@runtime_checkable
class Fitted(Protocol):
    """What `goodness_of_fit` needs of a fitted distribution (`Dist` is one)."""

    @property
    def continuous(self) -> bool:
        """True when `cdf` is continuous, so the one-sample KS test applies."""
        ...

    def cdf(self, x: npt.ArrayLike) -> FloatArray:
        """P(X <= x)."""
        ...

    def quantile(self, q: npt.ArrayLike) -> FloatArray:
        """The q-quantiles."""
        ...

    def support(self) -> FloatArray:
        """For a discrete distribution: the equally likely values it resamples from."""
        ...


def _clean(sample: npt.ArrayLike) -> FloatArray:
    x = np.asarray(sample, dtype=np.float64).ravel()
    x = x[~np.isnan(x)]
    if x.size == 0:
        raise ValueError("goodness of fit needs at least one observed value")
    return x


def ks_test(sample: npt.ArrayLike, other: npt.ArrayLike | Cdf) -> tuple[float, float]:
    """KS statistic and p-value of `sample` against another sample or a continuous cdf.

    With a sample, the two-sample test (exact distance between the two empirical cdfs,
    ties handled; asymptotic p-value); with a callable, the one-sample test against that
    cdf. NaNs are dropped.
    """
    x = _clean(sample)
    if callable(other):
        res = stats.kstest(x, other)
    else:
        # the asymptotic p-value: scipy's exact one gives up, with a warning, on many
        # sizes; with a single value on a side the p-value is nan (undefined)
        with np.errstate(divide="ignore", invalid="ignore"):
            res = stats.ks_2samp(x, _clean(other), method="asymp")
    return float(res.statistic), float(res.pvalue)


def ks_distance(sample: npt.ArrayLike, other: npt.ArrayLike | Cdf) -> float:
    """The KS statistic (largest cdf gap, 0..1) of `sample` against a sample or a cdf."""
    return ks_test(sample, other)[0]


def quantile_errors(
    observed: npt.ArrayLike,
    predicted: npt.ArrayLike | Callable[[FloatArray], FloatArray],
    qs: Sequence[float] = QS,
) -> dict[float, float]:
    """Relative error (predicted - observed) / observed of each quantile in `qs`.

    `predicted` is a sample or a quantile function. Sample quantiles use numpy's default
    (linear) rule on both sides. An observed quantile of 0 gives inf (or nan for 0/0).
    """
    return {c.q: c.rel_error for c in _quantile_checks(_clean(observed), predicted, qs)}


@dataclass(frozen=True)
class QuantileCheck:
    """One quantile of the data next to the same quantile of the fit."""

    q: float
    observed: float
    fitted: float

    @property
    def rel_error(self) -> float:
        """(fitted - observed) / observed; +0.05 means the fit is 5% high."""
        if self.observed == 0:
            return 0.0 if self.fitted == 0 else float(np.copysign(np.inf, self.fitted))
        return (self.fitted - self.observed) / self.observed

    @property
    def label(self) -> str:
        """`p50`, `p95`, `p99`, `p99.9`."""
        return f"p{self.q * 100:g}"


@dataclass(frozen=True)
class GoodnessOfFit:
    """How well one fitted quantity matches its data.

    `method` says how the fit was evaluated: `analytic` (one-sample KS against the
    fitted cdf, exact quantiles) or `sampled` (two-sample KS against draws from the
    fit or against the values an empirical distribution resamples from).
    """

    n: int
    ks: float
    ks_p: float
    quantiles: tuple[QuantileCheck, ...]
    method: str

    def at(self, q: float) -> QuantileCheck:
        """The check of quantile `q`; KeyError when it was not computed."""
        for c in self.quantiles:
            if c.q == q:
                return c
        raise KeyError(q)

    def summary(self) -> str:
        """One line: `n=150 KS=0.041 (p=0.52) p50 +1.2% p95 -3.0% p99 +5.1%`."""
        errs = " ".join(f"{c.label} {signed_percent(c.rel_error)}" for c in self.quantiles)
        return f"n={self.n} KS={self.ks:.3f} (p={self.ks_p:.2g}) {errs}"


def signed_percent(x: float) -> str:
    """A relative error as `+1.2%` (never `-0.0%`); `inf`/`nan` as they are."""
    return f"{round(x * 100, 1) + 0.0:+.1f}%" if np.isfinite(x) else str(x)  # no "-0.0%"


def _quantile_checks(
    x: FloatArray,
    predicted: npt.ArrayLike | Callable[[FloatArray], FloatArray],
    qs: Sequence[float],
) -> tuple[QuantileCheck, ...]:
    q = np.asarray(qs, dtype=np.float64)
    obs = np.quantile(x, q)
    fit = predicted(q) if callable(predicted) else np.quantile(_clean(predicted), q)
    return tuple(
        QuantileCheck(float(qi), float(o), float(f)) for qi, o, f in zip(q, obs, fit, strict=True)
    )


def goodness_of_fit(
    observed: npt.ArrayLike, fitted: Fitted | npt.ArrayLike, qs: Sequence[float] = QS
) -> GoodnessOfFit:
    """Compare `observed` with a fitted distribution or with a sample predicted by a fit.

    A continuous `Fitted` is checked analytically. A discrete one (constant, empirical)
    is checked against the values it resamples from, which gives the exact distance
    between the two step cdfs. A plain array is a predicted sample (e.g. end-to-end
    latency simulated from several fitted terms); draw it large (tens of thousands)
    so that its own noise is small next to the data's.
    """
    x = _clean(observed)
    if isinstance(fitted, Fitted):
        if fitted.continuous:
            ks, p = ks_test(x, fitted.cdf)
            checks = _quantile_checks(x, fitted.quantile, qs)
            return GoodnessOfFit(x.size, ks, p, checks, "analytic")
        other = fitted.support()
        ks, p = ks_test(x, other)
        return GoodnessOfFit(x.size, ks, p, _quantile_checks(x, fitted.quantile, qs), "sampled")
    pred = _clean(fitted)
    ks, p = ks_test(x, pred)
    return GoodnessOfFit(x.size, ks, p, _quantile_checks(x, pred, qs), "sampled")
