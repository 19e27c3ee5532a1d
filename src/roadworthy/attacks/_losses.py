"""The losses attacks ascend, and the input gradient of a loss.

Torch losses are computed in float64: a confident, healthy float32 model otherwise saturates the softmax,
its cross-entropy gradient becomes exactly zero and the attack stalls (a false sign of robustness).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

    from roadworthy.attacks._inputs import Forward


#: input bytes of one gradient batch: a network's activations kept for the backward pass are tens of
#: times its input, so 16 MiB of 224 px images (27 of them) keeps a ResNet-18's batch near 1 GB; small
#: images keep the requested batch
GRAD_BATCH_INPUT_BYTES = 16 * 2**20


def grad_batch(x: torch.Tensor | np.ndarray, batch_size: int) -> int:
    """The batch of a gradient loop over ``x``: ``batch_size``, lowered so that one batch's inputs stay
    within :data:`GRAD_BATCH_INPUT_BYTES` (never below 8)."""
    per_input = 4 * int(np.prod(tuple(x.shape[1:]))) if len(x.shape) > 1 else 4
    return max(1, min(batch_size, max(8, GRAD_BATCH_INPUT_BYTES // max(1, per_input))))


def ce_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-sample cross-entropy in float64."""
    import torch.nn.functional as F

    return F.cross_entropy(logits.double(), y, reduction="none")


def dlr_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Difference of Logits Ratio (Croce & Hein, ICML 2020): ``-(z_y - max_{i!=y} z_i) / (z_pi1 - z_pi3)``.

    Invariant to shifting and rescaling the logits, so saturation cannot hide gradients. Needs >= 3 classes.
    """
    z = logits.double()
    zs = z.sort(dim=1, descending=True).values
    zy = z.gather(1, y[:, None])[:, 0]
    other = z.scatter(1, y[:, None], -math.inf).max(dim=1).values
    return -(zy - other) / (zs[:, 0] - zs[:, 2] + 1e-12)


def margin(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``z_y - max_{i!=y} z_i``: negative exactly when the input is misclassified."""
    z = logits.double()
    zy = z.gather(1, y[:, None])[:, 0]
    return zy - z.scatter(1, y[:, None], -math.inf).max(dim=1).values


LOSSES = {"ce": ce_loss, "dlr": dlr_loss}


def input_gradient(
    forward: Forward, x: torch.Tensor, y: torch.Tensor, loss: str = "ce"
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(d loss / d x, logits, loss)`` per sample; zeros when the output does not depend on ``x`` at all."""
    import torch

    xr = x.detach().requires_grad_(True)  # a new leaf sharing storage: no copy
    with torch.enable_grad():
        logits = forward(xr)
        values = LOSSES[loss](logits, y)
        if values.requires_grad:
            (g,) = torch.autograd.grad(values.sum(), xr, allow_unused=True)
        else:
            g = None
    if g is None:
        g = torch.zeros_like(xr)
    return g.detach(), logits.detach(), values.detach()


def margins(scores: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``s_y - max_{i!=y} s_i`` per row of NumPy scores (logits or probabilities): negative when misclassified."""
    z = np.asarray(scores, np.float64)
    zy = z[np.arange(len(y)), y]
    other = z.copy()
    other[np.arange(len(y)), y] = -np.inf
    return zy - other.max(axis=1)
