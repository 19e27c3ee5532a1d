"""Universal adversarial sticker (Brown, Mané, Roy, Abadi, Gilmer, "Adversarial Patch", 2017).

Threat model: white-box (the attacker has the model's gradients while preparing the patch), untargeted,
physically plausible: one square patch covering a share of the image, at a random place on each input.

One small square patch is optimised white-box, once, to make the model misclassify *any* image it is
pasted on, at a random place (expectation over placements). It models a sticker on a road sign: the
attacker prepares it in advance and cannot tailor it to each image. Measure it on images it was not
optimised on, against a patch of random noise at the same places: what the random patch costs is
occlusion, what the optimised one costs beyond it is the attack.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from roadworthy.attacks._inputs import as_forward
from roadworthy.attacks._losses import margin

if TYPE_CHECKING:
    import torch


def patch_side(area: float, h: int, w: int) -> int:
    """Side of a square patch covering about ``area`` of an ``h x w`` image (at least 1, at most the image)."""
    if not 0 < area <= 1:
        raise ValueError(f"`area` must be in (0, 1]. Got {area} instead.")
    return int(min(h, w, max(1, round(math.sqrt(area * h * w)))))


def paste(x: torch.Tensor, patch: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """Paste ``patch`` (C, s, s) on every image of ``x`` (N, C, H, W) with its top-left at ``(rows, cols)``.

    Differentiable w.r.t. ``patch``.
    """
    import torch

    n, c, h, w = x.shape
    s = patch.shape[-1]
    ar = torch.arange(s, device=x.device)
    flat = (
        (rows[:, None, None] + ar[None, :, None]) * w + (cols[:, None, None] + ar[None, None, :])
    ).reshape(n, 1, s * s)
    flat = flat.expand(n, c, s * s)
    src = patch.reshape(1, c, s * s).expand(n, c, s * s)
    canvas = torch.zeros(n, c, h * w, dtype=x.dtype, device=x.device).scatter(2, flat, src)
    mask = torch.zeros(n, c, h * w, dtype=x.dtype, device=x.device).scatter(2, flat, torch.ones_like(src))
    return (x.reshape(n, c, h * w) * (1 - mask) + canvas).reshape(n, c, h, w)


def train_patch(
    forward: Any,
    x: torch.Tensor,
    y: torch.Tensor,
    side: int,
    steps: int = 150,
    batch_size: int = 64,
    step_size: float = 0.1,
    kappa: float = 5.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Optimise one universal patch by signed-gradient descent on a clamped margin loss.

    Each step pastes the patch at a random place on a random mini-batch and lowers
    ``mean(max(z_y - max_{i!=y} z_i, -kappa))`` (the clamp stops already-fooled images from dominating);
    the step size decays linearly from ``step_size`` to a tenth of it.
    """
    import torch

    forward = as_forward(forward)
    n, c, h, w = x.shape
    patch = torch.rand((c, side, side), generator=generator, dtype=x.dtype).to(x.device)
    for t in range(steps):
        b = torch.randint(0, n, (min(batch_size, n),), generator=generator).to(x.device)
        rows = torch.randint(0, h - side + 1, (len(b),), generator=generator).to(x.device)
        cols = torch.randint(0, w - side + 1, (len(b),), generator=generator).to(x.device)
        p = patch.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            loss = margin(forward(paste(x[b], p, rows, cols)), y[b]).clamp_min(-kappa).mean()
            (g,) = torch.autograd.grad(loss, p, allow_unused=True)
        if g is None:
            g = torch.zeros_like(p)
        lr = step_size * (1 - 0.9 * t / max(1, steps - 1))
        patch = (patch - lr * g.sign()).clamp(0, 1)
    return patch.detach()
