"""Minimum-norm attacks: Fast Minimum-Norm (Pintor, Roli, Brendel, Biggio, "Fast Minimum-norm Adversarial
Attacks through Adaptive Norm Constraints", NeurIPS 2021), untargeted, in L-inf or L2, and Decoupled
Direction and Norm (Rony, Hafemann, Oliveira, Ben Ayed, Sabourin, Granger, "Decoupling Direction and Norm
for Efficient Gradient-Based L2 Adversarial Attacks and Defenses", CVPR 2019) in L2 (:func:`ddn`);
:func:`min_norm` picks FMN for L-inf and DDN for L2.

Threat model: white-box (the attacker has the model's input gradient), untargeted, no fixed budget: for
every input the attack looks for the *smallest* perturbation (in ``norm``, pixel units) that changes the
prediction. One run therefore gives the whole robustness curve: the robust accuracy at any strength ``eps``
is the share of inputs classified correctly whose smallest adversarial perturbation is larger than
``eps`` (:func:`robust_curve`), where a fixed-budget attack such as PGD needs one run per strength.

Each of ``steps`` steps (``k = 0 .. steps-1``) does, per input::

    m      = z_y - max_{j != y} z_j            at x0 + delta   (negative: misclassified)
    if m < 0:      keep delta if its norm is the smallest so far;  eps <- min(eps, best) * (1 - gamma_k)
    elif found:    eps <- eps * (1 + gamma_k)                       (adversarial before: widen again)
    else:          eps <- ||delta|| + |m| / ||grad m||_dual          (linear guess of the distance to the boundary)
    delta <- P_eps(delta - alpha_k * eps * dir(grad m)),   then x0 + delta clipped to [0, 1]

``P_eps`` projects onto the ``eps`` ball, ``dir`` is the steepest unit direction of ``norm`` (the sign for
L-inf, ``g/||g||_2`` for L2), and ``gamma_k`` (from ``gamma_init`` to ``gamma_final``) and ``alpha_k``
(from ``alpha_init`` to ``alpha_final``) follow a cosine schedule, as in the paper. The paper takes steps
of absolute length ``alpha_k``; here they are relative to the current ``eps``, which makes one default
work for any image size and both norms (an L-inf step of ``alpha_k * eps`` per pixel moves to the edge of
the ball in one step when ``alpha_k = 1``).

An input leaves the search once its best norm is at or below ``settled_at`` (for a curve: the smallest
strength of the sweep, below which a smaller norm changes nothing), so a model that breaks easily costs
few passes; inputs misclassified to begin with leave after their first pass.

The reported norms are upper bounds on each input's true minimal adversarial norm (a stronger attack can
only lower them), so the curve is an upper bound on true robust accuracy, like PGD's.

Why DDN for L2: FMN descends the *margin* to the runner-up class, so from the clean input it follows one
path to one stretch of the boundary and settles there: on the demo road-sign CNN and a digits CNN, 4-6% of
the inputs kept an L2 norm 1.0-1.3x above the strength at which PGD with random starts (100 steps x 5)
flips them, and neither 4x the steps nor random starting points moved FMN off that result. DDN ascends the
*cross-entropy*, whose gradient pulls towards every wrong class by its probability (as PGD's does), and
keeps the perturbation on a sphere whose radius shrinks after a success and grows after a failure: on the
same inputs, with the same number of passes, its norms reach the strength PGD needs for all but one input
(``benchmarks/results/curve.md``). DDN has no L-inf form; in L-inf FMN already agrees with PGD.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from roadworthy.attacks._geometry import check_args, direction, l2_norm
from roadworthy.attacks._inputs import as_forward, to_torch
from roadworthy.attacks._losses import grad_batch, margin

if TYPE_CHECKING:
    import torch


@dataclass
class MinNorm:
    """What :func:`fmn` found, per input (NumPy arrays, or tensors when given tensors)."""

    adv: Any  #: the smallest adversarial input found, else the input itself
    norms: Any  #: its perturbation's norm in ``norm`` (inf where no adversarial input was found)
    norm: str  #: ``linf`` or ``l2``

    def broken(self, eps: float) -> np.ndarray:
        """Per input: an adversarial input was found within ``eps``."""
        return np.asarray(_numpy(self.norms)) <= eps


def fmn(
    model: Any,
    x: Any,
    y: Any,
    norm: str = "linf",
    steps: int = 100,
    alpha_init: float = 1.0,
    alpha_final: float | None = None,
    gamma_init: float = 0.05,
    gamma_final: float = 0.001,
    batch_size: int = 256,
    settled_at: float = 0.0,
) -> MinNorm:
    """Smallest adversarial perturbation per input by Fast Minimum-Norm (Pintor et al., NeurIPS 2021).

    Parameters
    ----------
    model
        A white-box roadworthy model (its ``forward_torch`` is used) or ``forward(x) -> logits`` on tensors.
    x, y
        Inputs in [0, 1] and their labels, NumPy or torch. Inputs already misclassified get norm 0.
    norm
        ``linf`` or ``l2``, in pixel units.
    steps
        Each step costs one forward and one backward pass per input still searching: the attack keeps
        shrinking the perturbation after the first success, until the input is *settled* (below).
    alpha_init, alpha_final
        Step length relative to the current ``eps``, cosine-annealed; ``alpha_final`` defaults to
        ``alpha_init / 100``.
    gamma_init, gamma_final
        How fast ``eps`` shrinks after a success (or grows after a failure), cosine-annealed.
    settled_at
        An input leaves the search (no more model passes) once its best norm is at or below this: for a
        robustness curve, the smallest strength of the sweep, where the input counts as broken at every
        strength whatever a longer search would find. Its norm is then an upper bound at or below
        ``settled_at``, not the smallest the search could reach. ``0`` (default): only inputs
        misclassified to begin with (norm 0) leave, after their first pass.

    Returns
    -------
    A :class:`MinNorm`: per input the smallest adversarial input found and its norm (inf: none found),
    NumPy or torch like ``x``. Every returned input lies in [0, 1]; the norms are measured on the
    returned inputs, so ``norm(adv - x) == norms`` wherever finite.
    """
    check_args(0.0, norm, steps)
    alpha_final = alpha_init / 100 if alpha_final is None else alpha_final
    return _in_batches(
        model, x, y, norm, batch_size,
        lambda forward, xb, yb: _fmn_batch(
            forward, xb, yb, norm, steps, alpha_init, alpha_final, gamma_init, gamma_final, settled_at
        ),
    )  # fmt: skip


def _in_batches(model: Any, x: Any, y: Any, norm: str, batch_size: int, run: Any) -> MinNorm:
    """``run(forward, x_batch, y_batch) -> (adv, norms)`` over gradient-sized batches, as one :class:`MinNorm`."""
    import torch

    forward = as_forward(model)
    xt, yt, was_numpy = to_torch(model, x, y)
    xt = xt.detach()
    adv = xt.clone()
    norms = torch.full((len(xt),), math.inf, dtype=torch.float64, device=xt.device)
    batch_size = grad_batch(xt, batch_size)
    for i in range(0, len(xt), batch_size):
        sl = slice(i, i + batch_size)
        adv[sl], norms[sl] = run(forward, xt[sl], yt[sl])
    if was_numpy:
        return MinNorm(adv.cpu().numpy(), norms.cpu().numpy(), norm)
    return MinNorm(adv, norms, norm)


def ddn(
    model: Any,
    x: Any,
    y: Any,
    steps: int = 100,
    alpha_init: float = 1.0,
    alpha_final: float | None = None,
    gamma_init: float = 0.05,
    gamma_final: float = 0.001,
    batch_size: int = 256,
    settled_at: float = 0.0,
    init_norm: float | None = None,
) -> MinNorm:
    """Smallest L2 adversarial perturbation per input by Decoupled Direction and Norm (Rony et al., CVPR 2019).

    The first pass reads each input's margin ``m = z_y - max_{j != y} z_j`` and its gradient at the clean
    input: inputs misclassified already (``m < 0``) get norm 0, and the others start from FMN's linear
    guess of the distance to the boundary, ``eps = |m| / ||grad m||_2`` (Pintor et al. 2021; DDN's fixed
    start of 1 suits one image size only). Each of the other ``steps - 1`` steps (``k = 1 ..``), per
    input::

        adversarial now:  keep delta if its norm is the smallest so far
        delta <- delta + alpha_k * eps * grad CE / ||grad CE||_2       (ascend the cross-entropy)
        eps   <- eps * (1 - gamma_k)  if adversarial now
                 eps * (1 + gamma_k)  if not, but adversarial at an earlier step
                 eps * (1 + gamma_k)^j  if never adversarial yet, after j failed steps in a row
        delta <- eps * delta / ||delta||_2,  then x0 + delta clipped to [0, 1]

    Until its first success an input's sphere widens faster with every failed step (an exponential search
    on the radius): the linear guess can be short many times over where the model is far from linear, and
    at ``1 + gamma_k`` per step the sphere grows only about 3.5x in 50 steps (a guess 10x short would end
    with nothing found, and the huge-strength self-check would blame the model); a close guess is left
    almost as it is (5% after one failure), and a guess 100x short is reached within about 20 steps.

    The direction (the cross-entropy's ascent) and the norm (``eps``, set by success or failure alone) are
    decoupled: the perturbation always sits on the sphere of radius ``eps`` and slides along it towards
    the boundary while the sphere closes in. ``alpha_k`` (``alpha_init`` to ``alpha_final``, by default
    1 to 0.01 as in the paper) and ``gamma_k`` (``gamma_init`` to ``gamma_final``) follow FMN's cosine
    schedule: the paper's fixed ``gamma = 0.05`` leaves the best norm up to 5% above the boundary, the
    annealed one ends at 0.1%. Steps are relative to ``eps``, as in :func:`fmn`, so one default fits
    every image size.

    Parameters
    ----------
    model
        A white-box roadworthy model (its ``forward_torch`` is used) or ``forward(x) -> logits`` on tensors.
    x, y
        Inputs in [0, 1] and their labels, NumPy or torch.
    steps
        Model passes (forward and backward) per input still searching, the first pass included.
    alpha_init, alpha_final
        Step length relative to ``eps``, cosine-annealed; ``alpha_final`` defaults to ``alpha_init / 100``.
    gamma_init, gamma_final
        How fast ``eps`` shrinks after a success (or grows after a failure), cosine-annealed.
    settled_at
        An input leaves the search once its best norm is at or below this (see :func:`fmn`).
    init_norm
        The starting radius of every input (the paper's ``init_norm``, 1 there); ``None`` (default): the
        linear guess above, per input.

    Returns
    -------
    A :class:`MinNorm` in ``l2``, as :func:`fmn` returns it.
    """

    check_args(0.0, "l2", steps)
    alpha_final = alpha_init / 100 if alpha_final is None else alpha_final
    return _in_batches(
        model, x, y, "l2", batch_size,
        lambda forward, xb, yb: _ddn_batch(
            forward, xb, yb, steps, alpha_init, alpha_final, gamma_init, gamma_final, settled_at, init_norm
        ),
    )  # fmt: skip


def min_norm(model: Any, x: Any, y: Any, norm: str, steps: int, settled_at: float = 0.0) -> MinNorm:
    """The minimum-norm attack of ``norm``: :func:`fmn` in L-inf, :func:`ddn` in L2 (why: module docstring),
    with ``steps`` passes per input still searching and ``settled_at`` as there."""
    check_args(0.0, norm, steps)
    if norm == "l2":
        return ddn(model, x, y, steps=steps, settled_at=settled_at)
    return fmn(model, x, y, norm, steps=steps, settled_at=settled_at)


def robust_curve(norms: Any, correct: Any, eps: Any) -> np.ndarray:
    """Robust accuracy at each strength of ``eps``: the share of inputs correct and not broken within it.

    ``norms`` are smallest adversarial norms per input (inf: never broken), ``correct`` says which inputs
    the model gets right unattacked (the share is over all of them). Non-increasing in ``eps`` by
    construction.
    """
    n = np.asarray(_numpy(norms), dtype=np.float64)
    ok = np.asarray(_numpy(correct), dtype=bool)
    if len(n) == 0:
        return np.full(len(np.atleast_1d(eps)), math.nan)
    return np.array([float((ok & ~(n <= e)).mean()) for e in np.atleast_1d(eps)])


def _numpy(v: Any) -> Any:
    return v.detach().cpu().numpy() if hasattr(v, "detach") else v


def _norm_of(d: torch.Tensor, norm: str) -> torch.Tensor:
    flat = d.flatten(1)
    return flat.abs().amax(dim=1) if norm == "linf" else flat.norm(dim=1)


def _cosine(k: int, steps: int, start: float, end: float) -> float:
    return end + 0.5 * (start - end) * (1 + math.cos(math.pi * k / steps))


def _fmn_batch(forward, x0, y, norm, steps, alpha_init, alpha_final, gamma_init, gamma_final, settled_at):  # type: ignore[no-untyped-def]
    import torch

    n = len(x0)
    view = (-1, *([1] * (x0.ndim - 1)))
    delta = torch.zeros_like(x0)
    best = torch.full((n,), math.inf, dtype=torch.float64, device=x0.device)
    best_adv = x0.clone()
    eps = torch.full((n,), math.inf, dtype=torch.float64, device=x0.device)
    found = torch.zeros(n, dtype=torch.bool, device=x0.device)
    # the largest perturbation the box allows: the attack never needs a bigger ball
    worst = _norm_of(torch.maximum(x0, 1 - x0), norm).double()
    # the rows still searching: only they reach the model (a settled input costs nothing more)
    rows = torch.arange(n, device=x0.device)
    for k in range(steps):
        if len(rows) == 0:
            break
        xa, ya = x0[rows], y[rows]
        xr = (xa + delta[rows]).detach().requires_grad_(True)
        with torch.enable_grad():
            logits = forward(xr)
            m = margin(logits, ya)
            (g,) = torch.autograd.grad(m.sum(), xr, allow_unused=True)
        g = torch.zeros_like(xr) if g is None else g.detach()
        m = m.detach()
        d = (xr.detach() - xa).detach()
        dn = _norm_of(d, norm).double()
        is_adv = m < 0
        b = best[rows]
        smaller = is_adv & (dn < b)
        b = torch.where(smaller, dn, b)
        best[rows] = b
        best_adv[rows[smaller]] = xr.detach()[smaller]
        f = found[rows] | is_adv
        found[rows] = f
        gamma = _cosine(k, steps, gamma_init, gamma_final)
        alpha = _cosine(k, steps, alpha_init, alpha_final)
        dual = g.flatten(1).abs().sum(dim=1) if norm == "linf" else g.flatten(1).norm(dim=1)
        to_boundary = dn + m.abs() / dual.double().clamp(min=1e-12)
        e_rows = eps[rows]
        e_rows = torch.where(
            is_adv,
            torch.minimum(e_rows, b) * (1 - gamma),
            torch.where(f, e_rows * (1 + gamma), torch.maximum(to_boundary, 2 * dn)),
        )
        e_rows = torch.minimum(e_rows, worst[rows])
        eps[rows] = e_rows
        e = e_rows.to(x0.dtype).reshape(view)
        # descend the margin: step against its gradient, relative to the current ball
        d = d - alpha * e * direction(g, norm)
        if norm == "linf":
            d = torch.maximum(torch.minimum(d, e), -e)
        else:
            d = d * torch.clamp(e / (l2_norm(d) + 1e-12), max=1.0)
        delta[rows] = (xa + d).clamp(0.0, 1.0) - xa
        rows = rows[b > settled_at]
    return best_adv, best


def _ddn_batch(
    forward, x0, y, steps, alpha_init, alpha_final, gamma_init, gamma_final, settled_at, init_norm
):  # type: ignore[no-untyped-def]
    import torch

    from roadworthy.attacks._losses import ce_loss

    n = len(x0)
    view = (-1, *([1] * (x0.ndim - 1)))
    best = torch.full((n,), math.inf, dtype=torch.float64, device=x0.device)
    best_adv = x0.clone()
    worst = _norm_of(torch.maximum(x0, 1 - x0), "l2").double()
    # the first pass: the margin and its gradient at the clean input give the misclassified inputs and
    # every other input's starting radius, the linear guess of its distance to the boundary
    xr = x0.detach().requires_grad_(True)
    with torch.enable_grad():
        m = margin(forward(xr), y)
        (g,) = torch.autograd.grad(m.sum(), xr, allow_unused=True)
    g = torch.zeros_like(xr) if g is None else g.detach()
    m = m.detach()
    best = torch.where(m < 0, torch.zeros_like(best), best)
    guess = m.abs() / g.flatten(1).norm(dim=1).double().clamp(min=1e-12)
    eps = torch.minimum(guess if init_norm is None else torch.full_like(guess, float(init_norm)), worst)
    found = m < 0
    fails = torch.zeros(n, dtype=torch.float64, device=x0.device)  # failed steps in a row, before a success
    delta = torch.zeros_like(x0)
    rows = torch.arange(n, device=x0.device)[best > settled_at]
    for k in range(1, steps):
        if len(rows) == 0:
            break
        xa, ya = x0[rows], y[rows]
        xr = (xa + delta[rows]).detach().requires_grad_(True)
        with torch.enable_grad():
            logits = forward(xr)
            (g,) = torch.autograd.grad(ce_loss(logits, ya).sum(), xr, allow_unused=True)
        g = torch.zeros_like(xr) if g is None else g.detach()
        d = (xr.detach() - xa).detach()
        dn = _norm_of(d, "l2").double()
        is_adv = margin(logits.detach(), ya) < 0
        b = best[rows]
        smaller = is_adv & (dn < b)
        b = torch.where(smaller, dn, b)
        best[rows] = b
        best_adv[rows[smaller]] = xr.detach()[smaller]
        f = found[rows] | is_adv
        found[rows] = f
        gamma = _cosine(k - 1, steps - 1, gamma_init, gamma_final)
        alpha = _cosine(k - 1, steps - 1, alpha_init, alpha_final)
        e_rows = eps[rows]
        # the direction: ascend the cross-entropy by a step relative to the current sphere
        d = d + alpha * e_rows.to(x0.dtype).reshape(view) * direction(g, "l2")
        # the norm, decoupled: the sphere closes in after a success and widens after a failure
        j = torch.where(f, torch.zeros_like(e_rows), fails[rows] + 1)
        fails[rows] = j
        grow = torch.where(f, e_rows * (1 + gamma), e_rows * (1 + gamma) ** j)
        e_rows = torch.minimum(torch.where(is_adv, e_rows * (1 - gamma), grow), worst[rows])
        eps[rows] = e_rows
        d = d * (e_rows.to(x0.dtype).reshape(view) / (l2_norm(d) + 1e-12))
        delta[rows] = (xa + d).clamp(0.0, 1.0) - xa
        rows = rows[b > settled_at]
    return best_adv, best
