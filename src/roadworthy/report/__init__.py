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
    """Write each format into ``out``, JSON first; a failing file never costs the others.

    Raises
    ------
    OutputError
        After trying every format, when any file could not be written (disk full, read-only folder):
        one line naming the files and the reason. No ``*.tmp`` file is left behind.
    """
    from roadworthy._files import write_text_atomic
    from roadworthy.errors import OutputError

    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{out}: cannot create the output folder ({exc.strerror or exc})") from exc
    written: dict[str, Path] = {}
    failed: list[str] = []
    reasons: list[str] = []
    for fmt in formats:
        path = out / FILES[fmt]
        try:
            write_text_atomic(path, render(report, fmt))
            written[fmt] = path
        except Exception as exc:  # keep the other files, then report every failure
            log.debug("could not write %s", path, exc_info=True)
            failed.append(path.name)
            reasons.append(
                (exc.strerror or str(exc)) if isinstance(exc, OSError) else f"{type(exc).__name__}: {exc}"
            )
    if failed:
        raise OutputError(
            f"{out}: could not write {', '.join(failed)} ({'; '.join(dict.fromkeys(reasons))}); "
            f"{'wrote ' + ', '.join(p.name for p in written.values()) if written else 'nothing was written'}"
        )
    return written
