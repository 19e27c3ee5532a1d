"""Post-hoc out-of-distribution scores and the metrics that rank them.

Every detector maps a model's logits or penultimate features to a score per input, **higher = more
out-of-distribution**; none needs retraining. For tables, where a scikit-learn model has no features,
three detectors work on the inputs themselves, each column standardised by the in-distribution mean and
standard deviation (``space = "input"``): :class:`InputMahalanobis`, :class:`InputKNN` and
:class:`IsolationForest`. The metrics treat OOD inputs as the ones to find:

* :func:`auroc` — probability that a random OOD input scores above a random in-distribution (ID) one
  (0.5 = chance, 1 = perfect separation).
* :func:`fpr_at_tpr` — with the threshold that keeps 95% of ID inputs (the usual "TPR 95%" convention,
  ID as positive), the share of OOD inputs that are wrongly kept: lower is better.
* :func:`aupr` — average precision with ID as the positive class and ``-score`` as its confidence
  ("AUPR-In", Hendrycks & Gimpel 2017).
"""

from __future__ import annotations

import math
from typing import ClassVar, Literal

import numpy as np
from scipy.special import logsumexp
from scipy.stats import rankdata

from roadworthy.errors import InvalidInputError
from roadworthy.stats import softmax

Space = Literal["logits", "features", "input"]


# --------------------------------------------------------------------------------------------- detectors


class Detector:
    """A post-hoc OOD score on logits or features. Subclasses set ``name``/``space`` and :meth:`score`."""

    name: ClassVar[str]
    space: ClassVar[Space] = "logits"
    needs_fit: ClassVar[bool] = False
    n_fitted: int = 0

    def fit(self, z: np.ndarray, y: np.ndarray) -> Detector:
        """Learn from in-distribution embeddings ``z`` with labels ``y`` (a no-op for logit scores)."""
        self.n_fitted = len(z)
        return self

    def score(self, z: np.ndarray) -> np.ndarray:
        """OOD score per row of ``z`` (higher = more out-of-distribution)."""
        raise NotImplementedError


class MaxSoftmax(Detector):
    """Maximum softmax probability (Hendrycks & Gimpel, ICLR 2017): ``s = -max_c softmax(z)_c``."""

    name = "msp"

    def score(self, z: np.ndarray) -> np.ndarray:
        return -softmax(np.asarray(z, np.float64), axis=1).max(axis=1)


class MaxLogit(Detector):
    """Maximum logit (Hendrycks et al., ICML 2022, "Scaling OOD detection"): ``s = -max_c z_c``."""

    name = "max_logit"

    def score(self, z: np.ndarray) -> np.ndarray:
        return -np.asarray(z, np.float64).max(axis=1)


class Energy(Detector):
    """Free energy (Liu et al., NeurIPS 2020): ``s = -T logsumexp(z / T)`` with ``T = 1``.

    Degenerate (constant) for a model that outputs probabilities: its "logits" are ``log p`` and
    ``logsumexp(log p) = 0``.
    """

    name = "energy"

    def __init__(self, temperature: float = 1.0) -> None:
        if not temperature > 0:
            raise InvalidInputError(f"`temperature` must be > 0. Got {temperature} instead.")
        self.temperature = float(temperature)

    def score(self, z: np.ndarray) -> np.ndarray:
        t = self.temperature
        return -t * logsumexp(np.asarray(z, np.float64) / t, axis=1)


