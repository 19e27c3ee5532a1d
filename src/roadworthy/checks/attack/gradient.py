"""White-box gradient attacks: FGSM, PGD (L-inf and L2), APGD with the CE and DLR losses.

Each attack is a pure function on torch tensors in pixel space [0, 1]:
``forward(x) -> logits`` (differentiable; the adapter applies the model's normalisation), inputs ``x``,
labels ``y``, a budget ``eps`` (a number, or one per sample) and a ``torch.Generator`` for the random
start. They return adversarial inputs inside the ``eps`` ball and [0, 1]. For every input the attack keeps
the first iterate that is misclassified (any point in the ball is a valid adversarial input), and inputs
already fooled are dropped from later steps and restarts, which saves work without weakening the attack.

The losses are computed in float64: a confident, healthy float32 model otherwise saturates the softmax,
its cross-entropy gradient becomes exactly zero and the attack stalls (a false sign of robustness).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from roadworthy.checks.attack import _common as common
from roadworthy.checks.attack import trust
from roadworthy.checks.base import Check, Context, Outcome, Requires, register
from roadworthy.errors import InvalidInputError

if TYPE_CHECKING:
    import torch

    from roadworthy.results import CheckResult

Forward = Callable[["torch.Tensor"], "torch.Tensor"]
NORMS = ("linf", "l2")


# ---------------------------------------------------------------------------------------------- losses


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
    import math as _m

    z = logits.double()
    zy = z.gather(1, y[:, None])[:, 0]
    return zy - z.scatter(1, y[:, None], -_m.inf).max(dim=1).values


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


# ---------------------------------------------------------------------------------------------- geometry


def _per_sample(v: float | torch.Tensor | np.ndarray, like: torch.Tensor) -> torch.Tensor:
    """A budget as a tensor broadcastable against ``like`` (one value per sample)."""
    import torch

    t = torch.as_tensor(np.asarray(v, dtype=np.float32) if not isinstance(v, torch.Tensor) else v)
    t = t.to(device=like.device, dtype=like.dtype)
    if t.ndim == 0:
        t = t.expand(like.shape[0])
    return t.reshape(-1, *([1] * (like.ndim - 1)))


def _norm(d: torch.Tensor) -> torch.Tensor:
    return d.flatten(1).norm(dim=1).reshape(-1, *([1] * (d.ndim - 1)))


def project(x_adv: torch.Tensor, x0: torch.Tensor, eps: torch.Tensor, norm: str) -> torch.Tensor:
    """Project onto the ``eps`` ball around ``x0`` in ``norm``, then onto [0, 1] (which keeps it in the ball)."""
    import torch

    d = x_adv - x0
    d = torch.clamp(d, -eps, eps) if norm == "linf" else d * torch.clamp(eps / (_norm(d) + 1e-12), max=1.0)
    return (x0 + d).clamp(0.0, 1.0)


def _direction(g: torch.Tensor, norm: str) -> torch.Tensor:
    """Steepest-ascent direction of unit size in ``norm``: the sign for L-inf, ``g/||g||`` for L2."""
    if norm == "linf":
        return g.sign()
    return g / (_norm(g) + 1e-12)


def _random_start(
    x0: torch.Tensor, eps: torch.Tensor, norm: str, generator: torch.Generator | None
) -> torch.Tensor:
    import torch

    if norm == "linf":
        u = torch.rand(x0.shape, generator=generator, dtype=x0.dtype).to(x0.device)
        return project(x0 + (2 * u - 1) * eps, x0, eps, norm)
    g = torch.randn(x0.shape, generator=generator, dtype=x0.dtype).to(x0.device)
    r = torch.rand((x0.shape[0],), generator=generator, dtype=x0.dtype).to(x0.device)
    d = g / (_norm(g) + 1e-12) * eps * r.reshape(-1, *([1] * (x0.ndim - 1)))
    return project(x0 + d, x0, eps, norm)


def _check_args(eps: Any, norm: str, steps: int = 1, restarts: int = 1) -> None:
    if norm not in NORMS:
        raise ValueError(f"`norm` must be 'linf' or 'l2'. Got {norm!r} instead.")
    e = np.asarray(eps.detach().cpu() if hasattr(eps, "detach") else eps, dtype=np.float64)
    if not (np.isfinite(e).all() and (e >= 0).all()):
        raise ValueError(f"`eps` must be finite and >= 0. Got {e.min() if e.size else e} instead.")
    if steps < 1:
        raise ValueError(f"`steps` must be >= 1. Got {steps} instead.")
    if restarts < 1:
        raise ValueError(f"`restarts` must be >= 1. Got {restarts} instead.")


# ---------------------------------------------------------------------------------------------- attacks


def fgsm(
    forward: Forward, x: torch.Tensor, y: torch.Tensor, eps: float | torch.Tensor, batch_size: int = 256
) -> torch.Tensor:
    """Fast Gradient Sign Method (Goodfellow, Shlens, Szegedy, ICLR 2015): one L-inf step of size ``eps``.

    ``x_adv = clip(x + eps * sign(grad_x CE(f(x), y)), 0, 1)``.
    """
    _check_args(eps, "linf")
    out = []
    e_all = _per_sample(eps, x)
    for i in range(0, len(x), batch_size):
        xb, yb, eb = x[i : i + batch_size], y[i : i + batch_size], e_all[i : i + batch_size]
        g, _, _ = input_gradient(forward, xb, yb, "ce")
        out.append(project(xb + eb * g.sign(), xb, eb, "linf"))
    return torch_cat(out, x)


def torch_cat(parts: list[torch.Tensor], like: torch.Tensor) -> torch.Tensor:
    import torch

    return torch.cat(parts) if parts else like.clone()


def pgd(
    forward: Forward,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float | torch.Tensor,
    steps: int = 10,
    step_size: float | torch.Tensor | None = None,
    norm: str = "linf",
    restarts: int = 1,
    random_start: bool = True,
    loss: str = "ce",
    generator: torch.Generator | None = None,
    batch_size: int = 256,
) -> torch.Tensor:
    """Projected Gradient Descent (Madry et al., ICLR 2018), untargeted, in L-inf or L2.

    Each restart starts at a uniform random point of the ball (``random_start``) and takes ``steps`` steps
    ``x <- P(x + step_size * dir(grad))``, where ``dir`` is the sign (L-inf) or the normalised gradient
    (L2) and ``P`` projects onto the ball and [0, 1]. ``step_size`` defaults to ``2.5 * eps / steps``.
    Restarts only attack the inputs earlier restarts could not fool. Cost per restart: ``steps``
    forward+backward passes plus one forward pass, on the inputs not yet fooled.

    Returns
    -------
    torch.Tensor
        For each input the first misclassified iterate found, else the last iterate; always within the
        ``eps`` ball and [0, 1].
    """

    _check_args(eps, norm, steps, restarts)
    x = x.detach()
    e_all = _per_sample(eps, x)
    s_all = 2.5 * e_all / steps if step_size is None else _per_sample(step_size, x)
    out = x.clone()
    for i in range(0, len(x), batch_size):
        sl = slice(i, i + batch_size)
        out[sl] = _pgd_batch(
            forward, x[sl], y[sl], e_all[sl], s_all[sl], steps, norm, restarts, random_start, loss, generator
        )
    return out


def _pgd_batch(forward, x0, y, eps, step, steps, norm, restarts, random_start, loss, generator):
    import torch

    best = x0.clone()
    fooled = torch.zeros(len(x0), dtype=torch.bool, device=x0.device)
    for r in range(restarts):
        act = torch.nonzero(~fooled).flatten()
        if len(act) == 0:
            break
        xa0, ya, ea, sa = x0[act], y[act], eps[act], step[act]
        cur = _random_start(xa0, ea, norm, generator) if random_start else xa0.clone()
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
            cur = project(cur + sa * _direction(g, norm), xa0, ea, norm)
        if len(act):
            with torch.no_grad():
                hit = forward(cur).argmax(dim=1) != ya
            fooled[act[hit]] = True
            take = hit | (r == restarts - 1)
            best[act[take]] = cur[take]
    return best


def apgd_checkpoints(steps: int) -> list[int]:
    """Iterations at which APGD may halve its step: ``p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)``."""
    p = [0.0, 0.22]
    while p[-1] < 1:
        p.append(p[-1] + max(p[-1] - p[-2] - 0.03, 0.06))
    marks = {math.ceil(q * steps - 1e-9) for q in p[1:]}  # the tolerance absorbs float error in p_j
    return sorted(m for m in marks if 0 < m < steps)


def apgd(
    forward: Forward,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float | torch.Tensor,
    steps: int = 100,
    norm: str = "linf",
    loss: str = "ce",
    restarts: int = 1,
    generator: torch.Generator | None = None,
    batch_size: int = 256,
    rho: float = 0.75,
    momentum: float = 0.75,
) -> torch.Tensor:
    """Auto-PGD (Croce & Hein, "Reliable evaluation of adversarial robustness...", ICML 2020), untargeted.

    PGD with momentum ``0.75`` and a step size that starts at ``2 * eps`` and halves at the checkpoints of
    :func:`apgd_checkpoints` whenever the loss rose on fewer than ``rho`` of the steps since the last one,
    or neither the step nor the best loss changed; after a halving the search restarts from the best point.
    No step size to tune: with ``loss="dlr"`` it is half of the AutoAttack ensemble.
    """
    _check_args(eps, norm, steps, restarts)
    if loss not in LOSSES:
        raise ValueError(f"`loss` must be 'ce' or 'dlr'. Got {loss!r} instead.")
    x = x.detach()
    e_all = _per_sample(eps, x)
    out = x.clone()
    checkpoints = set(apgd_checkpoints(steps))
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
    return out


def _apgd_batch(forward, x0, y, eps, steps, norm, loss, restarts, generator, checkpoints, rho, momentum):
    import torch

    best_adv = x0.clone()
    fooled = torch.zeros(len(x0), dtype=torch.bool, device=x0.device)
    view = (-1, *([1] * (x0.ndim - 1)))
    for r in range(restarts):
        act = torch.nonzero(~fooled).flatten()
        if len(act) == 0:
            break
        s: dict[str, Any] = {"act": act, "x0": x0[act], "y": y[act], "eps": eps[act]}
        s["x"] = _random_start(s["x0"], s["eps"], norm, generator)
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
            z = project(s["x"] + eta * _direction(s["grad"], norm), s["x0"], s["eps"], norm)
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


# ---------------------------------------------------------------------------------------------- checks


def _ladder(start: float, stop: float) -> list[float]:
    """Strengths doubling from ``start`` (exclusive) up to ``stop`` (inclusive)."""
    out, e = [], start
    while e < stop * (1 - 1e-9):
        e = min(2 * e, stop)
        out.append(e)
    return out


@dataclass(frozen=True)
class GradientParams:
    n_samples: int = 300  #: inputs attacked (a class-balanced prefix of the evaluation data)
    eps: float = 8 / 255  #: default strength (reported as ``attack.<a>.robust_accuracy``)
    sweep: tuple[float, ...] = (1 / 255, 2 / 255, 4 / 255, 8 / 255, 16 / 255)  #: strengths of the curve
    steps: int = 20  #: iterations per restart
    restarts: int = 1  #: random restarts (only inputs not yet fooled are attacked again)
    step_ratio: float = 2.5  #: PGD step size as ``step_ratio * eps / steps``
    refine_steps: int = 2  #: bisection steps for each input's smallest flipping eps
    huge_eps: float = 0.5  #: self-check: a strength at which a working attack fools almost everything
    max_examples: int = 6


_LINF_BUDGETS = {
    "quick": {"n_samples": 200, "steps": 10, "restarts": 1, "refine_steps": 1},
    "standard": {"n_samples": 300, "steps": 20, "restarts": 1, "refine_steps": 2},
    "thorough": {"n_samples": 100_000, "steps": 50, "restarts": 3, "refine_steps": 5},
}


class _GradientAttack(Check):
    """Shared flow of the white-box checks: sweep, refine, self-check, report."""

    requires = Requires(capabilities=frozenset({"white_box"}), modalities=frozenset({"image"}))
    Params = GradientParams
    norm: ClassVar[str] = "linf"
    loss: ClassVar[str] = "ce"
    label: ClassVar[str] = ""
    iterative: ClassVar[bool] = True

    def attack(
        self, forward: Forward, x: torch.Tensor, y: torch.Tensor, eps: Any, gen: torch.Generator
    ) -> torch.Tensor:
        raise NotImplementedError

    def prepare(self, forward: Forward, x: torch.Tensor, y: torch.Tensor) -> None:
        """Work shared by every run of the sweep on the inputs ``x`` (FGSM: their gradient signs)."""

    def threat_extra(self) -> dict[str, Any]:
        p = self.params
        return {"steps": p.steps, "restarts": p.restarts, "loss": self.loss}

    def run(self, ctx: Context) -> Outcome:
        import torch

        p = self.params
        name = self.id
        device = getattr(ctx.model, "device", "cpu")
        forward = ctx.model.forward_torch  # type: ignore[attr-defined]
        _idx, x, y, pred0 = common.attack_sample(ctx, p.n_samples)
        correct0 = pred0 == y
        sweep = sorted({float(e) for e in (*p.sweep, p.eps)})
        if any(not (0 < e <= (1 if self.norm == "linf" else math.inf)) for e in sweep):
            limit = "(0, 1] for L-inf" if self.norm == "linf" else "> 0"
            raise InvalidInputError(f"{name}: every `eps` must be {limit}. Got {sweep} instead.")
        xc, yc = x[correct0], y[correct0]
        xt, yt = torch.from_numpy(xc).to(device), torch.from_numpy(yc).to(device)
        self.prepare(forward, xt, yt)
        self._selection: Any = slice(None)

        def run_at(
            eps_each: np.ndarray | float, key: Any, rows: np.ndarray | None = None
        ) -> tuple[np.ndarray, np.ndarray]:
            sel = slice(None) if rows is None else torch.from_numpy(rows).to(device)
            gen = torch.Generator().manual_seed(ctx.torch_seed(name, key))
            eps_t = torch.as_tensor(np.asarray(eps_each, dtype=np.float32)).to(device)
            self._selection = sel
            adv = self.attack(forward, xt[sel], yt[sel], eps_t, gen)
            adv_np = adv.detach().cpu().numpy()
            x_ref = xc if rows is None else xc[rows]
            common.verify_budget(x_ref, adv_np, np.asarray(eps_each), self.norm, name)
            pred = ctx.predict_logits(adv_np).argmax(axis=1) if len(adv_np) else np.zeros(0, int)
            return adv_np, pred

        raw: dict[float, np.ndarray] = {}
        best_adv = xc.copy()
        best_pred = yc.copy()
        found = np.zeros(len(xc), bool)
        huge = self.huge_eps(x.shape[1:])
        ladder = _ladder(max(sweep), huge)
        total = len(sweep) + len(ladder) + p.refine_steps
        with ctx.progress.task(f"{self.label} on {len(xc)} inputs", total=total) as task:
            for e in sweep:
                if len(xc):
                    adv, pred = run_at(e, ("sweep", e))
                    flip = pred != yc
                else:
                    adv, pred, flip = xc, yc, np.zeros(0, bool)
                raw[e] = flip
                new = flip & ~found
                best_adv[new], best_pred[new], found[new] = adv[new], pred[new], True
                task.advance()
            broken_c = common.cumulative(raw)
            lo, hi = common.first_flip(broken_c, len(xc))
            # Beyond the sweep, double the strength up to `huge` on the inputs still standing: it finds
            # their smallest flipping strength and is the huge-strength self-check (Carlini et al. 2019).
            for e in ladder:
                rows = np.flatnonzero(~found)
                if len(rows):
                    _, pred = run_at(np.full(len(rows), e, np.float32), ("ladder", e), rows)
                    flip = pred != yc[rows]
                    hi[rows[flip]] = e
                    lo[rows[~flip]] = e
                    found[rows[flip]] = True
                task.advance()
            # Bisection between the last strength that failed and the first that worked, per input.
            for step in range(p.refine_steps):
                rows = np.flatnonzero(np.isfinite(hi))
                if len(rows):
                    mid = (lo[rows] + hi[rows]) / 2
                    _, pred = run_at(mid, ("refine", step), rows)
                    flip = pred != yc[rows]
                    hi[rows[flip]] = mid[flip]
                    lo[rows[~flip]] = mid[~flip]
                task.advance()

        broken = {e: common.fill_in(correct0, b, False) for e, b in broken_c.items()}
        min_eps = common.fill_in(correct0, hi, np.inf)
        metrics, details = common.sweep_metrics(
            name, y, correct0, broken, p.eps, min_eps, ctx.class_name, norm=self.norm
        )
        raw_acc = [float((correct0 & ~common.fill_in(correct0, raw[e], False)).mean()) for e in sweep]
        details["raw_robust_accuracy"] = dict(zip([common.eps_key(e) for e in sweep], raw_acc, strict=True))
        # Self-checks: usable gradients, a curve that falls (independent per-strength runs), ~0% at `huge`.
        n_health = min(256, len(xc))
        health = trust.gradient_health(forward, xc[:n_health], yc[:n_health], self.loss, device=device)
        findings = [trust.gradient_finding(health)]
        labels = [common.describe_eps(e, self.norm) for e in sweep]
        findings.append(trust.monotone_finding(sweep, raw_acc, len(y), labels))
        huge_acc = (
            float((correct0 & ~common.fill_in(correct0, np.isfinite(hi), False)).mean())
            if ladder
            else math.nan
        )
        if self.iterative and ladder:
            findings.append(trust.huge_eps_finding(huge_acc, common.describe_eps(huge, self.norm)))
        ok, statement, warnings = trust.verdict(findings)
        metrics[f"{name}.trustworthy"] = 1.0 if ok else 0.0
        details["trust"] = {
            "trustworthy": ok,
            "statement": statement,
            "findings": [f.as_dict() for f in findings],
            "gradient_health": health,
            "huge_eps": {"eps": huge, "robust_accuracy": huge_acc, "ladder": ladder},
        }
        details["threat_model"] = common.threat_model(
            "white-box", self.norm, p.eps, sweep, None, samples=len(y), **self.threat_extra()
        )
        chosen = common.pick_examples(found & (hi <= p.eps + 1e-9), p.max_examples, ctx.rng(name, "examples"))
        if len(chosen) == 0:
            chosen = common.pick_examples(found, p.max_examples, ctx.rng(name, "examples"))
        examples = common.adversarial_examples(
            ctx, xc, best_adv, yc, best_pred, chosen, f"{self.label}, smallest sweep strength that flips it"
        )
        ra = metrics[f"{name}.robust_accuracy"]
        summary = (
            f"{self.label}: robust accuracy {ra:.1%} at {common.describe_eps(p.eps, self.norm)} "
            f"({common.NORM_LABEL[self.norm]}, {len(y)} inputs); {statement}."
        )
        return Outcome(
            metrics=metrics, details=details, examples=examples, warnings=warnings, summary=summary
        )

    def huge_eps(self, shape: tuple[int, ...]) -> float:
        """The self-check's strength: ``huge_eps`` (L-inf) or the L2 size of that change on every pixel."""
        e = self.params.huge_eps
        return e if self.norm == "linf" else e * math.sqrt(float(np.prod(shape)))

    @staticmethod
    def figures(result: CheckResult) -> list[tuple[str, str]]:
        return common.curve_figures(result)


