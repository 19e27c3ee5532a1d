"""Square Attack (Andriushchenko, Croce, Flammarion, Hein, "Square Attack: a query-efficient black-box
adversarial attack via random search", ECCV 2020): score-based black-box, untargeted, L-inf.

Threat model: black-box; the attacker only queries the model and reads its scores, at most
``max_queries`` times per input, and changes each pixel by at most ``eps``.

Random search over the vertices of the L-inf ball: start from vertical stripes of +-eps, then repeatedly
redraw the perturbation inside one random square window (side shrinking on a fixed schedule) and keep the
change when the margin loss ``z_y - max_{i!=y} z_i`` falls. Needs only the model's scores, so it runs on
any model, and it is immune to gradient masking: a Square Attack that beats PGD is a warning sign.

A self-check at a huge strength (L-inf 0.5: a working attack fools about every input there) also
moves each input toward the nearest evaluation input of another predicted class, as far as the strength
allows (:func:`move_toward_other_class`). A random search at that strength draws noise-like images, and a healthy CNN that maps all
noise to one class keeps that class's inputs correct against every one of them; the move shows that those
inputs are breakable at that strength all the same, so the check judges the evaluation, not the search's
start.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from roadworthy.attacks._inputs import as_scores
from roadworthy.attacks._losses import margins
from roadworthy.attacks._pool import StartPool

ScoresFn = Callable[[np.ndarray], np.ndarray]

__all__ = [
    "SquareResult",
    "margins",
    "move_toward_other_class",
    "p_schedule",
    "square_attack",
    "square_attack_result",
]


def p_schedule(p_init: float, it: int, max_queries: int) -> float:
    """Share of the image covered by the square at iteration ``it`` (the paper's schedule, rescaled to 10,000)."""
    i = int(it / max(1, max_queries) * 10000)
    for bound, div in (
        (8000, 512),
        (6000, 256),
        (4000, 128),
        (2000, 64),
        (1000, 32),
        (500, 16),
        (200, 8),
        (50, 4),
        (10, 2),
    ):
        if i > bound:
            return p_init / div
    return p_init


@dataclass(frozen=True)
class SquareResult:
    """What :func:`square_attack_result` found, per input.

    Attributes
    ----------
    x_adv
        The inputs with the lowest margin found (misclassified where the attack succeeded).
    queries
        Model queries spent per input.
    margins
        ``z_y - max_{i!=y} z_i`` of ``x_adv`` as the attack last saw it: negative where the attack counted
        the input as fooled. A model whose answers change between calls may answer otherwise when asked
        again.
    """

    x_adv: np.ndarray
    queries: np.ndarray
    margins: np.ndarray


def square_attack(
    scores: ScoresFn | Any,
    x: np.ndarray,
    y: np.ndarray,
    eps: float,
    max_queries: int = 1000,
    p_init: float = 0.8,
    rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Untargeted L-inf Square Attack; ``(x_adv, queries)`` of :func:`square_attack_result`."""
    r = square_attack_result(scores, x, y, eps, max_queries, p_init, rng)
    return r.x_adv, r.queries


def square_attack_result(
    scores: ScoresFn | Any,
    x: np.ndarray,
    y: np.ndarray,
    eps: float,
    max_queries: int = 1000,
    p_init: float = 0.8,
    rng: np.random.Generator | None = None,
) -> SquareResult:
    """Untargeted L-inf Square Attack on images ``x`` (NCHW in [0, 1]) with labels ``y``.

    Parameters
    ----------
    scores
        ``scores(x) -> (N, K)`` logits (or log-probabilities); only these are used, no gradients. A
        roadworthy model works too (its ``predict``, as logits).
    eps
        L-inf budget in pixel units.
    max_queries
        Model queries allowed per input, the initialisation included; never exceeded.
    p_init
        Initial share of the image the square covers.

    Returns
    -------
    SquareResult
        Adversarial inputs (misclassified where the attack succeeded, inside the ball and [0, 1]), the
        number of queries spent on each input and the margins the attack last saw.
    """
    if not 0 < eps <= 1:
        raise ValueError(f"`eps` must be in (0, 1]. Got {eps} instead.")
    if max_queries < 1:
        raise ValueError(f"`max_queries` must be >= 1. Got {max_queries} instead.")
    rng = rng or np.random.default_rng(0)
    scores = as_scores(scores, "logits")
    x = np.asarray(x, np.float32)
    n, c, h, w = x.shape
    if n == 0:
        return SquareResult(x.copy(), np.zeros(0), np.zeros(0))
    x_adv = np.clip(x + eps * rng.choice([-1.0, 1.0], size=(n, c, 1, w)).astype(np.float32), 0, 1)
    margin = margins(scores(x_adv), y)
    queries = np.ones(n)
    for it in range(1, max_queries):
        act = np.flatnonzero(margin > 0)
        if len(act) == 0:
            break
        side = round(math.sqrt(p_schedule(p_init, it, max_queries) * h * w))
        side = min(max(side, 1), h - 1 if h > 1 else 1, w - 1 if w > 1 else 1)
        m = len(act)
        r0 = rng.integers(0, h - side + 1, size=m)
        c0 = rng.integers(0, w - side + 1, size=m)
        signs = rng.choice([-1.0, 1.0], size=(m, c, 1, 1)).astype(np.float32)
        rows = r0[:, None] + np.arange(side)
        cols = c0[:, None] + np.arange(side)
        ii = np.arange(m)[:, None, None, None]
        cc = np.arange(c)[None, :, None, None]
        rr = rows[:, None, :, None]
        ww = cols[:, None, None, :]
        cand = x_adv[act].copy()
        window = x[act][ii, cc, rr, ww]
        cand[ii, cc, rr, ww] = np.clip(window + eps * signs, 0, 1)
        new_margin = margins(scores(cand), y[act])
        queries[act] += 1
        better = new_margin < margin[act]
        x_adv[act[better]] = cand[better]
        margin[act[better]] = new_margin[better]
    return SquareResult(x_adv, queries, margin)


def move_toward_other_class(
    scores: ScoresFn | Any,
    x: np.ndarray,
    y: np.ndarray,
    pool: StartPool,
    eps: float,
    tries: int = 3,
) -> tuple[np.ndarray, np.ndarray]:
    """Move each input toward its nearest pool inputs of another predicted class, inside the L-inf ball.

    Each try clips ``x_other - x`` to ``[-eps, eps]`` for the next nearest (L2) pool input ``x_other``
    labelled other than ``y`` and asks the model once; an input stops at its first misclassified move. At
    a strength near 0.5 the moved input is close to ``x_other``, which the model puts in another class.

    Parameters
    ----------
    scores
        ``scores(x) -> (N, K)`` logits; only their argmax is used.
    x, y
        Inputs in [0, 1] and their labels.
    pool
        The evaluation inputs to move toward, with the class the model predicts for each.
    eps
        L-inf strength.
    tries
        Pool inputs tried per input, nearest first (one query each).

    Returns
    -------
    (x_moved, fooled)
        The last move tried per input (the first one that fooled the model where one did; the input itself
        where the pool has no input of another class) and whether it fooled the model.
    """
    scores = as_scores(scores, "logits")
    x = np.asarray(x, np.float32)
    moved = x.copy()
    fooled = np.zeros(len(x), bool)
    cand = pool.nearest_other(x, y, tries)
    for t in range(cand.shape[1]):
        todo = np.flatnonzero(~fooled & (cand[:, t] >= 0))
        if len(todo) == 0:
            break
        other = np.asarray(pool.x[cand[todo, t]], np.float32)
        trial = np.clip(x[todo] + np.clip(other - x[todo], -eps, eps), 0, 1).astype(np.float32)
        moved[todo] = trial
        fooled[todo] = np.asarray(scores(trial)).argmax(axis=1) != y[todo]
    return moved, fooled
