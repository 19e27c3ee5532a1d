"""Calibration maths: negative log-likelihood, Brier score, and temperature scaling.

A model that says "90% sure" should be right nine times in ten. Guo et al. ("On Calibration of Modern
Neural Networks", ICML 2017) show modern networks are over-confident and that one scalar *temperature*
``T`` dividing the logits, fitted by minimising the negative log-likelihood on held-out data, repairs
most of it without changing a single prediction. The expected calibration error and reliability bins
are in :mod:`roadworthy.stats`. Use::

    from roadworthy.uncertainty.calibration import cross_fitted_probs, fit_temperature, scaled_probs

    t = fit_temperature(val_logits, val_y)            # > 1: the model is over-confident
    probs = scaled_probs(test_logits, t)
"""

from __future__ import annotations

import math

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import logsumexp

from roadworthy.errors import InvalidInputError
from roadworthy.stats import softmax


def nll(logits: np.ndarray, y: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of labels ``y`` under ``softmax(logits / temperature)``."""
    z = np.asarray(logits, np.float64) / temperature
    return float(np.mean(logsumexp(z, axis=1) - z[np.arange(len(y)), y]))


def brier_score(probs: np.ndarray, y: np.ndarray) -> float:
    """Mean over samples of ``sum_k (p_k - [y == k])^2`` (Brier 1950): 0 is perfect, 2 the worst."""
    p = np.asarray(probs, np.float64)
    onehot = np.zeros_like(p)
    onehot[np.arange(len(y)), y] = 1.0
    return float(np.mean(((p - onehot) ** 2).sum(axis=1)))


def fit_temperature(logits: np.ndarray, y: np.ndarray, bounds: tuple[float, float] = (0.01, 100.0)) -> float:
    """The temperature minimising :func:`nll` on ``(logits, y)`` (Guo et al. 2017), searched in log space.

    ``T > 1`` softens an over-confident model, ``T < 1`` sharpens an under-confident one; the argmax,
    hence accuracy, is unchanged.
    """
    if len(y) == 0:
        raise InvalidInputError("cannot fit a temperature on zero samples")
    z = np.asarray(logits, np.float64)
    res = minimize_scalar(
        lambda log_t: nll(z, y, math.exp(log_t)),
        bounds=(math.log(bounds[0]), math.log(bounds[1])),
        method="bounded",
        options={"xatol": 1e-4},
    )
    return float(math.exp(res.x))


def scaled_probs(logits: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(logits / temperature)``."""
    return softmax(np.asarray(logits, np.float64) / temperature, axis=1)


def cross_fitted_probs(
    logits: np.ndarray, y: np.ndarray, halves: tuple[np.ndarray, np.ndarray]
) -> np.ndarray:
    """Probabilities where each half is scaled by the temperature fitted on the other half.

    The calibration error of these probabilities is not flattered by fitting on what it scores.
    """
    a, b = halves
    out = np.empty(logits.shape, np.float64)
    out[b] = scaled_probs(logits[b], fit_temperature(logits[a], y[a]))
    out[a] = scaled_probs(logits[a], fit_temperature(logits[b], y[b]))
    return out
