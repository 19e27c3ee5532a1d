"""Where checks execute. :data:`BACKENDS` maps each backend's name to its run function.

Every backend takes the check classes and a :class:`~roadworthy.checks.base.Context`, returns the results
in dependency order and calls ``on_result`` after each finished check (so a partial report survives a
later failure); results in ``done`` (a resumed run) are reused. ``local`` runs everything in this
process; ``ray`` runs independent checks in parallel (``roadworthy[ray]``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from roadworthy.runner.local import order_checks, run_check, run_checks
from roadworthy.runner.ray import prepare_ray, run_ray

__all__ = ["BACKENDS", "PREPARE", "order_checks", "run_check", "run_checks", "run_ray"]

#: Backend name -> run function; the names are :data:`roadworthy.config.BACKEND_NAMES`.
BACKENDS: dict[str, Callable[..., list]] = {"local": run_checks, "ray": run_ray}

#: Backend name -> a hook the session calls before it plans the run, with the run function's
#: ``model_recipe`` and backend options; what it returns goes to the run function as ``prepared``
#: (it has a ``close()`` for a run that stops before using it). Ray starts its worker actors there, so
#: their start overlaps the session's model timing and planning.
PREPARE: dict[str, Callable[..., Any]] = {"ray": prepare_ray}
