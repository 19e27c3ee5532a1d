"""The in-memory data set every check reads.

Images are float32 NCHW in [0, 1]; tabular data float32 ``(N, D)``; labels int64 in ``[0, n_classes)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from roadworthy.types import Modality


@dataclass
class Dataset:
    """Arrays, labels and the facts the report needs about where they came from."""

    x: np.ndarray
    y: np.ndarray
    modality: Modality
    class_names: list[str] | None = None
    path: str | None = None
    sha256: str | None = None
    feature_names: list[str] | None = None
    meta: dict = field(default_factory=dict)

    @property
    def n_samples(self) -> int:
        return len(self.y)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Per-sample shape: ``(C, H, W)`` or ``(D,)``."""
        return tuple(int(s) for s in self.x.shape[1:])

    def subset(self, indices: np.ndarray) -> Dataset:
        """A view on the rows ``indices`` (same class names and provenance)."""
        return replace(self, x=self.x[indices], y=self.y[indices], meta={**self.meta, "subset": True})

    def class_name(self, label: int) -> str:
        if self.class_names and 0 <= label < len(self.class_names):
            return self.class_names[label]
        return str(label)


def stratified_sample(y: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Up to ``n`` row indices with every class represented in proportion, sorted ascending.

    Deterministic for a given ``rng`` state; returns all indices when ``n >= len(y)``.
    """
    if n >= len(y):
        return np.arange(len(y))
    classes, counts = np.unique(y, return_counts=True)
    quota = np.maximum(1, np.floor(counts / len(y) * n)).astype(int)
    # hand out what flooring left over to the largest classes
    while quota.sum() < n:
        quota[np.argmax(counts - quota)] += 1
    picks = []
    for c, q in zip(classes, quota, strict=True):
        idx = np.flatnonzero(y == c)
        picks.append(rng.choice(idx, size=min(q, len(idx)), replace=False))
    out = np.sort(np.concatenate(picks))
    return out[:n] if len(out) > n else out
