"""``fuzz.deephunter``: coverage-guided fuzzing from the evaluation data, beside random testing.

The check is a thin measurement over :mod:`roadworthy.coverage`:

1. **Seeds**: a stratified sample of the evaluation data; seeds the model already misclassifies are
   dropped (a mutant of a wrong seed says nothing new).
2. **Bounds**: KMNC/NBC/SNAC bounds are profiled on a stratified sample of ``--train-data`` (else on the
   seeds, said in the report).
3. **Fuzzing**: DeepHunter's loop (probability-based seed selection with its power schedule, batch
   pools, metamorphic mutations under the L0/Linf constraint) for ``max_queries`` model queries, guided
   by KMNC. A black-box model (ONNX without named tensors, scikit-learn, a callable, a TorchScript
   graph) gets the same loop with prediction feedback instead: a mutant is new when its lineage reaches
   a predicted class or confidence bucket its seed had not reached.
4. **Validity**: a mutant the model gets wrong is a *failure*; it counts as a model defect (a *valid
   failure*) only when the session's validity gate (:func:`roadworthy.checks.reference.validity_gate`,
   the suite's best OOD detector fitted on training data) accepts it as in-distribution. Rejected ones
   are reported as invalid failures.
5. **Baseline**: random testing with the same budget, seeds and bounds, as DeepHunter's random mode
   runs it: every non-failing mutant joins the queue whatever its coverage, and the next entries are
   drawn uniformly from the queue (no power schedule), so the value of the guidance -- coverage
   feedback with probability-based selection -- is measured, not assumed.

**Sharding** (:class:`~roadworthy.checks.base.Check`'s protocol): the check's blocks are its
campaigns, the guided run (block 0) and the random baseline (block 1), each with its own generator
(``ctx.random_state(check, "guided" | "random")``); the local backend runs them one after the other,
the Ray backend on two workers, and :meth:`DeepHunterFuzz.merge` builds the same report from their
results. By default a campaign is not split (the loop is one coverage-driven queue); ``campaigns: n``
splits each run into ``n`` sub-campaigns on groups of the seeds (a different fuzzer, the same split on
every backend, merged by :func:`~roadworthy.coverage.merge_results`). The bounds and the gate are cached
per process and bit-identical wherever they are computed.

Metrics: ``fuzz.<criterion>.coverage`` (and ``_before``), ``fuzz.failures``, ``fuzz.valid_failures``,
``fuzz.invalid_failures``, ``fuzz.unique_failures``, ``fuzz.failure_rate`` with its interval, and the
same under ``fuzz.random.``.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from roadworthy import evidence
from roadworthy.checks.base import Block, Check, Context, Outcome, Requires, register
from roadworthy.checks.reference import gate_plan_passes, validity_gate
from roadworthy.coverage.mutations import ALPHA, BETA, Operator, make_operators
from roadworthy.data.base import stratified_sample
from roadworthy.errors import InvalidInputError, RoadworthyError
from roadworthy.evidence import png_data_uri
from roadworthy.results import Example
from roadworthy.stats import proportion_metrics, wilson_interval

log = logging.getLogger(__name__)

#: every criterion a white-box run measures, in report order
NEURON_CRITERIA = ("nc", "kmnc", "nbc", "snac", "tknc")
MEANING = (
    "A failure is a mutant of a correctly classified evaluation image -- changed by a small natural "
    "transformation (contrast, brightness, blur, noise, a slight rotation, shift or scale) within "
    "DeepHunter's limits -- that the model classifies differently from the original. A valid failure is "
    "one the validity gate still accepts as looking like the data: a plausible input the model gets "
    "wrong. Invalid failures left the data distribution and are not held against the model. The failure "
    "rate is the share of fuzzed mutants that are valid failures; fuzzing searches for failures on "
    "purpose, so it is not the error rate on natural data, but a model whose rate is high breaks under "
    "small, plausible changes."
)


@dataclass(frozen=True)
class FuzzParams:
    """Parameters of ``fuzz.deephunter``.

    Attributes
    ----------
    max_queries
        Model queries for the coverage-guided run, the dry run over the seeds included; the random
        baseline gets the same number.
    n_seeds
        Evaluation images sampled (stratified) as seeds.
    criterion
        Guiding criterion for white-box models (``kmnc``, ``nc``, ``nbc``, ``snac``, ``tknc``);
        black-box models are always guided by prediction feedback.
    strategy
        Seed selection: ``prob`` (DeepHunter's probability-based selection and power schedule),
        ``uniform``, ``recency``, ``tensorfuzz``.
    mutants_per_seed, seeds_per_iteration
        Mutants per selected queue entry, and entries per forward pass (the batch pool).
    n_profile
        Training images profiled for the KMNC/NBC/SNAC bounds.
    random_baseline
        Whether to run random testing with the same budget beside it.
    random_strategy
        Seed selection of the random baseline: ``uniform`` (DeepHunter's random mode, default) or any
        other strategy, e.g. ``prob`` to measure the coverage feedback alone (same selection, every
        mutant kept).
    n_examples
        Valid failing inputs shown beside their seeds.
    operators
        DeepHunter's mutation operators to use (empty: all nine: translation, scale, shear, rotation,
        contrast, brightness, blur, noise, pixel_change).
    shifts
        The project's image shifts to add as pixel operators (e.g. ``("jpeg_compression", "fog")``),
        each at ``shift_severities``; DeepHunter's constraint still bounds every mutant (L0 < alpha x
        size or Linf < beta x 255 from its reference), so a shift that changes too much is retried
        with another operator, like any mutation that breaks the constraint.
    shift_severities
        The severities a shift operator draws from (its parameter set).
    alpha, beta
        DeepHunter's constraint: the fraction of elements a mutant may change, or the fraction of
        the value range every element may move.
    campaigns
        Sub-campaigns per run (default 1: one campaign over every seed, DeepHunter's loop). With
        ``n`` > 1 each run (guided and random) becomes ``n`` independent campaigns, the ``g``-th on the
        seeds at positions ``g, g + n, g + 2n, ...`` of the seed sample with an ``n``-th of
        ``max_queries`` and its own generator, merged into one result (coverage: the union of the
        cells they touched). Each is a block, so a Ray cluster runs up to ``2n`` at once; the local
        backend runs the same split, so the report does not depend on the backend. It is a different
        fuzzer: each queue gets feedback only from its own seeds' coverage, so results differ from
        ``campaigns: 1`` (the report says so).
    """

    max_queries: int = 5000
    n_seeds: int = 200
    criterion: str = "kmnc"
    strategy: str = "prob"
    mutants_per_seed: int = 20
    seeds_per_iteration: int = 8
    n_profile: int = 2000
    random_baseline: bool = True
    random_strategy: str = "uniform"
    n_examples: int = 8
    operators: tuple[str, ...] = ()
    shifts: tuple[str, ...] = ()
    shift_severities: tuple[int, ...] = (1, 2)
    alpha: float = ALPHA
    beta: float = BETA
    campaigns: int = 1


def shift_operator(name: str, severities: tuple[int, ...]) -> Operator:
    """The project's shift ``name`` as a pixel operator whose parameter is the severity (one image at a
    time, drawing from the mutation's generator)."""
    from roadworthy import shifts

    if name not in shifts.SHIFTS:
        raise InvalidInputError(
            f"fuzz.deephunter: `shifts` names unknown shift '{name}'. Expected some of {', '.join(sorted(shifts.SHIFTS))}."
        )
    bad = [s for s in severities if not 1 <= int(s) <= shifts.MAX_SEVERITY]
    if not severities or bad:
        raise InvalidInputError(
            f"fuzz.deephunter: `shift_severities` must be non-empty, each in 1..{shifts.MAX_SEVERITY}. "
            f"Got {tuple(severities)}."
        )

    def fn(x: np.ndarray, params: Any, rng: np.random.Generator) -> np.ndarray:
        return np.concatenate(
            [shifts.apply_shift(name, x[i : i + 1], int(p), rng) for i, p in enumerate(params)]
        ).astype(np.float32, copy=False)

    return Operator(f"shift:{name}", "pixel", tuple(int(s) for s in severities), fn)


def _operators(p: FuzzParams) -> tuple[Operator, ...]:
    """The check's mutation operators: DeepHunter's (all, or ``operators``) plus ``shifts``."""
    extra = tuple(shift_operator(name, tuple(p.shift_severities)) for name in p.shifts)
    names = list(p.operators) or None
    if names is not None:
        names += [op.name for op in extra]
    return make_operators(names, extra=extra)


def _gate(ctx: Context) -> tuple[Any, str | None]:
    """The session's validity gate, or ``None`` with the reason it is unavailable."""
    try:
        gate = validity_gate(ctx)
    except (RoadworthyError, ValueError, np.linalg.LinAlgError) as exc:
        return None, f"the validity gate could not be fitted ({exc})"
    if gate is None:
        return None, "the validity gate could not be fitted on this model and data"
    return gate, None


def _unique(failures: list[Any]) -> int:
    """Valid failures deduplicated by root seed and (true class, predicted class) pair."""
    return len({(f.seed_index, f.true_class, f.predicted_class) for f in failures})


def _run_metrics(prefix: str, result: Any) -> dict[str, float]:
    valid = result.valid_failures
    m = {f"{prefix}.{name}.coverage": float(s.metric) for name, s in result.coverage_after.items()} | {
        f"{prefix}.{name}.coverage_before": float(s.metric) for name, s in result.coverage_before.items()
    }
    m[f"{prefix}.failures"] = float(len(result.failures))
    m[f"{prefix}.valid_failures"] = float(len(valid))
    m[f"{prefix}.invalid_failures"] = float(len(result.invalid_failures))
    m[f"{prefix}.unique_failures"] = float(_unique(valid))
    m[f"{prefix}.mutants"] = float(result.n_mutants)
    m |= proportion_metrics(f"{prefix}.failure_rate", len(valid), result.n_mutants)
    return m


def _run_details(result: Any, y: np.ndarray, class_name: Any) -> dict[str, Any]:
    """JSON facts of one run: coverage before/after, per operator and per class pair with intervals."""
    valid = result.valid_failures
    ops = {}
    for op, s in result.operators.items():
        n_valid = sum(1 for f in valid if f.chain and f.chain[-1][0] == op)
        lo, hi = wilson_interval(n_valid, s["mutants"])
        ops[op] = {
            **s,
            "valid_failures": n_valid,
            "failure_rate": n_valid / s["mutants"] if s["mutants"] else None,
            "failure_rate_ci": [lo, hi] if s["mutants"] else None,
        }
    mutants_by_class: Counter[int] = Counter()
    for seed, n in result.mutants_by_seed.items():
        mutants_by_class[int(y[seed])] += n
    pairs = Counter((f.true_class, f.predicted_class) for f in valid)
    pair_rows = []
    for (t, p), k in pairs.most_common():
        n = mutants_by_class.get(t, 0)
        lo, hi = wilson_interval(k, n) if n else (None, None)
        pair_rows.append(
            {
                "true": class_name(t),
                "predicted": class_name(p),
                "valid_failures": k,
                "mutants_of_true_class": n,
                "failure_rate": k / n if n else None,
                "failure_rate_ci": [lo, hi] if n else None,
                "seeds": len({f.seed_index for f in valid if (f.true_class, f.predicted_class) == (t, p)}),
            }
        )
    return {
        "mode": result.mode,
        "strategy": result.strategy,
        "criterion": result.criterion,
        "criterion_params": result.criterion_params,
        "coverage_before": {
            k: {"metric": s.metric, "cells": s.cell_ratio} for k, s in result.coverage_before.items()
        },
        "coverage_after": {
            k: {"metric": s.metric, "cells": s.cell_ratio} for k, s in result.coverage_after.items()
        },
        "queries": result.n_queries,
        "mutants": result.n_mutants,
        "mutation_failures": result.n_mutation_failures,
        "iterations": result.iterations,
        "queue_size_initial": result.queue_size_initial,
        "queue_size": result.queue_size,
        "queue_images": dict(result.queue_images),
        "seeds_attacked": result.seeds_attacked,
        "failures": len(result.failures),
        "valid_failures": len(valid),
        "invalid_failures": len(result.invalid_failures),
        "unique_failures": _unique(valid),
        "distinct_failing_images": result.unique_failures,
        "operators": ops,
        "class_pairs": pair_rows,
    }


@register
class DeepHunterFuzz(Check):
    """Coverage-guided fuzzing (DeepHunter, Xie et al., ISSTA 2019) from the evaluation data.

    Threat model: no adversary; small natural transformations of real inputs (deployment robustness),
    searched for systematically. White-box PyTorch models are guided by neuron coverage (KMNC, with NC,
    NBC, SNAC and TKNC measured); any other model by prediction feedback, stated in the report. A
    failure counts against the model only when the validity gate accepts the mutant as
    in-distribution. Random testing with the same query budget runs beside it as the baseline.
    """

    id = "fuzz.deephunter"
    title = "Fuzzing: coverage-guided (DeepHunter) vs random"
    requires = Requires(modalities=frozenset({"image"}))
    Params = FuzzParams
    budget_params: ClassVar[dict[str, dict[str, Any]]] = {
        "quick": {"max_queries": 1000, "n_seeds": 50, "n_profile": 500, "n_examples": 4},
        "thorough": {"max_queries": 20000, "n_seeds": 500, "n_profile": 5000},
    }

    plan_queries = ("max_queries", 500)  #: a large model's plan may lower it to 500 (stated in the plan)

    @classmethod
    def plan_shared_work(cls, params: Any, n_data: int, n_train: int, budget: str) -> dict[str, float]:
        """Fitting the validity gate that judges failing mutants (once per run)."""
        return {"ood.validity_gate": gate_plan_passes(n_data, n_train, budget)}

    @classmethod
    def plan_passes(cls, params: Any, n_data: int) -> tuple[float, float]:
        """The guided run's and the random baseline's queries, and the profiling pass for the bounds."""
        return float(2 * params.max_queries + params.n_profile), 0.0

    # -- sharding: the guided campaign and the random baseline are the check's two blocks
    shard_block = 1  #: one campaign per block

    def runs(self) -> tuple[str, ...]:
        """The campaigns, in block order: ``guided`` and, with ``random_baseline``, ``random``."""
        return ("guided", "random") if self.params.random_baseline else ("guided",)

    def campaigns(self) -> list[tuple[str, int]]:
        """The blocks: ``(run, sub-campaign)`` pairs, every sub-campaign of ``guided`` then of ``random``."""
        n = max(1, int(self.params.campaigns))
        return [(run, g) for run in self.runs() for g in range(n)]

    def shard_items(self, ctx: Context) -> int:
        """Two campaigns (one without the random baseline), each a block of its own (``campaigns``
        sub-campaigns each when the parameter asks for them).

        The fuzz loop is a sequential queue driven by coverage feedback, so by default a campaign is
        not split: sub-campaigns fuzz with a different feedback (each queue sees only its own seeds'
        coverage) and find other failures, so they are opt-in (``campaigns``). What the campaigns share (the seeds, the coverage bounds profiled on the
        training data, the validity gate) is computed by whichever block needs it first on a worker
        and cached there (:meth:`bounds`, :func:`~roadworthy.checks.reference.validity_gate`); the
        numbers are the same wherever it is computed.
        """
        return len(self.campaigns())

    def seeds(self, ctx: Context) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The seeds' evaluation rows, images and labels (a stratified sample; no model call)."""
        p: FuzzParams = self.params
        idx = ctx.sample(min(p.n_seeds, ctx.data.n_samples), self.id, "seeds")
        return (
            idx,
            np.asarray(ctx.data.x[idx], dtype=np.float32),
            np.asarray(ctx.data.y[idx]).astype(np.int64),
        )

    def bounds(self, ctx: Context, probe: Any, x: np.ndarray) -> tuple[Any, str]:
        """The KMNC/NBC/SNAC bounds (per-neuron min, max, mean, std) and where they were profiled.

        A stratified sample of ``--train-data`` (``n_profile`` rows), else the seeds ``x``. Computed
        once per session (or per Ray worker) and shared by both campaigns: the profile streams the same
        rows in the same batches wherever it runs, so every worker's bounds are bit-identical.
        """
        from roadworthy.coverage import profile

        p: FuzzParams = self.params
        layers = tuple(probe.layout.layers)
        if ctx.train_data is not None and ctx.train_data.n_samples:
            rows = stratified_sample(ctx.train_data.y, p.n_profile, ctx.rng(self.id, "profile"))
            key = f"{self.id}:bounds:training:{p.n_profile}:{layers}"
            return ctx.cached(
                key,
                lambda: profile(
                    probe, np.asarray(ctx.train_data.x[rows], np.float32), ctx.batch_size, "training"
                ),
            ), "training"
        key = f"{self.id}:bounds:evaluation:{p.n_seeds}:{layers}"
        return ctx.cached(key, lambda: profile(probe, x, ctx.batch_size, "evaluation")), "evaluation"

    def run_block(self, ctx: Context, block: Block) -> dict[str, Any]:
        """One campaign (``runs()[block.index]``): its :class:`~roadworthy.coverage.fuzzer.FuzzResult`
        and what the merge reports about its inputs (feedback kind, profile source, the gate)."""
        probes: list[Any] = []
        try:
            return self._campaign(ctx, *self.campaigns()[block.index], probes)
        finally:  # the probe's hooks sit on the user's module: never leave them there
            for probe in probes:
                close = getattr(probe, "close", None)
                if close is not None:
                    close()

    def split(self, n_seeds: int) -> tuple[list[np.ndarray], list[int]]:
        """The sub-campaigns' seed positions (round-robin over the seed sample) and query budgets."""
        p: FuzzParams = self.params
        n = int(p.campaigns)
        if n < 1 or n > n_seeds:
            raise InvalidInputError(
                f"fuzz.deephunter: `campaigns` must be between 1 and the number of seeds ({n_seeds}). Got {n}."
            )
        groups = [np.arange(g, n_seeds, n) for g in range(n)]
        share, extra = divmod(int(p.max_queries), n)
        budgets = [share + (1 if g < extra else 0) for g in range(n)]
        if n > 1 and min(budgets) <= len(groups[0]):
            raise InvalidInputError(
                f"fuzz.deephunter: with `campaigns` {n}, each sub-campaign's share of `max_queries` "
                f"({min(budgets)}) must exceed its seeds ({len(groups[0])}, run once first); lower "
                "`campaigns` or raise `max_queries`."
            )
        return groups, budgets

    def _campaign(self, ctx: Context, name: str, g: int, probes: list[Any]) -> dict[str, Any]:
        from roadworthy.coverage import NoSeedsError, fuzz, make_probe, random_testing

        p: FuzzParams = self.params
        operators = _operators(p)  # a bad operator or shift name: an input error (exit 2)
        _, x_all, y_all = self.seeds(ctx)
        groups, budgets = self.split(len(x_all))  # a bad split: an input error (exit 2)
        x, y = x_all[groups[g]], y_all[groups[g]]
        split = len(groups) > 1
        probe = make_probe(ctx.model, x[:1])
        probes.append(probe)
        white = probe.white_box
        source = None
        if white:
            guide = p.criterion.lower()
            if guide not in NEURON_CRITERIA:
                raise RoadworthyError(
                    f"fuzz.deephunter: `criterion` must be one of {', '.join(NEURON_CRITERIA)}. Got '{p.criterion}'."
                )
            bounds, source = self.bounds(ctx, probe, x_all)  # every sub-campaign: the same bounds
            criteria: tuple[str, ...] = NEURON_CRITERIA
        else:
            guide, bounds, criteria = "prediction", None, ()
        gate, gate_note = _gate(ctx)
        label = f"{name}, campaign {g + 1} of {len(groups)}" if split else name
        with ctx.progress.task(f"{self.id} ({label})", budgets[g]) as task:
            done = [0]

            def advance(q: int, _total: int) -> None:
                task.advance(max(0, q - done[0]))
                done[0] = q

            run = fuzz if name == "guided" else random_testing
            try:
                result = run(
                    ctx.model,
                    x,
                    y,
                    criterion=guide,
                    criteria=list(criteria),
                    train=bounds,
                    probe=probe,
                    mutants_per_seed=p.mutants_per_seed,
                    seeds_per_iteration=p.seeds_per_iteration,
                    max_queries=budgets[g],
                    is_valid=gate.in_envelope if gate is not None else None,
                    max_examples=p.n_examples,
                    batch_size=ctx.batch_size,
                    operators=operators,
                    alpha=p.alpha,
                    beta=p.beta,
                    seed=ctx.random_state(self.id, name, "campaign", g)
                    if split
                    else ctx.random_state(self.id, name),
                    keep_cells=split,
                    progress=advance,
                    strategy=p.strategy if name == "guided" else p.random_strategy,
                )
            except NoSeedsError as exc:
                if not split:  # a fact about the model, this check's error (not a stop of the run)
                    raise RoadworthyError(str(exc)) from exc
                result = None  # a sub-campaign without a correct seed: its seeds count as dropped
        return {
            "run": name,
            "campaign": g,
            "result": result,
            "white": white,
            "profile_source": source,
            "gate": gate.describe() if gate is not None else None,
            "gate_note": gate_note,
        }

    def merge(self, ctx: Context, parts: list[dict[str, Any]]) -> Outcome:
        """The report from the campaigns' results, in block order (no model call)."""
        from roadworthy.coverage import merge_results

        p: FuzzParams = self.params
        idx, x, y = self.seeds(ctx)
        groups, budgets = self.split(len(x))
        try:
            runs = {
                run: merge_results([part["result"] for part in parts if part["run"] == run], groups)
                for run in self.runs()
            }
        except InvalidInputError as exc:  # no sub-campaign had a correct seed: the check's error
            raise RoadworthyError(str(exc)) from exc
        first = parts[0]
        white = first["white"]
        warnings: list[str] = []
        if first["profile_source"] == "evaluation":
            warnings.append(
                "KMNC/NBC/SNAC bounds were profiled on the seeds (no --train-data): coverage of corner "
                "regions is measured against the evaluation data's range."
            )
        if first["gate"] is None:
            warnings.append(f"No validity gate ({first['gate_note']}): every failure counts as valid.")
        guided = runs["guided"]
        metrics = _run_metrics("fuzz", guided)
        if "random" in runs:
            metrics |= _run_metrics("fuzz.random", runs["random"])
        details: dict[str, Any] = {
            "feedback": "neuron coverage"
            if white
            else "prediction (black box: new predicted class or confidence bucket per seed)",
            "layers": list(guided.layers),
            "profile_source": guided.profile_source,
            "n_seeds": guided.n_seeds,
            "n_seeds_dropped": guided.n_seeds_dropped,
            "meaning": MEANING,
            "baseline": (
                "Random testing: the same seeds, bounds and query budget; every non-failing mutant joins the "
                f"queue whatever its coverage, and entries are selected '{p.random_strategy}'"
                + (" (DeepHunter's random mode)." if p.random_strategy == "uniform" else ".")
            )
            if p.random_baseline
            else None,
            "runs": {k: _run_details(r, y, ctx.class_name) for k, r in runs.items()},
            "campaigns": {
                "count": len(groups),
                "seeds": [len(gr) for gr in groups],
                "max_queries": budgets,
                "note": "one campaign per run over every seed (DeepHunter's loop)"
                if len(groups) == 1
                else (
                    f"each run is {len(groups)} independent sub-campaigns (round-robin groups of the seed "
                    "sample, an equal share of the queries, each queue guided only by its own seeds' "
                    "coverage), merged: coverage is the union of their cells. The same split runs on "
                    "every backend; the numbers differ from one campaign over every seed."
                ),
            },
        }
        if first["gate"] is not None:
            details["validity"] = {"gate": first["gate"], "queries_not_counted": True}
        else:
            details["validity"] = {"gate": None, "reason": first["gate_note"]}
        details[evidence.KEY] = self._evidence(ctx, runs, white)
        n_valid = len(guided.valid_failures)
        summary = (
            f"{'Coverage-guided' if white else 'Prediction-guided (black box)'} fuzzing of "
            f"{guided.n_seeds} seeds with {guided.n_mutants} mutants found {n_valid} valid failure"
            f"{'' if n_valid == 1 else 's'} ({_unique(guided.valid_failures)} unique) and "
            f"{len(guided.invalid_failures)} invalid"
        )
        if "random" in runs:
            r = runs["random"]
            summary += f"; random testing with the same budget found {len(r.valid_failures)} valid"
            if white:
                summary += (
                    f"; KMNC {guided.coverage_after['kmnc'].metric:.1%} guided vs "
                    f"{r.coverage_after['kmnc'].metric:.1%} random"
                )
        if len(groups) > 1:
            summary += f" (each run as {len(groups)} sub-campaigns on groups of the seeds)"
        summary += "."
        return Outcome(
            metrics=metrics,
            details=details,
            examples=self._examples(ctx, x, guided, idx, p.n_examples),
            warnings=warnings,
            summary=summary,
        )

    def _evidence(self, ctx: Context, runs: dict[str, Any], white: bool) -> list[dict[str, Any]]:
        guided = runs["guided"]
        names = list(guided.coverage_after)
        groups = {"before": [guided.coverage_before[c].metric for c in names]}
        groups |= {f"after, {k}": [r.coverage_after[c].metric for c in names] for k, r in runs.items()}
        items = [
            evidence.bars(
                "Coverage before and after fuzzing, per criterion (paper metric)"
                + ("" if white else "; black box: prediction feedback cells"),
                [c.upper() for c in names],
                groups,
                "coverage",
            )
        ]
        items.append(
            evidence.lines(
                f"Guiding criterion ({guided.criterion}) feedback cells touched, by model queries",
                _history_series(runs),
                "model queries",
                "cells touched",
                ylim=None,
            )
        )
        ops = sorted({*guided.operators})
        op_groups = {
            f"valid, {k}": [sum(1 for f in r.valid_failures if f.chain and f.chain[-1][0] == o) for o in ops]
            for k, r in runs.items()
        }
        op_groups["invalid, guided"] = [
            sum(1 for f in guided.invalid_failures if f.chain and f.chain[-1][0] == o) for o in ops
        ]
        items.append(
            evidence.bars(
                "Failures per mutation operator (the last of each chain)", ops, op_groups, "failures"
            )
        )
        k = ctx.n_classes
        grid = np.zeros((k, k))
        for f in guided.valid_failures:
            if 0 <= f.true_class < k and 0 <= f.predicted_class < k:
                grid[f.true_class, f.predicted_class] += 1
        labels = [ctx.class_name(i) for i in range(k)]
        items.append(
            evidence.heatmap(
                "Valid failures by true class (rows) and predicted class (columns), coverage-guided run",
                grid.tolist(),
                labels,
                labels,
                vmin=0.0,
                vmax=float(max(1.0, grid.max())),
                fmt="{:.0f}",
                cmap="Reds",
            )
        )
        return items

    def _examples(self, ctx: Context, x: np.ndarray, result: Any, idx: np.ndarray, n: int) -> list[Example]:
        """Valid failing inputs beside their seeds, one per (seed, class pair)."""
        out: list[Example] = []
        seen: set[tuple[int, int, int]] = set()
        for f in result.valid_failures:
            key = (f.seed_index, f.true_class, f.predicted_class)
            if f.image is None or key in seen:
                continue
            seen.add(key)
            chain = " -> ".join(f"{name}({_fmt(v)})" for name, v in f.chain)
            out.append(
                Example(
                    title=f"seed #{int(idx[f.seed_index])}: {chain}",
                    label=ctx.class_name(f.true_class),
                    original=png_data_uri(x[f.seed_index]),
                    original_prediction=ctx.class_name(f.true_class),
                    changed=png_data_uri(f.image),
                    changed_prediction=f"{ctx.class_name(f.predicted_class)} ({f.confidence:.0%})",
                )
            )
            if len(out) >= n:
                break
        return out


def _history_series(runs: dict[str, Any]) -> dict[str, tuple[list[float], list[float]]]:
    """Cells touched by queries, one line per run (per sub-campaign when the runs were split, each
    with its own cells, at the queries spent so far by the sub-campaigns before it and itself)."""
    out: dict[str, tuple[list[float], list[float]]] = {}
    for k, r in runs.items():
        if not r.history:
            out[k] = ([], [])
        for h in r.history:
            name = k if "campaign" not in h else f"{k} #{int(h['campaign']) + 1}"
            xs, ys = out.setdefault(name, ([], []))
            xs.append(h["queries"])
            ys.append(h["coverage"])
    return out


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    if isinstance(v, list | tuple):
        return ",".join(_fmt(e) for e in v)
    return str(v)
