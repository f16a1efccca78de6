"""Fit the suite's traffic (Poisson rate, spikes, request mix) from a request log.

The suite's arrival model is a Poisson process at `rate_per_s`, multiplied inside spike
windows. The fit counts arrivals in time buckets (`choose_bucket`), takes the base rate
from the quiet buckets and calls a run of buckets a spike when each is far above what
the base rate explains (`SPIKE_RULE`). Token sizes are fitted per task class as the
suite draws them: a lognormal around the median with separate spreads for prompts and
answers, rounded to whole tokens of at least 1.

Goodness of fit: arrivals are checked by time rescaling -- the fitted intensity
integrated between consecutive arrivals is exponential with mean 1 exactly when the
fitted (piecewise constant) rate is the true one -- and token sizes against draws from
their fitted lognormals. A bursty log that a Poisson process cannot describe shows up
as a large KS distance there, which is the honest answer: replay such a log
(`traffic.log`) rather than fit it.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
from scipy import stats

from harness.data._dist import Dist, round_sig
from harness.data._fragment import Component, Fit, Provenance, Source, provenance
from harness.data._gof import goodness_of_fit
from harness.util import generator, stable_id

__all__ = [
    "BUCKETS",
    "SPIKE_P",
    "SPIKE_RULE",
    "ClassMix",
    "SpikeWindow",
    "TrafficFit",
    "choose_bucket",
    "fit_traffic",
    "sample_tokens",
]

FloatArray = npt.NDArray[np.float64]

BUCKETS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 86400)
"""Bucket widths (seconds) `choose_bucket` picks from."""
TARGET_BUCKETS = 60
"""`choose_bucket` aims at about this many buckets over the log."""
SPIKE_P = 0.001
"""A bucket is above the base rate when P(Poisson(base x width) >= its count) < this."""
SPIKE_RULE = (
    "base rate = median of the bucket rates (the mean when that median is 0); a bucket "
    f"is raised when P(Poisson(base x width) >= count) < {SPIKE_P}; consecutive raised "
    "buckets form a spike window whose multiplier is its rate over the rate_per_s "
    "finally fitted = the rate outside every window"
)
POISSON_KS = 0.1
"""Above this KS distance of the rescaled gaps, the fit advises replaying the log."""
TOKEN_DRAWS = 20_000
"""Draws from a fitted token-size lognormal for its goodness-of-fit check."""
DEFAULT_CLASS = "default"
"""Task class of every request when the log has no task_class column (or it is null)."""
_STREAM = 43


def choose_bucket(duration_s: float) -> float:
    """The width in `BUCKETS` nearest (in ratio) to duration / 60: 60 s for an hour.

    About sixty buckets resolve a spike lasting a few percent of the log while keeping
    enough arrivals per bucket to test each one.
    """
    target = max(duration_s, 1.0) / TARGET_BUCKETS
    return float(min(BUCKETS, key=lambda b: abs(math.log(b / target))))


def sample_tokens(
    median: int, spread: float, rng: np.random.Generator, size: int
) -> npt.NDArray[np.int64]:
    """Token counts as the suite draws them: max(1, rint(median x exp(spread x z)))."""
    z = rng.standard_normal(size)
    counts: npt.NDArray[np.int64] = np.maximum(1, np.rint(median * np.exp(spread * z))).astype(
        np.int64
    )
    return counts


@dataclass(frozen=True)
class SpikeWindow:
    """A detected spike: seconds after the first logged arrival, and its rate multiplier."""

    start_s: float
    duration_s: float
    multiplier: float
    requests: int
    """Arrivals inside the window."""

    def to_dict(self) -> dict[str, Any]:
        """The suite's `{start_s, duration_s, multiplier}`."""
        return {
            "start_s": self.start_s,
            "duration_s": self.duration_s,
            "multiplier": self.multiplier,
        }


@dataclass(frozen=True)
class ClassMix:
    """One task class of the mix: its share and token-size lognormals (None: not logged)."""

    weight: float
    requests: int
    input_tokens: int | None = None
    input_spread: float | None = None
    output_tokens: int | None = None
    output_spread: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """The suite's task class keys that the log informs."""
        d: dict[str, Any] = {"weight": self.weight}
        if self.input_tokens is not None:
            d["input_tokens"] = self.input_tokens
        if self.output_tokens is not None:
            d["output_tokens"] = self.output_tokens
        if self.input_spread is not None:
            d["input_spread"] = self.input_spread
        if self.output_spread is not None:
            d["output_spread"] = self.output_spread
        return d


