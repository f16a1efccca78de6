"""Fit model latency and error rates from observed calls (the canonical calls table).

With time to first token and output tokens, a model's call time is fitted in the
simulator's token-aware form

    call = ttft + output_tokens * per_output_token [+ input_tokens * per_input_token]

each term drawn independently per call: `ttft` from ttft_s, `per_output_token` from
(latency_s - ttft_s) / output_tokens of each successful call. Shapes come from
`fit_dist` (auto). On the nine LLMPerf exports, ttft has a hard floor and a few very
slow first tokens (up to 100 s among 0.4-0.7 s ones), which no lognormal through p50
and p99 follows (KS 0.13-0.43): a forced lognormal puts the simulated end-to-end p95 up
to 7x off, while the empirical shape `auto` picks brings p50 and p95 within 7%. The
terms are close to independent there (Spearman |rho| of ttft and per-token time
< 0.3), so independent draws are not what limits the fit. What does: the few calls
with short answers carry a high per-token time (a fixed cost spread over few tokens),
and resampled onto long answers they fatten the simulated p99 (+43% on
anyscale_70b); with 150 calls per model, the observed p99 itself rests on two calls.

Prefill (`per_input_token`) is fitted only when the data can identify it (`PREFILL_RULE`):
input sizes must vary and ttft must rise with them significantly. Then per_input_token
is the Theil-Sen slope (a constant) and ttft the distribution of what remains.

Without ttft the total call time is fitted (`latency: Dist`). `error_rate` is the share
of calls whose status is not `ok`. Each model's end-to-end latency is then simulated
with the fitted terms on the observed token counts (seeded) and compared to the
observed latency: that is the check that matters, since it is what a run reproduces.
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

from harness.data._dist import AUTO_RULE, Dist, FitKind, choose_dist, round_sig
from harness.data._fragment import (
    Component,
    Fit,
    Provenance,
    Source,
    provenance,
    sources_from_column,
)
from harness.data._gof import goodness_of_fit
from harness.util import generator, stable_id

__all__ = [
    "PREFILL_ALPHA",
    "PREFILL_MIN_CV",
    "PREFILL_RULE",
    "LatencyFit",
    "ModelLatency",
    "fit_latency",
    "prefill_slope",
    "simulate_calls_ms",
]

FloatArray = npt.NDArray[np.float64]

PREFILL_MIN_CV = 0.2
"""Input sizes must vary at least this much (coefficient of variation) to identify prefill."""
PREFILL_ALPHA = 0.01
"""The Theil-Sen slope's two-sided (1 - alpha) interval must lie above 0."""
PREFILL_MAX_POINTS = 2000
"""Theil-Sen is O(n^2): beyond this many calls, an evenly spaced subset by input size."""
PREFILL_RULE = (
    f"per_input_token only when input tokens vary (CV > {PREFILL_MIN_CV}) and the "
    f"Theil-Sen slope of ttft on input tokens has its {100 * (1 - PREFILL_ALPHA):g}% "
    "interval above 0; then it is that slope (constant) and ttft the rest"
)
SIMULATED_DRAWS = 20_000
"""Draws of the end-to-end simulation (the observed token counts repeated)."""
_STREAM = 41


def _floats(table: pa.Table, name: str) -> FloatArray:
    if name not in table.column_names:
        return np.full(table.num_rows, np.nan)
    col = pc.cast(table[name], pa.float64())
    return np.asarray(col.to_numpy(zero_copy_only=False), dtype=np.float64)


def _strings(table: pa.Table, name: str) -> npt.NDArray[np.str_]:
    col = pc.fill_null(pc.cast(table[name], pa.string()), "")
    return np.asarray(col.to_numpy(zero_copy_only=False)).astype(str)


def prefill_slope(ttft_ms: npt.ArrayLike, input_tokens: npt.ArrayLike) -> tuple[float | None, str]:
    """Prefill time per input token (ms), or None when the data cannot identify it.

    See `PREFILL_RULE`. Theil-Sen (the median of pairwise slopes) is used rather than
    least squares because ttft has rare, very slow outliers that would drag a mean.
    The reason is returned for the fit report.
    """
    y = np.asarray(ttft_ms, dtype=np.float64)
    x = np.asarray(input_tokens, dtype=np.float64)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    if x.size < 3:
        return None, "prefill not fitted: fewer than 3 calls with input tokens"
    cv = float(x.std() / x.mean()) if x.mean() > 0 else 0.0
    if cv <= PREFILL_MIN_CV:
        return None, f"prefill not fitted: input tokens barely vary (CV={cv:.2f})"
    if x.size > PREFILL_MAX_POINTS:
        pick = np.argsort(x, kind="stable")[
            np.linspace(0, x.size - 1, PREFILL_MAX_POINTS).astype(int)
        ]
        x, y = x[pick], y[pick]
    res = stats.theilslopes(y, x, alpha=1 - PREFILL_ALPHA)
    slope, low = float(res.slope), float(res.low_slope)
    if not low > 0:
        return None, (
            f"prefill not fitted: ttft does not rise significantly with input tokens "
            f"(slope {slope:.3g} ms/token, interval from {low:.3g})"
        )
    return round_sig(slope), (
        f"prefill fitted: {round_sig(slope):g} ms per input token "
        f"(Theil-Sen, CV of input {cv:.2f}, interval low {low:.3g})"
    )


