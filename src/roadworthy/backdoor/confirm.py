"""Confirming a backdoor: paste a trigger onto clean inputs of other classes and count what the model does.

A cluster in the training data or a small mask found by optimisation is a suspicion; a trigger that
sends clean inputs of *other* classes to one class is a backdoor. :func:`attack_success` measures that
rate with a Wilson interval (queries only, so it runs on black-box models too).
:func:`common_pattern` proposes a candidate trigger from a group of training inputs (the pixels every
member shares and the rest of the data does not), so a data-level suspect group can be confirmed the
same way as a reverse-engineered trigger.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from roadworthy.errors import InvalidInputError
from roadworthy.models.base import predict_logits
from roadworthy.stats import wilson_interval

#: Attack success above which a candidate trigger is a working backdoor (clean models send well under
#: this share of patched inputs of other classes to one class; BadNets reach 0.9 and more).
SUCCESS_THRESHOLD = 0.5


@dataclass(frozen=True)
class AttackSuccess:
    """How often a trigger pasted on clean inputs of other classes makes the model predict ``target``.

    Attributes
    ----------
    target
        The class the trigger should send inputs to.
    n
        Inputs patched: clean inputs whose label is not ``target`` (and, with ``only_correct``, that the
        model classified correctly before patching).
    hits
        Patched inputs the model then classified as ``target``.
    rate, ci_low, ci_high
        ``hits / n`` and its 95% Wilson interval.
    baseline
        Share of the same inputs, unpatched, that the model already classified as ``target``.
    """

    target: int
    n: int
    hits: int
    rate: float
    ci_low: float
    ci_high: float
    baseline: float


def attack_success(
    model: Any,
    x: np.ndarray,
    y: np.ndarray,
    mask: np.ndarray,
    pattern: np.ndarray,
    target: int,
    only_correct: bool = True,
    batch_size: int = 256,
) -> AttackSuccess:
    """Attack success rate of the trigger ``(mask, pattern)`` towards ``target`` on clean inputs.

    Parameters
    ----------
    model
        Any roadworthy model (``predict`` is all that is used).
    x, y
        Clean inputs (N, C, H, W) in [0, 1] and their true labels; inputs of class ``target`` are left out.
    mask, pattern
        The trigger: patched input ``(1 - mask) * x + mask * pattern`` (see :mod:`~roadworthy.backdoor.plant`).
    target
        The class to count.
    only_correct
        Patch only inputs the model classifies correctly, so the rate is not inflated by inputs the model
        already got wrong (as in Neural Cleanse and the BadNets paper).
    """
    from roadworthy.backdoor.plant import apply_trigger

    x = np.asarray(x, dtype=np.float32)
    y = np.asarray(y).astype(np.int64)
    if len(x) != len(y):
        raise InvalidInputError(
            f"attack_success: `x` and `y` must have the same length. Got {len(x)}, {len(y)}."
        )
    keep = y != target
    if not keep.any():
        raise InvalidInputError(
            f"attack_success: every input is of class {target}; need inputs of other classes."
        )
    x, y = x[keep], y[keep]
    before = predict_logits(model, x, batch_size).argmax(axis=1)
    if only_correct:
        ok = before == y
        if not ok.any():
            raise InvalidInputError(
                "attack_success: the model misclassifies every clean input of the other classes."
            )
        x, before = x[ok], before[ok]
    after = predict_logits(model, apply_trigger(x, mask, pattern), batch_size).argmax(axis=1)
    hits = int((after == target).sum())
    lo, hi = wilson_interval(hits, len(x))
    return AttackSuccess(
        target=int(target),
        n=len(x),
        hits=hits,
        rate=hits / len(x),
        ci_low=lo,
        ci_high=hi,
        baseline=float((before == target).mean()),
    )


def common_pattern(
    group: np.ndarray,
    reference: np.ndarray,
    min_contrast: float = 0.5,
    max_fraction: float = 0.1,
) -> tuple[np.ndarray, np.ndarray]:
    """A candidate trigger from a group of inputs: the pixels the group shares and the reference lacks.

    Every pixel gets a contrast ``|median_group - mean_reference| - 1.4826 MAD_group`` (largest over
    channels): a patch stamped on most members (BadNets) has contrast close to its difference from the
    background, while the shape of a clean class varies from sample to sample and scores low. The
    group's median and median absolute deviation, not its mean and standard deviation: a suspect group
    found by clustering is never pure, and a few unstamped members would otherwise pull a white patch
    on a mid-grey background (road signs) below the cut. The mask keeps the pixels with contrast at
    least ``min_contrast``, at most ``max_fraction`` of the image (the highest); the pattern is the
    group's median image there.

    Parameters
    ----------
    group
        The suspect inputs (N, C, H, W) in [0, 1].
    reference
        Inputs to contrast with (e.g. training inputs of the other classes).
    min_contrast
        Least contrast (in grey levels, 0..1) of a trigger pixel.
    max_fraction
        Largest share of the image's pixels the mask may cover.

    Returns
    -------
    (mask, pattern)
        ``mask`` (1, H, W) with values 0 or 1 (all zero when no pixel qualifies), ``pattern`` (C, H, W):
        the group's median inside the mask, 0 outside.
    """
    group = np.asarray(group, dtype=np.float32)
    reference = np.asarray(reference, dtype=np.float32)
    if group.ndim != 4 or reference.ndim != 4 or group.shape[1:] != reference.shape[1:] or not len(group):
        raise InvalidInputError(
            "common_pattern: `group` and `reference` must be non-empty image batches of one shape. "
            f"Got {group.shape} and {reference.shape}."
        )
    mu = np.median(group, axis=0)
    spread = 1.4826 * np.median(np.abs(group - mu), axis=0)
    contrast = (np.abs(mu - reference.mean(axis=0)) - spread).max(axis=0)
    h, w = contrast.shape
    keep = contrast >= min_contrast
    cap = max(1, int(max_fraction * h * w))
    if keep.sum() > cap:
        keep &= contrast >= np.sort(contrast.ravel())[-cap]
    mask = keep[None].astype(np.float32)
    return mask, (mu * mask).astype(np.float32)
