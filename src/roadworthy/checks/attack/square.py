"""Square Attack (Andriushchenko, Croce, Flammarion, Hein, ECCV 2020): score-based black-box, L-inf.

Random search over the vertices of the L-inf ball: start from vertical stripes of +-eps, then repeatedly
redraw the perturbation inside one random square window (side shrinking on a fixed schedule) and keep the
change when the margin loss ``z_y - max_{i!=y} z_i`` falls. Needs only the model's scores, so it runs on
any model, and it is immune to gradient masking: a Square Attack that beats PGD is a warning sign.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from roadworthy.checks.attack import _common as common
from roadworthy.checks.attack import trust
from roadworthy.checks.base import Check, Context, Outcome, Requires, register
from roadworthy.results import CheckResult

ScoresFn = Callable[[np.ndarray], np.ndarray]


def margins(logits: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``z_y - max_{i!=y} z_i`` per row: negative exactly when the row is misclassified."""
    z = np.asarray(logits, np.float64)
    zy = z[np.arange(len(y)), y]
    other = z.copy()
    other[np.arange(len(y)), y] = -np.inf
    return zy - other.max(axis=1)


def p_schedule(p_init: float, it: int, max_queries: int) -> float:
    """Share of the image covered by the square at iteration ``it`` (the paper's schedule, rescaled to 10,000)."""
    i = int(it / max(1, max_queries) * 10000)
    for bound, div in (
        (8000, 512),
        (6000, 256),
        (4000, 128),
        (2000, 64),
        (1000, 32),
        (500, 16),
        (200, 8),
        (50, 4),
        (10, 2),
    ):
        if i > bound:
            return p_init / div
    return p_init


