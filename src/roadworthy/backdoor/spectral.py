"""Untangling a class into two groups under the other classes' covariance (SCAn), and spectral scores.

Tang, Wang, Zhang & Chen, "Demon in the Variant: Statistical Analysis of DNNs for Robust Backdoor
Contamination Detection" (SCAn), USENIX Security 2021; Tran, Li & Madry, "Spectral Signatures in
Backdoor Attacks", NeurIPS 2018; Hayase, Kong, Somani & Oh, "SPECTRE: Defending Against Backdoor
Attacks Using Robust Statistics", ICML 2021.

Threat model: some training samples of a target class carry a trigger (and usually come from other
classes). In the model's features they form a second group inside the class, whatever its size: the
poisoned group may be a small minority or close to half of the class (8% of a 10-class training set
relabelled to one class is 45% of it). Tests that call the *smaller* cluster the poison, or that whiten
with the class's own covariance (which the poison inflates), break down there.

What this module does, per class ``c``:

1. Whiten the class's features with the pooled *within-class* covariance of the **other** classes
   (SCAn's shared variation term, estimated where the poison is not; SPECTRE's point that the
   covariance must come from a robust estimate, here robust by construction to a poisoned majority of
   ``c``).
2. Split the class in two by 2-means in the whitened space (SCAn's two-subgroup model with a shared
   covariance: its maximum-likelihood assignment is exactly this split).
3. The untangling statistic ``J = (n1 n2 / n^2) * D^2(u1, u2)``: how much the residual variation shrinks
   (in Mahalanobis units) when the class is described by two identities instead of one. A clean class
   split in two gains about ``0.64`` per dimension of real spread; a class holding a trigger group gains
   the squared distance between the groups.
4. Each sample's *signed* discriminant score along ``u2 - u1`` (a spectral signature taken in the
   robustly whitened space; signed, because with a poisoned near-half of the class the squared
   projection of Tran et al. no longer separates the groups).

The class score is the robust z-score of ``log J`` across classes (median and MAD, as SCAn normalises
its statistic); :data:`SCORE_THRESHOLD` is the suggested cut.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from roadworthy.errors import InvalidInputError

#: Suggested threshold on the class score (robust z of ``log J`` across classes).
SCORE_THRESHOLD = 3.5
#: Consistency constant that turns a median absolute deviation into a normal standard deviation.
MAD_SCALE = 1.4826


@dataclass(frozen=True)
class Untangled:
    """A class split into two groups under the other classes' covariance.

    Attributes
    ----------
    label
        The class.
    rows
        Its training rows (ascending).
    group
        0 or 1 per row of ``rows``: the 2-means group.
    statistic
        The untangling statistic ``J`` (see the module docstring).
    projection
        Signed discriminant score per row, positive on group 1's side, in units of the whitened distance
        between the two groups' centres (so the two centres sit at -0.5 and +0.5).
    distance
        Mahalanobis distance between the two groups' centres (whitened by the other classes' covariance).
    """

    label: int
    rows: np.ndarray
    group: np.ndarray
    statistic: float
    projection: np.ndarray
    distance: float


def pooled_precision(z: np.ndarray, y: np.ndarray, exclude: int, ridge: float = 1e-3) -> np.ndarray:
    """Inverse of the pooled within-class covariance of all classes except ``exclude``.

    ``ridge`` times the mean variance is added to the diagonal, so a few collinear feature columns
    (dead ReLUs) do not make the inverse explode.
    """
    keep = y != exclude
    zk, yk = z[keep], y[keep]
    labels, inv = np.unique(yk, return_inverse=True)
    means = np.zeros((len(labels), z.shape[1]))
    np.add.at(means, inv, zk)
    means /= np.bincount(inv)[:, None]
    r = zk - means[inv]
    dof = max(1, len(zk) - len(labels))
    cov = r.T @ r / dof
    d = cov.shape[0]
    cov += ridge * max(float(np.trace(cov)) / d, 1e-12) * np.eye(d)
    return np.linalg.inv(cov)


def untangle(
    z: np.ndarray,
    y: np.ndarray,
    label: int,
    seed: int = 0,
    n_init: int = 3,
    min_group: int | None = None,
    rows: np.ndarray | None = None,
) -> Untangled:
    """Split class ``label`` of the representation ``z`` (N, D) in two and measure the gain (SCAn's J).

    A "group" of fewer than ``min_group`` members (default: 5 or 2% of the class, whichever is larger)
    is a handful of outliers, not a second identity: whitened by the other classes' covariance, one
    sample far out along a direction the other classes barely use (a unit that fires for that sample
    alone) gives an enormous distance and, with it, a large ``J`` for a clean class. Such outliers are
    set aside and the class split again without them (up to three times); they are then assigned to the
    nearer group's centre, so every row keeps a projection.

    ``rows`` (training rows of class ``label``, ascending) splits only that part of the class, e.g. one
    group of an earlier split (a class with a strong natural two-mode structure hides a trigger group
    inside one of its modes); the whitening still comes from the other classes.
    """
    from sklearn.cluster import KMeans

    z = np.asarray(z, dtype=np.float64)
    y = np.asarray(y)
    if rows is None:
        rows = np.flatnonzero(y == label)
    else:
        rows = np.asarray(rows, dtype=np.int64)
        if len(rows) and np.any(y[rows] != label):
            raise InvalidInputError(f"untangle: every row in `rows` must be of class {label}.")
    if len(rows) < 4:
        raise InvalidInputError(f"untangle: class {label} needs at least 4 samples. Got {len(rows)}.")
    least = max(5, int(np.ceil(0.02 * len(rows)))) if min_group is None else int(min_group)
    prec = pooled_precision(z, y, exclude=label)
    # whiten: with prec = L L^T, w = (z - mean) L has identity covariance under the other classes
    chol = np.linalg.cholesky(prec)
    zc = z[rows] - z[rows].mean(axis=0)
    w = zc @ chol
    inliers = np.ones(len(rows), dtype=bool)
    for _ in range(4):
        km = KMeans(n_clusters=2, n_init=n_init, random_state=seed).fit(w[inliers])
        sizes = np.bincount(km.labels_, minlength=2)
        if sizes.min() >= least or inliers.sum() - sizes.min() < max(4, 2 * least):
            break
        out = np.flatnonzero(inliers)[km.labels_ == sizes.argmin()]
        inliers[out] = False
    centres = km.cluster_centers_
    group = ((w[:, None, :] - centres[None]) ** 2).sum(axis=2).argmin(axis=1).astype(np.int64)
    group[inliers] = km.labels_
    gi = group[inliers]
    if gi.min() == gi.max():
        return Untangled(label, rows, group, 0.0, np.zeros(len(rows)), 0.0)
    u0, u1 = w[inliers][gi == 0].mean(axis=0), w[inliers][gi == 1].mean(axis=0)
    diff = u1 - u0
    d2 = float(diff @ diff)
    n1 = int(gi.sum())
    n0 = len(gi) - n1
    stat = n0 * n1 / len(gi) ** 2 * d2
    proj = (w - (u0 + u1) / 2) @ diff / max(d2, 1e-12)
    return Untangled(label, rows, group, float(stat), proj, float(np.sqrt(d2)))


def class_scores(statistics: np.ndarray, floor: float = 0.25) -> np.ndarray:
    """Robust z-score of ``log J`` across classes: ``(log J - median) / max(1.4826 MAD, floor)``.

    ``floor`` (in log units: 0.25 is a 28% difference; clean classes of one model differ by up to about
    twice in ``J``) keeps a set of near-identical clean classes from
    turning tiny differences into large scores.
    """
    v = np.log(np.maximum(np.asarray(statistics, dtype=np.float64), 1e-12))
    med = float(np.median(v))
    mad = MAD_SCALE * float(np.median(np.abs(v - med)))
    return (v - med) / max(mad, floor)