@dataclass(frozen=True)
class L2Params(GradientParams):
    eps: float = 0.5
    sweep: tuple[float, ...] = (0.1, 0.25, 0.5, 1.0, 2.0)


@dataclass(frozen=True)
class APGDParams(GradientParams):
    steps: int = 100
    refine_steps: int = 0


@register
class FGSM(_GradientAttack):
    """Fast Gradient Sign Method (Goodfellow, Shlens, Szegedy, ICLR 2015).

    Threat model: white-box evasion at deployment (NIST AI 100-2), untargeted, L-inf budget ``eps`` in
    pixel units. One gradient step: cheap, and only a weak lower bound on what an attacker can do; a model
    that resists FGSM but not PGD is not robust. ``attack.fgsm.robust_accuracy`` is the share of inputs
    still classified correctly after the step at the default ``eps``; ``median_perturbation`` the median
    smallest FGSM step size that flips an input (bisection along its gradient-sign direction).
    """

    id = "attack.fgsm"
    title = "FGSM (white-box, L-inf)"
    label = "FGSM"
    iterative = False
    budget_params = {
        "quick": {"n_samples": 200, "refine_steps": 5},
        "standard": {"n_samples": 500, "refine_steps": 6},
        "thorough": {"n_samples": 100_000, "refine_steps": 10},
    }

    def prepare(self, forward: Forward, x: torch.Tensor, y: torch.Tensor) -> None:
        # FGSM moves along the gradient sign at the clean input whatever eps is: compute it once.
        signs = [
            input_gradient(forward, x[i : i + 256], y[i : i + 256])[0].sign() for i in range(0, len(x), 256)
        ]
        self._signs = torch_cat(signs, x)

    def attack(
        self, forward: Forward, x: torch.Tensor, y: torch.Tensor, eps: Any, gen: torch.Generator
    ) -> torch.Tensor:
        e = _per_sample(eps, x)
        return project(x + e * self._signs[self._selection], x, e, "linf")

    def threat_extra(self) -> dict[str, Any]:
        return {"steps": 1, "restarts": 0, "loss": "ce"}


