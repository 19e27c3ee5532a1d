"""The shift suite: graded, reproducible changes of the input images and the model's accuracy under them.

``SHIFTS`` maps a name to a :class:`Shift` with ``apply(x, severity, rng)``; ``apply_shift(name, ...)``
is the same by name. Importing the suite registers one check per shift (``shift.<name>``) and the
aggregate ``shift.summary``.
"""

from __future__ import annotations

from roadworthy.checks.shift import corruptions, geometry, lighting, occlusion, suite  # noqa: F401  (fill SHIFTS, CHECKS)
from roadworthy.checks.shift._base import GROUPS, SHIFTS, Shift, apply_shift, table_name

__all__ = ["GROUPS", "SHIFTS", "Shift", "apply_shift", "table_name"]
