"""APGD checks with the CE and DLR losses: robust accuracy against Auto-PGD (:mod:`roadworthy.attacks.apgd`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from roadworthy.attacks.apgd import apgd
from roadworthy.checks.attack.base import AttackCheck, Attempt, CurveParams, Sample
from roadworthy.checks.base import Context, Requires, register


@dataclass(frozen=True)
class APGDParams(CurveParams):
    steps: int = 100


BUDGETS = {
    "quick": {"n_samples": 128, "steps": 20, "restarts": 1, "min_norm_steps": 30},
    "standard": {
        "n_samples": 300,
        "steps": 50,
        "restarts": 1,
        "sweep": (4 / 255, 8 / 255, 16 / 255),
        "min_norm_steps": 50,
    },
    "thorough": {"n_samples": 100_000, "steps": 100, "restarts": 5, "min_norm_steps": 300},
}


@register
class APGDCE(AttackCheck):
    """Auto-PGD with the cross-entropy loss (Croce & Hein, ICML 2020), L-inf.

    Threat model: white-box evasion, untargeted, L-inf budget ``eps``. Step sizes adapt by themselves, so
    the number does not depend on a tuned step; the first attack of AutoAttack. The curve comes from
    one Fast Minimum-Norm run; APGD runs once, at ``eps``, on the inputs that run left standing there.
    """

    id = "attack.apgd_ce"
    title = "APGD-CE (white-box, L-inf)"
    label = "APGD-CE"
    requires = Requires(capabilities=frozenset({"white_box"}), modalities=frozenset({"image"}))
    Params = APGDParams
    budgets = frozenset({"standard", "thorough"})
    budget_params = BUDGETS

    def attack(self, ctx: Context, s: Sample) -> Attempt:
        return self.curve_white_box(ctx, s, *self.white_box_perturb())

    def white_box_perturb(self) -> tuple[Any, str]:
        return _perturb(self, "ce"), "ce"

    def threat_extra(self, s: Sample) -> dict[str, Any]:
        return {"steps": self.params.steps, "restarts": self.params.restarts, "loss": "ce"}


@register
class APGDDLR(AttackCheck):
    """Auto-PGD with the Difference of Logits Ratio loss (Croce & Hein, ICML 2020), L-inf.

    Threat model: white-box evasion, untargeted, L-inf budget ``eps``. DLR is invariant to shifts and
    scales of the logits, so it still finds gradients where a saturated cross-entropy hides them (a
    frequent false sign of robustness). Needs at least 3 classes.
    """

    id = "attack.apgd_dlr"
    title = "APGD-DLR (white-box, L-inf)"
    label = "APGD-DLR"
    requires = Requires(capabilities=frozenset({"white_box"}), modalities=frozenset({"image"}), min_classes=3)
    Params = APGDParams
    budgets = frozenset({"standard", "thorough"})
    budget_params = BUDGETS

    def attack(self, ctx: Context, s: Sample) -> Attempt:
        return self.curve_white_box(ctx, s, *self.white_box_perturb())

    def white_box_perturb(self) -> tuple[Any, str]:
        return _perturb(self, "dlr"), "dlr"

    def threat_extra(self, s: Sample) -> dict[str, Any]:
        return {"steps": self.params.steps, "restarts": self.params.restarts, "loss": "dlr"}


def _perturb(check: AttackCheck, loss: str) -> Any:
    """APGD with ``loss`` at ``eps`` (with the one-run curve): the two APGD checks differ in nothing else."""
    p = check.params

    def step(forward: Any, x: Any, y: Any, eps: Any, gen: Any, _rows: Any) -> Any:
        return apgd(forward, x, y, eps, p.steps, "linf", loss, p.restarts, gen)

    return step
