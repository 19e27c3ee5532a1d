"""A procedural road-sign data set: European-style signs on varied scenes, deterministic from a seed.

Each class has a canonical sign drawn once with OpenCV at high resolution (real shapes and colours:
a red octagon with "STOP", a red-rimmed white disc with the speed in black digits, blue discs with
white arrows, ...). Every sample then places that sign on a procedurally drawn background (sky, foliage,
brick or painted walls, street scenes, building fronts) at a random position, scale, small rotation and
viewing angle, sometimes on a pole, with faded paint, blur, and varied brightness, contrast, gamma,
colour cast, shadow and sensor noise. Images are rendered at twice the output size and reduced with
area averaging, so digits and symbols stay legible at 32 x 32.

The output is float32 NCHW in [0, 1], quantised to 8 bits like a camera's (every value is ``k / 255``),
and labels are int64, with classes as balanced as ``n`` allows.

The same ``(n, seed, size, classes)`` gives the same bytes on every x86-64 CPU. OpenCV only rasterises
shapes and text onto uint8 canvases (integer arithmetic); every floating-point step (resampling,
warping, blurring, lighting, noise) is written in :mod:`roadworthy.demo._portable` with correctly
rounded IEEE operations in a fixed order, never with a CPU-dispatched kernel (OpenCV's resize, warp
and blur, NumPy's transcendental functions, BLAS), whose last bit differs between CPUs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import lru_cache
from itertools import pairwise
from typing import Any

import numpy as np

from roadworthy.demo import _portable as pt
from roadworthy.errors import InvalidInputError

CLASS_NAMES: list[str] = [
    "stop",
    "yield",
    "no_entry",
    "speed_limit_30",
    "speed_limit_50",
    "speed_limit_80",
    "no_parking",
    "no_overtaking",
    "pedestrian_crossing",
    "general_caution",
    "roundabout",
    "turn_left",
    "turn_right",
    "keep_right",
    "priority_road",
]
"""The sign classes, in label order."""

# Paint colours, RGB in [0, 255] (the drawing happens on uint8 canvases).
_RED = (200, 24, 30)
_WHITE = (246, 246, 242)
_BLUE = (18, 78, 176)
_YELLOW = (250, 196, 18)
_BLACK = (18, 18, 20)

_DRAW = 256  # side of the canvas a template is drawn on, before it is reduced
_AA = 16  # cv2.LINE_AA


# ----------------------------------------------------------------------------------------------------
# Sign templates


def _pts(xy: Sequence[tuple[float, float]]) -> np.ndarray:
    """Points given in [-1, 1] sign coordinates (y down) as int32 pixel coordinates on the draw canvas."""
    a = (np.asarray(xy, dtype=np.float64) + 1.0) * (_DRAW / 2.0)
    return np.round(a).astype(np.int32)


def _regular(n: int, radius: float, phase: float) -> np.ndarray:
    sin, cos = pt.sin_cos(phase + 2.0 * np.pi * np.arange(n) / n)
    return np.stack([radius * cos, radius * sin], axis=1)


def _fill(img: np.ndarray, xy: np.ndarray | Sequence[tuple[float, float]], colour: tuple[int, ...]) -> None:
    import cv2

    cv2.fillPoly(img, [_pts(xy)], colour, lineType=_AA)


def _disc(
    img: np.ndarray, radius: float, colour: tuple[int, ...], centre: tuple[float, float] = (0, 0)
) -> None:
    import cv2

    c = tuple(round((v + 1.0) * _DRAW / 2.0) for v in centre)
    cv2.circle(img, c, round(radius * _DRAW / 2.0), colour, -1, lineType=_AA)


def _line(
    img: np.ndarray, a: tuple[float, float], b: tuple[float, float], width: float, colour: tuple[int, ...]
) -> None:
    import cv2

    pa, pb = _pts([a, b])
    cv2.line(
        img,
        tuple(int(v) for v in pa),
        tuple(int(v) for v in pb),
        colour,
        max(1, round(width * _DRAW / 2.0)),
        lineType=_AA,
    )


def _text(
    img: np.ndarray, text: str, box: tuple[float, float, float, float], colour: tuple[int, ...]
) -> None:
    """Draw ``text`` stretched to fill ``box`` = (x0, y0, x1, y1) in sign coordinates (bold Hershey glyphs)."""
    import cv2

    font, scale, thick = cv2.FONT_HERSHEY_DUPLEX, 4.0, 13
    (w, h), base = cv2.getTextSize(text, font, scale, thick)
    pad = thick
    mask = np.zeros((h + base + 2 * pad, w + 2 * pad), np.uint8)
    cv2.putText(mask, text, (pad, h + pad), font, scale, 255, thick, lineType=_AA)
    ys, xs = np.nonzero(mask)
    mask = mask[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    (x0, y0), (x1, y1) = _pts([box[:2], box[2:]])
    cover = pt.resize_area(mask.astype(np.float64) / 255.0, int(y1 - y0), int(x1 - x0))[..., None]
    region = img[y0:y1, x0:x1].astype(np.float64)
    region = region * (1.0 - cover) + np.asarray(colour, np.float64) * cover
    img[y0:y1, x0:x1] = np.round(region).astype(np.uint8)


def _arrow(
    img: np.ndarray,
    path: Sequence[tuple[float, float]],
    colour: tuple[int, ...],
    width: float = 0.16,
    head: float = 0.30,
) -> None:
    """A thick polyline ending in a triangular arrow head pointing along its last segment."""
    p = np.asarray(path, dtype=np.float64)
    d = p[-1] - p[-2]
    d /= np.sqrt(d[0] * d[0] + d[1] * d[1])
    n = np.array([-d[1], d[0]])
    base = p[-1] - d * head * 0.9
    for a, b in pairwise(p[:-1]):
        _line(img, tuple(a), tuple(b), width, colour)
    _line(img, tuple(p[-2]), tuple(base + d * 0.02), width, colour)
    for q in p[1:-1]:
        _disc(img, width / 2, colour, tuple(q))
    _fill(img, [tuple(p[-1]), tuple(base + n * head * 0.75), tuple(base - n * head * 0.75)], colour)


def _round_sign(
    img: np.ndarray, ring: tuple[int, ...], face: tuple[int, ...], ring_width: float = 0.17
) -> None:
    _disc(img, 0.97, ring)
    _disc(img, 0.97 - ring_width, face)


def _triangle(img: np.ndarray, up: bool) -> None:
    s = 1.0 if up else -1.0
    outer = [(0.0, -0.98 * s), (0.99, 0.74 * s), (-0.99, 0.74 * s)]
    inner = [(0.0, -0.56 * s), (0.64, 0.52 * s), (-0.64, 0.52 * s)]
    _fill(img, outer, _RED)
    _fill(img, inner, _WHITE)


def _car(img: np.ndarray, cx: float, cy: float, colour: tuple[int, ...]) -> None:
    """A car seen from behind: body, cabin and two wheels."""
    _fill(
        img,
        [(cx - 0.2, cy - 0.02), (cx + 0.2, cy - 0.02), (cx + 0.2, cy + 0.2), (cx - 0.2, cy + 0.2)],
        colour,
    )
    _fill(img, [(cx - 0.13, cy - 0.2), (cx + 0.13, cy - 0.2), (cx + 0.17, cy), (cx - 0.17, cy)], colour)
    _fill(
        img,
        [(cx - 0.18, cy + 0.2), (cx - 0.09, cy + 0.2), (cx - 0.09, cy + 0.3), (cx - 0.18, cy + 0.3)],
        colour,
    )
    _fill(
        img,
        [(cx + 0.09, cy + 0.2), (cx + 0.18, cy + 0.2), (cx + 0.18, cy + 0.3), (cx + 0.09, cy + 0.3)],
        colour,
    )


def _draw_stop(img: np.ndarray) -> None:
    apothem = float(pt.sin_cos(np.pi / 8)[1])  # an octagon of circumradius 1 has this inradius
    _fill(img, _regular(8, 0.99 / apothem, np.pi / 8), _WHITE)
    _fill(img, _regular(8, 0.90 / apothem, np.pi / 8), _RED)
    _text(img, "STOP", (-0.68, -0.25, 0.68, 0.25), _WHITE)


def _draw_yield(img: np.ndarray) -> None:
    _triangle(img, up=False)


def _draw_no_entry(img: np.ndarray) -> None:
    _disc(img, 0.97, _RED)
    _fill(img, [(-0.7, -0.17), (0.7, -0.17), (0.7, 0.17), (-0.7, 0.17)], _WHITE)


def _speed(text: str) -> Callable[[np.ndarray], None]:
    def draw(img: np.ndarray) -> None:
        _round_sign(img, _RED, _WHITE, ring_width=0.2)
        _text(img, text, (-0.5, -0.36, 0.5, 0.36), _BLACK)

    draw.__name__ = f"_draw_speed_limit_{text}"
    return draw


def _draw_no_parking(img: np.ndarray) -> None:
    _round_sign(img, _RED, _BLUE, ring_width=0.2)
    _line(img, (-0.55, -0.55), (0.55, 0.55), 0.2, _RED)


def _draw_no_overtaking(img: np.ndarray) -> None:
    _round_sign(img, _RED, _WHITE, ring_width=0.2)
    _car(img, -0.27, -0.02, _RED)
    _car(img, 0.27, -0.02, _BLACK)


def _draw_pedestrian_crossing(img: np.ndarray) -> None:
    _triangle(img, up=True)
    # a walking figure: head, leaning body, stride, arms
    _disc(img, 0.075, _BLACK, (0.02, -0.3))
    _line(img, (0.0, -0.2), (-0.05, 0.12), 0.1, _BLACK)
    _line(img, (-0.05, 0.12), (-0.22, 0.42), 0.08, _BLACK)
    _line(img, (-0.05, 0.12), (0.16, 0.42), 0.08, _BLACK)
    _line(img, (0.0, -0.12), (-0.18, 0.06), 0.06, _BLACK)
    _line(img, (0.0, -0.12), (0.18, 0.02), 0.06, _BLACK)
    # zebra stripes underfoot
    for x in (-0.36, -0.12, 0.12, 0.36):
        _fill(img, [(x - 0.07, 0.45), (x + 0.07, 0.45), (x + 0.07, 0.5), (x - 0.07, 0.5)], _BLACK)


def _draw_general_caution(img: np.ndarray) -> None:
    _triangle(img, up=True)
    _fill(img, [(-0.07, -0.3), (0.07, -0.3), (0.04, 0.2), (-0.04, 0.2)], _BLACK)
    _disc(img, 0.08, _BLACK, (0.0, 0.35))


def _draw_roundabout(img: np.ndarray) -> None:
    import cv2

    _disc(img, 0.97, _BLUE)
    centre = (_DRAW // 2, _DRAW // 2)
    r = 0.46
    rp = round(r * _DRAW / 2)
    for k in range(3):
        start = -90 + 120 * k + 22
        cv2.ellipse(img, centre, (rp, rp), 0, start, start + 68, _WHITE, int(0.15 * _DRAW / 2), lineType=_AA)
        # arrow heads point counter-clockwise, as on the European sign (traffic keeps right)
        sin, cos = (float(v) for v in pt.sin_cos((start - 22) * (np.pi / 180.0)))
        tip = (r * cos, r * sin)
        along = np.array([sin, -cos])  # counter-clockwise tangent on screen (y down)
        nrm = np.array([cos, sin])
        base = np.array(tip) - along * 0.26
        _fill(img, [tip, tuple(base + nrm * 0.2), tuple(base - nrm * 0.2)], _WHITE)


def _draw_turn_left(img: np.ndarray) -> None:
    _disc(img, 0.97, _BLUE)
    _arrow(img, [(0.2, 0.62), (0.2, -0.12), (-0.62, -0.12)], _WHITE)


def _draw_turn_right(img: np.ndarray) -> None:
    _disc(img, 0.97, _BLUE)
    _arrow(img, [(-0.2, 0.62), (-0.2, -0.12), (0.62, -0.12)], _WHITE)


def _draw_keep_right(img: np.ndarray) -> None:
    _disc(img, 0.97, _BLUE)
    _arrow(img, [(-0.4, -0.4), (0.45, 0.45)], _WHITE, width=0.18, head=0.36)


def _draw_priority_road(img: np.ndarray) -> None:
    _fill(img, [(0, -0.99), (0.99, 0), (0, 0.99), (-0.99, 0)], _BLACK)
    _fill(img, [(0, -0.95), (0.95, 0), (0, 0.95), (-0.95, 0)], _WHITE)
    _fill(img, [(0, -0.62), (0.62, 0), (0, 0.62), (-0.62, 0)], _YELLOW)


_DRAWERS: dict[str, Callable[[np.ndarray], None]] = {
    "stop": _draw_stop,
    "yield": _draw_yield,
    "no_entry": _draw_no_entry,
    "speed_limit_30": _speed("30"),
    "speed_limit_50": _speed("50"),
    "speed_limit_80": _speed("80"),
    "no_parking": _draw_no_parking,
    "no_overtaking": _draw_no_overtaking,
    "pedestrian_crossing": _draw_pedestrian_crossing,
    "general_caution": _draw_general_caution,
    "roundabout": _draw_roundabout,
    "turn_left": _draw_turn_left,
    "turn_right": _draw_turn_right,
    "keep_right": _draw_keep_right,
    "priority_road": _draw_priority_road,
}


@lru_cache(maxsize=64)
def _template(name: str, side: int) -> np.ndarray:
    """The sign ``name`` as float64 RGBA ``(side, side, 4)`` in [0, 1], alpha = 1 on the sign."""
    rgb = np.zeros((_DRAW, _DRAW, 3), np.uint8)
    _DRAWERS[name](rgb)
    # every sign's outline is drawn first in an opaque colour, so the painted area is the sign's shape
    painted = rgb.max(axis=2) > 0
    # trim the anti-aliased fringe against black: erode with a 2 x 2 square (the pixel, its upper and
    # left neighbours and the one diagonal between them must all be painted)
    trimmed = painted.copy()
    trimmed[1:, :] &= painted[:-1, :]
    trimmed[:, 1:] &= painted[:, :-1]
    trimmed[1:, 1:] &= painted[:-1, :-1]
    rgba = np.dstack([rgb.astype(np.float64) / 255.0, trimmed.astype(np.float64)])
    rgba[..., :3] *= rgba[..., 3:]  # premultiplied alpha, so resampling does not bleed black
    out = pt.resize_area(rgba, side, side)
    out.setflags(write=False)
    return out


# ----------------------------------------------------------------------------------------------------
# Backgrounds (float64 HxWx3 in [0, 1], drawn at canvas resolution)


def _noise(rng: np.random.Generator, side: int, cells: int, channels: int = 1) -> np.ndarray:
    """Smooth value noise, about [0, 1]: a ``cells`` x ``cells`` random grid upsampled bicubically."""
    small = rng.random((cells, cells, channels))
    taps = pt.cubic_taps(cells, side)
    return pt.resample(pt.resample(small, 0, taps), 1, taps)


def _sky(rng: np.random.Generator, side: int) -> np.ndarray:
    if rng.random() < 0.7:
        top = np.array([rng.uniform(0.2, 0.55), rng.uniform(0.45, 0.75), rng.uniform(0.8, 1.0)])
    else:  # overcast
        top = np.full(3, rng.uniform(0.55, 0.85)) + rng.uniform(-0.04, 0.04, 3)
    bottom = top + (1.0 - top) * rng.uniform(0.2, 0.8)
    t = (np.arange(side, dtype=np.float64) / (side - 1))[:, None, None]
    img = top * (1 - t) + bottom * t
    clouds = np.clip(_noise(rng, side, int(rng.integers(3, 7))) * 2.0 - 0.8, 0, 1) * rng.uniform(0.0, 0.9)
    return img * (1 - clouds) + 0.95 * clouds


def _foliage(rng: np.random.Generator, side: int) -> np.ndarray:
    if rng.random() < 0.75:
        base = np.array([rng.uniform(0.08, 0.35), rng.uniform(0.28, 0.6), rng.uniform(0.04, 0.22)])
    else:  # autumn leaves or dry shrubs
        base = np.array([rng.uniform(0.45, 0.75), rng.uniform(0.3, 0.5), rng.uniform(0.05, 0.2)])
    coarse = _noise(rng, side, int(rng.integers(3, 6)))
    fine = _noise(rng, side, int(rng.integers(12, 24)), 3)
    img = base * (0.45 + 0.9 * coarse) * (0.7 + 0.6 * fine)
    if rng.random() < 0.4:  # sky showing through the canopy
        holes = (_noise(rng, side, 10) > 0.72).astype(np.float64)
        img = img * (1 - holes) + np.array([0.7, 0.8, 0.95]) * holes
    return img


def _brick(rng: np.random.Generator, side: int) -> np.ndarray:
    kind = rng.random()
    if kind < 0.5:
        base = np.array([rng.uniform(0.45, 0.7), rng.uniform(0.18, 0.32), rng.uniform(0.12, 0.22)])
    elif kind < 0.8:
        base = np.array([rng.uniform(0.6, 0.8), rng.uniform(0.5, 0.65), rng.uniform(0.35, 0.5)])
    else:
        base = np.full(3, rng.uniform(0.35, 0.6))
    bh = int(rng.integers(max(3, side // 14), max(5, side // 6)))
    bw = int(2 * bh + rng.integers(0, bh + 1))
    yy, xx = np.mgrid[0:side, 0:side]
    row = yy // bh
    x = xx + (row % 2) * (bw // 2)
    col = x // bw
    jitter = rng.uniform(0.8, 1.15, size=(row.max() + 1, col.max() + 1))
    img = base * jitter[row, col][..., None]
    mortar = ((yy % bh) == 0) | ((x % bw) == 0)
    img[mortar] = rng.uniform(0.6, 0.85)
    return img


def _wall(rng: np.random.Generator, side: int) -> np.ndarray:
    if rng.random() < 0.5:
        return _brick(rng, side)
    base = rng.uniform(0.25, 0.9, 3)
    stain = _noise(rng, side, int(rng.integers(3, 8)))
    grain = 0.03 * pt.standard_normal(rng, (side, side, 1))
    return base * (0.8 + 0.35 * stain) + grain


def _street(rng: np.random.Generator, side: int) -> np.ndarray:
    img = _sky(rng, side) if rng.random() < 0.5 else _buildings(rng, side)
    horizon = int(side * rng.uniform(0.35, 0.7))
    grey = rng.uniform(0.22, 0.45)
    road = grey + 0.06 * _noise(rng, side, 16)[: side - horizon]
    img[horizon:] = road + 0.02 * pt.standard_normal(rng, (side - horizon, side, 1))
    if rng.random() < 0.7:  # lane marking in perspective
        import cv2

        cx = side * rng.uniform(0.2, 0.8)
        colour = (0.92, 0.92, 0.9) if rng.random() < 0.7 else (0.95, 0.8, 0.2)
        quad = np.array(
            [[cx - 0.3, horizon], [cx + 0.3, horizon], [cx + side * 0.06, side], [cx - side * 0.06, side]]
        )
        mask = np.zeros((side, side), np.uint8)
        cv2.fillConvexPoly(mask, np.round(quad).astype(np.int32), 255, lineType=_AA)
        _paint(img, mask, colour)
    return img


def _buildings(rng: np.random.Generator, side: int) -> np.ndarray:
    img = np.empty((side, side, 3), np.float64)
    img[:] = rng.uniform(0.3, 0.8, 3)
    x = 0
    while x < side:  # facades side by side, each with a grid of windows
        w = int(rng.integers(side // 4, side // 2 + 2))
        top = int(rng.integers(0, side // 3))
        img[top:, x : x + w] = rng.uniform(0.2, 0.85, 3)
        step = int(rng.integers(max(4, side // 12), max(6, side // 6)))
        win = rng.uniform(0.05, 0.35, 3) if rng.random() < 0.7 else rng.uniform(0.6, 0.9, 3)
        for wy in range(top + step // 2, side, step):
            for wx in range(x + step // 3, x + w - step // 2, step):
                img[wy : wy + step // 2, wx : wx + step // 2] = win
        x += w
    return img


def _clutter(rng: np.random.Generator, side: int) -> np.ndarray:
    """Out-of-focus colourful scene: several scales of coloured noise."""
    a = _noise(rng, side, int(rng.integers(2, 5)), 3)
    b = _noise(rng, side, int(rng.integers(6, 14)), 3)
    return 0.15 + 0.7 * (0.65 * a + 0.35 * b)


_BACKGROUNDS: tuple[Callable[[np.random.Generator, int], np.ndarray], ...] = (
    _sky,
    _foliage,
    _wall,
    _street,
    _buildings,
    _clutter,
)
_BACKGROUND_P = np.array([0.22, 0.22, 0.16, 0.16, 0.12, 0.12])


# ----------------------------------------------------------------------------------------------------
# Scene composition


def _render(rng: np.random.Generator, name: str, side: int) -> np.ndarray:
    """One scene with sign ``name`` at canvas resolution, float64 ``(side, side, 3)``."""
    bg = _BACKGROUNDS[int(rng.choice(len(_BACKGROUNDS), p=_BACKGROUND_P))](rng, side)
    diameter = side * rng.uniform(0.42, 0.92)
    slack = max(0.0, (side - diameter) / 2) * 0.85
    cx = side / 2 + rng.uniform(-slack, slack)
    cy = side / 2 + rng.uniform(-slack, slack)
    if rng.random() < 0.6:  # a pole below the sign
        half = max(1.0, side * rng.uniform(0.025, 0.045))
        grey = rng.uniform(0.35, 0.75)
        x0, x1 = round(cx - half), round(cx + half)
        bg[int(cy) :, max(0, x0) : max(0, x1)] = (grey, grey, grey * rng.uniform(0.95, 1.05))

    tpl = _template(name, side)
    sin, cos = (float(v) for v in pt.sin_cos(rng.uniform(-15, 15) * (np.pi / 180.0)))
    scale = diameter / side
    squash = rng.uniform(0.78, 1.0)  # viewed slightly from the side
    # the template is scaled by (scale * squash, scale), rotated, and its centre put at (cx, cy); each
    # scene pixel samples the template where that map sends it back to
    v, u = np.mgrid[0:side, 0:side].astype(np.float64)
    du, dv = u - cx, v - cy
    xs = (cos * du + sin * dv) / (scale * squash) + side / 2
    ys = (cos * dv - sin * du) / scale + side / 2
    warped = pt.bilinear(tpl, xs, ys)
    alpha = warped[..., 3:]
    paint = warped[..., :3]
    # weathered paint: a colour tint and fading towards grey (premultiplied, so scale alpha alike)
    paint = paint * rng.uniform(0.85, 1.05, 3)
    fade = rng.uniform(0.0, 0.3)
    paint = paint * (1 - fade) + alpha * fade * 0.6
    img = bg * (1 - alpha) + paint
    if rng.random() < 0.2:
        _occlude(rng, img, cx, cy, diameter)
    if rng.random() < 0.12:  # camera shake: a short linear motion blur
        img = _motion_blur(img, int(rng.integers(3, 8)), rng.uniform(0, 180))
    sigma = rng.uniform(0.2, 1.5)
    img = pt.resample(img, 0, pt.gaussian_taps(side, sigma))
    return pt.resample(img, 1, pt.gaussian_taps(side, sigma))


def _motion_blur(img: np.ndarray, length: int, degrees: float) -> np.ndarray:
    """Blur ``img`` along a line of ``length`` pixels at ``degrees`` (mirrored edges)."""
    c = (length - 1) / 2
    line = np.zeros((length, length, 1), np.float64)
    line[length // 2] = 1.0 / length
    # the horizontal line rotated about the kernel's centre, resampled bilinearly
    sin, cos = (float(v) for v in pt.sin_cos(degrees * (np.pi / 180.0)))
    v, u = np.mgrid[0:length, 0:length].astype(np.float64)
    kernel = pt.bilinear(line, cos * (u - c) - sin * (v - c) + c, sin * (u - c) + cos * (v - c) + c)[..., 0]
    kernel = kernel / max(math.fsum(kernel.ravel().tolist()), 1e-6)
    h, w = img.shape[:2]
    a = length // 2
    padded = np.pad(img, ((a, length - 1 - a), (a, length - 1 - a), (0, 0)), mode="symmetric")
    out = np.zeros_like(img)
    for i in range(length):
        for j in range(length):
            if kernel[i, j] != 0.0:
                out += padded[i : i + h, j : j + w] * kernel[i, j]
    return out


def _paint(img: np.ndarray, mask: np.ndarray, colour: Sequence[float]) -> None:
    """Blend ``colour`` into float ``img`` in place where the uint8 ``mask`` covers it (255 = fully)."""
    cover = (mask.astype(np.float64) / 255.0)[..., None]
    img *= 1.0 - cover
    img += np.asarray(colour, np.float64) * cover


def _occlude(rng: np.random.Generator, img: np.ndarray, cx: float, cy: float, diameter: float) -> None:
    """Cover part of the sign, in place: a leafy blob or a branch crossing it near its rim."""
    import cv2

    sin, cos = (float(v) for v in pt.sin_cos(rng.uniform(0, 2 * np.pi)))
    r = diameter * rng.uniform(0.4, 0.6)
    px, py = cx + r * cos, cy + r * sin
    mask = np.zeros(img.shape[:2], np.uint8)
    if rng.random() < 0.5:
        colour = (rng.uniform(0.05, 0.3), rng.uniform(0.2, 0.5), rng.uniform(0.03, 0.15))
        axes = (int(diameter * rng.uniform(0.15, 0.3)), int(diameter * rng.uniform(0.1, 0.22)))
        cv2.ellipse(mask, (int(px), int(py)), axes, rng.uniform(0, 180), 0, 360, 255, -1, lineType=_AA)
    else:
        colour = (rng.uniform(0.2, 0.4), rng.uniform(0.15, 0.3), rng.uniform(0.08, 0.18))
        d = np.array([-sin, cos]) * diameter * 0.6
        p0, p1 = np.array([px, py]) - d, np.array([px, py]) + d
        cv2.line(
            mask,
            tuple(int(v) for v in p0),
            tuple(int(v) for v in p1),
            255,
            max(1, int(diameter * rng.uniform(0.05, 0.1))),
            lineType=_AA,
        )
    _paint(img, mask, colour)


def _resolve_classes(classes: Sequence[str | int] | None) -> list[str]:
    if classes is None:
        return list(CLASS_NAMES)
    names = []
    for c in classes:
        if isinstance(c, int | np.integer):
            if not 0 <= int(c) < len(CLASS_NAMES):
                raise InvalidInputError(
                    f"`classes` entries must be in [0, {len(CLASS_NAMES)}). Got {c} instead."
                )
            names.append(CLASS_NAMES[int(c)])
        elif c in _DRAWERS:
            names.append(str(c))
        else:
            raise InvalidInputError(
                f"`classes` has unknown sign '{c}'; known signs: {', '.join(CLASS_NAMES)}."
            )
    if not names or len(set(names)) != len(names):
        raise InvalidInputError(
            f"`classes` must name at least one sign, each once. Got {list(classes)} instead."
        )
    return names


def make_signs(
    n: int,
    seed: int,
    size: int = 32,
    classes: Sequence[str | int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Generate ``n`` road-sign images, deterministically from ``seed``.

    Parameters
    ----------
    n
        Number of images.
    seed
        Seed of every random choice: the same ``(n, seed, size, classes)`` gives identical arrays.
    size
        Side of the square images in pixels (at least 16).
    classes
        Signs to draw, as names from :data:`CLASS_NAMES` or indices into it (default: all). Labels are
        positions in this list, so a subset forms its own data set.

    Returns
    -------
    x : np.ndarray
        float32 ``(n, 3, size, size)`` in [0, 1].
    y : np.ndarray
        int64 ``(n,)``; each class appears ``n // k`` or ``n // k + 1`` times, in shuffled order.
    """
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
        raise InvalidInputError(f"`n` must be a non-negative integer. Got {n!r} instead.")
    if isinstance(size, bool) or not isinstance(size, int | np.integer) or size < 16:
        raise InvalidInputError(f"`size` must be an integer of at least 16. Got {size!r} instead.")
    return _make(n, (int(seed),), size, classes)


