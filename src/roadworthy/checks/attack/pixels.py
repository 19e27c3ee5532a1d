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
    Sample,
    Shown,
    prefix_mask,
    sequential_details,
)
from roadworthy.checks.base import Context, Requires, register


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


def _sparse(check: AttackCheck, ctx: Context, s: Sample, ks: list[int], default: int, run: Any) -> Attempt:
    """Each budget ``k`` (smallest first) on the inputs no smaller budget broke: ``run(x, y, k, rng)``."""
    p = check.params
    if p.popsize < 4:
        raise ValueError(f"{check.id}: `popsize` must be >= 4. Got {p.popsize} instead.")
    xc, yc = s.xc, s.yc

    def attack_at(k: float, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        adv, success, q = run(xc[rows], yc[rows], int(k), ctx.rng(check.id, int(k), int(rows[0])))
        return adv, q, success

    with ctx.progress.task(f"{check.label} on {len(xc)} inputs", total=len(ks)) as task:
        r = check.escalate(
            ctx,
            s,
            [float(k) for k in ks],
            float(default),
            attack_at,
            ctx.predict_probs,
            task,
            until=p.interval_half_width,
        )
    return Attempt(
        broken={e: common.fill_in(s.correct, b, False) for e, b in r.broken.items()},
        default=float(default),
        strengths=[float(k) for k in ks],
        min_strength=common.fill_in(s.correct, r.hi, np.inf),
        queries=common.fill_in(s.correct, r.q_default, 0.0),
        trust={"note": "a random search: its robust accuracy is an upper bound that more queries can lower"},
        measured=prefix_mask(s, r.measured_n),
        details={"sequential": sequential_details(s, r.measured_n, p.interval_half_width)},
        shown=Shown(xc, r.adv, yc, r.pred, r.found & (r.hi <= default), check.label),
    )


def _summary(check: AttackCheck, metrics: dict[str, float], s: Sample, a: Attempt, statement: str) -> str:
    p = check.params
    return (
        f"{check.label}: robust accuracy {metrics[f'{check.id}.robust_accuracy']:.1%} with {int(a.default)} "
        f"changed pixels (at most {p.popsize * (p.generations + 1)} queries per input and budget, "
        f"{len(s.y)} inputs); {statement}."
    )


@register
class FewPixelAttack(AttackCheck):
    """Few-pixel attack by differential evolution (Su, Vargas, Sakurai, IEEE TEVC 2019), untargeted.

    Threat model: score-based black-box evasion (NIST AI 100-2); the attacker sets ``k`` pixels to any
    colour (an L0 budget) and reads the model's probabilities. ``attack.pixels.robust_accuracy`` is the
    share of inputs still classified correctly with ``default`` changed pixels; ``median_perturbation``
    the median smallest number of pixels (of ``strengths``) that flipped an input.
    """

    id = "attack.pixels"
    title = "Few-pixel attack (black-box, L0)"
    label = "Few-pixel attack"
    knowledge = "score-based black-box"
    norm = "l0"
    Params = PixelParams
    requires = Requires(modalities=frozenset({"image"}))
    budgets = frozenset({"standard", "thorough"})
    plan_queries = ("generations", 5)  #: a large model's plan may lower it to 5 (stated in the plan)
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

    def attack(self, ctx: Context, s: Sample) -> Attempt:
        p = self.params
        ks = sorted({int(k) for k in (*p.strengths, p.default)})
        default = min(ks, key=lambda k: abs(k - p.default))

        def run(x: np.ndarray, y: np.ndarray, k: int, rng: np.random.Generator) -> Any:
            return few_pixel(ctx.predict_probs, x, y, k, p.popsize, p.generations, p.f, rng)

        return _sparse(self, ctx, s, ks, default, run)

    def query_budget(self) -> int:
        return int(self.params.popsize * (self.params.generations + 1))

    def threat_extra(self, s: Sample) -> dict[str, Any]:
        return {"popsize": self.params.popsize, "generations": self.params.generations}

    def summary(self, metrics: dict[str, float], s: Sample, a: Attempt, statement: str) -> str:
        return _summary(self, metrics, s, a, statement)


@register
class LineAttack(AttackCheck):
    """Line attack: one row or column segment of ``L`` pixels set to one colour, by differential evolution.

    Threat model: score-based black-box evasion (NIST AI 100-2); "a row of modified pixels" (our design,
    algorithms-spec D.2). The budget is the segment length ``L`` (an L0 budget of ``L`` pixels in one
    line). ``attack.line.robust_accuracy`` is the share of inputs still classified correctly with
    segments of ``default`` pixels; ``median_perturbation`` the median shortest segment that flipped one.
    """

    id = "attack.line"
    title = "Line attack (black-box, one row or column segment)"
    label = "Line attack"
    knowledge = "score-based black-box"
    norm = "l0"
    Params = LineParams
    requires = Requires(modalities=frozenset({"image"}))
    budgets = frozenset({"standard", "thorough"})
    plan_queries = ("generations", 5)  #: a large model's plan may lower it to 5 (stated in the plan)
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

    def attack(self, ctx: Context, s: Sample) -> Attempt:
        p = self.params
        side = max(s.x.shape[2], s.x.shape[3])  # a segment is at most one image side long
        ks = sorted({min(int(k), side) for k in (*p.strengths, p.default)})
        default = min(ks, key=lambda k: abs(k - min(p.default, side)))

        def run(x: np.ndarray, y: np.ndarray, k: int, rng: np.random.Generator) -> Any:
            return line_attack(ctx.predict_probs, x, y, k, p.popsize, p.generations, p.f, 0.9, rng)

        return _sparse(self, ctx, s, ks, default, run)

    def query_budget(self) -> int:
        return int(self.params.popsize * (self.params.generations + 1))

    def threat_extra(self, s: Sample) -> dict[str, Any]:
        return {
            "popsize": self.params.popsize,
            "generations": self.params.generations,
            "segment": "one colour",
        }

    def summary(self, metrics: dict[str, float], s: Sample, a: Attempt, statement: str) -> str:
        return _summary(self, metrics, s, a, statement)