@dataclass(frozen=True, eq=False)
class TrafficFit(Fit):
    """Fitted traffic, with the bucket counts the rate and spikes were read from."""

    kind: ClassVar[str] = "traffic"
    rate_per_s: float
    requests: int
    spikes: tuple[SpikeWindow, ...]
    mix: Mapping[str, ClassMix]
    bucket_s: float
    start_epoch_s: float
    """Time of the first logged arrival (epoch seconds): time 0 of the fitted run."""
    duration_s: float
    """From the first to the last logged arrival, seconds."""
    counts: npt.NDArray[np.int64]
    """Arrivals per bucket; bucket k covers [k, k + 1) x bucket_s after the first arrival."""
    exposure_s: FloatArray
    """Observed length of each bucket, seconds (the last one may be partial)."""
    raised: npt.NDArray[np.bool_]
    """Buckets the spike rule flagged."""
    base_guess_per_s: float
    """The median bucket rate the buckets were tested against."""
    checks: tuple[Component, ...]
    provenance: Provenance
    extra_notes: tuple[str, ...] = ()

    @property
    def bucket_rates(self) -> FloatArray:
        """Arrivals per second in each bucket."""
        return self.counts / self.exposure_s

    def to_fragment(self) -> dict[str, Any]:
        """`{traffic: {rate_per_s, requests, spikes, mix}}`."""
        return {
            "traffic": {
                "rate_per_s": self.rate_per_s,
                "requests": self.requests,
                "spikes": [s.to_dict() for s in self.spikes],
                "mix": {name: c.to_dict() for name, c in self.mix.items()},
            }
        }

    def components(self) -> tuple[Component, ...]:
        return self.checks

    def notes(self) -> tuple[str, ...]:
        first = dt.datetime.fromtimestamp(self.start_epoch_s, dt.UTC).isoformat()
        return (
            f"Time 0 is the first logged arrival, {first}; the log spans {self.duration_s:g} s.",
            f"Buckets of {self.bucket_s:g} s; spike rule: {SPIKE_RULE}.",
            *self.extra_notes,
        )


def _windows(raised: npt.NDArray[np.bool_]) -> list[tuple[int, int]]:
    """(first, last) bucket of each run of consecutive raised buckets."""
    edges = np.diff(np.r_[0, raised.astype(np.int8), 0])
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1, strict=True))


def _cumulative_intensity(t: FloatArray, rate: float, spikes: Sequence[SpikeWindow]) -> FloatArray:
    """Integral of the fitted rate from 0 to each t (seconds after the first arrival)."""
    out = rate * t
    for s in spikes:
        inside = np.clip(t - s.start_s, 0.0, s.duration_s)
        out = out + rate * (s.multiplier - 1.0) * inside
    return out


def _tokens(table: pa.Table, name: str) -> FloatArray | None:
    if name not in table.column_names:
        return None
    return np.asarray(pc.cast(table[name], pa.float64()).to_numpy(zero_copy_only=False), np.float64)


def _size_fit(
    values: FloatArray, what: str, cls: str, rng: np.random.Generator
) -> tuple[int, float, Component] | None:
    x = values[np.isfinite(values)]
    if x.size == 0:
        return None
    x = np.maximum(x, 1.0)
    median = max(1, round(float(np.median(x))))
    spread = round_sig(float(np.log(x).std()), 4)
    pred = sample_tokens(median, spread, rng, TOKEN_DRAWS).astype(np.float64)
    comp = Component(
        f"traffic.mix.{cls}.{what}_tokens",
        f"{cls}: {what} tokens",
        x,
        goodness_of_fit(x, pred),
        unit="tokens",
        predicted=pred,
        note="draws rounded to whole tokens >= 1, as the suite's traffic does",
        shape=f"lognormal median={median} spread={spread:g}",
    )
    return median, spread, comp


