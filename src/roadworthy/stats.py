"""Small statistics shared by every suite: Wilson intervals, softmax, calibration error.

Every accuracy-like number in a report is a proportion estimated from a finite sample; these helpers
attach the 95% Wilson score interval so a number from 200 samples never reads like one from 20,000.
"""

from __future__ import annotations

import math

import numpy as np

Z95 = 1.959963984540054


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """95% Wilson score interval for a binomial proportion.

    Unlike the normal approximation it stays inside [0, 1] and is sensible at 0 and n successes.
    Returns ``(nan, nan)`` when ``n`` is 0.
    """
    if n <= 0:
        return (math.nan, math.nan)
    p = successes / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # the interval always contains the estimate, also where rounding would push it out (k = 0 or n)
    return (max(0.0, min(p, centre - half)), min(1.0, max(p, centre + half)))


def proportion_metrics(name: str, hits: np.ndarray | int, n: int | None = None) -> dict[str, float]:
    """Metric ``name`` with ``name_ci_low``, ``name_ci_high`` (Wilson 95%) and ``name_n`` (sample count).

    ``hits`` is either a boolean array (one entry per sample) or a count, in which case ``n`` is required.
    """
    if isinstance(hits, np.ndarray):
        n = int(hits.size)
        k = int(np.count_nonzero(hits))
    else:
        if n is None:
            raise ValueError("n is required when hits is a count")
        k = int(hits)
    low, high = wilson_interval(k, n)
    value = k / n if n else math.nan
    return {name: value, f"{name}_ci_low": low, f"{name}_ci_high": high, f"{name}_n": float(n)}


def mean_of_proportions_metrics(name: str, hits: np.ndarray, n: np.ndarray) -> dict[str, float]:
    """The mean of several proportions ``hits[k] / n[k]`` (e.g. balanced accuracy, the mean per-class
    recall), with an interval and the total sample count.

    The interval is the mean of the per-group 95% Wilson bounds: conservative (wider than a 95% interval
    of the mean), never empty, inside [0, 1], and honest about small groups. Groups with ``n == 0`` are left
    out.
    """
    hits, n = np.asarray(hits), np.asarray(n)
    keep = n > 0
    if not keep.any():
        return {name: math.nan, f"{name}_ci_low": math.nan, f"{name}_ci_high": math.nan, f"{name}_n": 0.0}
    bounds = np.array([wilson_interval(int(k), int(m)) for k, m in zip(hits[keep], n[keep], strict=True)])
    value = float(np.mean(hits[keep] / n[keep]))
    low, high = float(bounds[:, 0].mean()), float(bounds[:, 1].mean())
    return {
        name: value,
        f"{name}_ci_low": min(low, value),
        f"{name}_ci_high": max(high, value),
        f"{name}_n": float(n[keep].sum()),
    }


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    """Numerically stable softmax."""
    z = logits - logits.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


def expected_calibration_error(probs: np.ndarray, y: np.ndarray, n_bins: int = 15) -> float:
    """Expected calibration error (Guo et al. 2017) with ``n_bins`` equal-width confidence bins.

    The sample-weighted mean gap between the model's confidence (max probability) and its accuracy in
    each bin: 0 means a model that says 80% is right 80% of the time; 0.2 means it is off by 20 points.
    """
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == y
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, n_bins - 1)
    total = 0.0
    for b in range(n_bins):
        mask = bins == b
        if mask.any():
            total += mask.mean() * abs(conf[mask].mean() - correct[mask].mean())
    return float(total)


def reliability_bins(probs: np.ndarray, y: np.ndarray, n_bins: int = 15) -> dict[str, list[float]]:
    """Per-bin confidence, accuracy and count, for a reliability diagram."""
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == y
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, n_bins - 1)
    out: dict[str, list[float]] = {"edges": edges.tolist(), "confidence": [], "accuracy": [], "count": []}
    for b in range(n_bins):
        mask = bins == b
        out["count"].append(float(mask.sum()))
        out["confidence"].append(float(conf[mask].mean()) if mask.any() else math.nan)
        out["accuracy"].append(float(correct[mask].mean()) if mask.any() else math.nan)
    return out
