"""Renderers: pure functions of a :class:`~roadworthy.results.Report` to JSON, HTML, Markdown and JUnit XML."""

from __future__ import annotations

import logging
from pathlib import Path

from roadworthy.results import Report

log = logging.getLogger("roadworthy")

#: One row per report format: the file it is written to and its renderer (``module:function``, imported
#: when first used so that writing JSON never loads Jinja2 or matplotlib). A new format is one row here
#: and one module holding a pure function ``Report -> str``.
RENDERERS: dict[str, tuple[str, str]] = {
    "json": ("report.json", "roadworthy.report.json:render_json"),
    "html": ("report.html", "roadworthy.report.html:render_html"),
    "markdown": ("report.md", "roadworthy.report.markdown:render_markdown"),
    "junit": ("junit.xml", "roadworthy.report.junit:render_junit"),
}
FILES = {fmt: file for fmt, (file, _) in RENDERERS.items()}


def render(report: Report, fmt: str) -> str:
    """The report in format ``fmt`` (a key of :data:`RENDERERS`)."""
    import importlib

    if fmt not in RENDERERS:
        raise ValueError(f"unknown report format {fmt!r}; known: {', '.join(RENDERERS)}")
    module, func = RENDERERS[fmt][1].split(":")
    return getattr(importlib.import_module(module), func)(report)


def write_reports(
    report: Report, out: str | Path, formats: tuple[str, ...] = tuple(RENDERERS)
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
