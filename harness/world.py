"""The world tape: every random draw of the world, sampled up front and vectorised.

A draw is keyed by (seed, request, model or tool, call index): the k-th call that
request i makes to model m always sees the same latency, error roll and fault roll,
whatever the routing did before. Routing settings therefore change routing, never the
world (common random numbers), which makes paired comparisons and tape-based sweeps
exact. Calls beyond the tape's width (rare: long retry chains) are drawn on demand
from a generator keyed the same way, so they are just as deterministic.

Correctness comes from one of two places. Parametric, a Gaussian copula: request i has
a latent z_i = Phi^-1(u_i) (u_i its uniform `difficulty`) shared by every model, model m
adds its own noise e_im ~ N(0, 1), and it answers correctly when
Phi(sqrt(rho) z_i + sqrt(1 - rho) e_im) < quality[m][class], rho being
`world.correlation`. Each model's success rate is exactly its quality whatever rho;
rho = 1 is the nested world (a stronger model is right on a superset), rho = 0 makes
models independent, and in between a small model is sometimes right where a large one
is wrong. From data: with
`world.outcomes`, each request gets a row of a table of per-prompt outcomes (its own row
when traffic carries ids, else a row drawn for it), and model m is right when its score
in that row passes the success rule; the joint outcome across models comes from one
row, so correlations and non-nesting are those of the real models.

A call's latency is either one draw of the whole call or, token-aware, time to first
token plus per-output-token and per-input-token times, each drawn per call; the engine
multiplies by the call's tokens, which only it knows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

import numpy as np

from harness.spec import Dist, Latency, Suite
from harness.traffic import Requests
from harness.util import BLOCK, blocks, generator, stable_id

WIDTH: Final = 4
"""Calls per (request, model) and (request, tool) kept on the tape."""
JITTERS: Final = 8
"""Backoff jitter draws per request on the tape."""

_DIFFICULTY, _CONF, _CALLS, _TOOLS, _JITTER, _CLASSIFY, _OVERFLOW = 11, 12, 13, 14, 15, 16, 17
_TOKEN_LATENCY, _OUTCOME_ROWS, _NOISE = 18, 19, 20
_HANDOFF = 41
_TOOL_LOOP = 57
_Z99 = 2.3263478740408408


def sample_latency(lat: Dist, rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Seconds drawn from a distribution of milliseconds. Lognormal passes exactly through
    p50 and p99; empirical resamples the values uniformly with replacement."""
    if lat.dist == "empirical":
        values = np.asarray(lat.values_ms, dtype=np.float64) / 1000.0
        return values[rng.integers(0, len(values), shape)]
    if lat.dist == "constant":
        return np.full(shape, lat.p50_ms / 1000.0)
    if lat.dist == "exponential":
        mean_ms = lat.mean_ms if lat.mean_ms is not None else lat.p50_ms / math.log(2)
        return rng.exponential(mean_ms / 1000.0, shape)
    mu = math.log(lat.p50_ms / 1000.0)
    sigma = (math.log(lat.p99_ms) - math.log(lat.p50_ms)) / _Z99
    return np.exp(mu + sigma * rng.standard_normal(shape))


