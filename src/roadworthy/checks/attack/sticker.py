"""The sticker check: a universal adversarial patch at random places (:mod:`roadworthy.attacks.sticker`).

The patch is optimised on images the evaluation does not use (the training data when given, else other
evaluation rows) and measured on held-out images, against a patch of random noise of the same size at the
same places: what the random patch costs is occlusion, what the optimised one costs beyond it is the attack.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from roadworthy.attacks._losses import margin
from roadworthy.attacks.sticker import paste, patch_side, train_patch
from roadworthy.checks.attack import _common as common
from roadworthy.checks.attack import trust
from roadworthy.checks.attack.base import AttackCheck, Attempt, Sample, Shown
from roadworthy.checks.base import Context, Requires, planned_samples, register

if TYPE_CHECKING:
    import torch


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
    #: trust: how much more accuracy than random noise of its size the sticker may leave (at least two
    #: samples' worth) before its optimisation counts as failed
    noise_tolerance: float = trust.NOISE_TOLERANCE


@dataclass
class _StickerSample(Sample):
    """The held-out inputs, and the inputs the patch is optimised on."""

    x_train: np.ndarray = None  # type: ignore[assignment]
    y_train: np.ndarray = None  # type: ignore[assignment]
    source: str = ""


@register
class AdversarialSticker(AttackCheck):
    """Universal adversarial sticker (Brown et al., "Adversarial Patch", 2017), untargeted.

    Threat model: white-box evasion at deployment (NIST AI 100-2), physically plausible: the attacker knows
    the model, prepares one square sticker covering ``area`` of the image in advance and it lands at a
    random place on each input. ``attack.sticker.robust_accuracy`` is the share of held-out inputs still
    classified correctly with the sticker; ``details.random_patch_accuracy`` the same with random noise
    in its place (occlusion alone); ``median_perturbation`` the median smallest area that fooled an input.
    """

    id = "attack.sticker"
    title = "Universal adversarial sticker (white-box, physical-style)"
    label = "Adversarial sticker"
    norm = "area"
    physical = True
    Params = StickerParams
    requires = Requires(capabilities=frozenset({"white_box"}), modalities=frozenset({"image"}))
    budgets = frozenset({"standard", "thorough"})
    budget_params = {
        "quick": {"n_samples": 128, "n_train": 256, "sweep": (0.05,), "steps": 40},
        "standard": {"n_samples": 200, "n_train": 1000, "steps": 150},
        "thorough": {"n_samples": 1000, "n_train": 5000, "steps": 400},
    }

    plan_queries = ("steps", 20)  #: a large model's plan may lower it to 20 (stated in the plan)

    @classmethod
    def plan_passes(cls, params: Any, n_data: int) -> tuple[float, float]:
        """Per area of the sweep: ``steps`` gradient passes of ``batch_size`` training inputs, then the
        held-out inputs with the sticker and with random noise (forward passes)."""
        n = planned_samples(params, n_data)
        areas = len({float(a) for a in (*params.sweep, params.area)})
        return float(2 * n * areas), float(areas * params.steps * params.batch_size)

    def sample(self, ctx: Context) -> _StickerSample:
        p = self.params
        n_eval = min(p.n_samples, ctx.data.n_samples)
        x_tr, y_tr, source = self._training_set(ctx, n_eval)
        if len(y_tr) < 16:  # a tiny data set: optimise on one half of the sample, measure on the other
            n_eval = max(1, ctx.data.n_samples // 2)
            rows = np.sort(common.attack_order(ctx)[n_eval:])
            x_tr, y_tr = ctx.data.x[rows].astype(np.float32), ctx.data.y[rows].astype(np.int64)
            source = "half of the sample"
        _idx, x, y, pred = common.attack_sample(ctx, n_eval)
        return _StickerSample(x, y, pred, x_tr, y_tr, source)

    def _training_set(self, ctx: Context, n_eval: int) -> tuple[np.ndarray, np.ndarray, str]:
        p = self.params
        if ctx.train_data is not None and ctx.train_data.modality == "image":
            rows = np.sort(ctx.rng(self.id, "train").permutation(ctx.train_data.n_samples)[: p.n_train])
            return (
                ctx.train_data.x[rows].astype(np.float32),
                ctx.train_data.y[rows].astype(np.int64),
                "training data",
            )
        rows = np.sort(common.attack_order(ctx)[n_eval : n_eval + p.n_train])
        return ctx.data.x[rows].astype(np.float32), ctx.data.y[rows].astype(np.int64), "other evaluation rows"

    def attack(self, ctx: Context, s: Sample) -> Attempt:
        import torch

        from roadworthy.evidence import png_data_uri
        from roadworthy.results import Example, ExampleImage

        assert isinstance(s, _StickerSample)
        p = self.params
        name = self.id
        device = getattr(ctx.model, "device", "cpu")
        forward = ctx.model.forward_torch  # type: ignore[attr-defined]
        x, y, pred0, correct0 = s.x, s.y, s.pred, s.correct
        _, c, h, w = x.shape
        areas = sorted({float(a) for a in (*p.sweep, p.area)})
        xt = torch.from_numpy(x).to(device)
        xtr, ytr = torch.from_numpy(s.x_train).to(device), torch.from_numpy(s.y_train).to(device)
        raw, random_acc, sides, patches = {}, {}, {}, {}
        adv_default, pred_default = x.copy(), pred0.copy()
        with ctx.progress.task(f"Adversarial sticker ({len(areas)} sizes)", total=len(areas)) as task:
            for a in areas:
                side = patch_side(a, h, w)
                sides[a] = side
                gen = torch.Generator().manual_seed(ctx.torch_seed(name, a))
                patch = train_patch(
                    forward, xtr, ytr, side, p.steps, p.batch_size, p.step_size, generator=gen
                )
                rng = ctx.rng(name, "placement", a)
                rows_t = torch.from_numpy(rng.integers(0, h - side + 1, len(x))).to(device)
                cols_t = torch.from_numpy(rng.integers(0, w - side + 1, len(x))).to(device)
                with torch.no_grad():
                    adv = paste(xt, patch, rows_t, cols_t).cpu().numpy()
                    noise = torch.from_numpy(rng.uniform(0, 1, (c, side, side)).astype(np.float32)).to(device)
                    rand = paste(xt, noise, rows_t, cols_t).cpu().numpy()
                common.verify_budget(x, adv, float(side * side), "l0", name)
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
        # Self-checks: the patch gradient must exist, and an optimised patch must not do worse than noise.
        accuracy = np.count_nonzero(correct0 & ~broken[p.area]) / len(y)  # as robust_accuracy
        findings = [
            self._gradient_finding(forward, xtr[:64], ytr[:64], sides[p.area], device),
            trust.sticker_finding(accuracy, random_acc[p.area], len(y), p.noise_tolerance),
        ]
        side = sides[p.area]
        return Attempt(
            broken=broken,
            default=p.area,
            strengths=areas,
            min_strength=smallest,
            findings=findings,
            details={
                "random_patch_accuracy": {common.eps_key(a): random_acc[a] for a in areas},
                "patch_side_px": {common.eps_key(a): sides[a] for a in areas},
                "optimised_on": {"source": s.source, "n": len(s.y_train)},
            },
            shown=Shown(
                x, adv_default, y, pred_default, correct0 & raw[p.area], f"Sticker ({side}x{side} px)", False
            ),
            lead_examples=[
                Example(
                    title="The optimised sticker",
                    extra=[
                        ExampleImage(caption=f"{side}x{side} px patch", uri=png_data_uri(patches[p.area]))
                    ],
                )
            ],
        )

    def threat_extra(self, s: Sample) -> dict[str, Any]:
        return {
            "placement": "uniformly random, one place per image",
            "universal": True,
            "steps": self.params.steps,
            "realisability": "simulated digitally; physical success is not tested",
        }

    def summary(self, metrics: dict[str, float], s: Sample, a: Attempt, statement: str) -> str:
        p = self.params
        side = a.details["patch_side_px"][common.eps_key(p.area)]
        rnd = a.details["random_patch_accuracy"][common.eps_key(p.area)]
        return (
            f"Adversarial sticker: robust accuracy {metrics[f'{self.id}.robust_accuracy']:.1%} with a universal "
            f"{side}x{side} px patch ({p.area:.0%} of the image) at random places, vs {rnd:.1%} with random "
            f"noise there; {statement}."
        )

    @staticmethod
    def _gradient_finding(
        forward: Any, x: torch.Tensor, y: torch.Tensor, side: int, device: Any
    ) -> trust.Finding:
        import torch

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
