"""The words every layer shares: modalities, input specs, model capabilities and model protocols.

This module is on the ground floor: it imports nothing of roadworthy (and no framework), so data
loaders, models, algorithms, checks and renderers may all use it.

A model is anything with ``n_classes``, ``input_spec``, ``output`` and ``predict(x)``
(:class:`roadworthy.models.base.Model`). Two optional capabilities are discovered, never assumed:

``white_box`` (:class:`WhiteBox`)
    ``model.white_box`` is true and ``model.forward_torch(x)`` maps a float32 torch tensor of pixel-space
    inputs (NCHW in [0, 1] for images) to differentiable *logits*.
``features`` (:class:`FeatureModel`)
    ``model.features(x)`` returns penultimate-layer embeddings ``(N, F)`` as a NumPy array.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal, Protocol, runtime_checkable

Modality = Literal["image", "tabular"]
OutputKind = Literal["logits", "probs"]


#: Budgets, cheapest first: ``quick`` for every CI run, ``thorough`` for a release.
BUDGETS = ("quick", "standard", "thorough")


@dataclass(frozen=True)
class InputSpec:
    """What a model accepts, per sample.

    ``shape`` is the per-sample shape: ``(C, H, W)`` for images, ``(D,)`` for tabular data; an entry is
    ``None`` where the model accepts any size (a fully convolutional network).
    """

    modality: Modality
    shape: tuple[int | None, ...]
    value_range: tuple[float, float] = (0.0, 1.0)


class Capability(StrEnum):
    """An optional thing a model can do beyond ``predict``; a check declares those it needs.

    The members are strings (``Capability.WHITE_BOX == "white_box"``), so sets of either compare equal
    and a report's JSON reads the same.
    """

    WHITE_BOX = "white_box"  #: differentiable logits through ``forward_torch`` (gradient attacks)
    FEATURES = "features"  #: penultimate-layer embeddings through ``features`` (OOD, integrity)


@runtime_checkable
class WhiteBox(Protocol):
    """A model whose logits can be differentiated with respect to its (pixel-space) inputs."""

    white_box: bool

    def forward_torch(self, x: Any) -> Any:
        """Logits ``(N, n_classes)`` as a torch tensor, differentiable with respect to ``x``."""
        ...


@runtime_checkable
class FeatureModel(Protocol):
    """A model that exposes its penultimate-layer embeddings."""

    def features(self, x: Any) -> Any:
        """Embeddings ``(N, F)`` as a float NumPy array for a float32 batch ``x``."""
        ...


def capabilities(model: Any) -> frozenset[Capability]:
    """The optional capabilities ``model`` really offers (a flag alone is not enough: the method must exist)."""
    caps = set()
    if getattr(model, "white_box", False) and callable(getattr(model, "forward_torch", None)):
        caps.add(Capability.WHITE_BOX)
    if callable(getattr(model, "features", None)) and getattr(model, "has_features", True):
        caps.add(Capability.FEATURES)
    return frozenset(caps)


@dataclass(frozen=True)
class ModelInfo:
    """Where a model came from: its file (``None`` for an object given in memory), format and sha256.

    The loader sets it as ``model.identity`` after hashing the file once; the session reads it from there.
    """

    path: str | None
    format: str
    sha256: str | None = None
