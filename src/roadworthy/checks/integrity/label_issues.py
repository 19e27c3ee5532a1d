"""Mislabelled training samples found by confident learning."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from roadworthy import evidence
from roadworthy.checks.base import Check, Context, Outcome, Requires, register
from roadworthy.checks.integrity._embedding import EmbeddingShards, train_representation
from roadworthy.errors import InvalidInputError, plural
from roadworthy.stats import proportion_metrics

if TYPE_CHECKING:
    from roadworthy.results import Example

FILTERS = ("prune_by_noise_rate", "prune_by_class", "both", "confident_learning", "predicted_neq_given")
RANKINGS = ("self_confidence", "normalized_margin")
CLASSIFIERS = ("rda", "lda", "logreg")
CLASSIFIER_NAMES = {
    "rda": "trimmed regularised discriminant analysis",
    "lda": "linear discriminant analysis (shrinkage)",
    "logreg": "multinomial logistic regression",
}


class TrimmedRDA:
    """Gaussian classes with covariances between each class's own and the pooled one, robust to a
    small foreign group inside a class.

    Friedman's regularised discriminant analysis (JASA 1989): class ``c`` is a Gaussian with mean
    ``m_c`` and covariance ``(1 - alpha) * S_pooled + alpha * S_c`` (plus a ridge of ``ridge`` times the
    mean variance). Before the final estimate, the ``trim`` share of every class farthest from its mean
    (Mahalanobis distance under the pooled covariance) is set aside, so mislabelled samples and a
    poisoned group do not shape the very class they hide in.
    """

    def __init__(self, alpha: float = 0.5, trim: float = 0.1, ridge: float = 1e-3) -> None:
        self.alpha, self.trim, self.ridge = alpha, trim, ridge

    def _estimate(
        self, z: np.ndarray, y: np.ndarray, keep: np.ndarray
    ) -> tuple[np.ndarray, list, np.ndarray]:
        d = z.shape[1]
        means, covs, pooled, n = [], [], np.zeros((d, d)), 0
        for c in self.classes_:
            r = z[(y == c) & keep]
            m = r.mean(axis=0)
            r = r - m
            cov = r.T @ r
            pooled += cov
            covs.append(cov / max(1, len(r) - 1))
            means.append(m)
            n += len(r)
        return np.stack(means), covs, pooled / max(1, n - len(self.classes_))

    def fit(self, z: np.ndarray, y: np.ndarray) -> TrimmedRDA:
        from scipy.linalg import solve_triangular

        z = np.asarray(z, dtype=np.float64)
        self.classes_ = np.unique(y)
        d = z.shape[1]
        keep = np.ones(len(y), bool)
        means, covs, pooled = self._estimate(z, y, keep)
        if self.trim > 0:
            chol = np.linalg.cholesky(pooled + self.ridge * np.trace(pooled) / d * np.eye(d))
            for k, c in enumerate(self.classes_):
                rows = np.flatnonzero(y == c)
                if len(rows) < 10:
                    continue
                u = solve_triangular(chol, (z[rows] - means[k]).T, lower=True)
                d2 = (u * u).sum(axis=0)
                keep[rows[d2 > np.quantile(d2, 1 - self.trim)]] = False
            means, covs, pooled = self._estimate(z, y, keep)
        ridge = self.ridge * np.trace(pooled) / d * np.eye(d)
        self.means_ = means
        self.chol_ = [
            np.linalg.cholesky((1 - self.alpha) * pooled + self.alpha * cov + ridge) for cov in covs
        ]
        self.logdet_ = np.array([2 * np.log(np.diag(ch)).sum() for ch in self.chol_])
        self.logprior_ = np.log(np.bincount(np.searchsorted(self.classes_, y)) / len(y))
        return self

    def predict_proba(self, z: np.ndarray) -> np.ndarray:
        from scipy.linalg import solve_triangular

        z = np.asarray(z, dtype=np.float64)
        ll = np.empty((len(z), len(self.classes_)))
        for k, (m, ch) in enumerate(zip(self.means_, self.chol_, strict=True)):
            u = solve_triangular(ch, (z - m).T, lower=True)
            ll[:, k] = -0.5 * (u * u).sum(axis=0) - 0.5 * self.logdet_[k] + self.logprior_[k]
        ll -= ll.max(axis=1, keepdims=True)
        p = np.exp(ll)
        return p / p.sum(axis=1, keepdims=True)


def out_of_sample_probs(
    z: np.ndarray,
    y: np.ndarray,
    n_classes: int,
    n_folds: int = 5,
    seed: int = 0,
    classifier: str = "rda",
    c: float = 1.0,
    max_iter: int = 200,
) -> tuple[np.ndarray, int]:
    """Class probabilities for every row from a classifier that never saw that row.

    Stratified K-fold cross-validation of a fast classifier on ``z`` (already standardised).

    ``"rda"`` (default) is :class:`TrimmedRDA`, Gaussian classes fitted in closed form after setting
    aside the farthest 10% of every class. Being generative and trimmed, it cannot carve out a small
    foreign group inside a class the way a discriminative model does, so a group of mislabelled samples
    that the network memorised (their features sit in their own pocket) is still called by the class it
    resembles. ``"lda"`` is linear discriminant analysis with Ledoit-Wolf shrinkage (one shared
    covariance). ``"logreg"`` is a multinomial logistic regression (cleanlab's usual recipe), which
    learns such pockets; folds after the first start from the previous fold's coefficients.

    Parameters
    ----------
    z
        ``(n_samples, n_dims)`` representation of the samples.
    y
        Given labels in ``[0, n_classes)``.
    n_classes
        Number of columns of the result (classes absent from a fold's training part get a tiny floor).
    n_folds
        Number of folds; lowered to the size of the smallest class when that is smaller.
    seed
        Fold assignment seed.
    classifier
        ``"rda"``, ``"lda"`` or ``"logreg"``.
    c, max_iter
        Inverse regularisation strength and iteration cap of the logistic regression.

    Returns
    -------
    probs, n_folds
        ``(n_samples, n_classes)`` float64 probabilities and the number of folds used.
    """
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    if classifier not in CLASSIFIERS:
        raise InvalidInputError(
            f"`classifier` must be one of {', '.join(CLASSIFIERS)}. Got {classifier!r} instead."
        )
    counts = np.bincount(y, minlength=n_classes)
    folds = max(2, int(min(n_folds, counts[counts > 0].min())))  # singletons: their probabilities are a guess

    def make() -> Any:
        if classifier == "rda":
            return TrimmedRDA()
        if classifier == "lda":
            return LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto")
        return LogisticRegression(C=c, max_iter=max_iter, warm_start=True, tol=1e-3)

    probs = np.zeros((len(y), n_classes), dtype=np.float64)
    clf = make()
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.filterwarnings("ignore", message="The least populated class")
        warnings.filterwarnings("ignore", message="Variables are collinear")
        for train_idx, test_idx in splitter.split(z, y):
            seen = np.unique(y[train_idx])
            if getattr(clf, "classes_", None) is not None and not np.array_equal(clf.classes_, seen):
                clf = make()
            if len(seen) == 1:
                probs[np.ix_(test_idx, seen)] = 1.0
                continue
            clf.fit(z[train_idx], y[train_idx])
            probs[np.ix_(test_idx, clf.classes_)] = clf.predict_proba(z[test_idx])
    # every class keeps a little mass so confident learning never divides by zero
    probs = np.clip(np.nan_to_num(probs, nan=0.0), 1e-9, None)
    probs /= probs.sum(axis=1, keepdims=True)
    return probs, folds


def confident_learning(
    y: np.ndarray,
    probs: np.ndarray,
    filter_by: str = "prune_by_noise_rate",
    rank_by: str = "self_confidence",
) -> dict[str, Any]:
    """Label issues by confident learning (Northcutt et al. 2021), with cleanlab as the engine.

    Returns a dict with ``indices`` (most suspicious first), ``scores`` (label quality, low = suspicious),
    ``confident_joint`` and ``joint`` (K x K, row = given label, column = likely true label).
    """
    from cleanlab.count import compute_confident_joint, estimate_joint
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    cj = compute_confident_joint(y, probs)
    joint = estimate_joint(y, probs, confident_joint=cj)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mask = find_label_issues(y, probs, filter_by=filter_by, confident_joint=cj, n_jobs=1)
    quality = get_label_quality_scores(y, probs, method=rank_by)
    flagged = np.flatnonzero(mask)
    order = flagged[np.argsort(quality[flagged], kind="stable")]
    return {"indices": order, "scores": quality[order], "confident_joint": cj, "joint": joint}


@register
class LabelIssues(EmbeddingShards, Check):
    """Training samples whose given label is probably wrong, by confident learning.

    Northcutt, Jiang & Chuang, "Confident Learning: Estimating Uncertainty in Dataset Labels", JAIR 2021.
    Threat model: careless annotation or deliberate label-flipping poisoning (stop signs labelled as
    speed limits) teaches the model the wrong pattern. Out-of-sample class probabilities come from a
    5-fold cross-validated, trimmed Gaussian discriminant analysis on the model's penultimate features
    (the raw inputs when the model has no feature layer; a table's columns each scaled robustly, so an
    income in dollars does not outweigh an age in years): a cheap, approximate stand-in for retraining
    the model K times that still sees samples the network memorised under a wrong label (see
    :func:`out_of_sample_probs`).
    Per-class confidence thresholds give the confident joint of (given, true) labels; prune-by-noise-rate
    flags the samples behind its off-diagonal mass. ``integrity.label_issues.rate`` is the flagged share
    of the training set: candidates for human review, not proven errors (about half of flagged test-set
    candidates were confirmed by people in Northcutt, Athalye & Mueller 2021).
    """

    id = "integrity.label_issues"
    title = "Label issues (confident learning)"
    requires = Requires(train_data=True)

    @dataclass(frozen=True)
    class Params:
        n_folds: int = 5
        classifier: str = "rda"
        filter_by: str = "prune_by_noise_rate"
        rank_by: str = "self_confidence"
        max_dims: int = 64
        c: float = 1.0
        max_iter: int = 200
        n_examples: int = 8

    Params: ClassVar[type] = Params  # type: ignore[no-redef]
    budget_params: ClassVar[dict[str, dict[str, Any]]] = {
        "quick": {"max_iter": 100},
        "thorough": {"max_iter": 500},
    }

    def measure(self, ctx: Context) -> Outcome:
        p = self.params
        if p.filter_by not in FILTERS:
            raise InvalidInputError(
                f"`filter_by` must be one of {', '.join(FILTERS)}. Got {p.filter_by!r} instead."
            )
        if p.rank_by not in RANKINGS:
            raise InvalidInputError(
                f"`rank_by` must be one of {', '.join(RANKINGS)}. Got {p.rank_by!r} instead."
            )
        if p.classifier not in CLASSIFIERS:
            raise InvalidInputError(
                f"`classifier` must be one of {', '.join(CLASSIFIERS)}. Got {p.classifier!r} instead."
            )
        if p.n_folds < 2:
            raise InvalidInputError(f"`n_folds` must be at least 2. Got {p.n_folds} instead.")
        train = ctx.train_data
        assert train is not None
        y = np.asarray(train.y, dtype=np.int64)
        k = ctx.n_classes
        if y.min() < 0 or y.max() >= k:
            raise InvalidInputError(f"training labels must be integers in [0, {k}). Found {int(y.max())}.")
        z, source = train_representation(ctx, p.max_dims)
        with ctx.progress.task("label issues: cross-validated probabilities", total=1) as t:
            probs, folds = out_of_sample_probs(
                z,
                y,
                k,
                p.n_folds,
                seed=ctx.random_state(self.id, "folds"),
                classifier=p.classifier,
                c=p.c,
                max_iter=p.max_iter,
            )
            t.advance()
        found = confident_learning(y, probs, p.filter_by, p.rank_by)
        idx = found["indices"]
        suggested = probs[idx].argmax(axis=1)
        joint = np.asarray(found["joint"], dtype=np.float64)
        n = len(y)
        cv_accuracy = float((probs.argmax(axis=1) == y).mean())

        warns = []
        if cv_accuracy < 0.5:
            warns.append(
                f"the cross-validated classifier on {source} reaches only {cv_accuracy:.0%} accuracy: its "
                "probabilities are a weak basis for judging labels, expect many false flags"
            )
        if folds < p.n_folds:
            warns.append(f"the smallest class has only {plural(folds, 'sample')}, so {folds} folds were used")

        pairs = _confused_pairs(joint, n, ctx)
        noise_rate = float(max(0.0, 1.0 - np.trace(joint)))
        details: dict[str, Any] = {
            "indices": idx.tolist(),
            "suggested_labels": suggested.tolist(),
            "given_labels": y[idx].tolist(),
            "scores": np.round(found["scores"], 5).tolist(),
            "score": p.rank_by,
            "estimated_noise_rate": noise_rate,
            "estimated_n_errors": round(noise_rate * n),
            "confused_pairs": pairs,
            "probability_source": {
                "mode": "cross-validated proxy on frozen features",
                "approximate": True,
                "classifier": f"{CLASSIFIER_NAMES[p.classifier]}, {folds}-fold cross-validation",
                "inputs": source,
                "cv_accuracy": cv_accuracy,
            },
            "filter_by": p.filter_by,
            "n_samples": n,
            "class_names": [ctx.class_name(i) for i in range(k)],
        }
        if k <= 50:
            details["joint"] = np.round(joint, 6).tolist()
            details["confident_joint"] = np.asarray(found["confident_joint"]).astype(int).tolist()
            if k <= 20:
                details[evidence.KEY] = [_joint_evidence(details["joint"], details["class_names"])]

        examples = [
            _example(ctx, int(i), int(s), float(q), p.rank_by)
            for i, s, q in zip(idx[: p.n_examples], suggested, found["scores"], strict=False)
        ]
        summary = (
            f"{len(idx)} of {n} training samples ({len(idx) / n:.1%}) look mislabelled; "
            f"estimated noise rate {noise_rate:.1%}"
        )
        if pairs:
            top = pairs[0]
            summary += f", mostly {top['given']} that look like {top['likely']} ({top['n_estimated']})"
        summary += "."
        metrics = {"integrity.label_issues.count": float(len(idx))}
        metrics.update(proportion_metrics("integrity.label_issues.rate", len(idx), n))
        return Outcome(metrics=metrics, details=details, examples=examples, warnings=warns, summary=summary)


def _joint_evidence(joint: list[list[float]], names: list[str]) -> dict[str, Any]:
    """The confident joint, row-normalised, as a heat map (given label vs likely true label)."""
    q = np.asarray(joint, dtype=np.float64)
    rows = q.sum(axis=1, keepdims=True)
    rows[rows == 0] = 1.0
    return evidence.heatmap(
        "Estimated share of each given label that truly belongs to each class (confident joint, "
        "row-normalised); off-diagonal cells are label noise",
        q / rows,
        names,
        names,
        title="given label (row) vs likely true label (column)",
        vmin=0.0,
        vmax=1.0,
        cmap="Blues",
    )


def _confused_pairs(joint: np.ndarray, n: int, ctx: Context, top: int = 10) -> list[dict[str, Any]]:
    off = joint.copy()
    np.fill_diagonal(off, 0.0)
    order = np.argsort(off, axis=None)[::-1][:top]
    pairs = []
    for flat in order:
        i, j = np.unravel_index(flat, off.shape)
        n_est = round(off[i, j] * n)
        if n_est < 1:
            break
        pairs.append(
            {
                "given": ctx.class_name(int(i)),
                "likely": ctx.class_name(int(j)),
                "given_label": int(i),
                "likely_label": int(j),
                "share": float(off[i, j]),
                "n_estimated": n_est,
            }
        )
    return pairs


def _example(ctx: Context, i: int, suggested: int, score: float, rank_by: str) -> Example:
    from roadworthy.results import Example

    train = ctx.train_data
    assert train is not None
    image = evidence.png_data_uri(train.x[i]) if train.modality == "image" else None
    score_txt = f"{score:.2f}" if math.isfinite(score) else "n/a"
    return Example(
        title=f"training sample #{i} ({rank_by.replace('_', ' ')} {score_txt})",
        label=ctx.class_name(int(train.y[i])),
        original=image,
        original_prediction=ctx.class_name(suggested),
    )
