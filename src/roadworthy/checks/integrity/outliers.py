"""Training samples unlike any other, and how the classes are balanced."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from roadworthy import evidence
from roadworthy.checks.base import Check, Context, Outcome, Requires, register
from roadworthy.checks.integrity._embedding import (
    EmbeddingShards,
    embedding,
    reduce_dims,
    train_representation,
)
from roadworthy.errors import InvalidInputError
from roadworthy.stats import proportion_metrics

if TYPE_CHECKING:
    pass


def knn_distance(z: np.ndarray, k: int) -> np.ndarray:
    """Mean distance of every row of ``z`` to its ``k`` nearest other rows."""
    from sklearn.neighbors import NearestNeighbors

    k = max(1, min(k, len(z) - 1))
    dist, _ = NearestNeighbors(n_neighbors=k + 1).fit(z).kneighbors(z)
    return dist[:, 1:].mean(axis=1)


@register
class Outliers(EmbeddingShards, Check):
    """Training samples far from every other sample, in the model's features or in the inputs.

    The score of a sample is its mean distance to its ``k`` nearest neighbours (a kNN outlier score,
    Ramaswamy, Rastogi & Shim, SIGMOD 2000), computed in two views: the model's standardised penultimate
    features (when it has them) and the inputs (images shrunk to at most 16 px a side; tables
    standardised). A sample is an outlier when its log score lies beyond Tukey's far-out fence (third
    quartile + ``fence`` x interquartile range) in either view. Outliers are corrupt files,
    samples from another domain, or rare cases the data under-represents: worth a look, not a verdict.
    ``integrity.outliers.count`` is how many samples lie beyond the fence.
    """

    id = "integrity.outliers"
    title = "Outliers in training data"
    requires = Requires(train_data=True)

    @dataclass(frozen=True)
    class Params:
        k: int = 10
        fence: float = 3.0
        max_dims: int = 64
        n_examples: int = 6

    Params: ClassVar[type] = Params  # type: ignore[no-redef]

    def measure(self, ctx: Context) -> Outcome:
        p = self.params
        if p.k < 1:
            raise InvalidInputError(f"`k` must be at least 1. Got {p.k} instead.")
        if p.fence <= 0:
            raise InvalidInputError(f"`fence` must be positive. Got {p.fence} instead.")
        train = ctx.train_data
        assert train is not None
        views = {}
        if "features" in ctx.capabilities:
            views["features"] = train_representation(ctx, p.max_dims)[0]
        shrunk = embedding(ctx).train_shrunk
        views["inputs"] = reduce_dims(
            shrunk, p.max_dims, ctx.random_state(self.id, "inputs"), per_column=train.modality != "image"
        )
        # per view: log of the kNN distance relative to the median, and the far-out fence on that scale
        excess = np.full((len(views), train.n_samples), -np.inf)
        thresholds = {}
        for v, z in enumerate(views.values()):
            score = np.log(knn_distance(z, p.k) + 1e-12)
            score -= np.median(score)
            q1, q3 = np.percentile(score, [25, 75])
            cut = q3 + p.fence * (q3 - q1)
            thresholds[list(views)[v]] = float(np.exp(cut))
            excess[v] = score - cut
        worst = excess.max(axis=0)
        flagged = np.flatnonzero(worst > 0)
        flagged = flagged[np.argsort(-worst[flagged], kind="stable")]
        ratio = np.exp(excess + np.log(list(thresholds.values()))[:, None])  # distance / median distance
        n = train.n_samples
        names = list(views)
        details = {
            "indices": flagged.tolist(),
            "scores": np.round(ratio.max(axis=0)[flagged], 4).tolist(),
            "score": "mean distance to the k nearest neighbours / its median, in the view where it is largest",
            "view": [names[int(excess[:, i].argmax())] for i in flagged],
            "thresholds": thresholds,
            "views": names,
            "k": p.k,
        }
        examples = []
        if train.modality == "image":
            from roadworthy.results import Example

            for i, view in zip(flagged[: p.n_examples], details["view"], strict=False):
                examples.append(
                    Example(
                        title=f"training sample #{int(i)}: {ratio.max(axis=0)[i]:.1f}x the median neighbour "
                        f"distance ({view})",
                        label=ctx.class_name(int(train.y[i])),
                        original=evidence.png_data_uri(train.x[i]),
                    )
                )
        where = " and ".join({"features": "the model's features", "inputs": "the inputs"}[v] for v in names)
        summary = f"{len(flagged)} of {n} training samples ({len(flagged) / n:.1%}) lie far from all others in {where}."
        metrics = {"integrity.outliers.count": float(len(flagged))}
        metrics.update(proportion_metrics("integrity.outliers.rate", len(flagged), n))
        return Outcome(metrics=metrics, details=details, examples=examples, summary=summary)


@register
class ClassBalance(Check):
    """How many training samples each class has.

    ``integrity.class_balance.imbalance_ratio`` is the size of the largest class over the smallest
    (classes the model knows but the training data lacks are listed and reported as a warning; the ratio
    is then computed over the classes present). A model sees rare classes too seldom to learn them; the
    per-class accuracy in ``clean`` tells whether that cost anything.
    """

    id = "integrity.class_balance"
    title = "Class balance of training data"
    requires = Requires(train_data=True)

    def run(self, ctx: Context) -> Outcome:
        train = ctx.train_data
        assert train is not None
        k = ctx.n_classes
        counts = np.bincount(np.asarray(train.y, dtype=np.int64), minlength=k)[:k]
        present = counts[counts > 0]
        ratio = float(present.max() / present.min())
        missing = [ctx.class_name(c) for c in np.flatnonzero(counts == 0)]
        warns = (
            [f"the training data has no sample of {len(missing)} class(es): {', '.join(missing[:10])}"]
            if missing
            else []
        )
        n = int(counts.sum())
        big, small = int(np.argmax(counts)), int(np.argmin(np.where(counts > 0, counts, counts.max() + 1)))
        summary = (
            f"largest class {ctx.class_name(big)} has {ratio:.1f}x the samples of the smallest, "
            f"{ctx.class_name(small)} ({counts[big]} vs {counts[small]})."
        )
        details: dict[str, Any] = {
            "counts": {ctx.class_name(c): int(counts[c]) for c in range(k)},
            "shares": {ctx.class_name(c): float(counts[c] / n) for c in range(k)},
            "missing_classes": missing,
            "largest": ctx.class_name(big),
            "smallest": ctx.class_name(small),
        }
        if 0 < len(details["counts"]) <= 60:
            details[evidence.KEY] = [
                evidence.bars(
                    "Training samples per class",
                    list(details["counts"]),
                    {"training samples": list(details["counts"].values())},
                    "training samples",
                )
            ]
        metrics = {
            "integrity.class_balance.imbalance_ratio": ratio,
            "integrity.class_balance.missing_classes": float(len(missing)),
        }
        return Outcome(metrics=metrics, details=details, warnings=warns, summary=summary)
