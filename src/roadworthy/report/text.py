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


def verdict_sentence(report: Report) -> str:
    failed = [g for g in report.gates if g.passed is False]
    unevaluated = [g for g in report.gates if g.passed is None]
    evaluated = len(report.gates) - len(unevaluated)
    errored = [c.id for c in report.checks if c.status == "error"]
    if report.verdict == "ready":
        s = f"Every evaluated gate holds ({evaluated} of {len(report.gates)} evaluated)."
    else:
        s = f"{len(failed)} of {evaluated} evaluated gates failed: " + "; ".join(g.rule for g in failed[:5])
        s += "…" if len(failed) > 5 else "."
    if unevaluated:
        s += f" {len(unevaluated)} gate(s) not evaluated (metric not measured)."
    if errored:
        s += f" Checks that crashed: {', '.join(errored)}."
    return s
