"""Filters: Gaussian, disk (defocus) and motion blur, and correlation with any kernel.

Small kernels go through OpenCV's direct filter, large ones through a DFT with the kernel's spectrum
computed once per batch; a motion-blur line is cut into small dense pieces so that it costs its taps,
not its bounding box.
"""

from __future__ import annotations

import functools
import math
import platform

import numpy as np

from roadworthy.shifts._ops.common import cv2, per_image, per_plane
from roadworthy.shifts._ops.resampling import SMALL_PIXELS, border_matrix, separable

#: kernels of at most this many cells go through OpenCV's direct (spatial) filter, which visits only the
#: non-zero taps; larger ones through its DFT (OpenCV's switch-over is 130 cells on x86, 50 elsewhere)
DIRECT_FILTER_CELLS = 121 if platform.machine().lower() in ("x86_64", "amd64", "i686", "x86") else 49


def gaussian_blur(
    x: np.ndarray, sigma: float, truncate: float = 4.0, border: str = "replicate"
) -> np.ndarray:
    """Gaussian blur of every image (sigma in pixels; kernel radius ``truncate * sigma``)."""
    if sigma <= 0.01:
        return x.copy()
    c = cv2()
    k = 2 * math.ceil(truncate * sigma) + 1
    b = c.BORDER_REPLICATE if border == "replicate" else c.BORDER_REFLECT_101
    if x.shape[2] * x.shape[3] <= SMALL_PIXELS:
        taps = c.getGaussianKernel(k, sigma, c.CV_64F).ravel()
        return separable(x, border_matrix(x.shape[2], taps, border), border_matrix(x.shape[3], taps, border))
    return per_plane(lambda im: c.GaussianBlur(im, (k, k), sigma, borderType=b), x)


def filter2d(x: np.ndarray, kernel: np.ndarray, border: str = "reflect") -> np.ndarray:
    """Correlate every image with one ``kernel`` (centre anchor).

    Small kernels go through OpenCV's direct filter; larger ones through a DFT of the padded plane with
    the kernel's spectrum computed once per call (OpenCV's filter2D recomputes it for every plane and works
    on tiles: about 1.7x slower for a 17 x 17 kernel on 224 px images). Same result to float rounding.
    """
    c = cv2()
    b = c.BORDER_REPLICATE if border == "replicate" else c.BORDER_REFLECT_101
    k = np.ascontiguousarray(kernel, np.float32)
    kh, kw = k.shape
    if kh * kw <= DIRECT_FILTER_CELLS or kh % 2 == 0 or kw % 2 == 0:
        return per_plane(lambda im: c.filter2D(im, -1, k, borderType=b), x)
    _, _, h, w = x.shape
    py, px = kh // 2, kw // 2
    sh, sw = c.getOptimalDFTSize(h + kh - 1), c.getOptimalDFTSize(w + kw - 1)
    padded_kernel = np.zeros((sh, sw), np.float32)
    padded_kernel[:kh, :kw] = k[::-1, ::-1]  # correlation = convolution with the flipped kernel
    spectrum = c.dft(padded_kernel)

    def one(im: np.ndarray) -> np.ndarray:
        a = c.copyMakeBorder(im, py, py, px, px, b)
        a = c.copyMakeBorder(a, 0, sh - a.shape[0], 0, sw - a.shape[1], c.BORDER_CONSTANT, value=0)
        f = c.dft(a)
        c.mulSpectrums(f, spectrum, 0, f)
        return c.idft(f, flags=c.DFT_SCALE | c.DFT_REAL_OUTPUT)[kh - 1 : kh - 1 + h, kw - 1 : kw - 1 + w]

    return per_plane(one, x)


def line_taps(width: int, sigma: float, angle_deg: float) -> list[tuple[int, int, float]]:
    """Taps ``(dy, dx, weight)`` of a one-sided motion-blur line: Gaussian weights along ``angle``.

    ``out(p) = sum_i w_i * x(p + (dy_i, dx_i))``, the line kernel ImageMagick's motion blur uses
    (as re-implemented by the ``imagecorruptions`` package), with repeated positions merged.
    """
    i = np.arange(width, dtype=np.float64)
    w = np.exp(-(i**2) / (2 * sigma**2))
    w /= w.sum()
    a = np.deg2rad(angle_deg)
    dy = np.ceil(i * np.sin(a) - 0.5).astype(int)
    dx = np.ceil(i * np.cos(a) - 0.5).astype(int)
    taps: dict[tuple[int, int], float] = {}
    for yy, xx, ww in zip(dy.tolist(), dx.tolist(), w.tolist(), strict=False):
        taps[(yy, xx)] = taps.get((yy, xx), 0.0) + ww
    return [(yy, xx, ww) for (yy, xx), ww in taps.items()]


