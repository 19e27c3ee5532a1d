"""Universal adversarial sticker (Brown, Mané, Roy, Abadi, Gilmer, "Adversarial Patch", 2017).

One small square patch is optimised white-box, once, to make the model misclassify *any* image it is
pasted on, at a random place (expectation over placements). It models a sticker on a road sign: the
attacker prepares it in advance and cannot tailor it to each image. The patch is optimised on images the
evaluation does not use (the training data when given, else other evaluation rows) and measured on
held-out images, against a patch of random noise of the same size at the same places: what the random
patch costs is occlusion, what the optimised one costs beyond it is the attack.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from roadworthy.checks.attack import _common as common
from roadworthy.checks.attack import trust
from roadworthy.checks.base import Check, Context, Outcome, Requires, register
from roadworthy.results import CheckResult

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

    from roadworthy.checks.attack.gradient import margin

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


@dataclass(frozen=True)
class StickerParams:
    n_samples: int = 200  #: held-out inputs the patch is measured on
    n_train: int = 1000  #: inputs the patch is optimised on
    area: float = 0.05  #: default patch area, as a share of the image
    sweep: tuple[float, ...] = (0.02, 0.05, 0.1)  #: patch areas of the curve
    steps: int = 150  #: optimisation steps
    batch_size: int = 64
    step_size: float = 0.1
    max_examples: int = 6


@register
class AdversarialSticker(Check):
    """Universal adversarial sticker (Brown et al., "Adversarial Patch", 2017), untargeted.

    Threat model: white-box evasion at deployment (NIST AI 100-2), physically plausible: the attacker knows
    the model, prepares one square sticker covering ``area`` of the image in advance and it lands at a
    random place on each input. ``attack.sticker.robust_accuracy`` is the share of held-out inputs still
    classified correctly with the sticker; ``details.random_patch_accuracy`` the same with random noise
    in its place (occlusion alone); ``median_perturbation`` the median smallest area that fooled an input.
    """

    id = "attack.sticker"
    title = "Universal adversarial sticker (white-box, physical-style)"
    Params = StickerParams
    requires = Requires(capabilities=frozenset({"white_box"}), modalities=frozenset({"image"}))
    budgets = frozenset({"standard", "thorough"})
    budget_params = {
        "quick": {"n_samples": 128, "n_train": 256, "sweep": (0.05,), "steps": 40},
        "standard": {"n_samples": 200, "n_train": 1000, "steps": 150},
        "thorough": {"n_samples": 1000, "n_train": 5000, "steps": 400},
    }

    def _training_set(self, ctx: Context, n_eval: int) -> tuple[np.ndarray, np.ndarray, str]:
        p = self.params
        if ctx.train_data is not None and ctx.train_data.modality == "image":
            rows = np.sort(ctx.rng(self.id, "train").permutation(ctx.train_data.n_samples)[: p.n_train])
            return (
                ctx.train_data.x[rows].astype(np.float32),
                ctx.train_data.y[rows].astype(np.int64),
                "training data",
            )
        order = common.attack_order(ctx)
        rows = np.sort(order[n_eval : n_eval + p.n_train])
        return ctx.data.x[rows].astype(np.float32), ctx.data.y[rows].astype(np.int64), "other evaluation rows"

    def run(self, ctx: Context) -> Outcome:
        import torch

        p = self.params
        name = self.id
        device = getattr(ctx.model, "device", "cpu")
        forward = ctx.model.forward_torch  # type: ignore[attr-defined]
        n_eval = min(p.n_samples, ctx.data.n_samples)
        x_tr, y_tr, source = self._training_set(ctx, n_eval)
        if len(y_tr) < 16:  # a tiny data set: optimise on one half of the sample, measure on the other
            n_eval = max(1, ctx.data.n_samples // 2)
            order = common.attack_order(ctx)
            rows = np.sort(order[n_eval:])
            x_tr, y_tr, source = (
                ctx.data.x[rows].astype(np.float32),
                ctx.data.y[rows].astype(np.int64),
                "half of the sample",
            )
        _idx, x, y, pred0 = common.attack_sample(ctx, n_eval)
        correct0 = pred0 == y
        _, c, h, w = x.shape
        areas = sorted({float(a) for a in (*p.sweep, p.area)})
        xt = torch.from_numpy(x).to(device)
        xtr, ytr = torch.from_numpy(x_tr).to(device), torch.from_numpy(y_tr).to(device)
        raw, random_acc, sides, patches = {}, {}, {}, {}
        adv_default = x.copy()
        pred_default = pred0.copy()
        with ctx.progress.task(f"Adversarial sticker ({len(areas)} sizes)", total=len(areas)) as task:
            for a in areas:
                s = patch_side(a, h, w)
                sides[a] = s
                gen = torch.Generator().manual_seed(ctx.torch_seed(name, a))
                patch = train_patch(forward, xtr, ytr, s, p.steps, p.batch_size, p.step_size, generator=gen)
                rng = ctx.rng(name, "placement", a)
                rows_t = torch.from_numpy(rng.integers(0, h - s + 1, len(x))).to(device)
                cols_t = torch.from_numpy(rng.integers(0, w - s + 1, len(x))).to(device)
                with torch.no_grad():
                    adv = paste(xt, patch, rows_t, cols_t).cpu().numpy()
                    noise = torch.from_numpy(rng.uniform(0, 1, (c, s, s)).astype(np.float32)).to(device)
                    rand = paste(xt, noise, rows_t, cols_t).cpu().numpy()
                common.verify_budget(x, adv, float(s * s), "l0", name)
                pred = ctx.predict_logits(adv).argmax(axis=1)
                raw[a] = pred != y
                random_acc[a] = float((ctx.predict_logits(rand).argmax(axis=1) == y).mean())
                patches[a] = patch.cpu().numpy()
                if a == p.area:
                    adv_default, pred_default = adv, pred
                task.advance()
        broken = {a: correct0 & raw[a] for a in areas}
        smallest = np.full(len(y), np.inf)
        for a in reversed(areas):
            smallest[broken[a]] = a
        metrics, details = common.sweep_metrics(
            name, y, correct0, broken, p.area, smallest, ctx.class_name, norm="area"
        )
        details["random_patch_accuracy"] = {common.eps_key(a): random_acc[a] for a in areas}
        details["patch_side_px"] = {common.eps_key(a): sides[a] for a in areas}
        details["optimised_on"] = {"source": source, "n": len(y_tr)}
        # Self-checks: the patch gradient must exist, and an optimised patch must not do worse than noise.
        findings = [self._gradient_finding(forward, xtr[:64], ytr[:64], sides[p.area], device)]
        ra = metrics[f"{name}.robust_accuracy"]
        rnd = random_acc[p.area]
        tol = max(0.03, 2.0 / max(1, len(y)))
        if ra > rnd + tol:
            findings.append(
                trust.Finding(
                    "beats_noise",
                    False,
                    f"the optimised sticker ({ra:.0%}) does worse than random noise ({rnd:.0%}): optimisation failed",
                    ra - rnd,
                )
            )
        else:
            findings.append(
                trust.Finding(
                    "beats_noise", True, "the optimised sticker is at least as strong as noise", ra - rnd
                )
            )
        ok, statement, warnings = trust.verdict(findings)
        metrics[f"{name}.trustworthy"] = 1.0 if ok else 0.0
        details["trust"] = {
            "trustworthy": ok,
            "statement": statement,
            "findings": [f.as_dict() for f in findings],
        }
        details["threat_model"] = common.threat_model(
            "white-box",
            "area",
            p.area,
            areas,
            None,
            physical=True,
            samples=len(y),
            placement="uniformly random, one place per image",
            universal=True,
            steps=p.steps,
            realisability="simulated digitally; physical success is not tested",
        )
        chosen = common.pick_examples(correct0 & raw[p.area], p.max_examples, ctx.rng(name, "examples"))
        examples = common.adversarial_examples(
            ctx,
            x,
            adv_default,
            y,
            pred_default,
            chosen,
            f"Sticker ({sides[p.area]}x{sides[p.area]} px)",
            show_difference=False,
        )
        from roadworthy.report.images import png_data_uri
        from roadworthy.results import Example, ExampleImage

        examples.insert(
            0,
            Example(
                title="The optimised sticker",
                extra=[
                    ExampleImage(
                        caption=f"{sides[p.area]}x{sides[p.area]} px patch", uri=png_data_uri(patches[p.area])
                    )
                ],
            ),
        )
        summary = (
            f"Adversarial sticker: robust accuracy {ra:.1%} with a universal {sides[p.area]}x{sides[p.area]} px patch "
            f"({p.area:.0%} of the image) at random places, vs {rnd:.1%} with random noise there; {statement}."
        )
        return Outcome(
            metrics=metrics, details=details, examples=examples, warnings=warnings, summary=summary
        )

    @staticmethod
    def _gradient_finding(
        forward: Any, x: torch.Tensor, y: torch.Tensor, side: int, device: Any
    ) -> trust.Finding:
        import torch

        from roadworthy.checks.attack.gradient import margin

        patch = torch.full((x.shape[1], side, side), 0.5, device=device, requires_grad=True)
        zeros = torch.zeros(len(x), dtype=torch.long, device=device)
        with torch.enable_grad():
            loss = margin(forward(paste(x, patch, zeros, zeros)), y).sum()
            g = torch.autograd.grad(loss, patch, allow_unused=True)[0] if loss.requires_grad else None
        if g is None or not torch.isfinite(g).all() or bool((g == 0).all()):
            return trust.Finding(
                "gradients", False, "the sticker's gradients were zero or not finite (gradient masking?)", 1.0
            )
        return trust.Finding("gradients", True, "the sticker's gradients are usable", 0.0)

    @staticmethod
    def figures(result: CheckResult) -> list[tuple[str, str]]:
        return common.curve_figures(result)
