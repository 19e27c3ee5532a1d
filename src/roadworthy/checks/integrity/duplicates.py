"""Duplicated training samples, and test samples leaked from the training data."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from roadworthy import evidence
from roadworthy.checks.base import Check, Context, Outcome, Requires, register
from roadworthy.checks.integrity._embedding import shrink_inputs
from roadworthy.errors import InvalidInputError
from roadworthy.stats import proportion_metrics

if TYPE_CHECKING:
    from roadworthy.data.base import Dataset
    from roadworthy.results import Example


def exact_keys(x: np.ndarray, modality: str = "image") -> list[bytes]:
    """A digest per sample: of its values quantised to 1/255 for images (what an 8-bit file stores), of
    its float32 values for tables."""
    if modality == "image":
        q = np.round(np.clip(np.asarray(x, dtype=np.float32), 0.0, 1.0) * 255).astype(np.uint8)
    else:
        q = np.ascontiguousarray(x, dtype=np.float32) + np.float32(0.0)  # -0.0 and 0.0 hash alike
    q = q.reshape(len(q), -1)
    return [hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in q]


def near_pairs(a: np.ndarray, b: np.ndarray | None, radius: float) -> np.ndarray:
    """Pairs ``(i, j, distance)`` with RMS distance at most ``radius``: within ``a`` (``i < j``) when ``b``
    is ``None``, else between rows ``i`` of ``b`` and ``j`` of ``a``.

    ``a`` and ``b`` are flattened vectors; the distance is the root-mean-square difference per value.
    """
    from sklearn.neighbors import NearestNeighbors

    dim = a.shape[1]
    index = NearestNeighbors(radius=radius * np.sqrt(dim)).fit(a)
    query = a if b is None else b
    rows: list[tuple[int, int, float]] = []
    for start in range(0, len(query), 4096):
        dist, nbrs = index.radius_neighbors(query[start : start + 4096], sort_results=True)
        for k, (d, nb) in enumerate(zip(dist, nbrs, strict=False)):
            i = start + k
            for dd, j in zip(d, nb, strict=False):
                if b is None and j <= i:
                    continue
                rows.append((i, int(j), float(dd) / np.sqrt(dim)))
    return np.array(rows, dtype=np.float64).reshape(-1, 3)


def _vectors(data: Dataset, mean: np.ndarray | None = None, std: np.ndarray | None = None) -> np.ndarray:
    """Images shrunk by area averaging (pixel units); tabular rows standardised by ``mean``/``std``."""
    if data.modality == "image":
        return shrink_inputs(data.x, max_side=16)
    x = np.asarray(data.x, dtype=np.float32).reshape(len(data.x), -1)
    return (x - mean) / std if mean is not None and std is not None else x


def _tabular_scale(train: Dataset) -> tuple[np.ndarray | None, np.ndarray | None]:
    if train.modality == "image":
        return None, None
    x = np.asarray(train.x, dtype=np.float32).reshape(len(train.x), -1)
    std = x.std(axis=0)
    std[std == 0] = 1.0
    return x.mean(axis=0), std


def _find_pairs(train: Dataset, other: Dataset | None, radius: float) -> np.ndarray:
    """Exact pairs (distance 0) by hashing, then near pairs by radius search; unique, sorted by distance."""
    pairs: dict[tuple[int, int], float] = {}
    train_keys = exact_keys(train.x, train.modality)
    if other is None:
        first: dict[bytes, int] = {}
        for i, key in enumerate(train_keys):
            if key in first:
                pairs[(first[key], i)] = 0.0
            else:
                first[key] = i
    else:
        where: dict[bytes, int] = {}
        for j, key in enumerate(train_keys):
            where.setdefault(key, j)
        for i, key in enumerate(exact_keys(other.x, other.modality)):
            if key in where:
                pairs[(i, where[key])] = 0.0
    if radius > 0:
        mean, std = _tabular_scale(train)
        a = _vectors(train, mean, std)
        b = None if other is None else _vectors(other, mean, std)
        for i, j, d in near_pairs(a, b, radius):
            key = (int(i), int(j))
            pairs.setdefault(key, round(d, 6))
    out = np.array([(i, j, d) for (i, j), d in pairs.items()], dtype=np.float64).reshape(-1, 3)
    return out[np.lexsort((out[:, 1], out[:, 0], out[:, 2]))] if len(out) else out


def _groups(n: int, pairs: np.ndarray) -> int:
    """How many samples are redundant copies: union-find over the pairs, sum of (group size - 1)."""
    parent = np.arange(n)

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j, _ in pairs:
        ri, rj = find(int(i)), find(int(j))
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)
    roots = np.array([find(i) for i in range(n)])
    return int(n - len(np.unique(roots)))


@dataclass(frozen=True)
class DuplicateParams:
    radius: float = 0.01
    max_pairs: int = 10000
    n_examples: int = 6


def _check_radius(radius: float) -> None:
    if not 0.0 <= radius <= 0.5:
        raise InvalidInputError(
            f"`radius` must be in [0, 0.5] (RMS difference per value). Got {radius} instead."
        )


@register
class Duplicates(Check):
    """Exact and near-duplicate samples inside the training data.

    Exact copies are found by hashing every sample's 8-bit values; near copies by a radius search on
    the inputs (images shrunk by area averaging to at most 16 px a side; tabular rows standardised):
    two samples are near duplicates when their root-mean-square difference is at most ``radius``
    (0.01 = about 2.5 grey levels on average for images; a hundredth of a standard deviation for
    tables). Duplicates over-weight some samples and, across splits, inflate test accuracy; duplicates
    with different labels are label errors by construction. ``integrity.duplicates.count`` is the number
    of redundant training samples (every group of k copies counts k - 1).
    """

    id = "integrity.duplicates"
    title = "Duplicates in training data"
    requires = Requires(train_data=True)
    Params: ClassVar[type] = DuplicateParams

    def run(self, ctx: Context) -> Outcome:
        p = self.params
        _check_radius(p.radius)
        train = ctx.train_data
        assert train is not None
        pairs = _find_pairs(train, None, p.radius)
        y = np.asarray(train.y)
        redundant = _groups(train.n_samples, pairs)
        conflicts = pairs[y[pairs[:, 0].astype(int)] != y[pairs[:, 1].astype(int)]] if len(pairs) else pairs
        n = train.n_samples
        details: dict[str, Any] = {
            "pairs": _rows(pairs[: p.max_pairs]),
            "n_pairs": len(pairs),
            "n_exact_pairs": int((pairs[:, 2] == 0).sum()) if len(pairs) else 0,
            "conflicting_pairs": _rows(conflicts[: p.max_pairs]),
            "radius": p.radius,
            "truncated": len(pairs) > p.max_pairs,
        }
        summary = f"{redundant} of {n} training samples ({redundant / n:.1%}) duplicate another one ({len(pairs)} pairs"
        summary += f", {len(conflicts)} with conflicting labels)." if len(conflicts) else ")."
        order = np.concatenate([conflicts, pairs]) if len(conflicts) else pairs
        examples = _pair_examples(ctx, train, train, order, p.n_examples, "training")
        metrics = {
            "integrity.duplicates.count": float(redundant),
            "integrity.duplicates.conflicting_labels": float(len(conflicts)),
        }
        metrics.update(proportion_metrics("integrity.duplicates.rate", redundant, n))
        return Outcome(metrics=metrics, details=details, examples=examples, summary=summary)


@register
class Leakage(Check):
    """Test samples that also appear, exactly or nearly, in the training data.

    Same matching as ``integrity.duplicates`` (hash for exact copies, RMS difference at most ``radius``
    for near copies), between the evaluation data and the training data. A leaked test sample measures
    memory, not generalisation, so every accuracy in the report reads too high by up to the leaked share.
    ``integrity.leakage.count`` is the number of evaluation samples with at least one training copy.
    """

    id = "integrity.leakage"
    title = "Train/test leakage"
    requires = Requires(train_data=True)
    Params: ClassVar[type] = DuplicateParams

    def run(self, ctx: Context) -> Outcome:
        p = self.params
        _check_radius(p.radius)
        train = ctx.train_data
        assert train is not None
        if ctx.data.input_shape != train.input_shape:
            raise InvalidInputError(
                f"training samples have shape {train.input_shape} but evaluation samples "
                f"{ctx.data.input_shape}; leakage needs both in the same shape"
            )
        pairs = _find_pairs(train, ctx.data, p.radius)
        leaked = np.unique(pairs[:, 0].astype(int)) if len(pairs) else np.array([], int)
        n = ctx.data.n_samples
        y_test, y_train = np.asarray(ctx.data.y), np.asarray(train.y)
        conflicts = (
            pairs[y_test[pairs[:, 0].astype(int)] != y_train[pairs[:, 1].astype(int)]]
            if len(pairs)
            else pairs
        )
        details = {
            "pairs": _rows(pairs[: p.max_pairs]),
            "n_pairs": len(pairs),
            "indices": leaked.tolist(),
            "conflicting_pairs": _rows(conflicts[: p.max_pairs]),
            "radius": p.radius,
            "truncated": len(pairs) > p.max_pairs,
        }
        summary = (
            f"{len(leaked)} of {n} evaluation samples ({len(leaked) / n:.1%}) also appear in the training "
            "data" + (f" ({len(conflicts)} pairs with different labels)." if len(conflicts) else ".")
        )
        metrics = {"integrity.leakage.count": float(len(leaked))}
        metrics.update(proportion_metrics("integrity.leakage.rate", len(leaked), n))
        examples = _pair_examples(ctx, ctx.data, train, pairs, p.n_examples, "test")
        return Outcome(metrics=metrics, details=details, examples=examples, summary=summary)


def _rows(pairs: np.ndarray) -> list[list[float]]:
    return [[int(i), int(j), float(d)] for i, j, d in pairs]


def _pair_examples(
    ctx: Context, first: Dataset, second: Dataset, pairs: np.ndarray, n: int, kind: str
) -> list[Example]:
    if first.modality != "image" or not len(pairs):
        return []
    from roadworthy.results import Example

    out = []
    seen: set[tuple[int, int]] = set()
    for i, j, d in pairs:
        key = (int(i), int(j))
        if key in seen:
            continue
        seen.add(key)
        out.append(
            Example(
                title=f"{kind} #{key[0]} and training #{key[1]} (RMS difference {d:.3f})",
                label=ctx.class_name(int(first.y[key[0]])),
                original=evidence.png_data_uri(first.x[key[0]]),
                changed=evidence.png_data_uri(second.x[key[1]]),
                changed_prediction=f"labelled {ctx.class_name(int(second.y[key[1]]))}",
            )
        )
        if len(out) >= n:
            break
    return out
