"""The Square Attack check: robust accuracy against a score-based random search (:mod:`roadworthy.attacks.square`).

The self-check at a huge strength (L-inf 0.5 by default: a working attack fools about every input there)
also moves each input toward the nearest evaluation input of another predicted class, as far as the
strength allows. A random search at that strength draws noise-like images, and a healthy CNN that maps all
noise to one class keeps that class's inputs correct against every one of them; the move shows that those
inputs are breakable at that strength all the same, so the check judges the evaluation, not the search's
start.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from roadworthy.attacks._pool import StartPool, balanced_pool_rows
from roadworthy.attacks.square import move_toward_other_class, square_attack, square_attack_result
from roadworthy.checks.attack import _common as common
from roadworthy.checks.attack import trust
from roadworthy.checks.attack.base import (
    AttackCheck,
    Attempt,
    Escalation,
    Sample,
    Shown,
    prefix_mask,
    sequential_details,
)
from roadworthy.checks.base import Block, Context, Requires, planned_samples, register


@dataclass(frozen=True)
class SquareParams:
    n_samples: int = 100  #: inputs attacked (a class-balanced prefix of the evaluation data)
    eps: float = 8 / 255  #: default L-inf strength
    sweep: tuple[float, ...] = (4 / 255, 8 / 255, 16 / 255)  #: strengths of the curve
    max_queries: int = 1000  #: queries per input and strength (initialisation included)
    p_init: float = 0.8  #: initial share of the image the square covers
    huge_eps: float = 0.5  #: self-check strength
    huge_queries: int = 100  #: self-check query budget
    huge_samples: int = 32  #: self-check inputs
    huge_pool: int = (
        2000  #: evaluation inputs the self-check moves toward (the same number per predicted class)
    )
    huge_moves: int = 3  #: nearest inputs of another predicted class tried per input by the self-check
    max_examples: int = 6
    #: stop attacking more inputs once the 95% interval of the robust accuracy is within this of its
    #: centre (inputs in waves of 16 after the first 32; 0: attack all ``n_samples``)
    interval_half_width: float = 0.05
    #: trust: largest robust accuracy at ``huge_eps`` (Square run and moves together)
    max_accuracy_at_huge_eps: float = trust.MAX_ACCURACY_AT_HUGE_EPS
    #: trust: largest share of found adversarial inputs that read as correct when asked again
    max_unstable: float = trust.MAX_UNSTABLE


@register
class SquareAttack(AttackCheck):
    """Square Attack (Andriushchenko et al., ECCV 2020): score-based black-box, untargeted, L-inf.

    Threat model: black-box evasion at deployment (NIST AI 100-2): the attacker only queries the model and
    reads its scores, at most ``max_queries`` times per input, and changes each pixel by at most ``eps``.
    ``attack.square.robust_accuracy`` is the share of inputs still classified correctly; ``queries`` the
    mean queries spent per initially correct input at the default strength (the cap where it failed).

    The trust verdict is about the evaluation: at a huge strength (``huge_eps``) at most
    ``max_accuracy_at_huge_eps`` of the inputs may stay correct against both a Square run and a move
    toward the nearest evaluation input of another predicted class (``details.trust.huge_eps`` counts what
    each fooled). An evaluation that leaves more standing where almost every input is breakable measures
    nothing: the search is broken, or the model's answers hide its weakness from it.
    """

    id = "attack.square"
    title = "Square Attack (black-box, L-inf)"
    label = "Square Attack"
    knowledge = "score-based black-box"
    Params = SquareParams
    requires = Requires(modalities=frozenset({"image"}))
    budget_params = {
        "quick": {
            "n_samples": 48,
            "sweep": (8 / 255,),
            "max_queries": 200,
            "huge_samples": 8,
            "huge_queries": 50,
            "interval_half_width": 0.1,
        },
        "standard": {"n_samples": 64, "max_queries": 1000, "interval_half_width": 0.05},
        "thorough": {
            "n_samples": 500,
            "max_queries": 5000,
            "huge_samples": 64,
            "interval_half_width": 0.025,
        },
    }

    sharding = "escalate"
    scores = "logits"

    def ladder(self, ctx: Context) -> tuple[list[float], float]:
        return sorted({float(e) for e in (*self.params.sweep, self.params.eps)}), float(self.params.eps)

    def attack_rows(
        self, ctx: Context, s: Sample, strength: float, rows: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, None]:
        p = self.params
        r = square_attack_result(
            ctx.predict_logits, s.xc[rows], s.yc[rows], strength, p.max_queries, p.p_init, rng
        )
        return r.x_adv, r.queries, r.margins < 0, None

    def block_extra(self, ctx: Context, s: Sample, block: Block) -> dict[str, Any]:
        """Block 0 also runs the huge-strength self-check on the sample's first correct inputs."""
        if block.index != 0:
            return {}
        whole = self.sample(ctx)
        return {"huge": self._huge_check(ctx, whole.xc, whole.yc)}

    def escalated(self, ctx: Context, s: Sample, run: Escalation, parts: list[dict[str, Any]]) -> Attempt:
        p = self.params
        xc, yc = s.xc, s.yc
        huge, huge_details = parts[0]["huge"] if parts else (None, {})
        findings = [huge] if huge is not None else []
        findings.append(trust.stability_finding(run.confirmed, p.max_unstable))
        return Attempt(
            broken={e: common.fill_in(s.correct, b, False) for e, b in run.broken.items()},
            default=p.eps,
            strengths=self.ladder(ctx)[0],
            min_strength=common.fill_in(s.correct, run.hi, np.inf),
            queries=common.fill_in(s.correct, run.q_default, 0.0),
            findings=findings,
            trust={"huge_eps": huge_details},
            measured=prefix_mask(s, run.measured_n),
            details={"sequential": sequential_details(s, run.measured_n, p.interval_half_width)},
            shown=Shown(xc, run.adv, yc, run.pred, run.found & (run.hi <= p.eps), "Square Attack"),
        )

    plan_queries = ("max_queries", 100)  #: a large model's plan may lower it to 100 (stated in the plan)

    @classmethod
    def plan_passes(cls, params: Any, n_data: int) -> tuple[float, float]:
        """A robust model's cost: every input spends ``max_queries`` at every strength, plus the
        self-check's queries; a model that falls early costs much less."""
        n = planned_samples(params, n_data)
        strengths = len({float(e) for e in (*params.sweep, params.eps)})
        huge = min(n, params.huge_samples) * (params.huge_queries + 1 + params.huge_moves)
        return float(n * (strengths * params.max_queries + 1) + huge), 0.0

    def query_budget(self) -> int:
        return int(self.params.max_queries)

    def threat_extra(self, s: Sample) -> dict[str, Any]:
        return {"p_init": self.params.p_init}

    def summary(self, metrics: dict[str, float], s: Sample, a: Attempt, statement: str) -> str:
        p = self.params
        return (
            f"Square Attack: robust accuracy {metrics[f'{self.id}.robust_accuracy']:.1%} at "
            f"{common.describe_eps(p.eps, 'linf')} with at most {p.max_queries} queries per input "
            f"({len(s.y)} inputs); {statement}."
        )

    def _huge_check(
        self, ctx: Context, xc: np.ndarray, yc: np.ndarray
    ) -> tuple[trust.Finding | None, dict[str, object]]:
        """Robust accuracy at ``huge_eps``: an input falls to a Square run or to a move toward another class."""
        p = self.params
        m = min(len(xc), p.huge_samples)
        if m == 0 or p.huge_queries < 1:
            return None, {}
        x, y = xc[:m], yc[:m]
        adv, _ = square_attack(
            ctx.predict_logits, x, y, p.huge_eps, p.huge_queries, p.p_init, ctx.rng(self.id, "huge")
        )
        common.verify_budget(x, adv, p.huge_eps, "linf", self.id)
        by_square = ctx.predict_logits(adv).argmax(axis=1) != y
        rows = np.flatnonzero(~by_square)
        by_move = np.zeros(m, bool)
        pool = StartPool(
            ctx.data.x,
            ctx.clean_pred,
            balanced_pool_rows(ctx.clean_pred, p.huge_pool, ctx.rng(self.id, "pool")),
        )
        if len(rows) and p.huge_moves > 0:
            moved, fooled = move_toward_other_class(
                ctx.predict_logits, x[rows], y[rows], pool, p.huge_eps, p.huge_moves
            )
            common.verify_budget(x[rows], moved, p.huge_eps, "linf", self.id)
            by_move[rows] = fooled
        acc = float(1.0 - (by_square | by_move).mean())
        text = (
            f"{common.describe_eps(p.huge_eps, 'linf')}, {p.huge_queries} queries and up to {p.huge_moves} "
            "moves toward another class"
        )
        details = {
            "eps": p.huge_eps,
            "samples": m,
            "robust_accuracy": acc,
            "fooled_by_square": int(by_square.sum()),
            "fooled_by_move_only": int(by_move.sum()),
            "pool": pool.size,
        }
        return trust.huge_eps_finding(acc, text, p.max_accuracy_at_huge_eps), details
