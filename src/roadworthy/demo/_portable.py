"""Arithmetic that gives the same bits on every x86-64 CPU, for the demo's image generator.

IEEE 754 makes ``+ - * /`` and ``sqrt`` correctly rounded, so a fixed sequence of them gives identical
bits on any conforming CPU, whatever SIMD width runs it. Library kernels do not: NumPy's ``sin``,
``cos``, ``exp``, ``log`` and ``power`` and OpenCV's resize, warp and blur pick a different code path
(AVX-512, AVX2+FMA, SSE2) on each CPU, and those paths round differently in the last bit. A last-bit
difference is enough to move a pixel across a quantisation step or a drawn edge across a pixel, so the
demo data would depend on the machine.

This module is the small set of numerics the generator needs, written with those five operations,
``floor``/``rint``/``frexp``/``ldexp`` (exact by construction) and element-wise NumPy ufuncs only:
no BLAS (``@``, ``dot``, ``linalg.norm`` may fuse multiply-adds), no transcendental ufunc, and sums
taken in an order fixed by the code. The functions are accurate to about 1e-15 relative error, far
beyond what a picture needs; what matters is that they are *reproducible*.
"""

from __future__ import annotations

import math
from fractions import Fraction
from functools import lru_cache

import numpy as np

# pi/2 and ln 2 split into a high part with trailing zero bits and a low correction (fdlibm's values),
# so that ``x - k * HI - k * LO`` reduces the argument accurately with plain multiplications
_PIO2_HI = 1.57079632673412561417e00
_PIO2_LO = 6.07710050650619224932e-11
_TWO_OVER_PI = 6.36619772367581382433e-01
_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10
_INV_LN2 = 1.44269504088896338700e00

# fdlibm's __kernel_sin / __kernel_cos minimax coefficients on [-pi/4, pi/4]
_S = (-1.66666666666666324348e-01, 8.33333333332248946124e-03, -1.98412698298579493134e-04,
      2.75573137070700676789e-06, -2.50507602534068634195e-08, 1.58969099521155010221e-10)  # fmt: skip
_C = (4.16666666666666019037e-02, -1.38888888888741095749e-03, 2.48015872894767294178e-05,
      -2.75573143513906633035e-07, 2.08757232129817482790e-09, -1.13596475577881948265e-11)  # fmt: skip


def _horner(z: np.ndarray, coeffs: tuple[float, ...]) -> np.ndarray:
    """``c0 + z (c1 + z (c2 + ...))`` with one rounding per operation (no fused multiply-add)."""
    acc = z * coeffs[-1] + coeffs[-2]
    for c in coeffs[-3::-1]:
        acc *= z
        acc += c
    return acc


