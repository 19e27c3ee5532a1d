"""roadworthy: crash-test a trained model before deployment.

The public API is small: :func:`check` runs the suites and returns a :class:`~roadworthy.results.Report`;
:func:`load_model` and :func:`load_data` read files the way the command line does; :class:`LoadOptions`
and :class:`RunConfig` hold a run's settings as objects (``check(model, data, load=..., config=...)``).
Importing roadworthy is cheap: torch, onnxruntime and matplotlib load only when a part that needs them runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["HttpSettings", "LoadOptions", "RunConfig", "__version__", "check", "load_data", "load_model"]

if TYPE_CHECKING:
    from roadworthy.api import check, load_data, load_model
    from roadworthy.config import HttpSettings, LoadOptions, RunConfig


def __getattr__(name: str) -> Any:
    if name in {"check", "load_data", "load_model"}:
        from roadworthy import api

        return getattr(api, name)
    if name in {"HttpSettings", "LoadOptions", "RunConfig"}:
        from roadworthy import config

        return getattr(config, name)
    raise AttributeError(f"module 'roadworthy' has no attribute {name!r}")
