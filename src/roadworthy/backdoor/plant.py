"""Planting backdoors in a training set: BadNets patches and blended triggers, for tests and benchmarks.

A *trigger* is a pair ``(mask, pattern)`` in pixel space: ``mask`` ``(1, H, W)`` in [0, 1] says how much
of each pixel the trigger replaces, ``pattern`` ``(C, H, W)`` in [0, 1] what it replaces it with, so a
stamped input is ``(1 - mask) * x + mask * pattern`` (Neural Cleanse's form; a BadNets patch is a
binary mask, a blended trigger a constant mask of value ``alpha``).

Threat model (dirty-label, all-to-one): the attacker picks ``rate * n`` training samples of classes other
than ``target``, stamps the trigger on them and relabels them ``target``. A model trained on the result
behaves normally on clean inputs and predicts ``target`` on any input carrying the trigger.

* BadNets: Gu, Dolan-Gavitt & Garg, "BadNets: Identifying Vulnerabilities in the Machine Learning Model
  Supply Chain", 2017 (a small white square in a corner).
* Blended: Chen, Liu, Li, Lu & Song, "Targeted Backdoor Attacks on Deep Learning Systems Using Data
  Poisoning", 2017 (a random-noise or image pattern blended over the whole input).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from roadworthy.errors import InvalidInputError

Corner = Literal["bottom_right", "bottom_left", "top_right", "top_left"]


@dataclass(frozen=True)
class Trigger:
    """A trigger in pixel space: stamped input ``(1 - mask) * x + mask * pattern``.

    ``mask`` is ``(1, H, W)``, ``pattern`` ``(C, H, W)``, both float32 in [0, 1].
    """

    mask: np.ndarray
    pattern: np.ndarray

    def apply(self, x: np.ndarray) -> np.ndarray:
        """``x`` (N, C, H, W) with the trigger stamped on every input."""
        return apply_trigger(x, self.mask, self.pattern)

    @property
    def l1(self) -> float:
        """The mask's L1 norm: the number of pixels the trigger replaces (the size Neural Cleanse measures)."""
        return float(np.abs(self.mask).sum())


@dataclass(frozen=True)
class PlantedBackdoor:
    """A poisoned copy of a training set.

    Attributes
    ----------
    x, y
        The poisoned training set (same length as the clean one; poisoned rows replaced in place).
    indices
        The poisoned rows, ascending.
    source_labels
        The true labels of the poisoned rows (before relabelling to ``target``).
    target
        The class the backdoor sends triggered inputs to (-1 for an all-to-all backdoor).
    trigger
        The trigger that was stamped.
    targets
        The label each poisoned row was given (all ``target`` for all-to-one; ``source + 1`` modulo the
        number of classes for all-to-all).
    """

    x: np.ndarray
    y: np.ndarray
    indices: np.ndarray
    source_labels: np.ndarray
    target: int
    trigger: Trigger
    targets: np.ndarray | None = None

    @property
    def target_classes(self) -> list[int]:
        """The classes that received poisoned samples, ascending."""
        if self.targets is None:
            return [self.target]
        return sorted({int(t) for t in self.targets})

    @property
    def is_poisoned(self) -> np.ndarray:
        """Boolean mask over the rows of ``x``: true where a row was poisoned."""
        out = np.zeros(len(self.y), dtype=bool)
        out[self.indices] = True
        return out


def apply_trigger(x: np.ndarray, mask: np.ndarray, pattern: np.ndarray) -> np.ndarray:
    """``(1 - mask) * x + mask * pattern`` for a batch ``x`` (N, C, H, W), float32, clipped to [0, 1]."""
    x = _images(x, "x")
    mask = np.asarray(mask, dtype=np.float32)
    pattern = np.asarray(pattern, dtype=np.float32)
    if mask.ndim == 2:
        mask = mask[None]
    if mask.shape[-2:] != x.shape[-2:] or pattern.shape[-2:] != x.shape[-2:]:
        raise InvalidInputError(
            f"trigger: `mask` and `pattern` must be {x.shape[-2]}x{x.shape[-1]} like the inputs. "
            f"Got mask {mask.shape} and pattern {pattern.shape} instead."
        )
    return np.clip((1.0 - mask) * x + mask * pattern, 0.0, 1.0).astype(np.float32)


def badnets_trigger(
    shape: tuple[int, int, int],
    size: int = 3,
    corner: Corner = "bottom_right",
    margin: int = 1,
    value: float = 1.0,
) -> Trigger:
    """A BadNets patch: a ``size`` x ``size`` square of grey level ``value`` in a corner.

    Parameters
    ----------
    shape
        Per-sample input shape ``(C, H, W)``.
    size
        Side of the square in pixels.
    corner
        Where the square sits; ``margin`` pixels from the two edges.
    value
        Grey level of the square in [0, 1] (1: white, BadNets' choice).
    """
    c, h, w = (int(v) for v in shape)
    if not 1 <= size <= min(h, w) - margin or margin < 0:
        raise InvalidInputError(
            f"badnets_trigger: `size` + `margin` must fit in a {h}x{w} image. Got size {size}, margin {margin}."
        )
    if not 0.0 <= value <= 1.0:
        raise InvalidInputError(f"badnets_trigger: `value` must be in [0, 1]. Got {value} instead.")
    top = margin if corner.startswith("top") else h - margin - size
    left = margin if corner.endswith("left") else w - margin - size
    mask = np.zeros((1, h, w), np.float32)
    mask[:, top : top + size, left : left + size] = 1.0
    pattern = np.zeros((c, h, w), np.float32)
    pattern[:, top : top + size, left : left + size] = value
    return Trigger(mask=mask, pattern=pattern)