def token_parts(
    lat: Latency, rng: np.random.Generator, shape: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Token-aware latency draws in seconds: (first token, per output token, per prompt token)."""
    assert lat.ttft is not None
    ttft = sample_latency(lat.ttft, rng, shape)
    zero = np.zeros(shape)
    tok = sample_latency(lat.per_output_token, rng, shape) if lat.per_output_token else zero
    pre = sample_latency(lat.per_input_token, rng, shape) if lat.per_input_token else zero
    return ttft, tok, pre


def _beta(rng: np.random.Generator, mean: float, conc: float, shape: tuple[int, ...]) -> np.ndarray:
    m = min(max(mean, 1e-3), 1 - 1e-3)
    return rng.beta(m * conc, (1 - m) * conc, shape).astype(np.float32)


@dataclass(frozen=True)
class Tape:
    """Column arrays of world draws; see module docstring for the keying."""

    seed: int
    model_names: tuple[str, ...]
    tool_names: tuple[str, ...]
    difficulty: np.ndarray  # (n,) latent difficulty u, shared by every model
    correct_u: np.ndarray  # (n, M) model m right when < its quality (copula of difficulty)
    conf_right: np.ndarray  # (n, M) confidence if the answer is right
    conf_wrong: np.ndarray  # (n, M) confidence if wrong
    inject_u: np.ndarray  # (n, M) follows an injected instruction when < susceptibility
    leak_u: np.ndarray  # (n, M) repeats personal data from its context when < pii_leak_rate
    latency_s: np.ndarray  # (n, M, WIDTH) service time
    error_u: np.ndarray  # (n, M, WIDTH) spontaneous error / malformed roll
    fault_u: np.ndarray  # (n, M, WIDTH) fault probability roll
    args_u: np.ndarray  # (n, M, WIDTH) invalid tool-argument roll
    tool_latency_s: np.ndarray  # (n, T, WIDTH)
    tool_error_u: np.ndarray  # (n, T, WIDTH)
    tool_fault_u: np.ndarray  # (n, T, WIDTH)
    jitter_u: np.ndarray  # (n, JITTERS) backoff jitter
    classify_u: np.ndarray  # (n,) classifier right when < accuracy
    classify_pick: np.ndarray  # (n,) which wrong class it picks
    classify_conf_right: np.ndarray  # (n,)
    classify_conf_wrong: np.ndarray  # (n,)
    handoff_s: np.ndarray  # (n,) a human's service time, should the request be handed off
    handoff_u: np.ndarray  # (n,) the human gets it right when < handoff.quality
    token_latency: tuple[Latency | None, ...] = ()  # per model, when token-aware: latency_s
    # then holds time to first token, and per_token_s / per_input_s the per-token parts
    per_token_s: np.ndarray | None = None  # (n, M, WIDTH) seconds per output token
    per_input_s: np.ndarray | None = None  # (n, M, WIDTH) prefill seconds per prompt token
    correct: np.ndarray | None = None  # (rows, M) bool: outcome table, model right on row
    outcome_row: np.ndarray | None = None  # (n,) the outcome-table row of each request
    loop_u: np.ndarray | None = None  # (n, M) model m loops on a tool when < tool_loop_rate

    def per_output_token(self, i: int, m: int, k: int) -> float | None:
        """Seconds per output token of call k (None: model m's latency is the whole call)."""
        if not self.token_latency or self.token_latency[m] is None:
            return None
        if k < WIDTH:
            assert self.per_token_s is not None
            return float(self.per_token_s.item(i, m, k))
        return self._token_overflow(i, m, k)[1]

    def per_input_token(self, i: int, m: int, k: int) -> float:
        """Prefill seconds per prompt token of call k (0 without a prefill model)."""
        if k < WIDTH:
            assert self.per_input_s is not None
            return float(self.per_input_s.item(i, m, k))
        return self._token_overflow(i, m, k)[2]

    def _token_overflow(self, i: int, m: int, k: int) -> tuple[float, float, float]:
        lat = self.token_latency[m]
        assert lat is not None
        rng = generator(self.seed, _OVERFLOW, 3, stable_id(self.model_names[m]), i, k)
        ttft, tok, pre = token_parts(lat, rng, (1,))
        return float(ttft[0]), float(tok[0]), float(pre[0])

    def model_call(self, suite: Suite, i: int, m: int, k: int) -> tuple[float, float, float, float]:
        """(latency_s, error_u, fault_u, args_u) of the k-th call of request i to model m."""
        if k < WIDTH:
            return (
                self.latency_s.item(i, m, k),
                self.error_u.item(i, m, k),
                self.fault_u.item(i, m, k),
                self.args_u.item(i, m, k),
            )
        name = self.model_names[m]
        rng = generator(self.seed, _OVERFLOW, 0, stable_id(name), i, k)
        latency = suite.models[name].latency
        if latency.token_aware:
            lat = self._token_overflow(i, m, k)[0]
        else:
            lat = float(sample_latency(latency, rng, (1,))[0])
        u = rng.random(3)
        return lat, float(u[0]), float(u[1]), float(u[2])

    def tool_call(self, suite: Suite, i: int, t: int, k: int) -> tuple[float, float, float]:
        """(latency_s, error_u, fault_u) of the k-th call of request i to tool t."""
        if k < WIDTH:
            return (
                self.tool_latency_s.item(i, t, k),
                self.tool_error_u.item(i, t, k),
                self.tool_fault_u.item(i, t, k),
            )
        name = self.tool_names[t]
        rng = generator(self.seed, _OVERFLOW, 1, stable_id(name), i, k)
        lat = float(sample_latency(suite.tools[name].latency, rng, (1,))[0])
        u = rng.random(2)
        return lat, float(u[0]), float(u[1])

    def jitter(self, i: int, j: int) -> float:
        """Uniform draw for request i's j-th backoff."""
        if j < JITTERS:
            return float(self.jitter_u.item(i, j))
        return float(generator(self.seed, _OVERFLOW, 2, 0, i, j).random())


def sample_tape(suite: Suite, requests: Requests) -> Tape:
    """Sample the whole tape for `requests` under `suite.seed`."""
    seed, n = suite.seed, len(requests)
    models, tools = list(suite.models.items()), list(suite.tools.items())
    nm, nt = len(models), max(len(tools), 1)
    f32 = np.float32
    difficulty = np.empty(n)
    correct_u = np.empty((n, nm))
    conf_right, conf_wrong, inject_u, leak_u = (np.empty((n, nm), f32) for _ in range(4))
    latency_s = np.empty((n, nm, WIDTH))
    error_u, fault_u, args_u = (np.empty((n, nm, WIDTH), f32) for _ in range(3))
    tool_latency_s = np.zeros((n, nt, WIDTH))
    tool_error_u, tool_fault_u = (np.ones((n, nt, WIDTH), f32) for _ in range(2))
    jitter_u = np.empty((n, JITTERS), f32)
    classify = np.empty((n, 4), f32)
    token_latency = tuple(m.latency if m.latency.token_aware else None for _, m in models)
    tokens = any(lat is not None for lat in token_latency)
    per_token_s = np.zeros((n, nm, WIDTH)) if tokens else None
    per_input_s = np.zeros((n, nm, WIDTH)) if tokens else None
    clf_name = suite.stack.classifier.model or next(
        name for name, m in models if m.tier == suite.stack.tiers[0]
    )
    clf_cal = suite.models[clf_name].calibration
    # Every generator draws whole blocks and the rows of this block are cut out, so request
    # i's draws never depend on how many requests follow it.
    full = BLOCK
    for b, lo, hi in blocks(n):
        size = hi - lo
        difficulty[lo:hi] = generator(seed, _DIFFICULTY, b).random(full)[:size]
        jitter_u[lo:hi] = generator(seed, _JITTER, b).random((full, JITTERS), f32)[:size]
        rng = generator(seed, _CLASSIFY, b)
        classify[lo:hi, :2] = rng.random((full, 2), f32)[:size]
        classify[lo:hi, 2] = _beta(rng, clf_cal.correct_mean, clf_cal.concentration, (full,))[:size]
        classify[lo:hi, 3] = _beta(rng, clf_cal.wrong_mean, clf_cal.concentration, (full,))[:size]
        for j, (name, model) in enumerate(models):
            cal = model.calibration
            rng = generator(seed, _CONF, stable_id(name), b)
            conf_right[lo:hi, j] = _beta(rng, cal.correct_mean, cal.concentration, (full,))[:size]
            conf_wrong[lo:hi, j] = _beta(rng, cal.wrong_mean, cal.concentration, (full,))[:size]
            inject_u[lo:hi, j] = rng.random(full, f32)[:size]
            leak_u[lo:hi, j] = rng.random(full, f32)[:size]
            rng = generator(seed, _CALLS, stable_id(name), b)
            lat = token_latency[j]
            if lat is None:
                latency_s[lo:hi, j] = sample_latency(model.latency, rng, (full, WIDTH))[:size]
            else:  # own stream: the error and fault rolls below stay those of a plain model
                assert per_token_s is not None and per_input_s is not None
                parts = token_parts(lat, generator(seed, _TOKEN_LATENCY, stable_id(name), b),
                                    (full, WIDTH))  # fmt: skip
                latency_s[lo:hi, j] = parts[0][:size]
                per_token_s[lo:hi, j] = parts[1][:size]
                per_input_s[lo:hi, j] = parts[2][:size]
                sample_latency(model.latency, rng, (full, WIDTH))  # keep `rng` in step
            u = rng.random((3, full, WIDTH), f32)[:, :size]
            error_u[lo:hi, j], fault_u[lo:hi, j], args_u[lo:hi, j] = u[0], u[1], u[2]
            noise = generator(seed, _NOISE, stable_id(name), b).standard_normal(full)[:size]
            correct_u[lo:hi, j] = copula(difficulty[lo:hi], noise, suite.world.correlation)
        for j, (name, tool) in enumerate(tools):
            rng = generator(seed, _TOOLS, stable_id(name), b)
            tool_latency_s[lo:hi, j] = sample_latency(tool.latency, rng, (full, WIDTH))[:size]
            u = rng.random((2, full, WIDTH), f32)[:, :size]
            tool_error_u[lo:hi, j], tool_fault_u[lo:hi, j] = u[0], u[1]
    return Tape(
        seed=seed,
        model_names=tuple(name for name, _ in models),
        tool_names=tuple(name for name, _ in tools),
        difficulty=difficulty,
        correct_u=correct_u,
        conf_right=conf_right,
        conf_wrong=conf_wrong,
        inject_u=inject_u,
        leak_u=leak_u,
        latency_s=latency_s,
        error_u=error_u,
        fault_u=fault_u,
        args_u=args_u,
        tool_latency_s=tool_latency_s,
        tool_error_u=tool_error_u,
        tool_fault_u=tool_fault_u,
        jitter_u=jitter_u,
        classify_u=classify[:, 0].copy(),
        classify_pick=classify[:, 1].copy(),
        classify_conf_right=classify[:, 2].copy(),
        classify_conf_wrong=classify[:, 3].copy(),
        token_latency=token_latency,
        per_token_s=per_token_s,
        per_input_s=per_input_s,
        **outcome_rows(suite, requests),
        **handoff_draws(suite, n),
        **loop_draws(suite, n),
    )


def copula(u: np.ndarray, noise: np.ndarray, rho: float) -> np.ndarray:
    """Uniforms Phi(sqrt(rho) Phi^-1(u) + sqrt(1 - rho) noise): uniform for each model,
    with latent correlation rho between models that share `u`. At rho = 1 they are `u`
    itself (no round trip through Phi), so the nested world is reproduced bit for bit."""
    if rho >= 1.0:
        return u.copy()
    from scipy.special import ndtr, ndtri

    z = math.sqrt(1.0 - rho) * noise
    if rho > 0.0:
        z += math.sqrt(rho) * ndtri(u)
    out: np.ndarray = ndtr(z)
    return out


def loop_draws(suite: Suite, n: int) -> dict[str, np.ndarray]:
    """Per request and model, the roll that makes the model loop on a tool (`tool_loop_rate`).

    On a stream of its own, drawn only when some model may loop, so other draws never move.
    """
    rates = [m.tool_loop_rate for m in suite.models.values()]
    if not any(rates):
        return {}
    loop_u = np.ones((n, len(rates)), np.float32)
    for j, name in enumerate(suite.models):
        for b, lo, hi in blocks(n):
            rng = generator(suite.seed, _TOOL_LOOP, stable_id(name), b)
            loop_u[lo:hi, j] = rng.random(BLOCK, np.float32)[: hi - lo]
    return {"loop_u": loop_u}


def handoff_draws(suite: Suite, n: int) -> dict[str, np.ndarray]:
    """Per request, what a human would do with it: service time and the right-answer roll.

    One draw each per request (a request is handed off at most once), on a stream of its
    own, so handing off more or fewer requests changes no other draw.
    """
    spec = suite.handoff
    handoff_s, handoff_u = np.empty(n), np.empty(n)
    for b, lo, hi in blocks(n):
        rng = generator(suite.seed, _HANDOFF, b)
        handoff_s[lo:hi] = sample_latency(spec.latency, rng, (BLOCK,))[: hi - lo]
        handoff_u[lo:hi] = rng.random(BLOCK)[: hi - lo]
    return {"handoff_s": handoff_s, "handoff_u": handoff_u}


def outcome_rows(suite: Suite, requests: Requests) -> dict[str, np.ndarray]:
    """`world.outcomes`: the table's correctness matrix and each request's row.

    A request with an id takes the row of that id; otherwise it draws a row (of its task
    class when the table has classes), keyed by (seed, request) like every draw.
    """
    spec = suite.world.outcomes
    if spec is None:
        return {}
    from harness.data import DataError, read_outcomes, score_matrix

    table = read_outcomes(spec.path, id=spec.id, model=spec.model, score=spec.score,
                          task_class=spec.task_class, format=spec.format)  # fmt: skip
    names = [spec.models.get(m, m) for m in suite.models]
    ids, scores, classes = score_matrix(table, names)
    correct = success_mask(spec.success, scores)
    n = len(requests)
    if requests.ids is not None:
        where = {v: r for r, v in enumerate(ids)}
        missing = [v for v in requests.ids if v not in where]
        if missing:
            raise DataError(
                f"{spec.path}: no outcome for every model of request id {missing[0]!r} "
                f"({len(missing)} of {n} requests); world.outcomes needs a row per request "
                "id for each model in world.outcomes.models"
            )
        rows = np.array([where[v] for v in requests.ids], dtype=np.int64)
        return {"correct": correct, "outcome_row": rows}
    u = np.empty(n)
    for b, lo, hi in blocks(n):
        u[lo:hi] = generator(suite.seed, _OUTCOME_ROWS, b).random(BLOCK)[: hi - lo]
    if classes is None:
        rows = np.minimum((u * len(ids)).astype(np.int64), len(ids) - 1)
        return {"correct": correct, "outcome_row": rows}
    rows = np.empty(n, dtype=np.int64)
    class_of = np.asarray(classes, dtype=object)
    for c, name in enumerate(requests.class_names):
        pool = np.flatnonzero(class_of == name)
        mine = requests.task_class == c
        if not mine.any():
            continue
        if not len(pool):
            raise DataError(
                f"{spec.path}: no outcome rows of task class {name!r}; add rows of that class "
                "or drop world.outcomes.task_class to draw from every row"
            )
        rows[mine] = pool[np.minimum((u[mine] * len(pool)).astype(np.int64), len(pool) - 1)]
    return {"correct": correct, "outcome_row": rows}


def success_mask(rule: str, scores: np.ndarray) -> np.ndarray:
    """Which scores pass a success rule such as `>= 1.5` (the grammar of `evalx fit quality`)."""
    from harness.data import parse_success

    out: np.ndarray = np.asarray(parse_success(rule)(scores), dtype=bool)
    return out
