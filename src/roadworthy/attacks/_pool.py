"""Real inputs as starting points: the nearest input the model puts in another class.

A decision-based attack needs a misclassified start, and a self-check at a huge strength needs a point it
can move toward; both take the nearest real input of another predicted class (see :class:`StartPool`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: At most this many pool values (about 32 MiB in float64) are read at once to rank candidates.
_MAX_POOL_VALUES = 2**22


@dataclass(frozen=True)
class StartPool:
    """Real inputs of the evaluation set, with the class the model gives each of them.

    A real input that the model puts in another class than an input's is, by definition, a misclassified
    point of the input space, and the nearest such input (L2) is the nearest such point the data offers.
    HopSkipJump starts from it (the paper's targeted initialisation used for the untargeted attack, as
    Foolbox's ``DatasetAttack`` does): uniform noise, the reference implementation's untargeted start,
    fails for every input of the class a model assigns to noise, a common trait of healthy CNNs. Square
    Attack's self-check at a huge strength moves each input toward it, for the same reason: a random search
    at that strength draws noise-like images.

    Parameters
    ----------
    x
        Inputs, indexed by row (the whole evaluation set: it is read in chunks, never copied whole).
    labels
        ``(len(x),)`` the class the model predicts for each row.
    rows
        The rows of ``x`` to consider; every row when ``None``.
    """

    x: np.ndarray
    labels: np.ndarray
    rows: np.ndarray | None = None

    def __post_init__(self) -> None:
        if len(self.labels) != len(self.x):
            raise ValueError(
                f"`labels` must have one entry per row of `x` ({len(self.x)}). Got {len(self.labels)} instead."
            )

    @property
    def size(self) -> int:
        return len(self.x) if self.rows is None else len(self.rows)

    def nearest_other(self, x0: np.ndarray, y: np.ndarray, k: int) -> np.ndarray:
        """``(len(x0), k)`` rows of ``x``, nearest first (L2), labelled other than ``y``; ``-1`` pads.

        Ties go to the lower row, so the choice is deterministic.
        """
        rows = np.arange(len(self.x)) if self.rows is None else np.sort(np.asarray(self.rows, np.int64))
        n, d = len(x0), int(np.prod(x0.shape[1:]))
        out = np.full((n, k), -1, np.int64)
        if n == 0 or k == 0 or len(rows) == 0:
            return out
        flat = x0.reshape(n, d).astype(np.float64)
        sq0 = (flat**2).sum(axis=1)
        dist = np.empty((n, len(rows)), np.float64)
        step = max(1, _MAX_POOL_VALUES // d)  # pool rows read per chunk
        for s in range(0, len(rows), step):
            chunk = np.asarray(self.x[rows[s : s + step]], np.float64).reshape(-1, d)
            dist[:, s : s + step] = sq0[:, None] + (chunk**2).sum(axis=1)[None] - 2 * flat @ chunk.T
        dist[np.asarray(self.labels)[rows][None, :] == np.asarray(y)[:, None]] = np.inf
        order = np.argsort(dist, axis=1, kind="stable")[:, :k]
        found = np.isfinite(np.take_along_axis(dist, order, axis=1))
        out[:, : order.shape[1]] = np.where(found, rows[order], -1)
        return out


def balanced_pool_rows(pred: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray | None:
    """Up to ``size`` rows, the same number from each predicted class in ``pred``; ``None`` (all) if fewer."""
    if len(pred) <= size:
        return None
    classes = np.unique(pred)
    per_class = max(1, size // len(classes))
    rows = [rng.permutation(np.flatnonzero(pred == c))[:per_class] for c in classes]
    return np.sort(np.concatenate(rows))
