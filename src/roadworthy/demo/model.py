"""The demo's road-sign classifier: a small VGG-style CNN and the loader for its shipped weights.

This module imports torch; ``import roadworthy.demo`` does not import it.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import torch
from torch import nn

from roadworthy.demo.signs import CLASS_NAMES

WEIGHTS = "signnet.pt"
FACTS = "signnet.json"


def _block(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


class SignNet(nn.Module):
    """Three convolutional stages (32 -> 16 -> 8 -> 4 px) with batch norm, global average pooling and
    one linear layer.

    Parameters
    ----------
    n_classes
        Number of output logits.
    width
        Channels of the first stage; the later stages have 2x and 4x, and the embedding ``4 * width``.

    Attributes
    ----------
    features
        ``nn.Sequential`` mapping a normalised ``(N, 3, H, W)`` batch to the ``(N, 4 * width)`` embedding.
    classifier
        The last ``nn.Linear``: embedding to logits.
    """

    def __init__(self, n_classes: int = len(CLASS_NAMES), width: int = 32) -> None:
        super().__init__()
        w = width
        self.features = nn.Sequential(
            *_block(3, w),
            *_block(w, w),
            nn.MaxPool2d(2),
            *_block(w, 2 * w),
            *_block(2 * w, 2 * w),
            nn.MaxPool2d(2),
            *_block(2 * w, 4 * w),
            nn.MaxPool2d(2),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.dropout = nn.Dropout(0.1)
        self.classifier = nn.Linear(4 * w, n_classes)

    @property
    def embedding_dim(self) -> int:
        return int(self.classifier.in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.features(x)))


def shipped_facts() -> dict[str, Any]:
    """The training record written next to the weights (seed, epochs, accuracy, normalisation, ...)."""
    return json.loads(resources.files("roadworthy.demo").joinpath(FACTS).read_text(encoding="utf-8"))


def load_demo_module() -> SignNet:
    """The shipped :class:`SignNet` with its trained weights, in eval mode (expects normalised input)."""
    facts = shipped_facts()
    module = SignNet(n_classes=len(facts["class_names"]), width=int(facts["width"]))
    with resources.as_file(resources.files("roadworthy.demo").joinpath(WEIGHTS)) as path:
        state = torch.load(path, map_location="cpu", weights_only=True)
    module.load_state_dict(state)
    return module.eval()


def load_demo_model() -> Any:
    """The shipped road-sign model wrapped as a :class:`roadworthy.models.torch.TorchModel`.

    The adapter takes float32 NCHW images in [0, 1] and applies the training normalisation itself; the
    model is white-box and exposes the ``features`` embedding (the input of ``classifier``).
    """
    from roadworthy.models.torch import TorchModel

    facts = shipped_facts()
    return TorchModel(
        load_demo_module(),
        input_shape=(3, 32, 32),
        n_classes=len(facts["class_names"]),
        mean=facts["mean"],
        std=facts["std"],
        output="logits",
        format="torch",
    )
