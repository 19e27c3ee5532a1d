"""The FGSM check: robust accuracy against one gradient-sign step (:mod:`roadworthy.attacks.fgsm`)."""

from __future__ import annotations

from typing import Any

import numpy as np

from roadworthy.attacks.fgsm import fgsm_step, gradient_sign
from roadworthy.checks.attack.base import AttackCheck, Attempt, Sample, SweepParams, sweep_runs
from roadworthy.checks.base import Block, Context, Outcome, Requires, blocks_of, planned_samples, register


@register
class FGSM(AttackCheck):
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
    requires = Requires(capabilities=frozenset({"white_box"}), modalities=frozenset({"image"}))
    Params = SweepParams
    budget_params = {
        "quick": {"n_samples": 200, "refine_steps": 5},
        "standard": {"n_samples": 500, "refine_steps": 6},
        "thorough": {"n_samples": 100_000, "refine_steps": 10},
    }

    def attack(self, ctx: Context, s: Sample) -> Attempt:
        """The sweep on ``s`` in blocks (the gradient signs computed per block), as :meth:`run` does."""
        parts = []
        for b in blocks_of(len(s.y), self.shard_block):
            block = s.take(b.start, b.stop)
            parts.append(self.sweep_block(ctx, block, self._step(ctx, block), b, len(s.y), iterative=False))
        return self.sweep_finish(ctx, s, parts, iterative=False)

    @staticmethod
    def _step(ctx: Context, s: Sample) -> Any:
        """The perturbation on the correct inputs of ``s``: the gradient sign, computed once (through the
        check's counted forward, on the first strength), then one step per strength."""
        import torch

        device = getattr(ctx.model, "device", "cpu")
        x, y = torch.from_numpy(s.xc).to(device), torch.from_numpy(s.yc).to(device)
        signs: dict[str, Any] = {}

        def step(forward: Any, x_rows: Any, _y: Any, eps: Any, _gen: Any, rows: Any) -> Any:
            if "all" not in signs:
                signs["all"] = gradient_sign(forward, x, y)
            return fgsm_step(x_rows, signs["all"][rows], eps)

        return step

    # -- sample sharding: blocks of SHARD_BLOCK inputs, so memory does not grow with the sample

    def shard_items(self, ctx: Context) -> int:
        return min(max(1, int(self.params.n_samples)), ctx.data.n_samples)

    def run_block(self, ctx: Context, block: Block) -> dict[str, Any]:
        s = self.sample_block(ctx, block)
        n_total = self.shard_items(ctx)
        return self.sweep_block(ctx, s, self._step(ctx, s), block, n_total, iterative=False)

    def merge(self, ctx: Context, parts: list[dict[str, Any]]) -> Outcome:
        y = np.concatenate([q["y"] for q in parts]) if parts else np.zeros(0, np.int64)
        pred = np.concatenate([q["pred"] for q in parts]) if parts else np.zeros(0, np.int64)
        s = Sample.labels_only(y, pred)
        return self.outcome(ctx, s, self.sweep_finish(ctx, s, parts, iterative=False))

    def threat_extra(self, s: Sample) -> dict[str, Any]:
        return {"steps": 1, "restarts": 0, "loss": "ce"}

    @classmethod
    def plan_passes(cls, params: Any, n_data: int) -> tuple[float, float]:
        """One gradient per input, then one forward pass per strength, ladder rung and bisection step."""
        n = planned_samples(params, n_data)
        return float(n * sweep_runs(params)), float(n)
