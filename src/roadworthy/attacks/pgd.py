"""Projected Gradient Descent (Madry, Makelov, Schmidt, Tsipras, Vladu, "Towards Deep Learning Models
Resistant to Adversarial Attacks", ICLR 2018), untargeted, in L-inf or L2.

Threat model: white-box (the attacker has the model's input gradient), untargeted, a budget ``eps`` in
``norm`` (pixel units). Each restart starts at a uniform random point of the ball and takes ``steps``
steps::

    x <- P(x + step_size * dir(grad_x loss(f(x), y)))

where ``dir`` is the sign (L-inf) or the normalised gradient (L2) and ``P`` projects onto the ball and
[0, 1]. For every input the attack keeps the first misclassified iterate (any point in the ball is a valid
adversarial input); inputs already fooled leave later steps and restarts, which saves work without
weakening the attack.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from roadworthy.attacks._geometry import check_args, direction, per_sample, project, random_start
from roadworthy.attacks._inputs import as_forward, from_torch, to_torch
from roadworthy.attacks._losses import grad_batch, input_gradient

if TYPE_CHECKING:
    import torch


def pgd(
    model: Any,
    x: Any,
    y: Any,
    eps: Any = 8 / 255,
    steps: int = 10,
    step_size: float | torch.Tensor | None = None,
    norm: str = "linf",
    restarts: int = 1,
    random_start: bool = True,
    loss: str = "ce",
    generator: torch.Generator | None = None,
    batch_size: int = 256,
) -> Any:
    """PGD with ``steps`` steps per restart; ``step_size`` defaults to ``2.5 * eps / steps``.

    Parameters
    ----------
    model
        A white-box roadworthy model (its ``forward_torch`` is used) or ``forward(x) -> logits`` on tensors.
    x, y
        Inputs in [0, 1] and their labels, NumPy or torch.
    eps
        Budget in ``norm`` (``linf`` or ``l2``), one number or one per input.
    restarts
        Restarts only attack the inputs earlier restarts could not fool. Cost per restart: ``steps``
        forward+backward passes on the inputs not yet fooled, plus one forward pass to check the last
        iterate before the next restart (none after the last restart: the caller classifies it).
    loss
        ``ce`` (cross-entropy) or ``dlr`` (difference of logits ratio).
    generator
        Seeds the random starts.

    Returns
    -------
    For each input the first misclassified iterate found, else the last iterate; always within the
    ``eps`` ball and [0, 1]; of the type of ``x``.
    """
    check_args(eps, norm, steps, restarts)
    forward = as_forward(model)
    xt, yt, was_numpy = to_torch(model, x, y)
    xt = xt.detach()
    e_all = per_sample(eps, xt)
    s_all = 2.5 * e_all / steps if step_size is None else per_sample(step_size, xt)
    out = xt.clone()
    batch_size = grad_batch(xt, batch_size)
    for i in range(0, len(xt), batch_size):
        sl = slice(i, i + batch_size)
        out[sl] = _pgd_batch(
            forward,
            xt[sl],
            yt[sl],
            e_all[sl],
            s_all[sl],
            steps,
            norm,
            restarts,
            random_start,
            loss,
            generator,
        )
    return from_torch(out, was_numpy)


def _pgd_batch(forward, x0, y, eps, step, steps, norm, restarts, start_random, loss, generator):  # type: ignore[no-untyped-def]
    import torch

    best = x0.clone()
    fooled = torch.zeros(len(x0), dtype=torch.bool, device=x0.device)
    for r in range(restarts):
        act = torch.nonzero(~fooled).flatten()
        if len(act) == 0:
            break
        xa0, ya, ea, sa = x0[act], y[act], eps[act], step[act]
        cur = random_start(xa0, ea, norm, generator) if start_random else xa0.clone()
        for _ in range(steps):
            g, logits, _ = input_gradient(forward, cur, ya, loss)
            hit = logits.argmax(dim=1) != ya
            if hit.any():
                best[act[hit]] = cur[hit]
                fooled[act[hit]] = True
                keep = ~hit
                act, xa0, ya, ea, sa, cur, g = (
                    act[keep],
                    xa0[keep],
                    ya[keep],
                    ea[keep],
                    sa[keep],
                    cur[keep],
                    g[keep],
                )
                if len(act) == 0:
                    break
            cur = project(cur + sa * direction(g, norm), xa0, ea, norm)
        if len(act) and r == restarts - 1:
            best[act] = cur  # the last iterate: whoever uses it classifies it anyway
        elif len(act):
            with torch.no_grad():  # decides which inputs the next restart attacks
                hit = forward(cur).argmax(dim=1) != ya
            fooled[act[hit]] = True
            best[act[hit]] = cur[hit]
    return best
