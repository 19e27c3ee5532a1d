"""The validity gate: is a changed input still a valid example of the data, or has it left the envelope?

Berend et al., "Cats Are Not Fish: Deep Learning Testing Calls for Out-of-Distribution Awareness"
(ASE 2020) show that test generators (corruptions, mutations, fuzzing) often push inputs outside the
distribution the model was trained for; a wrong answer there is not necessarily a defect, it may only
mean there was no data like it. The gate fits an OOD score on in-distribution data and a threshold at
its 95th percentile on held-out ID data, so about 95% of valid inputs are "in-envelope". Following the
paper, the detector is chosen per model: every candidate is benchmarked against generated far-OOD
inputs and the one that lets the fewest through at its threshold is kept. A failure on an
in-envelope input is a real defect; a failure on an out-of-envelope input says the model should abstain
or the data must be extended. The detector has false accept and reject rates: the split is an estimate.

Used by the shift suite (and fuzzing)::

    gate = validity_gate(ctx)
    if gate is not None:
        inside = gate.in_envelope(x_shifted)
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from roadworthy.checks.base import Context
from roadworthy.checks.ood import sources
from roadworthy.checks.ood.detectors import KNN, Detector, Energy, Mahalanobis, MaxLogit, MaxSoftmax, auroc
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
        The fitted detector chosen for the model (``mahalanobis``, ``knn``, ``energy``, ``max_logit`` or ``msp``).
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


#: generated far-OOD inputs per source used to pick the gate's detector
N_PROXY = 200


def candidate_detectors(ctx: Context) -> list[Detector]:
    """Detectors the gate may use, in order of preference on ties.

    Feature scores (Mahalanobis, k-NN) where the model offers features, then energy, max logit and MSP;
    energy is left out for a model that outputs probabilities (its logits are ``log p``, so the energy
    is constant).
    """
    out: list[Detector] = [Mahalanobis(), KNN()] if "features" in ctx.capabilities else []
    if ctx.model.output == "logits":
        out.append(Energy())
    return [*out, MaxLogit(), MaxSoftmax()]


def proxy_ood(ctx: Context) -> dict[str, np.ndarray]:
    """Far-OOD stand-ins to pick the detector on: generated noise, colours and photos, plus --ood-data.

    Near-OOD shifts are left out on purpose: the gate judges shifted inputs, and a detector chosen for
    flagging shifts would call every shifted input invalid.
    """
    n = N_PROXY
    if ctx.modality == "image":
        out = {
            k: sources.far_ood_images(k, n, ctx.data.input_shape, ctx.rng("ood.gate", k))
            for k in sources.FAR_IMAGE_SOURCES
        }
    else:
        out = {
            k: sources.far_ood_tabular(k, n, ctx.data.x, ctx.rng("ood.gate", k))
            for k in sources.FAR_TABULAR_SOURCES
        }
    user = ctx.ood_data
    if user is not None and user.n_samples and tuple(user.x.shape[1:]) == ctx.data.input_shape:
        rows = ctx.rng("ood.gate", "user").permutation(user.n_samples)[: 2 * n]
        out["user"] = np.asarray(user.x[np.sort(rows)], np.float32)
    return out


def _fit(ctx: Context, detector: Detector, quantile: float, calib: np.ndarray) -> tuple[Detector, float]:
    """Fit ``detector`` on the reference and return it with its threshold on the rows ``calib``."""
    detector.fit(fit_embedding(ctx, detector.space), reference(ctx).fit_y)
    scores = detector.score(eval_embedding(ctx, detector.space)[calib])
    return detector, conformal_threshold(scores, quantile)


def _select(ctx: Context, calib: np.ndarray) -> tuple[Detector, float, dict[str, dict[str, float]]]:
    """Benchmark every candidate on the proxy OOD sources, then pick (Berend et al.'s two steps).

    The winner lets the fewest proxy OOD inputs through *at its own threshold* (mean over sources), the
    number that matters for a gate; mean AUROC breaks ties, then the order of preference.
    """
    proxies = proxy_ood(ctx)
    stacked = np.concatenate(list(proxies.values()))
    bounds = np.cumsum([0] + [len(v) for v in proxies.values()])
    embedded: dict[str, np.ndarray] = {}
    results: list[tuple[float, float, int, Detector, float]] = []
    table: dict[str, dict[str, float]] = {}
    for rank, det in enumerate(candidate_detectors(ctx)):
        try:
            det, tau = _fit(ctx, det, QUANTILE, calib)
            if det.space not in embedded:
                embedded[det.space] = embed(ctx, stacked, det.space)
            id_scores = det.score(eval_embedding(ctx, det.space)[calib])
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


def validity_gate(ctx: Context) -> ValidityGate | None:
    """The session's validity gate, fitted once and cached (``ctx.cached("ood.validity_gate")``).

    Every candidate detector (see :func:`candidate_detectors`) is fitted on in-distribution data
    (training data when given, else half of the evaluation data), thresholded at the conformal 95th
    percentile of held-out evaluation scores, and the one that lets the fewest generated far-OOD inputs
    through is kept. With training data, half of the
    evaluation data stays aside to measure how many clean inputs the gate really keeps. Returns ``None``
    when nothing can be fitted (fewer than 4 evaluation samples, or no usable score).
    """

    def build() -> ValidityGate | None:
        if ctx.data.n_samples < 4:
            log.warning(
                "validity gate: %d evaluation samples are too few to fit a threshold", ctx.data.n_samples
            )
            return None
        ref = reference(ctx)
        # threshold on evaluation rows the detector was not fitted on; with training data keep half B aside
        calib, check = (ref.half_a, ref.half_b) if ref.from_train else (ref.half_b, None)
        try:
            det, tau, aurocs = _select(ctx, calib)
        except InvalidInputError as exc:
            log.warning("validity gate: %s", exc)
            return None
        space = det.space
        rate = None
        if check is not None and len(check):
            rate = float(np.mean(det.score(eval_embedding(ctx, space)[check]) <= tau))
        return ValidityGate(
            detector=det,
            threshold=tau,
            quantile=QUANTILE,
            embed=lambda x: embed(ctx, x, space),
            fit_on=ref.fit_from,
            n_calibration=len(calib),
            clean_in_envelope=rate,
            clean_in_envelope_n=len(check) if check is not None else 0,
            candidates=aurocs,
        )

    return ctx.cached("ood.validity_gate", build)
