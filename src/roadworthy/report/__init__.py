"""Renderers: pure functions of a :class:`~roadworthy.results.Report` to JSON, HTML, Markdown and JUnit XML."""

from __future__ import annotations

import logging
from pathlib import Path

from roadworthy.results import Report

log = logging.getLogger("roadworthy")

FILES = {"json": "report.json", "html": "report.html", "markdown": "report.md", "junit": "junit.xml"}


def render(report: Report, fmt: str) -> str:
    if fmt == "json":
        from roadworthy.report.json import render_json

        return render_json(report)
    if fmt == "html":
        from roadworthy.report.html import render_html

        return render_html(report)
    if fmt == "markdown":
        from roadworthy.report.markdown import render_markdown

        return render_markdown(report)
    if fmt == "junit":
        from roadworthy.report.junit import render_junit

        return render_junit(report)
    raise ValueError(f"unknown report format {fmt!r}")


def write_reports(
    report: Report, out: str | Path, formats: tuple[str, ...] = ("json", "html", "markdown", "junit")
) -> dict[str, Path]:
    """Write each format into ``out``; JSON first, and a failing renderer never costs the others."""
    from roadworthy.session import write_text_atomic

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for fmt in formats:
        path = out / FILES[fmt]
        try:
            write_text_atomic(path, render(report, fmt))
            written[fmt] = path
        except Exception as exc:  # noqa: BLE001 - keep the other files
            log.error("could not write %s: %s", path, exc)
    return written
