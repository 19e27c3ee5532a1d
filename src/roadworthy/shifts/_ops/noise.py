"""Random numbers in bulk: normal and uniform noise, raw uniform bits, and exact Poisson noise.

The draws come straight from the generator's bit stream where that is several times cheaper than
``Generator.normal`` / ``integers`` (normal noise by an inverse-CDF table, Poisson by table inversion);
every value still comes from the generator passed in, in a fixed order.
"""

from __future__ import annotations

import math

import numpy as np

from roadworthy.shifts._ops.common import cv2

_NORMAL_QUANTILES: list[np.ndarray] = []


def normal(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Standard normal float32 noise by inverse-CDF look-up: one 16-bit uniform integer per value indexes the
    65,536 mid-quantiles of the normal distribution (rescaled to unit variance).

    About 4x faster than a float32 ziggurat on one core. The values are the normal distribution discretised
    at probability steps of 1/65536 (tails cut at 4.3 sigma): for image noise, added to 8-bit pixels and
    clipped, indistinguishable from exact draws.
    """
    if not _NORMAL_QUANTILES:
        from scipy.special import ndtri

        q = ndtri((np.arange(1 << 16) + 0.5) / (1 << 16))
        _NORMAL_QUANTILES.append((q / q.std()).astype(np.float32))
    u = uniform_bits(rng, math.prod(shape))
    return np.take(_NORMAL_QUANTILES[0], u).reshape(shape)


def uniform(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.random(shape, dtype=np.float32)


def uniform_bits(rng: np.random.Generator, n: int, dtype: type = np.uint16) -> np.ndarray:
    """``n`` uniformly random unsigned integers of ``dtype`` (all bits random), straight from the bit
    generator: several times cheaper than ``rng.integers`` for bulk draws."""
    per_word = 8 // np.dtype(dtype).itemsize
    return rng.bit_generator.random_raw(-(-n // per_word)).view(dtype)[:n]


_GUIDE_BITS = 10  # the Poisson guide table has 2**10 cells per grey level (512 KiB: stays in the CPU cache)
_IMPURE = np.uint16(0x8000)  # flag on a guide cell that a CDF step falls into
_POISSON_TABLES: dict[float, tuple[np.ndarray, np.ndarray]] = {}


def _poisson_table(c: float) -> tuple[np.ndarray, np.ndarray]:
    """CDF ``(256, K)`` and guide table of Poisson(level / 255 * c) for the 256 grey levels.

    Guide cell ``j`` of a level holds the smallest ``k`` whose CDF exceeds ``j / 2**10``, with the
    :data:`_IMPURE` bit set when the CDF also steps inside the cell (then the draw is finished by search).
    """
    if c not in _POISSON_TABLES:
        from scipy.special import gammaln

        lam = np.arange(256) / 255.0 * c
        kmax = int(c + 10 * math.sqrt(c) + 12)
        k = np.arange(kmax + 1)
        with np.errstate(divide="ignore", invalid="ignore"):
            logp = k[None, :] * np.log(lam[:, None]) - lam[:, None] - gammaln(k + 1)[None, :]
        logp[0] = -np.inf
        logp[0, 0] = 0.0
        cdf = np.cumsum(np.exp(logp), axis=1)
        cdf[:, -1] = 1.0
        cells = 1 << _GUIDE_BITS
        edges = np.arange(cells + 1) / cells
        start = np.stack([np.searchsorted(row, edges[:-1], side="right") for row in cdf])
        pure = np.take_along_axis(cdf, start, axis=1) >= edges[None, 1:]
        guide = start.astype(np.uint16) | np.where(pure, np.uint16(0), _IMPURE)
        _POISSON_TABLES[c] = (cdf, guide.ravel())
    return _POISSON_TABLES[c]


def poisson_scaled(x: np.ndarray, c: float, rng: np.random.Generator) -> np.ndarray:
    """``Poisson(x * c) / c`` for ``x`` in [0, 1], sampled exactly by table inversion.

    ``x`` is rounded to 8-bit grey levels for the table look-up (an input of 8-bit origin is unchanged).
    Each draw inverts the CDF at a 16-bit uniform (probability steps of 1/65536): the top 10 bits pick a
    guide cell, which gives the answer directly unless a CDF step falls inside it (one to three per cent
    of draws, finished by search).
    """
    cdf, guide = _poisson_table(float(c))
    shift = 16 - _GUIDE_BITS
    # rint(x * 255) saturated to 8 bits in one OpenCV pass (x is non-negative: no absolute value taken)
    level = cv2().convertScaleAbs(np.ascontiguousarray(x, np.float32).reshape(-1, x.shape[-1]), alpha=255.0)
    level = level.ravel().astype(np.uint32)
    u = uniform_bits(rng, level.size)
    idx = level << np.uint32(_GUIDE_BITS)
    idx |= u >> np.uint16(shift)
    k = np.take(guide, idx)
    todo = np.flatnonzero(k >= _IMPURE)
    if todo.size:
        kt = (k[todo] & ~_IMPURE).astype(np.intp)
        ut = (u[todo] + 0.5) / 2.0**16
        flat, base = cdf.ravel(), level[todo].astype(np.intp) * cdf.shape[1]
        pending = np.arange(todo.size)
        while pending.size:
            step = ut[pending] >= flat[base[pending] + kt[pending]]
            kt[pending[step]] += 1
            pending = pending[step]
        k[todo] = kt
    out = k.astype(np.float32)
    out /= np.float32(c)
    return out.reshape(x.shape)


def signed_uniform(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Uniform float32 noise in [-1, 1] at 16-bit resolution (65,536 evenly spaced values).

    About twice as cheap as ``rng.random(dtype=np.float32)``; ample for textures and displacements.
    """
    out = uniform_bits(rng, math.prod(shape)).astype(np.float32).reshape(shape)
    out *= np.float32(2 / 65535)
    out -= np.float32(1)
    return out
