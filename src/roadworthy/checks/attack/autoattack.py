"""The reference AutoAttack ensemble (Croce & Hein, ICML 2020), when the optional package is installed.

AutoAttack's standard version (APGD-CE, APGD-T, FAB-T, Square) is the number the field trusts; it costs
hundreds of times a PGD-10 run on a CPU, so it runs only in the ``thorough`` budget. The package is an
optional extra (``pip install 'roadworthy[autoattack]'``, which brings ``pyautoattack``); without it the
check is skipped and says so.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Any

import numpy as np

from roadworthy.checks.attack import _common as common
from roadworthy.checks.attack.base import AttackCheck, Attempt, Sample
from roadworthy.checks.base import Block, Context, Requires, register

MODULE = "pyautoattack"


@dataclass(frozen=True)
class AutoAttackParams:
    n_samples: int = 1000  #: inputs attacked
    eps: float = 8 / 255  #: L-inf budget
    version: str = "standard"  #: AutoAttack version: standard, plus, rand, or custom (with ``attacks``)
    attacks: tuple[str, ...] = ()  #: for ``version="custom"``: e.g. ("apgd-ce", "apgd-t")
    batch_size: int = 250


@register
class AutoAttackEnsemble(AttackCheck):
    """AutoAttack, standard version (Croce & Hein, "Reliable evaluation of adversarial robustness with an
    ensemble of diverse parameter-free attacks", ICML 2020), through the ``pyautoattack`` package.

    Threat model: white-box evasion (its Square member is black-box), untargeted, L-inf budget ``eps``.
    ``attack.autoattack.robust_accuracy`` is the share of inputs classified correctly that no attack of
    the ensemble could flip: the reference number for published robustness claims.
    """

    id = "attack.autoattack"
    title = "AutoAttack ensemble (reference, L-inf)"
    label = "AutoAttack"
    trust_prefix = "reference ensemble; "
    Params = AutoAttackParams
    requires = Requires(capabilities=frozenset({"white_box"}), modalities=frozenset({"image"}), min_classes=3)
    budgets = frozenset({"thorough"})
    budget_params = {
        "quick": {"n_samples": 64},
        "standard": {"n_samples": 200},
        "thorough": {"n_samples": 1000},
    }

    @classmethod
    def unmet(cls, ctx: Context) -> str | None:
        if importlib.util.find_spec(MODULE) is None:
            return f"the optional package '{MODULE}' is not installed (pip install 'roadworthy[autoattack]')"
        return super().unmet(ctx)

    sharding = "blocks"  # blocks of 64 inputs, each seeded by its index: any split, the same numbers

    def attack_block(self, ctx: Context, s: Sample, block: Block) -> dict[str, Any]:
        """The ensemble on the block's correct inputs, seeded by check and block."""
        import torch

        from roadworthy.errors import require

        aa = require(MODULE, "autoattack", "attack.autoattack")
        p = self.params
        device = getattr(ctx.model, "device", "cpu")

        class _Logits(torch.nn.Module):
            def __init__(self, fn: Any) -> None:
                super().__init__()
                self.fn = fn

            def forward(self, t: torch.Tensor) -> torch.Tensor:
                return self.fn(t)

        xc, yc = s.xc, s.yc
        adv = xc.copy()
        if len(xc):
            custom = {"attacks": list(p.attacks)} if p.version == "custom" else {}
            attack = aa.AutoAttack(
                _Logits(ctx.model.forward_torch),  # type: ignore[attr-defined]
                **custom,
                norm="Linf",
                eps=p.eps,
                version=p.version,
                device=device,
                seed=ctx.torch_seed(self.id, "block", block.index) % (2**31),
            )
            attack.verbose = False
            out = attack.run_standard_evaluation(
                torch.from_numpy(xc).to(device), torch.from_numpy(yc).to(device), batch_size=p.batch_size
            )
            adv = (out[0] if isinstance(out, tuple) else out).detach().cpu().numpy().astype(np.float32)
        common.verify_budget(xc, adv, p.eps, "linf", self.id)
        pred = ctx.predict_logits(adv).argmax(axis=1) if len(adv) else np.zeros(0, int)
        return {
            "pred": s.pred,
            "broken": pred != yc,
            "package": f"{MODULE} {getattr(aa, '__version__', '?')}",
        }

    def finish_blocks(self, ctx: Context, s: Sample, parts: list[dict[str, Any]]) -> Attempt:
        p = self.params
        self._package = parts[0]["package"] if parts else MODULE
        broken = np.concatenate([np.zeros(0, bool), *(q["broken"] for q in parts)])
        return Attempt(
            broken={p.eps: common.fill_in(s.correct, broken, False)}, default=p.eps, strengths=[p.eps]
        )

    def threat_extra(self, s: Sample) -> dict[str, Any]:
        return {"version": self.params.version, "package": getattr(self, "_package", MODULE)}

    def summary(self, metrics: dict[str, float], s: Sample, a: Attempt, statement: str) -> str:
        p = self.params
        return (
            f"AutoAttack ({p.version}): robust accuracy {metrics[f'{self.id}.robust_accuracy']:.1%} at "
            f"{common.describe_eps(p.eps, 'linf')} ({len(s.y)} inputs)."
        )