class Mahalanobis(Detector):
    """Class-conditional Gaussian on penultimate features (Lee et al., NeurIPS 2018), without input noise.

    Class means ``mu_c`` and one covariance ``Sigma`` shared by all classes are estimated from
    in-distribution features; ``s = min_c (h - mu_c)^T (Sigma + ridge I)^-1 (h - mu_c)``. The ridge
    (``ridge`` times the mean variance) keeps the inverse stable when features are few or collinear.
    """

    name = "mahalanobis"
    space = "features"
    needs_fit = True

    def __init__(self, ridge: float = 1e-3) -> None:
        self.ridge = float(ridge)
        self.means: np.ndarray | None = None
        self.whiten: np.ndarray | None = None

    def fit(self, z: np.ndarray, y: np.ndarray) -> Mahalanobis:
        h = np.asarray(z, np.float64)
        y = np.asarray(y)
        classes = np.unique(y)
        if len(h) < 2:
            raise InvalidInputError(
                f"Mahalanobis needs at least 2 in-distribution samples. Got {len(h)} instead."
            )
        means = np.stack([h[y == c].mean(axis=0) for c in classes])
        centred = h - means[np.searchsorted(classes, y)]
        cov = centred.T @ centred / len(h)
        scale = float(np.trace(cov)) / cov.shape[0]
        cov += (self.ridge * scale + 1e-12) * np.eye(cov.shape[0])
        vals, vecs = np.linalg.eigh(cov)
        self.whiten = vecs / np.sqrt(np.clip(vals, 1e-12, None))
        self.means = means @ self.whiten
        self.n_fitted = len(h)
        return self

    def score(self, z: np.ndarray) -> np.ndarray:
        if self.whiten is None or self.means is None:
            raise RuntimeError("Mahalanobis.score called before fit")
        w = np.asarray(z, np.float64) @ self.whiten
        # squared distances to every class mean, via |a|^2 - 2ab + |b|^2 (chunked for memory)
        out = np.empty(len(w))
        mm = (self.means**2).sum(axis=1)
        for i in range(0, len(w), 4096):
            c = w[i : i + 4096]
            d = (c**2).sum(axis=1, keepdims=True) - 2 * c @ self.means.T + mm
            out[i : i + 4096] = d.min(axis=1)
        return np.clip(out, 0.0, None)


