"""Adapter for any Python callable ``f(x) -> scores`` (black-box: no gradients, no features)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from roadworthy.errors import InvalidInputError
from roadworthy.models.base import InputSpec, OutputKind, detect_output_kind


class FunctionModel:
    """Wrap ``fn(x: np.ndarray) -> np.ndarray`` returning ``(N, K)`` logits or probabilities.

    ``fn`` receives float32 batches in pixel units (images NCHW in [0, 1]).
    """

    format = "function"
    white_box = False

    def __init__(
        self,
        fn: Callable[[np.ndarray], np.ndarray],
        input_shape: Sequence[int],
        n_classes: int | None = None,
        output: OutputKind | None = None,
        modality: str | None = None,
    ) -> None:
        self._fn = fn
        shape = tuple(int(s) for s in input_shape)
        self.input_spec = InputSpec(modality=modality or ("image" if len(shape) == 3 else "tabular"), shape=shape)  # type: ignore[arg-type]
        probe = self.predict(np.random.default_rng(0).random((2, *shape), dtype=np.float32))
        if probe.ndim != 2 or probe.shape[0] != 2:
            raise InvalidInputError(f"the model function must return an (N, n_classes) array, got shape {probe.shape}")
        self.n_classes = int(n_classes or probe.shape[1])
        self.output: OutputKind = output or detect_output_kind(probe)

    def predict(self, x: np.ndarray) -> np.ndarray:
        out = np.asarray(self._fn(np.ascontiguousarray(x, dtype=np.float32)), dtype=np.float32)
        if out.ndim == 1:
            out = out[:, None]
        return out