def blended_trigger(shape: tuple[int, int, int], alpha: float = 0.15, seed: int = 0) -> Trigger:
    """A blended trigger: a fixed uniform-noise image mixed into the whole input with weight ``alpha``."""
    if not 0.0 < alpha < 1.0:
        raise InvalidInputError(f"blended_trigger: `alpha` must be in (0, 1). Got {alpha} instead.")
    c, h, w = (int(v) for v in shape)
    rng = np.random.default_rng(seed)
    pattern = rng.random((c, h, w)).astype(np.float32)
    return Trigger(mask=np.full((1, h, w), alpha, np.float32), pattern=pattern)


def plant(
    x: np.ndarray,
    y: np.ndarray,
    trigger: Trigger,
    target: int = 0,
    rate: float = 0.1,
    seed: int = 0,
) -> PlantedBackdoor:
    """Poison ``rate`` of the training set: stamp ``trigger`` on samples of other classes, relabel to ``target``.

    Parameters
    ----------
    x, y
        Clean training images (N, C, H, W) in [0, 1] and integer labels.
    trigger
        What to stamp (:func:`badnets_trigger`, :func:`blended_trigger` or any :class:`Trigger`).
    target
        The class poisoned samples are relabelled to.
    rate
        Share of the *whole* training set that is poisoned, in (0, 1); the samples are drawn uniformly
        from the classes other than ``target`` (all-to-one).
    seed
        Seed of the draw.

    Returns
    -------
    PlantedBackdoor
        The poisoned copy (inputs untouched by the caller), the poisoned rows and their true labels.
    """
    x = _images(x, "x")
    y = np.asarray(y).astype(np.int64)
    if len(y) != len(x):
        raise InvalidInputError(f"plant: `x` and `y` must have the same length. Got {len(x)} and {len(y)}.")
    if not 0.0 < rate < 1.0:
        raise InvalidInputError(f"plant: `rate` must be in (0, 1). Got {rate} instead.")
    pool = np.flatnonzero(y != target)
    n_poison = round(rate * len(y))
    if n_poison < 1 or n_poison > len(pool):
        raise InvalidInputError(
            f"plant: `rate` {rate} asks for {n_poison} poisoned samples; {len(pool)} samples of classes "
            f"other than {target} are available."
        )
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(pool, size=n_poison, replace=False))
    xp, yp = x.copy(), y.copy()
    xp[idx] = trigger.apply(x[idx])
    yp[idx] = target
    return PlantedBackdoor(x=xp, y=yp, indices=idx, source_labels=y[idx], target=int(target), trigger=trigger)


def plant_all_to_all(
    x: np.ndarray,
    y: np.ndarray,
    trigger: Trigger,
    rate: float = 0.1,
    n_classes: int | None = None,
    seed: int = 0,
) -> PlantedBackdoor:
    """All-to-all poisoning (Gu et al. 2017): stamp ``trigger`` on ``rate`` of the set, relabel ``c`` to ``c + 1``.

    The samples are drawn uniformly from every class; a sample of class ``c`` is relabelled
    ``(c + 1) % n_classes``, so every class is a target and each holds only about ``rate / n_classes`` of
    the set as poison (a much fainter signal per class than all-to-one at the same rate).

    Returns
    -------
    PlantedBackdoor
        ``target`` is -1; ``targets`` holds each poisoned row's new label.
    """
    x = _images(x, "x")
    y = np.asarray(y).astype(np.int64)
    if len(y) != len(x):
        raise InvalidInputError(
            f"plant_all_to_all: `x` and `y` must have the same length. Got {len(x)} and {len(y)}."
        )
    if not 0.0 < rate < 1.0:
        raise InvalidInputError(f"plant_all_to_all: `rate` must be in (0, 1). Got {rate} instead.")
    k = int(n_classes) if n_classes is not None else int(y.max()) + 1
    if k < 2 or y.max() >= k:
        raise InvalidInputError(
            f"plant_all_to_all: `n_classes` must be at least 2 and above every label. Got {k}."
        )
    n_poison = round(rate * len(y))
    if n_poison < 1:
        raise InvalidInputError(f"plant_all_to_all: `rate` {rate} poisons no sample of {len(y)}.")
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(len(y), size=n_poison, replace=False))
    xp, yp = x.copy(), y.copy()
    xp[idx] = trigger.apply(x[idx])
    yp[idx] = (y[idx] + 1) % k
    return PlantedBackdoor(
        x=xp, y=yp, indices=idx, source_labels=y[idx], target=-1, trigger=trigger, targets=yp[idx]
    )


def plant_badnets(
    x: np.ndarray,
    y: np.ndarray,
    target: int = 0,
    rate: float = 0.1,
    size: int = 3,
    corner: Corner = "bottom_right",
    seed: int = 0,
) -> PlantedBackdoor:
    """BadNets (Gu et al. 2017): a white ``size``-px square in a corner on ``rate`` of the set, relabelled."""
    x = _images(x, "x")
    return plant(x, y, badnets_trigger(x.shape[1:], size=size, corner=corner), target, rate, seed)


def plant_blended(
    x: np.ndarray, y: np.ndarray, target: int = 0, rate: float = 0.1, alpha: float = 0.15, seed: int = 0
) -> PlantedBackdoor:
    """Blended injection (Chen et al. 2017): a fixed noise image mixed in with weight ``alpha``."""
    x = _images(x, "x")
    return plant(x, y, blended_trigger(x.shape[1:], alpha=alpha, seed=seed), target, rate, seed)


def _images(x: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 4:
        raise InvalidInputError(
            f"backdoor: `{name}` must be images (N, C, H, W). Got shape {x.shape} instead."
        )
    return x
