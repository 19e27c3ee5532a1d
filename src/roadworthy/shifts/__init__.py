"""Image shifts: graded, reproducible changes of a batch of images, usable without any check.

The library behind the shift suite. A *shift* maps float32 NCHW images in [0, 1] and a severity 0..5 to a
changed batch of the same shape (severity 0 is the identity); every random choice comes from the
generator or seed passed in, so the same seed gives the same images. The shifts are the 15 ImageNet-C
corruptions and their 4 held-out extras (:mod:`~roadworthy.shifts.corruptions`), the camera's position
(:mod:`~roadworthy.shifts.geometry`), night and rain (:mod:`~roadworthy.shifts.lighting`) and what
happens to a road sign outdoors (:mod:`~roadworthy.shifts.occlusion`). Their building blocks (noise,
filters, resampling, fractals) are in ``_ops``.

Use from Python::

    from roadworthy import shifts

    foggy = shifts.apply("fog", x, severity=3, seed=0)           # by name, with a seed
    noisy = shifts.SHIFTS["gaussian_noise"].apply(x, 5, rng)     # a Shift object, with a Generator
    sorted(shifts.SHIFTS)                                        # every registered name
    [s.name for s in shifts.SHIFTS.values() if s.imagenet_c]     # the 15 ImageNet-C corruptions

A new shift is one decorated function in one of the modules (see CONTRIBUTING.md)::

    @shift("my_shift", "digital", "One sentence for the report.")
    def my_shift(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray: ...
"""

from __future__ import annotations

import numpy as np

from roadworthy.shifts import corruptions, geometry, lighting, occlusion  # noqa: F401  (fill SHIFTS)
from roadworthy.shifts.base import (
    GROUPS,
    MAX_SEVERITY,
    SHIFTS,
    Shift,
    apply_shift,
    image_size,
    shift,
    sized,
    table_name,
)

__all__ = [
    "GROUPS",
    "MAX_SEVERITY",
    "SHIFTS",
    "Shift",
    "apply",
    "apply_shift",
    "image_size",
    "shift",
    "sized",
    "table_name",
]


def apply(name: str, x: np.ndarray, severity: int, seed: int | np.random.Generator | None = 0) -> np.ndarray:
    """The batch ``x`` under the shift called ``name`` at ``severity``.

    Parameters
    ----------
    name
        A key of :data:`SHIFTS`, e.g. ``"gaussian_noise"`` or ``"fog"``.
    x
        Images ``(N, C, H, W)``, ``C`` 1 or 3, sides of at least 16 px, values in [0, 1].
    severity
        0 (unchanged) to 5 (strongest).
    seed
        An integer seed (the same seed gives the same output) or a ``numpy.random.Generator``, which is
        used and advanced; ``None`` draws fresh entropy.

    Returns
    -------
    numpy.ndarray
        The shifted batch: same shape, float32, values in [0, 1].
    """
    return apply_shift(name, x, severity, np.random.default_rng(seed))
