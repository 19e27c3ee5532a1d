"""roadworthy: crash-test a trained model before deployment.

The public API is small: :func:`check` runs the suites and returns a :class:`~roadworthy.results.Report`;
:func:`load_model` and :func:`load_data` read files the way the command line does. Importing roadworthy
is cheap: torch, onnxruntime and matplotlib load only when a part that needs them runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["__version__", "check", "load_data", "load_model"]

if TYPE_CHECKING:
    from roadworthy.api import check, load_data, load_model


def __getattr__(name: str) -> Any:
    if name in {"check", "load_data", "load_model"}:
        from roadworthy import api

        return getattr(api, name)
    raise AttributeError(f"module 'roadworthy' has no attribute {name!r}")
