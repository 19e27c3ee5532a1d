"""HopSkipJump (Chen, Jordan, Wainwright, "HopSkipJumpAttack: a query-efficient decision-based attack",
IEEE S&P 2020): decision-based black-box, untargeted, L2.

Threat model: black-box; the attacker sees only the predicted label, at most ``max_queries`` times per
input, and (with a :class:`StartPool`) holds inputs like the evaluation data.

Needs only the model's top label. It starts from a misclassified input, pulled towards the original by
binary search, then repeats: binary search to the decision boundary, estimate the boundary's normal from
the labels of random probes around that point, step along it (geometric step search), and search back to
the boundary. The distance to the original shrinks each iteration.

The start is the nearest evaluation input that the model puts in another class (the paper's targeted
initialisation, used untargeted); uniform noise, the reference implementation's untargeted start, is the
last resort, because a healthy CNN often maps all noise to one class and so gives the inputs of that class
no start. ``HSJResult.start`` says where each start came from (``"none"``: no start was found).

An "always succeeds" attack: it returns a distance per input, and robustness is read off at a stated
budget (the share of inputs whose distance exceeds it). All samples are attacked in lock-step so that each step is one batched model call.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from roadworthy.attacks._inputs import as_labels
from roadworthy.attacks._pool import StartPool

__all__ = ["START_KINDS", "HSJResult", "StartPool", "hop_skip_jump", "hop_skip_jump_result"]

LabelsFn = Callable[[np.ndarray], np.ndarray]

#: At most this many probe images are built in memory at once (per chunk of inputs).
_MAX_PROBES = 16384
_PROBE_BYTES = 64 * 2**20  #: probes of one large input drawn and asked at once (bytes)
#: Where a start came from: a real input of another class, uniform noise, or nowhere.
START_KINDS = ("input", "noise", "none")


class _Oracle:
    """Counts queries per input and answers "is this input misclassified?"."""

    def __init__(self, labels: LabelsFn, y: np.ndarray) -> None:
        self.labels = labels
        self.y = y
        self.queries = np.zeros(len(y))

    def adversarial(self, x: np.ndarray, rows: np.ndarray) -> np.ndarray:
        if len(rows) == 0:
            return np.zeros(0, bool)
        np.add.at(self.queries, rows, 1)
        return self.labels(x) != self.y[rows]


def _l2(d: np.ndarray) -> np.ndarray:
    return np.sqrt((d.reshape(len(d), int(np.prod(d.shape[1:]))).astype(np.float64) ** 2).sum(axis=1))


def _blend(x0: np.ndarray, x1: np.ndarray, a: np.ndarray) -> np.ndarray:
    return ((1 - a).reshape(-1, *[1] * (x0.ndim - 1)) * x0 + a.reshape(-1, *[1] * (x0.ndim - 1)) * x1).astype(
        np.float32
    )


def _boundary_search(
    oracle: _Oracle,
    rows: np.ndarray,
    x0: np.ndarray,
    x_adv: np.ndarray,
    theta: float,
    max_queries: float = math.inf,
) -> np.ndarray:
    """Binary search on the segment ``x0 -> x_adv`` for the adversarial point nearest ``x0`` (to ``theta``).

    A row stops early, coarser but still adversarial, when its queries reach ``max_queries``.
    """
    lo = np.zeros(len(rows))
    hi = np.ones(len(rows))
    while True:
        todo = np.flatnonzero((hi - lo > theta) & (oracle.queries[rows] < max_queries))
        if len(todo) == 0:
            break
        mid = (lo[todo] + hi[todo]) / 2
        adv = oracle.adversarial(_blend(x0[todo], x_adv[todo], mid), rows[todo])
        hi[todo[adv]] = mid[adv]
        lo[todo[~adv]] = mid[~adv]
    return _blend(x0, x_adv, hi)


def _initialise(
    oracle: _Oracle,
    x0: np.ndarray,
    y: np.ndarray,
    pool: StartPool | None,
    rng: np.random.Generator,
    tries: int,
) -> tuple[np.ndarray, np.ndarray]:
    """A misclassified start per input: ``(x_start, kind)``, ``kind`` one of :data:`START_KINDS`.

    Each round tries, for every input still without a start, its next nearest pool input of another class,
    and uniform noise once those run out (or when there is no pool), up to ``tries`` rounds. A pool input
    is checked with the model like noise is, so a model whose labels change between calls cannot hand the
    attack a start that is not misclassified.
    """
    n = len(x0)
    start = x0.copy()
    kind = np.full(n, "none", dtype="<U5")
    cand = pool.nearest_other(x0, y, tries) if pool is not None else np.full((n, 0), -1, np.int64)
    for t in range(tries):
        todo = np.flatnonzero(kind == "none")
        if len(todo) == 0:
            break
        real = cand[todo, t] if t < cand.shape[1] else np.full(len(todo), -1, np.int64)
        has = real >= 0
        trial = np.empty((len(todo), *x0.shape[1:]), np.float32)
        if has.any():
            trial[has] = np.asarray(pool.x[real[has]], np.float32)  # type: ignore[union-attr]
        if not has.all():
            trial[~has] = rng.uniform(0, 1, size=(int((~has).sum()), *x0.shape[1:]))
        adv = oracle.adversarial(trial, todo)
        start[todo[adv]] = trial[adv]
        kind[todo[adv]] = np.where(has[adv], "input", "noise")
    return start, kind


@dataclass(frozen=True)
class HSJResult:
    """What :func:`hop_skip_jump_result` found, per input.

    Attributes
    ----------
    x_adv
        Adversarial inputs (the original where no start was found).
    distances
        Their L2 distance to the original (``inf`` where no start was found).
    queries
        Model queries spent per input.
    start
        Where each start came from: ``"input"`` (a real input of another class), ``"noise"``, ``"none"``.
    start_distances
        L2 distance of the first boundary point, found by binary search between the input and its start
        (``inf`` where none): what the iterations shrink to ``distances``.
    """

    x_adv: np.ndarray
    distances: np.ndarray
    queries: np.ndarray
    start: np.ndarray
    start_distances: np.ndarray


def hop_skip_jump(
    labels: LabelsFn | Any,
    x: np.ndarray,
    y: np.ndarray,
    max_queries: int = 1000,
    init_evals: int = 100,
    max_evals: int = 10000,
    gamma: float = 1.0,
    init_tries: int = 100,
    rng: np.random.Generator | None = None,
    pool: StartPool | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Untargeted L2 HopSkipJump; ``(x_adv, distances, queries)`` of :func:`hop_skip_jump_result`."""
    r = hop_skip_jump_result(labels, x, y, max_queries, init_evals, max_evals, gamma, init_tries, rng, pool)
    return r.x_adv, r.distances, r.queries


