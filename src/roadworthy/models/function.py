"""Adapter for any Python callable ``f(x) -> scores`` (black box: no gradients, no features)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from roadworthy.errors import InvalidInputError, first_line, plural
from roadworthy.models._common import check_std, normalise, stat_array
from roadworthy.models.base import InputSpec, OutputKind, detect_output_kind


class FunctionModel:
    """Wrap ``fn(x: np.ndarray) -> np.ndarray`` returning ``(N, K)`` logits or probabilities.

    ``fn`` receives float32 batches (images NCHW in [0, 1]), normalised by ``mean``/``std`` when given.

    Parameters
    ----------
    fn
        The function.
    input_shape
        Per-sample shape: ``(C, H, W)`` or ``(D,)``.
    n_classes
        Expected number of output columns; checked against a probe batch.
    output
        ``"logits"``, ``"probs"`` or ``None`` to detect from a probe batch.
    modality
        ``"image"`` or ``"tabular"``; by default image for 3-D shapes.
    mean, std
        Normalisation applied before ``fn`` is called.
    """

    format = "function"
    white_box = False
    has_features = False

    def __init__(
        self,
        fn: Callable[[np.ndarray], np.ndarray],
        input_shape: Sequence[int] | None,
        n_classes: int | None = None,
        output: OutputKind | None = None,
        modality: str | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ) -> None:
        if input_shape is None:
            raise InvalidInputError(
                "a Python function model needs its per-sample input shape: pass input_shape=(C, H, W) or (D,)"
            )
        self._fn = fn
        shape = tuple(int(s) for s in input_shape)
        self.input_spec = InputSpec(
            modality=modality or ("image" if len(shape) == 3 else "tabular"), shape=shape
        )  # type: ignore[arg-type]
        self._mean = stat_array(mean, shape, "mean")
        self._std = stat_array(std, shape, "std")
        check_std(self._std)
        try:
            probe = self.predict(np.random.default_rng(0).random((2, *shape), dtype=np.float32))
        except Exception as exc:  # whatever the user's function raises, translated at the boundary
            raise InvalidInputError(
                f"the model function failed on a probe batch of shape {(2, *shape)} ({first_line(exc)})"
            ) from exc
        if probe.ndim != 2 or probe.shape[0] != 2:
            raise InvalidInputError(
                f"the model function must return an (N, n_classes) array, got shape {probe.shape}"
            )
        if n_classes is not None and int(n_classes) != probe.shape[1]:
            raise InvalidInputError(
                f"the model function returns {probe.shape[1]} scores per sample but {plural(int(n_classes), 'class', 'classes')} were given"
            )
        self.n_classes = int(probe.shape[1])
        self.output: OutputKind = output or detect_output_kind(probe)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Scores ``(N, n_classes)`` for a float32 batch."""
        x = normalise(np.ascontiguousarray(x, dtype=np.float32), self._mean, self._std)
        out = np.asarray(self._fn(np.ascontiguousarray(x)), dtype=np.float32)
        if out.ndim == 1:
            out = out[:, None]
        return out
