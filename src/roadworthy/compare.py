"""Compare two reports metric by metric (``roadworthy compare OLD.json NEW.json``).

A difference is the model's only when both reports measured the same data; :func:`data_differences`
says when they did not (another file, modality, sample count or class set), and the comparison and
``--baseline`` say so rather than compare silently.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from roadworthy.policy import is_accuracy_metric
from roadworthy.report.text import fmt_value
from roadworthy.results import DataDescription, Report


def data_differences(old: DataDescription, new: DataDescription) -> list[str]:
    """How two reports' evaluation data differ, one phrase each; empty when they are (or may be) the same.

    Data given as arrays has no sha256; such data is compared by what is known of it (modality,
    shape, sample count, class names).
    """
    out = []
    if old.modality != new.modality:
        out.append(f"modality {old.modality} vs {new.modality}")
    if old.input_shape != new.input_shape:
        out.append(f"input shape {old.input_shape} vs {new.input_shape}")
    if old.class_names and new.class_names and old.class_names != new.class_names:
        if len(old.class_names) != len(new.class_names):
            out.append(f"{len(old.class_names)} vs {len(new.class_names)} classes")
        else:
            out.append("different class names")
    if old.sha256 and new.sha256 and old.sha256 != new.sha256:
        out.append(f"data sha256 {old.sha256[:12]}… vs {new.sha256[:12]}…")
    elif old.n_samples != new.n_samples:
        out.append(f"{old.n_samples} vs {new.n_samples} samples")
    return out


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


def comparison_warnings(old: Report, new: Report) -> list[str]:
    """Why the two reports' numbers may not be comparable (other data, an incomplete run)."""
    out = []
    differences = data_differences(old.data, new.data)
    if differences:
        out.append(
            f"the reports measured different data ({'; '.join(differences)}): a change below mixes the "
            "model's change with the data's"
        )
    for label, r in (("OLD", old), ("NEW", new)):
        if r.incomplete is not None:
            out.append(f"{label} is an incomplete report ({r.incomplete.reason}): missing checks show as —")
    return out


def format_comparison(
    rows: list[MetricChange],
    regressions: list[MetricChange],
    max_drop: float,
    warnings: list[str] | None = None,
) -> str:
    width = max((len(r.name) for r in rows), default=10)
    lines = [f"warning: {w}" for w in warnings or []]
    lines += [f"{'metric':<{width}}  {'old':>9}  {'new':>9}  {'change':>9}"]
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