def hop_skip_jump_result(
    labels: LabelsFn | Any,
    x: np.ndarray,
    y: np.ndarray,
    max_queries: int = 1000,
    init_evals: int = 100,
    max_evals: int = 10000,
    gamma: float = 1.0,
    init_tries: int = 100,
    rng: np.random.Generator | None = None,
    pool: StartPool | None = None,
) -> HSJResult:
    """Untargeted L2 HopSkipJump on inputs ``x`` (in [0, 1]) correctly labelled ``y``.

    Parameters
    ----------
    labels
        ``labels(x) -> (N,)`` predicted classes: the only access to the model. A roadworthy model works
        too (the top class of its ``predict``).
    max_queries
        Model queries allowed per input (initialisation included); never exceeded.
    init_evals, max_evals
        Probes for the first gradient estimate (grows as ``init_evals * sqrt(t)``) and their cap.
    gamma
        Binary-search precision ``theta = gamma / d^{3/2}`` (``d`` = input size).
    init_tries
        Candidate starts tried per input (capped at a quarter of ``max_queries``), one query each.
    pool
        Real inputs to start from, nearest of another class first; uniform noise only where the pool has
        none left (or without a pool, as the reference implementation does).

    Returns
    -------
    HSJResult
        Adversarial inputs, their distances, the queries spent and where each start came from.
    """
    if max_queries < 1:
        raise ValueError(f"`max_queries` must be >= 1. Got {max_queries} instead.")
    rng = rng or np.random.default_rng(0)
    labels = as_labels(labels)
    x = np.asarray(x, np.float32)
    y = np.asarray(y)
    d = int(np.prod(x.shape[1:]))
    theta = gamma / (d * math.sqrt(d))
    bs_steps = math.ceil(math.log2(1 / theta))
    oracle = _Oracle(labels, y)
    start, kind = _initialise(oracle, x, y, pool, rng, min(init_tries, max(1, max_queries // 4)))
    ok = kind != "none"
    rows = np.flatnonzero(ok)
    cur = x.copy()
    if len(rows):
        cur[rows] = _boundary_search(oracle, rows, x[rows], start[rows], theta, max_queries)
    dist = np.where(ok, _l2(cur - x), np.inf)
    start_dist = dist.copy()
    t = 0
    while True:
        t += 1
        n_evals = int(min(init_evals * math.sqrt(t), max_evals))
        # An iteration costs the probes, up to ~10 step halvings and a binary search.
        room = max_queries - oracle.queries
        n_evals_each = np.minimum(n_evals, room - bs_steps - 12)
        act = np.flatnonzero(ok & (n_evals_each >= 10))
        if len(act) == 0:
            break
        n_ev = int(n_evals_each[act].min())
        delta = np.where(t == 1, 0.1, math.sqrt(d) * theta * dist[act])
        grad = _estimate_gradient(oracle, act, cur[act], n_ev, delta, rng)
        # Geometric step search: start at dist/sqrt(t) and halve until still adversarial.
        xi = dist[act] / math.sqrt(t)
        cand = cur[act].copy()
        todo = np.arange(len(act))
        for _ in range(12):
            if len(todo) == 0:
                break
            trial = np.clip(cur[act[todo]] + xi[todo].reshape(-1, *[1] * (x.ndim - 1)) * grad[todo], 0, 1)
            adv = oracle.adversarial(trial.astype(np.float32), act[todo])
            cand[todo[adv]] = trial[adv]
            xi[todo[~adv]] /= 2
            todo = todo[~adv]
        moved = np.setdiff1d(np.arange(len(act)), todo)
        if len(moved):
            rows = act[moved]
            new = _boundary_search(oracle, rows, x[rows], cand[moved], theta)
            new_dist = _l2(new - x[rows])
            better = new_dist < dist[rows]
            cur[rows[better]] = new[better]
            dist[rows[better]] = new_dist[better]
    return HSJResult(cur, dist, oracle.queries, kind, start_dist)


def _estimate_one(
    oracle: _Oracle, row: int, x_b: np.ndarray, n_evals: int, delta: float, rng: np.random.Generator
) -> np.ndarray:
    """:func:`_estimate_gradient` for one input, its ``n_evals`` probes drawn and asked in blocks of
    at most ``_PROBE_BYTES``: the same estimate (mean of ``(f - mean f) u``, written as
    ``mean(f u) - mean(f) mean(u)``) without holding every probe of a 224 px input at once."""
    shape, d = x_b.shape, x_b.size
    base = x_b.reshape(1, d)
    block = max(1, _PROBE_BYTES // (d * 4))
    sum_f, sum_fu, sum_u = 0.0, np.zeros(d, np.float64), np.zeros(d, np.float64)
    for start in range(0, n_evals, block):
        k = min(block, n_evals - start)
        u = rng.standard_normal((k, d), dtype=np.float32)
        u /= np.linalg.norm(u, axis=1, keepdims=True) + 1e-12
        probes = np.clip(base + delta * u, 0, 1).astype(np.float32)
        u = (probes - base) / delta
        adv = oracle.adversarial(probes.reshape(k, *shape), np.full(k, row))
        f = np.where(adv, 1.0, -1.0)
        sum_f += float(f.sum())
        sum_fu += f @ u
        sum_u += u.sum(axis=0)
    mean_f = sum_f / n_evals
    g = sum_fu / n_evals if abs(mean_f) == 1.0 else (sum_fu - mean_f * sum_u) / n_evals
    g /= np.linalg.norm(g) + 1e-12
    return g.reshape(shape).astype(np.float32)


def _estimate_gradient(
    oracle: _Oracle,
    rows: np.ndarray,
    x_b: np.ndarray,
    n_evals: int,
    delta: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """Monte-Carlo estimate of the boundary normal at ``x_b`` from the labels of ``n_evals`` probes each."""
    shape = x_b.shape[1:]
    d = int(np.prod(shape))
    out = np.zeros_like(x_b, dtype=np.float32)
    chunk = max(1, _MAX_PROBES // max(1, n_evals) // max(1, d // 1024 + 1))
    for s in range(0, len(rows), chunk):
        sl = slice(s, s + chunk)
        m = len(rows[sl])
        if m == 1 and n_evals * d * 4 > _PROBE_BYTES:  # a large input: its probes in blocks
            dl1 = float(np.asarray(delta, np.float64)[sl][0]) if np.ndim(delta) else float(delta)
            out[sl] = _estimate_one(oracle, int(rows[sl][0]), x_b[sl][0], n_evals, dl1, rng)
            continue
        u = rng.standard_normal((m, n_evals, d), dtype=np.float32)
        u /= np.linalg.norm(u, axis=2, keepdims=True) + 1e-12
        base = x_b[sl].reshape(m, 1, d)
        dl = np.asarray(delta, np.float64)[sl].reshape(m, 1, 1) if np.ndim(delta) else float(delta)
        probes = np.clip(base + dl * u, 0, 1).astype(np.float32)
        u = (probes - base) / dl
        adv = oracle.adversarial(probes.reshape(m * n_evals, *shape), np.repeat(rows[sl], n_evals))
        f = np.where(adv.reshape(m, n_evals), 1.0, -1.0)
        mean_f = f.mean(axis=1, keepdims=True)
        # Baseline subtraction lowers the variance, except when every probe agrees.
        f = np.where(np.abs(mean_f) == 1.0, f, f - mean_f)
        g = (f[:, :, None] * u).mean(axis=1)
        g /= np.linalg.norm(g, axis=1, keepdims=True) + 1e-12
        out[sl] = g.reshape(m, *shape)
    return out
