"""Batch array operations the shifts are built from: noise, blurs, resampling, fractals, masks.

Everything takes and returns float32 NCHW batches. Where OpenCV does the work (its filters are much
faster than NumPy or SciPy for one image) it is called once per image on an HWC view, because OpenCV
filters accept at most 4 channels per call; everything else is vectorised over the whole batch.
"""

from __future__ import annotations

import functools
import math
import platform
from collections.abc import Callable

import numpy as np

from roadworthy.threads import single_threaded

# ----------------------------------------------------------------------------------------- layout


def to_hwc(x: np.ndarray) -> np.ndarray:
    """``(N, C, H, W)`` to contiguous ``(N, H, W, C)``."""
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1))


def to_nchw(y: np.ndarray) -> np.ndarray:
    """``(N, H, W, C)`` or ``(N, H, W)`` to contiguous float32 ``(N, C, H, W)``."""
    if y.ndim == 3:
        y = y[..., None]
    return np.ascontiguousarray(y.transpose(0, 3, 1, 2), dtype=np.float32)


def per_image(fn: Callable[..., np.ndarray], x: np.ndarray, *args: object) -> np.ndarray:
    """``fn(image_hwc, *per_image_args)`` for each image; gray images are passed as 2-D arrays.

    ``args`` are sequences with one entry per image (kernels, maps, fill values). Channels are interleaved
    and split again with OpenCV's ``merge``/``split``, several times faster than a NumPy transpose.
    """
    c = cv2()
    n, ch = x.shape[:2]
    out = np.empty(x.shape, np.float32)
    for i in range(n):
        img = x[i, 0] if ch == 1 else c.merge(list(x[i]))
        res = fn(img, *(a[i] for a in args))
        if ch == 1:
            out[i, 0] = res
        else:
            c.split(res, list(out[i]))  # straight into the output planes
    return out


def per_plane(fn: Callable[..., np.ndarray], x: np.ndarray, *args: object) -> np.ndarray:
    """``fn(plane, *per_image_args)`` for each 2-D channel plane of each image (channel-independent ops).

    Planes of a contiguous NCHW batch are contiguous, so OpenCV reads them without any reshuffling.
    ``args`` have one entry per image; an entry with one value per channel (a fill colour) is indexed by
    channel as well when it is a 1-D array of the channel count.
    """
    n, ch = x.shape[:2]
    x = np.ascontiguousarray(x, np.float32)
    out = np.empty(x.shape, np.float32)
    for i in range(n):
        per = [a[i] for a in args]
        for k in range(ch):
            out[i, k] = fn(
                x[i, k], *(v[k] if isinstance(v, np.ndarray) and v.shape == (ch,) else v for v in per)
            )
    return out


def cv2():
    import cv2 as _cv2

    return _cv2


# ----------------------------------------------------------------------------------------- noise


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


# ----------------------------------------------------------------------------------------- filters


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
        return separable(
            x, _border_matrix(x.shape[2], taps, border), _border_matrix(x.shape[3], taps, border)
        )
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


# ----------------------------------------------------------------------------------------- resampling


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


def _border_matrix(n: int, taps: np.ndarray, border: str) -> np.ndarray:
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


# ----------------------------------------------------------------------------------------- textures