@register
class PGDLinf(_GradientAttack):
    """Projected Gradient Descent in L-inf (Madry et al., ICLR 2018) with random start and restarts.

    Threat model: white-box evasion at deployment (NIST AI 100-2), untargeted, L-inf budget ``eps`` in
    pixel units (8/255 means eight grey levels). ``attack.pgd_linf.robust_accuracy`` is the share of inputs
    classified correctly whose ``eps`` ball PGD could not push across the decision boundary: an upper
    bound on true robust accuracy (a stronger attack can only lower it).
    """

    id = "attack.pgd_linf"
    title = "PGD (white-box, L-inf)"
    label = "PGD-Linf"
    budget_params = _LINF_BUDGETS

    def attack(
        self, forward: Forward, x: torch.Tensor, y: torch.Tensor, eps: Any, gen: torch.Generator
    ) -> torch.Tensor:
        p = self.params
        return pgd(
            forward, x, y, eps, p.steps, p.step_ratio * eps / p.steps, "linf", p.restarts, generator=gen
        )


@register
class PGDL2(_GradientAttack):
    """Projected Gradient Descent in L2 (Madry et al., ICLR 2018) with random start and restarts.

    Threat model: white-box evasion, untargeted, L2 budget ``eps`` (Euclidean norm of the change, pixel
    values in [0, 1]). The self-check at a huge strength uses radius ``huge_eps * sqrt(n_pixels)``.
    """

    id = "attack.pgd_l2"
    title = "PGD (white-box, L2)"
    label = "PGD-L2"
    norm = "l2"
    Params = L2Params
    budgets = frozenset({"standard", "thorough"})
    budget_params = _LINF_BUDGETS

    def attack(
        self, forward: Forward, x: torch.Tensor, y: torch.Tensor, eps: Any, gen: torch.Generator
    ) -> torch.Tensor:
        p = self.params
        return pgd(forward, x, y, eps, p.steps, p.step_ratio * eps / p.steps, "l2", p.restarts, generator=gen)


