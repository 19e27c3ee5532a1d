"""The model protocol every adapter implements, and helpers that work on any model.

A model is anything with ``n_classes``, ``input_spec``, ``output`` and ``predict(x)``; nothing needs to
subclass anything. Optional capabilities are discovered, never assumed:

``white_box``
    ``model.white_box`` is true and ``model.forward_torch(x)`` maps a float32 torch tensor of pixel-space
    inputs (NCHW in [0, 1] for images) to differentiable *logits* (log-probabilities when the model itself
    emits probabilities, so attacks never treat softmax outputs as logits).
``features``
    ``model.features(x)`` returns penultimate-layer embeddings ``(N, F)`` as a NumPy array.

Inputs are always in pixel units: the adapter applies the model's own normalisation (``--mean/--std``)
so that an epsilon of 8/255 means eight grey levels whatever the model was trained on.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np

from roadworthy.errors import InvalidInputError
from roadworthy.types import (  # re-exported: they were defined here before the ground floor existed
    Capability,
    FeatureModel,
    InputSpec,
    Modality,
    ModelInfo,
    OutputKind,
    WhiteBox,
    capabilities,
)

__all__ = [
    "Capability",
    "FeatureModel",
    "InputSpec",
    "Modality",
    "Model",
    "ModelInfo",
    "OutputKind",
    "WhiteBox",
    "batched",
    "capabilities",
    "detect_output_kind",
    "predict_logits",
    "predict_probs",
    "to_logits",
    "to_probs",
]


@runtime_checkable
class Model(Protocol):
    """What roadworthy needs from a model: class count, input description and batched predictions."""

    n_classes: int
    input_spec: InputSpec
    output: OutputKind
    format: str

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Scores ``(N, n_classes)`` (logits or probabilities, see ``output``) for a float32 batch."""
        ...


def detect_output_kind(scores: np.ndarray) -> OutputKind:
    """``probs`` when every row is non-negative and sums to 1 (within 1e-3), else ``logits``."""
    if scores.ndim != 2 or scores.shape[0] == 0:
        return "logits"
    finite = np.isfinite(scores).all()
    if finite and (scores >= -1e-6).all() and np.allclose(scores.sum(axis=1), 1.0, atol=1e-3):
        return "probs"
    return "logits"


def to_probs(scores: np.ndarray, kind: OutputKind) -> np.ndarray:
    """Probabilities from a model's raw scores."""
    from roadworthy.stats import softmax

    if kind == "probs":
        p = np.clip(scores.astype(np.float64), 0.0, None)
        s = p.sum(axis=1, keepdims=True)
        s[s == 0] = 1.0
        return (p / s).astype(np.float32)
    return softmax(scores.astype(np.float64)).astype(np.float32)


def to_logits(scores: np.ndarray, kind: OutputKind) -> np.ndarray:
    """Logits from raw scores: unchanged for logits, ``log(p)`` (clipped at 1e-12) for probabilities."""
    if kind == "logits":
        return scores.astype(np.float32)
    return np.log(np.clip(scores, 1e-12, None)).astype(np.float32)


def batched(fn: Any, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Apply ``fn`` to ``x`` in batches of ``batch_size`` and concatenate along axis 0."""
    if len(x) == 0:
        raise InvalidInputError("cannot run the model on an empty batch")
    outs = [np.asarray(fn(x[i : i + batch_size])) for i in range(0, len(x), batch_size)]
    return np.concatenate(outs, axis=0)


def predict_probs(model: Model, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Class probabilities ``(N, K)`` for any model, in batches."""
    return to_probs(batched(model.predict, x, batch_size), model.output)


def predict_logits(model: Model, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Logits ``(N, K)`` (log-probabilities for probability models), in batches."""
    return to_logits(batched(model.predict, x, batch_size), model.output)