class KNN(Detector):
    """Distance to the k-th nearest in-distribution neighbour of L2-normalised features (Sun et al., ICML 2022).

    ``k`` follows the paper's scaling with the bank size: at most ``k``, and about 1% of the fitted
    samples for small data (``k_used``), so a few hundred reference samples still give a stable score.
    """

    name = "knn"
    space = "features"
    needs_fit = True

    def __init__(self, k: int = 50) -> None:
        if k < 1:
            raise InvalidInputError(f"`k` must be >= 1. Got {k} instead.")
        self.k = int(k)
        self.k_used = int(k)
        self.bank: np.ndarray | None = None

    def _fit_space(self, z: np.ndarray) -> None:
        """Learn what the space needs from the in-distribution rows (nothing: unit length needs no fit)."""

    def _space(self, z: np.ndarray) -> np.ndarray:
        """The rows in the space the distances are measured in: here scaled to unit length."""
        z = np.asarray(z, np.float32)
        return z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)

    def fit(self, z: np.ndarray, y: np.ndarray | None = None) -> KNN:
        if len(z) < 1:
            raise InvalidInputError("k-NN needs at least one in-distribution sample. Got 0 instead.")
        self._fit_space(z)
        self.bank = self._space(z)
        self.k_used = int(min(self.k, len(z), max(1, len(z) // 100)))
        self.n_fitted = len(z)
        return self

    def score(self, z: np.ndarray) -> np.ndarray:
        if self.bank is None:
            raise RuntimeError(f"{type(self).__name__}.score called before fit")
        return kth_distance(self._space(z), self.bank, self.k_used)


def kth_distance(q: np.ndarray, bank: np.ndarray, k: int) -> np.ndarray:
    """Euclidean distance from each row of ``q`` to its ``k``-th nearest row of ``bank`` (queries in blocks
    of 1,024, so memory stays ``1024 x len(bank)``)."""
    bank_sq = (bank * bank).sum(axis=1)
    out = np.empty(len(q))
    for i in range(0, len(q), 1024):
        c = q[i : i + 1024]
        d2 = (c * c).sum(axis=1, keepdims=True) - 2 * (c @ bank.T) + bank_sq
        out[i : i + 1024] = np.sqrt(
            np.clip(np.partition(d2, k - 1, axis=1)[:, k - 1].astype(np.float64), 0, None)
        )
    return out


# ------------------------------------------------------------------------------ standardised input space


class Standardiser:
    """Columns centred on the in-distribution mean and divided by its standard deviation.

    A missing value (NaN) becomes the mean (0 after standardising) and a constant column keeps unit scale,
    so no column dominates a distance because of its unit: "income in dollars" and "age in years" count
    alike.
    """

    def __init__(self) -> None:
        self.mean: np.ndarray | None = None
        self.scale: np.ndarray | None = None

    def fit(self, x: np.ndarray) -> Standardiser:
        x = np.asarray(x, np.float64).reshape(len(x), -1)
        mean = np.nanmean(x, axis=0) if len(x) else np.zeros(x.shape[1])
        self.mean = np.where(np.isfinite(mean), mean, 0.0)
        sd = np.nanstd(x, axis=0)
        self.scale = np.where(np.isfinite(sd) & (sd > 1e-12), sd, 1.0)
        return self

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self.mean is None or self.scale is None:
            raise RuntimeError("Standardiser called before fit")
        z = (np.asarray(x, np.float64).reshape(len(x), -1) - self.mean) / self.scale
        # a missing value sits at the mean; an infinite one stays far (but finite) for the distances
        return np.clip(np.nan_to_num(z, nan=0.0), -1e6, 1e6)


class InputMahalanobis(Mahalanobis):
    """Class-conditional Mahalanobis distance on standardised input columns (for tables).

    The same score as :class:`Mahalanobis` (Lee et al., NeurIPS 2018), with the model's features replaced
    by the input row after :class:`Standardiser`: a row far from every class's centre, measured in the
    shared covariance's units, is out-of-distribution. Needs no model internals.
    """

    name = "input_mahalanobis"
    space = "input"

    def __init__(self, ridge: float = 1e-3) -> None:
        super().__init__(ridge)
        self.standardise = Standardiser()

    def fit(self, z: np.ndarray, y: np.ndarray) -> InputMahalanobis:
        self.standardise.fit(z)
        super().fit(self.standardise(z), y)
        return self

    def score(self, z: np.ndarray) -> np.ndarray:
        return super().score(self.standardise(z))


class InputKNN(KNN):
    """Euclidean distance to the k-th nearest in-distribution row in standardised input space (for tables).

    Unlike :class:`KNN` the rows are not normalised to unit length: on a table the magnitude *is* the
    information (a value ten times its usual size). ``k`` is at most ``k`` and about 1% of the fitted rows
    (``k_used``).
    """

    name = "input_knn"
    space = "input"

    def __init__(self, k: int = 50) -> None:
        super().__init__(k)
        self.standardise = Standardiser()

    def _fit_space(self, z: np.ndarray) -> None:
        self.standardise.fit(z)

    def _space(self, z: np.ndarray) -> np.ndarray:
        return self.standardise(z)


class IsolationForest(Detector):
    """Isolation Forest (Liu, Ting & Zhou, ICDM 2008) on standardised input columns (for tables).

    Random trees split random columns at random values; an unusual row is isolated in few splits. The
    score is scikit-learn's ``-score_samples`` (the anomaly score, about 0.5 for ordinary rows and up to 1
    for anomalies), fitted on in-distribution rows only. ``seed`` fixes the trees.
    """

    name = "isolation_forest"
    space = "input"
    needs_fit = True

    def __init__(self, trees: int = 200, seed: int = 0) -> None:
        if trees < 1:
            raise InvalidInputError(f"`trees` must be >= 1. Got {trees} instead.")
        self.trees = int(trees)
        self.seed = int(seed)
        self.standardise = Standardiser()
        self.forest: object | None = None

    def fit(self, z: np.ndarray, y: np.ndarray | None = None) -> IsolationForest:
        from sklearn.ensemble import IsolationForest as SkIsolationForest

        if len(z) < 2:
            raise InvalidInputError(
                f"Isolation Forest needs at least 2 in-distribution samples. Got {len(z)} instead."
            )
        self.standardise.fit(z)
        self.forest = SkIsolationForest(n_estimators=self.trees, random_state=self.seed).fit(
            self.standardise(z)
        )
        self.n_fitted = len(z)
        return self

    def score(self, z: np.ndarray) -> np.ndarray:
        if self.forest is None:
            raise RuntimeError("IsolationForest.score called before fit")
        return -np.asarray(self.forest.score_samples(self.standardise(z)), np.float64)  # type: ignore[attr-defined]


DETECTORS: dict[str, type[Detector]] = {
    d.name: d
    for d in (MaxSoftmax, MaxLogit, Energy, Mahalanobis, KNN, InputMahalanobis, InputKNN, IsolationForest)
}


def make_detector(name: str, **kwargs: float) -> Detector:
    """A fresh detector by name (``msp``, ``max_logit``, ``energy``, ``mahalanobis``, ``knn``,
    ``input_mahalanobis``, ``input_knn``, ``isolation_forest``)."""
    if name not in DETECTORS:
        raise InvalidInputError(f"unknown OOD detector {name!r}; choose one of {', '.join(DETECTORS)}")
    return DETECTORS[name](**kwargs)


# --------------------------------------------------------------------------------------------- metrics


def _check_scores(id_scores: np.ndarray, ood_scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(id_scores, np.float64).ravel()
    b = np.asarray(ood_scores, np.float64).ravel()
    if a.size == 0 or b.size == 0:
        raise InvalidInputError(f"need in-distribution and OOD scores. Got {a.size} and {b.size} instead.")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise InvalidInputError("OOD scores must be finite; found NaN or infinity")
    return a, b


def auroc(id_scores: np.ndarray, ood_scores: np.ndarray) -> float:
    """Area under the ROC curve for telling OOD (high score) from ID inputs; ties count one half.

    Computed exactly as the Mann-Whitney U statistic, so it equals
    ``sklearn.metrics.roc_auc_score([0]*n_id + [1]*n_ood, scores)``.
    """
    a, b = _check_scores(id_scores, ood_scores)
    ranks = rankdata(np.concatenate([a, b]))
    u = ranks[a.size :].sum() - b.size * (b.size + 1) / 2.0
    return float(u / (a.size * b.size))


def fpr_at_tpr(id_scores: np.ndarray, ood_scores: np.ndarray, tpr: float = 0.95) -> float:
    """Share of OOD inputs accepted when the threshold accepts at least ``tpr`` of ID inputs.

    The threshold is the smallest ID score ``tau`` with ``mean(id <= tau) >= tpr``; an input is accepted
    when its score is ``<= tau``. This is the lowest false-positive rate on the ROC curve (ID positive)
    whose true-positive rate reaches ``tpr``.
    """
    if not 0 < tpr <= 1:
        raise InvalidInputError(f"`tpr` must be in (0, 1]. Got {tpr} instead.")
    a, b = _check_scores(id_scores, ood_scores)
    tau = np.sort(a)[max(0, math.ceil(tpr * a.size - 1e-9) - 1)]
    return float(np.mean(b <= tau))


def aupr(id_scores: np.ndarray, ood_scores: np.ndarray) -> float:
    """Average precision with ID as positive and ``-score`` as confidence (``average_precision_score``)."""
    a, b = _check_scores(id_scores, ood_scores)
    conf = -np.concatenate([a, b])
    pos = np.concatenate([np.ones(a.size, bool), np.zeros(b.size, bool)])
    order = np.argsort(-conf, kind="mergesort")
    conf, pos = conf[order], pos[order]
    last = np.r_[np.flatnonzero(np.diff(conf) != 0), conf.size - 1]  # end of each run of equal scores
    tp = np.cumsum(pos)[last]
    fp = (last + 1) - tp
    precision = tp / (tp + fp)
    recall = tp / a.size
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def roc_points(id_scores: np.ndarray, ood_scores: np.ndarray, n_points: int = 51) -> dict[str, list[float]]:
    """The ROC curve (OOD positive) at ``n_points`` even false-alarm rates plus ten below 0.1, for plotting.

    ``fpr`` is the share of ID inputs flagged as OOD, ``tpr`` the share of OOD inputs flagged.
    """
    a, b = _check_scores(id_scores, ood_scores)
    thresholds = np.unique(np.concatenate([a, b]))[::-1]  # flag when score >= t
    a_sorted, b_sorted = np.sort(a), np.sort(b)
    fpr = 1.0 - np.searchsorted(a_sorted, thresholds, side="left") / a.size
    tpr = 1.0 - np.searchsorted(b_sorted, thresholds, side="left") / b.size
    fpr, tpr = np.r_[0.0, fpr], np.r_[0.0, tpr]
    # dense at low false-alarm rates, where a deployed threshold would sit
    grid = np.unique(np.r_[np.linspace(0.0, 0.1, 11), np.linspace(0.0, 1.0, n_points)])
    # the best detection rate reachable at each false-alarm budget (the step curve's upper envelope)
    idx = np.searchsorted(fpr, grid, side="right") - 1
    return {"fpr": grid.tolist(), "tpr": np.maximum.accumulate(tpr)[idx].tolist()}
