"""Small PNG data URIs for example images, so the HTML report stays one self-contained file.

Images are kept small (at most ``max_side`` pixels, nearest-neighbour upscaled when tiny so a 32 px sign
is visible) and their number is capped by each check: a report must open in a browser in a second.
"""

from __future__ import annotations

import base64
import io

import numpy as np


def to_hwc_uint8(img: np.ndarray) -> np.ndarray:
    """CHW / HW / HWC float in [0, 1] (or uint8) to HWC or HW uint8."""
    a = np.asarray(img)
    if a.ndim == 3 and a.shape[0] in (1, 3, 4) and a.shape[-1] not in (1, 3, 4):
        a = np.transpose(a, (1, 2, 0))
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.dtype != np.uint8:
        a = np.clip(np.nan_to_num(a.astype(np.float32)), 0.0, 1.0)
        a = np.round(a * 255).astype(np.uint8)
    return a


def png_data_uri(img: np.ndarray, min_side: int = 96, max_side: int = 160) -> str:
    """``data:image/png;base64,...`` for one image (CHW float in [0, 1], HW, or HWC)."""
    from PIL import Image

    a = to_hwc_uint8(img)
    pil = Image.fromarray(a)
    w, h = pil.size
    side = max(w, h)
    if side < min_side:
        k = int(np.ceil(min_side / side))
        pil = pil.resize((w * k, h * k), Image.NEAREST)
    elif side > max_side:
        s = max_side / side
        pil = pil.resize((max(1, round(w * s)), max(1, round(h * s))), Image.BILINEAR)
    buf = io.BytesIO()
    pil.save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def amplified_difference(original: np.ndarray, changed: np.ndarray) -> np.ndarray:
    """The perturbation ``changed - original`` scaled to fill [0, 1] around mid-grey, for display."""
    d = np.asarray(changed, np.float32) - np.asarray(original, np.float32)
    m = float(np.abs(d).max())
    if m == 0:
        return np.full_like(d, 0.5)
    return 0.5 + 0.5 * d / m
