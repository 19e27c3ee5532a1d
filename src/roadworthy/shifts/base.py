"""What a shift is, the table that lists them, and how severity parameters follow the image size.

A shift maps a batch of images (float32 NCHW in [0, 1]) and a severity 0..5 to a changed batch of the
same shape; severity 0 is the identity. Every random choice comes from the ``numpy.random.Generator``
passed in, so the same generator state gives the same output. Large batches are transformed a few
images at a time (:data:`CHUNK_BYTES`), in order, from the same generator: the output depends on the batch
and the generator state only.

Severity parameters: the ImageNet-C tables (Hendrycks & Dietterich, ICLR 2019) assume about 224 px and
the CIFAR-10-C tables 32 px. :func:`sized` picks the CIFAR table for images up to 64 px, the ImageNet
table from 160 px, and interpolates in between; parameters that are pixel distances (blur radii, shift
distances) are stored as a fraction of the table's native size and scaled to the image, so a 512 px
image gets the ImageNet blur at 2.3 times the radius. Below 32 px pixel distances keep their CIFAR values:
CIFAR-10-C's blurs are already near one pixel, and halving them would make them sub-pixel no-ops.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from roadworthy.errors import InvalidInputError

#: the groups a shift belongs to, in report order
GROUPS = ("noise", "blur", "weather", "digital", "extra", "article", "geometry")
SMALL_SIZE, LARGE_SIZE = 32, 224  # native sizes of the CIFAR-10-C and ImageNet-C tables
SMALL_UP_TO, LARGE_FROM = 64, 160  # table choice: CIFAR up to 64 px, ImageNet from 160 px
MAX_SEVERITY = 5
#: how much of a batch (bytes of float32 input) one call of a shift function gets: about three 224 px RGB images
CHUNK_BYTES = 2 << 20

ShiftFn = Callable[[np.ndarray, int, np.random.Generator], np.ndarray]


@dataclass(frozen=True)
class Shift:
    """One named shift: ``apply(x, severity, rng)`` on a batch.

    Attributes
    ----------
    name
        Snake-case name, also the check id suffix (``shift.<name>``).
    group
        One of :data:`GROUPS`.
    fn
        The implementation, called with a validated float32 batch and a severity in 1..5.
    description
        One sentence for the report: what it simulates and where the parameters come from.
    imagenet_c
        True for the 15 main ImageNet-C corruptions (the ones mCE averages over).
    per_image
        True when ``fn`` works image by image and returns values in [0, 1] whatever the input (JPEG):
        ``apply`` then hands it the whole batch and does not clip.
    """

    name: str
    group: str
    fn: ShiftFn
    description: str = ""
    imagenet_c: bool = False
    per_image: bool = False

    def apply(self, x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
        """The shifted batch: same shape, float32, values in [0, 1]; severity 0 returns a copy of ``x``.

        Parameters
        ----------
        x
            Images ``(N, C, H, W)`` with ``C`` 1 or 3 and ``H, W >= 16``, values in [0, 1].
        severity
            0 (unchanged) to 5 (strongest).
        rng
            The source of every random choice.
        """
        x = check_images(x)
        severity = check_severity(severity)
        if severity == 0 or x.shape[0] == 0:
            return x.copy()
        if self.per_image:
            out = np.asarray(self.fn(x, severity, rng), dtype=np.float32)
            return out.copy() if out is x or not out.flags.writeable else out
        # cache blocking: a few images per call keep every temporary of the shift in the CPU cache and in
        # heap memory that is reused from call to call (a whole large batch at once is about 1.5-2x slower)
        per_call = max(1, CHUNK_BYTES // x[0].nbytes)
        out = np.empty_like(x)
        for start in range(0, len(x), per_call):
            part = np.asarray(self.fn(x[start : start + per_call], severity, rng), dtype=np.float32)
            _clip01(part, out[start : start + per_call])
        return out


def _clip01(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """``dst = clip(src, 0, 1)`` for contiguous float32 arrays (torch's clamp: twice NumPy's speed)."""
    import torch

    torch.clamp(torch.from_numpy(np.ascontiguousarray(src)), 0.0, 1.0, out=torch.from_numpy(dst))
    return dst


SHIFTS: dict[str, Shift] = {}


def shift(
    name: str, group: str, description: str = "", imagenet_c: bool = False, per_image: bool = False
) -> Callable[[ShiftFn], ShiftFn]:
    """Decorator adding the function to :data:`SHIFTS` under ``name``."""
    if group not in GROUPS:
        raise ValueError(f"`group` must be one of {GROUPS}. Got {group!r} instead.")

    def wrap(fn: ShiftFn) -> ShiftFn:
        if name in SHIFTS and SHIFTS[name].fn is not fn:
            raise ValueError(f"shift {name!r} is defined twice")
        SHIFTS[name] = Shift(
            name, group, fn, description or (fn.__doc__ or "").strip().split("\n")[0], imagenet_c, per_image
        )
        return fn

    return wrap


def apply_shift(name: str, x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Apply the shift called ``name`` (a key of :data:`SHIFTS`) to the batch ``x`` at ``severity``."""
    try:
        s = SHIFTS[name]
    except KeyError:
        raise InvalidInputError(
            f"`name` must be one of the shifts {', '.join(sorted(SHIFTS))}. Got {name!r} instead."
        ) from None
    return s.apply(x, severity, rng)


