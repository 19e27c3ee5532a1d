"""Batch array operations the shifts are built from, by kind.

Everything takes and returns float32 NCHW batches. Shift modules import the package (``from
roadworthy.shifts import _ops as ops``) and call ``ops.<name>``; each operation lives in one module:

``common``
    Layout (``to_hwc``, ``to_nchw``), the per-image and per-plane OpenCV loops, colour helpers.
``noise``
    Bulk random numbers: ``normal``, ``uniform``, ``uniform_bits``, ``signed_uniform``, ``poisson_scaled``.
``filters``
    ``gaussian_blur``, ``filter2d``, ``motion_blur`` (with ``line_taps``/``line_segments``), ``disk_kernel``.
``resampling``
    ``separable`` matrix resampling (``box_matrix``, ``nearest_matrix``, ``zoom_matrix``), ``zoom_center``,
    ``zoom_mean``, ``remap``, ``warp``, ``resize_stack``, pixel grids, ``border_fill``.
``fractals``
    Random textures and masks: ``plasma_fractal``, ``fractal_noise``, ``smooth_noise``, ``curves_mask``.
"""

from __future__ import annotations

from roadworthy.shifts._ops.common import (
    colour,
    cv2,
    equalize_hist_u8,
    per_image,
    per_plane,
    rgb_to_gray,
    to_hwc,
    to_nchw,
)
from roadworthy.shifts._ops.filters import (
    DIRECT_FILTER_CELLS,
    disk_kernel,
    filter2d,
    gaussian_blur,
    line_segments,
    line_taps,
    motion_blur,
)
from roadworthy.shifts._ops.fractals import curves_mask, fractal_noise, plasma_fractal, smooth_noise
from roadworthy.shifts._ops.noise import normal, poisson_scaled, signed_uniform, uniform, uniform_bits
from roadworthy.shifts._ops.resampling import (
    SMALL_PIXELS,
    border_fill,
    box_matrix,
    crop_zoom,
    nearest_matrix,
    pixel_grid,
    pixel_grid_xy,
    remap,
    resize_stack,
    separable,
    warp,
    zoom_center,
    zoom_matrix,
    zoom_mean,
)

__all__ = [
    "DIRECT_FILTER_CELLS",
    "SMALL_PIXELS",
    "border_fill",
    "box_matrix",
    "colour",
    "crop_zoom",
    "curves_mask",
    "cv2",
    "disk_kernel",
    "equalize_hist_u8",
    "filter2d",
    "fractal_noise",
    "gaussian_blur",
    "line_segments",
    "line_taps",
    "motion_blur",
    "nearest_matrix",
    "normal",
    "per_image",
    "per_plane",
    "pixel_grid",
    "pixel_grid_xy",
    "plasma_fractal",
    "poisson_scaled",
    "remap",
    "resize_stack",
    "rgb_to_gray",
    "separable",
    "signed_uniform",
    "smooth_noise",
    "to_hwc",
    "to_nchw",
    "uniform",
    "uniform_bits",
    "warp",
    "zoom_center",
    "zoom_matrix",
    "zoom_mean",
]
