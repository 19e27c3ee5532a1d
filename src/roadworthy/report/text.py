"""Wording and number formats shared by the HTML and Markdown renderers."""

from __future__ import annotations

import math

from roadworthy.results import Report

# The numbers a reviewer reads first, in this order, when present.
HEADLINE_METRICS = (
    "clean.accuracy",
    "clean.ece",
    "shift.mean_accuracy",
    "shift.rpc",
    "shift.worst_accuracy",
    "attack.fgsm.robust_accuracy",
    "attack.pgd_linf.robust_accuracy",
    "attack.trustworthy",
    "ood.calibration.ece_shifted",
    "integrity.label_issues.rate",
    "integrity.poisoning.suspect_count",
    "integrity.duplicates.count",
    "integrity.leakage.count",
    "sanity.latency_ms_p50",
)


def fmt_value(v: float | None) -> str:
    """Compact number: integers as such, small magnitudes with 3 significant digits."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "—"
    if float(v).is_integer() and abs(v) < 1e9:
        return str(int(v))
    if abs(v) >= 100:
        return f"{v:.1f}"
    return f"{v:.3g}" if abs(v) < 0.01 else f"{v:.3f}"


def verdict_label(report: Report) -> str:
    """``READY``, ``NOT READY`` or ``INCOMPLETE`` (an interrupted or partial run: never ready)."""
    if report.incomplete is not None:
        return "INCOMPLETE"
    return "READY" if report.verdict == "ready" else "NOT READY"


def verdict_sentence(report: Report) -> str:
    """One sentence: which gates failed (and why, when no value was measured), what was not evaluated."""
    failed = [g for g in report.gates if g.passed is False]
    unevaluated = [g for g in report.gates if g.passed is None]
    unmeasured = [g for g in failed if g.value is None and g.note]
    evaluated = len(report.gates) - len(unevaluated) - len(unmeasured)
    errored = [c.id for c in report.checks if c.status == "error"]
    s = ""
    if report.incomplete is not None:
        inc = report.incomplete
        total = len(inc.finished) + len(inc.pending)
        s = f"The run is incomplete ({inc.reason}): {len(inc.finished)} of {total} checks finished. "
    if report.verdict == "ready" and report.incomplete is None:
        s += f"Every evaluated gate holds ({evaluated} of {len(report.gates)} evaluated)."
    elif failed:
        measured = [g for g in failed if g not in unmeasured]
        parts = [g.rule for g in measured[:5]] + [f"{g.rule} (not measured)" for g in unmeasured[:5]]
        s += f"{len(failed)} of {len(report.gates) - len(unevaluated)} gates failed: " + "; ".join(parts)
        s += "…" if len(measured) > 5 or len(unmeasured) > 5 else "."
        if unmeasured:
            s += " Unmeasured gates fail because the policy sets fail_on_unevaluated."
    else:
        s += f"No gate failed ({evaluated} of {len(report.gates)} evaluated)."
    if unevaluated:
        names = ", ".join(g.rule for g in unevaluated[:5]) + (", …" if len(unevaluated) > 5 else "")
        s += f" {len(unevaluated)} gate(s) not evaluated (metric not measured): {names}."
    if errored:
        s += f" Checks that crashed: {', '.join(errored)}."
    return s
