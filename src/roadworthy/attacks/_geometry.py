"""Perturbation budgets as geometry: per-sample budgets, projection onto a ball, steepest directions, random starts.

Everything works on torch tensors in pixel space [0, 1] with one budget per sample; ``norm`` is ``linf``
or ``l2``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

NORMS = ("linf", "l2")


def per_sample(v: float | torch.Tensor | np.ndarray, like: torch.Tensor) -> torch.Tensor:
    """A budget as a tensor broadcastable against ``like`` (one value per sample)."""
    import torch

    t = torch.as_tensor(np.asarray(v, dtype=np.float32) if not isinstance(v, torch.Tensor) else v)
    t = t.to(device=like.device, dtype=like.dtype)
    if t.ndim == 0:
        t = t.expand(like.shape[0])
    return t.reshape(-1, *([1] * (like.ndim - 1)))


def l2_norm(d: torch.Tensor) -> torch.Tensor:
    """Per-sample Euclidean norm, shaped to broadcast against ``d``."""
    return d.flatten(1).norm(dim=1).reshape(-1, *([1] * (d.ndim - 1)))


def project(x_adv: torch.Tensor, x0: torch.Tensor, eps: torch.Tensor, norm: str) -> torch.Tensor:
    """Project onto the ``eps`` ball around ``x0`` in ``norm``, then onto [0, 1] (which keeps it in the ball)."""
    import torch

    d = x_adv - x0
    d = torch.clamp(d, -eps, eps) if norm == "linf" else d * torch.clamp(eps / (l2_norm(d) + 1e-12), max=1.0)
    return (x0 + d).clamp(0.0, 1.0)


def direction(g: torch.Tensor, norm: str) -> torch.Tensor:
    """Steepest-ascent direction of unit size in ``norm``: the sign for L-inf, ``g/||g||`` for L2."""
    if norm == "linf":
        return g.sign()
    return g / (l2_norm(g) + 1e-12)


def random_start(
    x0: torch.Tensor, eps: torch.Tensor, norm: str, generator: torch.Generator | None
) -> torch.Tensor:
    """A uniform random point of the ``eps`` ball (L-inf), or a random direction at a uniform radius (L2)."""
    import torch

    if norm == "linf":
        u = torch.rand(x0.shape, generator=generator, dtype=x0.dtype).to(x0.device)
        return project(x0 + (2 * u - 1) * eps, x0, eps, norm)
    g = torch.randn(x0.shape, generator=generator, dtype=x0.dtype).to(x0.device)
    r = torch.rand((x0.shape[0],), generator=generator, dtype=x0.dtype).to(x0.device)
    d = g / (l2_norm(g) + 1e-12) * eps * r.reshape(-1, *([1] * (x0.ndim - 1)))
    return project(x0 + d, x0, eps, norm)


def check_args(eps: Any, norm: str, steps: int = 1, restarts: int = 1) -> None:
    """Raise ``ValueError`` for an unknown norm, a negative or non-finite budget, or no steps."""
    if norm not in NORMS:
        raise ValueError(f"`norm` must be 'linf' or 'l2'. Got {norm!r} instead.")
    e = np.asarray(eps.detach().cpu() if hasattr(eps, "detach") else eps, dtype=np.float64)
    if not (np.isfinite(e).all() and (e >= 0).all()):
        raise ValueError(f"`eps` must be finite and >= 0. Got {e.min() if e.size else e} instead.")
    if steps < 1:
        raise ValueError(f"`steps` must be >= 1. Got {steps} instead.")
    if restarts < 1:
        raise ValueError(f"`restarts` must be >= 1. Got {restarts} instead.")


def cat(parts: list[torch.Tensor], like: torch.Tensor) -> torch.Tensor:
    """``torch.cat(parts)``, or a copy of ``like`` when there are none."""
    import torch

    return torch.cat(parts) if parts else like.clone()
