"""Sparse attack checks: a few changed pixels, one changed row or column segment (:mod:`roadworthy.attacks.pixels`).

The line attack is our own design (algorithms-spec D.2): "a row of modified pixels" from the brief.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from roadworthy.attacks.pixels import few_pixel, line_attack
from roadworthy.checks.attack import _common as common
from roadworthy.checks.attack.base import (
    AttackCheck,
    Attempt,
    Escalation,
    Sample,
    Shown,
    prefix_mask,
    sequential_details,
)
from roadworthy.checks.base import Context, Requires, register
from roadworthy.errors import InvalidInputError


@dataclass(frozen=True)
class PixelParams:
    n_samples: int = 64  #: inputs attacked
    strengths: tuple[int, ...] = (1, 3, 5)  #: numbers of changed pixels tried, smallest first
    default: int = 3  #: the budget reported as ``robust_accuracy``
    popsize: int = 40  #: DE population per input
    generations: int = 25  #: DE generations (queries per input <= popsize * (generations + 1) per strength)
    f: float = 0.5  #: DE mutation factor
    max_examples: int = 6
    #: stop attacking more inputs once the 95% interval of the robust accuracy is within this of its
    #: centre (inputs in waves of 16 after the first 32; 0: attack all ``n_samples``)
    interval_half_width: float = 0.05


@dataclass(frozen=True)
class LineParams(PixelParams):
    strengths: tuple[int, ...] = (2, 4, 8, 16)  #: segment lengths tried (capped at the image side)
    default: int = 8


class SparseAttack(AttackCheck):
    """A few-pixel or line attack: each budget ``k`` (smallest first) on the inputs no smaller budget
    broke, block by block (``sharding = "escalate"``); a subclass says how to run one budget."""

    knowledge = "score-based black-box"
    norm = "l0"
    requires = Requires(modalities=frozenset({"image"}))
    budgets = frozenset({"standard", "thorough"})
    plan_queries = ("generations", 5)  #: a large model's plan may lower it to 5 (stated in the plan)
    sharding = "escalate"

    def budgets_k(self, ctx: Context) -> tuple[list[int], int]:
        """The budgets tried and the default one (integers)."""
        p = self.params
        ks = sorted({int(k) for k in (*p.strengths, p.default)})
        return ks, min(ks, key=lambda k: abs(k - p.default))

    def ladder(self, ctx: Context) -> tuple[list[float], float]:
        if self.params.popsize < 4:
            raise InvalidInputError(f"{self.id}: `popsize` must be >= 4. Got {self.params.popsize} instead.")
        ks, default = self.budgets_k(ctx)
        return [float(k) for k in ks], float(default)

    def run_k(self, ctx: Context, x: np.ndarray, y: np.ndarray, k: int, rng: np.random.Generator) -> Any:
        """``(x_adv, success, queries)`` of the attack with budget ``k`` on ``x``."""
        raise NotImplementedError

    def attack_rows(
        self, ctx: Context, s: Sample, strength: float, rows: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, None]:
        adv, success, q = self.run_k(ctx, s.xc[rows], s.yc[rows], int(strength), rng)
        return adv, q, success, None

    def escalated(self, ctx: Context, s: Sample, run: Escalation, parts: list[dict[str, Any]]) -> Attempt:
        p = self.params
        strengths, default = self.ladder(ctx)
        return Attempt(
            broken={e: common.fill_in(s.correct, b, False) for e, b in run.broken.items()},
            default=default,
            strengths=strengths,
            min_strength=common.fill_in(s.correct, run.hi, np.inf),
            queries=common.fill_in(s.correct, run.q_default, 0.0),
            trust={
                "note": "a random search: its robust accuracy is an upper bound that more queries can lower"
            },
            measured=prefix_mask(s, run.measured_n),
            details={"sequential": sequential_details(s, run.measured_n, p.interval_half_width)},
            shown=Shown(s.xc, run.adv, s.yc, run.pred, run.found & (run.hi <= default), self.label),
        )

    def query_budget(self) -> int:
        return int(self.params.popsize * (self.params.generations + 1))

    def summary(self, metrics: dict[str, float], s: Sample, a: Attempt, statement: str) -> str:
        return _summary(self, metrics, s, a, statement)


def _summary(check: AttackCheck, metrics: dict[str, float], s: Sample, a: Attempt, statement: str) -> str:
    p = check.params
    return (
        f"{check.label}: robust accuracy {metrics[f'{check.id}.robust_accuracy']:.1%} with {int(a.default)} "
        f"changed pixels (at most {p.popsize * (p.generations + 1)} queries per input and budget, "
        f"{len(s.y)} inputs); {statement}."
    )


@register
class FewPixelAttack(SparseAttack):
    """Few-pixel attack by differential evolution (Su, Vargas, Sakurai, IEEE TEVC 2019), untargeted.

    Threat model: score-based black-box evasion (NIST AI 100-2); the attacker sets ``k`` pixels to any
    colour (an L0 budget) and reads the model's probabilities. ``attack.pixels.robust_accuracy`` is the
    share of inputs still classified correctly with ``default`` changed pixels; ``median_perturbation``
    the median smallest number of pixels (of ``strengths``) that flipped an input.
    """

    id = "attack.pixels"
    title = "Few-pixel attack (black-box, L0)"
    label = "Few-pixel attack"
    Params = PixelParams
    budget_params = {
        "quick": {
            "n_samples": 32,
            "strengths": (1, 3),
            "popsize": 20,
            "generations": 10,
            "interval_half_width": 0.1,
        },
        "standard": {"n_samples": 48, "popsize": 30, "generations": 20, "interval_half_width": 0.05},
        "thorough": {"n_samples": 250, "popsize": 100, "generations": 100, "interval_half_width": 0.025},
    }

    def run_k(self, ctx: Context, x: np.ndarray, y: np.ndarray, k: int, rng: np.random.Generator) -> Any:
        p = self.params
        return few_pixel(ctx.predict_probs, x, y, k, p.popsize, p.generations, p.f, rng)

    def threat_extra(self, s: Sample) -> dict[str, Any]:
        return {"popsize": self.params.popsize, "generations": self.params.generations}


@register
class LineAttack(SparseAttack):
    """Line attack: one row or column segment of ``L`` pixels set to one colour, by differential evolution.

    Threat model: score-based black-box evasion (NIST AI 100-2); "a row of modified pixels" (our design,
    algorithms-spec D.2). The budget is the segment length ``L`` (an L0 budget of ``L`` pixels in one
    line). ``attack.line.robust_accuracy`` is the share of inputs still classified correctly with
    segments of ``default`` pixels; ``median_perturbation`` the median shortest segment that flipped one.
    """

    id = "attack.line"
    title = "Line attack (black-box, one row or column segment)"
    label = "Line attack"
    Params = LineParams
    budget_params = {
        "quick": {
            "n_samples": 32,
            "strengths": (4, 16),
            "popsize": 20,
            "generations": 10,
            "interval_half_width": 0.1,
        },
        "standard": {"n_samples": 48, "popsize": 30, "generations": 20, "interval_half_width": 0.05},
        "thorough": {
            "n_samples": 250,
            "strengths": (1, 2, 4, 8, 16, 32),
            "popsize": 80,
            "generations": 100,
            "interval_half_width": 0.025,
        },
    }

    def budgets_k(self, ctx: Context) -> tuple[list[int], int]:
        p = self.params
        side = max(ctx.data.x.shape[2:4])  # a segment is at most one image side long
        ks = sorted({min(int(k), side) for k in (*p.strengths, p.default)})
        return ks, min(ks, key=lambda k: abs(k - min(p.default, side)))

    def run_k(self, ctx: Context, x: np.ndarray, y: np.ndarray, k: int, rng: np.random.Generator) -> Any:
        p = self.params
        return line_attack(ctx.predict_probs, x, y, k, p.popsize, p.generations, p.f, 0.9, rng)

    def threat_extra(self, s: Sample) -> dict[str, Any]:
        return {
            "popsize": self.params.popsize,
            "generations": self.params.generations,
            "segment": "one colour",
        }