def smooth_noise(rng: np.random.Generator, n: int, h: int, w: int, sigma: float) -> np.ndarray:
    """Uniform(-1, 1) noise smoothed by a Gaussian of ``sigma`` px (reflecting edges), ``(n, h, w)``.

    A wide Gaussian is applied on a coarser grid and upsampled: the same field in distribution (the
    amplitude is matched), at a fraction of the cost.
    """
    c = cv2()
    step = max(1, int(sigma // 3))
    gh, gw = -(-h // step), -(-w // step)
    field = signed_uniform(rng, (n, gh, gw))
    # SciPy's gaussian_filter(mode="reflect", truncate=3) per map: the same kernel, OpenCV speed
    s = sigma / step
    k = 2 * int(3.0 * s + 0.5) + 1
    for m in field:
        c.GaussianBlur(m, (k, k), s, dst=m, borderType=c.BORDER_REFLECT)
    field /= step  # a coarse cell stands for step^2 independent pixels: its smoothed mean is step x larger
    if step > 1:
        field = resize_stack(field, h, w)
    return field


def resize_stack(a: np.ndarray, h: int, w: int) -> np.ndarray:
    """Bilinear resize of a ``(n, h0, w0)`` stack of maps to ``(n, h, w)``."""
    c = cv2()
    a = np.asarray(a, np.float32)
    out = np.empty((len(a), h, w), np.float32)
    for m, o in zip(a, out, strict=True):
        c.resize(m, (w, h), o, interpolation=c.INTER_LINEAR)
    return out


def signed_uniform(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Uniform float32 noise in [-1, 1] at 16-bit resolution (65,536 evenly spaced values).

    About twice as cheap as ``rng.random(dtype=np.float32)``; ample for textures and displacements.
    """
    out = uniform_bits(rng, math.prod(shape)).astype(np.float32).reshape(shape)
    out *= np.float32(2 / 65535)
    out -= np.float32(1)
    return out


def _wrapped(a: np.ndarray, after: bool) -> np.ndarray:
    """``(n, k, k)`` maps extended periodically by one row and column after (or before) them: the
    neighbours across the edge of a periodic map, as views instead of ``np.roll`` copies."""
    n, k, _ = a.shape
    out = np.empty((n, k + 1, k + 1), a.dtype)
    if after:
        out[:, :k, :k] = a
        out[:, k, :k] = a[:, 0]
        out[:, :, k] = out[:, :, 0]
    else:
        out[:, 1:, 1:] = a
        out[:, 0, 1:] = a[:, -1]
        out[:, :, 0] = out[:, :, k]
    return out


def plasma_fractal(rng: np.random.Generator, n: int, mapsize: int, decay: float) -> np.ndarray:
    """``n`` diamond-square height maps ``(n, mapsize, mapsize)`` in [0, 1] (ImageNet-C's fog texture).

    ``mapsize`` must be a power of two; ``decay`` is the factor by which the random offsets shrink per
    octave (smaller = rougher). The same recursion as the reference ``plasma_fractal`` (periodic edges,
    offsets of ``wibble * U(-wibble, wibble)``), built level by level: the grid of known points is doubled
    in each step, so every operation is contiguous and in float32.
    """
    grid = np.zeros((n, 1, 1), np.float32)
    wibble = 100.0
    quarter = np.float32(0.25)
    while grid.shape[1] < mapsize:
        k = grid.shape[1]
        noise = signed_uniform(rng, (3, n, k, k))
        noise *= np.float32(wibble * wibble)
        g = _wrapped(grid, after=True)  # g[:, i + 1, j + 1] is the corner below right of grid[:, i, j]
        corner, right, below = g[:, :-1, :-1], g[:, :-1, 1:], g[:, 1:, :-1]
        # square step: the centre of each cell, from its four corners
        centre = corner + below
        centre += right
        centre += g[:, 1:, 1:]
        centre *= quarter
        centre += noise[0]
        cp = _wrapped(centre, after=False)  # cp[:, i, j] is the centre above left of centre[:, i, j]
        # diamond step: the midpoint of a cell's top edge (two corners, the centres below and above) ...
        top = corner + right
        top += centre
        top += cp[:, :-1, 1:]
        top *= quarter
        top += noise[1]
        # ... and of its left edge (two corners, the centres right and left)
        left = corner + below
        left += centre
        left += cp[:, 1:, :-1]
        left *= quarter
        left += noise[2]
        finer = np.empty((n, 2 * k, 2 * k), np.float32)
        finer[:, 0::2, 0::2] = grid
        finer[:, 1::2, 1::2] = centre
        finer[:, 0::2, 1::2] = top
        finer[:, 1::2, 0::2] = left
        grid = finer
        wibble /= decay
    grid -= grid.min(axis=(1, 2), keepdims=True)
    grid /= np.maximum(grid.max(axis=(1, 2), keepdims=True), np.float32(1e-12))
    return grid


def fractal_noise(
    rng: np.random.Generator, n: int, h: int, w: int, base_cells: int = 4, octaves: int = 4
) -> np.ndarray:
    """Value noise summed over octaves (persistence 0.5), normalised per map to [0, 1]; ``(n, h, w)``."""
    out = np.zeros((n, h, w), np.float32)
    amp, total = 1.0, 0.0
    for o in range(octaves):
        cells = base_cells * 2**o
        coarse = rng.random((n, cells + 1, cells + 1), dtype=np.float32)
        out += amp * resize_stack(coarse, h, w)
        total += amp
        amp *= 0.5
    out -= out.min(axis=(1, 2), keepdims=True)
    out /= np.maximum(out.max(axis=(1, 2), keepdims=True), 1e-6)
    return out


def curves_mask(
    rng: np.random.Generator,
    n: int,
    h: int,
    w: int,
    n_curves: int,
    length: float,
    thickness: float,
    curl: float = 0.35,
    from_edge: bool = True,
) -> np.ndarray:
    """Masks ``(n, h, w)`` in {0, 1} with ``n_curves`` smooth random curves per image.

    Each curve is a random walk whose heading drifts (``curl`` radians per pixel, smoothed), starting at
    the image border heading inwards (``from_edge``) or anywhere; ``length`` and ``thickness`` in px.
    Curves are rasterised for the whole batch at once by sampling them every half pixel.
    """
    steps = max(2, int(2 * length))
    k = n * n_curves
    if from_edge:
        side = rng.integers(0, 4, k)
        t = rng.random(k)
        y0 = np.where(side == 0, 0.0, np.where(side == 1, h - 1.0, t * (h - 1)))
        x0 = np.where(side == 2, 0.0, np.where(side == 3, w - 1.0, t * (w - 1)))
        head0 = np.choose(side, [np.pi / 2, -np.pi / 2, 0.0, np.pi]) + rng.uniform(-0.6, 0.6, k)
    else:
        y0, x0 = rng.random(k) * (h - 1), rng.random(k) * (w - 1)
        head0 = rng.uniform(-np.pi, np.pi, k)
    turn = rng.normal(0.0, curl, (k, steps)) * 0.5
    turn = np.cumsum(turn, axis=1)
    turn = np.cumsum(turn, axis=1) / np.arange(1, steps + 1)  # a smoothly drifting heading
    head = head0[:, None] + turn
    ys = y0[:, None] + np.cumsum(0.5 * np.sin(head), axis=1)
    xs = x0[:, None] + np.cumsum(0.5 * np.cos(head), axis=1)
    inside = (ys >= 0) & (ys <= h - 1) & (xs >= 0) & (xs <= w - 1)
    img = np.repeat(np.arange(n), n_curves)[:, None].repeat(steps, axis=1)
    mask = np.zeros((n, h, w), np.float32)
    mask[img[inside], np.rint(ys[inside]).astype(int), np.rint(xs[inside]).astype(int)] = 1.0
    r = round(thickness / 2)
    if r >= 1:
        c = cv2()
        kernel = c.getStructuringElement(c.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
        mask = np.stack([c.dilate(m, kernel) for m in mask])
    return mask


def rgb_to_gray(x: np.ndarray) -> np.ndarray:
    """Luminance ``(N, 1, H, W)`` (ITU-R 601 weights, as OpenCV and PIL use); gray input passes through."""
    if x.shape[1] == 1:
        return x
    wts = np.array([0.299, 0.587, 0.114], np.float32)[None, :, None, None]
    return (x * wts).sum(axis=1, keepdims=True)


def colour(x: np.ndarray, rgb: tuple[float, float, float]) -> np.ndarray:
    """A colour ``(1, C, 1, 1)`` for ``x``'s channel count (its luminance for gray images)."""
    c = np.array(rgb, np.float32)
    if x.shape[1] == 1:
        c = np.array([0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]], np.float32)
    return c[None, :, None, None]


def equalize_hist_u8(a: np.ndarray) -> np.ndarray:
    """OpenCV's ``equalizeHist`` for each of a stack of uint8 maps ``(n, h, w)``."""
    c = cv2()
    return np.stack([c.equalizeHist(m) for m in np.ascontiguousarray(a, np.uint8)])