def simulate_calls_ms(
    ttft: Dist,
    per_output_token: Dist,
    per_input_token: Dist | None,
    input_tokens: npt.ArrayLike,
    output_tokens: npt.ArrayLike,
    rng: np.random.Generator,
) -> FloatArray:
    """Call times (ms) the simulator would draw for calls of these token counts.

    Each term is drawn independently per call, as the simulator does.
    """
    out = np.asarray(output_tokens, dtype=np.float64)
    total = ttft.sample(rng, out.size) + out * per_output_token.sample(rng, out.size)
    if per_input_token is not None:
        inp = np.asarray(input_tokens, dtype=np.float64)
        total = total + inp * per_input_token.sample(rng, out.size)
    return total


@dataclass(frozen=True, eq=False)
class ModelLatency:
    """One model's fitted latency and error rate, with the checks behind them."""

    name: str
    calls: int
    """Rows of this model in the table."""
    ok: int
    """Calls with status `ok`."""
    used: int
    """Calls that informed the latency fit."""
    error_rate: float
    ttft: Dist | None = None
    per_output_token: Dist | None = None
    per_input_token: Dist | None = None
    total: Dist | None = None
    """Total call time, when ttft or output tokens are missing."""
    components: tuple[Component, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def token_aware(self) -> bool:
        """Fitted as ttft + tokens x per-token time."""
        return self.ttft is not None

    def latency_dict(self) -> dict[str, Any] | None:
        """The suite's `latency` mapping (None when no call succeeded)."""
        if self.ttft is not None and self.per_output_token is not None:
            d: dict[str, Any] = {
                "ttft": self.ttft.to_dict(),
                "per_output_token": self.per_output_token.to_dict(),
            }
            if self.per_input_token is not None:
                d["per_input_token"] = self.per_input_token.to_dict()
            return d
        return self.total.to_dict() if self.total is not None else None

    def component(self, what: str) -> Component:
        """The component whose key ends with `what` (`ttft`, `end_to_end`, ...)."""
        for c in self.components:
            if c.key.endswith("." + what):
                return c
        raise KeyError(what)


@dataclass(frozen=True, eq=False)
class LatencyFit(Fit):
    """Fitted latency and error rates of one or more models."""

    kind: ClassVar[str] = "latency"
    models: Mapping[str, ModelLatency]
    provenance: Provenance

    def to_fragment(self) -> dict[str, Any]:
        """`{models: {NAME: {latency: ..., error_rate: p}}}`."""
        models: dict[str, Any] = {}
        for name, m in self.models.items():
            entry: dict[str, Any] = {}
            lat = m.latency_dict()
            if lat is not None:
                entry["latency"] = lat
            entry["error_rate"] = m.error_rate
            models[name] = entry
        return {"models": models}

    def components(self) -> tuple[Component, ...]:
        return tuple(c for m in self.models.values() for c in m.components)

    def notes(self) -> tuple[str, ...]:
        lines = [f"Shape rule: {AUTO_RULE}.", f"Prefill rule: {PREFILL_RULE}."]
        for m in self.models.values():
            lines.extend(f"{m.name}: {n}" for n in m.notes)
        return tuple(lines)


def _fit_model(
    name: str,
    cols: Mapping[str, FloatArray],
    status_ok: npt.NDArray[np.bool_],
    kind: FitKind,
    seed: int,
) -> ModelLatency:
    calls, ok = int(status_ok.size), int(status_ok.sum())
    error_rate = round_sig(1.0 - ok / calls, 4) if calls else 0.0
    lat_ms, ttft_ms = cols["latency_s"] * 1000.0, cols["ttft_s"] * 1000.0
    out_tok, in_tok = cols["output_tokens"], cols["input_tokens"]
    timed = status_ok & np.isfinite(lat_ms) & (lat_ms >= 0)
    complete = timed & np.isfinite(ttft_ms) & (ttft_ms >= 0) & np.isfinite(out_tok) & (out_tok > 0)
    backwards = complete & (lat_ms < ttft_ms)
    complete &= ~backwards
    notes: list[str] = []
    if backwards.any():
        notes.append(f"{int(backwards.sum())} ok calls end before their first token; left out")
    if not timed.any():
        notes.append("no successful call with a latency: only error_rate fitted")
        return ModelLatency(name, calls, ok, 0, error_rate, notes=tuple(notes))
    key = f"models.{name}.latency"

    if complete.sum() < max(2, 0.5 * timed.sum()):
        lat = lat_ms[timed]
        total, why = choose_dist(lat, kind)
        notes.append("ttft or output tokens missing for most calls: total call time fitted")
        comp = Component(
            key, f"{name}: call time", lat, goodness_of_fit(lat, total), dist=total, note=why
        )
        used = int(timed.sum())
        return ModelLatency(
            name, calls, ok, used, error_rate, total=total, components=(comp,), notes=tuple(notes)
        )

    lat, ttft, out, inp = (a[complete] for a in (lat_ms, ttft_ms, out_tok, in_tok))
    per_tok = (lat - ttft) / out
    slope, prefill_note = prefill_slope(ttft, inp)
    notes.append(prefill_note)
    per_in = Dist.constant(slope) if slope is not None else None
    head = ttft if slope is None else np.maximum(ttft - slope * inp, 0.0)
    ttft_dist, ttft_why = choose_dist(head, kind)
    tok_dist, tok_why = choose_dist(per_tok, kind)

    rng = generator(seed, _STREAM, stable_id(name))
    reps = max(1, math.ceil(SIMULATED_DRAWS / lat.size))
    inp_rep, out_rep = np.tile(np.nan_to_num(inp), reps), np.tile(out, reps)
    e2e = simulate_calls_ms(ttft_dist, tok_dist, per_in, inp_rep, out_rep, rng)
    ttft_title = f"{name}: time to first token"
    if slope is None:
        ttft_comp = Component(
            f"{key}.ttft",
            ttft_title,
            ttft,
            goodness_of_fit(ttft, ttft_dist),
            dist=ttft_dist,
            note=ttft_why,
        )
    else:
        pred = ttft_dist.sample(rng, inp_rep.size) + inp_rep * slope
        ttft_comp = Component(
            f"{key}.ttft",
            ttft_title,
            ttft,
            goodness_of_fit(ttft, pred),
            predicted=pred,
            note=f"{ttft_why} (after prefill); plus {slope:g} ms per input token",
            shape=f"{ttft_dist.describe()} + {slope:g} ms x input tokens",
        )
    tok_comp = Component(
        f"{key}.per_output_token",
        f"{name}: time per output token",
        per_tok,
        goodness_of_fit(per_tok, tok_dist),
        dist=tok_dist,
        note=tok_why,
    )
    e2e_comp = Component(
        f"models.{name}.end_to_end",
        f"{name}: end-to-end call time",
        lat,
        goodness_of_fit(lat, e2e),
        predicted=e2e,
        note=f"simulated: {reps} draws per observed call, with its token counts",
        shape="simulated ttft + tokens x per-token times",
    )
    return ModelLatency(
        name,
        calls,
        ok,
        int(complete.sum()),
        error_rate,
        ttft=ttft_dist,
        per_output_token=tok_dist,
        per_input_token=per_in,
        components=(ttft_comp, tok_comp, e2e_comp),
        notes=tuple(notes),
    )


def fit_latency(
    calls: pa.Table,
    model: str | None = None,
    *,
    kind: FitKind = "auto",
    sources: Sequence[Source] | None = None,
    created: str | dt.date | None = None,
    command: str = "",
    seed: int = 0,
) -> LatencyFit:
    """Fit each model's latency and error rate from the canonical calls table.

    `model` restricts the fit to one model (ValueError naming the known ones when it is
    absent). `kind` forces a shape for every distribution (default: `AUTO_RULE`).
    `sources` defaults to the table's `source` column (files hashed when readable).
    The end-to-end check is seeded by `seed`, so a fit is reproducible.
    """
    for col in ("model", "latency_s", "status"):
        if col not in calls.column_names:
            raise ValueError(f"calls table lacks column {col!r}")
    names = _strings(calls, "model")
    known = list(dict.fromkeys(names.tolist()))
    if model is not None and model not in known:
        raise ValueError(f"no calls of model {model!r}; the table has {', '.join(known) or 'none'}")
    wanted = [model] if model is not None else known
    status_ok = _strings(calls, "status") == "ok"
    cols = {c: _floats(calls, c) for c in ("latency_s", "ttft_s", "input_tokens", "output_tokens")}
    fitted: dict[str, ModelLatency] = {}
    for name in wanted:
        sel = names == name
        fitted[name] = _fit_model(
            name, {c: v[sel] for c, v in cols.items()}, status_ok[sel], kind, seed
        )
    if sources is None:
        has_source = "source" in calls.column_names
        sources = sources_from_column(_strings(calls, "source")) if has_source else ()
    used = sum(m.calls for m in fitted.values())
    return LatencyFit(fitted, provenance(sources, used, created=created, command=command))