def sin_cos(x: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
    """Sine and cosine of float64 ``x`` (radians, ``|x|`` up to about 1e6), reproducible bit for bit.

    The argument is reduced to ``r`` in [-pi/4, pi/4] with ``x = k pi/2 + r``; fdlibm's polynomials give
    sin r and cos r, and the quadrant ``k mod 4`` picks and signs them.
    """
    x = np.asarray(x, np.float64)
    k = np.rint(x * _TWO_OVER_PI)
    r = (x - k * _PIO2_HI) - k * _PIO2_LO
    z = r * r
    s = r + (r * z) * _horner(z, _S)
    c = (1.0 - 0.5 * z) + (z * z) * _horner(z, _C)
    q = np.mod(k, 4.0)  # exact for integral k
    odd = np.mod(q, 2.0) == 1.0
    # quadrants 1 and 3 swap sine and cosine; the signs follow (changing a sign is exact)
    sin = np.where(odd, c, s) * np.where(q >= 2.0, -1.0, 1.0)
    cos = np.where(odd, s, c) * np.where((q == 1.0) | (q == 2.0), -1.0, 1.0)
    return sin, cos


def exp(x: np.ndarray | float) -> np.ndarray:
    """``e ** x`` for float64 ``x`` (results below ~1e-300 flush to 0), reproducible bit for bit.

    ``x = k ln 2 + r`` with ``|r| <= ln 2 / 2``; ``e ** r`` from its Taylor series to the 13th power
    (truncation error below 1e-17), then scaled by ``2 ** k`` exactly with ``ldexp``.
    """
    x = np.clip(np.asarray(x, np.float64), -700.0, 700.0)
    k = np.rint(x * _INV_LN2)
    r = (x - k * _LN2_HI) - k * _LN2_LO
    coeffs = tuple(1.0 / math.factorial(i) for i in range(14))
    out = np.ldexp(_horner(r, coeffs), k.astype(np.int32))
    return np.where(x <= -700.0, 0.0, out)


def log(x: np.ndarray | float) -> np.ndarray:
    """Natural logarithm of float64 ``x > 0``, reproducible bit for bit (``-inf`` at 0).

    ``x = m 2 ** e`` with ``m`` in [sqrt(1/2), sqrt(2)) (``frexp`` is exact); with ``s = (m - 1) / (m + 1)``,
    ``log m = 2 atanh s = 2 (s + s^3/3 + s^5/5 + ...)`` converges fast because ``|s| < 0.172``.
    """
    x = np.asarray(x, np.float64)
    m, e = np.frexp(np.where(x > 0, x, 1.0))
    small = m < 0.70710678118654752440
    m = np.where(small, m * 2.0, m)
    e = np.where(small, e - 1, e).astype(np.float64)
    s = (m - 1.0) / (m + 1.0)
    z = s * s
    series = _horner(z, tuple(1.0 / (2 * i + 1) for i in range(12)))
    out = (e * _LN2_HI + (2.0 * s) * series) + e * _LN2_LO
    return np.where(x > 0, out, -np.inf)


def power(x: np.ndarray, g: np.ndarray | float) -> np.ndarray:
    """``x ** g`` for float64 ``x >= 0`` and ``g > 0``, as ``exp(g log x)`` (0 where ``x`` is 0)."""
    x = np.asarray(x, np.float64)
    return np.where(x > 0, exp(np.asarray(g, np.float64) * log(np.where(x > 0, x, 1.0))), 0.0)


def standard_normal(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Standard normal float64 draws by the Box-Muller transform of ``rng.random`` uniforms.

    ``rng.standard_normal`` (a ziggurat) calls the C library's ``exp``/``log`` in its rejection step,
    which have CPU-specific variants; uniforms are integer bits scaled by a power of two, so this is
    exact. Each pair of uniforms gives two draws (the cosine and the sine branch).
    """
    size = math.prod(shape)
    pairs = (size + 1) // 2
    u1 = rng.random(pairs)
    u2 = rng.random(pairs)
    radius = np.sqrt(-2.0 * log(1.0 - u1))  # 1 - u1 is in (0, 1]
    sin, cos = sin_cos(2.0 * np.pi * u2)
    return np.concatenate([radius * cos, radius * sin])[:size].reshape(shape)


# ----------------------------------------------------------------------------------------------------
# Separable resampling: every output sample is a weighted sum of a few input samples ("taps"), summed
# in tap order. The tap tables are built from exact rationals, so they are the same everywhere.


@lru_cache(maxsize=256)
def area_taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """Taps of box (area) resampling from ``n_in`` to ``n_out`` samples.

    Output ``o`` averages the input interval ``[o s, (o + 1) s)`` with ``s = n_in / n_out``: each input
    sample weighs the length of its overlap with that interval, divided by ``s`` (OpenCV's INTER_AREA).

    Returns
    -------
    idx : np.ndarray
        int64 ``(n_out, k)`` input indices (unused taps repeat an index with weight 0).
    w : np.ndarray
        float64 ``(n_out, k)`` weights, each row summing to 1 up to rounding.
    """
    scale = Fraction(n_in, n_out)
    rows: list[list[tuple[int, Fraction]]] = []
    for o in range(n_out):
        lo, hi = o * scale, (o + 1) * scale
        row = []
        for j in range(math.floor(lo), min(n_in, math.ceil(hi))):
            overlap = min(hi, j + 1) - max(lo, Fraction(j))
            if overlap > 0:
                row.append((j, overlap / scale))
        rows.append(row)
    return _table(rows)


@lru_cache(maxsize=256)
def cubic_taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """Taps of bicubic interpolation (Keys, a = -0.75, as OpenCV's INTER_CUBIC), edges replicated.

    Output ``o`` samples the input at ``(o + 0.5) n_in / n_out - 0.5``.
    """
    a = Fraction(-3, 4)
    rows = []
    for o in range(n_out):
        pos = (o + Fraction(1, 2)) * Fraction(n_in, n_out) - Fraction(1, 2)
        i0 = math.floor(pos)
        t = pos - i0
        w0 = ((a * (t + 1) - 5 * a) * (t + 1) + 8 * a) * (t + 1) - 4 * a
        w1 = ((a + 2) * t - (a + 3)) * t * t + 1
        w2 = ((a + 2) * (1 - t) - (a + 3)) * (1 - t) * (1 - t) + 1
        w3 = 1 - w0 - w1 - w2
        weights = (w0, w1, w2, w3)
        rows.append([(min(max(i0 + d, 0), n_in - 1), weights[d + 1]) for d in (-1, 0, 1, 2)])
    return _table(rows)


def gaussian_taps(n: int, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """Taps of a Gaussian blur of standard deviation ``sigma`` over ``n`` samples, edges mirrored
    without repeating the edge sample (OpenCV's GaussianBlur: odd kernel ``round(8 sigma + 1)``,
    BORDER_REFLECT_101)."""
    radius = max(1, round(sigma * 8 + 1) | 1) // 2
    offsets = np.arange(-radius, radius + 1, dtype=np.float64)
    g = exp(-(offsets * offsets) / (2.0 * sigma * sigma))
    g = g / math.fsum(g.tolist())  # fsum: the exactly rounded sum
    idx = np.arange(n)[:, None] + np.arange(-radius, radius + 1)[None, :]
    period = 2 * (n - 1) if n > 1 else 1
    idx = np.mod(idx, period)
    idx = np.where(idx >= n, period - idx, idx)
    return idx.astype(np.int64), np.broadcast_to(g, idx.shape)


def _table(rows: list[list[tuple[int, Fraction]]]) -> tuple[np.ndarray, np.ndarray]:
    k = max(len(r) for r in rows)
    idx = np.zeros((len(rows), k), np.int64)
    w = np.zeros((len(rows), k), np.float64)
    for o, row in enumerate(rows):
        for t, (j, weight) in enumerate(row):
            idx[o, t], w[o, t] = j, float(weight)  # float(Fraction) is correctly rounded
        idx[o, len(row) :] = row[-1][0]
    return idx, w


def resample(a: np.ndarray, axis: int, taps: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Apply a tap table along ``axis`` of float64 ``a``: ``out[o] = sum_t w[o, t] a[idx[o, t]]``."""
    idx, w = taps
    shape = [1] * a.ndim
    shape[axis] = idx.shape[0]
    out = np.zeros((*a.shape[:axis], idx.shape[0], *a.shape[axis + 1 :]), np.float64)
    for t in range(idx.shape[1]):
        out += np.take(a, idx[:, t], axis=axis) * w[:, t].reshape(shape)
    return out


def resize_area(a: np.ndarray, height: int, width: int) -> np.ndarray:
    """Box-filter ``(H, W, ...)`` float64 ``a`` to ``(height, width, ...)``."""
    out = resample(a, 0, area_taps(a.shape[0], height))
    return resample(out, 1, area_taps(a.shape[1], width))


def bilinear(img: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Sample float64 ``img`` ``(H, W, C)`` at pixel coordinates ``(xs, ys)`` (any equal shapes),
    interpolating linearly; samples outside the image are 0."""
    h, w = img.shape[:2]
    # a zero frame (1 pixel before, 2 after) holds every tap of a coordinate clipped to [-1, size]
    padded = np.zeros((h + 3, w + 3, *img.shape[2:]), np.float64)
    padded[1 : h + 1, 1 : w + 1] = img
    flat = padded.reshape((h + 3) * (w + 3), -1)
    xs, ys = np.clip(xs, -1.0, float(w)), np.clip(ys, -1.0, float(h))
    x0, y0 = np.floor(xs), np.floor(ys)
    fx, fy = (xs - x0).ravel(), (ys - y0).ravel()
    base = ((y0.astype(np.int64) + 1) * (w + 3) + x0.astype(np.int64) + 1).ravel()
    gx, gy = 1.0 - fx, 1.0 - fy
    out = flat[base] * (gy * gx)[:, None]
    out += flat[base + 1] * (gy * fx)[:, None]
    out += flat[base + w + 3] * (fy * gx)[:, None]
    out += flat[base + w + 4] * (fy * fx)[:, None]
    return out.reshape(xs.shape + img.shape[2:])
