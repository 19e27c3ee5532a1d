"""What every building block shares: NCHW <-> HWC layout, per-image and per-plane loops over OpenCV, the
lazily imported OpenCV module, and colour helpers.

OpenCV filters accept at most 4 channels per call and work on one image, so a batch is handed to them
one image (interleaved HWC) or one channel plane at a time; everything else is vectorised over the batch.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


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
