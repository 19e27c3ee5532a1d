"""The validity gate: is a changed input still a valid example of the data, or has it left the envelope?

Berend et al., "Cats Are Not Fish: Deep Learning Testing Calls for Out-of-Distribution Awareness"
(ASE 2020) show that test generators (corruptions, mutations, fuzzing) often push inputs outside the
distribution the model was trained for; a wrong answer there is not necessarily a defect, it may only
mean there was no data like it. The gate fits an OOD score on in-distribution data and a threshold at
its 95th percentile on held-out ID data, so about 95% of valid inputs are "in-envelope". Following the
paper, the detector is chosen per model: every candidate is benchmarked against far-OOD inputs and the
one that lets the fewest through at its threshold is kept. A failure on an in-envelope input is a real
defect; a failure on an out-of-envelope input says the model should abstain or the data must be
extended. The detector has false accept and reject rates: the split is an estimate.

The algorithm works on embeddings and needs no check machinery::

    from roadworthy.uncertainty.validity import QUANTILE, ValidityGate, candidate_detectors, select_detector

    det, tau, table = select_detector(
        candidate_detectors(features=True, logits=True),
        fit_embedding=lambda space: z_fit[space], fit_y=y_fit,     # ID data to fit on
        calibration_embedding=lambda space: z_cal[space],          # held-out ID data: the threshold
        proxies={"noise": x_noise, "photos": x_photos},            # far-OOD inputs to choose on
        embed=lambda x, space: logits(x) if space == "logits" else features(x),
    )
    gate = ValidityGate(det, tau, QUANTILE, embed=..., fit_on="training data", n_calibration=len(z_cal))
    inside = gate.in_envelope(x_shifted)

Inside a roadworthy run the session's gate is ``roadworthy.checks.reference.validity_gate(ctx)``.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from roadworthy.errors import InvalidInputError
from roadworthy.uncertainty.detectors import (
    KNN,
    Detector,
    Energy,
    InputKNN,
    InputMahalanobis,
    IsolationForest,
    Mahalanobis,
    MaxLogit,
    MaxSoftmax,
    Space,
    auroc,
)

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
        The fitted detector chosen for the model (``mahalanobis``, ``knn``, ``energy``, ``max_logit`` or
        ``msp``; for tables also ``input_mahalanobis``, ``input_knn`` or ``isolation_forest``).
    threshold
        Scores at or below it are in-envelope.
    quantile
        The share of held-out ID inputs the threshold accepts (0.95).
    embed
        Inputs to the detector's space (the model's logits or features, or the rows themselves).
    """

    detector: Detector
    threshold: float
    quantile: float
    embed: Callable[[np.ndarray], np.ndarray]
    fit_on: str
    n_calibration: int
    clean_in_envelope: float | None = None
    clean_in_envelope_n: int = 0
    candidates: dict[str, dict[str, float]] = field(default_factory=dict)

    def scores(self, x: np.ndarray) -> np.ndarray:
        """OOD score per input of ``x`` (higher = further outside the training distribution)."""
        x = np.asarray(x, np.float32)
        if len(x) == 0:
            return np.zeros(0)
        return self.detector.score(self.embed(x))

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
            "selected_by": "fewest generated far-OOD inputs (and --ood-data) accepted at the threshold",
            "candidates": {k: dict(v) for k, v in self.candidates.items()},
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


def candidate_detectors(features: bool, logits: bool, inputs: bool = False, seed: int = 0) -> list[Detector]:
    """Detectors the gate may use, in order of preference on ties.

    For tables (``inputs``) first the detectors on standardised input columns (input Mahalanobis, input
    k-NN, Isolation Forest seeded with ``seed``): a row whose columns no longer fit together can look
    ordinary to the model's outputs, and a scikit-learn pipeline has no features. Then feature scores
    (Mahalanobis, k-NN) where the model offers ``features``, then energy, max logit and MSP; energy is left
    out unless the model outputs ``logits`` (for a model that outputs probabilities the logits are
    ``log p``, so the energy is constant).
    """
    out: list[Detector] = [InputMahalanobis(), InputKNN(), IsolationForest(seed=seed)] if inputs else []
    if features:
        out += [Mahalanobis(), KNN()]
    if logits:
        out.append(Energy())
    return [*out, MaxLogit(), MaxSoftmax()]


def select_detector(
    candidates: Sequence[Detector],
    fit_embedding: Callable[[Space], np.ndarray],
    fit_y: np.ndarray,
    calibration_embedding: Callable[[Space], np.ndarray],
    proxies: Mapping[str, np.ndarray],
    embed: Callable[[np.ndarray, Space], np.ndarray],
    quantile: float = QUANTILE,
) -> tuple[Detector, float, dict[str, dict[str, float]]]:
    """Benchmark every candidate on proxy OOD inputs, then pick one (Berend et al.'s two steps).

    Each candidate is fitted on ``fit_embedding(space)`` with labels ``fit_y`` and thresholded at the
    conformal ``quantile`` of its scores on ``calibration_embedding(space)`` (held-out ID data). The
    winner lets the fewest ``proxies`` through *at its own threshold* (mean over sources), the number that
    matters for a gate; mean AUROC breaks ties, then the order of ``candidates``. A candidate whose fit
    fails (:class:`InvalidInputError`, a singular matrix) is left out with a warning.

    Parameters
    ----------
    embed
        ``embed(x, space)``: inputs to the model's logits or features.

    Returns
    -------
    tuple
        The fitted detector, its threshold, and per candidate ``{"ood_accepted", "auroc"}``.
    """
    stacked = np.concatenate(list(proxies.values()))
    bounds = np.cumsum([0] + [len(v) for v in proxies.values()])
    embedded: dict[str, np.ndarray] = {}
    results: list[tuple[float, float, int, Detector, float]] = []
    table: dict[str, dict[str, float]] = {}
    for rank, det in enumerate(candidates):
        try:
            det.fit(fit_embedding(det.space), fit_y)
            tau = conformal_threshold(det.score(calibration_embedding(det.space)), quantile)
            if det.space not in embedded:
                embedded[det.space] = embed(stacked, det.space)
            id_scores = det.score(calibration_embedding(det.space))
            ood_scores = det.score(embedded[det.space])
        except (InvalidInputError, np.linalg.LinAlgError) as exc:  # e.g. a feature layer that fails
            log.warning("validity gate: the %s detector could not be fitted (%s)", det.name, exc)
            continue
        parts = [ood_scores[lo:hi] for lo, hi in itertools.pairwise(bounds)]
        accepted = float(np.mean([np.mean(p <= tau) for p in parts]))
        mean_auroc = float(np.mean([auroc(id_scores, p) for p in parts]))
        table[det.name] = {"ood_accepted": accepted, "auroc": mean_auroc}
        results.append((accepted, -mean_auroc, rank, det, tau))
    if not results:
        raise InvalidInputError("no OOD detector could be fitted for the validity gate")
    best = min(results, key=lambda r: r[:3])
    return best[3], best[4], table
