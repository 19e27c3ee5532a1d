"""The check registry. Importing this package is cheap; :func:`load_builtin_checks` fills the registry."""

from __future__ import annotations

import importlib
import logging

from roadworthy.checks.base import CHECKS, Check, Context, Outcome, Requires, register

__all__ = [
    "BUILTIN_MODULES",
    "CHECKS",
    "Check",
    "Context",
    "Outcome",
    "Requires",
    "load_builtin_checks",
    "register",
]

log = logging.getLogger(__name__)

# One line per module that registers checks. A suite that is a package lists its modules in its __init__.
BUILTIN_MODULES = (
    "roadworthy.checks.sanity",
    "roadworthy.checks.clean",
    "roadworthy.checks.shift",
    "roadworthy.checks.attack",
    "roadworthy.checks.integrity",
    "roadworthy.checks.ood",
    "roadworthy.checks.fuzz",
    "roadworthy.checks.parity",
)

SUITE_ORDER = ("sanity", "clean", "shift", "ood", "attack", "fuzz", "parity", "integrity")


def load_builtin_checks() -> dict[str, type[Check]]:
    """Import every built-in check module (idempotent) and return the registry."""
    for name in BUILTIN_MODULES:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:  # a real missing dependency inside the module, not an absent suite
                raise
    return CHECKS
