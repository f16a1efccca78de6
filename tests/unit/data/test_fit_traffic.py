"""Traffic fits: rate, spikes, mix and token sizes, on synthetic Poisson data and on the
Azure production trace."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pytest

from harness.data._fit_traffic import (
    DEFAULT_CLASS,
    SPIKE_P,
    choose_bucket,
    fit_traffic,
    sample_tokens,
)
from harness.spec import Traffic

ROOT = Path(__file__).resolve().parents[3]
DATA = next(
    p for p in (ROOT / "fixtures" / "shared", ROOT.parent / "shared" / "data") if p.is_dir()
)
T0 = 1_700_000_000.0


def poisson_log(
    rate: float,
    duration_s: float,
    *,
    spike: tuple[float, float, float] | None = None,
    seed: int = 0,
    classes: dict[str, tuple[float, int, float, int, float]] | None = None,
) -> pa.Table:
    """Arrivals of a Poisson process (thinning for a (start, end, multiplier) spike),
    with token sizes per class: name -> (weight, in median, in sigma, out median, out sigma)."""
    rng = np.random.default_rng(seed)
    peak = rate * (spike[2] if spike else 1.0)
    t = np.cumsum(rng.exponential(1 / peak, int(peak * duration_s * 1.2)))
    t = t[t < duration_s]
    if spike:
        start, end, _ = spike
        inside = (t >= start) & (t < end)
        t = t[inside | (rng.random(t.size) < rate / peak)]
    cols: dict[str, pa.Array] = {"timestamp_s": pa.array(T0 + t)}
    if classes:
        names = list(classes)
        weights = np.array([classes[c][0] for c in names])
        pick = rng.choice(len(names), t.size, p=weights / weights.sum())
        inp, out = np.empty(t.size, np.int64), np.empty(t.size, np.int64)
        for k, name in enumerate(names):
            _, im, isig, om, osig = classes[name]
            sel = pick == k
            inp[sel] = sample_tokens(im, isig, rng, int(sel.sum()))
            out[sel] = sample_tokens(om, osig, rng, int(sel.sum()))
        cols |= {
            "input_tokens": pa.array(inp),
            "output_tokens": pa.array(out),
            "task_class": pa.array(np.asarray(names)[pick]),
        }
    return pa.table(cols)


def azure_log() -> pa.Table:
    """The Azure code trace as the canonical log table (read here, not by the readers)."""
    raw = pcsv.read_csv(
        DATA / "azure-llm-2023" / "code.csv",
        convert_options=pcsv.ConvertOptions(column_types={"TIMESTAMP": pa.string()}),
    )
    stamps = pc.cast(raw["TIMESTAMP"], pa.timestamp("ns")).to_numpy()
    seconds = stamps.astype("datetime64[ns]").astype(np.int64) / 1e9
    return pa.table(
        {
            "timestamp_s": pa.array(seconds),
            "input_tokens": raw["ContextTokens"],
            "output_tokens": raw["GeneratedTokens"],
        }
    )


@pytest.mark.parametrize(
    ("duration", "bucket"), [(3600, 60), (3436, 60), (600, 10), (86400, 1800), (10, 1), (0, 1)]
)
def test_buckets_aim_at_about_sixty(duration: float, bucket: float) -> None:
    assert choose_bucket(duration) == bucket


def test_a_known_spike_and_rate_are_recovered() -> None:
    rate, spike = 5.0, (600.0, 780.0, 4.0)
    log = poisson_log(rate, 1800, spike=spike, seed=3)
    fit = fit_traffic(log, created="2024-05-01")
    assert fit.bucket_s == 30
    assert fit.requests == log.num_rows
    quiet_s = 1800 - (spike[1] - spike[0])
    sd = np.sqrt(rate / quiet_s)  # Poisson: sd of a rate estimated over quiet_s seconds
    assert abs(fit.rate_per_s - rate) < 3 * sd
    (found,) = fit.spikes
    assert abs(found.start_s - spike[0]) <= fit.bucket_s
    assert abs(found.start_s + found.duration_s - spike[1]) <= fit.bucket_s
    assert found.multiplier == pytest.approx(spike[2], rel=0.15)
    arrivals = fit.components()[0]
    assert arrivals.key == "traffic.arrivals"
    assert arrivals.gof.ks < 0.03 and arrivals.gof.ks_p > SPIKE_P
    assert not any("replay the log" in n for n in fit.notes())


def test_no_spike_in_plain_poisson_arrivals() -> None:
    fit = fit_traffic(poisson_log(2.0, 3600, seed=11))
    assert fit.spikes == ()
    assert fit.rate_per_s == pytest.approx(2.0, abs=3 * np.sqrt(2.0 / 3600))
    assert not fit.raised.any()


def test_the_mix_per_class_recovers_weights_medians_and_spreads() -> None:
    classes = {"routine": (0.7, 400, 0.5, 120, 0.3), "hard": (0.3, 3000, 0.8, 600, 0.6)}
    fit = fit_traffic(poisson_log(8.0, 1200, seed=4, classes=classes))
    assert list(fit.mix) == ["routine", "hard"]  # most requests first
    for name, (w, im, isig, om, osig) in classes.items():
        c = fit.mix[name]
        assert c.weight == pytest.approx(w, abs=0.03)
        assert c.input_tokens == pytest.approx(im, rel=0.06)
        assert c.output_tokens == pytest.approx(om, rel=0.06)
        assert c.input_spread == pytest.approx(isig, rel=0.06)
        assert c.output_spread == pytest.approx(osig, rel=0.08)
    checks = {c.key: c for c in fit.components()}
    token_check = checks["traffic.mix.hard.input_tokens"]
    assert token_check.unit == "tokens" and token_check.gof.ks < 0.05
    traffic = Traffic.model_validate(fit.to_fragment()["traffic"])
    assert traffic.mix["hard"].input_spread == fit.mix["hard"].input_spread


def test_without_token_or_class_columns() -> None:
    fit = fit_traffic(poisson_log(1.0, 600, seed=2))
    assert fit.to_fragment()["traffic"]["mix"] == {DEFAULT_CLASS: {"weight": 1.0}}
    assert any("No input or output token column" in n for n in fit.notes())
    assert [c.key for c in fit.components()] == ["traffic.arrivals"]


@pytest.mark.parametrize(
    ("stamps", "message"),
    [
        ([T0], "at least two arrivals"),
        ([T0, T0 - 1], "non-decreasing"),
        ([T0, T0], "same timestamp"),
    ],
)
def test_logs_that_cannot_give_a_rate(stamps: list[float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        fit_traffic(pa.table({"timestamp_s": pa.array(stamps)}))


def test_bursts_with_nothing_between_them_get_one_rate() -> None:
    bursts = np.concatenate([T0 + start + np.linspace(0, 5, 200) for start in (0, 1000, 2000)])
    fit = fit_traffic(pa.table({"timestamp_s": bursts}))
    assert fit.spikes == ()
    assert fit.rate_per_s == pytest.approx(600 / 2005, rel=1e-4)
    assert any("one rate fitted over the whole log" in n for n in fit.notes())


def test_a_bucket_longer_than_the_log() -> None:
    fit = fit_traffic(poisson_log(1.0, 100, seed=1), bucket_s=1000)
    assert fit.counts.size == 1 and fit.spikes == ()
    assert fit.rate_per_s == pytest.approx((fit.requests) / fit.duration_s, rel=1e-4)


def test_azure_code_trace() -> None:
    log = azure_log()
    fit = fit_traffic(log, created="2024-05-01")
    assert (fit.requests, fit.bucket_s, fit.counts.size) == (8819, 60.0, 58)
    assert fit.duration_s == pytest.approx(3435.948, abs=1e-3)
    # the base rate is the rate outside every spike window, rounded to 5 digits
    quiet = ~fit.raised
    expected = fit.counts[quiet].sum() / fit.exposure_s[quiet].sum()
    assert fit.rate_per_s == pytest.approx(expected, rel=1e-4)
    assert fit.rate_per_s == pytest.approx(0.76714)
    assert len(fit.spikes) == 13
    starts = [s.start_s for s in fit.spikes]
    assert starts == sorted(starts)
    for s in fit.spikes:  # each window is a run of raised buckets, bounded by quiet ones
        first, last = int(s.start_s // 60), int((s.start_s + s.duration_s - 1e-9) // 60)
        assert fit.raised[first : last + 1].all()
        assert first == 0 or not fit.raised[first - 1]
        assert s.requests == fit.counts[first : last + 1].sum()
    assert sum(s.requests for s in fit.spikes) + fit.counts[quiet].sum() == fit.requests
    (cls,) = fit.mix.values()
    assert cls.input_tokens == int(np.median(log["input_tokens"].to_numpy()))
    assert cls.output_tokens == int(np.median(log["output_tokens"].to_numpy()))
    # sub-minute bursts: a piecewise Poisson process does not describe this trace, and the
    # check says so (replay the log instead of fitting it)
    assert fit.components()[0].gof.ks > 0.2
    assert any("replay the log (traffic.log)" in n for n in fit.notes())
    Traffic.model_validate(fit.to_fragment()["traffic"])
