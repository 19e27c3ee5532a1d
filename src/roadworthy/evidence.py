"""Evidence as data: the curves, grids, bar charts and images a check shows a reviewer.

A check does not draw. It puts *evidence items* into its result's ``details["evidence"]``: plain JSON
dictionaries with a declared ``kind`` and the numbers to draw, built with the constructors below. The
report renderers (``roadworthy.report.figures``) draw each kind from the report alone, so the HTML page
needs no check code, and a report written by an older or newer roadworthy still renders.

Kinds and their fields (every item also has ``kind`` and ``caption``):

``lines``
    ``series`` (name -> {"x": [...], "y": [...]}), ``xlabel``, ``ylabel``, ``ylim`` ([lo, hi] or null),
    ``xlim``, ``xlog``, ``diagonal`` (draw y = x, e.g. perfect calibration), ``hline`` (a threshold).
``heatmap``
    ``values`` (rows x columns, null where unknown), ``rows``, ``columns``, ``vmin``, ``vmax``,
    ``fmt`` (a Python format for the cell text), ``cmap``, ``title``.
``bars``
    ``labels`` (one per bar group), ``groups`` (name -> one value per label), ``ylabel``, ``hline``,
    ``hline_label``.
``image``
    ``uri``: an inline PNG data URI (see :func:`png_data_uri`).

This module is on the ground floor: it imports nothing of roadworthy, so checks, algorithms and
renderers may all use it.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

KINDS = ("lines", "heatmap", "bars", "image")
KEY = "evidence"  #: the key of ``details`` that holds a check's evidence items


def _num(v: Any) -> float | None:
    """A JSON-safe number: None for missing, NaN or infinite values."""
    if v is None:
        return None
    f = float(v)
    return f if math.isfinite(f) else None


def _nums(vs: Sequence[Any]) -> list[float | None]:
    return [_num(v) for v in np.asarray(vs, dtype=float).ravel().tolist()]


def lines(
    caption: str,
    series: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    xlabel: str,
    ylabel: str,
    *,
    ylim: tuple[float, float] | None = (0.0, 1.0),
    xlim: tuple[float, float] | None = None,
    xlog: bool = False,
    diagonal: bool = False,
    hline: float | None = None,
) -> dict[str, Any]:
    """A line plot: one line per named series ``{name: (xs, ys)}``."""
    return {
        "kind": "lines",
        "caption": caption,
        "series": {str(k): {"x": _nums(xs), "y": _nums(ys)} for k, (xs, ys) in series.items()},
        "xlabel": xlabel,
        "ylabel": ylabel,
        "ylim": list(ylim) if ylim is not None else None,
        "xlim": list(xlim) if xlim is not None else None,
        "xlog": bool(xlog),
        "diagonal": bool(diagonal),
        "hline": _num(hline),
    }


def heatmap(
    caption: str,
    values: Sequence[Sequence[float | None]],
    rows: Sequence[str],
    columns: Sequence[str],
    *,
    vmin: float = 0.0,
    vmax: float = 1.0,
    fmt: str = "{:.2f}",
    cmap: str = "RdYlGn",
    title: str = "",
) -> dict[str, Any]:
    """An annotated grid of numbers (rows x columns), e.g. accuracy by shift and severity."""
    grid = [[_num(v) for v in row] for row in values]
    if len(grid) != len(rows) or any(len(r) != len(columns) for r in grid):
        raise ValueError(f"heatmap {caption!r}: values must be {len(rows)} x {len(columns)}")
    return {
        "kind": "heatmap",
        "caption": caption,
        "values": grid,
        "rows": [str(r) for r in rows],
        "columns": [str(c) for c in columns],
        "vmin": float(vmin),
        "vmax": float(vmax),
        "fmt": fmt,
        "cmap": cmap,
        "title": title,
    }


def bars(
    caption: str,
    labels: Sequence[str],
    groups: Mapping[str, Sequence[float]],
    ylabel: str,
    *,
    hline: float | None = None,
    hline_label: str = "threshold",
) -> dict[str, Any]:
    """A bar chart: one bar per label for each named group (grouped side by side)."""
    out = {str(k): _nums(v) for k, v in groups.items()}
    if any(len(v) != len(labels) for v in out.values()):
        raise ValueError(f"bars {caption!r}: every group needs one value per label ({len(labels)})")
    return {
        "kind": "bars",
        "caption": caption,
        "labels": [str(x) for x in labels],
        "groups": out,
        "ylabel": ylabel,
        "hline": _num(hline),
        "hline_label": hline_label,
    }


def image(caption: str, img: np.ndarray, min_side: int = 96, max_side: int = 160) -> dict[str, Any]:
    """One picture (e.g. a recovered trigger or a universal sticker) as an inline PNG."""
    return {"kind": "image", "caption": caption, "uri": png_data_uri(img, min_side, max_side)}


# ---------------------------------------------------------------------------------------- small images


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
    """``data:image/png;base64,...`` for one image (CHW float in [0, 1], HW, or HWC).

    Images are kept small (at most ``max_side`` pixels, nearest-neighbour upscaled when tiny so a 32 px
    sign is visible): a report must open in a browser in a second.
    """
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
