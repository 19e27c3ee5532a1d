"""One trigger across many classes: a pattern whose carriers disagree with their labels (all-to-all).

An all-to-all backdoor (Gu et al. 2017) stamps the same trigger on a few samples of *every* class and
relabels each to another class (``c -> c + 1``). At 2% of a 10-class set that is about 3 samples per
class: no class holds a group worth splitting, no class's label disagreements stand out, and the model
may have learnt the trigger only weakly. What remains is pooled evidence: the poisoned samples are
label disagreements (an out-of-sample classifier calls them by their source class) that share one input
pattern, and ordinary disagreements (look-alike digits, ambiguous signs) share none.

Procedure (cross-fitted, so the test does not reuse the rows that proposed the pattern):

1. ``D`` = rows whose given label differs from their out-of-sample prediction; split ``D`` at random
   into two halves.
2. In each half, 2-means in the input view; every cluster of at least ``min_group`` rows proposes its
   common pattern (:func:`~roadworthy.backdoor.confirm.common_pattern`, against the agreeing rows).
3. The pattern's *carriers* (:func:`~roadworthy.backdoor.clusters.pattern_distance`) outside the half
   that proposed it are counted: how many of them are disagreements, against the disagreement rate of
   all rows outside that half (one-sided binomial test; Bonferroni over the proposed patterns). A
   pattern of clean strokes is carried by many rows at about the base rate; a trigger's carriers are
   almost all disagreements.

The caller decides on the level; every class holding carriers of a significant pattern is a suspect.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from roadworthy.errors import InvalidInputError


@dataclass(frozen=True)
class PooledTrigger:
    """The most significant pattern shared by label disagreements across classes.

    Attributes
    ----------
    mask, pattern
        The trigger candidate (``(1, H, W)`` 0/1 mask, ``(C, H, W)`` pattern).
    carriers
        Every searched row of ``x`` carrying it, closest first.
    held_out, held_out_disagreeing
        Carriers outside the half of ``D`` that proposed the pattern, and how many of them disagree.
    base_rate
        Disagreement rate of all rows outside that half (the null).
    p_value
        One-sided binomial p-value of ``held_out_disagreeing`` of ``held_out`` under ``base_rate``.
    n_tested
        Patterns proposed (for a Bonferroni correction by the caller).
    classes
        Given labels of the carriers, with their counts.
    """

    mask: np.ndarray
    pattern: np.ndarray
    carriers: np.ndarray
    held_out: int
    held_out_disagreeing: int
    base_rate: float
    p_value: float
    n_tested: int
    classes: dict[int, int]


def pooled_trigger(
    x: np.ndarray,
    y: np.ndarray,
    predicted: np.ndarray,
    min_group: int = 5,
    seed: int = 0,
    rows: np.ndarray | None = None,
) -> PooledTrigger | None:
    """Search label disagreements for a shared input pattern (see the module docstring).

    Parameters
    ----------
    x
        Training images (N, C, H, W) in [0, 1].
    y, predicted
        Given labels and out-of-sample predictions (N,).
    min_group
        Least cluster size to propose a pattern.
    seed
        Seeds the split of the disagreements and 2-means.
    rows
        Rows of ``x`` to search (default: all), e.g. leaving out classes already explained; ``y`` and
        ``predicted`` are per row of ``x``. The images are read in chunks, never copied whole.

    Returns
    -------
    PooledTrigger or None
        The pattern with the smallest p-value, or None when no cluster proposed a pattern.
    """
    from sklearn.cluster import KMeans

    from roadworthy.backdoor.clusters import (
        CARRIER_DISTANCE,
        binomial_p,
        input_view,
        pattern_distance,
        reduce,
    )
    from roadworthy.backdoor.confirm import common_pattern

    y_all = np.asarray(y, dtype=np.int64)
    predicted = np.asarray(predicted, dtype=np.int64)
    if np.ndim(x) != 4 or len(x) != len(y_all) or len(predicted) != len(y_all):
        raise InvalidInputError(
            f"pooled_trigger: needs images (N, C, H, W) and N labels and predictions. Got {np.shape(x)}, "
            f"{len(y_all)}, {len(predicted)}."
        )
    idx = np.arange(len(y_all)) if rows is None else np.asarray(rows, dtype=np.int64)
    y = y_all[idx]
    disagree = predicted[idx] != y
    d_rows = np.flatnonzero(disagree)
    if len(d_rows) < 4 * min_group:
        return None
    rng = np.random.default_rng(seed)
    perm = rng.permutation(d_rows)
    halves = [np.sort(perm[: len(perm) // 2]), np.sort(perm[len(perm) // 2 :])]
    chunks = [idx[i : i + 256] for i in range(0, len(idx), 256)]
    view = reduce(
        np.concatenate([input_view(np.asarray(x[c], dtype=np.float32)) for c in chunks]), 32, seed, False
    )
    agreeing = np.flatnonzero(~disagree)
    # common_pattern reads only the reference's mean image: the mean of every agreeing row, in chunks
    ref = np.zeros((1, *np.shape(x)[1:]), np.float64)
    for i in range(0, len(agreeing), 256):
        ref[0] += np.asarray(x[idx[agreeing[i : i + 256]]], dtype=np.float32).sum(axis=0)
    ref = (ref / max(1, len(agreeing))).astype(np.float32)
    distances = []
    candidates = []
    for half in halves:
        km = KMeans(n_clusters=2, n_init=3, random_state=seed).fit(view[half])
        outside = np.ones(len(y), bool)
        outside[half] = False
        base = float(disagree[outside].mean())
        for g in (0, 1):
            group = half[km.labels_ == g]
            if len(group) < min_group:
                continue
            mask, pattern = common_pattern(np.asarray(x[idx[group]], dtype=np.float32), ref)
            if mask.sum() == 0:
                continue
            d = pattern_distance(x, mask, pattern, rows=idx)
            carriers = d < CARRIER_DISTANCE
            held = carriers & outside
            n, hits = int(held.sum()), int((held & disagree).sum())
            distances.append(d)
            candidates.append((binomial_p(hits, n, base), mask, pattern, n, hits, base, len(distances) - 1))
    if not candidates:
        return None
    p, mask, pattern, n, hits, base, i = min(candidates, key=lambda c: c[0])
    d = distances[i]
    found = np.flatnonzero(d < CARRIER_DISTANCE)
    found = found[np.argsort(d[found], kind="stable")]
    labels, counts = np.unique(y[found], return_counts=True)
    return PooledTrigger(
        mask=mask,
        pattern=pattern,
        carriers=idx[found],
        held_out=n,
        held_out_disagreeing=hits,
        base_rate=base,
        p_value=p,
        n_tested=len(candidates),
        classes={int(a): int(b) for a, b in zip(labels, counts, strict=True)},
    )
