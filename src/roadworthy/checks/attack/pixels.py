"""Sparse black-box attacks: a few changed pixels, and one changed row or column segment.

Both search with differential evolution (Storn & Price 1997) on the model's scores only, as in the
one-pixel attack of Su, Vargas and Sakurai (IEEE TEVC 2019): each candidate encodes where the change is
and what colour it has; a child ``a + F (b - c)`` of three random members replaces its parent when it lowers
the probability margin ``p_y - max_{i!=y} p_i``; an input is done as soon as one candidate is misclassified.
All inputs and population members are evaluated in one batched model call per generation.

The line attack is our own design (algorithms-spec D.2): "a row of modified pixels" from the brief.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from roadworthy.checks.attack import _common as common
from roadworthy.checks.attack import trust
from roadworthy.checks.base import Check, Context, Outcome, Requires, register
from roadworthy.results import CheckResult

ProbsFn = Callable[[np.ndarray], np.ndarray]
Renderer = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _prob_margin(probs: np.ndarray, y: np.ndarray) -> np.ndarray:
    p = np.asarray(probs, np.float64)
    py = p[np.arange(len(y)), y]
    other = p.copy()
    other[np.arange(len(y)), y] = -np.inf
    return py - other.max(axis=1)


def differential_evolution(
    probs: ProbsFn,
    x: np.ndarray,
    y: np.ndarray,
    render: Renderer,
    lower: np.ndarray,
    upper: np.ndarray,
    init: np.ndarray,
    generations: int,
    f: float = 0.5,
    crossover: float = 1.0,
    rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Minimise the probability margin of each input over candidate perturbations by DE/rand/1/bin.

    Parameters
    ----------
    render
        ``render(x_rows, params) -> images``: applies one candidate (a row of ``params``) to one input.
    lower, upper
        Bounds of each parameter; candidates are clipped to them.
    init
        Initial population ``(n_inputs, popsize, dim)``.
    crossover
        Binomial crossover rate (1.0: the child is the mutant, as in the one-pixel attack).

    Returns
    -------
    (best_params, success, queries)
        Per input the best candidate, whether it is misclassified, and the queries spent.
    """
    rng = rng or np.random.default_rng(0)
    n, pop, dim = init.shape
    params = np.clip(init, lower, upper)

    def evaluate(rows: np.ndarray, cand: np.ndarray) -> np.ndarray:
        imgs = render(np.repeat(x[rows], pop, axis=0), cand.reshape(-1, dim))
        return _prob_margin(probs(imgs), np.repeat(y[rows], pop)).reshape(len(rows), pop)

    all_rows = np.arange(n)
    fitness = evaluate(all_rows, params)
    queries = np.full(n, float(pop))
    for _ in range(generations):
        act = np.flatnonzero(fitness.min(axis=1) >= 0)
        if len(act) == 0:
            break
        keys = rng.random((len(act), pop, pop))
        keys[:, np.arange(pop), np.arange(pop)] = np.inf  # a member is never its own donor
        donors = np.argsort(keys, axis=2)[:, :, :3]
        p = params[act]
        ii = np.arange(len(act))[:, None]
        mutant = p[ii, donors[:, :, 0]] + f * (p[ii, donors[:, :, 1]] - p[ii, donors[:, :, 2]])
        mutant = np.clip(mutant, lower, upper)
        if crossover < 1.0:
            mask = rng.random(mutant.shape) < crossover
            mask[
                np.arange(len(act))[:, None], np.arange(pop)[None, :], rng.integers(0, dim, (len(act), pop))
            ] = True
            mutant = np.where(mask, mutant, p)
        child_fit = evaluate(act, mutant)
        queries[act] += pop
        better = child_fit < fitness[act]
        p[better] = mutant[better]
        params[act] = p
        fitness[act] = np.where(better, child_fit, fitness[act])
    best = params[np.arange(n), fitness.argmin(axis=1)]
    return best, fitness.min(axis=1) < 0, queries


def render_pixels(x: np.ndarray, params: np.ndarray) -> np.ndarray:
    """Set ``k`` pixels per image: ``params`` rows are ``k`` groups of ``(row, col, value per channel)``."""
    out = x.copy()
    m, c, h, w = x.shape
    k = params.shape[1] // (2 + c)
    g = params.reshape(m, k, 2 + c)
    rows = np.clip(np.floor(g[:, :, 0]), 0, h - 1).astype(int)
    cols = np.clip(np.floor(g[:, :, 1]), 0, w - 1).astype(int)
    vals = np.clip(g[:, :, 2:], 0, 1).astype(np.float32)
    ii = np.arange(m)
    for j in range(k):
        out[ii, :, rows[:, j], cols[:, j]] = vals[:, j, :]
    return out


