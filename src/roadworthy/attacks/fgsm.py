"""Fast Gradient Sign Method (Goodfellow, Shlens, Szegedy, "Explaining and Harnessing Adversarial
Examples", ICLR 2015).

Threat model: white-box (the attacker has the model's input gradient), untargeted, an L-inf budget ``eps``
in pixel units. One step along the sign of the cross-entropy gradient at the clean input::

    x_adv = clip(x + eps * sign(grad_x CE(f(x), y)), 0, 1)

Cheap, and only a weak lower bound on what an attacker can do: a model that resists FGSM but not PGD is
not robust. Because the direction does not depend on ``eps``, :func:`gradient_sign` can be computed once
and :func:`fgsm_step` applied at every strength of a sweep.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from roadworthy.attacks._geometry import cat, check_args, per_sample, project
from roadworthy.attacks._inputs import Forward, as_forward, from_torch, to_torch
from roadworthy.attacks._losses import grad_batch, input_gradient

if TYPE_CHECKING:
    import torch


def gradient_sign(forward: Forward, x: torch.Tensor, y: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """``sign(grad_x CE(f(x), y))`` per input, in batches of ``batch_size`` (fewer for large inputs:
    :func:`~roadworthy.attacks._losses.grad_batch`)."""
    batch_size = grad_batch(x, batch_size)
    signs = [
        input_gradient(forward, x[i : i + batch_size], y[i : i + batch_size])[0].sign()
        for i in range(0, len(x), batch_size)
    ]
    return cat(signs, x)


def fgsm_step(x: torch.Tensor, sign: torch.Tensor, eps: Any) -> torch.Tensor:
    """``clip(x + eps * sign, 0, 1)`` with one ``eps`` per input (or one for all)."""
    e = per_sample(eps, x)
    return project(x + e * sign, x, e, "linf")


def fgsm(model: Any, x: Any, y: Any, eps: Any = 8 / 255, batch_size: int = 256) -> Any:
    """One FGSM step of size ``eps`` (L-inf) on every input.

    Parameters
    ----------
    model
        A white-box roadworthy model (its ``forward_torch`` is used) or ``forward(x) -> logits`` on tensors.
    x, y
        Inputs in [0, 1] (NCHW for images) and their labels, NumPy or torch.
    eps
        L-inf budget in pixel units (8/255: eight grey levels), one number or one per input.

    Returns
    -------
    The adversarial inputs, inside the ``eps`` ball and [0, 1], of the type of ``x``.
    """
    check_args(eps, "linf")
    forward = as_forward(model)
    xt, yt, was_numpy = to_torch(model, x, y)
    return from_torch(fgsm_step(xt, gradient_sign(forward, xt, yt, batch_size), eps), was_numpy)
