"""Square Attack (Andriushchenko, Croce, Flammarion, Hein, ECCV 2020): score-based black-box, L-inf.

Random search over the vertices of the L-inf ball: start from vertical stripes of +-eps, then repeatedly
redraw the perturbation inside one random square window (side shrinking on a fixed schedule) and keep the
change when the margin loss ``z_y - max_{i!=y} z_i`` falls. Needs only the model's scores, so it runs on
any model, and it is immune to gradient masking: a Square Attack that beats PGD is a warning sign.

The self-check at a huge strength (L-inf 0.5 by default: a working attack fools about every input there)
also moves each input toward the nearest evaluation input of another predicted class, as far as the
strength allows. A random search at that strength draws noise-like images, and a healthy CNN that maps all
noise to one class keeps that class's inputs correct against every one of them; the move shows that those
inputs are breakable at that strength all the same, so the check judges the evaluation, not the search's
start.
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


@dataclass(frozen=True)
class SquareResult:
    """What :func:`square_attack_result` found, per input.

    Attributes
    ----------
    x_adv
        The inputs with the lowest margin found (misclassified where the attack succeeded).
    queries
        Model queries spent per input.
    margins
        ``z_y - max_{i!=y} z_i`` of ``x_adv`` as the attack last saw it: negative where the attack counted
        the input as fooled. A model whose answers change between calls may answer otherwise when asked
        again.
    """

    x_adv: np.ndarray
    queries: np.ndarray
    margins: np.ndarray


def square_attack(
    scores: ScoresFn,
    x: np.ndarray,
    y: np.ndarray,
    eps: float,
    max_queries: int = 1000,
    p_init: float = 0.8,
    rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Untargeted L-inf Square Attack; ``(x_adv, queries)`` of :func:`square_attack_result`."""
    r = square_attack_result(scores, x, y, eps, max_queries, p_init, rng)
    return r.x_adv, r.queries


def square_attack_result(
    scores: ScoresFn,
    x: np.ndarray,
    y: np.ndarray,
    eps: float,
    max_queries: int = 1000,
    p_init: float = 0.8,
    rng: np.random.Generator | None = None,
) -> SquareResult:
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
    SquareResult
        Adversarial inputs (misclassified where the attack succeeded, inside the ball and [0, 1]), the
        number of queries spent on each input and the margins the attack last saw.
    """
    if not 0 < eps <= 1:
        raise ValueError(f"`eps` must be in (0, 1]. Got {eps} instead.")
    if max_queries < 1:
        raise ValueError(f"`max_queries` must be >= 1. Got {max_queries} instead.")
    rng = rng or np.random.default_rng(0)
    x = np.asarray(x, np.float32)
    n, c, h, w = x.shape
    if n == 0:
        return SquareResult(x.copy(), np.zeros(0), np.zeros(0))
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
    return SquareResult(x_adv, queries, margin)


def move_toward_other_class(
    scores: ScoresFn,
    x: np.ndarray,
    y: np.ndarray,
    pool: common.StartPool,
    eps: float,
    tries: int = 3,
) -> tuple[np.ndarray, np.ndarray]:
    """Move each input toward its nearest pool inputs of another predicted class, inside the L-inf ball.

    Each try clips ``x_other - x`` to ``[-eps, eps]`` for the next nearest (L2) pool input ``x_other``
    labelled other than ``y`` and asks the model once; an input stops at its first misclassified move. At
    a strength near 0.5 the moved input is close to ``x_other``, which the model puts in another class.

    Parameters
    ----------
    scores
        ``scores(x) -> (N, K)`` logits; only their argmax is used.
    x, y
        Inputs in [0, 1] and their labels.
    pool
        The evaluation inputs to move toward, with the class the model predicts for each.
    eps
        L-inf strength.
    tries
        Pool inputs tried per input, nearest first (one query each).

    Returns
    -------
    (x_moved, fooled)
        The last move tried per input (the first one that fooled the model where one did; the input itself
        where the pool has no input of another class) and whether it fooled the model.
    """
    x = np.asarray(x, np.float32)
    moved = x.copy()
    fooled = np.zeros(len(x), bool)
    cand = pool.nearest_other(x, y, tries)
    for t in range(cand.shape[1]):
        todo = np.flatnonzero(~fooled & (cand[:, t] >= 0))
        if len(todo) == 0:
            break
        other = np.asarray(pool.x[cand[todo, t]], np.float32)
        trial = np.clip(x[todo] + np.clip(other - x[todo], -eps, eps), 0, 1).astype(np.float32)
        moved[todo] = trial
        fooled[todo] = np.asarray(scores(trial)).argmax(axis=1) != y[todo]
    return moved, fooled


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


@register
class SquareAttack(Check):
    """Square Attack (Andriushchenko et al., ECCV 2020): score-based black-box, untargeted, L-inf.

    Threat model: black-box evasion at deployment (NIST AI 100-2): the attacker only queries the model and
    reads its scores, at most ``max_queries`` times per input, and changes each pixel by at most ``eps``.
    ``attack.square.robust_accuracy`` is the share of inputs still classified correctly; ``queries`` the
    mean queries spent per initially correct input at the default strength (the cap where it failed).

    The trust verdict is about the evaluation: at a huge strength (``huge_eps``) at most 10% of the
    inputs may stay correct against both a Square run and a move toward the nearest evaluation input of
    another predicted class (``details.trust.huge_eps`` counts what each fooled). An evaluation that leaves
    more standing where almost every input is breakable measures nothing: the search is broken, or the
    model's answers hide its weakness from it.
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
        still_fooled = []  # per input the attack counted as fooled: misclassified when asked again?
        with ctx.progress.task(f"Square Attack on {len(xc)} inputs", total=len(sweep) + 1) as task:
            for e in sweep:
                rows = np.flatnonzero(~found)
                flip = np.zeros(len(xc), bool)
                if len(rows):
                    r = square_attack_result(
                        ctx.predict_logits, xc[rows], yc[rows], e, p.max_queries, p.p_init, ctx.rng(name, e)
                    )
                    adv, q = r.x_adv, r.queries
                    common.verify_budget(xc[rows], adv, e, "linf", name)
                    pred = ctx.predict_logits(adv).argmax(axis=1)
                    f = pred != yc[rows]
                    still_fooled.append(f[r.margins < 0])
                    flip[rows[f]] = True
                    best_adv[rows[f]], best_pred[rows[f]] = adv[f], pred[f]
                    hi[rows[f]] = e
                    if e <= p.eps:
                        q_default[rows] = q
                found |= flip
                raw[e] = found.copy()
                task.advance()
            huge, huge_details = self._huge_check(ctx, xc, yc)
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
        findings.append(trust.stability_finding(np.concatenate([np.zeros(0, bool), *still_fooled])))
        ok, statement, warnings = trust.verdict(findings)
        metrics[f"{name}.trustworthy"] = 1.0 if ok else 0.0
        details["trust"] = {
            "trustworthy": ok,
            "statement": statement,
            "findings": [f.as_dict() for f in findings],
            "huge_eps": huge_details,
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
        pool = common.StartPool(
            ctx.data.x,
            ctx.clean_pred,
            common.balanced_pool_rows(ctx.clean_pred, p.huge_pool, ctx.rng(self.id, "pool")),
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
        return trust.huge_eps_finding(acc, text), details

    @staticmethod
    def figures(result: CheckResult) -> list[tuple[str, str]]:
        return common.curve_figures(result)