def render_line(length: int) -> Renderer:
    """Renderer of one segment of ``length`` pixels in one row or column, in one colour.

    Parameters per candidate: orientation in [0, 2) (row below 1), line position and segment start as
    fractions in [0, 1), then one value per channel.
    """

    def render(x: np.ndarray, params: np.ndarray) -> np.ndarray:
        out = x.copy()
        m, c, h, w = x.shape
        is_row = params[:, 0] < 1.0
        span = np.where(is_row, w, h)
        seg = np.minimum(length, span)
        line = np.floor(np.clip(params[:, 1], 0, 0.999999) * np.where(is_row, h, w)).astype(int)
        start = np.floor(np.clip(params[:, 2], 0, 0.999999) * (span - seg + 1)).astype(int)
        steps = np.minimum(np.arange(length)[None, :], seg[:, None] - 1)
        along = start[:, None] + steps
        rows = np.where(is_row[:, None], line[:, None], along)
        cols = np.where(is_row[:, None], along, line[:, None])
        colour = np.clip(params[:, 3 : 3 + c], 0, 1).astype(np.float32)
        out[np.arange(m)[:, None], :, rows, cols] = colour[:, None, :]
        return out

    return render


@dataclass(frozen=True)
class PixelParams:
    n_samples: int = 64  #: inputs attacked
    strengths: tuple[int, ...] = (1, 3, 5)  #: numbers of changed pixels tried, smallest first
    default: int = 3  #: the budget reported as ``robust_accuracy``
    popsize: int = 40  #: DE population per input
    generations: int = 25  #: DE generations (queries per input <= popsize * (generations + 1) per strength)
    f: float = 0.5  #: DE mutation factor
    max_examples: int = 6


@dataclass(frozen=True)
class LineParams(PixelParams):
    strengths: tuple[int, ...] = (2, 4, 8, 16)  #: segment lengths tried (capped at the image side)
    default: int = 8


class _SparseAttack(Check):
    """Shared flow: for each strength (smallest first) attack the inputs not yet broken, by DE."""

    requires = Requires(modalities=frozenset({"image"}))
    budgets = frozenset({"standard", "thorough"})
    label: ClassVar[str] = ""
    crossover: ClassVar[float] = 1.0

    def setup(self, k: int, shape: tuple[int, ...]) -> tuple[Renderer, np.ndarray, np.ndarray]:
        raise NotImplementedError

    def initial(
        self, rng: np.random.Generator, n: int, lower: np.ndarray, upper: np.ndarray, c: int
    ) -> np.ndarray:
        pop = self.params.popsize
        return rng.uniform(lower, upper, size=(n, pop, len(lower)))

    def strengths(self, shape: tuple[int, ...]) -> list[int]:
        return sorted({int(k) for k in (*self.params.strengths, self.params.default)})

    def run(self, ctx: Context) -> Outcome:
        p = self.params
        name = self.id
        if p.popsize < 4:
            raise ValueError(f"{name}: `popsize` must be >= 4. Got {p.popsize} instead.")
        _idx, x, y, pred0 = common.attack_sample(ctx, p.n_samples)
        correct0 = pred0 == y
        xc, yc = x[correct0], y[correct0]
        ks = self.strengths(x.shape[1:])
        default = min(ks, key=lambda k: abs(k - self.clip_strength(p.default, x.shape[1:])))
        found = np.zeros(len(xc), bool)
        hi = np.full(len(xc), np.inf)
        best_adv, best_pred = xc.copy(), yc.copy()
        q_default = np.zeros(len(xc))
        raw = {}
        with ctx.progress.task(f"{self.label} on {len(xc)} inputs", total=len(ks)) as task:
            for k in ks:
                rows = np.flatnonzero(~found)
                if len(rows):
                    render, lower, upper = self.setup(k, x.shape[1:])
                    rng = ctx.rng(name, k)
                    init = self.initial(rng, len(rows), lower, upper, x.shape[1])
                    best, _, q = differential_evolution(
                        ctx.predict_probs,
                        xc[rows],
                        yc[rows],
                        render,
                        lower,
                        upper,
                        init,
                        p.generations,
                        p.f,
                        self.crossover,
                        rng,
                    )
                    adv = render(xc[rows], best)
                    common.verify_budget(xc[rows], adv, float(k), "l0", name)
                    pred = ctx.predict_probs(adv).argmax(axis=1)
                    flip = pred != yc[rows]
                    found[rows[flip]] = True
                    hi[rows[flip]] = k
                    best_adv[rows[flip]], best_pred[rows[flip]] = adv[flip], pred[flip]
                    if k <= default:
                        q_default[rows] = q
                raw[float(k)] = found.copy()
                task.advance()

        broken = {e: common.fill_in(correct0, b, False) for e, b in raw.items()}
        metrics, details = common.sweep_metrics(
            name,
            y,
            correct0,
            broken,
            float(default),
            common.fill_in(correct0, hi, np.inf),
            ctx.class_name,
            common.fill_in(correct0, q_default, 0.0),
            "l0",
        )
        ok, statement, warnings = trust.verdict([])
        metrics[f"{name}.trustworthy"] = 1.0 if ok else 0.0
        details["trust"] = {
            "trustworthy": ok,
            "statement": statement,
            "findings": [],
            "note": "a random search: its robust accuracy is an upper bound that more queries can lower",
        }
        max_q = p.popsize * (p.generations + 1)
        details["threat_model"] = common.threat_model(
            "score-based black-box",
            "l0",
            float(default),
            [float(k) for k in ks],
            max_q,
            samples=len(y),
            **self.threat_extra(),
        )
        chosen = common.pick_examples(found & (hi <= default), p.max_examples, ctx.rng(name, "examples"))
        examples = common.adversarial_examples(ctx, xc, best_adv, yc, best_pred, chosen, self.label)
        summary = (
            f"{self.label}: robust accuracy {metrics[f'{name}.robust_accuracy']:.1%} with {default} changed pixels "
            f"(at most {max_q} queries per input and budget, {len(y)} inputs); {statement}."
        )
        return Outcome(
            metrics=metrics, details=details, examples=examples, warnings=warnings, summary=summary
        )

    def clip_strength(self, k: int, shape: tuple[int, ...]) -> int:
        return k

    def threat_extra(self) -> dict[str, object]:
        return {}

    @staticmethod
    def figures(result: CheckResult) -> list[tuple[str, str]]:
        return common.curve_figures(result)


