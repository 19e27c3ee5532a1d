"""Targeted label flips: a (source -> target) pair of label disagreements far above clean confusion.

A label-flipping attacker relabels samples of a source class ``s`` as the target ``t`` (the demo's stop
signs labelled as a speed limit; Biggio et al. 2012). No trigger is pasted and nothing in the inputs is
unusual: the only trace is that those samples *look like* ``s`` while labelled ``t``. A classifier that
never saw a sample (cross-validated, out of sample) calls it by what it looks like, so the flipped rows
pile up in one cell ``(given t, predicted s)`` of the joint count of given and out-of-sample predicted
labels (the confident-learning view of label noise, Northcutt et al. 2021, reduced to its largest cell).

Clean data fill such cells too: classes that look alike (8 and 1 in handwriting, two round signs) are
confused at some rate. What separates a flip from confusion is concentration: one cell far above what
the *other classes'* cells reach. Per class ``t`` (given label), its largest cell ``(t, s)`` is tested
against the largest rate among the cells whose given label is another class, leaving out the reverse
cell ``(s, t)`` (a flip of half the source class makes the remaining source samples ambiguous too):
a one-sided binomial test of the cell's count among the ``n_t`` samples labelled ``t``. The null is the
*largest* of dozens of clean cells, already an upper estimate of what confusion reaches, so its point
rate is used. Cells of the same given class are not in the null: a source-agnostic backdoor (BadNets
all-to-one) raises several cells of its target, which all point to the same class.

Functions measure and test; the verdict (level, effect floor) is the caller's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from roadworthy.errors import InvalidInputError


@dataclass(frozen=True)
class FlipPair:
    """The most concentrated label disagreement of one given class.

    Attributes
    ----------
    target
        The given label ``t`` of the rows (what an attacker would have labelled them).
    source
        The class ``s`` an out-of-sample classifier predicts for most of the disagreeing rows of ``t``.
    count, n
        Rows labelled ``t`` predicted ``s``, and rows labelled ``t``.
    null_rate
        The largest ``count / n`` over the cells of the other given classes (reverse cell left out).
    null_cell
        That cell, ``(given, predicted)``.
    p_value
        One-sided binomial p-value of ``count`` of ``n`` under ``null_rate``.
    excess
        ``count - n * null_rate``: rows beyond what the null explains (the effect size, in samples).
    rows
        The rows labelled ``t`` and predicted ``s``, most confident first (by the out-of-sample
        probability of ``s``).
    """

    target: int
    source: int
    count: int
    n: int
    null_rate: float
    null_cell: tuple[int, int]
    p_value: float
    excess: float
    rows: np.ndarray


def joint_counts(y: np.ndarray, predicted: np.ndarray, n_classes: int) -> np.ndarray:
    """``(K, K)`` counts: row = given label, column = out-of-sample predicted label."""
    c = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(c, (np.asarray(y, dtype=np.int64), np.asarray(predicted, dtype=np.int64)), 1)
    return c


def flip_pairs(y: np.ndarray, probs: np.ndarray, min_class_size: int = 20) -> list[FlipPair]:
    """Per given class, its most concentrated (source -> target) disagreement and its test.

    Parameters
    ----------
    y
        Given training labels (N,), integers in ``[0, K)``.
    probs
        Out-of-sample class probabilities (N, K): for every row, from a classifier that never saw it
        (e.g. :func:`roadworthy.checks.integrity.label_issues.out_of_sample_probs`).
    min_class_size
        Given classes with fewer rows are neither tested nor used in the null.

    Returns
    -------
    list[FlipPair]
        One per tested class with at least one disagreement, in class order.
    """
    y, probs = _validate(y, probs)
    pred = probs.argmax(axis=1)
    c = joint_counts(y, pred, probs.shape[1])
    out = []
    for t in np.flatnonzero(c.sum(axis=1) >= min_class_size):
        off = c[t].copy()
        off[t] = 0
        if off.max() > 0:
            out.append(_test(y, probs, pred, c, int(t), int(off.argmax()), min_class_size))
    return out


def pair_test(
    y: np.ndarray, probs: np.ndarray, target: int, source: int, min_class_size: int = 20
) -> FlipPair:
    """The test of one given cell ``(target, source)`` (e.g. proposed by another method), as in
    :func:`flip_pairs`."""
    y, probs = _validate(y, probs)
    k = probs.shape[1]
    if not (0 <= target < k and 0 <= source < k) or target == source:
        raise InvalidInputError(
            f"pair_test: `target` and `source` must be two different classes in [0, {k}). "
            f"Got {target} and {source}."
        )
    pred = probs.argmax(axis=1)
    return _test(y, probs, pred, joint_counts(y, pred, k), target, source, min_class_size)


def _validate(y: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or len(probs) != len(y):
        raise InvalidInputError(
            f"flip_pairs: `probs` must be (N, K) with N = len(y) = {len(y)}. Got shape {probs.shape}."
        )
    k = probs.shape[1]
    if len(y) and (y.min() < 0 or y.max() >= k):
        raise InvalidInputError(f"flip_pairs: labels must be integers in [0, {k}). Found {int(y.max())}.")
    return y, probs


def _test(
    y: np.ndarray,
    probs: np.ndarray,
    pred: np.ndarray,
    c: np.ndarray,
    t: int,
    s: int,
    min_class_size: int,
) -> FlipPair:
    from roadworthy.backdoor.clusters import binomial_p

    sizes = c.sum(axis=1)
    rates = c / np.maximum(sizes, 1)[:, None]
    best, cell = 0.0, (-1, -1)
    for i in np.flatnonzero(sizes >= min_class_size):
        if i == t:
            continue
        for j in range(c.shape[1]):
            if j != i and (i, j) != (s, t) and rates[i, j] > best:
                best, cell = float(rates[i, j]), (int(i), int(j))
    rows = np.flatnonzero((y == t) & (pred == s))
    rows = rows[np.argsort(-probs[rows, s], kind="stable")]
    count, n = int(c[t, s]), int(sizes[t])
    return FlipPair(
        target=t,
        source=s,
        count=count,
        n=n,
        null_rate=best,
        null_cell=cell,
        p_value=binomial_p(count, n, best),
        excess=float(count - n * best),
        rows=rows,
    )


@dataclass(frozen=True)
class ClassDisagreement:
    """How many rows of one given class an out-of-sample classifier calls something else.

    The source-agnostic form of :class:`FlipPair`: an all-to-one backdoor (BadNets, blended) relabels
    samples of *every* other class to its target, so its disagreements spread over many cells of the
    target's row of the joint count (about 3 per cell at 2% of a 10-class set) but pile up in the row.

    Attributes
    ----------
    target
        The given class.
    count, n
        Its rows predicted as another class, and its rows.
    null_rate
        The largest ``count / n`` of the other classes.
    null_class
        That class.
    p_value
        One-sided binomial p-value of ``count`` of ``n`` under ``null_rate``.
    excess
        ``count - n * null_rate``.
    rows
        The disagreeing rows, least probable under their given label first.
    """

    target: int
    count: int
    n: int
    null_rate: float
    null_class: int
    p_value: float
    excess: float
    rows: np.ndarray


def class_disagreements(
    y: np.ndarray, probs: np.ndarray, min_class_size: int = 20
) -> list[ClassDisagreement]:
    """Per given class, its out-of-sample label disagreements tested against the other classes' rates.

    The null of class ``t`` is the largest disagreement rate of the other tested classes (their point
    rate: the largest of several clean rates is already an upper estimate of what confusion reaches).
    """
    from roadworthy.backdoor.clusters import binomial_p

    y, probs = _validate(y, probs)
    pred = probs.argmax(axis=1)
    sizes = np.bincount(y, minlength=probs.shape[1])
    tested = [int(c) for c in np.flatnonzero(sizes >= min_class_size)]
    counts = {c: int(((y == c) & (pred != c)).sum()) for c in tested}
    out = []
    for t in tested:
        others = [(counts[c] / sizes[c], c) for c in tested if c != t]
        if not others:
            continue
        rate, cls = max(others)
        rows = np.flatnonzero((y == t) & (pred != t))
        rows = rows[np.argsort(probs[rows, t], kind="stable")]
        out.append(
            ClassDisagreement(
                target=t,
                count=counts[t],
                n=int(sizes[t]),
                null_rate=float(rate),
                null_class=int(cls),
                p_value=binomial_p(counts[t], int(sizes[t]), float(rate)),
                excess=float(counts[t] - sizes[t] * rate),
                rows=rows,
            )
        )
    return out
