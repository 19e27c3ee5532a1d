"""What happens to a road sign outdoors: sun fading, vegetation growing over it, stickers and graffiti.

These are the article's own shifts (not from ImageNet-C), written procedurally so that no image files are
needed. Severity grows the affected share of the image or the strength of the change; every layout comes
from the generator passed in.
"""

from __future__ import annotations

import numpy as np

from roadworthy.shifts import _ops as ops
from roadworthy.shifts.base import image_size, shift


def _ramp(rng: np.random.Generator, n: int, h: int, w: int) -> np.ndarray:
    """A linear ramp ``(n, 1, h, w)`` from 0 to 1 across each image, in a random direction per image."""
    a = rng.uniform(0, 2 * np.pi, n).astype(np.float32)
    yy = np.linspace(-0.5, 0.5, h, dtype=np.float32)[None, :, None]
    xx = np.linspace(-0.5, 0.5, w, dtype=np.float32)[None, None, :]
    r = np.cos(a)[:, None, None] * xx + np.sin(a)[:, None, None] * yy
    r -= r.min(axis=(1, 2), keepdims=True)
    return (r / np.maximum(r.max(axis=(1, 2), keepdims=True), 1e-6))[:, None]


@shift("sun_fading", "article", "Sun fading: UV-bleached paint, reds first, unevenly across the sign.")
def sun_fading(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    amount = [0.15, 0.3, 0.45, 0.6, 0.75][severity - 1]
    n, c, h, w = x.shape
    # the exposed side fades most: 60% to 100% of the amount along a random direction, mottled
    mottle = ops.fractal_noise(rng, n, h, w, base_cells=2, octaves=3)[:, None]
    a = np.float32(amount) * np.clip(0.6 + 0.4 * _ramp(rng, n, h, w) + 0.2 * (mottle - 0.5), 0.0, 1.0)
    lum = ops.rgb_to_gray(x)
    if c == 3:
        rate = np.array([1.0, 0.75, 0.55], np.float32)[None, :, None, None]  # red pigment goes first
        tint = np.array([0.8, 0.86, 0.9], np.float32)[None, :, None, None]  # bleached paint is pale, cool
    else:
        rate = np.array([0.75], np.float32)[None, :, None, None]
        tint = np.array([0.85], np.float32)[None, :, None, None]
    target = 0.65 * tint + 0.35 * lum
    return x + a * rate * (target - x)


@shift("vegetation", "article", "Vegetation overgrowth: moss creeping in from one side and vines across.")
def vegetation(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    coverage = [0.06, 0.12, 0.2, 0.3, 0.42][severity - 1]
    n, _c, h, w = x.shape
    size = image_size(x)
    # moss: a fractal patch growing from a random edge, its area fixed by a per-image quantile
    field = ops.fractal_noise(rng, n, h, w, base_cells=3, octaves=4)[:, None]
    field = 0.6 * field + 0.8 * _ramp(rng, n, h, w)
    level = np.quantile(field.reshape(n, -1), 1 - 0.7 * coverage, axis=1)[:, None, None, None]
    moss = ops.gaussian_blur((field >= level).astype(np.float32), max(0.4, size / 120))
    texture = (
        0.55 + 0.9 * ops.fractal_noise(rng, n, h, w, base_cells=max(4, int(size / 6)), octaves=2)[:, None]
    )
    moss_colour = ops.colour(x, (0.26, 0.36, 0.12)) * texture
    out = x * (1 - moss) + moss_colour * moss
    # vines: thin stems from the border with leafy clusters along them
    stems = ops.curves_mask(
        rng,
        n,
        h,
        w,
        n_curves=1 + severity,
        length=(0.5 + 0.12 * severity) * size,
        thickness=max(1.0, size / 70),
        curl=0.25,
    )
    buds = (stems * ops.uniform(rng, stems.shape) < 0.02 + 0.01 * severity * (stems > 0)).astype(
        np.float32
    ) * stems
    cv2 = ops.cv2()
    r = max(1, round(size / 28))
    leaf_kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    leaves = np.stack([cv2.dilate(b, leaf_kernel) for b in buds])
    vine = np.clip(stems + leaves, 0.0, 1.0)[:, None]
    vine = ops.gaussian_blur(vine, max(0.3, size / 200))
    shade = 0.7 + 0.6 * ops.uniform(rng, (n, 1, 1, 1))
    vine_colour = ops.colour(x, (0.2, 0.45, 0.13)) * shade
    return out * (1 - vine) + vine_colour * vine


_PALETTE = np.array(
    [
        (1.0, 1.0, 1.0),
        (0.95, 0.85, 0.1),
        (0.05, 0.05, 0.05),
        (0.85, 0.1, 0.15),
        (0.1, 0.35, 0.8),
        (0.1, 0.6, 0.3),
        (0.95, 0.45, 0.1),
        (0.75, 0.2, 0.75),
    ],
    np.float32,
)


@shift("stickers", "article", "Stickers and graffiti: opaque rectangles and spray-painted strokes.")
def stickers(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    area = [0.04, 0.08, 0.13, 0.19, 0.26][severity - 1]
    n, c, h, w = x.shape
    size = image_size(x)
    out = x.copy()
    # stickers: k rectangles sharing 70% of the area, random aspect, colour and position
    k = 1 + (severity >= 3) + (severity >= 5)
    rect_area = 0.7 * area * h * w / k
    aspect = np.exp(rng.uniform(np.log(0.5), np.log(2.0), (n, k)))
    rh = np.clip(np.sqrt(rect_area * aspect), 1, h)
    rw = np.clip(rect_area / rh, 1, w)
    top = rng.uniform(0, 1, (n, k)) * (h - rh)
    left = rng.uniform(0, 1, (n, k)) * (w - rw)
    yy = np.arange(h, dtype=np.float32)[None, None, :, None] + 0.5
    xx = np.arange(w, dtype=np.float32)[None, None, None, :] + 0.5
    inside = (
        (yy >= top[..., None, None])
        & (yy < (top + rh)[..., None, None])
        & (xx >= left[..., None, None])
        & (xx < (left + rw)[..., None, None])
    )  # (n, k, h, w)
    colours = _PALETTE[rng.integers(0, len(_PALETTE), (n, k))]  # (n, k, 3)
    if c == 1:
        colours = (colours @ np.array([0.299, 0.587, 0.114], np.float32))[..., None]
    for j in range(k):  # later stickers cover earlier ones
        m = inside[:, j][:, None]
        out = np.where(m, colours[:, j][:, :, None, None], out)
    # graffiti: a few thick, soft-edged strokes in one spray colour per image
    strokes = ops.curves_mask(
        rng,
        n,
        h,
        w,
        n_curves=severity,
        length=0.45 * size,
        thickness=max(1.0, size / 22),
        curl=0.5,
        from_edge=False,
    )[:, None]
    strokes = ops.gaussian_blur(strokes, max(0.3, size / 90)) * np.float32(0.92)
    spray = _PALETTE[rng.integers(0, len(_PALETTE), n)]
    if c == 1:
        spray = (spray @ np.array([0.299, 0.587, 0.114], np.float32))[:, None]
    return out * (1 - strokes) + spray[:, :, None, None] * strokes
