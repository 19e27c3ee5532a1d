"""Adversarial Laser Beam (AdvLB; Duan et al., "Adversarial Laser Beam: effective physical-world attack
to DNNs in a blink", CVPR 2021): a physically plausible black-box attack.

Threat model: score-based black-box; the attacker chooses the beam's wavelength (380-750 nm), angle,
position, width and intensity and reads the model's probabilities, at most
``restarts * (2 * iterations + 1)`` queries per input. Simulated digitally.

A beam of coloured light is added to the image. Its five parameters (wavelength, angle, offset from the
centre, width, intensity; algorithms-spec C.1) are searched with the paper's k-restart greedy search using
only the model's probabilities: move one or two parameters by a random step, keep the move when the
true-class probability falls, stop as soon as the prediction changes.

Rendering (spec C.3, our design): light ``= alpha * rgb(lambda) * g(d)`` with ``d`` the distance of a pixel
to the beam's centre line, ``g = 1`` inside half the width and ``(w / 2d)^2`` up to ``5w``; the image becomes
``clip(x + light, 0, 1)``. Grey images receive the light's luminance.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from itertools import combinations
from typing import Any

import numpy as np

from roadworthy.attacks._inputs import as_scores

ProbsFn = Callable[[np.ndarray], np.ndarray]
PARAMS = ("wavelength", "angle", "offset", "width", "intensity")
#: The search moves one parameter or a pair of them: 5 singles + 10 pairs.
MASKS = np.array(
    [[1.0 if i == j else 0.0 for i in range(5)] for j in range(5)]
    + [[1.0 if i in pair else 0.0 for i in range(5)] for pair in combinations(range(5), 2)]
)


def wavelength_to_rgb(lam: np.ndarray, gamma: float = 0.8) -> np.ndarray:
    """Visible wavelength (nm) to RGB in [0, 1] with the usual piecewise-linear map and gamma 0.8 (spec C.2)."""
    lam = np.asarray(lam, np.float64)
    r, g, b = np.zeros_like(lam), np.zeros_like(lam), np.zeros_like(lam)
    m = (lam >= 380) & (lam < 440)
    a = 0.3 + 0.7 * (lam - 380) / 60
    r = np.where(m, (np.clip(a * (440 - lam) / 60, 0, None)) ** gamma, r)
    b = np.where(m, np.clip(a, 0, None) ** gamma, b)
    m = (lam >= 440) & (lam < 490)
    g = np.where(m, np.clip((lam - 440) / 50, 0, None) ** gamma, g)
    b = np.where(m, 1.0, b)
    m = (lam >= 490) & (lam < 510)
    g = np.where(m, 1.0, g)
    b = np.where(m, np.clip((510 - lam) / 20, 0, None) ** gamma, b)
    m = (lam >= 510) & (lam < 580)
    r = np.where(m, np.clip((lam - 510) / 70, 0, None) ** gamma, r)
    g = np.where(m, 1.0, g)
    m = (lam >= 580) & (lam < 645)
    r = np.where(m, 1.0, r)
    g = np.where(m, np.clip((645 - lam) / 65, 0, None) ** gamma, g)
    m = (lam >= 645) & (lam <= 750)
    a = 0.3 + 0.7 * (750 - lam) / 105
    r = np.where(m, np.clip(a, 0, None) ** gamma, r)
    return np.stack([r, g, b], axis=-1)


def laser_bounds(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper bounds of (wavelength nm, angle rad, offset px, width px, intensity) for an h x w image."""
    diag = math.hypot(h, w)
    lower = np.array([380.0, 0.0, -diag / 2, 1.0, 0.2])
    upper = np.array([750.0, math.pi, diag / 2, max(2.0, min(h, w) / 10), 1.0])
    return lower, upper


def render_laser(x: np.ndarray, params: np.ndarray) -> np.ndarray:
    """Add one beam per image: ``params`` rows are (wavelength, angle, offset, width, intensity)."""
    _m, c, h, w = x.shape
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    ys -= (h - 1) / 2
    xs -= (w - 1) / 2
    _lam, theta, rho, width, alpha = (params[:, i][:, None, None] for i in range(5))
    d = np.abs(xs[None] * np.cos(theta) + ys[None] * np.sin(theta) - rho)
    half = width / 2
    falloff = np.where(d <= half, 1.0, np.where(d <= 5 * width, (half / np.maximum(d, 1e-9)) ** 2, 0.0))
    rgb = wavelength_to_rgb(params[:, 0])  # (m, 3)
    if c == 1:
        rgb = (rgb @ np.array([0.299, 0.587, 0.114]))[:, None]
    elif c != 3:
        rgb = np.repeat(rgb.mean(axis=1, keepdims=True), c, axis=1)
    light = alpha[:, None] * rgb[:, :, None, None] * falloff[:, None]
    return np.clip(x + light, 0, 1).astype(np.float32)


def laser_attack(
    probs: ProbsFn | Any,
    x: np.ndarray,
    y: np.ndarray,
    restarts: int = 5,
    iterations: int = 200,
    max_step: float = 0.2,
    rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """k-restart greedy search for a misclassifying laser beam (AdvLB Algorithm 1, spec C.4), per input.

    Each iteration moves one of :data:`MASKS` by ``U(0, max_step)`` of each moved parameter's range in
    both directions (2 queries) and keeps the better move if it lowers the true-class probability.

    Returns
    -------
    (params, success, queries)
        The best beam per input, whether it changes the prediction, and the queries spent.
    """
    rng = rng or np.random.default_rng(0)
    probs = as_scores(probs, "probs")
    n, _, h, w = x.shape
    lower, upper = laser_bounds(h, w)
    span = upper - lower
    best = np.zeros((n, 5))
    best_p = np.full(n, np.inf)
    success = np.zeros(n, bool)
    queries = np.zeros(n)

    def evaluate(rows: np.ndarray, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        pr = probs(render_laser(x[rows], theta))
        queries[rows] += 1
        return pr[np.arange(len(rows)), y[rows]], pr.argmax(axis=1) != y[rows]

    for _ in range(restarts):
        act = np.flatnonzero(~success)
        if len(act) == 0:
            break
        theta = rng.uniform(lower, upper, size=(len(act), 5))
        cur, fooled = evaluate(act, theta)
        _record(best, best_p, success, act, theta, cur, fooled)
        for _ in range(iterations):
            keep = ~success[act]
            act, theta, cur = act[keep], theta[keep], cur[keep]
            if len(act) == 0:
                break
            mask = MASKS[rng.integers(0, len(MASKS), size=len(act))]
            step = rng.uniform(0, max_step, size=(len(act), 5)) * span * mask
            plus = np.clip(theta + step, lower, upper)
            minus = np.clip(theta - step, lower, upper)
            p_plus, f_plus = evaluate(act, plus)
            p_minus, f_minus = evaluate(act, minus)
            take_plus = (p_plus < cur) | f_plus
            take_minus = ~take_plus & ((p_minus < cur) | f_minus)
            theta = np.where(take_plus[:, None], plus, np.where(take_minus[:, None], minus, theta))
            cur = np.where(take_plus, p_plus, np.where(take_minus, p_minus, cur))
            fooled = np.where(take_plus, f_plus, take_minus & f_minus)
            _record(best, best_p, success, act, theta, cur, fooled)
    return best, success, queries


def _record(best, best_p, success, rows, theta, p, fooled) -> None:  # type: ignore[no-untyped-def]
    better = (p < best_p[rows]) | fooled
    better &= ~success[rows]
    best[rows[better]] = theta[better]
    best_p[rows[better]] = p[better]
    success[rows[fooled]] = True
