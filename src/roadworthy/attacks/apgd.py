"""Auto-PGD (Croce & Hein, "Reliable evaluation of adversarial robustness with an ensemble of diverse
parameter-free attacks", ICML 2020), untargeted, in L-inf or L2.

Threat model: white-box (the attacker has the model's input gradient), untargeted, a budget ``eps`` in
``norm`` (pixel units). PGD with momentum and a step size that adapts by itself: it starts at ``2 * eps``
and halves at fixed checkpoints whenever the loss stopped rising; after a halving the search restarts
from the best point. No step size to tune, so the number does not depend on a tuned step. With the
cross-entropy loss (APGD-CE) and the difference of logits ratio (APGD-DLR) it is half of AutoAttack.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from roadworthy.attacks._geometry import check_args, direction, per_sample, project, random_start
from roadworthy.attacks._inputs import as_forward, from_torch, to_torch
from roadworthy.attacks._losses import LOSSES, grad_batch, input_gradient

if TYPE_CHECKING:
    import torch


def apgd_checkpoints(steps: int) -> list[int]:
    """Iterations at which APGD may halve its step: ``p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)``."""
    p = [0.0, 0.22]
    while p[-1] < 1:
        p.append(p[-1] + max(p[-1] - p[-2] - 0.03, 0.06))
    marks = {math.ceil(q * steps - 1e-9) for q in p[1:]}  # the tolerance absorbs float error in p_j
    return sorted(m for m in marks if 0 < m < steps)


def apgd(
    model: Any,
    x: Any,
    y: Any,
    eps: Any = 8 / 255,
    steps: int = 100,
    norm: str = "linf",
    loss: str = "ce",
    restarts: int = 1,
    generator: torch.Generator | None = None,
    batch_size: int = 256,
    rho: float = 0.75,
    momentum: float = 0.75,
) -> Any:
    """Auto-PGD (Croce & Hein, "Reliable evaluation of adversarial robustness...", ICML 2020), untargeted.

    PGD with momentum ``0.75`` and a step size that starts at ``2 * eps`` and halves at the checkpoints of
    :func:`apgd_checkpoints` whenever the loss rose on fewer than ``rho`` of the steps since the last one,
    or neither the step nor the best loss changed; after a halving the search restarts from the best point.
    No step size to tune: with ``loss="dlr"`` it is half of the AutoAttack ensemble.

    Parameters
    ----------
    model
        A white-box roadworthy model (its ``forward_torch`` is used) or ``forward(x) -> logits`` on tensors.
    x, y
        Inputs in [0, 1] and their labels, NumPy or torch.
    eps
        Budget in ``norm`` (``linf`` or ``l2``), one number or one per input.
    loss
        ``ce`` (cross-entropy) or ``dlr`` (difference of logits ratio, needs >= 3 classes).

    Returns
    -------
    For each input the first misclassified iterate found, else the last iterate; always within the
    ``eps`` ball and [0, 1]; of the type of ``x``.
    """
    check_args(eps, norm, steps, restarts)
    if loss not in LOSSES:
        raise ValueError(f"`loss` must be 'ce' or 'dlr'. Got {loss!r} instead.")
    forward = as_forward(model)
    x, y, was_numpy = to_torch(model, x, y)
    x = x.detach()
    e_all = per_sample(eps, x)
    out = x.clone()
    checkpoints = set(apgd_checkpoints(steps))
    batch_size = grad_batch(x, batch_size)
    for i in range(0, len(x), batch_size):
        sl = slice(i, i + batch_size)
        out[sl] = _apgd_batch(
            forward,
            x[sl],
            y[sl],
            e_all[sl],
            steps,
            norm,
            loss,
            restarts,
            generator,
            checkpoints,
            rho,
            momentum,
        )
    return from_torch(out, was_numpy)


def _apgd_batch(forward, x0, y, eps, steps, norm, loss, restarts, generator, checkpoints, rho, momentum):  # type: ignore[no-untyped-def]
    import torch

    best_adv = x0.clone()
    fooled = torch.zeros(len(x0), dtype=torch.bool, device=x0.device)
    view = (-1, *([1] * (x0.ndim - 1)))
    for r in range(restarts):
        act = torch.nonzero(~fooled).flatten()
        if len(act) == 0:
            break
        s: dict[str, Any] = {"act": act, "x0": x0[act], "y": y[act], "eps": eps[act]}
        s["x"] = random_start(s["x0"], s["eps"], norm, generator)
        s["grad"], logits, s["loss"] = input_gradient(forward, s["x"], s["y"], loss)
        s["hit"] = logits.argmax(dim=1) != s["y"]
        s["x_prev"] = s["x"].clone()
        s["x_max"], s["grad_max"], s["loss_max"] = s["x"].clone(), s["grad"].clone(), s["loss"].clone()
        s["eta"] = 2 * s["eps"].reshape(-1).clone()
        s["n_incr"] = torch.zeros(len(act), device=x0.device)
        s["loss_max_ck"] = s["loss_max"].clone()
        s["reduced_ck"] = torch.ones(len(act), dtype=torch.bool, device=x0.device)
        last_ck = 0
        for k in range(steps):
            # record and drop the inputs already fooled
            hit = s["hit"]
            if hit.any():
                best_adv[s["act"][hit]] = s["x"][hit]
                fooled[s["act"][hit]] = True
                s = {key: v[~hit] for key, v in s.items()}
                if len(s["act"]) == 0:
                    break
            eta = s["eta"].reshape(view)
            a = momentum if k > 0 else 1.0
            z = project(s["x"] + eta * direction(s["grad"], norm), s["x0"], s["eps"], norm)
            x_new = project(
                s["x"] + a * (z - s["x"]) + (1 - a) * (s["x"] - s["x_prev"]), s["x0"], s["eps"], norm
            )
            s["x_prev"] = s["x"]
            s["x"] = x_new
            s["grad"], logits, new_loss = input_gradient(forward, s["x"], s["y"], loss)
            s["hit"] = logits.argmax(dim=1) != s["y"]
            s["n_incr"] = s["n_incr"] + (new_loss > s["loss"]).to(s["n_incr"].dtype)
            s["loss"] = new_loss
            better = new_loss > s["loss_max"]
            s["x_max"][better] = s["x"][better]
            s["grad_max"][better] = s["grad"][better]
            s["loss_max"] = torch.where(better, new_loss, s["loss_max"])
            if (k + 1) in checkpoints:
                h = (k + 1) - last_ck
                oscillating = s["n_incr"] <= rho * h
                stalled = ~s["reduced_ck"] & (s["loss_max_ck"] >= s["loss_max"])
                reduce = oscillating | stalled
                s["reduced_ck"] = reduce
                s["loss_max_ck"] = s["loss_max"].clone()
                s["eta"] = torch.where(reduce, s["eta"] / 2, s["eta"])
                s["x"][reduce] = s["x_max"][reduce]
                s["grad"][reduce] = s["grad_max"][reduce]
                s["n_incr"] = torch.zeros_like(s["n_incr"])
                last_ck = k + 1
        if len(s["act"]):
            hit = s["hit"]
            fooled[s["act"][hit]] = True
            take = hit | (r == restarts - 1)
            best_adv[s["act"][take]] = s["x"][take]
    return best_adv