def square_attack(
    scores: ScoresFn,
    x: np.ndarray,
    y: np.ndarray,
    eps: float,
    max_queries: int = 1000,
    p_init: float = 0.8,
    rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Untargeted L-inf Square Attack on images ``x`` (NCHW in [0, 1]) with labels ``y``.

    Parameters
    ----------
    scores
        ``scores(x) -> (N, K)`` logits (or log-probabilities); only these are used, no gradients.
    eps
        L-inf budget in pixel units.
    max_queries
        Model queries allowed per input, the initialisation included; never exceeded.
    p_init
        Initial share of the image the square covers.

    Returns
    -------
    (x_adv, queries)
        Adversarial inputs (misclassified where the attack succeeded, inside the ball and [0, 1]) and the
        number of queries spent on each input.
    """
    if not 0 < eps <= 1:
        raise ValueError(f"`eps` must be in (0, 1]. Got {eps} instead.")
    if max_queries < 1:
        raise ValueError(f"`max_queries` must be >= 1. Got {max_queries} instead.")
    rng = rng or np.random.default_rng(0)
    x = np.asarray(x, np.float32)
    n, c, h, w = x.shape
    if n == 0:
        return x.copy(), np.zeros(0)
    x_adv = np.clip(x + eps * rng.choice([-1.0, 1.0], size=(n, c, 1, w)).astype(np.float32), 0, 1)
    margin = margins(scores(x_adv), y)
    queries = np.ones(n)
    for it in range(1, max_queries):
        act = np.flatnonzero(margin > 0)
        if len(act) == 0:
            break
        side = round(math.sqrt(p_schedule(p_init, it, max_queries) * h * w))
        side = min(max(side, 1), h - 1 if h > 1 else 1, w - 1 if w > 1 else 1)
        m = len(act)
        r0 = rng.integers(0, h - side + 1, size=m)
        c0 = rng.integers(0, w - side + 1, size=m)
        signs = rng.choice([-1.0, 1.0], size=(m, c, 1, 1)).astype(np.float32)
        rows = r0[:, None] + np.arange(side)
        cols = c0[:, None] + np.arange(side)
        ii = np.arange(m)[:, None, None, None]
        cc = np.arange(c)[None, :, None, None]
        rr = rows[:, None, :, None]
        ww = cols[:, None, None, :]
        cand = x_adv[act].copy()
        window = x[act][ii, cc, rr, ww]
        cand[ii, cc, rr, ww] = np.clip(window + eps * signs, 0, 1)
        new_margin = margins(scores(cand), y[act])
        queries[act] += 1
        better = new_margin < margin[act]
        x_adv[act[better]] = cand[better]
        margin[act[better]] = new_margin[better]
    return x_adv, queries


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
    max_examples: int = 6


@register
class SquareAttack(Check):
    """Square Attack (Andriushchenko et al., ECCV 2020): score-based black-box, untargeted, L-inf.

    Threat model: black-box evasion at deployment (NIST AI 100-2): the attacker only queries the model and
    reads its scores, at most ``max_queries`` times per input, and changes each pixel by at most ``eps``.
    ``attack.square.robust_accuracy`` is the share of inputs still classified correctly; ``queries`` the
    mean queries spent per initially correct input at the default strength (the cap where it failed).
    """

    id = "attack.square"
    title = "Square Attack (black-box, L-inf)"
    Params = SquareParams
    requires = Requires(modalities=frozenset({"image"}))
    budget_params = {
        "quick": {
            "n_samples": 48,
            "sweep": (8 / 255,),
            "max_queries": 200,
            "huge_samples": 8,
            "huge_queries": 50,
        },
        "standard": {"n_samples": 64, "max_queries": 1000},
        "thorough": {"n_samples": 500, "max_queries": 5000, "huge_samples": 64},
    }

    def run(self, ctx: Context) -> Outcome:
        p = self.params
        name = self.id
        _idx, x, y, pred0 = common.attack_sample(ctx, p.n_samples)
        correct0 = pred0 == y
        xc, yc = x[correct0], y[correct0]
        sweep = sorted({float(e) for e in (*p.sweep, p.eps)})
        found = np.zeros(len(xc), bool)
        best_adv, best_pred = xc.copy(), yc.copy()
        hi = np.full(len(xc), np.inf)
        q_default = np.zeros(len(xc))
        raw = {}
        with ctx.progress.task(f"Square Attack on {len(xc)} inputs", total=len(sweep) + 1) as task:
            for e in sweep:
                rows = np.flatnonzero(~found)
                flip = np.zeros(len(xc), bool)
                if len(rows):
                    adv, q = square_attack(
                        ctx.predict_logits, xc[rows], yc[rows], e, p.max_queries, p.p_init, ctx.rng(name, e)
                    )
                    common.verify_budget(xc[rows], adv, e, "linf", name)
                    pred = ctx.predict_logits(adv).argmax(axis=1)
                    f = pred != yc[rows]
                    flip[rows[f]] = True
                    best_adv[rows[f]], best_pred[rows[f]] = adv[f], pred[f]
                    hi[rows[f]] = e
                    if e <= p.eps:
                        q_default[rows] = q
                found |= flip
                raw[e] = found.copy()
                task.advance()
            huge = self._huge_check(ctx, xc, yc)
            task.advance()

        broken = {e: common.fill_in(correct0, b, False) for e, b in raw.items()}
        metrics, details = common.sweep_metrics(
            name,
            y,
            correct0,
            broken,
            p.eps,
            common.fill_in(correct0, hi, np.inf),
            ctx.class_name,
            common.fill_in(correct0, q_default, 0.0),
            "linf",
        )
        findings = [huge] if huge is not None else []
        ok, statement, warnings = trust.verdict(findings)
        metrics[f"{name}.trustworthy"] = 1.0 if ok else 0.0
        details["trust"] = {
            "trustworthy": ok,
            "statement": statement,
            "findings": [f.as_dict() for f in findings],
        }
        details["threat_model"] = common.threat_model(
            "score-based black-box", "linf", p.eps, sweep, p.max_queries, samples=len(y), p_init=p.p_init
        )
        chosen = common.pick_examples(found & (hi <= p.eps), p.max_examples, ctx.rng(name, "examples"))
        examples = common.adversarial_examples(ctx, xc, best_adv, yc, best_pred, chosen, "Square Attack")
        ra = metrics[f"{name}.robust_accuracy"]
        summary = (
            f"Square Attack: robust accuracy {ra:.1%} at {common.describe_eps(p.eps, 'linf')} with at most "
            f"{p.max_queries} queries per input ({len(y)} inputs); {statement}."
        )
        return Outcome(
            metrics=metrics, details=details, examples=examples, warnings=warnings, summary=summary
        )

    def _huge_check(self, ctx: Context, xc: np.ndarray, yc: np.ndarray) -> trust.Finding | None:
        p = self.params
        m = min(len(xc), p.huge_samples)
        if m == 0 or p.huge_queries < 1:
            return None
        adv, _ = square_attack(
            ctx.predict_logits, xc[:m], yc[:m], p.huge_eps, p.huge_queries, p.p_init, ctx.rng(self.id, "huge")
        )
        common.verify_budget(xc[:m], adv, p.huge_eps, "linf", self.id)
        acc = float((ctx.predict_logits(adv).argmax(axis=1) == yc[:m]).mean())
        text = f"{common.describe_eps(p.huge_eps, 'linf')}, {p.huge_queries} queries"
        return trust.huge_eps_finding(acc, text)

    @staticmethod
    def figures(result: CheckResult) -> list[tuple[str, str]]:
        return common.curve_figures(result)
