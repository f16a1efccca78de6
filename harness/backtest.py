"""Back-test: fit a model's latency on part of the observed calls, predict the rest.

A fitted world is only credible once it has predicted data it was not fitted on. The
back-test splits observed calls (the canonical calls table of `harness.data`) into a
training and a held-out part -- by time (``start_s``; file order when the data has no
times) or at random with a seed -- fits latency and error rate on the training part
(`fit_latency`: token-aware when ttft and output tokens exist), and simulates the
held-out calls through the real engine: a one-model suite with the fitted latency and
error rate replays a request log of the held-out calls (their arrival times when known,
their own token counts), `REPLICATIONS` times with derived seeds, pooled.

Each metric is judged against the sampling interval of its observed value, so a small
held-out part does not fail a p95 by chance (`RULE`):

- percentiles and means: a 95% bootstrap percentile interval of the held-out sample
  (`BOOTSTRAP` resamples, fixed seed); the prediction passes when it lies in
  ``[low * (1 - tol), high * (1 + tol)]``;
- rates (error rate, success): the Wilson 95% interval, widened by an absolute
  ``tol * max(min(rate, 1 - rate), 0.01)``, i.e. relative to the rarer side, so a 0.5%
  error rate is not judged with a 20-point margin.

The simulation has unlimited capacity: observed latencies already include the
provider's queueing under the load that was measured. Closed-loop benchmarks (LLMPerf
runs a fixed number of concurrent clients, 5 in the shared data) have no arrival times;
their calls are replayed one second apart, which does not matter without a capacity.
Success is 1 - error rate here: observed calls carry no correctness.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import tempfile
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from harness.data import LatencyFit, fit_latency
from harness.data._dist import FitKind
from harness.errors import EvalxError
from harness.metrics import wilson
from harness.observed import Prices, arrivals
from harness.storage import check_out

__all__ = [
    "BOOTSTRAP",
    "REPLICATIONS",
    "RULE",
    "Backtest",
    "BacktestError",
    "Metric",
    "backtest",
    "backtest_suite",
    "split_calls",
    "write_backtest",
]

FloatArray = npt.NDArray[np.float64]
Split = Literal["time", "random"]

BOOTSTRAP = 2000
"""Bootstrap resamples for an interval (fewer for very large samples, at least 200)."""
REPLICATIONS = 5
"""Simulations of the held-out calls (seeds seed, seed+1, ...), pooled into one prediction."""
RULE = (
    "percentiles and means: the prediction must lie in [low x (1 - tol), high x (1 + tol)] "
    "of the observed value's 95% bootstrap interval; rates: in the observed Wilson 95% "
    "interval widened by tol x max(min(rate, 1 - rate), 0.01)"
)
_ROUTE, _TIER, _CLASS = "direct", "only", "observed"
_NO_LIMIT_MS = 1e12


class BacktestError(EvalxError):
    """The data cannot be back-tested as asked (too few calls, several models, ...)."""


@dataclass(frozen=True)
class Metric:
    """One predicted metric against its observed value, with intervals and the verdict."""

    name: str
    """Human label, e.g. ``latency p95 (ms)``."""
    key: str
    """Machine key, e.g. ``latency_p95_ms``."""
    observed: float
    observed_low: float
    observed_high: float
    predicted: float
    predicted_low: float
    predicted_high: float
    allowed_low: float
    allowed_high: float
    rate: bool
    passed: bool | None
    """None: not judged (no data, or cost without prices)."""
    note: str = ""


@dataclass(frozen=True)
class Backtest:
    """The result: what was fitted on what, and each metric's verdict."""

    model: str
    train_calls: int
    test_calls: int
    split: str
    train_share: float
    seed: int
    tolerance: float
    timed: bool
    """Whether the data had start times (else file order stood for time)."""
    metrics: tuple[Metric, ...]
    fit: LatencyFit = field(repr=False)
    sources: tuple[dict[str, Any], ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        """Every judged metric passed."""
        return all(m.passed is not False for m in self.metrics)

    @property
    def failed(self) -> list[Metric]:
        """The metrics whose prediction missed."""
        return [m for m in self.metrics if m.passed is False]

    def headline(self) -> str:
        """``model: fitted on N calls, predicting M held-out calls (split ...)``."""
        how = (
            f"the first {self.train_share:g} by {'start time' if self.timed else 'file order'}"
            if self.split == "time"
            else f"a random {self.train_share:g} (seed {self.seed})"
        )
        return (
            f"{self.model}: fitted on {self.train_calls} calls ({how}), "
            f"predicting {self.test_calls} held-out calls; tolerance {self.tolerance:g}"
        )

    def to_json(self) -> dict[str, Any]:
        """Everything, as plain JSON data (NaN as null)."""

        def clean(v: Any) -> Any:
            return None if isinstance(v, float) and not math.isfinite(v) else v

        return {
            "model": self.model,
            "passed": self.passed,
            "train_calls": self.train_calls,
            "test_calls": self.test_calls,
            "split": self.split,
            "train_share": self.train_share,
            "seed": self.seed,
            "tolerance": self.tolerance,
            "timed": self.timed,
            "replications": REPLICATIONS,
            "rule": RULE,
            "sources": list(self.sources),
            "notes": list(self.notes),
            "fitted": self.fit.to_fragment(),
            "metrics": [{k: clean(v) for k, v in asdict(m).items()} for m in self.metrics],
        }

    def lines(self) -> list[str]:
        """A plain-text table (under 100 columns) and the verdict."""
        head = f"{'metric':<18}{'observed [95%]':>27}{'predicted [95%]':>27}{'allowed':>19}  "
        out = textwrap.wrap(self.headline(), width=98, subsequent_indent="  ")
        out += ["", head + "verdict", "-" * (len(head) + 7)]
        for m in self.metrics:
            obs = f"{_num(m.observed)} [{_num(m.observed_low)}, {_num(m.observed_high)}]"
            pred = f"{_num(m.predicted)} [{_num(m.predicted_low)}, {_num(m.predicted_high)}]"
            band = f"[{_num(m.allowed_low)}, {_num(m.allowed_high)}]"
            verdict = {True: "PASS", False: "FAIL", None: "n/a"}[m.passed]
            out.append(f"{m.name:<18}{obs:>27}{pred:>27}{band:>19}  {verdict}")
        out.append("")
        for note in [*self.notes, f"Rule: {RULE}."]:
            out += textwrap.wrap(note, width=98, subsequent_indent="  ")
        failed = self.failed
        out.append(
            "FAIL: " + ", ".join(m.name for m in failed) if failed else "PASS: every metric holds"
        )
        return out

    def markdown(self) -> str:
        """backtest.md."""
        rows = [
            f"# Back-test: {self.model}",
            "",
            self.headline() + ".",
            "",
            "| metric | observed | observed 95% | predicted | predicted 95% | allowed | |",
            "|---|--:|--:|--:|--:|--:|---|",
        ]
        for m in self.metrics:
            mark = {True: "PASS", False: "**FAIL**", None: "n/a"}[m.passed]
            rows.append(
                f"| {m.name} | {_num(m.observed)} | {_num(m.observed_low)} to "
                f"{_num(m.observed_high)} | {_num(m.predicted)} | {_num(m.predicted_low)} to "
                f"{_num(m.predicted_high)} | {_num(m.allowed_low)} to {_num(m.allowed_high)} "
                f"| {mark} |"
            )
        rows += ["", "## How it was judged", "", f"- {RULE}."]
        rows += [f"- {n}" for n in self.notes]
        rows += ["", "## Sources", ""]
        rows += [f"- `{s['path']}` sha256 `{s['sha256']}` ({s['rows']} rows)" for s in self.sources]
        verdict = "PASS" if self.passed else "FAIL: " + ", ".join(m.name for m in self.failed)
        rows += ["", f"**{verdict}**", ""]
        return "\n".join(rows)


def _num(x: float) -> str:
    if not math.isfinite(x):
        return "-"
    if x == 0 or abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) >= 1:
        return f"{x:.3g}" if abs(x) < 10 else f"{x:.1f}"
    return f"{x:.3g}" if abs(x) >= 0.01 else f"{x:.2g}"


