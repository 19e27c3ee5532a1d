"""What an attack accepts: a roadworthy model or a plain function, NumPy arrays or torch tensors.

White-box attacks need ``forward(x) -> logits`` on torch tensors (a roadworthy model's ``forward_torch``);
black-box attacks need a function from a NumPy batch to scores or labels (a roadworthy model's ``predict``,
turned into logits or probabilities by its declared ``output``). Attacks return what they were given:
NumPy in, NumPy out; torch in, torch out.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from roadworthy.errors import InvalidInputError
from roadworthy.models.base import batched, to_logits, to_probs

if TYPE_CHECKING:
    import torch

Forward = Callable[["torch.Tensor"], "torch.Tensor"]
ScoresFn = Callable[[np.ndarray], np.ndarray]


def as_forward(model: Any) -> Forward:
    """The differentiable ``forward(x) -> logits`` of a white-box model, or ``model`` itself if a function."""
    fwd = getattr(model, "forward_torch", None)
    if callable(fwd):
        return fwd  # type: ignore[no-any-return]
    if hasattr(model, "predict"):
        raise InvalidInputError(
            "model: a white-box attack needs gradients (a torch model, `forward_torch`). "
            f"Got a {type(model).__name__} without them instead."
        )
    if callable(model):
        return model  # type: ignore[no-any-return]
    raise InvalidInputError(
        f"model: expected a roadworthy model or a function. Got {type(model).__name__} instead."
    )


def as_scores(model: Any, kind: str = "logits", batch_size: int = 256) -> ScoresFn:
    """``scores(x) -> (N, K)`` logits (``kind="logits"``) or probabilities of a model, or ``model`` if a function."""
    if hasattr(model, "predict") and hasattr(model, "output"):
        convert = to_logits if kind == "logits" else to_probs

        def scores(x: np.ndarray) -> np.ndarray:
            return convert(batched(model.predict, x, batch_size), model.output)

        return scores
    if callable(model):
        return model  # type: ignore[no-any-return]
    raise InvalidInputError(
        f"model: expected a roadworthy model or a function. Got {type(model).__name__} instead."
    )


def as_labels(model: Any, batch_size: int = 256) -> ScoresFn:
    """``labels(x) -> (N,)`` top classes of a model, or ``model`` itself if a function."""
    if hasattr(model, "predict") and hasattr(model, "output"):
        probs = as_scores(model, "probs", batch_size)
        return lambda x: probs(x).argmax(axis=1)
    return as_scores(model)


def to_torch(model: Any, x: Any, y: Any) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """``(x, y, was_numpy)``: NumPy inputs as float32/int64 tensors on the model's device; tensors unchanged."""
    import torch

    if isinstance(x, torch.Tensor):
        yt = y if isinstance(y, torch.Tensor) else torch.as_tensor(np.asarray(y, np.int64), device=x.device)
        return x, yt, False
    device = getattr(model, "device", "cpu")
    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(device)
    yt = torch.from_numpy(np.asarray(y, dtype=np.int64)).to(device)
    return xt, yt, True


def from_torch(x_adv: torch.Tensor, was_numpy: bool) -> Any:
    """``x_adv`` back in the caller's type."""
    return x_adv.detach().cpu().numpy() if was_numpy else x_adv
