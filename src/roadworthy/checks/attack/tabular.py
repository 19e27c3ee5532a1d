"""Schema-respecting evasion attacks on tabular models: ``attack.tab_score``, ``attack.tab_boundary`` and,
for differentiable models, ``attack.tab_pgd``.

All attack a stratified sample of the evaluation rows that the model classifies correctly, at graded
budgets ``eps`` in standard deviations of each numeric feature (L-inf, standardised), never touching an
immutable column and never leaving the feature schema (integers stay whole, categories stay observed
levels, values stay in the observed range, at most one categorical or binary column changed). The
algorithms are :mod:`roadworthy.attacks.tabular`; the checks measure and list the features the attacks
changed most often, and ``details.validity`` says how many rows flipped at the default budget the
session's validity gate still calls in-distribution.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from roadworthy import evidence
from roadworthy.attacks.tabular import (
    TabularAttack,
    boundary_attack,
    category_units,
    changed_units,
    pgd_attack,
    score_attack,
)
from roadworthy.checks.base import Check, Context, Outcome, Requires, register
from roadworthy.checks.reference import gate_plan_passes, validity_gate
from roadworthy.checks.tabular import schema_for
from roadworthy.errors import RoadworthyError
from roadworthy.schema import Schema
from roadworthy.stats import proportion_metrics

TABULAR = Requires(modalities=frozenset({"tabular"}))
WHITE_BOX_TABLES = Requires(capabilities=frozenset({"white_box"}), modalities=frozenset({"tabular"}))


def _eps_key(eps: float) -> str:
    return f"eps_{float(eps):.5f}"


@dataclass(frozen=True)
class TabularAttackParams:
    """Parameters of the tabular attacks.

    Attributes
    ----------
    n_samples
        Rows sampled (stratified) from the evaluation data; those the model gets wrong are counted as
        broken at every budget without being attacked.
    eps
        Budgets in standard deviations per numeric feature, smallest first.
    default_eps
        The budget of ``attack.<a>.robust_accuracy`` (one of ``eps``).
    steps
        Random-search proposals per row and budget (score attack); binary-search steps (boundary attack).
    top_features
        How many of the most often changed features the report lists.
    """

    n_samples: int = 500
    eps: tuple[float, ...] = (0.1, 0.25, 0.5, 1.0)
    default_eps: float = 0.5
    steps: int = 100
    top_features: int = 10


class TabularAttackCheck(Check):
    """Base of the tabular attacks: sampling, budgets, metrics, changed features, schema self-check."""

    label: ClassVar[str]
    knowledge: ClassVar[str]
    requires = TABULAR
    Params = TabularAttackParams
    budget_params: ClassVar[dict[str, dict[str, Any]]] = {
        "quick": {"n_samples": 200, "steps": 40},
        "thorough": {"n_samples": 2000, "steps": 300},
    }

    def attack_at(
        self, ctx: Context, x: np.ndarray, y: np.ndarray, schema: Schema
    ) -> dict[float, TabularAttack]:
        raise NotImplementedError

    @classmethod
    def plan_shared_work(cls, params: Any, n_data: int, n_train: int, budget: str) -> dict[str, float]:
        """Fitting the validity gate that judges the flipped rows (once per run, whichever check is first)."""
        return {"ood.validity_gate": gate_plan_passes(n_data, n_train, budget, image=False)}

    def run(self, ctx: Context) -> Outcome:
        p: TabularAttackParams = self.params
        schema = schema_for(ctx)
        name = self.id.split(".", 1)[1]
        idx = ctx.sample(min(p.n_samples, ctx.data.n_samples), self.id)
        x, y = ctx.data.x[idx].reshape(len(idx), -1).astype(np.float32), ctx.data.y[idx]
        n = len(idx)
        correct = ctx.clean_pred[idx] == y
        base = {"schema": schema.to_dict(), "n_samples": n}
        if not len(schema.indices()):
            return Outcome(
                details=base | {"supported": False, "reason": "every column is immutable"},
                summary="Not applicable to this table: every column is immutable, so nothing can be attacked.",
            )
        rows = np.flatnonzero(correct)
        results = self.attack_at(ctx, x[rows], y[rows], schema) if rows.size else {}
        metrics: dict[str, float] = {}
        per_eps: list[dict[str, Any]] = []
        violations = {"immutable": 0, "integer": 0, "levels": 0, "range": 0, "missing": 0}
        changed: Counter[str] = Counter()
        queries = []
        adv_default = np.zeros((0, x.shape[1]), np.float32)
        for eps in p.eps:
            standing = correct.copy()
            res = results.get(eps)
            if res is not None:
                broken = self.broken(res, x[rows], eps, schema)
                standing[rows[broken]] = False
                for k, v in schema.violations(res.adversarial[broken], x[rows][broken]).items():
                    violations[k] += v
                queries.append(float(res.queries.mean()))
                if eps == p.default_eps:
                    adv_default = res.adversarial[broken]
                    diff = res.adversarial[broken] != x[rows][broken]
                    changed.update({schema.names[j]: int(diff[:, j].sum()) for j in range(len(schema))})
            metrics |= proportion_metrics(f"attack.{name}.{_eps_key(eps)}.robust_accuracy", standing)
            per_eps.append(
                {
                    "eps": eps,
                    "robust_accuracy": float(standing.mean()),
                    "broken": int(correct.sum() - standing.sum()),
                }
            )
        default = next(r for r in per_eps if r["eps"] == p.default_eps)
        metrics |= {
            k.replace(f".{_eps_key(p.default_eps)}.", "."): v
            for k, v in metrics.items()
            if f".{_eps_key(p.default_eps)}." in k
        }
        if correct.sum():
            metrics |= proportion_metrics(
                f"attack.{name}.success_rate", default["broken"], int(correct.sum())
            )
        if queries:
            metrics[f"attack.{name}.queries"] = float(np.mean(queries))
        median = self.median_perturbation(results, schema)
        if median is not None:
            metrics[f"attack.{name}.median_perturbation"] = median
        top = [{"feature": f, "changed_rows": c} for f, c in changed.most_common() if c][: p.top_features]
        bad = {k: v for k, v in violations.items() if v}
        warnings = [f"{self.id} left the feature schema ({bad}): a bug, please report it"] if bad else []
        eps_text = f"{p.default_eps:g} standard deviations per numeric feature (L-inf), one category"
        details = base | {
            "supported": True,
            "attacked": int(correct.sum()),
            "per_eps": per_eps,
            "most_changed_features": top,
            "schema_violations": violations,
            "threat_model": {
                "knowledge": self.knowledge,
                "norm": "linf (standard deviations)",
                "eps": list(p.eps),
                "eps_text": eps_text,
                "immutable": schema.to_dict()["immutable"],
            },
            evidence.KEY: [
                evidence.lines(
                    f"{self.label}: robust accuracy by budget",
                    {self.label: ([r["eps"] for r in per_eps], [r["robust_accuracy"] for r in per_eps])},
                    "eps (standard deviations per feature)",
                    "robust accuracy",
                )
            ],
        }
        details["validity"] = _validity(ctx, adv_default)
        if top:
            details[evidence.KEY].append(
                evidence.bars(
                    f"Features the {self.label} changed most often at eps {p.default_eps:g}",
                    [t["feature"] for t in top],
                    {"rows changed": [t["changed_rows"] for t in top]},
                    "successful attacks that changed it",
                )
            )
        lead = f"{self.label}: robust accuracy {default['robust_accuracy']:.1%} at {eps_text}"
        summary = lead + (
            f"; most often changed: {', '.join(t['feature'] for t in top[:3])}." if top else "."
        )
        v = details["validity"]
        if v.get("broken"):
            summary += (
                f" {v['in_envelope']} of {v['broken']} flipped rows still look like real rows ({v['gate']})."
            )
        return Outcome(metrics=metrics, details=details, warnings=warnings, summary=summary)

    def broken(self, res: TabularAttack, x: np.ndarray, eps: float, schema: Schema) -> np.ndarray:
        """Rows the attack flipped within ``eps`` and with at most one categorical change (a one-hot group
        counts as one column)."""
        n_cat = changed_units(res.adversarial, x, category_units(schema)).sum(axis=1)
        return res.success & (res.distance <= eps + 1e-6) & (n_cat <= 1)

    def median_perturbation(self, results: dict[float, TabularAttack], schema: Schema) -> float | None:
        return None


def _validity(ctx: Context, adversarial: np.ndarray) -> dict[str, Any]:
    """How many of the rows an attack flipped at the default budget the session's validity gate (on a
    table, usually an input-space detector) still calls in-distribution: flips a real row could show."""
    try:
        gate = validity_gate(ctx)
    except (RoadworthyError, ValueError, np.linalg.LinAlgError) as exc:
        return {"gate": None, "reason": f"the validity gate could not be fitted ({exc})"}
    if gate is None:
        return {"gate": None, "reason": "the validity gate could not be fitted on this model and data"}
    inside = gate.in_envelope(adversarial) if len(adversarial) else np.zeros(0, bool)
    return {
        "gate": gate.detector.name,
        "broken": len(adversarial),
        "in_envelope": int(inside.sum()),
        "out_of_envelope": int(len(adversarial) - inside.sum()),
    }


@register
class TabularScoreAttack(TabularAttackCheck):
    """Score-based random search within the feature schema (SimBA, Guo et al. ICML 2019; Square, ECCV 2020).

    Threat model: black-box evasion at deployment with access to the class probabilities, untargeted; the
    attacker edits mutable columns by at most ``eps`` standard deviations per numeric feature and one
    categorical column, staying on the schema. ``attack.tab_score.eps_<e>.robust_accuracy`` is the share
    of sampled rows still classified correctly after the attack at budget ``e``;
    ``attack.tab_score.robust_accuracy`` the same at ``default_eps``; ``success_rate`` the share of
    correctly classified rows flipped there; ``queries`` the mean model queries per row and budget.
    """

    id = "attack.tab_score"
    title = "Tabular score-based attack (black-box, schema-projected)"
    label = "score attack"
    knowledge = "score-based black-box"

    def attack_at(
        self, ctx: Context, x: np.ndarray, y: np.ndarray, schema: Schema
    ) -> dict[float, TabularAttack]:
        p: TabularAttackParams = self.params
        out = {}
        with ctx.progress.task("attack tab_score", total=len(p.eps)) as task:
            for eps in p.eps:
                out[eps] = score_attack(
                    ctx.predict_probs, x, y, schema, eps, ctx.rng(self.id, eps), steps=p.steps
                )
                task.advance()
        return out


@register
class TabularBoundaryAttack(TabularAttackCheck):
    """Decision-based minimum-norm attack within the feature schema (HopSkipJump, S&P 2020; Boundary, ICLR 2018).

    Threat model: black-box evasion with access to the predicted label only, untargeted. Each row starts
    from the nearest evaluation row the model labels otherwise (with the input's immutable columns),
    binary-searches towards the input and resets features to the input's values while the label stays
    wrong; the smallest flipping change it finds answers every budget at once.
    ``attack.tab_boundary.eps_<e>.robust_accuracy`` is the share still correct with no flip found within
    ``e`` standard deviations (and at most one categorical change); ``median_perturbation`` the median
    standardised L-inf size of the flips found; ``queries`` the mean label queries per row.
    """

    id = "attack.tab_boundary"
    title = "Tabular boundary attack (decision-based, schema-projected)"
    label = "boundary attack"
    knowledge = "decision-based black-box"

    def attack_at(
        self, ctx: Context, x: np.ndarray, y: np.ndarray, schema: Schema
    ) -> dict[float, TabularAttack]:
        p: TabularAttackParams = self.params
        pool = ctx.data.x.reshape(ctx.data.n_samples, -1)
        with ctx.progress.task("attack tab_boundary", total=1) as task:
            res = boundary_attack(
                ctx.predict_probs, x, y, schema, pool, ctx.rng(self.id), search_steps=min(p.steps, 16)
            )
            task.advance()
        return dict.fromkeys(p.eps, res)

    def median_perturbation(self, results: dict[float, TabularAttack], schema: Schema) -> float | None:
        if not results:
            return None
        d = next(iter(results.values())).distance
        d = d[np.isfinite(d)]
        return float(np.median(d)) if d.size else None


@dataclass(frozen=True)
class TabularPGDParams(TabularAttackParams):
    """:class:`TabularAttackParams` with ``steps`` the gradient steps per budget (20 by default) and
    ``category_candidates``, the level changes the greedy categorical step evaluates per row and step when
    the table has more (ranked by the gradient; 8 by default)."""

    steps: int = 20
    category_candidates: int = 8


@register
class TabularPGDAttack(TabularAttackCheck):
    """Projected Gradient Descent within the feature schema (Madry et al., ICLR 2018), for differentiable models.

    Threat model: white-box evasion at deployment (the attacker has the model's input gradient),
    untargeted; the attacker edits mutable numeric columns by at most ``eps`` standard deviations each
    (L-inf, standardised), every row the model is shown lies on the schema (integers whole, values in the
    observed range, immutable columns untouched); categorical and binary columns move by a greedy discrete
    step after every gradient step (the single level change that raises the loss most, one column at
    most), so a model that relies on a category gets it changed. ``attack.tab_pgd.eps_<e>.robust_accuracy`` is the share of sampled rows
    still classified correctly after the attack at budget ``e``; ``robust_accuracy`` the same at
    ``default_eps``; ``success_rate`` the share of correctly classified rows flipped there; ``queries`` the
    mean forward and backward passes per row and budget.
    """

    id = "attack.tab_pgd"
    title = "Tabular PGD (white-box, schema-projected)"
    label = "PGD"
    knowledge = "white-box (input gradients)"
    requires = WHITE_BOX_TABLES
    Params = TabularPGDParams
    budget_params: ClassVar[dict[str, dict[str, Any]]] = {
        "quick": {"n_samples": 200, "steps": 10},
        "thorough": {"n_samples": 2000, "steps": 50},
    }

    def attack_at(
        self, ctx: Context, x: np.ndarray, y: np.ndarray, schema: Schema
    ) -> dict[float, TabularAttack]:
        p: TabularPGDParams = self.params
        model = ctx.model
        out = {}
        with ctx.progress.task("attack tab_pgd", total=len(p.eps)) as task:
            for eps in p.eps:
                out[eps] = pgd_attack(
                    model.forward_torch,  # type: ignore[attr-defined]
                    x,
                    y,
                    schema,
                    eps,
                    ctx.rng(self.id, eps),
                    steps=p.steps,
                    device=str(getattr(model, "device", "cpu")),
                    category_candidates=p.category_candidates,
                )
                task.advance()
        return out