def check_images(x: np.ndarray) -> np.ndarray:
    """``x`` as float32 ``(N, C, H, W)`` with 1 or 3 channels and sides of at least 16 px."""
    x = np.asarray(x)
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise InvalidInputError(
            f"`x` must be images (N, C, H, W) with C 1 or 3. Got shape {x.shape} instead."
        )
    if min(x.shape[2:]) < 16:
        raise InvalidInputError(
            f"`x` must have sides of at least 16 px. Got {x.shape[2]}x{x.shape[3]} instead."
        )
    return np.ascontiguousarray(x, dtype=np.float32)


def check_severity(severity: int) -> int:
    if isinstance(severity, bool) or int(severity) != severity or not 0 <= severity <= MAX_SEVERITY:
        raise InvalidInputError(
            f"`severity` must be an integer in [0, {MAX_SEVERITY}]. Got {severity!r} instead."
        )
    return int(severity)


# ------------------------------------------------------------------------------------ severity by size


def image_size(x: np.ndarray) -> float:
    """The side of a square with the image's area, the size severity tables are chosen by."""
    return float(np.sqrt(x.shape[-2] * x.shape[-1]))


def large_weight(size: float) -> float:
    """0 for the CIFAR table (<= 64 px), 1 for the ImageNet table (>= 160 px), linear in between."""
    return float(np.clip((size - SMALL_UP_TO) / (LARGE_FROM - SMALL_UP_TO), 0.0, 1.0))


def table_name(size: float) -> str:
    """Which severity table applies to images of ``size`` px: ``cifar``, ``imagenet`` or ``interpolated``."""
    w = large_weight(size)
    return "cifar" if w == 0 else "imagenet" if w == 1 else "interpolated"


def sized(
    severity: int,
    size: float,
    small: Sequence[float | Sequence[float]],
    large: Sequence[float | Sequence[float]],
    pixel: Sequence[int] = (),
) -> np.ndarray:
    """The parameters of ``severity`` for ``size`` px images from a CIFAR-like and an ImageNet-like table.

    Parameters
    ----------
    severity
        1..5, the row of each table.
    size
        Image size in pixels (:func:`image_size`).
    small, large
        Five rows each (a number or a tuple per row), for 32 px and 224 px images.
    pixel
        Positions in a row that are pixel distances: scaled with the image size (not below 32 px).

    Returns
    -------
    numpy.ndarray
        The row, interpolated between the tables (:func:`large_weight`) and with pixel distances scaled.
    """
    s = np.atleast_1d(np.asarray(small[severity - 1], np.float64)).copy()
    g = np.atleast_1d(np.asarray(large[severity - 1], np.float64)).copy()
    px = list(pixel)
    s[px] /= SMALL_SIZE
    g[px] /= LARGE_SIZE
    out = s + large_weight(size) * (g - s)
    out[px] *= max(size, SMALL_SIZE)
    return out