def line_segments(taps: list[tuple[int, int, float]]) -> list[tuple[int, int, np.ndarray]]:
    """Split a sparse kernel's taps (in line order) into small dense kernels ``(top, left, kernel)``.

    Each piece spans at most :data:`DIRECT_FILTER_CELLS` cells, so OpenCV filters it directly, at a cost
    of its few non-zero taps, instead of through a DFT of the whole line's bounding box.
    """
    pieces: list[list[tuple[int, int, float]]] = []
    y0 = y1 = x0 = x1 = 0
    for dy, dx, wt in taps:
        if pieces:
            ny0, ny1, nx0, nx1 = min(y0, dy), max(y1, dy), min(x0, dx), max(x1, dx)
            if (ny1 - ny0 + 1) * (nx1 - nx0 + 1) <= DIRECT_FILTER_CELLS:
                pieces[-1].append((dy, dx, wt))
                y0, y1, x0, x1 = ny0, ny1, nx0, nx1
                continue
        pieces.append([(dy, dx, wt)])
        y0 = y1 = dy
        x0 = x1 = dx
    out = []
    for piece in pieces:
        top, left = min(t[0] for t in piece), min(t[1] for t in piece)
        k = np.zeros((max(t[0] for t in piece) - top + 1, max(t[1] for t in piece) - left + 1), np.float32)
        for dy, dx, wt in piece:
            k[dy - top, dx - left] += wt
        out.append((top, left, k))
    return out


@functools.lru_cache(maxsize=1024)
def _line_pieces(width: int, sigma: float, angle: int, h: int, w: int) -> tuple[int, list]:
    """Padding and :func:`line_segments` of the motion-blur line (cached: angles are whole degrees)."""
    taps = [t for t in line_taps(width, sigma, float(angle)) if abs(t[0]) < h and abs(t[1]) < w]
    return max(max(abs(t[0]), abs(t[1])) for t in taps), line_segments(taps)


def motion_blur(x: np.ndarray, radius: float, sigma: float, angles: np.ndarray) -> np.ndarray:
    """Motion blur of image ``i`` along ``angles[i]`` degrees (line length ``2 * radius + 1`` px).

    Angles are rounded to whole degrees. The line kernel is sparse: it is cut into short pieces that
    OpenCV's direct filter applies at the cost of their non-zero taps (a dense 2-D filter of the line's
    bounding box would cost its whole area); edges are replicated.
    """
    c = cv2()
    width = max(1, round(2 * radius + 1))
    sigma = max(float(sigma), 1e-3)
    _n, _ch, h, w = x.shape

    def one(img: np.ndarray, angle: float) -> np.ndarray:
        p, segs = _line_pieces(width, sigma, round(angle), h, w)
        padded = c.copyMakeBorder(img, p, p, p, p, c.BORDER_REPLICATE) if p else img
        acc = None
        for top, left, k in segs:
            kh, kw = k.shape
            view = padded[p + top : p + top + h + kh - 1, p + left : p + left + w + kw - 1]
            part = c.filter2D(view, -1, k, anchor=(0, 0), borderType=c.BORDER_REPLICATE)[:h, :w]
            if acc is None:
                acc = np.ascontiguousarray(part)
            else:
                acc += part
        return acc

    return per_image(one, x, np.rint(angles))


def disk_kernel(radius: float, alias_sigma: float) -> np.ndarray:
    """A normalised disk of ``radius`` px smoothed by a small Gaussian (ImageNet-C's defocus kernel)."""
    c = cv2()
    half = math.ceil(radius) + 2
    r = np.arange(-half, half + 1)
    yy, xx = np.meshgrid(r, r, indexing="ij")
    k = ((yy**2 + xx**2) <= radius**2).astype(np.float32)
    k /= k.sum()
    ks = 3 if radius <= 8 else 5
    if alias_sigma > 0:
        k = c.GaussianBlur(k, (ks, ks), alias_sigma)
    k /= k.sum()
    # drop all-but-zero outer rings (weights below 1e-6 of the total): a smaller kernel, same blur
    keep = np.flatnonzero(np.maximum(k.max(axis=0), k.max(axis=1)) > 1e-6)
    trim = min(int(keep[0]), len(k) - 1 - int(keep[-1]))
    if trim > 0:
        k = k[trim:-trim, trim:-trim]
    return k / k.sum()
