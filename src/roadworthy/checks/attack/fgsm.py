"""The FGSM check: robust accuracy against one gradient-sign step (:mod:`roadworthy.attacks.fgsm`)."""

from __future__ import annotations

from typing import Any

from roadworthy.attacks.fgsm import fgsm_step, gradient_sign
from roadworthy.checks.attack.base import AttackCheck, Attempt, Sample, SweepParams, sweep_runs
from roadworthy.checks.base import Context, Requires, planned_samples, register


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
        import torch

        # The step's direction does not depend on eps: compute it once for the whole sweep.
        device = getattr(ctx.model, "device", "cpu")
        x, y = torch.from_numpy(s.xc).to(device), torch.from_numpy(s.yc).to(device)
        signs: dict[str, Any] = {}

        def step(forward: Any, x_rows: Any, _y: Any, eps: Any, _gen: Any, rows: Any) -> Any:
            if "all" not in signs:  # through the check's counted forward, on the first strength
                signs["all"] = gradient_sign(forward, x, y)
            return fgsm_step(x_rows, signs["all"][rows], eps)

        return self.sweep_white_box(ctx, s, step, iterative=False)

    def threat_extra(self, s: Sample) -> dict[str, Any]:
        return {"steps": 1, "restarts": 0, "loss": "ce"}

    @classmethod
    def plan_passes(cls, params: Any, n_data: int) -> tuple[float, float]:
        """One gradient per input, then one forward pass per strength, ladder rung and bisection step."""
        n = planned_samples(params, n_data)
        return float(n * sweep_runs(params)), float(n)