def fit_traffic(
    log: pa.Table,
    bucket_s: float | None = None,
    *,
    sources: Sequence[Source] = (),
    created: str | dt.date | None = None,
    command: str = "",
    seed: int = 0,
) -> TrafficFit:
    """Fit rate, spikes, request count and mix from a request log (canonical log table).

    `timestamp_s` must be non-decreasing epoch seconds (the reader sorts or rejects);
    `bucket_s` defaults to `choose_bucket(duration)`. Needs at least two arrivals over a
    positive span. Token columns and `task_class` are optional: without `task_class`
    every request is class `default`; without a token column, the mix omits those keys
    (the suite's defaults apply). The token-size checks draw from a generator seeded
    by `seed`.
    """
    if "timestamp_s" not in log.column_names:
        raise ValueError("log table lacks column 'timestamp_s'")
    ts = np.asarray(pc.cast(log["timestamp_s"], pa.float64()).to_numpy(zero_copy_only=False))
    if ts.size < 2 or not np.isfinite(ts).all():
        raise ValueError("traffic needs at least two arrivals with finite timestamps")
    if (np.diff(ts) < 0).any():
        raise ValueError("timestamps must be non-decreasing (sort the log first)")
    t = ts - ts[0]
    span = float(t[-1])
    if span <= 0:
        raise ValueError("every arrival has the same timestamp; no rate can be fitted")
    width = float(bucket_s) if bucket_s is not None else choose_bucket(span)
    if width <= 0:
        raise ValueError(f"bucket_s must be positive, got {bucket_s}")
    nb = max(1, math.ceil(span / width))
    idx = np.minimum((t // width).astype(np.int64), nb - 1)
    counts = np.bincount(idx, minlength=nb).astype(np.int64)
    exposure = np.minimum(width, span - np.arange(nb) * width)
    rates = counts / exposure
    full = exposure >= width / 2  # a sliver of a last bucket says little about the rate
    mean_rate = float(counts.sum() / exposure.sum())
    guess = float(np.median(rates[full])) if full.any() else mean_rate
    if guess <= 0:
        guess = mean_rate
    tail_p = stats.poisson.sf(counts - 1, guess * exposure)
    raised = np.asarray(tail_p < SPIKE_P, dtype=bool)
    notes = []
    quiet_count = int(counts[~raised].sum())
    if quiet_count == 0:
        raised[:] = False
        notes.append(
            "No arrivals outside the raised buckets, so no base rate for spikes to multiply: "
            "one rate fitted over the whole log."
        )
        rate = round_sig(mean_rate)
    else:
        rate = round_sig(quiet_count / float(exposure[~raised].sum()))
    spikes = []
    for a, b in _windows(raised):
        n_in = int(counts[a : b + 1].sum())
        exp_in = float(exposure[a : b + 1].sum())
        spikes.append(
            SpikeWindow(
                start_s=round_sig(a * width),
                duration_s=round_sig(exp_in),
                multiplier=round_sig(n_in / exp_in / rate, 4),
                requests=n_in,
            )
        )

    rescaled = np.diff(_cumulative_intensity(t, rate, spikes))
    unit_exp = Dist.exponential(1.0)
    checks = [
        Component(
            "traffic.arrivals",
            "inter-arrival times, rescaled by the fitted rate",
            rescaled,
            goodness_of_fit(rescaled, unit_exp),
            unit="rescaled gap",
            dist=unit_exp,
            note="gap x fitted rate (spikes included) is exponential with mean 1 if the fit holds",
        )
    ]

    n = int(ts.size)
    if "task_class" in log.column_names:
        col = pc.fill_null(pc.cast(log["task_class"], pa.string()), DEFAULT_CLASS)
        classes = np.asarray(col.to_numpy(zero_copy_only=False)).astype(str)
    else:
        classes = np.full(n, DEFAULT_CLASS)
    inp, out = _tokens(log, "input_tokens"), _tokens(log, "output_tokens")
    mix: dict[str, ClassMix] = {}
    names, sizes = np.unique(classes, return_counts=True)
    for name, size in sorted(zip(names.tolist(), sizes.tolist(), strict=True), key=lambda p: -p[1]):
        sel = classes == name
        rng = generator(seed, _STREAM, stable_id(name))
        fitted: dict[str, Any] = {}
        for what, values in (("input", inp), ("output", out)):
            got = _size_fit(values[sel], what, name, rng) if values is not None else None
            if got is not None:
                fitted[f"{what}_tokens"], fitted[f"{what}_spread"] = got[0], got[1]
                checks.append(got[2])
        mix[name] = ClassMix(weight=round_sig(size / n, 4), requests=int(size), **fitted)

    if checks[0].gof.ks > POISSON_KS:
        notes.append(
            f"Arrivals are far from the fitted Poisson process (KS={checks[0].gof.ks:.3f}); "
            "to reproduce their bursts, replay the log (traffic.log) rather than this fit."
        )
    if inp is None or out is None:
        missing = [w for w, v in (("input", inp), ("output", out)) if v is None]
        notes.append(f"No {' or '.join(missing)} token column: the suite's defaults apply.")
    return TrafficFit(
        rate_per_s=rate,
        requests=n,
        spikes=tuple(spikes),
        mix=mix,
        bucket_s=width,
        start_epoch_s=float(ts[0]),
        duration_s=span,
        counts=counts,
        exposure_s=exposure,
        raised=raised,
        base_guess_per_s=guess,
        checks=tuple(checks),
        provenance=provenance(sources, n, created=created, command=command),
        extra_notes=tuple(notes),
    )
