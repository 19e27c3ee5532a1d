"""The ``clean`` check: how the model does on the evaluation data as given."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from roadworthy import evidence
from roadworthy.checks.base import Check, Context, Outcome, register
from roadworthy.results import Example
from roadworthy.stats import (
    expected_calibration_error,
    mean_of_proportions_metrics,
    proportion_metrics,
    reliability_bins,
)

MAX_TABLE_CLASSES = 100  #: per-class rows and confusion-matrix size kept in the report


@dataclass(frozen=True)
class CleanParams:
    n_bins: int = 15  #: bins of the expected calibration error
    max_examples: int = 8  #: misclassified inputs shown in the report


@register
class CleanAccuracy(Check):
    """Accuracy, per-class precision/recall/F1, confusion matrix and calibration on unchanged data.

    ``clean.accuracy`` is the share of evaluation samples whose top-1 prediction equals the label, with
    a 95% Wilson interval (``_ci_low``/``_ci_high``) and the sample count (``_n``). ``clean.ece`` is the
    expected calibration error (Guo et al., 2017): the mean gap between confidence and accuracy.
    ``clean.worst_class_accuracy`` is the lowest per-class recall: a model that is right 97% of the
    time overall can still miss most stop signs.
    """

    id = "clean.accuracy"
    title = "Clean accuracy"
    Params = CleanParams

    def run(self, ctx: Context) -> Outcome:
        probs = ctx.clean_probs
        y = ctx.data.y
        pred = probs.argmax(axis=1)
        k = ctx.n_classes
        correct = pred == y
        cm = np.zeros((k, k), dtype=np.int64)
        np.add.at(cm, (y, pred), 1)
        support = cm.sum(axis=1)
        predicted = cm.sum(axis=0)
        tp = np.diag(cm)
        recall = np.divide(tp, support, out=np.full(k, np.nan), where=support > 0)
        precision = np.divide(tp, predicted, out=np.full(k, np.nan), where=predicted > 0)
        f1 = np.where(
            (precision + recall) > 0,
            2 * precision * recall / np.where(precision + recall > 0, precision + recall, 1),
            0.0,
        )
        present = support > 0
        macro_f1 = (
            float(np.nanmean(np.where(np.isnan(f1), 0.0, f1)[present])) if present.any() else float("nan")
        )

        metrics = proportion_metrics("clean.accuracy", correct)
        metrics["clean.ece"] = expected_calibration_error(probs, y, self.params.n_bins)
        metrics["clean.macro_f1"] = macro_f1
        metrics.update(mean_of_proportions_metrics("clean.balanced_accuracy", tp, support))
        worst = int(np.nanargmin(np.where(present, recall, np.inf)))
        metrics.update(proportion_metrics("clean.worst_class_accuracy", int(tp[worst]), int(support[worst])))

        # Per-class tables list at most MAX_TABLE_CLASSES classes: with many outputs (1000 ImageNet classes on
        # a 10-class test set) only those that occur as a label or a prediction, the busiest first.
        shown = np.arange(k)
        if k > MAX_TABLE_CLASSES:
            busy = np.flatnonzero((support > 0) | (predicted > 0))
            busy = busy[np.argsort(-(support[busy] + predicted[busy]), kind="stable")][:MAX_TABLE_CLASSES]
            shown = np.sort(busy)
        per_class = []
        for c in shown:
            lo_hi = proportion_metrics("r", int(tp[c]), int(support[c])) if support[c] else {}
            per_class.append(
                {
                    "class": ctx.class_name(c),
                    "support": int(support[c]),
                    "accuracy": _num(recall[c]),
                    "accuracy_ci_low": _num(lo_hi.get("r_ci_low")),
                    "accuracy_ci_high": _num(lo_hi.get("r_ci_high")),
                    "precision": _num(precision[c]),
                    "recall": _num(recall[c]),
                    "f1": _num(f1[c]),
                }
            )
        details = {
            "n_samples": len(y),
            "per_class": per_class,
            "confusion_matrix": cm[np.ix_(shown, shown)].tolist(),
            "class_names": [ctx.class_name(c) for c in shown],
            **({"classes_shown": [int(c) for c in shown]} if len(shown) < k else {}),
            "worst_class": ctx.class_name(worst),
            "reliability": reliability_bins(probs, y, self.params.n_bins),
        }
        details[evidence.KEY] = _evidence(
            details["confusion_matrix"], details["class_names"], details["reliability"]
        )
        examples = []
        if ctx.modality == "image":
            wrong = np.flatnonzero(~correct)
            # most confident mistakes first: those are the dangerous ones
            wrong = wrong[np.argsort(-probs[wrong].max(axis=1))][: self.params.max_examples]
            for i in wrong:
                examples.append(
                    Example(
                        title=f"sample {int(i)}: confidence {probs[i].max():.2f}",
                        label=ctx.class_name(y[i]),
                        original=evidence.png_data_uri(ctx.data.x[i]),
                        original_prediction=ctx.class_name(pred[i]),
                    )
                )
        acc = metrics["clean.accuracy"]
        summary = (
            f"{acc:.1%} of {len(y)} samples correct (95% CI {metrics['clean.accuracy_ci_low']:.1%}-"
            f"{metrics['clean.accuracy_ci_high']:.1%}); weakest class {ctx.class_name(worst)} at {recall[worst]:.1%}."
        )
        return Outcome(metrics=metrics, details=details, examples=examples, summary=summary)


def _evidence(cm: np.ndarray, names: list[str], rel: dict[str, list[float]]) -> list[dict[str, Any]]:
    """The confusion matrix (up to 40 classes) and the reliability diagram, as evidence items."""
    out = []
    cm = np.asarray(cm, dtype=float)
    if cm.size and len(names) <= 40:
        rows = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
        out.append(
            evidence.heatmap(
                "Confusion matrix (rows: true class, share of that class predicted as each column)",
                rows,
                names,
                names,
                vmin=0,
                vmax=1,
                cmap="Blues",
            )
        )
    if rel:
        conf = np.asarray(rel["confidence"], float)
        acc = np.asarray(rel["accuracy"], float)
        ok = np.isfinite(conf)
        out.append(
            evidence.lines(
                "Reliability diagram on clean data",
                {"model": (conf[ok], acc[ok])},
                "confidence",
                "accuracy",
                ylim=(0.0, 1.0),
                xlim=(0.0, 1.0),
                diagonal=True,
            )
        )
    return out


def _num(v: float | None) -> float | None:
    if v is None or not np.isfinite(v):
        return None
    return float(v)
