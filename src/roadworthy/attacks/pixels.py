"""Sparse black-box attacks: a few changed pixels, and one changed row or column segment.

Threat model: score-based black-box; the attacker reads the model's probabilities and changes ``k``
pixels to any colour (an L0 budget), or one segment of ``L`` pixels in one row or column to one colour.

Both search with differential evolution (Storn & Price 1997) on the model's scores only, as in the
one-pixel attack of Su, Vargas and Sakurai (IEEE TEVC 2019): each candidate encodes where the change is
and what colour it has; a child ``a + F (b - c)`` of three random members replaces its parent when it lowers
the probability margin ``p_y - max_{i!=y} p_i``; an input is done as soon as one candidate is misclassified.
All inputs and population members are evaluated in batched model calls of at most 64 MiB of images
per generation.

The line attack is our own design (algorithms-spec D.2): "a row of modified pixels" from the brief.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from roadworthy.attacks._inputs import as_scores
from roadworthy.attacks._losses import margins

ProbsFn = Callable[[np.ndarray], np.ndarray]
#: largest block of rendered candidate images sent to the model at once (bytes)
EVAL_BYTES = 64 * 2**20
Renderer = Callable[[np.ndarray, np.ndarray], np.ndarray]


def differential_evolution(
    probs: ProbsFn,
    x: np.ndarray,
    y: np.ndarray,
    render: Renderer,
    lower: np.ndarray,
    upper: np.ndarray,
    init: np.ndarray,
    generations: int,
    f: float = 0.5,
    crossover: float = 1.0,
    rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Minimise the probability margin of each input over candidate perturbations by DE/rand/1/bin.

    Parameters
    ----------
    render
        ``render(x_rows, params) -> images``: applies one candidate (a row of ``params``) to one input.
    lower, upper
        Bounds of each parameter; candidates are clipped to them.
    init
        Initial population ``(n_inputs, popsize, dim)``.
    crossover
        Binomial crossover rate (1.0: the child is the mutant, as in the one-pixel attack).

    Returns
    -------
    (best_params, success, queries)
        Per input the best candidate, whether it is misclassified, and the queries spent.
    """
    rng = rng or np.random.default_rng(0)
    n, pop, dim = init.shape
    params = np.clip(init, lower, upper)

    # inputs per model call: their rendered candidates stay within EVAL_BYTES (a 224 px population of
    # 30 for 32 inputs would be 580 MB of images at once)
    per_input = pop * int(np.prod(x.shape[1:])) * 4
    chunk = max(1, EVAL_BYTES // max(1, per_input))

    def evaluate(rows: np.ndarray, cand: np.ndarray) -> np.ndarray:
        out = np.empty((len(rows), pop))
        for s in range(0, len(rows), chunk):
            r, c = rows[s : s + chunk], cand[s : s + chunk]
            imgs = render(np.repeat(x[r], pop, axis=0), c.reshape(-1, dim))
            out[s : s + chunk] = margins(probs(imgs), np.repeat(y[r], pop)).reshape(len(r), pop)
        return out

    all_rows = np.arange(n)
    fitness = evaluate(all_rows, params)
    queries = np.full(n, float(pop))
    for _ in range(generations):
        act = np.flatnonzero(fitness.min(axis=1) >= 0)
        if len(act) == 0:
            break
        keys = rng.random((len(act), pop, pop))
        keys[:, np.arange(pop), np.arange(pop)] = np.inf  # a member is never its own donor
        donors = np.argsort(keys, axis=2)[:, :, :3]
        p = params[act]
        ii = np.arange(len(act))[:, None]
        mutant = p[ii, donors[:, :, 0]] + f * (p[ii, donors[:, :, 1]] - p[ii, donors[:, :, 2]])
        mutant = np.clip(mutant, lower, upper)
        if crossover < 1.0:
            mask = rng.random(mutant.shape) < crossover
            mask[
                np.arange(len(act))[:, None], np.arange(pop)[None, :], rng.integers(0, dim, (len(act), pop))
            ] = True
            mutant = np.where(mask, mutant, p)
        child_fit = evaluate(act, mutant)
        queries[act] += pop
        better = child_fit < fitness[act]
        p[better] = mutant[better]
        params[act] = p
        fitness[act] = np.where(better, child_fit, fitness[act])
    best = params[np.arange(n), fitness.argmin(axis=1)]
    return best, fitness.min(axis=1) < 0, queries


def render_pixels(x: np.ndarray, params: np.ndarray) -> np.ndarray:
    """Set ``k`` pixels per image: ``params`` rows are ``k`` groups of ``(row, col, value per channel)``."""
    out = x.copy()
    m, c, h, w = x.shape
    k = params.shape[1] // (2 + c)
    g = params.reshape(m, k, 2 + c)
    rows = np.clip(np.floor(g[:, :, 0]), 0, h - 1).astype(int)
    cols = np.clip(np.floor(g[:, :, 1]), 0, w - 1).astype(int)
    vals = np.clip(g[:, :, 2:], 0, 1).astype(np.float32)
    ii = np.arange(m)
    for j in range(k):
        out[ii, :, rows[:, j], cols[:, j]] = vals[:, j, :]
    return out


def render_line(length: int) -> Renderer:
    """Renderer of one segment of ``length`` pixels in one row or column, in one colour.

    Parameters per candidate: orientation in [0, 2) (row below 1), line position and segment start as
    fractions in [0, 1), then one value per channel.
    """

    def render(x: np.ndarray, params: np.ndarray) -> np.ndarray:
        out = x.copy()
        m, c, h, w = x.shape
        is_row = params[:, 0] < 1.0
        span = np.where(is_row, w, h)
        seg = np.minimum(length, span)
        line = np.floor(np.clip(params[:, 1], 0, 0.999999) * np.where(is_row, h, w)).astype(int)
        start = np.floor(np.clip(params[:, 2], 0, 0.999999) * (span - seg + 1)).astype(int)
        steps = np.minimum(np.arange(length)[None, :], seg[:, None] - 1)
        along = start[:, None] + steps
        rows = np.where(is_row[:, None], line[:, None], along)
        cols = np.where(is_row[:, None], along, line[:, None])
        colour = np.clip(params[:, 3 : 3 + c], 0, 1).astype(np.float32)
        out[np.arange(m)[:, None], :, rows, cols] = colour[:, None, :]
        return out

    return render


def pixel_bounds(k: int, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Bounds of ``k`` groups of ``(row, col, value per channel)`` for images of ``shape`` (C, H, W)."""
    c, h, w = shape
    lower = np.tile(np.r_[0.0, 0.0, np.zeros(c)], k)
    upper = np.tile(np.r_[h - 1e-6, w - 1e-6, np.ones(c)], k)
    return lower, upper


def pixel_population(
    rng: np.random.Generator, n: int, popsize: int, lower: np.ndarray, upper: np.ndarray, c: int
) -> np.ndarray:
    """Initial few-pixel candidates: uniform places, colours around mid-grey (the paper draws N(128, 127))."""
    init = rng.uniform(lower, upper, size=(n, popsize, len(lower)))
    g = init.reshape(n, popsize, -1, 2 + c)
    g[..., 2:] = np.clip(rng.normal(0.5, 0.5, size=g[..., 2:].shape), 0, 1)
    return g.reshape(init.shape)


def line_bounds(c: int) -> tuple[np.ndarray, np.ndarray]:
    """Bounds of a line candidate: orientation in [0, 2), position and start in [0, 1), one value per channel."""
    lower = np.r_[0.0, 0.0, 0.0, np.zeros(c)]
    upper = np.r_[2.0 - 1e-6, 1.0 - 1e-6, 1.0 - 1e-6, np.ones(c)]
    return lower, upper


def few_pixel(
    probs: ProbsFn | Any,
    x: np.ndarray,
    y: np.ndarray,
    pixels: int = 1,
    popsize: int = 40,
    generations: int = 25,
    f: float = 0.5,
    rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Few-pixel attack (Su, Vargas, Sakurai, IEEE TEVC 2019): set ``pixels`` pixels of each image by DE.

    Parameters
    ----------
    probs
        ``probs(x) -> (N, K)`` probabilities, or a roadworthy model.
    x, y
        Images NCHW float32 in [0, 1] and their labels.

    Returns
    -------
    (x_adv, success, queries)
        The best changed images, whether each is misclassified, and the queries spent per image.
    """
    rng = rng or np.random.default_rng(0)
    lower, upper = pixel_bounds(pixels, x.shape[1:])
    init = pixel_population(rng, len(x), popsize, lower, upper, x.shape[1])
    best, success, queries = differential_evolution(
        as_scores(probs, "probs"), x, y, render_pixels, lower, upper, init, generations, f, 1.0, rng
    )
    return render_pixels(x, best), success, queries


def line_attack(
    probs: ProbsFn | Any,
    x: np.ndarray,
    y: np.ndarray,
    length: int = 8,
    popsize: int = 40,
    generations: int = 25,
    f: float = 0.5,
    crossover: float = 0.9,
    rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Line attack: one row or column segment of ``length`` pixels in one colour per image, by DE.

    Returns ``(x_adv, success, queries)`` like :func:`few_pixel`.
    """
    rng = rng or np.random.default_rng(0)
    lower, upper = line_bounds(x.shape[1])
    init = rng.uniform(lower, upper, size=(len(x), popsize, len(lower)))
    render = render_line(length)
    best, success, queries = differential_evolution(
        as_scores(probs, "probs"), x, y, render, lower, upper, init, generations, f, crossover, rng
    )
    return render(x, best), success, queries
