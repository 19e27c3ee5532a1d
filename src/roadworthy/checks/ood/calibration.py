"""``ood.calibration``: does the model's confidence mean what it says, on clean and on shifted data?

A model that says "90% sure" should be right nine times in ten; a downstream system that thresholds
confidence (to abstain, or to hand over to a person) relies on it. Guo et al. ("On Calibration of
Modern Neural Networks", ICML 2017) show modern networks are over-confident and that one scalar
*temperature* ``T`` dividing the logits, fitted by minimising the negative log-likelihood on held-out
data, repairs most of it without changing a single prediction. Ovadia et al. ("Can You Trust Your
Model's Uncertainty?", NeurIPS 2019) show calibration degrades under distribution shift, so it is
measured on shifted data as well.

Metrics: ``ood.calibration.ece`` (expected calibration error, 15 bins), ``.brier`` (mean squared error
of the probability vector), ``.nll`` (mean negative log-likelihood), the same on shifted data
(``.ece_shifted``, ``.brier_shifted``), and the recommendation: ``.temperature`` (fitted on all the
evaluation data) with ``.ece_after_temperature`` (cross-fitted: ``T`` fitted on one half of the data,
ECE measured on the other, both ways, so the number is not flattered by fitting on what it scores) and
``.ece_shifted_after_temperature``. The maths are in :mod:`roadworthy.uncertainty.calibration`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import log_softmax

from roadworthy import evidence
from roadworthy.checks.base import Check, Context, Outcome, Requires, planned_samples, register
from roadworthy.checks.reference import eval_halves
from roadworthy.models.base import to_logits
from roadworthy.shifts import apply_shift
from roadworthy.stats import expected_calibration_error, reliability_bins, softmax
from roadworthy.uncertainty import sources
from roadworthy.uncertainty.calibration import (
    brier_score,
    cross_fitted_probs,
    fit_temperature,
    nll,
    scaled_probs,
)

#: moderate shifts whose pooled outputs give the shifted calibration numbers
MODERATE_SHIFTS = ("gaussian_noise", "contrast", "fog", "defocus_blur")


@dataclass(frozen=True)
class CalibrationParams:
    n_bins: int = 15  #: equal-width confidence bins for ECE and the reliability diagram
    n_shifted: int = 1000  #: evaluation inputs shifted (split evenly across the shifts)
    severity: int = 3  #: severity of the moderate shifts
    shifts: tuple[str, ...] = MODERATE_SHIFTS  #: image shifts pooled into the shifted numbers


@register
class Calibration(Check):
    """Calibration (ECE, Brier, NLL) on clean and shifted data, and the temperature that would fix it.

    Guo et al., ICML 2017 (ECE, temperature scaling); Ovadia et al., NeurIPS 2019 (calibration under
    shift). Not an attack: it asks whether confidence can be trusted as a probability. ECE 0.05 means
    the model's stated confidence is off from its real accuracy by 5 points on average.
    """

    id = "ood.calibration"
    title = "Calibration on clean and shifted data"
    Params = CalibrationParams
    budget_params = {
        "quick": {"n_shifted": 400},
        "standard": {"n_shifted": 1000},
        "thorough": {"n_shifted": 4000},
    }
    requires = Requires(modalities=frozenset({"image", "tabular"}))

    plan_samples = "n_shifted"  #: what a large model's plan lowers (stated in the plan)

    @classmethod
    def plan_passes(cls, params: Any, n_data: int) -> tuple[float, float]:
        """``n_shifted`` shifted inputs (the clean outputs are the run's shared ones)."""
        return float(planned_samples(params, n_data, "n_shifted")), 0.0

    def run(self, ctx: Context) -> Outcome:
        p = self.params
        y = ctx.data.y
        logits = ctx.clean_logits.astype(np.float64)
        probs = ctx.clean_probs.astype(np.float64)
        metrics = {
            "ood.calibration.ece": expected_calibration_error(probs, y, p.n_bins),
            "ood.calibration.brier": brier_score(probs, y),
            "ood.calibration.nll": nll(logits, y),
        }
        warnings: list[str] = []
        details: dict[str, Any] = {"n_samples": len(y), "n_bins": p.n_bins, "reliability": {}}
        details["reliability"]["clean"] = reliability_bins(probs, y, p.n_bins)

        t = fit_temperature(logits, y)
        halves = eval_halves(ctx)
        if min(len(h) for h in halves) >= 2:
            after = cross_fitted_probs(logits, y, halves)
            metrics["ood.calibration.ece_after_temperature"] = expected_calibration_error(after, y, p.n_bins)
            details["reliability"]["after_temperature"] = reliability_bins(after, y, p.n_bins)
        metrics["ood.calibration.temperature"] = t
        if not 0.0101 < t < 99.0:
            warnings.append(
                f"the fitted temperature {t:.3g} sits at the edge of its search range (0.01 to 100)"
            )

        logits_s, y_s, origin = self._shifted(ctx)
        if len(y_s):
            probs_s = softmax(logits_s, axis=1)
            metrics["ood.calibration.ece_shifted"] = expected_calibration_error(probs_s, y_s, p.n_bins)
            metrics["ood.calibration.brier_shifted"] = brier_score(probs_s, y_s)
            metrics["ood.calibration.nll_shifted"] = float(
                -np.mean(log_softmax(logits_s, axis=1)[np.arange(len(y_s)), y_s])
            )
            metrics["ood.calibration.ece_shifted_after_temperature"] = expected_calibration_error(
                scaled_probs(logits_s, t), y_s, p.n_bins
            )
            details["reliability"]["shifted"] = reliability_bins(probs_s, y_s, p.n_bins)
            details["shifted"] = {
                "n_samples": len(y_s),
                "severity": p.severity,
                "shifts": origin,
                "accuracy": float(np.mean(probs_s.argmax(axis=1) == y_s)),
                "mean_confidence": float(probs_s.max(axis=1).mean()),
            }
        details["clean"] = {
            "accuracy": float(np.mean(probs.argmax(axis=1) == y)),
            "mean_confidence": float(probs.max(axis=1).mean()),
        }
        if len(y) < 200:
            warnings.append(f"only {len(y)} evaluation samples: a {p.n_bins}-bin ECE is noisy at this size")
        details[evidence.KEY] = [reliability_diagram(details["reliability"])]

        direction = "over-confident" if t > 1 else "under-confident"
        summary = f"ECE {metrics['ood.calibration.ece']:.3f} on clean data"
        if "ood.calibration.ece_shifted" in metrics:
            summary += f", {metrics['ood.calibration.ece_shifted']:.3f} under moderate shifts"
        summary += f"; the model is {direction} and temperature {t:.2f} would bring clean ECE to "
        summary += f"{metrics.get('ood.calibration.ece_after_temperature', math.nan):.3f} (cross-fitted)."
        return Outcome(metrics=metrics, details=details, warnings=warnings, summary=summary)

    def _shifted(self, ctx: Context) -> tuple[np.ndarray, np.ndarray, dict[str, str]]:
        """Logits (float64) on evaluation inputs under the moderate shifts, their labels and origins.

        Each shift gets an even share of ``n_shifted``. Where the shift suite already fed the shift at
        this severity to the model (``ctx.shared_shifted``), the share is drawn from its rows and its
        outputs are reused: no image is shifted and the model is not called again. Otherwise the share
        is shifted and predicted chunk by chunk, keeping only the outputs.
        """
        p = self.params
        idx = ctx.sample(p.n_shifted, self.id, "shifted")
        if ctx.modality != "image":
            x = sources.noisy_tabular(ctx.data.x[idx], p.severity, ctx.rng(self.id, "tabular_noise"))
            return ctx.predict_logits(x).astype(np.float64), ctx.data.y[idx], {"gaussian_noise": "built-in"}
        if not p.shifts:
            return np.zeros((0, ctx.n_classes)), ctx.data.y[:0], {}
        parts = np.array_split(ctx.rng(self.id, "assign").permutation(idx), len(p.shifts))
        zs, ys, origin = [], [], {}
        for name, rows in zip(p.shifts, parts, strict=True):
            if len(rows) == 0:
                continue
            shared = [
                e
                for e in ctx.shared_shifted(name, p.severity)
                if e.change >= sources.UNCHANGED and len(e.rows)
            ]
            if shared:
                e = max(shared, key=lambda e: len(e.rows))
                take = np.sort(ctx.rng(self.id, name, "shared").permutation(len(e.rows))[: len(rows)])
                raw, rows, origin[name] = e.raw[take], e.rows[take], f"shift suite (outputs of {e.by})"
            else:
                rng = ctx.rng(self.id, name)
                where: set[str] = set()

                def shift(x0: np.ndarray, name: str = name, rng: Any = rng, where: set[str] = where) -> Any:
                    out, w = sources.shifted_images(x0, name, p.severity, rng, apply_shift)
                    where.add(w)
                    return out

                raw = ctx.stream_shifted(name, p.severity, rows, shift, self.id).raw
                origin[name] = " and ".join(sorted(where)) or "shift suite"
            zs.append(to_logits(raw, ctx.model.output).astype(np.float64))
            ys.append(ctx.data.y[rows])
        return np.concatenate(zs), np.concatenate(ys), origin


#: the reliability diagram's lines, in drawing order
RELIABILITY_LABELS = {
    "clean": "clean",
    "shifted": "shifted (severity 3)",
    "after_temperature": "clean, after temperature",
}


def reliability_diagram(reliability: dict[str, dict[str, list[float]]]) -> dict[str, Any]:
    """Evidence: accuracy against confidence per bin, one line per kind of data, and the diagonal."""
    series = {}
    for key, label in RELIABILITY_LABELS.items():
        if key in reliability:
            conf = np.asarray(reliability[key]["confidence"], float)
            acc = np.asarray(reliability[key]["accuracy"], float)
            ok = np.isfinite(conf) & np.isfinite(acc)
            series[label] = (conf[ok], acc[ok])
    return evidence.lines(
        "Reliability diagram: accuracy against confidence per bin (below the diagonal: over-confident)",
        series,
        "confidence",
        "accuracy",
        ylim=(0.0, 1.02),
        xlim=(0.0, 1.0),
        diagonal=True,
    )
