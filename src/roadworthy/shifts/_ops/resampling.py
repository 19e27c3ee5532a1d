"""Resampling: separable matrix resampling, box and nearest scaling, zoom, remap, warps and map resizing.

Small images (up to :data:`SMALL_PIXELS`) are resampled as two batched matrix products over the whole
batch, larger ones one image at a time through OpenCV.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from roadworthy.shifts._ops.common import cv2, per_image, per_plane
from roadworthy.threads import single_threaded

SMALL_PIXELS = 64 * 64  # up to this many pixels, separable resampling as two batched matrix products


def separable(x: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """``rows @ plane @ cols.T`` for every plane of the batch, as two large matrix products.

    ``rows`` is ``(H_out, H)`` and ``cols`` ``(W_out, W)``: any linear resampling that acts on rows and
    columns separately (zoom, box down- and upscaling). Fast for small images, where one OpenCV call per
    plane would cost more in call overhead than in arithmetic.
    """
    import torch

    n, c, h, w = x.shape
    ho, wo = rows.shape[0], cols.shape[0]
    # small products run single-threaded: thread hand-offs cost more than they save, badly so on a busy
    # machine (NumPy's BLAS would pick its own thread count, so torch it is)
    with single_threaded():
        t = torch.from_numpy(np.ascontiguousarray(x, np.float32)).reshape(n * c, h, w)
        t = torch.matmul(torch.from_numpy(np.ascontiguousarray(rows, np.float32)), t)  # (n c, ho, w)
        t = torch.matmul(t, torch.from_numpy(np.ascontiguousarray(cols.T, np.float32)))  # (n c, ho, wo)
        return t.reshape(n, c, ho, wo).numpy()


def box_matrix(n_out: int, n_in: int) -> np.ndarray:
    """Box (area) resampling from ``n_in`` to ``n_out`` samples: overlap-weighted means (PIL's BOX filter)."""
    edges_out = np.arange(n_out + 1) * (n_in / n_out)
    lo, hi = edges_out[:-1, None], edges_out[1:, None]
    src_lo, src_hi = np.arange(n_in)[None, :], np.arange(1, n_in + 1)[None, :]
    overlap = np.clip(np.minimum(hi, src_hi) - np.maximum(lo, src_lo), 0, None)
    return (overlap / overlap.sum(axis=1, keepdims=True)).astype(np.float32)


def nearest_matrix(n_out: int, n_in: int) -> np.ndarray:
    """Nearest-neighbour resampling from ``n_in`` to ``n_out`` samples: each output sample takes the input
    sample under its centre (PIL's ``NEAREST``, OpenCV's ``INTER_NEAREST_EXACT``)."""
    m = np.zeros((n_out, n_in), np.float32)
    m[np.arange(n_out), np.minimum(((np.arange(n_out) + 0.5) * (n_in / n_out)).astype(int), n_in - 1)] = 1.0
    return m


def border_matrix(n: int, taps: np.ndarray, border: str) -> np.ndarray:
    """The ``n x n`` matrix of a centred 1-D correlation with ``taps`` and replicated or reflected edges."""
    r = len(taps) // 2
    m = np.zeros((n, n), np.float64)
    rows = np.arange(n)
    for t, wt in enumerate(taps):
        src = rows + t - r
        if border == "replicate":
            src = np.clip(src, 0, n - 1)
        else:  # reflect without repeating the edge (OpenCV's BORDER_REFLECT_101), as often as needed
            period = 2 * (n - 1) if n > 1 else 1
            src = np.abs(src) % period
            src = np.where(src >= n, period - src, src)
        np.add.at(m, (rows, src), wt)
    return m.astype(np.float32)


def zoom_matrix(n: int, factor: float) -> np.ndarray:
    """Bilinear zoom by ``factor`` about the centre of ``n`` samples, edges replicated."""
    centre = (n - 1) / 2
    src = centre + (np.arange(n) - centre) / factor
    i0 = np.floor(src).astype(int)
    a = (src - i0).astype(np.float32)
    m = np.zeros((n, n), np.float32)
    np.add.at(m, (np.arange(n), np.clip(i0, 0, n - 1)), 1 - a)
    np.add.at(m, (np.arange(n), np.clip(i0 + 1, 0, n - 1)), a)
    return m


def crop_zoom(img: np.ndarray, factor: float) -> np.ndarray:
    """One image (``H x W`` or ``H x W x C``) zoomed into its centre by ``factor`` >= 1, same size.

    As the reference ``clipped_zoom``: the central rows and columns are resized up (bilinear, at exactly
    ``factor``) and the part of the result that lies over the image is kept; the zoom centre is off the
    image centre by at most half a pixel. Four times faster than an affine warp for the same result.
    """
    c = cv2()
    h, w = img.shape[:2]
    ch, cw = min(h, math.ceil(h / factor) + 2), min(w, math.ceil(w / factor) + 2)
    top, left = (h - ch) // 2, (w - cw) // 2
    big = c.resize(
        img[top : top + ch, left : left + cw], None, fx=factor, fy=factor, interpolation=c.INTER_LINEAR
    )
    # output row d samples crop row (d + 0.5) / factor - 0.5: the row over image row i of the zoom about the
    # centre (h - 1) / 2 is d = i + t, rounded
    t = round((h / 2 - top) * factor - h / 2)
    le = round((w / 2 - left) * factor - w / 2)
    t = min(max(t, 0), big.shape[0] - h)
    le = min(max(le, 0), big.shape[1] - w)
    return big[t : t + h, le : le + w]


def zoom_center(x: np.ndarray, factor: float) -> np.ndarray:
    """Zoom into the centre of every image by ``factor`` (bilinear, edges replicated)."""
    if factor == 1.0:
        return x.copy()
    _, _, h, w = x.shape
    if h * w <= SMALL_PIXELS:
        return separable(x, zoom_matrix(h, factor), zoom_matrix(w, factor))
    return per_image(lambda im: crop_zoom(im, factor), x)


def zoom_mean(x: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """``(x + sum of x zoomed by each of factors) / (len(factors) + 1)``: ImageNet-C's zoom blur, whose
    factors start at 1, so that the unzoomed image counts twice, as in the reference."""
    _, _, h, w = x.shape
    if h * w <= SMALL_PIXELS:
        out = x.copy()
        for z in factors:
            out += zoom_center(x, float(z))
        out *= np.float32(1 / (len(factors) + 1))
        return out

    def one(img: np.ndarray) -> np.ndarray:
        acc = img.copy()
        for z in factors:
            acc += img if z == 1.0 else crop_zoom(img, float(z))
        acc *= np.float32(1 / (len(factors) + 1))
        return acc

    return per_image(one, x)


@functools.lru_cache(maxsize=8)
def pixel_grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column coordinates ``(yy, xx)`` of an ``h x w`` image, float32, read-only (cached)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    yy.flags.writeable = False
    xx.flags.writeable = False
    return yy, xx


@functools.lru_cache(maxsize=8)
def pixel_grid_xy(h: int, w: int) -> np.ndarray:
    """Integer ``(x, y)`` coordinates of an ``h x w`` image, ``(h, w, 2)`` int16 (OpenCV's integer map)."""
    grid = np.stack(np.meshgrid(np.arange(w), np.arange(h)), axis=-1).astype(np.int16)
    grid.flags.writeable = False
    return grid


def remap(
    x: np.ndarray,
    map_x: np.ndarray,
    map_y: np.ndarray,
    border: str = "reflect",
    fill: np.ndarray | None = None,
) -> np.ndarray:
    """Bilinear resampling: ``out[n, :, i, j] = x[n, :, map_y[n, i, j], map_x[n, i, j]]``.

    ``border`` is ``reflect`` or ``constant`` (then ``fill`` gives a value per image and channel).
    """
    c = cv2()
    mx = np.ascontiguousarray(map_x, np.float32)
    my = np.ascontiguousarray(map_y, np.float32)
    # one call per image on interleaved channels: the map is walked once, not once per channel (up to 2x
    # faster when many coordinates fall outside the image)
    if border == "constant":
        f = np.zeros((x.shape[0], x.shape[1])) if fill is None else np.asarray(fill, np.float64)

        def one(im: np.ndarray, a: np.ndarray, b: np.ndarray, v: np.ndarray) -> np.ndarray:
            value = tuple(float(t) for t in np.atleast_1d(v)) + (0.0,) * (4 - np.size(v))
            return c.remap(im, a, b, c.INTER_LINEAR, borderMode=c.BORDER_CONSTANT, borderValue=value)

        return per_image(one, x, mx, my, f)
    return per_image(
        lambda im, a, b: c.remap(im, a, b, c.INTER_LINEAR, borderMode=c.BORDER_REFLECT_101), x, mx, my
    )


def warp(x: np.ndarray, matrices: np.ndarray, fill: np.ndarray) -> np.ndarray:
    """Warp image ``i`` by the 3x3 homography ``matrices[i]`` (input to output pixel coordinates).

    Bilinear; pixels that come from outside the image get ``fill[i]`` (one value per channel).
    """
    c = cv2()
    _, _, h, w = x.shape

    def one(im: np.ndarray, m: np.ndarray, v: float) -> np.ndarray:
        return c.warpPerspective(
            im, m, (w, h), flags=c.INTER_LINEAR, borderMode=c.BORDER_CONSTANT, borderValue=float(v)
        )

    return per_plane(one, x, np.asarray(matrices, np.float64), np.asarray(fill, np.float64))


def border_fill(x: np.ndarray) -> np.ndarray:
    """Per image and channel, the mean of the one-pixel frame: the colour exposed background gets."""
    frame = np.concatenate([x[:, :, 0, :], x[:, :, -1, :], x[:, :, :, 0], x[:, :, :, -1]], axis=2)
    return frame.mean(axis=2)


def resize_stack(a: np.ndarray, h: int, w: int) -> np.ndarray:
    """Bilinear resize of a ``(n, h0, w0)`` stack of maps to ``(n, h, w)``."""
    c = cv2()
    a = np.asarray(a, np.float32)
    out = np.empty((len(a), h, w), np.float32)
    for m, o in zip(a, out, strict=True):
        c.resize(m, (w, h), o, interpolation=c.INTER_LINEAR)
    return out
