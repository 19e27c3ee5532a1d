"""HopSkipJump (Chen, Jordan, Wainwright, IEEE S&P 2020): decision-based black-box, L2.

Needs only the model's top label. It starts from any misclassified input (random noise, pulled towards
the original by binary search), then repeats: binary search to the decision boundary, estimate the
boundary's normal from the labels of random probes around that point, step along it (geometric step
search), and search back to the boundary. The distance to the original shrinks each iteration.

An "always succeeds" attack: its robust accuracy means nothing without a budget, so the check reports the
distribution of the final L2 distances and the accuracy at stated budgets (pitfalls: "Numbers that lie").
All samples are attacked in lock-step so that each step is one batched model call.
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

LabelsFn = Callable[[np.ndarray], np.ndarray]

#: At most this many probe images are built in memory at once (per chunk of inputs).
_MAX_PROBES = 16384


class _Oracle:
    """Counts queries per input and answers "is this input misclassified?"."""

    def __init__(self, labels: LabelsFn, y: np.ndarray) -> None:
        self.labels = labels
        self.y = y
        self.queries = np.zeros(len(y))

    def adversarial(self, x: np.ndarray, rows: np.ndarray) -> np.ndarray:
        if len(rows) == 0:
            return np.zeros(0, bool)
        np.add.at(self.queries, rows, 1)
        return self.labels(x) != self.y[rows]


def _l2(d: np.ndarray) -> np.ndarray:
    return np.sqrt((d.reshape(len(d), -1).astype(np.float64) ** 2).sum(axis=1))


def _blend(x0: np.ndarray, x1: np.ndarray, a: np.ndarray) -> np.ndarray:
    return ((1 - a).reshape(-1, *[1] * (x0.ndim - 1)) * x0 + a.reshape(-1, *[1] * (x0.ndim - 1)) * x1).astype(
        np.float32
    )


def _boundary_search(
    oracle: _Oracle, rows: np.ndarray, x0: np.ndarray, x_adv: np.ndarray, theta: float
) -> np.ndarray:
    """Binary search on the segment ``x0 -> x_adv`` for the adversarial point nearest ``x0`` (to ``theta``)."""
    lo = np.zeros(len(rows))
    hi = np.ones(len(rows))
    while True:
        todo = np.flatnonzero(hi - lo > theta)
        if len(todo) == 0:
            break
        mid = (lo[todo] + hi[todo]) / 2
        adv = oracle.adversarial(_blend(x0[todo], x_adv[todo], mid), rows[todo])
        hi[todo[adv]] = mid[adv]
        lo[todo[~adv]] = mid[~adv]
    return _blend(x0, x_adv, hi)


def _initialise(
    oracle: _Oracle, x0: np.ndarray, rng: np.random.Generator, tries: int
) -> tuple[np.ndarray, np.ndarray]:
    """Uniform noise until misclassified (up to ``tries`` per input); ``(x_start, ok)``."""
    n = len(x0)
    start = x0.copy()
    ok = np.zeros(n, bool)
    for _ in range(tries):
        todo = np.flatnonzero(~ok)
        if len(todo) == 0:
            break
        noise = rng.uniform(0, 1, size=(len(todo), *x0.shape[1:])).astype(np.float32)
        adv = oracle.adversarial(noise, todo)
        start[todo[adv]] = noise[adv]
        ok[todo[adv]] = True
    return start, ok


def hop_skip_jump(
    labels: LabelsFn,
    x: np.ndarray,
    y: np.ndarray,
    max_queries: int = 1000,
    init_evals: int = 100,
    max_evals: int = 10000,
    gamma: float = 1.0,
    init_tries: int = 100,
    rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Untargeted L2 HopSkipJump on inputs ``x`` (in [0, 1]) correctly labelled ``y``.

    Parameters
    ----------
    labels
        ``labels(x) -> (N,)`` predicted classes: the only access to the model.
    max_queries
        Model queries allowed per input (initialisation included); never exceeded.
    init_evals, max_evals
        Probes for the first gradient estimate (grows as ``init_evals * sqrt(t)``) and their cap.
    gamma
        Binary-search precision ``theta = gamma / d^{3/2}`` (``d`` = input size).

    Returns
    -------
    (x_adv, distances, queries)
        Adversarial inputs (the original where no start was found), their L2 distance (``inf`` where the
        attack failed) and the queries spent per input.
    """
    if max_queries < 1:
        raise ValueError(f"`max_queries` must be >= 1. Got {max_queries} instead.")
    rng = rng or np.random.default_rng(0)
    x = np.asarray(x, np.float32)
    len(x)
    d = int(np.prod(x.shape[1:]))
    theta = gamma / (d * math.sqrt(d))
    bs_steps = math.ceil(math.log2(1 / theta))
    oracle = _Oracle(labels, y)
    start, ok = _initialise(oracle, x, rng, min(init_tries, max(1, max_queries // 4)))
    rows = np.flatnonzero(ok)
    cur = x.copy()
    if len(rows):
        cur[rows] = _boundary_search(oracle, rows, x[rows], start[rows], theta)
    dist = np.where(ok, _l2(cur - x), np.inf)
    t = 0
    while True:
        t += 1
        n_evals = int(min(init_evals * math.sqrt(t), max_evals))
        # An iteration costs the probes, up to ~10 step halvings and a binary search.
        room = max_queries - oracle.queries
        n_evals_each = np.minimum(n_evals, room - bs_steps - 12)
        act = np.flatnonzero(ok & (n_evals_each >= 10))
        if len(act) == 0:
            break
        n_ev = int(n_evals_each[act].min())
        delta = np.where(t == 1, 0.1, math.sqrt(d) * theta * dist[act])
        grad = _estimate_gradient(oracle, act, cur[act], n_ev, delta, rng)
        # Geometric step search: start at dist/sqrt(t) and halve until still adversarial.
        xi = dist[act] / math.sqrt(t)
        cand = cur[act].copy()
        todo = np.arange(len(act))
        for _ in range(12):
            if len(todo) == 0:
                break
            trial = np.clip(cur[act[todo]] + xi[todo].reshape(-1, *[1] * (x.ndim - 1)) * grad[todo], 0, 1)
            adv = oracle.adversarial(trial.astype(np.float32), act[todo])
            cand[todo[adv]] = trial[adv]
            xi[todo[~adv]] /= 2
            todo = todo[~adv]
        moved = np.setdiff1d(np.arange(len(act)), todo)
        if len(moved):
            rows = act[moved]
            new = _boundary_search(oracle, rows, x[rows], cand[moved], theta)
            new_dist = _l2(new - x[rows])
            better = new_dist < dist[rows]
            cur[rows[better]] = new[better]
            dist[rows[better]] = new_dist[better]
    return cur, dist, oracle.queries


def _estimate_gradient(
    oracle: _Oracle,
    rows: np.ndarray,
    x_b: np.ndarray,
    n_evals: int,
    delta: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """Monte-Carlo estimate of the boundary normal at ``x_b`` from the labels of ``n_evals`` probes each."""
    shape = x_b.shape[1:]
    d = int(np.prod(shape))
    out = np.zeros_like(x_b, dtype=np.float32)
    chunk = max(1, _MAX_PROBES // max(1, n_evals) // max(1, d // 1024 + 1))
    for s in range(0, len(rows), chunk):
        sl = slice(s, s + chunk)
        m = len(rows[sl])
        u = rng.standard_normal((m, n_evals, d), dtype=np.float32)
        u /= np.linalg.norm(u, axis=2, keepdims=True) + 1e-12
        base = x_b[sl].reshape(m, 1, d)
        dl = np.asarray(delta, np.float64)[sl].reshape(m, 1, 1) if np.ndim(delta) else float(delta)
        probes = np.clip(base + dl * u, 0, 1).astype(np.float32)
        u = (probes - base) / dl
        adv = oracle.adversarial(probes.reshape(m * n_evals, *shape), np.repeat(rows[sl], n_evals))
        f = np.where(adv.reshape(m, n_evals), 1.0, -1.0)
        mean_f = f.mean(axis=1, keepdims=True)
        # Baseline subtraction lowers the variance, except when every probe agrees.
        f = np.where(np.abs(mean_f) == 1.0, f, f - mean_f)
        g = (f[:, :, None] * u).mean(axis=1)
        g /= np.linalg.norm(g, axis=1, keepdims=True) + 1e-12
        out[sl] = g.reshape(m, *shape)
    return out


@dataclass(frozen=True)
class HSJParams:
    n_samples: int = 50  #: inputs attacked
    eps: float = 0.5  #: default L2 budget for ``robust_accuracy``
    sweep: tuple[float, ...] = (0.1, 0.25, 0.5, 1.0, 2.0)  #: L2 budgets of the curve
    max_queries: int = 1500  #: label queries per input
    init_evals: int = 100
    max_evals: int = 10000
    max_start_failures: float = 0.1  #: self-check: share of inputs without a misclassified start
    max_examples: int = 6


@register
class HopSkipJump(Check):
    """HopSkipJump (Chen, Jordan, Wainwright, IEEE S&P 2020): decision-based black-box, untargeted, L2.

    Threat model: black-box evasion (NIST AI 100-2); the attacker sees only the predicted label, at most
    ``max_queries`` times per input. The attack always returns some adversarial input, so the check reports
    each input's final L2 distance (``median_perturbation``) and ``robust_accuracy`` at a stated L2
    budget: the share of inputs classified correctly whose adversarial input lies farther than ``eps``.
    """

    id = "attack.hopskipjump"
    title = "HopSkipJump (black-box, labels only, L2)"
    Params = HSJParams
    requires = Requires(modalities=frozenset({"image"}))
    budgets = frozenset({"standard", "thorough"})
    budget_params = {
        "quick": {"n_samples": 32, "max_queries": 500},
        "standard": {"n_samples": 40, "max_queries": 1000},
        "thorough": {"n_samples": 250, "max_queries": 5000},
    }

    def run(self, ctx: Context) -> Outcome:
        p = self.params
        name = self.id
        _idx, x, y, pred0 = common.attack_sample(ctx, p.n_samples)
        correct0 = pred0 == y
        xc, yc = x[correct0], y[correct0]

        def labels(batch: np.ndarray) -> np.ndarray:
            return ctx.predict_probs(batch).argmax(axis=1)

        with ctx.progress.task(f"HopSkipJump on {len(xc)} inputs", total=1) as task:
            if len(xc):
                adv, dist, queries = hop_skip_jump(
                    labels, xc, yc, p.max_queries, p.init_evals, p.max_evals, rng=ctx.rng(name)
                )
            else:
                adv, dist, queries = xc.copy(), np.zeros(0), np.zeros(0)
            task.advance()
        common.verify_budget(xc, adv, np.where(np.isfinite(dist), dist, 0.0), "l2", name)
        pred = ctx.predict_probs(adv).argmax(axis=1) if len(adv) else np.zeros(0, int)
        success = np.isfinite(dist) & (pred != yc)
        dist = np.where(success, dist, np.inf)
        sweep = sorted({float(e) for e in (*p.sweep, p.eps)})

        broken = {e: common.fill_in(correct0, dist <= e, False) for e in sweep}
        metrics, details = common.sweep_metrics(
            name,
            y,
            correct0,
            broken,
            p.eps,
            common.fill_in(correct0, dist, np.inf),
            ctx.class_name,
            common.fill_in(correct0, queries, 0.0),
            "l2",
        )
        no_start = float((~np.isfinite(dist)).mean()) if len(dist) else 0.0
        findings = []
        if no_start > p.max_start_failures:
            findings.append(
                trust.Finding(
                    "start",
                    False,
                    f"no misclassified starting point was found for {no_start:.0%} of samples",
                    no_start,
                )
            )
        else:
            findings.append(trust.Finding("start", True, "a misclassified start was found", no_start))
        ok, statement, warnings = trust.verdict(findings)
        metrics[f"{name}.trustworthy"] = 1.0 if ok else 0.0
        details["trust"] = {
            "trustworthy": ok,
            "statement": statement,
            "findings": [f.as_dict() for f in findings],
        }
        details["threat_model"] = common.threat_model(
            "decision-based black-box", "l2", p.eps, sweep, p.max_queries, samples=len(y)
        )
        chosen = common.pick_examples(success, p.max_examples, ctx.rng(name, "examples"))
        examples = common.adversarial_examples(ctx, xc, adv, yc, pred, chosen, "HopSkipJump (final distance)")
        med = metrics.get(f"{name}.median_perturbation", math.nan)
        summary = (
            f"HopSkipJump: median L2 distance to a misclassified input {med:.3g} with at most {p.max_queries} "
            f"label queries; robust accuracy {metrics[f'{name}.robust_accuracy']:.1%} at L2 {p.eps:g}; {statement}."
        )
        return Outcome(
            metrics=metrics, details=details, examples=examples, warnings=warnings, summary=summary
        )

    @staticmethod
    def figures(result: CheckResult) -> list[tuple[str, str]]:
        return common.curve_figures(result)
