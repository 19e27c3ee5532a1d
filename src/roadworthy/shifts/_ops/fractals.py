"""Random textures and masks: diamond-square plasma (fog, frost), value noise over octaves, smoothed
uniform noise (elastic and glass displacements), and smooth random curves (vines, scratches).
"""

from __future__ import annotations

import numpy as np

from roadworthy.shifts._ops.common import cv2
from roadworthy.shifts._ops.noise import signed_uniform
from roadworthy.shifts._ops.resampling import resize_stack


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
