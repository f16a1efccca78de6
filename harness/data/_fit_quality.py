"""Fit model quality from a table of per-prompt outcomes (RouterBench style).

A model's quality in the suite is its chance of a correct answer per task class. The
fit counts, per model and class, the share of prompts whose score passes the success
condition (`parse_success`), with a Wilson 95% interval. It also measures what a
router is betting on and what per-class numbers cannot express: how correlated the
models' successes are across prompts, and how often a weaker model succeeds where a
stronger one fails (non-nesting). Those go into the fit report; to simulate them
faithfully the fragment also points `world.outcomes` at the table itself, so a run
draws joint outcomes from real prompts.
"""

from __future__ import annotations

import datetime as dt
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
from scipy import stats

from harness.data._dist import round_sig
from harness.data._fragment import Component, Fit, Provenance, Source, provenance

__all__ = [
    "QualityFit",
    "Rate",
    "fit_quality",
    "parse_success",
]

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

_SUCCESS = re.compile(r"^\s*(>=|<=|==|>|<)\s*([-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)\s*$")
_OPS: dict[str, Callable[[Any, Any], Any]] = {
    ">=": operator.ge,
    ">": operator.gt,
    "<=": operator.le,
    "<": operator.lt,
    "==": operator.eq,
}


def parse_success(text: str) -> Callable[[npt.ArrayLike], BoolArray]:
    """The test a success condition such as `>= 1.5` puts on an array of scores.

    Grammar: one of `>=`, `>`, `<=`, `<`, `==`, then a number (decimal or exponent
    notation), spaces allowed around both. A NaN score never passes. Raises ValueError
    saying what is wrong and giving an example; the caller adds the file and key.
    """
    match = _SUCCESS.match(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError(
            f"bad success condition {text!r}: write a comparison (>=, >, <=, < or ==) "
            "and a number, e.g. '>= 1.5'"
        )
    op, threshold = _OPS[match.group(1)], float(match.group(2))

    def passes(scores: npt.ArrayLike) -> BoolArray:
        return np.asarray(op(np.asarray(scores, dtype=np.float64), threshold), dtype=bool)

    return passes


@dataclass(frozen=True)
class Rate:
    """A success rate with its Wilson 95% interval."""

    successes: int
    n: int

    @property
    def rate(self) -> float:
        """successes / n (nan when n is 0)."""
        return self.successes / self.n if self.n else float("nan")

    @property
    def interval(self) -> tuple[float, float]:
        """Wilson score 95% interval (nan, nan when n is 0)."""
        if self.n == 0:
            return float("nan"), float("nan")
        ci = stats.binomtest(self.successes, self.n).proportion_ci(0.95, method="wilson")
        return float(ci.low), float(ci.high)


@dataclass(frozen=True, eq=False)
class QualityFit(Fit):
    """Per-model success rates (overall and per class) and how models co-succeed."""

    kind: ClassVar[str] = "quality"
    success: str
    """The success condition on the score, e.g. `>= 1.5`."""
    models: Mapping[str, str]
    """Suite model name -> model name in the table, in order of falling success."""
    overall: Mapping[str, Rate]
    """Suite model -> success over every prompt it has an outcome for."""
    by_class: Mapping[str, Mapping[str, Rate]]
    """Suite model -> task class -> success (empty without a task_class column)."""
    correlation: FloatArray
    """Pearson correlation of 0/1 success over prompts both models answered (phi)."""
    wins_over: FloatArray
    """[i, j]: share of prompts both answered where model i succeeds and model j fails."""
    common: npt.NDArray[np.int64]
    """[i, j]: prompts both models have an outcome for."""
    prompts: int
    """Distinct prompt ids."""
    provenance: Provenance
    latent_correlation: float | None = None
    """Mean tetrachoric correlation of success over model pairs: the `world.correlation` of
    a Gaussian copula with these models' joint successes (None: fewer than two models)."""
    outcomes: Mapping[str, Any] | None = field(default=None)
    """The `world.outcomes` mapping, when the table's path is known."""

    @property
    def names(self) -> tuple[str, ...]:
        """Suite model names, strongest first (the order of the matrices)."""
        return tuple(self.models)

    def non_nesting(self) -> list[tuple[str, str, float, int]]:
        """(weaker, stronger, share where weaker succeeds and stronger fails, prompts),
        for every pair, ordered by overall success."""
        out = []
        names = self.names
        for j, strong in enumerate(names):
            for i in range(j + 1, len(names)):
                out.append((names[i], strong, float(self.wins_over[i, j]), int(self.common[i, j])))
        return out

    def to_fragment(self) -> dict[str, Any]:
        """`{models: {NAME: {quality: {CLASS: p}, default_quality: p}}, world: {outcomes}}`."""
        models = {
            name: {
                "quality": {c: round_sig(r.rate, 4) for c, r in self.by_class[name].items()},
                "default_quality": round_sig(self.overall[name].rate, 4),
            }
            for name in self.models
        }
        frag: dict[str, Any] = {"models": models}
        world: dict[str, Any] = {}
        if self.latent_correlation is not None:
            world["correlation"] = round(self.latent_correlation, 2)
        if self.outcomes is not None:
            world["outcomes"] = dict(self.outcomes)
        if world:
            frag["world"] = world
        return frag

    def components(self) -> tuple[Component, ...]:
        return ()

    def notes(self) -> tuple[str, ...]:
        return (f"Success: score {self.success}; {self.prompts} prompts.",)

    def summary(self) -> tuple[str, ...]:
        lines = []
        if self.latent_correlation is not None:
            lines.append(f"Latent correlation of success (mean tetrachoric over model pairs): "
                         f"{self.latent_correlation:.3f}")  # fmt: skip
        for name, r in self.overall.items():
            lo, hi = r.interval
            lines.append(
                f"{name}: {r.rate:.3f} ({r.successes}/{r.n}, Wilson 95% {lo:.3f}-{hi:.3f})"
            )
        pairs = self.non_nesting()
        if pairs:
            lines.append("Non-nesting (weaker succeeds where stronger fails, share of prompts):")
            lines.extend(f"  {w} over {s}: {share:.3f} of {n}" for w, s, share, n in pairs)
        return tuple(lines)


def _strings(table: pa.Table, name: str) -> npt.NDArray[np.str_]:
    col = pc.cast(table[name], pa.string())
    return np.asarray(pc.fill_null(col, "").to_numpy(zero_copy_only=False)).astype(str)


def fit_quality(
    outcomes: pa.Table,
    success: str,
    models: Mapping[str, str] | None = None,
    *,
    path: str | None = None,
    columns: Mapping[str, str] | None = None,
    sources: Sequence[Source] = (),
    created: str | dt.date | None = None,
    command: str = "",
) -> QualityFit:
    """Fit per-model success rates from an outcomes table (`id`, `model`, `score`,
    optional `task_class`).

    `success` is the condition on the score (`parse_success`). `models` maps suite
    names to the table's model names (default: every model in the table under its
    own name; ValueError naming the known ones for an unknown name). Rows with a
    missing score are left out; an (id, model) pair may appear once. Per-class rates
    need a `task_class` column (null classes count only overall). The fragment gets
    `world.outcomes` when `path` (the table's file, as the suite should name it) is
    given or `sources` holds exactly one file; `columns` maps `id`, `model`, `score`
    (and `task_class`, if the file has it) to the file's own column names.
    """
    test = parse_success(success)
    for col in ("id", "model", "score"):
        if col not in outcomes.column_names:
            raise ValueError(f"outcomes table lacks column {col!r}")
    ids = _strings(outcomes, "id")
    table_models = _strings(outcomes, "model")
    scores = np.asarray(
        pc.cast(outcomes["score"], pa.float64()).to_numpy(zero_copy_only=False), np.float64
    )
    has_class = "task_class" in outcomes.column_names
    classes = _strings(outcomes, "task_class") if has_class else None
    known = list(dict.fromkeys(table_models.tolist()))
    mapping = dict(models) if models is not None else {m: m for m in known}
    unknown = [t for t in mapping.values() if t not in known]
    if unknown:
        raise ValueError(
            f"no outcomes of model {unknown[0]!r}; the table has {', '.join(known) or 'none'}"
        )

    keep = np.isin(table_models, list(mapping.values())) & ~np.isnan(scores)
    ids, table_models, scores = ids[keep], table_models[keep], scores[keep]
    classes = classes[keep] if classes is not None else None
    ok = test(scores)
    pair = np.char.add(np.char.add(ids, "\x00"), table_models)
    _, first, counts = np.unique(pair, return_index=True, return_counts=True)
    if (counts > 1).any():
        k = first[np.argmax(counts > 1)]
        raise ValueError(
            f"prompt {str(ids[k])!r} has more than one outcome for model {str(table_models[k])!r}"
        )

    overall = {
        s: Rate(int(ok[table_models == t].sum()), int((table_models == t).sum()))
        for s, t in mapping.items()
    }
    order = sorted(mapping, key=lambda s: -overall[s].rate)
    by_class: dict[str, dict[str, Rate]] = {}
    for s in order:
        sel = table_models == mapping[s]
        per: dict[str, Rate] = {}
        if classes is not None:
            for c in sorted(set(classes[sel].tolist()) - {""}):
                m = sel & (classes == c)
                per[c] = Rate(int(ok[m].sum()), int(m.sum()))
        by_class[s] = per

    prompt_ids, prompt_row = np.unique(ids, return_inverse=True)
    k = len(order)
    grid = np.full((prompt_ids.size, k), np.nan)  # 1 success, 0 failure, nan no outcome
    for j, s in enumerate(order):
        sel = table_models == mapping[s]
        grid[prompt_row[sel], j] = ok[sel]
    corr = np.full((k, k), np.nan)
    wins = np.full((k, k), np.nan)
    common = np.zeros((k, k), dtype=np.int64)
    for i in range(k):
        for j in range(k):
            both = ~np.isnan(grid[:, i]) & ~np.isnan(grid[:, j])
            common[i, j] = int(both.sum())
            if not both.any():
                continue
            a, b = grid[both, i], grid[both, j]
            wins[i, j] = float(np.mean((a == 1) & (b == 0)))
            if a.std() > 0 and b.std() > 0:
                corr[i, j] = float(np.corrcoef(a, b)[0, 1])

    rhos = [
        tetrachoric(grid[both, i] == 1, grid[both, j] == 1)
        for i in range(k)
        for j in range(i + 1, k)
        if (both := ~np.isnan(grid[:, i]) & ~np.isnan(grid[:, j])).any()
    ]
    finite = [r for r in rhos if r is not None]
    where = path if path is not None else (sources[0].path if len(sources) == 1 else None)
    world = None
    if where is not None:
        cols = {"id": "id", "model": "model", "score": "score", **(columns or {})}
        world = {
            "path": where,
            **cols,
            "success": success.strip(),
            "models": {s: mapping[s] for s in order},
        }
    return QualityFit(
        success=success.strip(),
        models={s: mapping[s] for s in order},
        overall={s: overall[s] for s in order},
        by_class=by_class,
        correlation=corr,
        wins_over=wins,
        common=common,
        prompts=int(prompt_ids.size),
        provenance=provenance(sources, int(keep.sum()), created=created, command=command),
        outcomes=world,
        latent_correlation=float(np.mean(finite)) if finite else None,
    )


def tetrachoric(a: npt.NDArray[np.bool_], b: npt.NDArray[np.bool_]) -> float | None:
    """The latent correlation at which a standard bivariate normal, cut at the two success
    rates, gives the observed rate of both succeeding (None when a rate is 0 or 1)."""
    from scipy import optimize

    qa, qb, qab = float(a.mean()), float(b.mean()), float((a & b).mean())
    if not (0.0 < qa < 1.0 and 0.0 < qb < 1.0):
        return None
    za, zb = stats.norm.ppf(qa), stats.norm.ppf(qb)

    def gap(rho: float) -> float:
        cov = [[1.0, rho], [rho, 1.0]]
        both = stats.multivariate_normal.cdf([za, zb], cov=cov, abseps=1e-8, releps=1e-8)
        return float(both) - qab

    lo, hi = -0.999, 0.999
    if gap(lo) > 0 or gap(hi) < 0:  # the joint rate is outside what any rho can give
        return lo if gap(lo) > 0 else hi
    return float(optimize.brentq(gap, lo, hi))
