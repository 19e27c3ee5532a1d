"""Deprecated: the example-image helpers moved to the ground floor, :mod:`roadworthy.evidence`.

Kept as a re-export until no module imports it (checks must not import ``roadworthy.report``).
"""

from __future__ import annotations

from roadworthy.evidence import amplified_difference, png_data_uri, to_hwc_uint8

__all__ = ["amplified_difference", "png_data_uri", "to_hwc_uint8"]
