"""``report.md``: short enough for a pull-request comment (GitHub caps comments at 65,536 characters)."""

from __future__ import annotations

from roadworthy.errors import plural
from roadworthy.report.text import HEADLINE_METRICS, fmt_value, verdict_label, verdict_sentence
from roadworthy.results import Report

MAX_CHARS = 60_000


def _cell(text: str) -> str:
    """Markdown table cell: pipes and newlines would break the table; HTML is shown, not rendered."""
    return (
        str(text)
        .replace("\\", "\\\\")
        .replace("|", "\\|")
        .replace("\n", " ")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
    )


def _text(text: str) -> str:
    """Running text: user-controlled words (check ids, paths) shown literally, never as HTML or emphasis."""
    out = str(text).replace("\\", "\\\\").replace("&", "&amp;").replace("<", "&lt;").replace("\n", " ")
    for ch in "`*_[]|#":
        out = out.replace(ch, "\\" + ch)
    return out


def _code(text: str) -> str:
    """Inline code in a table cell: literal text (no HTML is interpreted in code spans), no backticks."""
    return "`" + str(text).replace("`", "'").replace("|", "\\|").replace("\n", " ") + "`"


def render_markdown(report: Report, max_checks: int = 60) -> str:
    """Verdict, gates, headline metrics and one line per check; never longer than ``MAX_CHARS``."""
    icon = {True: "✅", False: "❌", None: "⚪"}
    lines = [
        f"## roadworthy: **{verdict_label(report)}**",
        "",
        _text(verdict_sentence(report)),
        "",
        f"Model {_code(report.model.path or report.model.format)} · data {_code(report.data.path or '')} "
        f"({plural(report.data.n_samples, 'sample')}) · budget `{report.budget}` · seed `{report.seed}`",
        "",
    ]
    if report.warnings:
        lines += [f"> ⚠️ **warning:** {_text(w)}" for w in report.warnings[:20]] + [""]
    if report.resumed is not None:
        lines += [
            f"Resumed: reused {len(report.resumed.reused)} finished checks from an interrupted run.",
            "",
        ]
    lines += ["| gate | value | result |", "|---|---|---|"]
    order = sorted(report.gates, key=lambda g: {False: 0, None: 2, True: 1}[g.passed])
    for g in order:
        result = {True: "pass", False: "**FAIL**", None: "not evaluated"}[g.passed]
        if g.note:
            result += f" ({_cell(g.note)})"
        lines.append(f"| {icon[g.passed]} {_code(g.rule)} | {fmt_value(g.value)} | {result} |")
    head = [(m, report.metrics[m]) for m in HEADLINE_METRICS if m in report.metrics]
    if head:
        lines += ["", "| metric | value | 95% CI |", "|---|---|---|"]
        for name, v in head:
            lo, hi = report.metrics.get(f"{name}_ci_low"), report.metrics.get(f"{name}_ci_high")
            ci = f"{fmt_value(lo)} – {fmt_value(hi)}" if lo is not None and hi is not None else ""
            n = report.metrics.get(f"{name}_n")
            ci += f" (n={int(n)})" if n else ""
            lines.append(f"| `{name}` | {fmt_value(v)} | {ci} |")
    status_icon = {"pass": "✅", "warn": "⚠️", "fail": "❌", "error": "💥", "skipped": "⏭️"}
    lines += ["", "<details><summary>Checks</summary>", "", "| check | status | summary |", "|---|---|---|"]
    for c in report.checks[:max_checks]:
        lines.append(
            f"| {_code(c.id)} | {status_icon.get(c.status, '')} {c.status} | {_cell(c.summary)[:300]} |"
        )
    if len(report.checks) > max_checks:
        lines.append(f"| … | | {len(report.checks) - max_checks} more checks in report.html |")
    lines += ["", "</details>", "", f"<sub>roadworthy {report.tool.version} · {report.created}</sub>", ""]
    text = "\n".join(lines)
    if len(text) > MAX_CHARS:
        text = text[: MAX_CHARS - 200].rsplit("\n", 1)[0] + "\n\n… (truncated; see report.html)\n"
    return text