@register
class FewPixelAttack(_SparseAttack):
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
        "quick": {"n_samples": 32, "strengths": (1, 3), "popsize": 20, "generations": 10},
        "standard": {"n_samples": 48, "popsize": 30, "generations": 20},
        "thorough": {"n_samples": 250, "popsize": 100, "generations": 100},
    }

    def setup(self, k: int, shape: tuple[int, ...]) -> tuple[Renderer, np.ndarray, np.ndarray]:
        c, h, w = shape
        lower = np.tile(np.r_[0.0, 0.0, np.zeros(c)], k)
        upper = np.tile(np.r_[h - 1e-6, w - 1e-6, np.ones(c)], k)
        return render_pixels, lower, upper

    def initial(
        self, rng: np.random.Generator, n: int, lower: np.ndarray, upper: np.ndarray, c: int
    ) -> np.ndarray:
        init = rng.uniform(lower, upper, size=(n, self.params.popsize, len(lower)))
        # Colours start around mid-grey (the paper draws N(128, 127) on 0..255).
        g = init.reshape(n, self.params.popsize, -1, 2 + c)
        g[..., 2:] = np.clip(rng.normal(0.5, 0.5, size=g[..., 2:].shape), 0, 1)
        return g.reshape(init.shape)

    def threat_extra(self) -> dict[str, object]:
        return {"popsize": self.params.popsize, "generations": self.params.generations}


@register
class LineAttack(_SparseAttack):
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
    crossover = 0.9
    budget_params = {
        "quick": {"n_samples": 32, "strengths": (4, 16), "popsize": 20, "generations": 10},
        "standard": {"n_samples": 48, "popsize": 30, "generations": 20},
        "thorough": {"n_samples": 250, "strengths": (1, 2, 4, 8, 16, 32), "popsize": 80, "generations": 100},
    }

    def clip_strength(self, k: int, shape: tuple[int, ...]) -> int:
        return min(k, max(shape[1], shape[2]))

    def strengths(self, shape: tuple[int, ...]) -> list[int]:
        return sorted(
            {self.clip_strength(int(k), shape) for k in (*self.params.strengths, self.params.default)}
        )

    def setup(self, k: int, shape: tuple[int, ...]) -> tuple[Renderer, np.ndarray, np.ndarray]:
        c = shape[0]
        lower = np.r_[0.0, 0.0, 0.0, np.zeros(c)]
        upper = np.r_[2.0 - 1e-6, 1.0 - 1e-6, 1.0 - 1e-6, np.ones(c)]
        return render_line(k), lower, upper

    def threat_extra(self) -> dict[str, object]:
        return {
            "popsize": self.params.popsize,
            "generations": self.params.generations,
            "segment": "one colour",
        }
