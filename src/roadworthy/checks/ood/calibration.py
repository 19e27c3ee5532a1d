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
``.ece_shifted_after_temperature``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, logsumexp

from roadworthy.checks.base import Check, Context, Outcome, Requires, register
from roadworthy.checks.ood import sources
from roadworthy.checks.ood.reference import eval_halves
from roadworthy.errors import InvalidInputError
from roadworthy.results import CheckResult
from roadworthy.stats import expected_calibration_error, reliability_bins, softmax

#: moderate shifts whose pooled outputs give the shifted calibration numbers
MODERATE_SHIFTS = ("gaussian_noise", "contrast", "fog", "defocus_blur")


def nll(logits: np.ndarray, y: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of labels ``y`` under ``softmax(logits / temperature)``."""
    z = np.asarray(logits, np.float64) / temperature
    return float(np.mean(logsumexp(z, axis=1) - z[np.arange(len(y)), y]))


def brier_score(probs: np.ndarray, y: np.ndarray) -> float:
    """Mean over samples of ``sum_k (p_k - [y == k])^2`` (Brier 1950): 0 is perfect, 2 the worst."""
    p = np.asarray(probs, np.float64)
    onehot = np.zeros_like(p)
    onehot[np.arange(len(y)), y] = 1.0
    return float(np.mean(((p - onehot) ** 2).sum(axis=1)))


def fit_temperature(logits: np.ndarray, y: np.ndarray, bounds: tuple[float, float] = (0.01, 100.0)) -> float:
    """The temperature minimising :func:`nll` on ``(logits, y)`` (Guo et al. 2017), searched in log space.

    ``T > 1`` softens an over-confident model, ``T < 1`` sharpens an under-confident one; the argmax,
    hence accuracy, is unchanged.
    """
    if len(y) == 0:
        raise InvalidInputError("cannot fit a temperature on zero samples")
    z = np.asarray(logits, np.float64)
    res = minimize_scalar(
        lambda log_t: nll(z, y, math.exp(log_t)),
        bounds=(math.log(bounds[0]), math.log(bounds[1])),
        method="bounded",
        options={"xatol": 1e-4},
    )
    return float(math.exp(res.x))


def scaled_probs(logits: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(logits / temperature)``."""
    return softmax(np.asarray(logits, np.float64) / temperature, axis=1)


def cross_fitted_probs(
    logits: np.ndarray, y: np.ndarray, halves: tuple[np.ndarray, np.ndarray]
) -> np.ndarray:
    """Probabilities where each half is scaled by the temperature fitted on the other half."""
    a, b = halves
    out = np.empty(logits.shape, np.float64)
    out[b] = scaled_probs(logits[b], fit_temperature(logits[a], y[a]))
    out[a] = scaled_probs(logits[a], fit_temperature(logits[b], y[b]))
    return out


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

        x_s, y_s, origin = self._shifted(ctx)
        if len(y_s):
            logits_s = ctx.predict_logits(x_s).astype(np.float64)
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

        direction = "over-confident" if t > 1 else "under-confident"
        summary = f"ECE {metrics['ood.calibration.ece']:.3f} on clean data"
        if "ood.calibration.ece_shifted" in metrics:
            summary += f", {metrics['ood.calibration.ece_shifted']:.3f} under moderate shifts"
        summary += f"; the model is {direction} and temperature {t:.2f} would bring clean ECE to "
        summary += f"{metrics.get('ood.calibration.ece_after_temperature', math.nan):.3f} (cross-fitted)."
        return Outcome(metrics=metrics, details=details, warnings=warnings, summary=summary)

    def _shifted(self, ctx: Context) -> tuple[np.ndarray, np.ndarray, dict[str, str]]:
        """Evaluation inputs under the moderate shifts (an even share each), their labels and origins."""
        p = self.params
        idx = ctx.sample(p.n_shifted, self.id, "shifted")
        if ctx.modality != "image":
            x = sources.noisy_tabular(ctx.data.x[idx], p.severity, ctx.rng(self.id, "tabular_noise"))
            return x, ctx.data.y[idx], {"gaussian_noise": "built-in"}
        if not p.shifts:
            return ctx.data.x[:0], ctx.data.y[:0], {}
        parts = np.array_split(ctx.rng(self.id, "assign").permutation(idx), len(p.shifts))
        xs, ys, origin = [], [], {}
        for name, rows in zip(p.shifts, parts, strict=True):
            if len(rows) == 0:
                continue
            x, origin[name] = sources.shifted_images(
                ctx.data.x[rows], name, p.severity, ctx.rng(self.id, name)
            )
            xs.append(x)
            ys.append(ctx.data.y[rows])
        return np.concatenate(xs), np.concatenate(ys), origin

    @staticmethod
    def figures(result: CheckResult) -> list[tuple[str, str]]:
        from roadworthy.report.figures import figure, to_data_uri

        rel = result.details.get("reliability", {})
        if not rel:
            return []
        labels = {
            "clean": "clean",
            "shifted": "shifted (severity 3)",
            "after_temperature": "clean, after temperature",
        }
        with figure(width=4.6, height=3.6) as (fig, ax):
            ax.plot([0, 1], [0, 1], color="grey", ls="--", lw=1, label="perfect calibration")
            for key, label in labels.items():
                if key in rel:
                    conf = np.asarray(rel[key]["confidence"], float)
                    acc = np.asarray(rel[key]["accuracy"], float)
                    ok = np.isfinite(conf) & np.isfinite(acc)
                    ax.plot(conf[ok], acc[ok], marker="o", ms=3, label=label)
            ax.set_xlabel("confidence")
            ax.set_ylabel("accuracy")
            ax.set_xlim(0, 1)
            ax.set_ylim(0, 1.02)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7, loc="upper left")
            uri = to_data_uri(fig)
        return [
            (
                "Reliability diagram: accuracy against confidence per bin (below the diagonal: over-confident)",
                uri,
            )
        ]
