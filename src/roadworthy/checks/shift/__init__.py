"""The shift suite: the model's accuracy under graded, reproducible changes of the input images.

Importing the suite registers one check per shift of :mod:`roadworthy.shifts` (``shift.<name>``), one per tabular shift of
:mod:`roadworthy.shifts.tabular` (``shift.tab_<name>``) with the per-feature sensitivity, and the
aggregate ``shift.summary``; the shifts themselves are the library's.
"""

from __future__ import annotations

from roadworthy.checks.shift import suite, tabular  # noqa: F401  (fill CHECKS)
from roadworthy.checks.shift.suite import SHIFT_CHECKS, ShiftCheck, ShiftSummary
from roadworthy.checks.shift.tabular import TABULAR_SHIFT_CHECKS, FeatureSensitivity, TabularShiftCheck

__all__ = [
    "SHIFT_CHECKS",
    "TABULAR_SHIFT_CHECKS",
    "FeatureSensitivity",
    "ShiftCheck",
    "ShiftSummary",
    "TabularShiftCheck",
]
