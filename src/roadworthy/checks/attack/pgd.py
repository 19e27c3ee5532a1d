"""PGD checks, L-inf and L2: robust accuracy against projected gradient descent (:mod:`roadworthy.attacks.pgd`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from roadworthy.attacks.pgd import pgd
from roadworthy.checks.attack.base import AttackCheck, Attempt, CurveParams, Sample
from roadworthy.checks.base import Context, Requires, register

WHITE_BOX_IMAGES = Requires(capabilities=frozenset({"white_box"}), modalities=frozenset({"image"}))

BUDGETS = {
    "quick": {"n_samples": 200, "steps": 10, "restarts": 1, "min_norm_steps": 30},
    "standard": {"n_samples": 300, "steps": 20, "restarts": 1, "min_norm_steps": 50},
    "thorough": {"n_samples": 100_000, "steps": 50, "restarts": 3, "min_norm_steps": 300},
}


@dataclass(frozen=True)
class L2Params(CurveParams):
    eps: float = 0.5
    sweep: tuple[float, ...] = (0.1, 0.25, 0.5, 1.0, 2.0)


@register
class PGDLinf(AttackCheck):
    """Projected Gradient Descent in L-inf (Madry et al., ICLR 2018) with random start and restarts.

    Threat model: white-box evasion at deployment (NIST AI 100-2), untargeted, L-inf budget ``eps`` in
    pixel units (8/255 means eight grey levels). ``attack.pgd_linf.robust_accuracy`` is the share of inputs
    classified correctly whose ``eps`` ball PGD could not push across the decision boundary: an upper
    bound on true robust accuracy (a stronger attack can only lower it).

    The curve comes from one Fast Minimum-Norm run (Pintor et al., NeurIPS 2021); PGD runs once, at
    ``eps``, on the inputs that run left standing there, and the two combine per input
    (:meth:`~roadworthy.checks.attack.base.AttackCheck.curve_white_box`).
    """

    id = "attack.pgd_linf"
    title = "PGD (white-box, L-inf)"
    label = "PGD-Linf"
    requires = WHITE_BOX_IMAGES
    Params = CurveParams
    budget_params = BUDGETS

    def attack(self, ctx: Context, s: Sample) -> Attempt:
        return self.curve_white_box(ctx, s, *self.white_box_perturb())

    def white_box_perturb(self) -> tuple[Any, str]:
        p = self.params

        def step(forward: Any, x: Any, y: Any, eps: Any, gen: Any, _rows: Any) -> Any:
            return pgd(
                forward, x, y, eps, p.steps, p.step_ratio * eps / p.steps, "linf", p.restarts, generator=gen
            )

        return step, "ce"

    def threat_extra(self, s: Sample) -> dict[str, Any]:
        return {"steps": self.params.steps, "restarts": self.params.restarts, "loss": "ce"}


@register
class PGDL2(AttackCheck):
    """Projected Gradient Descent in L2 (Madry et al., ICLR 2018) with random start and restarts.

    Threat model: white-box evasion, untargeted, L2 budget ``eps`` (Euclidean norm of the change, pixel
    values in [0, 1]). The self-check at a huge strength uses radius ``huge_eps * sqrt(n_pixels)``.
    The curve comes from one Fast Minimum-Norm run in L2; PGD runs once, at ``eps``, on the inputs it left.
    """

    id = "attack.pgd_l2"
    title = "PGD (white-box, L2)"
    label = "PGD-L2"
    norm = "l2"
    requires = WHITE_BOX_IMAGES
    Params = L2Params
    budgets = frozenset({"standard", "thorough"})
    budget_params = BUDGETS

    def attack(self, ctx: Context, s: Sample) -> Attempt:
        return self.curve_white_box(ctx, s, *self.white_box_perturb())

    def white_box_perturb(self) -> tuple[Any, str]:
        p = self.params

        def step(forward: Any, x: Any, y: Any, eps: Any, gen: Any, _rows: Any) -> Any:
            return pgd(
                forward, x, y, eps, p.steps, p.step_ratio * eps / p.steps, "l2", p.restarts, generator=gen
            )

        return step, "ce"

    def threat_extra(self, s: Sample) -> dict[str, Any]:
        return {"steps": self.params.steps, "restarts": self.params.restarts, "loss": "ce"}
