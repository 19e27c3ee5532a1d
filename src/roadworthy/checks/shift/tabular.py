"""The tabular shift checks: one per shift of :mod:`roadworthy.shifts.tabular` and the feature sensitivity.

Each ``shift.tab_<name>`` check applies its shift at severities 1-5 to a stratified sample of the
evaluation rows (the same sample as the image shifts use) and measures accuracy per severity, the flip
rate at severity 1 and the calibration error, with the same details as an image shift so that
``shift.summary`` aggregates both. Every changed row is projected onto the table's feature schema
(immutable columns untouched); the check reports the schema it used. As for images, the session's
validity gate (on a table chosen among the input-space detectors too) splits each shift's failures into
in-envelope (the shifted row still looks like the data: a real defect) and out-of-envelope ones.

``shift.tab_feature_sensitivity`` drifts one feature at a time (numeric: its unit changes by x1.5 up to
x10; categorical: its values are shuffled between rows) and ranks the features by the accuracy lost: the
column whose recording a deployment must watch most closely.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from roadworthy import evidence
from roadworthy.checks.base import Check, Context, Outcome, Requires, register
from roadworthy.checks.reference import gate_plan_passes
from roadworthy.checks.shift.suite import (
    N_BINS,
    _bin_sums,
    _camel,
    _gate,
    _mean_accuracy_metrics,
    sample_indices,
)
from roadworthy.checks.tabular import schema_for
from roadworthy.errors import first_line
from roadworthy.shifts.tabular import DRIFT_FACTORS, TAB_SHIFTS, TabularShift, scale_feature
from roadworthy.stats import expected_calibration_error, proportion_metrics

TABULAR = Requires(modalities=frozenset({"tabular"}))


@dataclass(frozen=True)
class TabularShiftParams:
    """Parameters of every tabular shift check.

    Attributes
    ----------
    n_samples
        Size of the stratified sample of the evaluation rows; 0 means all of them.
    severities
        Which severities (1..5) to measure; the per-shift accuracy is their mean.
    """

    n_samples: int = 2000
    severities: tuple[int, ...] = (1, 2, 3, 4, 5)


def _nan_support(ctx: Context, x: np.ndarray, cols: np.ndarray) -> str | None:
    """Why the model cannot take missing values (it raises, or answers NaN), or None when it can.

    One probe row per column in ``cols`` (the mutable ones the shift may empty), each with that column
    missing: a pipeline that reads only some columns fails only on those.
    """
    probe = np.repeat(np.array(x[:1], np.float32), len(cols), axis=0)
    probe[np.arange(len(cols)), cols] = np.nan
    try:
        probs = ctx.predict_probs(probe)
    except Exception as exc:  # noqa: BLE001  (any failure of the user's model on NaN is the finding)
        return f"the model raised {type(exc).__name__} on a NaN input ({first_line(exc)})"
    if not np.all(np.isfinite(probs)):
        return "the model answers NaN for a row with a missing value"
    return None


class TabularShiftCheck(Check):
    """Accuracy of a tabular model under one shift at severities 1-5 (base of ``shift.tab_<name>``)."""

    shift_name: ClassVar[str]
    requires = TABULAR
    Params = TabularShiftParams
    budget_params: ClassVar[dict[str, dict[str, Any]]] = {
        "quick": {"n_samples": 500, "severities": (1, 3, 5)},
        "thorough": {"n_samples": 0},
    }

    @classmethod
    def plan_shared_work(cls, params: Any, n_data: int, n_train: int, budget: str) -> dict[str, float]:
        """Fitting the validity gate that splits failures (once per run, whichever check comes first)."""
        return {"ood.validity_gate": gate_plan_passes(n_data, n_train, budget, image=False)}

    def run(self, ctx: Context) -> Outcome:
        p: TabularShiftParams = self.params
        sh: TabularShift = TAB_SHIFTS[self.shift_name]
        schema = schema_for(ctx)
        idx = sample_indices(ctx, p.n_samples)
        x, y = ctx.data.x[idx].reshape(len(idx), -1), ctx.data.y[idx]
        n = len(idx)
        clean_pred = ctx.clean_pred[idx]
        clean_acc = float(np.mean(clean_pred == y))
        base = {
            "shift": sh.name,
            "group": sh.group,
            "description": sh.description,
            "schema": schema.to_dict(),
        }
        reason = sh.applicable(schema)
        if reason is None and "missing" in sh.breaks:
            reason = _nan_support(ctx, x, schema.indices())
            if reason is not None:
                return Outcome(
                    details=base | {"supported": False, "reason": reason},
                    warnings=[
                        f"missing values are unsupported: {reason}; impute them in the model's pipeline"
                    ],
                    summary=f"Missing values unsupported: {reason}.",
                )
        if reason is not None:
            return Outcome(
                details=base | {"supported": False, "reason": reason},
                summary=f"Not applicable to this table: {reason}.",
            )

        metrics: dict[str, float] = {}
        per_severity: list[dict[str, Any]] = []
        all_probs, all_y = [], []
        violations: dict[str, int] = {}
        gate, gate_note = _gate(ctx)
        in_failures = out_failures = 0
        with ctx.progress.task(f"shift {sh.name}", total=n * len(p.severities)) as task:
            for s in p.severities:
                out = sh.apply(x, y, s, ctx.rng(self.id, s), schema)
                ys = y[out.rows]
                probs = ctx.predict_probs(out.x)
                pred = probs.argmax(axis=1)
                correct = pred == ys
                metrics |= proportion_metrics(f"shift.{sh.name}.s{s}.accuracy", correct)
                for k, v in schema.violations(out.x, x[out.rows]).items():
                    violations[k] = violations.get(k, 0) + v
                per_severity.append(
                    {
                        "severity": s,
                        "accuracy": float(correct.mean()),
                        "ece": expected_calibration_error(probs, ys, N_BINS),
                        "flip_rate": float(np.mean(pred != clean_pred[out.rows])),
                        "mean_confidence": float(probs.max(axis=1).mean()),
                        "rows_changed": int(
                            np.sum(np.any(~np.isclose(out.x, x[out.rows], equal_nan=False), axis=1))
                        ),
                    }
                )
                if gate is not None:  # only failures are split
                    fail = np.flatnonzero(~correct)
                    inside = gate.in_envelope(out.x[fail]) if fail.size else np.zeros(0, bool)
                    per_severity[-1]["in_envelope_failures"] = int(inside.sum())
                    per_severity[-1]["out_of_envelope_failures"] = int(fail.size - inside.sum())
                    in_failures += int(inside.sum())
                    out_failures += int(fail.size - inside.sum())
                all_probs.append(probs)
                all_y.append(ys)
                task.advance(n)
        accs = [r["accuracy"] for r in per_severity]
        mean_acc = float(np.mean(accs))
        metrics |= _mean_accuracy_metrics(f"shift.{sh.name}.accuracy", mean_acc, n)
        pooled_probs, pooled_y = np.concatenate(all_probs), np.concatenate(all_y)
        first = per_severity[0]
        unexpected = {k: v for k, v in violations.items() if v and k not in sh.breaks}
        warnings = (
            [f"{sh.name} left the schema where it should not: {unexpected} cells (a bug: please report it)"]
            if unexpected
            else []
        )
        details = base | {
            "supported": True,
            "n_samples": n,
            "severities": list(p.severities),
            "severity_accuracy": {str(r["severity"]): r["accuracy"] for r in per_severity},
            "per_severity": per_severity,
            "clean_accuracy": clean_acc,
            "flip_rate": first["flip_rate"],
            "flip_severity": first["severity"],
            "flips": round(first["flip_rate"] * n),
            "ece": expected_calibration_error(pooled_probs, pooled_y, N_BINS),
            "calibration_bins": _bin_sums(pooled_probs, pooled_y),
            "schema_breaks": sorted(sh.breaks),
            "schema_violations": violations,
            "parameter_table": "own",
            "validity": {"gate": None, "reason": gate_note}
            if gate is None
            else {
                "gate": gate.describe(),
                "in_envelope_failures": in_failures,
                "out_of_envelope_failures": out_failures,
            },
        }
        if gate is not None:
            metrics[f"shift.{sh.name}.in_envelope_failures"] = float(in_failures)
            metrics[f"shift.{sh.name}.out_of_envelope_failures"] = float(out_failures)
        worst = int(np.argmin(accs))
        summary = (
            f"{sh.name.removeprefix('tab_').replace('_', ' ')}: accuracy {mean_acc:.1%} on average over severities "
            f"{', '.join(map(str, p.severities))} (clean {clean_acc:.1%}), "
            f"{accs[worst]:.1%} at severity {per_severity[worst]['severity']}."
        )
        return Outcome(metrics=metrics, details=details, warnings=warnings, summary=summary)


def _make_check(sh: TabularShift) -> type[Check]:
    doc = (
        f"Accuracy of a tabular model under {sh.name.removeprefix('tab_').replace('_', ' ')} ({sh.group}) at "
        f"severities 1-5. {sh.description}\n\nThreat model: natural distribution shift of a table, no "
        "adversary. The number is the share of the sampled rows classified correctly after the shift, per "
        "severity and averaged over severities; immutable columns of the schema are never changed."
    )
    attrs: dict[str, Any] = {
        "id": f"shift.{sh.name}",
        "title": f"Shift: {sh.name.removeprefix('tab_').replace('_', ' ')} (table)",
        "shift_name": sh.name,
        "__doc__": doc,
    }
    return register(type(f"Shift{_camel(sh.name)}", (TabularShiftCheck,), attrs))


TABULAR_SHIFT_CHECKS: dict[str, type[Check]] = {name: _make_check(sh) for name, sh in TAB_SHIFTS.items()}


@dataclass(frozen=True)
class SensitivityParams:
    """Parameters of ``shift.tab_feature_sensitivity``.

    Attributes
    ----------
    n_samples
        Size of the stratified sample of the evaluation rows; 0 means all of them.
    severities
        Which unit-drift severities (factors ``1.5, 2, 2.54, 5, 10``) to apply to each numeric feature.
    top
        How many features the bar chart shows.
    """

    n_samples: int = 2000
    severities: tuple[int, ...] = (1, 2, 3, 4, 5)
    top: int = 15


@register
class FeatureSensitivity(Check):
    """Which single feature's drift costs the most accuracy: features ranked by the accuracy lost.

    Each mutable numeric feature in turn is recorded in another unit (multiplied by 1.5, 2, 2.54, 5 and
    10, one factor per severity) while the others stay as they are; each mutable categorical or binary
    feature in turn has its values shuffled between rows (its link to the label is cut, its frequencies
    kept). The feature's accuracy is the mean over severities (one shuffle for categories).
    ``shift.tab_feature_sensitivity.worst_accuracy`` is the accuracy under the most damaging feature's drift
    and ``...max_drop`` the clean accuracy minus it; the full ranking is in the details (feature names are
    the user's data, so they are not metric names). Threat model: natural drift of one column (a sensor
    replaced, a site that records centimetres), no adversary.
    """

    id = "shift.tab_feature_sensitivity"
    title = "Shift: per-feature sensitivity (table)"
    requires = TABULAR
    Params = SensitivityParams
    budget_params: ClassVar[dict[str, dict[str, Any]]] = {
        "quick": {"n_samples": 500, "severities": (1, 3, 5)},
        "thorough": {"n_samples": 0},
    }

    def run(self, ctx: Context) -> Outcome:
        p: SensitivityParams = self.params
        schema = schema_for(ctx)
        idx = sample_indices(ctx, p.n_samples)
        x, y = ctx.data.x[idx].reshape(len(idx), -1), ctx.data.y[idx]
        n = len(idx)
        clean_acc = float(np.mean(ctx.clean_pred[idx] == y))
        cols = schema.indices()
        if not len(cols):
            return Outcome(
                details={
                    "schema": schema.to_dict(),
                    "supported": False,
                    "reason": "every column is immutable",
                },
                summary="Not applicable to this table: every column is immutable.",
            )
        rows: list[dict[str, Any]] = []
        with ctx.progress.task("shift feature sensitivity", total=len(cols)) as task:
            for j in cols:
                f = schema.features[j]
                if f.numeric:
                    accs = {
                        f"x{DRIFT_FACTORS[s - 1]:g}": float(
                            np.mean(
                                ctx.predict_probs(scale_feature(x, int(j), s, schema)).argmax(axis=1) == y
                            )
                        )
                        for s in p.severities
                    }
                    drift = "unit drift"
                else:
                    shuffled = x.copy()
                    shuffled[:, j] = x[ctx.rng(self.id, f.name).permutation(n), j]
                    accs = {"shuffled": float(np.mean(ctx.predict_probs(shuffled).argmax(axis=1) == y))}
                    drift = "shuffled between rows"
                acc = float(np.mean(list(accs.values())))
                rows.append(
                    {
                        "feature": f.name,
                        "kind": f.kind,
                        "drift": drift,
                        "accuracy": acc,
                        "drop": clean_acc - acc,
                    }
                    | {"per_drift": accs}
                )
                task.advance()
        rows.sort(key=lambda r: (-r["drop"], r["feature"]))
        for rank, r in enumerate(rows, 1):
            r["rank"] = rank
        worst = rows[0]
        metrics = _mean_accuracy_metrics(f"{self.id}.worst_accuracy", worst["accuracy"], n)
        metrics[f"{self.id}.max_drop"] = worst["drop"]
        shown = rows[: p.top]
        details: dict[str, Any] = {
            "schema": schema.to_dict(),
            "supported": True,
            "n_samples": n,
            "clean_accuracy": clean_acc,
            "factors": [DRIFT_FACTORS[s - 1] for s in p.severities],
            "ranking": rows,
            "top_feature": worst["feature"],
            "columns": ["rank", "feature", "kind", "drift", "accuracy", "drop"],
            evidence.KEY: [
                evidence.bars(
                    "Accuracy lost when one feature drifts (unit x1.5 to x10; categories shuffled), worst first",
                    [r["feature"] for r in shown],
                    {"accuracy drop": [r["drop"] for r in shown]},
                    "clean accuracy minus accuracy",
                )
            ],
        }
        drop = worst["drop"]
        summary = (
            f"Most sensitive feature: {worst['feature']} ({worst['drift']}): accuracy {worst['accuracy']:.1%} "
            f"against {clean_acc:.1%} clean"
            + (f", {rows[1]['feature']} next ({rows[1]['accuracy']:.1%})." if len(rows) > 1 else ".")
        )
        if not math.isfinite(drop):
            summary = "No feature could be measured."
        return Outcome(metrics=metrics, details=details, summary=summary)
