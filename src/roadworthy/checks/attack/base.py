"""One protocol for every attack check: :class:`AttackCheck`.

An attack check measures how an attack from :mod:`roadworthy.attacks` changes a model's predictions.
The base owns everything attacks share, in this order:

1. **sampling** (:meth:`AttackCheck.sample`): a class-interleaved prefix of the evaluation data, the same
   inputs for every attack, and which of them the model gets right;
2. **the strength sweep**: :meth:`AttackCheck.curve_white_box` (one minimum-norm run for the whole curve
   plus the check's own attack at the default strength), :meth:`AttackCheck.sweep_white_box` (every
   strength on every input, then a doubling ladder and a bisection per input) and
   :meth:`AttackCheck.escalate_block` (each strength, smallest first, on a block's inputs still
   standing); the white-box ones count the model passes they use against the plan's floor
   (``details.efficiency``, ``attack.<a>.passes_over_floor``);
3. **sweep metrics**: robust accuracy at every strength and at the default one, success rate, median
   smallest flipping strength, queries (``_common.sweep_metrics``);
4. **trust**: the self-checks' findings become ``attack.<a>.trustworthy``, one metric per finding
   (``attack.<a>.trust.<finding>``), one sentence and warnings;
5. **the threat model** (``details.threat_model``), **examples**, **evidence** (the robustness curve) and
   the **summary**.

A concrete check declares its algorithm (``label``), ``knowledge`` (white-box, score-based or
decision-based black-box), ``norm``, parameters and budgets, and implements :meth:`~AttackCheck.attack`:
run the algorithm on the sample and say, per input and strength, what broke (an :class:`Attempt`).

**Sharding** (one mechanism, :class:`~roadworthy.checks.base.Check`'s ``shard_items``/``run_block``/
``merge``): the sample is cut into fixed blocks whose randomness is keyed by the block, the blocks'
per-input parts are merged in order, and the metrics come from the merged arrays, so the local backend
(all blocks in one shard) and any number of Ray workers give the same numbers. The white-box curve
attacks work in blocks of 64; the black-box checks declare ``sharding``: ``"escalate"`` (Square,
few-pixel, line, laser: :meth:`~AttackCheck.escalate_block` per block of :data:`SEQUENTIAL_WAVE` inputs,
the sequential rule :meth:`~AttackCheck.enough` applied after each block from the first
:data:`SEQUENTIAL_FIRST` inputs on, so the stop never depends on the split) or ``"blocks"``
(HopSkipJump, AutoAttack: their own :meth:`~AttackCheck.attack_block` and
:meth:`~AttackCheck.finish_blocks`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from roadworthy import evidence
from roadworthy.checks.attack import _common as common
from roadworthy.checks.attack import trust
from roadworthy.checks.base import Block, Check, Context, Outcome, blocks_of, planned_samples
from roadworthy.errors import InvalidInputError

if TYPE_CHECKING:
    import torch

    from roadworthy.results import Example

#: ``perturb(forward, x, y, eps, generator, rows) -> x_adv``: a white-box attack on the rows ``rows``
#: (a slice or an index tensor) of the correctly classified inputs, ``eps`` one budget per row.
Perturb = Callable[..., "torch.Tensor"]


@dataclass
class Sample:
    """The inputs an attack check attacks, and what the model makes of them unattacked."""

    x: np.ndarray
    y: np.ndarray
    pred: np.ndarray

    def __post_init__(self) -> None:
        self.correct = self.pred == self.y
        self.xc, self.yc = self.x[self.correct], self.y[self.correct]

    @classmethod
    def labels_only(cls, y: np.ndarray, pred: np.ndarray) -> Sample:
        """A sample of labels and clean predictions without its inputs (zero values per row): what a
        merge of per-block results needs, at no memory per input."""
        return cls(np.zeros((len(y), 0), np.float32), y, pred)

    def take(self, start: int, stop: int) -> Sample:
        """The inputs at positions ``start:stop``."""
        return Sample(self.x[start:stop], self.y[start:stop], self.pred[start:stop])


@dataclass
class Shown:
    """Which adversarial inputs to show as examples: candidates (one is picked per seed), and how."""

    x: np.ndarray
    adv: np.ndarray
    y: np.ndarray
    pred: np.ndarray
    candidates: np.ndarray
    title: str
    show_difference: bool = True
    fallback: np.ndarray | None = None  #: candidates when ``candidates`` has none


@dataclass
class Attempt:
    """What an attack found on a :class:`Sample`, per input, in the terms the base reports.

    ``broken``, ``min_strength`` and ``queries`` have one entry per sampled input (``Sample.y``);
    ``measured`` (optional) keeps only the inputs that count (HopSkipJump leaves out inputs it could not
    start from).
    """

    broken: dict[float, np.ndarray]  #: per strength: the attack flipped the input at or below it
    default: float  #: the strength reported as ``robust_accuracy``
    strengths: list[float]  #: the sweep, as stated in the threat model
    min_strength: np.ndarray | None = None  #: smallest strength found to flip each input (inf: none)
    queries: np.ndarray | None = None  #: model queries spent per input (black-box attacks)
    measured: np.ndarray | None = None
    findings: list[trust.Finding] = field(default_factory=list)
    trust: dict[str, Any] = field(default_factory=dict)  #: more ``details.trust`` entries
    metrics: dict[str, float] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    shown: Shown | None = None
    lead_examples: list[Example] = field(default_factory=list)  #: shown before the adversarial inputs


@dataclass
class Escalation:
    """Per correctly classified input, what :meth:`AttackCheck.escalate_block` found, merged over the
    blocks that ran (:meth:`AttackCheck.merge_escalation`)."""

    found: np.ndarray  #: flipped at some strength
    hi: np.ndarray  #: the smallest strength that flipped it (inf: none)
    adv: np.ndarray  #: the adversarial input found first (the input where none)
    pred: np.ndarray  #: its prediction
    q_default: np.ndarray  #: queries spent up to the default strength
    broken: dict[float, np.ndarray]  #: per strength, flipped at or below it
    confirmed: np.ndarray  #: per input the attack counted as fooled: misclassified when asked again
    measured_n: int = 0  #: inputs of the sample attacked (a prefix; all unless a sequential rule stopped)


class AttackCheck(Check):
    """Base of every attack check: see the module docstring."""

    label: ClassVar[str] = ""  #: the algorithm's short name, in summaries and progress
    knowledge: ClassVar[str] = "white-box"  #: or "score-based black-box", "decision-based black-box"
    norm: ClassVar[str | None] = "linf"  #: "linf", "l2", "l0", "area", or None (no strength scale)
    physical: ClassVar[bool] = False  #: physically plausible perturbation (simulated)
    trust_prefix: ClassVar[str] = ""  #: put before the trust statement in ``details.trust``
    #: the scores an escalating check classifies its adversarial inputs with: "probs" or "logits"
    scores: ClassVar[str] = "probs"

    # -- the hooks a concrete check implements

    def sample(self, ctx: Context) -> Sample:
        """The first ``n_samples`` inputs of the shared attack order."""
        _idx, x, y, pred = common.attack_sample(ctx, self.params.n_samples)
        return Sample(x, y, pred)

    def attack(self, ctx: Context, s: Sample) -> Attempt:
        """Run the algorithm on ``s`` and say what broke; the one method every attack check implements."""
        raise NotImplementedError

    def query_budget(self) -> int | None:
        """Model queries allowed per input (black-box attacks), for the threat model."""
        return None

    def threat_extra(self, s: Sample) -> dict[str, Any]:
        """The algorithm's own entries of ``details.threat_model`` (steps, population, ...)."""
        return {}

    def summary(self, metrics: dict[str, float], s: Sample, a: Attempt, statement: str) -> str:
        """One sentence for people."""
        ra = metrics[f"{self.id}.robust_accuracy"]
        norm = self.norm or "linf"
        return (
            f"{self.label}: robust accuracy {ra:.1%} at {common.describe_eps(a.default, norm)} "
            f"({common.NORM_LABEL[norm]}, {len(s.y)} inputs); {statement}."
        )

    # -- the shared flow

    def white_box_perturb(self) -> tuple[Perturb, str] | None:
        """``(perturb, loss)`` for a check whose :meth:`attack` is :meth:`curve_white_box`; such a check
        is sample-sharded (its blocks run anywhere and merge in order). ``None``: not sharded."""
        return None

    #: how a check that is not a white-box curve is sharded: ``"escalate"`` (:meth:`escalate_block`,
    #: strengths escalated per block of :data:`SEQUENTIAL_WAVE` inputs, the sequential rule between
    #: blocks), ``"blocks"`` (its own :meth:`attack_block` and :meth:`finish_blocks`), or ``None``
    sharding: ClassVar[str | None] = None

    def shard_items(self, ctx: Context) -> int | None:
        if self.white_box_perturb() is None and self.sharding is None:
            return None
        return min(max(1, int(self.params.n_samples)), ctx.data.n_samples)

    def blocks(self, ctx: Context) -> list[Block]:
        if self.sharding == "escalate":  # a block is a wave of the sequential rule
            return blocks_of(self.shard_items(ctx) or 0, SEQUENTIAL_WAVE)
        return super().blocks(ctx)

    def sample_block(self, ctx: Context, block: Block) -> Sample:
        """Positions ``block.start:block.stop`` of :meth:`sample`, reading only those inputs (a check
        whose :meth:`sample` differs takes its block from its own sample)."""
        if type(self).sample is not AttackCheck.sample:
            return self.sample(ctx).take(block.start, block.stop)
        n = self.shard_items(ctx) or 0
        idx = np.sort(common.attack_order(ctx)[:n])[block.start : block.stop]
        x = np.ascontiguousarray(ctx.data.x[idx], dtype=np.float32)
        return Sample(x, np.asarray(ctx.data.y[idx], dtype=np.int64), ctx.clean_pred[idx])

    def run_block(self, ctx: Context, block: Block) -> dict[str, Any]:
        s = self.sample_block(ctx, block)
        if self.sharding == "escalate":
            return self.escalate_block(ctx, s, block)
        if self.sharding == "blocks":
            return self.attack_block(ctx, s, block)
        wb = self.white_box_perturb()
        assert wb is not None
        return self.curve_block(ctx, s, wb[0], block, self.shard_items(ctx) or 0, wb[1])

    def stops_early(self) -> bool:
        return self.sharding == "escalate" and float(getattr(self.params, "interval_half_width", 0)) > 0

    def enough(self, ctx: Context, parts: list[dict[str, Any]]) -> bool:
        """The sequential rule (:func:`interval_tight`) after every block from the first
        :data:`SEQUENTIAL_FIRST` inputs on: a function of the parts' per-input results alone."""
        if not self.stops_early() or sum(len(q["pred"]) for q in parts) < SEQUENTIAL_FIRST:
            return False
        correct = np.concatenate([q["correct"] for q in parts])
        broken = np.concatenate([q["found"] & (q["hi"] <= q["default"]) for q in parts])
        return interval_tight(correct, broken, float(self.params.interval_half_width))

    def merge(self, ctx: Context, parts: list[dict[str, Any]]) -> Outcome:
        if self.sharding is not None:
            s = self.merged_sample(ctx, parts)
            if self.sharding == "escalate":
                run = self.merge_escalation(s, parts, self.ladder(ctx)[0])
                return self.outcome(ctx, s, self.escalated(ctx, s, run, parts))
            return self.outcome(ctx, s, self.finish_blocks(ctx, s, parts))
        idx = np.sort(common.attack_order(ctx)[: self.shard_items(ctx)])
        # the clean predictions came with the parts: no model call here, and no inputs held
        pred = np.concatenate([q["pred"] for q in parts]) if parts else ctx.clean_pred[idx]
        s = Sample.labels_only(np.asarray(ctx.data.y[idx], dtype=np.int64), pred)
        return self.outcome(ctx, s, self.curve_finish(ctx, s, parts))

    def run(self, ctx: Context) -> Outcome:
        if self.shard_items(ctx) is not None:
            return self.run_sharded(ctx)
        s = self.sample(ctx)
        return self.outcome(ctx, s, self.attack(ctx, s))

    def outcome(self, ctx: Context, s: Sample, a: Attempt) -> Outcome:
        """The check's outcome from the attempt on ``s``: metrics, trust, threat model, examples."""
        name = self.id
        y, correct = s.y, s.correct
        broken, min_strength, queries = a.broken, a.min_strength, a.queries
        if a.measured is not None:
            m = a.measured
            y, correct = y[m], correct[m]
            broken = {e: b[m] for e, b in broken.items()}
            min_strength = None if min_strength is None else min_strength[m]
            queries = None if queries is None else queries[m]
        metrics, details = common.sweep_metrics(
            name,
            y,
            correct,
            broken,
            a.default,
            min_strength,
            ctx.class_name,
            queries,
            self.norm or "none",
            per_strength=self.norm is not None,
        )
        if self.norm is None:
            details.pop("curve", None)
        metrics.update(a.metrics)
        details.update(a.details)
        ok, statement, warnings = trust.verdict(a.findings)
        warnings += a.warnings
        metrics.update(trust.metrics(name, a.findings))
        metrics[f"{name}.trustworthy"] = 1.0 if ok else 0.0
        details["trust"] = {
            "trustworthy": ok,
            "statement": self.trust_prefix + statement,
            "findings": [f.as_dict() for f in a.findings],
            **a.trust,
        }
        details["threat_model"] = common.threat_model(
            self.knowledge,
            self.norm,
            a.default if self.norm else None,
            a.strengths if self.norm else (),
            self.query_budget(),
            physical=self.physical,
            samples=len(y),
            **self.threat_extra(s),
        )
        examples = list(a.lead_examples) + self._examples(ctx, a.shown)
        curve = details.get("curve")
        if curve and len(curve.get("eps", [])) >= 2:
            details[evidence.KEY] = [
                common.curve_evidence(f"{self.title}: robust accuracy against strength", {name: curve})
            ]
        return Outcome(
            metrics=metrics,
            details=details,
            examples=examples,
            warnings=warnings,
            summary=self.summary(metrics, s, a, statement),
        )

    def _examples(self, ctx: Context, shown: Shown | None) -> list[Example]:
        if shown is None:
            return []
        k = self.params.max_examples
        chosen = common.pick_examples(shown.candidates, k, ctx.rng(self.id, "examples"))
        if len(chosen) == 0 and shown.fallback is not None:
            chosen = common.pick_examples(shown.fallback, k, ctx.rng(self.id, "examples"))
        return common.adversarial_examples(
            ctx, shown.x, shown.adv, shown.y, shown.pred, chosen, shown.title, shown.show_difference
        )

    # -- the ways to sweep strengths

    def curve_white_box(self, ctx: Context, s: Sample, perturb: Perturb, loss: str = "ce") -> Attempt:
        """The whole curve from one minimum-norm run, and the check's own attack at the default strength.

        A minimum-norm attack (:func:`roadworthy.attacks.fmn.min_norm`, ``min_norm_steps`` steps: Fast
        Minimum-Norm in L-inf, Decoupled Direction and Norm in L2) finds for every
        correct input the smallest perturbation that flips it; an input leaves that search as soon as a
        perturbation at or below the smallest strength of the sweep flips it (it counts as broken at
        every strength then). ``perturb`` (PGD, APGD) then runs once, at the default strength ``eps``, on
        the inputs the minimum-norm run did not flip within ``eps`` (on the others it could change
        neither the curve nor the headline). Per input the smallest flipping strength is the smaller of
        the two (``eps`` where ``perturb`` flipped it), and the input counts as broken at every strength
        of the sweep at or above it: the curve is never looser than either attack alone, and one run
        replaces one run per strength. Every adversarial input of both is checked against its budget and
        classified again; a minimum-norm result the model does not misclassify when asked again is
        dropped.

        Self-checks: usable input gradients for ``loss``; robust accuracy at the huge strength from the
        minimum-norm results (Carlini et al. 2019); and agreement: the minimum-norm search must not miss
        more than ``max_disagreement`` of the inputs ``perturb`` flips at ``eps``.

        The sample is worked in blocks of :attr:`shard_block` inputs (:meth:`curve_block`, randomness
        keyed per block) merged by :meth:`curve_finish`, so Ray workers running the blocks give the
        same numbers.
        """
        blocks = blocks_of(len(s.y), self.shard_block)
        with ctx.progress.task(f"{self.label} on {int(s.correct.sum())} inputs", total=len(blocks)) as task:
            parts = []
            for b in blocks:
                parts.append(self.curve_block(ctx, s.take(b.start, b.stop), perturb, b, len(s.y), loss))
                task.advance()
        return self.curve_finish(ctx, s, parts)

    def curve_block(
        self, ctx: Context, s: Sample, perturb: Perturb, block: Block, n_total: int, loss: str = "ce"
    ) -> dict[str, Any]:
        """:meth:`curve_white_box`'s work on one block ``s`` (positions ``block.start:block.stop`` of a
        sample of ``n_total`` inputs): per-input results, pass counts and the block's example candidates
        (:meth:`keep_examples`, not every adversarial copy).

        The fixed-strength attack's random start is seeded by check, strength and ``block.index``, so the
        block gives the same numbers on any worker; the gradient self-check runs on the block's correct
        inputs and only its counts travel.
        """
        import torch

        from roadworthy.attacks.fmn import min_norm

        p = self.params
        name = self.id
        norm = self.norm or "linf"
        device = getattr(ctx.model, "device", "cpu")
        counter = PassCounter(ctx.model.forward_torch)  # type: ignore[attr-defined]
        sweep = self._validated_sweep(s)
        xc, yc = s.xc, s.yc
        n = len(xc)
        norms = np.full(n, np.inf)
        fixed = np.zeros(n, bool)
        min_adv, min_pred = xc.copy(), yc.copy()
        gate_adv, gate_pred = xc.copy(), yc.copy()
        rest = np.zeros(0, np.int64)
        bracket = np.full(n, np.inf)
        bracket_attacked = {common.eps_key(e): 0 for e in sweep if e != p.eps}
        health = {"zero": 0.0, "nonfinite": 0.0, "n": 0.0}
        if n:
            xt, yt = torch.from_numpy(xc).to(device), torch.from_numpy(yc).to(device)
            found = min_norm(counter, xt, yt, norm, steps=p.min_norm_steps, settled_at=min(sweep))
            min_adv = found.adv.detach().cpu().numpy()
            raw = found.norms.detach().cpu().numpy()
            finite = np.isfinite(raw)
            common.verify_budget(xc[finite], min_adv[finite], raw[finite], norm, name)
            min_pred = yc.copy()
            min_pred[finite] = self._classify(ctx, counter, min_adv[finite])
            norms = np.where(finite & (min_pred != yc), raw, np.inf)
            # the fixed-strength attack only where the minimum-norm run left the input standing at eps:
            # elsewhere it could not change the curve (nor the headline)
            rest = np.flatnonzero(~(norms <= p.eps * (1 + 1e-6)))
            if len(rest):
                sel = torch.from_numpy(rest).to(device)
                gen = torch.Generator().manual_seed(
                    ctx.torch_seed(name, ("fixed", p.eps), "block", block.index)
                )
                adv = perturb(counter, xt[sel], yt[sel], torch.tensor(p.eps), gen, sel)
                adv_np = adv.detach().cpu().numpy()
                common.verify_budget(xc[rest], adv_np, p.eps, norm, name)
                gate_adv[rest] = adv_np
                gate_pred[rest] = self._classify(ctx, counter, adv_np)
                fixed = gate_pred != yc
            if p.refine_curve:
                bracket, bracket_attacked = self._brackets(
                    ctx,
                    counter,
                    xt,
                    yt,
                    xc,
                    yc,
                    perturb,
                    sweep,
                    np.minimum(norms, np.where(fixed, p.eps, np.inf)),
                    block,
                )
            health = trust.gradient_health(counter, xc, yc, loss, device=device)
        hi = np.minimum(norms, np.where(fixed, p.eps, np.inf))
        use_min = norms <= hi
        best_adv = np.where(use_min.reshape(-1, *([1] * (xc.ndim - 1))), min_adv, gate_adv)
        best_pred = np.where(use_min, min_pred, gate_pred)
        del min_adv, gate_adv
        shown = self.keep_examples(
            ctx, s, block, n_total, hi <= p.eps * (1 + 1e-6), np.isfinite(hi), best_adv, best_pred
        )
        return {
            "pred": s.pred,
            "norms": norms,
            "fixed": fixed,
            "bracket": bracket,
            "bracket_attacked": bracket_attacked,
            "shown": shown,
            "rest": len(rest),
            "dead": (round(health["zero"] * health["n"]), round(health["nonfinite"] * health["n"]), n),
            "passes": (counter.forwards, counter.backwards),
        }

    def _brackets(
        self,
        ctx: Context,
        counter: PassCounter,
        xt: torch.Tensor,
        yt: torch.Tensor,
        xc: np.ndarray,
        yc: np.ndarray,
        perturb: Perturb,
        sweep: list[float],
        hi: np.ndarray,
        block: Block,
    ) -> tuple[np.ndarray, dict[str, int]]:
        """The fixed-strength attack at each strength of the sweep (but the default one, where it ran on
        every input left standing) on the inputs whose smallest flipping strength so far (``hi``) lies
        just above it, within half a step of the sweep (the geometric mean of it and the next strength;
        above the largest, half the step below it): where the minimum-norm search may have stopped short
        of the boundary, the curve point is decided by the fixed-strength attack, as per-strength PGD
        would decide it. (On the demo and digits models every flip these runs found was within 1.22x of
        its strength.) Strengths run from the largest down, so an input broken at one strength is tried
        at the next smaller one too. Each input is attacked at most once (plus once per success), not
        once per strength; inputs far from every strength of the sweep are not attacked again.

        The runs spend only what the early stops saved: the block's floor (inputs x (steps x restarts
        + min_norm_steps)) less the passes used so far and one per input for the gradient self-check.
        Where that does not pay for every bracket, the inputs closest above their strength (smallest
        ratio of their flipping strength to it) go first. A fixed rule, so the same inputs and seed give
        the same runs.

        Returns per input the smallest sweep strength a bracket run flipped it at (inf: none), and per
        strength how many inputs were attacked there.
        """
        import torch

        p = self.params
        name, norm = self.id, self.norm or "linf"
        device = xt.device
        hi = hi.copy()
        n = len(xc)
        bracket = np.full(n, np.inf)
        attacked: dict[str, int] = {}
        # half a step of the sweep (geometric) above each strength; above the largest, half the step below
        nexts = [*sweep[1:], sweep[-1] ** 2 / sweep[-2] if len(sweep) > 1 else 2 * sweep[-1]]
        levels = [(e, math.sqrt(e * u)) for e, u in zip(sweep, nexts, strict=True) if e != p.eps]
        # the passes the early stops saved: the block's floor less what it used, one pass per input kept
        # for the gradient self-check; each attacked input costs steps x restarts and a verification
        cost = max(1, p.steps) * max(1, p.restarts) + 1
        budget = n * (p.steps * p.restarts + p.min_norm_steps) - counter.forwards - n
        # each input's first bracket (the strength just below its smallest flipping strength), the inputs
        # closest above their strength first, as many as the budget pays for
        closeness = np.full(n, np.inf)
        for e, upper in levels:
            inside = (hi > e * (1 + 1e-6)) & (hi <= upper * (1 + 1e-6))
            closeness[inside] = hi[inside] / e
        chosen = np.zeros(n, bool)
        chosen[np.argsort(closeness, kind="stable")[: max(0, budget // cost)]] = True
        chosen &= np.isfinite(closeness)
        for e, upper in reversed(levels):
            inside = (hi > e * (1 + 1e-6)) & (hi <= upper * (1 + 1e-6))
            # the chosen inputs, and (budget allowing) those a larger strength's bracket just flipped
            rows = np.flatnonzero(inside & (chosen | (bracket < np.inf)))
            left = n * (p.steps * p.restarts + p.min_norm_steps) - counter.forwards - n
            rows = np.sort(rows[np.argsort(hi[rows] / e, kind="stable")][: max(0, left // cost)])
            attacked[common.eps_key(e)] = len(rows)
            if not len(rows):
                continue
            sel = torch.from_numpy(rows).to(device)
            gen = torch.Generator().manual_seed(ctx.torch_seed(name, ("bracket", e), "block", block.index))
            adv = perturb(counter, xt[sel], yt[sel], torch.tensor(e), gen, sel)
            adv_np = adv.detach().cpu().numpy()
            common.verify_budget(xc[rows], adv_np, e, norm, name)
            flip = rows[self._classify(ctx, counter, adv_np) != yc[rows]]
            hi[flip] = e
            bracket[flip] = e
        return bracket, attacked

    def curve_finish(self, ctx: Context, s: Sample, parts: list[dict[str, Any]]) -> Attempt:
        """:meth:`curve_white_box`'s result from its blocks' parts (in block order): the curve, the
        headline and the self-checks, computed from the merged per-input arrays. Reads only the labels and
        clean predictions of ``s`` (:meth:`Sample.labels_only` is enough)."""
        p = self.params
        name = self.id
        norm = self.norm or "linf"
        correct0 = s.correct
        sweep = self._validated_sweep(s)
        n = int(correct0.sum())

        def cat(key: str, empty: np.ndarray) -> np.ndarray:
            return np.concatenate([q[key] for q in parts]) if parts else empty

        norms = cat("norms", np.full(0, np.inf))
        fixed = cat("fixed", np.zeros(0, bool))
        counter = PassCounter(ctx.model.forward_torch)  # type: ignore[attr-defined]
        counter.forwards = sum(q["passes"][0] for q in parts)
        counter.backwards = sum(q["passes"][1] for q in parts)
        zero, nonfinite, n_health = (sum(q["dead"][i] for q in parts) for i in range(3))
        health = {
            "zero": zero / max(1, n_health),
            "nonfinite": nonfinite / max(1, n_health),
            "n": float(n_health),
        }
        rest = sum(q["rest"] for q in parts)
        bracket = cat("bracket", np.full(0, np.inf))
        hi = np.minimum(np.minimum(norms, np.where(fixed, p.eps, np.inf)), bracket)
        broken_c = {e: hi <= e * (1 + 1e-6) for e in sweep}

        fmn_acc = [float((correct0 & ~common.fill_in(correct0, norms <= e, False)).mean()) for e in sweep]
        huge = self._huge(ctx.data.x.shape[1:])
        huge_acc = float((correct0 & ~common.fill_in(correct0, hi <= huge, False)).mean())
        missed = int((fixed & ~(norms <= p.eps * (1 + 1e-6))).sum())
        eps_text = common.describe_eps(p.eps, norm)
        findings = [
            trust.gradient_finding(health, p.max_dead_gradients),
            trust.huge_eps_finding(huge_acc, common.describe_eps(huge, norm), p.max_accuracy_at_huge_eps),
            trust.agreement_finding(missed, n, eps_text, self.label, p.max_disagreement),
        ]
        floor = n * (p.steps * p.restarts + p.min_norm_steps)
        efficiency = counter.report(floor, f"inputs attacked x (steps x restarts + min_norm_steps) = {floor}")
        return Attempt(
            broken={e: common.fill_in(correct0, b, False) for e, b in broken_c.items()},
            default=p.eps,
            strengths=sweep,
            min_strength=common.fill_in(correct0, hi, np.inf),
            findings=findings,
            trust={
                "gradient_health": health,
                "huge_eps": {"eps": huge, "robust_accuracy": huge_acc},
                "agreement": {"eps": p.eps, "missed": missed, "attacked": n},
            },
            metrics={f"{name}.passes_over_floor": efficiency["ratio"]},
            details={
                "curve_method": (
                    f"{MIN_NORM_NAMES[norm]} ({p.min_norm_steps} steps) for the curve, {self.label} at {eps_text} "
                    "for the default strength; per input the smaller flipping strength counts"
                ),
                "min_norm_robust_accuracy": dict(
                    zip([common.eps_key(e) for e in sweep], fmn_acc, strict=True)
                ),
                "fixed_eps_attacked": rest,
                "bracket_attacked": {
                    k: sum(q["bracket_attacked"][k] for q in parts)
                    for k in (parts[0]["bracket_attacked"] if parts else {})
                },
                "bracket_broken": {
                    common.eps_key(e): int(np.count_nonzero(bracket == e)) for e in sweep if e != p.eps
                },
                "efficiency": efficiency,
            },
            shown=self.shown_examples(
                [q["shown"] for q in parts], f"{self.label} or the smallest perturbation found that flips it"
            ),
        )

    def _validated_sweep(self, s: Sample) -> list[float]:
        """The sweep and the default strength, sorted, each checked to be a valid strength for the norm."""
        p = self.params
        norm = self.norm or "linf"
        sweep = sorted({float(e) for e in (*p.sweep, p.eps)})
        if any(not (0 < e <= (1 if norm == "linf" else math.inf)) for e in sweep):
            limit = "(0, 1] for L-inf" if norm == "linf" else "> 0"
            raise InvalidInputError(f"{self.id}: every `eps` must be {limit}. Got {sweep} instead.")
        return sweep

    @staticmethod
    def _classify(ctx: Context, counter: PassCounter, x: np.ndarray) -> np.ndarray:
        """Top class of each input, asked again through the check's model (counted as forward passes)."""
        counter.forwards += len(x)
        return ctx.predict_logits(x).argmax(axis=1) if len(x) else np.zeros(0, int)

    @classmethod
    def plan_passes(cls, params: Any, n_data: int) -> tuple[float, float] | None:
        """(forward, gradient) passes this check costs at most, for the run plan (``None``: the plan's
        generic reading of the params). Iterative white-box sweeps: see :func:`white_box_passes`."""
        if "white_box" in cls.requires.capabilities and hasattr(params, "refine_steps"):
            return white_box_passes(params, n_data, cls.norm or "linf")
        return None

    def sweep_white_box(
        self, ctx: Context, s: Sample, perturb: Perturb, loss: str = "ce", iterative: bool = True
    ) -> Attempt:
        """Every strength of the sweep on every correct input, then up to ``huge_eps`` and a bisection.

        ``perturb`` is run independently per strength (seeded per strength and block), so the curve of
        those runs must fall with strength: a self-check. Beyond the sweep the strength doubles up to the
        huge strength on the inputs still standing (each input's smallest flipping strength, and the
        self-check of Carlini et al. 2019 that a working attack fools almost everything there), then
        ``refine_steps`` bisection steps narrow each input's smallest flipping strength. The third
        self-check is that the loss ``loss`` has usable input gradients.

        The sample is worked in blocks of :attr:`shard_block` inputs (:meth:`sweep_block`) merged by
        :meth:`sweep_finish`, which needs only per-input results and the few inputs shown as examples:
        memory does not grow with the sample, and Ray workers running the blocks give the same numbers.
        """
        blocks = blocks_of(len(s.y), self.shard_block)
        with ctx.progress.task(f"{self.label} on {int(s.correct.sum())} inputs", total=len(blocks)) as task:
            parts = []
            for b in blocks:
                part = self.sweep_block(ctx, s.take(b.start, b.stop), perturb, b, len(s.y), loss, iterative)
                parts.append(part)
                task.advance()
        return self.sweep_finish(ctx, s, parts, iterative)

    def sweep_block(
        self,
        ctx: Context,
        s: Sample,
        perturb: Perturb,
        block: Block,
        n_total: int,
        loss: str = "ce",
        iterative: bool = True,
    ) -> dict[str, Any]:
        """:meth:`sweep_white_box`'s work on one block ``s`` (positions ``block.start:block.stop`` of a
        sample of ``n_total`` inputs): per-input results, pass counts and the block's example candidates.

        ``perturb``'s ``rows`` index the block's correct inputs. The gradient self-check looks at the
        block's correct inputs among the sample's first 256 positions; only its counts travel.
        """
        import torch

        p = self.params
        name = self.id
        norm = self.norm or "linf"
        device = getattr(ctx.model, "device", "cpu")
        forward = PassCounter(ctx.model.forward_torch)  # type: ignore[attr-defined]
        sweep = self._validated_sweep(s)
        xc, yc = s.xc, s.yc
        n = len(xc)
        xt, yt = torch.from_numpy(xc).to(device), torch.from_numpy(yc).to(device)

        def run_at(
            eps_each: np.ndarray | float, key: Any, rows: np.ndarray | None = None
        ) -> tuple[np.ndarray, np.ndarray]:
            sel = slice(None) if rows is None else torch.from_numpy(rows).to(device)
            gen = torch.Generator().manual_seed(ctx.torch_seed(name, key, "block", block.index))
            eps_t = torch.as_tensor(np.asarray(eps_each, dtype=np.float32)).to(device)
            adv = perturb(forward, xt[sel], yt[sel], eps_t, gen, sel)
            adv_np = adv.detach().cpu().numpy()
            del adv
            x_ref = xc if rows is None else xc[rows]
            common.verify_budget(x_ref, adv_np, np.asarray(eps_each), norm, name)
            return adv_np, self._classify(ctx, forward, adv_np)

        raw: dict[float, np.ndarray] = {}
        best_adv, best_pred = xc.copy(), yc.copy()
        found = np.zeros(n, bool)
        huge = self._huge(ctx.data.x.shape[1:])
        ladder = _ladder(max(sweep), huge)
        for e in sweep:
            if n:
                adv, pred = run_at(e, ("sweep", e))
                flip = pred != yc
            else:
                adv, pred, flip = xc, yc, np.zeros(0, bool)
            raw[e] = flip
            new = flip & ~found
            best_adv[new], best_pred[new], found[new] = adv[new], pred[new], True
            del adv
        lo, hi = common.first_flip(common.cumulative(raw), n)
        for e in ladder:
            rows = np.flatnonzero(~found)
            if len(rows):
                _, pred = run_at(np.full(len(rows), e, np.float32), ("ladder", e), rows)
                flip = pred != yc[rows]
                hi[rows[flip]] = e
                lo[rows[~flip]] = e
                found[rows[flip]] = True
        for step in range(p.refine_steps):
            rows = np.flatnonzero(np.isfinite(hi))
            if len(rows):
                mid = (lo[rows] + hi[rows]) / 2
                _, pred = run_at(mid, ("refine", step), rows)
                flip = pred != yc[rows]
                hi[rows[flip]] = mid[flip]
                lo[rows[~flip]] = mid[~flip]
        # the gradient self-check on the correct inputs among the sample's first 256 positions
        head = np.flatnonzero(s.correct) + block.start < 256
        health = trust.gradient_health(forward, xc[head], yc[head], loss, device=device)
        shown = self.keep_examples(
            ctx,
            s,
            block,
            n_total,
            found & (hi <= p.eps + 1e-9),
            found,
            best_adv,
            best_pred,
        )
        return {
            "pred": s.pred,
            "y": s.y,
            "raw": raw,
            "hi": hi,
            "dead": (
                round(health["zero"] * health["n"]),
                round(health["nonfinite"] * health["n"]),
                int(head.sum()),
            ),
            "passes": (forward.forwards, forward.backwards),
            "shown": shown,
        }

    def sweep_finish(
        self, ctx: Context, s: Sample, parts: list[dict[str, Any]], iterative: bool = True
    ) -> Attempt:
        """:meth:`sweep_white_box`'s result from its blocks' parts (in block order). Reads only the
        labels and clean predictions of ``s`` (:meth:`Sample.labels_only` is enough)."""
        p = self.params
        name = self.id
        norm = self.norm or "linf"
        correct0 = s.correct
        sweep = self._validated_sweep(s)
        n = int(correct0.sum())
        raw = {e: np.concatenate([q["raw"][e] for q in parts]) if parts else np.zeros(0, bool) for e in sweep}
        hi = np.concatenate([q["hi"] for q in parts]) if parts else np.full(0, np.inf)
        broken_c = common.cumulative(raw)
        huge = self._huge(ctx.data.x.shape[1:])
        ladder = _ladder(max(sweep), huge)
        zero, nonfinite, n_health = (sum(q["dead"][i] for q in parts) for i in range(3))
        health = {
            "zero": zero / max(1, n_health),
            "nonfinite": nonfinite / max(1, n_health),
            "n": float(n_health),
        }
        forward = PassCounter(ctx.model.forward_torch)  # type: ignore[attr-defined]
        forward.forwards = sum(q["passes"][0] for q in parts)
        forward.backwards = sum(q["passes"][1] for q in parts)

        raw_acc = [float((correct0 & ~common.fill_in(correct0, raw[e], False)).mean()) for e in sweep]
        labels = [common.describe_eps(e, norm) for e in sweep]
        findings = [
            trust.gradient_finding(health, p.max_dead_gradients),
            trust.monotone_finding(sweep, raw_acc, len(s.y), labels, p.monotone_tolerance),
        ]
        huge_acc = (
            float((correct0 & ~common.fill_in(correct0, np.isfinite(hi), False)).mean())
            if ladder
            else math.nan
        )
        if iterative and ladder:
            findings.append(
                trust.huge_eps_finding(huge_acc, common.describe_eps(huge, norm), p.max_accuracy_at_huge_eps)
            )
        per_run = p.steps * p.restarts if iterative else 1
        floor = n * per_run * len(sweep)
        efficiency = forward.report(floor, f"inputs attacked x steps x restarts x strengths = {floor}")
        return Attempt(
            broken={e: common.fill_in(correct0, b, False) for e, b in broken_c.items()},
            default=p.eps,
            strengths=sweep,
            min_strength=common.fill_in(correct0, hi, np.inf),
            findings=findings,
            trust={
                "gradient_health": health,
                "huge_eps": {"eps": huge, "robust_accuracy": huge_acc, "ladder": ladder},
            },
            metrics={f"{name}.passes_over_floor": efficiency["ratio"]},
            details={
                "raw_robust_accuracy": dict(zip([common.eps_key(e) for e in sweep], raw_acc, strict=True)),
                "efficiency": efficiency,
            },
            shown=self.shown_examples(
                [q["shown"] for q in parts], f"{self.label}, smallest sweep strength that flips it"
            ),
        )

    def _huge(self, row_shape: tuple[int, ...]) -> float:
        """The self-check's huge strength: ``huge_eps``, in L2 scaled by the square root of the input size."""
        p = self.params
        return (
            p.huge_eps
            if (self.norm or "linf") == "linf"
            else p.huge_eps * math.sqrt(float(np.prod(row_shape)))
        )

    def keep_examples(
        self,
        ctx: Context,
        s: Sample,
        block: Block,
        n_total: int,
        candidates: np.ndarray,
        fallback: np.ndarray,
        adv: np.ndarray,
        pred: np.ndarray,
    ) -> dict[str, Any]:
        """The few example candidates of one block worth carrying to the merge.

        Every position of the sample gets a seeded priority (drawn for all ``n_total`` positions, so it
        does not depend on the blocks); the examples shown are the ``max_examples`` candidates of
        highest priority. A block keeps its own best ``max_examples`` candidates (and, where it has none,
        its best fallback candidates): the union over blocks holds the overall best, at a few inputs
        per block instead of every adversarial copy. ``candidates``/``fallback``/``adv``/``pred`` are per
        correct input of the block ``s``.
        """
        k = int(self.params.max_examples)
        prio = ctx.rng(self.id, "examples").random(n_total)[block.start : block.stop][s.correct]
        use, is_fallback = (candidates, False) if candidates.any() else (fallback, True)
        rows = np.flatnonzero(use)
        rows = rows[np.argsort(prio[rows], kind="stable")[:k]]
        return {
            "fallback": is_fallback,
            "prio": prio[rows],
            "x": s.xc[rows].copy(),
            "adv": adv[rows].copy(),
            "y": s.yc[rows].copy(),
            "pred": pred[rows].copy(),
        }

    def shown_examples(self, kept: list[dict[str, Any]], title: str, show_difference: bool = True) -> Shown:
        """The examples from the blocks' :meth:`keep_examples`: the ``max_examples`` candidates of highest
        priority (fallback candidates only when no block had a candidate), in sample order."""
        k = int(self.params.max_examples)
        real = [q for q in kept if not q["fallback"] and len(q["prio"])]
        use = real or [q for q in kept if len(q["prio"])]
        if not use:
            empty = np.zeros((0, 0), np.float32)
            return Shown(empty, empty, np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, bool), title)
        cat = {key: np.concatenate([q[key] for q in use]) for key in ("prio", "x", "adv", "y", "pred")}
        best = np.sort(np.argsort(cat["prio"], kind="stable")[:k])  # sample order
        return Shown(
            cat["x"][best],
            cat["adv"][best],
            cat["y"][best],
            cat["pred"][best],
            np.ones(len(best), bool),
            title,
            show_difference,
        )

    # -- black-box checks sharded in blocks (``sharding``): the hooks and the shared flow

    def ladder(self, ctx: Context) -> tuple[list[float], float]:
        """``(strengths, default)`` of an escalating check: its strengths, smallest first, and the one
        reported as ``robust_accuracy``."""
        raise NotImplementedError

    def attack_rows(
        self, ctx: Context, s: Sample, strength: float, rows: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
        """An escalating check's attack on the rows ``rows`` of the block's correct inputs (``s.xc``) at
        ``strength``, drawing only from ``rng``: ``(x_adv, queries, claimed, extra)``, ``claimed`` the
        rows the attack itself counts as fooled, ``extra`` per-row values to keep (or ``None``)."""
        raise NotImplementedError

    def block_extra(self, ctx: Context, s: Sample, block: Block) -> dict[str, Any]:
        """More entries of an escalating check's part for ``block`` (a self-check run once, on block 0)."""
        return {}

    def escalated(self, ctx: Context, s: Sample, run: Escalation, parts: list[dict[str, Any]]) -> Attempt:
        """An escalating check's :class:`Attempt` from the merged escalation on ``s``."""
        raise NotImplementedError

    def attack_block(self, ctx: Context, s: Sample, block: Block) -> dict[str, Any]:
        """A ``sharding = "blocks"`` check's work on one block ``s``, its randomness keyed by
        ``block.index``; the part must hold ``pred`` (the block's clean predictions)."""
        raise NotImplementedError

    def finish_blocks(self, ctx: Context, s: Sample, parts: list[dict[str, Any]]) -> Attempt:
        """A ``sharding = "blocks"`` check's :class:`Attempt` from its blocks' parts, in block order."""
        raise NotImplementedError

    def merged_sample(self, ctx: Context, parts: list[dict[str, Any]]) -> Sample:
        """The planned sample, its clean predictions from the parts (no model call where they merge).

        Positions past the blocks that ran (a sequential rule stopped) get prediction -1: they are
        neither correct nor attacked, and :func:`prefix_mask` leaves them out of every metric.
        """
        n = self.shard_items(ctx) or 0
        idx = np.sort(common.attack_order(ctx)[:n])
        pred = np.full(n, -1, np.int64)
        done = np.concatenate([q["pred"] for q in parts]) if parts else np.zeros(0, np.int64)
        pred[: len(done)] = done
        x = np.ascontiguousarray(ctx.data.x[idx], dtype=np.float32)
        return Sample(x, np.asarray(ctx.data.y[idx], dtype=np.int64), pred)

    def escalate_block(self, ctx: Context, s: Sample, block: Block) -> dict[str, Any]:
        """Each strength, smallest first, on the block's correct inputs no smaller strength has flipped.

        :meth:`attack_rows` attacks them with a generator keyed by check, strength and block (so the
        block gives the same numbers on any worker and in any split); every result is checked against
        the budget and classified again (``scores``). Only the flipped inputs' adversarial copies
        travel back; the merge puts the clean inputs back in the others' place.
        """
        strengths, default = self.ladder(ctx)
        predict = ctx.predict_logits if self.scores == "logits" else ctx.predict_probs
        xc, yc = s.xc, s.yc
        n = len(xc)
        found, hi = np.zeros(n, bool), np.full(n, np.inf)
        adv, pred = xc.copy(), yc.copy()
        q_default = np.zeros(n)
        confirmed: list[np.ndarray] = []
        extra: np.ndarray | None = None
        for e in strengths:
            rows = np.flatnonzero(~found)
            if not len(rows):
                break
            x_adv, q, claimed, ex = self.attack_rows(
                ctx, s, e, rows, ctx.rng(self.id, e, "block", block.index)
            )
            common.verify_budget(xc[rows], x_adv, float(e), self.norm, self.id)
            p = predict(x_adv).argmax(axis=1)
            flip = p != yc[rows]
            confirmed.append(flip[claimed])
            found[rows[flip]], hi[rows[flip]] = True, e
            adv[rows[flip]], pred[rows[flip]] = x_adv[flip], p[flip]
            if e <= default:
                q_default[rows] = q
            if ex is not None:
                if extra is None:
                    extra = np.zeros((n, *np.shape(ex)[1:]), np.asarray(ex).dtype)
                extra[rows] = ex
        return {
            "pred": s.pred,
            "correct": s.correct,
            "default": default,
            "found": found,
            "hi": hi,
            "adv": adv[found],
            "adv_pred": pred[found],
            "q_default": q_default,
            "confirmed": np.concatenate([np.zeros(0, bool), *confirmed]),
            "extra": extra,
            **self.block_extra(ctx, s, block),
        }

    def merge_escalation(self, s: Sample, parts: list[dict[str, Any]], strengths: list[float]) -> Escalation:
        """The escalation over ``s``'s correct inputs from the blocks' parts (a prefix, in order)."""
        xc, yc = s.xc, s.yc

        def cat(key: str, empty: np.ndarray) -> np.ndarray:
            return np.concatenate([empty, *(q[key] for q in parts)])

        found, hi = cat("found", np.zeros(0, bool)), cat("hi", np.zeros(0))
        adv, pred = xc.copy(), yc.copy()
        if found.any():
            adv[found] = np.concatenate([q["adv"] for q in parts if len(q["adv"])])
            pred[found] = cat("adv_pred", np.zeros(0, np.int64))
        return Escalation(
            found,
            hi,
            adv,
            pred,
            cat("q_default", np.zeros(0)),
            {e: found & (hi <= e) for e in strengths},
            cat("confirmed", np.zeros(0, bool)),
            measured_n=sum(len(q["pred"]) for q in parts),
        )


#: the minimum-norm attack of each norm (:func:`roadworthy.attacks.fmn.min_norm`), as ``curve_method`` names it
MIN_NORM_NAMES = {"linf": "Fast Minimum-Norm", "l2": "Decoupled Direction and Norm"}

#: sequential attacks: the first wave, and the inputs each later wave adds
SEQUENTIAL_FIRST = 32
SEQUENTIAL_WAVE = 16


def interval_tight(correct: np.ndarray, broken_correct: np.ndarray, until: float) -> bool:
    """Whether the 95% Wilson interval of the robust accuracy over the inputs so far (``correct``: the
    model got the input right; ``broken_correct``: per correct input, the attack flipped it) lies within
    ``until`` of its centre on both sides. A fixed rule applied after every wave, so the stopping point
    depends only on the inputs and the seed."""
    from roadworthy.stats import wilson_interval

    n = len(correct)
    robust = int(np.count_nonzero(correct)) - int(np.count_nonzero(broken_correct))
    lo, up = wilson_interval(robust, n)
    return (up - lo) / 2 <= until


def sequential_details(s: Sample, measured_n: int, until: float) -> dict[str, Any]:
    """``details.sequential``: the stopping rule and where it stopped."""
    return {
        "until_half_width": until,
        "attacked_inputs": int(measured_n),
        "planned_inputs": len(s.y),
        "stopped_early": bool(measured_n < len(s.y)),
        "rule": (
            f"inputs in waves ({SEQUENTIAL_FIRST}, then {SEQUENTIAL_WAVE} more each); stop once the 95% "
            f"interval of the robust accuracy is within {until:.3f} of its centre"
        ),
    }


def prefix_mask(s: Sample, measured_n: int) -> np.ndarray | None:
    """``Attempt.measured`` for an attack that stopped after the first ``measured_n`` inputs (None: all)."""
    if measured_n >= len(s.y):
        return None
    return np.arange(len(s.y)) < measured_n


def sweep_runs(params: Any, norm: str = "linf", dims: int = 3 * 224 * 224) -> int:
    """Attack runs :meth:`AttackCheck.sweep_white_box` makes at most: the sweep's strengths, the ladder
    of doubling strengths up to ``huge_eps`` (its L2 form scales with ``dims`` input values) and the
    bisection steps. An estimate for the run plan; fooled inputs drop out of the later runs."""
    sweep = sorted({float(e) for e in (*params.sweep, params.eps)})
    huge = params.huge_eps * (math.sqrt(dims) if norm == "l2" else 1.0)
    return len(sweep) + len(_ladder(max(sweep), huge)) + int(params.refine_steps)


def white_box_passes(params: Any, n_data: int, norm: str = "linf") -> tuple[float, float]:
    """(forward, gradient) passes of an iterative :meth:`AttackCheck.sweep_white_box` at most: every run
    costs ``steps x restarts`` gradient passes and one forward pass per input. The plan counts a robust
    model's cost (no input fooled early), the one that must fit the time target."""
    n = planned_samples(params, n_data)
    runs = sweep_runs(params, norm)
    return float(n * runs), float(n * runs * max(1, params.steps) * max(1, params.restarts))


class PassCounter:
    """A differentiable ``forward`` that counts the inputs it sees: forward passes, and backward passes
    (inputs that require a gradient), one per input each."""

    def __init__(self, forward: Callable[[torch.Tensor], torch.Tensor]) -> None:
        self.forward = forward
        self.forwards = 0
        self.backwards = 0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        import torch

        self.forwards += len(x)
        if x.requires_grad and torch.is_grad_enabled():
            self.backwards += len(x)
        return self.forward(x)

    def report(self, floor: int, rule: str) -> dict[str, Any]:
        """``details.efficiency``: passes used, the plan's floor, and their ratio (forward passes / floor)."""
        return {
            "forward_passes": self.forwards,
            "backward_passes": self.backwards,
            "floor": floor,
            "floor_rule": rule,
            "ratio": self.forwards / floor if floor else math.nan,
        }


def _ladder(start: float, stop: float) -> list[float]:
    """Strengths doubling from ``start`` (exclusive) up to ``stop`` (inclusive)."""
    out, e = [], start
    while e < stop * (1 - 1e-9):
        e = min(2 * e, stop)
        out.append(e)
    return out


@dataclass(frozen=True)
class WhiteBoxParams:
    """Parameters every white-box strength sweep shares, trust thresholds included."""

    n_samples: int = 300  #: inputs attacked (a class-balanced prefix of the evaluation data)
    eps: float = 8 / 255  #: default strength (reported as ``attack.<a>.robust_accuracy``)
    sweep: tuple[float, ...] = (1 / 255, 2 / 255, 4 / 255, 8 / 255, 16 / 255)  #: strengths of the curve
    steps: int = 20  #: iterations per restart
    restarts: int = 1  #: random restarts (only inputs not yet fooled are attacked again)
    step_ratio: float = 2.5  #: PGD step size as ``step_ratio * eps / steps``
    huge_eps: float = 0.5  #: self-check: a strength at which a working attack fools almost everything
    max_examples: int = 6
    #: trust: largest share of inputs with zero or non-finite input gradients
    max_dead_gradients: float = trust.MAX_DEAD_GRADIENTS
    #: trust: largest robust accuracy at ``huge_eps``
    max_accuracy_at_huge_eps: float = trust.MAX_ACCURACY_AT_HUGE_EPS


@dataclass(frozen=True)
class SweepParams(WhiteBoxParams):
    """Parameters of :meth:`AttackCheck.sweep_white_box`: one run per strength, then ladder and bisection."""

    refine_steps: int = 2  #: bisection steps for each input's smallest flipping eps
    #: trust: rise of robust accuracy with strength tolerated as noise (at least two samples' worth)
    monotone_tolerance: float = trust.MONOTONE_TOLERANCE


@dataclass(frozen=True)
class CurveParams(WhiteBoxParams):
    """Parameters of :meth:`AttackCheck.curve_white_box`: the curve from one minimum-norm run."""

    min_norm_steps: int = (
        50  #: minimum-norm steps (FMN in L-inf, DDN in L2; one forward and backward pass per input searching)
    )
    #: trust: largest share of inputs the fixed-budget attack flips that the minimum-norm search misses
    max_disagreement: float = trust.MAX_DISAGREEMENT
    #: the fixed-budget attack also at each other strength of the sweep, on the inputs whose smallest
    #: flipping strength found lies just above it (:meth:`AttackCheck._brackets`)
    refine_curve: bool = True
