"""``report.json``: the machine-readable report, exactly the :class:`~roadworthy.results.Report` schema."""

from __future__ import annotations

from roadworthy.results import Report


def render_json(report: Report) -> str:
    """The report as indented JSON (NaN and infinity written as null)."""
    return report.model_dump_json(indent=2)
