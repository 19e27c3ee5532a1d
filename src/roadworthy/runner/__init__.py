"""Where checks execute. :data:`BACKENDS` maps each backend's name to its run function.

Every backend takes the check classes and a :class:`~roadworthy.checks.base.Context`, returns the results
in dependency order and calls ``on_result`` after each finished check (so a partial report survives a
later failure); results in ``done`` (a resumed run) are reused. ``local`` runs everything in this
process; ``ray`` runs independent checks in parallel (``roadworthy[ray]``).
"""

from __future__ import annotations

from collections.abc import Callable

from roadworthy.runner.local import order_checks, run_check, run_checks
from roadworthy.runner.ray import run_ray

__all__ = ["BACKENDS", "order_checks", "run_check", "run_checks", "run_ray"]

#: Backend name -> run function; the names are :data:`roadworthy.config.BACKEND_NAMES`.
BACKENDS: dict[str, Callable[..., list]] = {"local": run_checks, "ray": run_ray}