_APGD_BUDGETS = {
    "quick": {"n_samples": 128, "steps": 20, "restarts": 1},
    "standard": {"n_samples": 300, "steps": 50, "restarts": 1, "sweep": (4 / 255, 8 / 255, 16 / 255)},
    "thorough": {"n_samples": 100_000, "steps": 100, "restarts": 5, "refine_steps": 2},
}


@register
class APGDCE(_GradientAttack):
    """Auto-PGD with the cross-entropy loss (Croce & Hein, ICML 2020), L-inf.

    Threat model: white-box evasion, untargeted, L-inf budget ``eps``. Step sizes adapt by themselves, so
    the number does not depend on a tuned step; the first attack of AutoAttack.
    """

    id = "attack.apgd_ce"
    title = "APGD-CE (white-box, L-inf)"
    label = "APGD-CE"
    Params = APGDParams
    budgets = frozenset({"standard", "thorough"})
    budget_params = _APGD_BUDGETS

    def attack(
        self, forward: Forward, x: torch.Tensor, y: torch.Tensor, eps: Any, gen: torch.Generator
    ) -> torch.Tensor:
        p = self.params
        return apgd(forward, x, y, eps, p.steps, self.norm, self.loss, p.restarts, gen)

    def threat_extra(self) -> dict[str, Any]:
        return {"steps": self.params.steps, "restarts": self.params.restarts, "loss": self.loss}


@register
class APGDDLR(APGDCE):
    """Auto-PGD with the Difference of Logits Ratio loss (Croce & Hein, ICML 2020), L-inf.

    Threat model: white-box evasion, untargeted, L-inf budget ``eps``. DLR is invariant to shifts and
    scales of the logits, so it still finds gradients where a saturated cross-entropy hides them (a
    frequent false sign of robustness). Needs at least 3 classes.
    """

    id = "attack.apgd_dlr"
    title = "APGD-DLR (white-box, L-inf)"
    label = "APGD-DLR"
    loss = "dlr"
    requires = Requires(capabilities=frozenset({"white_box"}), modalities=frozenset({"image"}), min_classes=3)
