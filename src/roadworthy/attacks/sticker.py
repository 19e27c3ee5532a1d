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
from roadworthy.attacks._losses import grad_batch, margin

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
    x: Any,
    y: Any,
    side: int,
    steps: int = 150,
    batch_size: int = 64,
    step_size: float = 0.1,
    kappa: float = 5.0,
    generator: torch.Generator | None = None,
    device: Any = None,
) -> torch.Tensor:
    """Optimise one universal patch by signed-gradient descent on a clamped margin loss.

    Each step pastes the patch at a random place on a random mini-batch and lowers
    ``mean(max(z_y - max_{i!=y} z_i, -kappa))`` (the clamp stops already-fooled images from dominating);
    the step size decays linearly from ``step_size`` to a tenth of it.

    ``x`` (N, C, H, W) and ``y`` are tensors, or NumPy arrays (or anything NumPy-like that an integer
    array indexes, such as a view of some rows of a data set): each step takes only its mini-batch, moved
    to ``device``, so the training inputs need not be held as tensors. The mini-batch's gradient is
    summed over chunks of at most :data:`~roadworthy.attacks._losses.GRAD_BATCH_INPUT_BYTES` of inputs
    (27 images at 224 px), so memory follows the chunk, not ``batch_size``; the step is the same.
    """
    import torch

    forward = as_forward(forward)
    n, c, h, w = x.shape
    if torch.is_tensor(x):
        device, dtype = x.device, x.dtype
    else:
        device, dtype = device or "cpu", torch.float32
    chunk = grad_batch(x, batch_size)
    patch = torch.rand((c, side, side), generator=generator, dtype=dtype).to(device)
    for t in range(steps):
        b = torch.randint(0, n, (min(batch_size, n),), generator=generator)
        rows = torch.randint(0, h - side + 1, (len(b),), generator=generator).to(device)
        cols = torch.randint(0, w - side + 1, (len(b),), generator=generator).to(device)
        p = patch.detach().clone().requires_grad_(True)
        g = torch.zeros_like(p)
        for i in range(0, len(b), chunk):
            xb, yb = _take(x, b[i : i + chunk], device), _take(y, b[i : i + chunk], device)
            with torch.enable_grad():
                pasted = paste(xb, p, rows[i : i + chunk], cols[i : i + chunk])
                loss = margin(forward(pasted), yb).clamp_min(-kappa).sum() / len(b)
                (gi,) = torch.autograd.grad(loss, p, allow_unused=True)
            if gi is not None:
                g += gi
        lr = step_size * (1 - 0.9 * t / max(1, steps - 1))
        patch = (patch - lr * g.sign()).clamp(0, 1)
    return patch.detach()


def _take(a: Any, idx: torch.Tensor, device: Any) -> torch.Tensor:
    """Rows ``idx`` of a tensor or a NumPy-like array, as a tensor on ``device``."""
    import numpy as np
    import torch

    if torch.is_tensor(a):
        return a[idx.to(a.device)].to(device)
    rows = np.asarray(a[idx.numpy()])
    if rows.dtype.kind == "f":
        rows = rows.astype(np.float32, copy=False)
    return torch.from_numpy(np.ascontiguousarray(rows)).to(device)