def _make(
    n: int,
    entropy: tuple[int, ...],
    size: int = 32,
    classes: Sequence[str | int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`make_signs` on the random stream named by ``entropy`` (the demo draws its splits from
    separate streams of one seed)."""
    names = _resolve_classes(classes)
    rng = np.random.default_rng(np.random.SeedSequence([0x5157, *entropy]))
    k = len(names)
    y = rng.permutation(np.arange(n) % k).astype(np.int64)
    canvas = 2 * int(size)
    x = np.empty((n, size, size, 3), np.float64)
    for i in range(n):
        x[i] = pt.resize_area(_render(rng, names[int(y[i])], canvas), size, size)
    pixels = _light(rng, x)
    return np.ascontiguousarray(pixels.transpose(0, 3, 1, 2)).astype(np.float32) / np.float32(255), y


_LIGHT_CHUNK = 256  # images per step of the photometric pass (fixed: the noise is drawn chunk by chunk)


def _light(rng: np.random.Generator, x: np.ndarray) -> np.ndarray:
    """Photometric variation of the float64 scenes ``x`` ``(n, h, w, 3)``: exposure, colour cast,
    contrast, gamma, a soft shadow across the frame and sensor noise; then clip to [0, 1] and quantise
    to 8 bits. Returns uint8 ``(n, h, w, 3)``; ``x`` is overwritten."""
    n, h, w, _ = x.shape
    # every image's parameters first, then the noise chunk by chunk
    exposure = rng.uniform(0.45, 1.3, (n, 1, 1, 1))
    cast = rng.uniform(0.9, 1.1, (n, 1, 1, 3))
    contrast = rng.uniform(0.5, 1.15, (n, 1, 1, 1))
    gamma = rng.uniform(0.75, 1.35, (n, 1, 1, 1))
    # a shadow: brightness falls off linearly along a random direction, in 40% of the images
    sin, cos = pt.sin_cos(rng.uniform(0, 2 * np.pi, n))
    strength = rng.uniform(0.0, 0.45, n) * (rng.random(n) < 0.4)
    grain = rng.uniform(0.0, 0.04, (n, 1, 1, 1))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    yy, xx = yy / max(h - 1, 1) - 0.5, xx / max(w - 1, 1) - 0.5
    out = np.empty(x.shape, np.uint8)
    for lo in range(0, n, _LIGHT_CHUNK):
        part = slice(lo, min(n, lo + _LIGHT_CHUNK))
        c = np.clip(x[part], 0.0, 1.0)
        c = c * exposure[part] * cast[part]
        m = len(c)
        mean = (np.add.reduce(c.reshape(m, -1), axis=1) / (h * w * 3)).reshape(m, 1, 1, 1)
        c = np.clip((c - mean) * contrast[part] + mean, 0.0, 1.0)
        c = pt.power(c, gamma[part])
        ramp = cos[part, None, None] * xx + sin[part, None, None] * yy + 0.5  # ~[0, 1]
        c = c * (1.0 - strength[part, None, None] * np.clip(ramp, 0, 1))[..., None]
        c = c + pt.standard_normal(rng, c.shape) * grain[part]
        out[part] = np.rint(np.clip(c, 0.0, 1.0) * 255.0).astype(np.uint8)
    return out


def class_templates(size: int = 64) -> dict[str, np.ndarray]:
    """The clean sign of every class as float32 RGBA ``(size, size, 4)`` (premultiplied alpha)."""
    return {name: _template(name, size).astype(np.float32) for name in CLASS_NAMES}


def _contact_sheet(x: np.ndarray, y: np.ndarray, per_class: int, scale: int = 3) -> Any:
    """A grid image (HxWx3 uint8): one row per class, ``per_class`` samples each, upscaled ``scale`` times."""
    k = int(y.max()) + 1
    side = x.shape[-1] * scale
    sheet = np.ones((k * (side + 2), per_class * (side + 2), 3), np.uint8) * 255
    for c in range(k):
        for j, i in enumerate(np.flatnonzero(y == c)[:per_class]):
            tile = (x[i].transpose(1, 2, 0) * 255).round().astype(np.uint8).repeat(scale, 0).repeat(scale, 1)
            sheet[c * (side + 2) : c * (side + 2) + side, j * (side + 2) : j * (side + 2) + side] = tile
    return sheet
