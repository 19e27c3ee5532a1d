"""The HopSkipJump check: distances to a misclassified input with labels only (:mod:`roadworthy.attacks.hopskipjump`).

An "always succeeds" attack: its robust accuracy means nothing without a budget, so the check reports the
distribution of the final L2 distances and the accuracy at stated budgets (pitfalls: "Numbers that lie").
An input without any misclassified start is not a robustness measurement: the check leaves it out of the
robust accuracy and counts it in ``start_failures``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from roadworthy.attacks._pool import StartPool, balanced_pool_rows
from roadworthy.attacks.hopskipjump import hop_skip_jump_result
from roadworthy.checks.attack import _common as common
from roadworthy.checks.attack import trust
from roadworthy.checks.attack.base import AttackCheck, Attempt, Sample, Shown
from roadworthy.checks.base import Block, Context, Requires, register


@dataclass(frozen=True)
class HSJParams:
    n_samples: int = 50  #: inputs attacked
    eps: float = 0.5  #: default L2 budget for ``robust_accuracy``
    sweep: tuple[float, ...] = (0.1, 0.25, 0.5, 1.0, 2.0)  #: L2 budgets of the curve
    max_queries: int = 1500  #: label queries per input
    init_evals: int = 100
    max_evals: int = 10000
    start_pool: int = 2000  #: evaluation inputs the starts are chosen from (all when there are fewer)
    max_start_failures: float = 0.1  #: warn when a larger share of the inputs gets no misclassified start
    slow_progress: float = 0.8  #: warn when the final median distance is above this share of the start's
    max_examples: int = 6
    #: trust: the iterations must shrink the median distance from the start by at least this share
    min_progress: float = trust.MIN_PROGRESS
    #: trust: largest share of found adversarial inputs that read as correct when asked again
    max_unstable: float = trust.MAX_UNSTABLE


@register
class HopSkipJump(AttackCheck):
    """HopSkipJump (Chen, Jordan, Wainwright, IEEE S&P 2020): decision-based black-box, untargeted, L2.

    Threat model: black-box evasion (NIST AI 100-2); the attacker sees only the predicted label, at most
    ``max_queries`` times per input, and holds inputs like the evaluation data (each attack starts from the
    nearest evaluation input the model puts in another class). The attack always returns some adversarial
    input, so the check reports each input's final L2 distance (``median_perturbation``) and
    ``robust_accuracy`` at a stated L2 budget: the share of inputs classified correctly whose adversarial
    input lies farther than ``eps``. Inputs for which no misclassified start exists (no evaluation input of
    another predicted class, and noise did not help) are left out of every accuracy and counted in
    ``start_failures``.

    The trust verdict is about the evaluation: the iterations must shrink the distances (``progress``), the
    adversarial inputs must stay misclassified when asked again (``stability``), and at least one input must
    have been attacked (``coverage``).
    """

    id = "attack.hopskipjump"
    title = "HopSkipJump (black-box, labels only, L2)"
    label = "HopSkipJump"
    knowledge = "decision-based black-box"
    norm = "l2"
    Params = HSJParams
    requires = Requires(modalities=frozenset({"image"}))
    budgets = frozenset({"standard", "thorough"})
    plan_queries = ("max_queries", 200)  #: a large model's plan may lower it to 200 (stated in the plan)
    budget_params = {
        "quick": {"n_samples": 32, "max_queries": 500},
        "standard": {"n_samples": 40, "max_queries": 1000},
        "thorough": {"n_samples": 250, "max_queries": 5000},
    }

    sharding = "blocks"
    shard_block = 16  # HopSkipJump is costly per input: small blocks spread over more workers

    def attack_block(self, ctx: Context, s: Sample, block: Block) -> dict[str, Any]:
        """HopSkipJump on the block's correct inputs, from a generator keyed by the block; every worker
        builds the same start pool (keyed by the check)."""
        p = self.params
        xc, yc = s.xc, s.yc
        pool = StartPool(ctx.data.x, ctx.clean_pred, self._pool_rows(ctx))

        def labels(batch: np.ndarray) -> np.ndarray:
            return ctx.predict_probs(batch).argmax(axis=1)

        r = hop_skip_jump_result(
            labels,
            xc,
            yc,
            p.max_queries,
            p.init_evals,
            p.max_evals,
            rng=ctx.rng(self.id, "block", block.index),
            pool=pool,
        )
        adv, dist = r.x_adv, r.distances
        common.verify_budget(xc, adv, np.where(np.isfinite(dist), dist, 0.0), "l2", self.id)
        pred = ctx.predict_probs(adv).argmax(axis=1) if len(adv) else np.zeros(0, int)
        labels_seen = pool.labels if pool.rows is None else pool.labels[pool.rows]
        moved = pred != yc  # only these copies travel; the others are the clean inputs again
        return {
            "pred": s.pred,
            "adv": adv[moved],
            "adv_pred": pred,
            "distances": dist,
            "start": r.start,
            "start_distances": r.start_distances,
            "queries": r.queries,
            "pool_size": pool.size,
            "pool_labels": np.unique(labels_seen),
        }

    def finish_blocks(self, ctx: Context, s: Sample, parts: list[dict[str, Any]]) -> Attempt:
        p = self.params
        name = self.id
        correct0, xc, yc = s.correct, s.xc, s.yc

        def cat(key: str, empty: np.ndarray) -> np.ndarray:
            return np.concatenate([empty, *(q[key] for q in parts)])

        dist, kind = cat("distances", np.zeros(0)), cat("start", np.zeros(0, "<U5"))
        start_distances, queries = cat("start_distances", np.zeros(0)), cat("queries", np.zeros(0))
        pred = cat("adv_pred", np.zeros(0, np.int64))
        adv = xc.copy()
        moved = pred != yc
        if moved.any():
            adv[moved] = np.concatenate([q["adv"] for q in parts if len(q["adv"])])
        pool_size = parts[0]["pool_size"] if parts else 0
        pool_labels = parts[0]["pool_labels"] if parts else np.zeros(0, np.int64)
        started = kind != "none"
        success = started & (pred != yc)
        dist = np.where(success, dist, np.inf)
        sweep = sorted({float(e) for e in (*p.sweep, p.eps)})
        # An input without a start is no robustness measurement: it leaves every accuracy's denominator.
        measured = ~correct0
        measured[correct0] = started
        n_none = int((~started).sum())
        start_failures = n_none / len(xc) if len(xc) else 0.0
        reason = self._no_start_reason(pool_labels, yc[~started])
        progress = trust.progress_finding(start_distances[success], dist[success], p.min_progress)
        findings = [
            trust.coverage_finding(len(xc), int(started.sum()), reason),
            progress,
            trust.stability_finding(pred[started] != yc[started], p.max_unstable),
        ]
        warnings = []
        if progress.ok and progress.value is not None and progress.value > p.slow_progress:
            warnings.append(
                f"HopSkipJump had not converged: the iterations shrank the median distance only to "
                f"{progress.value:.0%} of the start's, so the distances are loose upper bounds and the robust "
                "accuracy reads high (raise max_queries, or run the thorough budget)"
            )
        if started.any() and start_failures > p.max_start_failures:
            warnings.append(
                f"no misclassified start for {n_none} of {len(xc)} inputs ({reason}); they are left out of "
                "the robust accuracy"
            )
        return Attempt(
            broken={e: common.fill_in(correct0, dist <= e, False) for e in sweep},
            default=p.eps,
            strengths=sweep,
            min_strength=common.fill_in(correct0, dist, np.inf),
            queries=common.fill_in(correct0, queries, 0.0),
            measured=measured,
            findings=findings,
            metrics={f"{name}.start_failures": start_failures},
            details={
                "starts": {
                    "attacked": len(xc),
                    "from_input": int((kind == "input").sum()),
                    "from_noise": int((kind == "noise").sum()),
                    "none": n_none,
                    "pool": pool_size,
                    "median_start_distance": float(np.median(start_distances[started]))
                    if started.any()
                    else None,
                }
            },
            warnings=warnings,
            shown=Shown(xc, adv, yc, pred, success, "HopSkipJump (final distance)"),
        )

    def query_budget(self) -> int:
        return int(self.params.max_queries)

    def threat_extra(self, s: Sample) -> dict[str, str]:
        return {"start": "the nearest evaluation input of another predicted class; uniform noise where none"}

    def summary(self, metrics: dict[str, float], s: Sample, a: Attempt, statement: str) -> str:
        name, p = self.id, self.params
        med = metrics.get(f"{name}.median_perturbation", math.nan)
        n_none = int(len(s.xc) - (a.measured & s.correct).sum()) if a.measured is not None else 0
        left_out = f"; {n_none} inputs without a start left out" if n_none else ""
        return (
            f"HopSkipJump: median L2 distance to a misclassified input {med:.3g} with at most {p.max_queries} "
            f"label queries; robust accuracy {metrics[f'{name}.robust_accuracy']:.1%} at L2 {p.eps:g}"
            f"{left_out}; {statement}."
        )

    def _pool_rows(self, ctx: Context) -> np.ndarray | None:
        """Up to ``start_pool`` evaluation rows, the same number from each predicted class (all if fewer)."""
        return balanced_pool_rows(ctx.clean_pred, self.params.start_pool, ctx.rng(self.id, "pool"))

    @staticmethod
    def _no_start_reason(pool_labels: np.ndarray, y: np.ndarray) -> str:
        """Why the inputs labelled ``y`` got no start (``pool_labels``: the start pool's predicted
        classes), in words."""
        labels = set(np.asarray(pool_labels).tolist())
        if len(y) and all(labels <= {int(c)} for c in y):
            return "the model predicts no other class on the evaluation data, and no noise input was misclassified"
        return "no evaluation input of another predicted class, nor noise, read as misclassified when tried"
