"""The fuzz suite: coverage-guided fuzzing (DeepHunter) beside random testing of the same budget."""

from __future__ import annotations

from roadworthy.checks.fuzz import deephunter

__all__ = ["deephunter"]
