"""STRIP: an input-level backdoor detector users can deploy in front of a model (queries only).

Gao, Xu, Wang, Chen, Ranasinghe & Nepal, "STRIP: A Defence Against Trojan Attacks on Deep Neural
Networks", ACSAC 2019.

Threat model: at inference time, an attacker submits inputs carrying a trigger. Superimpose an input
with ``n_overlays`` random clean images and look at the entropy of
the model's predictions on the blends: a clean input's prediction follows the overlay and the entropy is
high; a triggered input keeps predicting the target class whatever it is blended with (the trigger
dominates), so its entropy is low. An input is flagged when its mean entropy falls below a threshold
fitted on clean inputs for a chosen false rejection rate (FRR): the paper fits a normal distribution to
the clean entropies and takes its ``frr`` quantile; the empirical quantile is offered as well.

Superimposition: ``"add"`` (the paper's code, ``cv2.addWeighted(x, 1, overlay, 1, 0)``: the sum, clipped
to the valid range, so a bright patch trigger survives at full strength) or ``"mix"``
(``alpha * x + (1 - alpha) * overlay``, which halves a patch at ``alpha`` 0.5 and can hide it).

Only ``predict`` is used, so STRIP runs on black-box models. Entropies are in nats, divided by
``log(n_classes)`` so they lie in [0, 1] whatever the number of classes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from roadworthy.errors import InvalidInputError
from roadworthy.models.base import predict_probs

#: Default false rejection rate the detection threshold is calibrated for (the paper reports 1%).
DEFAULT_FRR = 0.01


@dataclass
class StripDetector:
    """A fitted STRIP detector: ``detect(x)`` flags inputs whose entropy falls below ``threshold``.

    Attributes
    ----------
    threshold
        Normalised entropy below which an input is flagged as carrying a trigger.
    frr
        The false rejection rate the threshold was calibrated for.
    clean_mean, clean_std
        Mean and standard deviation of the calibration inputs' entropies.
    method
        ``"normal"`` (the paper's normal fit) or ``"quantile"`` (empirical quantile).
    """

    model: Any
    overlays: np.ndarray
    n_overlays: int
    alpha: float
    seed: int
    blend: str
    batch_size: int
    threshold: float = float("nan")
    frr: float = DEFAULT_FRR
    clean_mean: float = float("nan")
    clean_std: float = float("nan")
    method: str = "normal"

    def entropy(self, x: np.ndarray) -> np.ndarray:
        """Mean normalised prediction entropy of every input of ``x`` blended with random overlays."""
        x = _images(x, "x")
        if x.shape[1:] != self.overlays.shape[1:]:
            raise InvalidInputError(
                f"strip: inputs must have the overlays' shape {self.overlays.shape[1:]}. Got {x.shape[1:]}."
            )
        rng = np.random.default_rng(self.seed)
        k = self.n_overlays
        pick = rng.integers(0, len(self.overlays), size=(len(x), k))
        out = np.empty(len(x))
        per_chunk = max(1, self.batch_size // k)
        for i in range(0, len(x), per_chunk):
            xs = x[i : i + per_chunk]
            over = self.overlays[pick[i : i + per_chunk]]
            if self.blend == "add":
                blends = np.clip(xs[:, None] + over, 0.0, 1.0)
            else:
                blends = self.alpha * xs[:, None] + (1.0 - self.alpha) * over
            p = predict_probs(
                self.model, blends.reshape(-1, *x.shape[1:]).astype(np.float32), self.batch_size
            )
            p = np.clip(p.astype(np.float64), 1e-12, 1.0)
            h = -(p * np.log(p)).sum(axis=1) / np.log(p.shape[1])
            out[i : i + per_chunk] = h.reshape(len(xs), k).mean(axis=1)
        return out

    def fit(
        self, x_clean: np.ndarray, frr: float = DEFAULT_FRR, method: Literal["normal", "quantile"] = "normal"
    ) -> StripDetector:
        """Calibrate the threshold on clean inputs for the false rejection rate ``frr``."""
        from scipy.stats import norm

        if not 0.0 < frr < 0.5:
            raise InvalidInputError(f"strip: `frr` must be in (0, 0.5). Got {frr} instead.")
        if method not in ("normal", "quantile"):
            raise InvalidInputError(
                f"strip: `method` must be 'normal' or 'quantile'. Got {method!r} instead."
            )
        h = self.entropy(x_clean)
        self.clean_mean, self.clean_std = float(h.mean()), float(h.std(ddof=1)) if len(h) > 1 else 0.0
        self.frr, self.method = float(frr), method
        if method == "normal":
            self.threshold = float(norm.ppf(frr, loc=self.clean_mean, scale=max(self.clean_std, 1e-12)))
        else:
            self.threshold = float(np.quantile(h, frr))
        return self

    def detect(self, x: np.ndarray) -> np.ndarray:
        """Boolean per input: true where STRIP flags it as carrying a trigger."""
        if not np.isfinite(self.threshold):
            raise InvalidInputError("strip: call `fit` on clean inputs before `detect`.")
        return self.entropy(x) < self.threshold


@dataclass(frozen=True)
class StripResult:
    """STRIP calibrated on half of the clean inputs and measured on the other half (and on triggered inputs).

    Attributes
    ----------
    detector
        The fitted detector (deployable: ``result.detector.detect(x)``).
    clean_entropy
        Entropies of the held-out clean inputs.
    triggered_entropy
        Entropies of the triggered inputs (empty when none were given).
    false_rejection_rate
        Share of held-out clean inputs flagged (the FRR users would see), with ``n_clean``.
    detection_rate
        Share of triggered inputs flagged (NaN when none were given), with ``n_triggered``.
    """

    detector: StripDetector
    clean_entropy: np.ndarray
    triggered_entropy: np.ndarray
    false_rejection_rate: float
    detection_rate: float
    n_clean: int
    n_triggered: int

    def evidence(self) -> list[dict[str, Any]]:
        """Report evidence: the entropy distributions (empirical CDFs) with the threshold."""
        from roadworthy import evidence

        series = {"clean (held out)": _ecdf(self.clean_entropy)}
        if self.n_triggered:
            series["with trigger"] = _ecdf(self.triggered_entropy)
        return [
            evidence.lines(
                f"STRIP: entropy under superimposition (threshold {self.detector.threshold:.3f} for FRR "
                f"{self.detector.frr:.0%}; detection {self.detection_rate:.1%}, observed FRR "
                f"{self.false_rejection_rate:.1%})",
                series,
                "normalised entropy",
                "share of inputs below",
                xlim=(0.0, 1.0),
            )
        ]


def strip(
    model: Any,
    x_clean: np.ndarray,
    x_triggered: np.ndarray | None = None,
    n_overlays: int = 16,
    blend: Literal["add", "mix"] = "add",
    alpha: float = 0.5,
    frr: float = DEFAULT_FRR,
    method: Literal["normal", "quantile"] = "normal",
    seed: int = 0,
    batch_size: int = 256,
) -> StripResult:
    """Fit STRIP on half of ``x_clean`` (its overlays drawn from that half) and measure it on the rest.

    Parameters
    ----------
    model
        Any roadworthy model (queries only).
    x_clean
        Clean inputs (N, C, H, W) in [0, 1]; at least 4.
    x_triggered
        Inputs carrying a (planted or recovered) trigger, to measure the detection rate; optional.
    n_overlays
        Clean images blended with every input (the paper uses 100; 16 already separates well).
    blend
        ``"add"`` (sum, clipped: the paper's code) or ``"mix"`` (weighted mean with weight ``alpha``).
    alpha
        Weight of the input in a ``"mix"`` blend.
    frr, method
        Threshold calibration (see :meth:`StripDetector.fit`).
    seed
        Seeds the split and the overlay draws.
    """
    x_clean = _images(x_clean, "x_clean")
    if len(x_clean) < 4:
        raise InvalidInputError(f"strip: `x_clean` needs at least 4 inputs. Got {len(x_clean)}.")
    if not 0.0 < alpha < 1.0:
        raise InvalidInputError(f"strip: `alpha` must be in (0, 1). Got {alpha} instead.")
    if blend not in ("add", "mix"):
        raise InvalidInputError(f"strip: `blend` must be 'add' or 'mix'. Got {blend!r} instead.")
    if n_overlays < 1:
        raise InvalidInputError(f"strip: `n_overlays` must be positive. Got {n_overlays} instead.")
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(x_clean))
    cal, held = x_clean[perm[: len(perm) // 2]], x_clean[perm[len(perm) // 2 :]]
    det = StripDetector(
        model=model,
        overlays=cal,
        n_overlays=n_overlays,
        alpha=alpha,
        seed=seed,
        blend=blend,
        batch_size=batch_size,
    ).fit(cal, frr=frr, method=method)
    h_clean = det.entropy(held)
    h_trig = det.entropy(_images(x_triggered, "x_triggered")) if x_triggered is not None else np.empty(0)
    return StripResult(
        detector=det,
        clean_entropy=h_clean,
        triggered_entropy=h_trig,
        false_rejection_rate=float((h_clean < det.threshold).mean()),
        detection_rate=float((h_trig < det.threshold).mean()) if len(h_trig) else float("nan"),
        n_clean=len(h_clean),
        n_triggered=len(h_trig),
    )


def _ecdf(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s = np.sort(np.asarray(v, dtype=np.float64))
    return s, np.arange(1, len(s) + 1) / max(1, len(s))


def _images(x: Any, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 4 or not len(x):
        raise InvalidInputError(
            f"strip: `{name}` must be a non-empty image batch (N, C, H, W). Got {x.shape}."
        )
    return x
