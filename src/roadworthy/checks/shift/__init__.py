"""The shift suite: the model's accuracy under graded, reproducible changes of the input images.

Importing the suite registers one check per shift of :mod:`roadworthy.shifts` (``shift.<name>``) and the
aggregate ``shift.summary``; the shifts themselves are the library's.
"""

from __future__ import annotations

from roadworthy.checks.shift import suite  # noqa: F401  (fill CHECKS)
from roadworthy.checks.shift.suite import SHIFT_CHECKS, ShiftCheck, ShiftSummary

__all__ = ["SHIFT_CHECKS", "ShiftCheck", "ShiftSummary"]
