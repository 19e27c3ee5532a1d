"""The validity gate: is a changed input still a valid example of the data, or has it left the envelope?

Berend et al., "Cats Are Not Fish: Deep Learning Testing Calls for Out-of-Distribution Awareness"
(ASE 2020) show that test generators (corruptions, mutations, fuzzing) often push inputs outside the
distribution the model was trained for; a wrong answer there is not necessarily a defect, it may only
mean there was no data like it. The gate fits an OOD score on in-distribution data and a threshold at
its 95th percentile on held-out ID data, so about 95% of valid inputs are "in-envelope". A failure on an
in-envelope input is a real defect; a failure on an out-of-envelope input says the model should abstain
or the data must be extended. The detector has false accept and reject rates: the split is an estimate.

Used by the shift suite (and fuzzing)::

    gate = validity_gate(ctx)
    if gate is not None:
        inside = gate.in_envelope(x_shifted)
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from roadworthy.checks.base import Context
from roadworthy.checks.ood.detectors import Detector, Energy, Mahalanobis, MaxSoftmax
from roadworthy.checks.ood.reference import embed, eval_embedding, fit_embedding, reference
from roadworthy.errors import InvalidInputError

log = logging.getLogger(__name__)

#: the share of held-out in-distribution inputs the gate is fitted to accept
QUANTILE = 0.95
CAVEAT = (
    "The gate is an OOD detector with its own false accept and reject rates: about 5% of valid inputs "
    "fall outside it by construction, so the in/out-of-envelope split is an estimate."
)


@dataclass
class ValidityGate:
    """An OOD score with a threshold: ``in_envelope(x)`` is true where ``scores(x) <= threshold``.

    Attributes
    ----------
    detector
        The fitted detector (``detector.name`` is ``mahalanobis``, ``energy`` or ``msp``).
    threshold
        Scores at or below it are in-envelope.
    quantile
        The share of held-out ID inputs the threshold accepts (0.95).
    """

    detector: Detector
    threshold: float
    quantile: float
    embed: Callable[[np.ndarray], np.ndarray]
    fit_on: str
    n_calibration: int
    clean_in_envelope: float | None = None
    clean_in_envelope_n: int = 0

    def scores(self, x: np.ndarray) -> np.ndarray:
        """OOD score per input of ``x`` (higher = further outside the training distribution)."""
        return self.detector.score(self.embed(np.asarray(x, np.float32)))

    def in_envelope(self, x: np.ndarray) -> np.ndarray:
        """Boolean per input: true where the input still looks like in-distribution data."""
        return self.scores(x) <= self.threshold

    def describe(self) -> dict[str, Any]:
        """JSON facts for the report: detector, quantile, threshold, sample counts and the caveat."""
        return {
            "detector": self.detector.name,
            "quantile": self.quantile,
            "threshold": float(self.threshold),
            "n_fitted": int(self.detector.n_fitted),
            "fit_on": self.fit_on,
            "n_calibration": int(self.n_calibration),
            "clean_in_envelope": self.clean_in_envelope,
            "clean_in_envelope_n": int(self.clean_in_envelope_n),
            "caveat": CAVEAT,
        }


def conformal_threshold(scores: np.ndarray, quantile: float = QUANTILE) -> float:
    """The ``ceil((n + 1) q) / n`` empirical quantile of ``scores``.

    The finite-sample correction of split-conformal prediction: a new exchangeable ID input falls at or
    below it with probability at least ``q`` (the largest score when ``n`` is too small for that).
    """
    s = np.sort(np.asarray(scores, np.float64).ravel())
    if s.size == 0:
        raise InvalidInputError("cannot fit a threshold on zero in-distribution scores")
    k = min(s.size, math.ceil((s.size + 1) * quantile))
    return float(s[k - 1])


def gate_detector(ctx: Context) -> Detector:
    """The detector the gate uses: Mahalanobis on features when offered, else energy (MSP for probabilities).

    Energy is constant for a model that outputs probabilities (its logits are ``log p``), so such models
    get the maximum softmax probability instead.
    """
    if "features" in ctx.capabilities:
        return Mahalanobis()
    return Energy() if ctx.model.output == "logits" else MaxSoftmax()


def _fit(ctx: Context, detector: Detector, quantile: float) -> ValidityGate:
    ref = reference(ctx)
    space = detector.space
    detector.fit(fit_embedding(ctx, space), ref.fit_y)
    scores = detector.score(eval_embedding(ctx, space))
    # threshold on evaluation rows the detector was not fitted on; with training data keep half B aside
    calib, check = (ref.half_a, ref.half_b) if ref.from_train else (ref.half_b, None)
    tau = conformal_threshold(scores[calib], quantile)
    rate = float(np.mean(scores[check] <= tau)) if check is not None and len(check) else None
    return ValidityGate(
        detector=detector,
        threshold=tau,
        quantile=quantile,
        embed=lambda x: embed(ctx, x, space),
        fit_on=ref.fit_from,
        n_calibration=len(calib),
        clean_in_envelope=rate,
        clean_in_envelope_n=len(check) if check is not None else 0,
    )


def validity_gate(ctx: Context) -> ValidityGate | None:
    """The session's validity gate, fitted once and cached (``ctx.cached("ood.validity_gate")``).

    Fitted on in-distribution data (training data when given, else half of the evaluation data), with
    its threshold at the conformal 95th percentile of held-out evaluation scores. Returns ``None`` when
    nothing can be fitted (fewer than 4 evaluation samples, or no usable score).
    """

    def build() -> ValidityGate | None:
        if ctx.data.n_samples < 4:
            log.warning(
                "validity gate: %d evaluation samples are too few to fit a threshold", ctx.data.n_samples
            )
            return None
        candidates = [gate_detector(ctx)]
        if candidates[0].space == "features":  # a feature layer that fails falls back to the logits
            candidates.append(Energy() if ctx.model.output == "logits" else MaxSoftmax())
        for detector in candidates:
            try:
                return _fit(ctx, detector, QUANTILE)
            except (InvalidInputError, np.linalg.LinAlgError) as exc:
                log.warning("validity gate: %s detector could not be fitted (%s)", detector.name, exc)
        return None

    return ctx.cached("ood.validity_gate", build)
