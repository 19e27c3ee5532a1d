"""Compare two reports metric by metric (``roadworthy compare OLD.json NEW.json``)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from roadworthy.policy import is_accuracy_metric
from roadworthy.report.text import fmt_value
from roadworthy.results import Report


@dataclass(frozen=True)
class MetricChange:
    name: str
    old: float | None
    new: float | None

    @property
    def delta(self) -> float | None:
        if self.old is None or self.new is None or not (math.isfinite(self.old) and math.isfinite(self.new)):
            return None
        return self.new - self.old


def compare_reports(
    old: Report, new: Report, max_drop: float = 0.02
) -> tuple[list[MetricChange], list[MetricChange]]:
    """All metrics present in either report (CI bounds and counts left out), and the accuracy regressions."""
    names = sorted(
        n
        for n in set(old.metrics) | set(new.metrics)
        if not n.endswith(("_ci_low", "_ci_high")) and not n.endswith("_n")
    )
    rows = [MetricChange(n, old.metrics.get(n), new.metrics.get(n)) for n in names]
    regressions = [
        r for r in rows if is_accuracy_metric(r.name) and r.delta is not None and r.delta < -max_drop - 1e-12
    ]
    return rows, regressions


def format_comparison(rows: list[MetricChange], regressions: list[MetricChange], max_drop: float) -> str:
    width = max((len(r.name) for r in rows), default=10)
    lines = [f"{'metric':<{width}}  {'old':>9}  {'new':>9}  {'change':>9}"]
    bad = {r.name for r in regressions}
    for r in rows:
        d = r.delta
        change = "" if d is None else f"{d:+.4f}"
        flag = "  <-- dropped more than max_drop" if r.name in bad else ""
        lines.append(f"{r.name:<{width}}  {fmt_value(r.old):>9}  {fmt_value(r.new):>9}  {change:>9}{flag}")
    lines.append("")
    if regressions:
        lines.append(f"{len(regressions)} accuracy metric(s) dropped by more than {max_drop:g}.")
    else:
        lines.append(f"No accuracy metric dropped by more than {max_drop:g}.")
    return "\n".join(lines)
