"""Where the camera is: rotation, scale, translation and perspective tilt.

Each image gets its own random direction (sign of the angle, zoom in or out, shift direction, tilt axis)
at the severity's magnitude. Uncovered areas are filled with the mean colour of the image's border, a
stand-in for the background around the object, so that no black corners give the model a cue.
"""

from __future__ import annotations

import numpy as np

from roadworthy.shifts import _ops as ops
from roadworthy.shifts.base import shift


def _about_centre(x: np.ndarray, linear: np.ndarray) -> np.ndarray:
    """3x3 matrices applying the 2x2 ``linear[i]`` about the image centre."""
    n, _, h, w = x.shape
    cx, cy = (w - 1) / 2, (h - 1) / 2
    m = np.zeros((n, 3, 3))
    m[:, :2, :2] = linear
    m[:, 2, 2] = 1.0
    centre = np.array([cx, cy])
    m[:, :2, 2] = centre - np.einsum("nij,j->ni", linear, centre)
    return m


@shift("rotation", "geometry", "In-plane rotation by 5 to 35 degrees, either way.")
def rotation(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    degrees = [5, 10, 15, 25, 35][severity - 1]
    a = np.deg2rad(degrees) * rng.choice([-1.0, 1.0], x.shape[0])
    linear = np.stack([np.stack([np.cos(a), -np.sin(a)], 1), np.stack([np.sin(a), np.cos(a)], 1)], 1)
    return ops.warp(x, _about_centre(x, linear), ops.border_fill(x))


@shift(
    "scale", "geometry", "Distance change: zoomed out to 0.9-0.5x or in to 1.1-1.8x, half the images each."
)
def scale(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    out_factor = [0.9, 0.8, 0.7, 0.6, 0.5][severity - 1]
    in_factor = [1.1, 1.25, 1.4, 1.6, 1.8][severity - 1]
    f = np.where(rng.random(x.shape[0]) < 0.5, out_factor, in_factor)
    linear = f[:, None, None] * np.eye(2)[None]
    return ops.warp(x, _about_centre(x, linear), ops.border_fill(x))


@shift("translation", "geometry", "Off-centre framing: shifted by 5% to 30% of the image size.")
def translation(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    fraction = [0.05, 0.1, 0.15, 0.2, 0.3][severity - 1]
    n, _, h, w = x.shape
    a = rng.uniform(0, 2 * np.pi, n)
    m = np.tile(np.eye(3), (n, 1, 1))
    m[:, 0, 2] = fraction * w * np.cos(a)
    m[:, 1, 2] = fraction * h * np.sin(a)
    return ops.warp(x, m, ops.border_fill(x))


@shift(
    "perspective_tilt",
    "geometry",
    "Sign seen at an angle: tilted 10 to 60 degrees about a vertical or horizontal axis.",
)
def perspective_tilt(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    degrees = [10, 20, 30, 45, 60][severity - 1]
    n, _, h, w = x.shape
    f = 1.2 * max(h, w)  # focal length: a moderate field of view
    cx, cy = (w - 1) / 2, (h - 1) / 2
    k = np.array([[f, 0, cx], [0, f, cy], [0, 0, 1]])
    to_centre = np.array([[1, 0, -cx], [0, 1, -cy], [0, 0, 1]])
    a = np.deg2rad(degrees) * rng.choice([-1.0, 1.0], n)
    vertical_axis = rng.random(n) < 0.5
    mats = np.empty((n, 3, 3))
    for i in range(n):  # n tiny 3x3 products
        ca, sa = np.cos(a[i]), np.sin(a[i])
        if vertical_axis[i]:
            r = np.array([[ca, 0, sa], [0, 1, 0], [-sa, 0, ca]])
        else:
            r = np.array([[1, 0, 0], [0, ca, -sa], [0, sa, ca]])
        # the image is a plane at depth f facing the camera; rotate it about its centre and re-project:
        # pixel (u, v) is the point (u - cx, v - cy, 0) of the plane, seen at R @ that + (0, 0, f)
        mats[i] = k @ np.column_stack([r[:, 0], r[:, 1], [0.0, 0.0, f]]) @ to_centre
    return ops.warp(x, mats, ops.border_fill(x))