# --------------------------------------------------------------------------- split


def split_calls(
    calls: pa.Table, split: Split = "time", train: float = 0.5, seed: int = 0
) -> tuple[pa.Table, pa.Table]:
    """(training part, held-out part). ``time``: the first `train` share by start time
    (stable; file order when any call lacks a start); ``random``: a seeded shuffle.
    Raises BacktestError when either part would hold fewer than 2 calls."""
    if not 0 < train < 1:
        raise BacktestError(f"--train {train:g}: give the training share, between 0 and 1")
    n = calls.num_rows
    k = round(n * train)
    if k < 2 or n - k < 2:
        raise BacktestError(
            f"{n} calls split {train:g} leave {k} to fit and {n - k} to predict; "
            "need at least 2 in each part (more data, or another --train)"
        )
    if split == "time":
        start, timed = arrivals(calls)
        order = np.argsort(start, kind="stable") if timed else np.arange(n)
    elif split == "random":
        order = np.random.default_rng(seed).permutation(n)
    else:
        raise BacktestError(f"--split {split!r}: use time or random")
    return calls.take(pa.array(np.sort(order[:k]))), calls.take(pa.array(np.sort(order[k:])))


# --------------------------------------------------------------------------- simulate


def _column(table: pa.Table, name: str) -> FloatArray:
    return np.asarray(
        pc.cast(table[name], pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64
    )


def _fill(values: FloatArray, fallback: float) -> npt.NDArray[np.int64]:
    """Token counts with missing ones (e.g. of failed calls) set to `fallback`."""
    return np.asarray(np.where(np.isfinite(values), values, fallback), dtype=np.int64)


def backtest_suite(
    fit: LatencyFit, model: str, held_out: pa.Table, log_path: Path, prices: Prices, seed: int
) -> Any:
    """The one-model suite (a `harness.spec.Suite`) that replays `held_out`: writes its
    request log (relative time, input and output tokens) to `log_path`."""
    from harness.spec import Suite

    m = fit.models[model]
    latency = m.latency_dict()
    if latency is None:
        raise BacktestError(f"{model}: no successful call with a latency to fit; cannot predict")
    start, _ = arrivals(held_out)
    start = start - start.min()
    tin, tout = _column(held_out, "input_tokens"), _column(held_out, "output_tokens")
    mix: dict[str, Any] = {"weight": 1.0}
    columns = {"timestamp": "t"}
    rows: dict[str, Any] = {"t": start}
    for what, values in (("input_tokens", tin), ("output_tokens", tout)):
        known = values[np.isfinite(values) & (values > 0)]
        if known.size:  # the mix's size is only for calls that recorded none
            typical = max(1, round(float(np.median(known))))
            mix[what] = typical
            columns[what] = what
            rows[what] = _fill(values, typical)
    with log_path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(list(rows))
        writer.writerows(zip(*(np.asarray(v).tolist() for v in rows.values()), strict=True))
    return Suite.model_validate(
        {
            "name": "backtest",
            "seed": seed,
            "traffic": {
                "log": {"path": str(log_path), "columns": columns, "timestamp_unit": "s"},
                "mix": {_CLASS: mix},
            },
            "models": {
                model: {
                    "tier": _TIER,
                    "latency": latency,
                    "error_rate": m.error_rate,
                    "quality": {_CLASS: 1.0},
                    "default_quality": 1.0,
                    "price": {
                        "input_per_mtok": prices.input_per_mtok,
                        "output_per_mtok": prices.output_per_mtok,
                    },
                }
            },
            "stack": {
                "tiers": [_TIER],
                "classifier": {"enabled": False},
                "routes": {_ROUTE: {"tier": _TIER, "max_retries": 0}},
                "class_routes": {_CLASS: _ROUTE},
                "escalation": {"confidence_threshold": 0.0, "high_impact_route": None},
                "retry_budget": None,
                "breaker": {"enabled": False},
                "timeouts": {
                    "model_call_ms": _NO_LIMIT_MS,
                    "tool_call_ms": _NO_LIMIT_MS,
                    "request_deadline_ms": _NO_LIMIT_MS,
                },
                "budgets": {"request_tokens": None, "step_output_tokens": None},
                "fallback_down": False,
                "handoff": False,
            },
        }
    )


def _simulate(suite: Any) -> pa.Table:
    """Requests of `REPLICATIONS` runs of `suite` (seeds seed, seed+1, ...), concatenated."""
    from harness.run import simulate

    runs = [
        simulate(suite.model_copy(update={"seed": suite.seed + r})).requests
        for r in range(REPLICATIONS)
    ]
    return pa.concat_tables(runs)


# --------------------------------------------------------------------------- judge


def _bootstrap(
    values: FloatArray, stat: Callable[[FloatArray], FloatArray], rng: np.random.Generator
) -> tuple[float, float]:
    """95% percentile interval of `stat` (applied along axis 1) over resamples of `values`."""
    n = values.size
    if n == 0:
        return math.nan, math.nan
    b = int(max(200, min(BOOTSTRAP, 20_000_000 // n)))
    draws = stat(values[rng.integers(0, n, size=(b, n))])
    low, high = np.quantile(draws, [0.025, 0.975])
    return float(low), float(high)


def _quantile(q: float) -> Callable[[FloatArray], FloatArray]:
    def stat(x: FloatArray) -> FloatArray:
        return np.asarray(np.quantile(x, q, axis=-1), dtype=np.float64)

    return stat


def _mean(x: FloatArray) -> FloatArray:
    return np.asarray(np.mean(x, axis=-1), dtype=np.float64)


def _judge(
    name: str,
    key: str,
    observed: FloatArray,
    predicted: FloatArray,
    stat: Callable[[FloatArray], FloatArray],
    tol: float,
    seed: int,
    judged: bool = True,
    note: str = "",
) -> Metric:
    rng = np.random.default_rng([seed, len(key)])
    obs = float(stat(observed)) if observed.size else math.nan
    pred = float(stat(predicted)) if predicted.size else math.nan
    olo, ohi = _bootstrap(observed, stat, rng)
    plo, phi = _bootstrap(predicted, stat, rng)
    alo, ahi = olo * (1 - tol), ohi * (1 + tol)
    ok: bool | None = None
    if judged and math.isfinite(obs) and math.isfinite(pred):
        ok = bool(alo <= pred <= ahi)
    return Metric(name, key, obs, olo, ohi, pred, plo, phi, alo, ahi, False, ok, note)


def _judge_rate(
    name: str, key: str, observed: FloatArray, predicted: FloatArray, tol: float
) -> Metric:
    obs = float(observed.mean()) if observed.size else math.nan
    pred = float(predicted.mean()) if predicted.size else math.nan
    olo, ohi = wilson(float(observed.sum()), observed.size)
    plo, phi = wilson(float(predicted.sum()), predicted.size)
    slack = tol * max(min(obs, 1 - obs), 0.01) if math.isfinite(obs) else math.nan
    alo, ahi = max(0.0, olo - slack), min(1.0, ohi + slack)
    ok = bool(alo <= pred <= ahi) if math.isfinite(pred) and math.isfinite(obs) else None
    return Metric(name, key, obs, olo, ohi, pred, plo, phi, alo, ahi, True, ok)


def _metrics(
    held_out: pa.Table, sim: pa.Table, prices: Prices, tol: float, seed: int
) -> tuple[Metric, ...]:
    status = np.asarray(pc.fill_null(held_out["status"], "").to_numpy(zero_copy_only=False))
    ok = status == "ok"
    lat = _column(held_out, "latency_s") * 1000.0
    ttft = _column(held_out, "ttft_s") * 1000.0
    tin, tout = _column(held_out, "input_tokens"), _column(held_out, "output_tokens")
    sim_ok = np.asarray(sim["success"].to_numpy(zero_copy_only=False), dtype=bool)
    sim_lat = _column(sim, "latency_ms")
    sim_ttft = _column(sim, "ttft_ms")
    sim_tok = _column(sim, "input_tokens") + _column(sim, "output_tokens")
    sim_cost = _column(sim, "cost_usd")

    obs_lat = lat[ok & np.isfinite(lat)]
    pred_lat = sim_lat[sim_ok]
    out = [
        _judge(
            f"latency p{q} (ms)",
            f"latency_p{q}_ms",
            obs_lat,
            pred_lat,
            _quantile(q / 100),
            tol,
            seed,
        )
        for q in (50, 95, 99)
    ]
    obs_ttft = ttft[ok & np.isfinite(ttft)]
    if obs_ttft.size:
        pred_ttft = sim_ttft[sim_ok & np.isfinite(sim_ttft)]
        out += [
            _judge(
                f"ttft p{q} (ms)",
                f"ttft_p{q}_ms",
                obs_ttft,
                pred_ttft,
                _quantile(q / 100),
                tol,
                seed,
            )
            for q in (50, 95)
        ]
    out.append(
        _judge_rate(
            "error rate", "error_rate", (~ok).astype(np.float64), (~sim_ok).astype(np.float64), tol
        )
    )
    out.append(
        _judge_rate("success", "success", ok.astype(np.float64), sim_ok.astype(np.float64), tol)
    )
    tokens = np.nan_to_num(tin) + np.nan_to_num(tout)
    out.append(
        _judge(
            "tokens per request",
            "tokens_per_request",
            tokens[ok],
            sim_tok[sim_ok],
            _mean,
            tol,
            seed,
            note="successful calls; the replay uses their counts",
        )
    )
    priced = prices.input_per_mtok > 0 or prices.output_per_mtok > 0
    out.append(
        _judge(
            "cost per request",
            "cost_per_request_usd",
            prices.cost(np.nan_to_num(tin), np.nan_to_num(tout)),
            sim_cost,
            _mean,
            tol,
            seed,
            judged=priced,
            note="" if priced else "no prices given (--price-in/--price-out)",
        )
    )
    return tuple(out)


# --------------------------------------------------------------------------- the loop


def backtest(
    calls: pa.Table,
    *,
    model: str | None = None,
    split: Split = "time",
    train: float = 0.5,
    seed: int = 0,
    tolerance: float = 0.2,
    kind: FitKind = "auto",
    prices: Prices | None = None,
    sources: Sequence[dict[str, Any]] = (),
    transform: Callable[[pa.Table], pa.Table] | None = None,
) -> Backtest:
    """Split `calls`, fit on the first part, simulate the second, judge every metric.

    `calls` must hold one model's calls (or name one with `model`). `transform`, when
    given, changes the held-out part before it is judged (tests use it to make a wrong
    world on purpose).
    """
    prices = prices or Prices()
    if tolerance < 0:
        raise BacktestError(f"--tolerance {tolerance:g}: give a relative tolerance >= 0")
    names = pc.unique(calls["model"]).to_pylist()
    if model is not None:
        if model not in names:
            raise BacktestError(f"no calls of model {model!r}; the data has {', '.join(names)}")
        calls = calls.filter(pc.equal(calls["model"], model))
    elif len(names) != 1:
        raise BacktestError(
            f"the data has calls of {len(names)} models ({', '.join(map(str, names))}); "
            "back-test one at a time with --model"
        )
    name = str(model if model is not None else names[0])
    fit_part, held_out = split_calls(calls, split, train, seed)
    if transform is not None:
        held_out = transform(held_out)
    fit = fit_latency(fit_part, name, kind=kind, seed=seed, command="evalx backtest")
    tmp = Path(tempfile.mkdtemp(prefix="evalx-backtest-"))
    try:
        suite = backtest_suite(fit, name, held_out, tmp / "held-out.csv", prices, seed)
        sim = _simulate(suite)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    _, timed = arrivals(calls)
    notes = [
        "Predicted with evalx's engine: a one-model suite with the fitted latency and error "
        f"rate replays the held-out calls' token counts, {REPLICATIONS} seeds pooled; "
        "capacity unlimited (observed latencies already include the provider's queueing).",
        "Latency and ttft percentiles are over successful calls; success = 1 - error rate "
        "(observed calls carry no correctness).",
    ]
    if not timed:
        notes.append(
            "No start times in the data (closed-loop benchmark, e.g. LLMPerf with 5 "
            "concurrent clients): file order stands for time and calls are replayed one "
            "second apart; queueing is not predicted."
        )
    m = fit.models[name]
    shape = "ttft + output tokens x per-token time" if m.token_aware else "total call time"
    notes.append(f"Fitted: {shape}, error rate {m.error_rate:g} ({m.used} calls informed it).")
    return Backtest(
        model=name,
        train_calls=fit_part.num_rows,
        test_calls=held_out.num_rows,
        split=split,
        train_share=train,
        seed=seed,
        tolerance=tolerance,
        timed=timed,
        metrics=_metrics(held_out, sim, prices, tolerance, seed),
        fit=fit,
        sources=tuple(sources),
        notes=tuple(notes),
    )


def write_backtest(result: Backtest, out: Path) -> Path:
    """backtest.md, backtest.json and the fitted fragment (fit.yaml) into `out`, atomically."""
    check_out(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    try:
        (tmp / "backtest.md").write_text(result.markdown(), encoding="utf-8")
        body = json.dumps(result.to_json(), indent=2, allow_nan=False) + "\n"
        (tmp / "backtest.json").write_text(body, encoding="utf-8")
        result.fit.write(tmp / "fit.yaml")
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
