"""The laser-beam check: robust accuracy against a beam of light (:mod:`roadworthy.attacks.laser`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from roadworthy.attacks.laser import PARAMS, laser_attack, laser_bounds, render_laser
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


@dataclass(frozen=True)
class LaserParams:
    n_samples: int = 64  #: inputs attacked
    restarts: int = 3  #: random restarts of the greedy search
    iterations: int = 100  #: greedy iterations per restart (2 queries each)
    max_step: float = 0.2  #: largest move, as a share of each parameter's range
    max_examples: int = 6
    #: stop attacking more inputs once the 95% interval of the robust accuracy is within this of its
    #: centre (inputs in waves of 16 after the first 32; 0: attack all ``n_samples``)
    interval_half_width: float = 0.05


@register
class LaserBeam(AttackCheck):
    """Adversarial Laser Beam (Duan et al., CVPR 2021): a beam of light that changes the prediction.

    Threat model: score-based black-box evasion at deployment (NIST AI 100-2) with a physically plausible
    perturbation, simulated digitally (no physical test); the attacker chooses the beam's wavelength
    (380-750 nm), angle, position, width (1 to 1/10 of the image side) and intensity (0.2-1.0) and reads
    the model's probabilities, at most ``restarts * (2 * iterations + 1)`` queries per input.
    ``attack.laser.robust_accuracy`` is the share of inputs still classified correctly; ``success_rate``
    the share of correct ones a beam fooled; ``queries`` the mean queries spent.
    """

    id = "attack.laser"
    title = "Adversarial laser beam (black-box, physical-style)"
    label = "Laser beam"
    knowledge = "score-based black-box"
    norm = None  # no strength scale: one budget, no curve
    physical = True
    Params = LaserParams
    requires = Requires(modalities=frozenset({"image"}))
    budgets = frozenset({"standard", "thorough"})
    plan_queries = ("iterations", 10)  #: a large model's plan may lower it to 10 (stated in the plan)
    budget_params = {
        "quick": {"n_samples": 32, "restarts": 2, "iterations": 30, "interval_half_width": 0.1},
        "standard": {"n_samples": 64, "restarts": 3, "iterations": 100, "interval_half_width": 0.05},
        "thorough": {"n_samples": 250, "restarts": 5, "iterations": 200, "interval_half_width": 0.025},
    }

    sharding = "escalate"  # one "strength" (the beam), attacked block by block until the interval is tight

    def ladder(self, ctx: Context) -> tuple[list[float], float]:
        return [1.0], 1.0

    def attack_rows(
        self, ctx: Context, s: Sample, strength: float, rows: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        p = self.params
        found, success, q = laser_attack(
            ctx.predict_probs, s.xc[rows], s.yc[rows], p.restarts, p.iterations, p.max_step, rng
        )
        return render_laser(s.xc[rows], found), q, success, np.asarray(found, np.float64)

    def escalated(self, ctx: Context, s: Sample, run: Escalation, parts: list[dict[str, Any]]) -> Attempt:
        p = self.params
        xc, yc = s.xc, s.yc
        beams = np.concatenate([np.zeros((0, 5)), *(q["extra"] for q in parts if q["extra"] is not None)])
        adv, pred, fooled, queries = run.adv, run.pred, run.found, run.q_default
        measured_n = run.measured_n
        beams_found = [
            {
                "wavelength_nm": round(float(b[0]), 1),
                "angle_deg": round(math.degrees(float(b[1])), 1),
                "offset_px": round(float(b[2]), 2),
                "width_px": round(float(b[3]), 2),
                "intensity": round(float(b[4]), 3),
                "label": ctx.class_name(int(yc[i])),
                "prediction": ctx.class_name(int(pred[i])),
            }
            for i, b in enumerate(beams)
            if fooled[i]
        ][:20]
        return Attempt(
            broken={1.0: common.fill_in(s.correct, fooled, False)},
            default=1.0,
            strengths=[],
            queries=common.fill_in(s.correct, queries, 0.0),
            measured=prefix_mask(s, measured_n),
            details={
                "beams": beams_found,
                "sequential": sequential_details(s, measured_n, p.interval_half_width),
            },
            shown=Shown(xc, adv, yc, pred, fooled, "Laser beam", show_difference=False),
        )

    def query_budget(self) -> int:
        return int(self.params.restarts * (2 * self.params.iterations + 1))

    def threat_extra(self, s: Sample) -> dict[str, Any]:
        lower, upper = laser_bounds(*s.x.shape[2:])
        return {
            "parameter_ranges": {
                k: [float(a), float(b)] for k, a, b in zip(PARAMS, lower, upper, strict=True)
            },
            "realisability": "simulated digitally; physical success is not tested",
        }

    def summary(self, metrics: dict[str, float], s: Sample, a: Attempt, statement: str) -> str:
        return (
            f"Laser beam: robust accuracy {metrics[f'{self.id}.robust_accuracy']:.1%}; a beam fooled "
            f"{metrics.get(f'{self.id}.success_rate', 0.0):.0%} of the correctly classified inputs "
            f"({len(s.y)} inputs, at most {self.query_budget()} queries each); {statement}."
        )
