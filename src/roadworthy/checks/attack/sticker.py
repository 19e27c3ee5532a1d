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


class _Rows:
    """Some rows of a data set's inputs, read (as float32) only when indexed: the sticker's training
    inputs without a copy of them all (1,000 images of 224 px would be 600 MB)."""

    def __init__(self, source: np.ndarray, rows: np.ndarray) -> None:
        self.source, self.rows = source, np.asarray(rows, dtype=np.int64)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.rows), *self.source.shape[1:])

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, idx: Any) -> np.ndarray:
        return np.ascontiguousarray(self.source[self.rows[idx]], dtype=np.float32)


@dataclass
class _StickerSample(Sample):
    """The held-out inputs (their rows of the evaluation data, read in chunks; ``x`` holds no values), and
    the inputs the patch is optimised on."""

    rows: np.ndarray = None  # type: ignore[assignment]
    x_train: _Rows = None  # type: ignore[assignment]
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
            x_tr, y_tr = _Rows(ctx.data.x, rows), ctx.data.y[rows].astype(np.int64)
            source = "half of the sample"
        idx = np.sort(common.attack_order(ctx)[: max(1, int(n_eval))])
        y = np.asarray(ctx.data.y[idx], dtype=np.int64)
        labels = Sample.labels_only(y, ctx.clean_pred[idx])
        return _StickerSample(labels.x, y, labels.pred, idx, x_tr, y_tr, source)

    def _training_set(self, ctx: Context, n_eval: int) -> tuple[_Rows, np.ndarray, str]:
        p = self.params
        if ctx.train_data is not None and ctx.train_data.modality == "image":
            rows = np.sort(ctx.rng(self.id, "train").permutation(ctx.train_data.n_samples)[: p.n_train])
            return _Rows(ctx.train_data.x, rows), ctx.train_data.y[rows].astype(np.int64), "training data"
        rows = np.sort(common.attack_order(ctx)[n_eval : n_eval + p.n_train])
        return _Rows(ctx.data.x, rows), ctx.data.y[rows].astype(np.int64), "other evaluation rows"

    def attack(self, ctx: Context, s: Sample) -> Attempt:
        """Per area: optimise the patch on the training inputs (mini-batches read as needed), then paste
        it and a noise patch on the held-out inputs in chunks of at most ``EVAL_BYTES`` of inputs
        (:data:`roadworthy.attacks.pixels.EVAL_BYTES`); only per-input predictions are kept, and the
        few inputs shown as examples are pasted again at the end. Memory does not grow with the sample
        or the training set."""
        import torch

        from roadworthy.attacks._losses import GRAD_BATCH_INPUT_BYTES
        from roadworthy.evidence import png_data_uri
        from roadworthy.results import Example, ExampleImage

        assert isinstance(s, _StickerSample)
        p = self.params
        name = self.id
        device = getattr(ctx.model, "device", "cpu")
        forward = ctx.model.forward_torch  # type: ignore[attr-defined]
        y, pred0, correct0 = s.y, s.pred, s.correct
        c, h, w = ctx.data.x.shape[1:]
        n = len(y)
        # the pasted copies (patch, noise, and paste's canvas and mask) are several times the inputs
        chunk = max(1, GRAD_BATCH_INPUT_BYTES // (4 * c * h * w))
        areas = sorted({float(a) for a in (*p.sweep, p.area)})
        raw, random_acc, sides, patches, places = {}, {}, {}, {}, {}
        pred_default = pred0.copy()
        with ctx.progress.task(f"Adversarial sticker ({len(areas)} sizes)", total=len(areas)) as task:
            for a in areas:
                side = patch_side(a, h, w)
                sides[a] = side
                gen = torch.Generator().manual_seed(ctx.torch_seed(name, a))
                patch = train_patch(
                    forward,
                    s.x_train,
                    s.y_train,
                    side,
                    p.steps,
                    p.batch_size,
                    p.step_size,
                    generator=gen,
                    device=device,
                )
                rng = ctx.rng(name, "placement", a)
                rows_t = torch.from_numpy(rng.integers(0, h - side + 1, n)).to(device)
                cols_t = torch.from_numpy(rng.integers(0, w - side + 1, n)).to(device)
                noise = torch.from_numpy(rng.uniform(0, 1, (c, side, side)).astype(np.float32)).to(device)
                pred = np.empty(n, dtype=np.int64)
                rand_right = 0
                for i in range(0, n, chunk):
                    xb = np.ascontiguousarray(ctx.data.x[s.rows[i : i + chunk]], dtype=np.float32)
                    xt = torch.from_numpy(xb).to(device)
                    with torch.no_grad():
                        adv = paste(xt, patch, rows_t[i : i + chunk], cols_t[i : i + chunk]).cpu().numpy()
                        rand = paste(xt, noise, rows_t[i : i + chunk], cols_t[i : i + chunk]).cpu().numpy()
                    common.verify_budget(xb, adv, float(side * side), "l0", name)
                    pred[i : i + chunk] = ctx.predict_logits(adv).argmax(axis=1)
                    rand_right += int(
                        np.count_nonzero(ctx.predict_logits(rand).argmax(axis=1) == y[i : i + chunk])
                    )
                    del adv, rand, xt, xb
                raw[a] = pred != y
                random_acc[a] = rand_right / max(1, n)
                patches[a] = patch
                places[a] = (rows_t, cols_t)
                if a == p.area:
                    pred_default = pred
                task.advance()
        broken = {a: correct0 & raw[a] for a in areas}
        smallest = np.full(len(y), np.inf)
        for a in reversed(areas):
            smallest[broken[a]] = a
        # Self-checks: the patch gradient must exist, and an optimised patch must not do worse than noise.
        accuracy = np.count_nonzero(correct0 & ~broken[p.area]) / len(y)  # as robust_accuracy
        findings = [
            self._gradient_finding(forward, s.x_train, s.y_train, sides[p.area], device),
            trust.sticker_finding(accuracy, random_acc[p.area], len(y), p.noise_tolerance),
        ]
        side = sides[p.area]
        shown = self._shown(
            ctx, s, correct0 & raw[p.area], patches[p.area], places[p.area], pred_default, side
        )
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
            shown=shown,
            lead_examples=[
                Example(
                    title="The optimised sticker",
                    extra=[
                        ExampleImage(
                            caption=f"{side}x{side} px patch", uri=png_data_uri(patches[p.area].cpu().numpy())
                        )
                    ],
                )
            ],
        )

    def _shown(
        self,
        ctx: Context,
        s: _StickerSample,
        fooled: np.ndarray,
        patch: torch.Tensor,
        places: tuple[torch.Tensor, torch.Tensor],
        pred: np.ndarray,
        side: int,
    ) -> Shown:
        """The examples (the seeded pick among the fooled inputs that :meth:`AttackCheck.outcome` would
        make), with the sticker pasted again on just those inputs."""
        import torch

        chosen = common.pick_examples(fooled, self.params.max_examples, ctx.rng(self.id, "examples"))
        x = np.ascontiguousarray(ctx.data.x[s.rows[chosen]], dtype=np.float32)
        sel = torch.from_numpy(chosen).to(places[0].device)
        with torch.no_grad():
            adv = (
                paste(torch.from_numpy(x).to(patch.device), patch, places[0][sel], places[1][sel])
                .cpu()
                .numpy()
            )
        title = f"Sticker ({side}x{side} px)"
        return Shown(x, adv, s.y[chosen], pred[chosen], np.ones(len(chosen), bool), title, False)

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
        forward: Any, x_train: _Rows, y_train: np.ndarray, side: int, device: Any
    ) -> trust.Finding:
        """The patch gradient on the first training inputs (64, fewer for large inputs: one gradient
        batch) must exist, be finite and not all zero."""
        import torch

        from roadworthy.attacks._losses import grad_batch

        k = min(len(x_train), grad_batch(x_train, 64))
        x = torch.from_numpy(x_train[np.arange(k)]).to(device)
        y = torch.from_numpy(np.asarray(y_train[:k], dtype=np.int64)).to(device)
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
