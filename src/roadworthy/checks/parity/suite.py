"""The parity checks: the model under test against ``--reference-model`` on the same inputs.

A model is validated in one form (the trained PyTorch file) and shipped in another (an ONNX or TorchScript
export, an int8 copy for the edge device). Every other suite measures the shipped file; this one says
whether it still is the model that was validated. Each check feeds the *same* inputs to both artifacts and
compares their answers with :func:`roadworthy.coverage.differential.compare_outputs`:

``parity.clean``
    the evaluation data (all of it, or ``n_samples``);
``parity.shift``
    a stratified sample under every shift of the shift suite, at every severity the budget runs (image
    data: the corruptions, weather, camera and road-sign shifts; tables: the tabular shifts);
``parity.adversarial``
    inputs found by PGD (L-inf, the attack suite's default 8/255) against the *reference*: the inputs
    closest to its decision boundary, where a rounding change tips the answer first (a white-box reference);
``parity.mutants``
    random metamorphic mutants of evaluation images (the fuzz suite's operators under DeepHunter's
    constraint);
``parity.summary``
    every input compared, pooled: ``parity.disagreement``, the number the default policy gates.

Per source: ``parity.<source>.disagreement`` (top-1 disagreement rate, Wilson interval, sample count),
``parity.<source>.max_abs_logit_diff`` and ``.p99_abs_logit_diff`` (the per-input largest output
difference, over the classes; logits when both give logits, else probabilities, said in ``details``),
and both models' accuracy side by side (``.accuracy`` for the model, ``.reference_accuracy``).

Without ``--reference-model`` every check is skipped, saying so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from roadworthy import evidence
from roadworthy.checks.base import Check, Context, Outcome, Requires, planned_samples, register
from roadworthy.coverage.differential import Comparison, compare_outputs
from roadworthy.evidence import png_data_uri
from roadworthy.models.base import capabilities
from roadworthy.results import Example
from roadworthy.stats import proportion_metrics

#: the sources of compared inputs, in report order (the ``<source>`` of the metric names)
SOURCES = ("clean", "shift", "adversarial", "mutants")
MEANING = (
    "The same inputs go to the model under test and to the reference model it should reproduce. "
    "Disagreement is the share of inputs on which their top-1 classes differ: 0 for an exact export, a "
    "few inputs near the decision boundary for a good quantized copy. The output difference is, per input, "
    "the largest absolute difference between the two output vectors; its maximum and 99th percentile over "
    "the inputs are reported."
)


def reference_description(ctx: Context) -> dict[str, Any]:
    """Which artifact was the reference: its file (or object type), format, sha256 and output kind."""
    ref = ctx.reference_model
    assert ref is not None
    identity = getattr(ref, "identity", None)
    path = getattr(identity, "path", None)
    return {
        "path": path,
        "format": str(getattr(ref, "format", type(ref).__name__)),
        "sha256": getattr(identity, "sha256", None),
        "output": str(getattr(ref, "output", "logits")),
        "white_box": "white_box" in capabilities(ref),
    }


def reference_name(ctx: Context) -> str:
    """The reference in a few words for a summary sentence: its file name or its kind, and format."""
    d = reference_description(ctx)
    if d["path"]:
        name = str(d["path"]).replace("\\", "/").rsplit("/", 1)[-1]
        return f"{name} ({d['format']})"
    return f"an in-memory {d['format']} model"


def source_metrics(source: str, comp: Comparison, y: np.ndarray | None) -> dict[str, float]:
    """The public metrics of one source of inputs (see the module docstring)."""
    prefix = f"parity.{source}"
    m = proportion_metrics(f"{prefix}.disagreement", comp.disagree)
    m[f"{prefix}.max_abs_logit_diff"] = comp.max_abs_diff
    m[f"{prefix}.p99_abs_logit_diff"] = comp.p99_abs_diff
    if y is not None:
        m |= proportion_metrics(f"{prefix}.accuracy", comp.pred == y)
        m |= proportion_metrics(f"{prefix}.reference_accuracy", comp.reference_pred == y)
    return m


def compare(ctx: Context, x: np.ndarray, raw: np.ndarray | None = None) -> Comparison:
    """Both models on ``x`` (``raw``: the model's outputs when already computed)."""
    model_raw = ctx.predict_raw(x) if raw is None else raw
    ref = ctx.reference_model
    assert ref is not None
    return compare_outputs(
        model_raw, str(ctx.model.output), ctx.predict_reference_raw(x), str(getattr(ref, "output", "logits"))
    )


def examples(
    ctx: Context,
    comp: Comparison,
    x: np.ndarray,
    y: np.ndarray | None,
    describe: Any,
    n: int,
) -> list[Example]:
    """Up to ``n`` disagreeing inputs with both predictions, the largest output differences first.

    ``describe(i)`` names input ``i`` (its row, shift and severity, ...) for the title.
    """
    order = [int(i) for i in np.argsort(-comp.abs_diff, kind="stable") if comp.disagree[i]][:n]
    out = []
    for i in order:
        ref_text = (
            f"reference: {ctx.class_name(int(comp.reference_pred[i]))} ({comp.reference_confidence[i]:.0%})"
        )
        model_text = f"model: {ctx.class_name(int(comp.pred[i]))} ({comp.confidence[i]:.0%})"
        out.append(
            Example(
                title=f"{describe(i)}: {ref_text}, {model_text}",
                label=ctx.class_name(int(y[i])) if y is not None else None,
                original=png_data_uri(x[i]) if x.ndim == 4 else None,
                original_prediction=f"{ref_text}; {model_text}",
            )
        )
    return out


def base_details(ctx: Context, comp: Comparison, source: str) -> dict[str, Any]:
    return {
        "source": source,
        "reference": reference_description(ctx),
        "compared_in": comp.space,
        "compared_in_why": (
            "both models give logits"
            if comp.space == "logits"
            else "a model gives probabilities only, so probabilities are compared (logit diff metrics "
            "hold probability differences)"
        ),
        "n_inputs": comp.n,
        "disagreements": comp.disagreements,
        "meaning": MEANING,
    }


def sentence(ctx: Context, source: str, comp: Comparison, metrics: dict[str, float]) -> str:
    """One summary sentence naming the reference."""
    key = f"parity.{source}.disagreement"
    lo, hi = metrics[f"{key}_ci_low"], metrics[f"{key}_ci_high"]
    what = "logit" if comp.space == "logits" else "probability"
    return (
        f"Against the reference {reference_name(ctx)}, the model predicts another class on "
        f"{comp.disagreements} of {comp.n} {source} inputs ({comp.disagreement:.2%}, 95% CI "
        f"{lo:.2%}-{hi:.2%}); largest {what} difference {comp.max_abs_diff:.3g} (p99 {comp.p99_abs_diff:.3g})."
    )


def source_outcome(
    ctx: Context,
    source: str,
    comp: Comparison,
    x: np.ndarray,
    y: np.ndarray | None,
    describe: Any,
    n_examples: int,
    details: dict[str, Any] | None = None,
    summary_tail: str = "",
) -> Outcome:
    """The outcome of one source of inputs: its metrics, the shared details (plus ``details``), the
    disagreeing examples and the summary sentence (plus ``summary_tail``)."""
    metrics = source_metrics(source, comp, y)
    return Outcome(
        metrics=metrics,
        details=base_details(ctx, comp, source) | (details or {}),
        examples=examples(ctx, comp, x, y, describe, n_examples),
        summary=sentence(ctx, source, comp, metrics) + summary_tail,
    )


class ParityCheck(Check):
    """Base of the parity checks: skipped without a reference model."""

    requires = Requires()

    @classmethod
    def unmet(cls, ctx: Context) -> str | None:
        if ctx.reference_model is None:
            return (
                "needs --reference-model (the artifact this model must agree with, e.g. the trained model "
                "an export or a quantized copy was made from)"
            )
        return super().unmet(ctx)


# ------------------------------------------------------------------------------------------------ clean


@dataclass(frozen=True)
class CleanParams:
    """Parameters of ``parity.clean``.

    Attributes
    ----------
    n_samples
        Evaluation inputs compared (stratified sample); 0 means all of them.
    n_examples
        Disagreeing inputs shown with both predictions.
    """

    n_samples: int = 0
    n_examples: int = 6


@register
class ParityClean(ParityCheck):
    """Top-1 agreement and output difference with the reference on the clean evaluation data."""

    id = "parity.clean"
    title = "Parity: clean data vs the reference model"
    Params = CleanParams

    @classmethod
    def plan_passes(cls, params: Any, n_data: int) -> tuple[float, float]:
        """The reference's pass over the inputs (the model's clean outputs are shared, computed once)."""
        return float(planned_samples(params, n_data)), 0.0

    def run(self, ctx: Context) -> Outcome:
        p: CleanParams = self.params
        if p.n_samples <= 0 or p.n_samples >= ctx.data.n_samples:
            idx = np.arange(ctx.data.n_samples)
        else:
            idx = np.sort(ctx.sample(p.n_samples, self.id))
        x, y = ctx.data.x[idx], np.asarray(ctx.data.y[idx])
        comp = compare(ctx, x, raw=ctx.clean_raw[idx])
        return source_outcome(ctx, "clean", comp, x, y, lambda i: f"row {int(idx[i])}", p.n_examples)


# ------------------------------------------------------------------------------------------------ shift


@dataclass(frozen=True)
class ShiftParams:
    """Parameters of ``parity.shift``.

    Attributes
    ----------
    n_samples
        Evaluation inputs (one stratified sample, the same for every shift) put through each shift at each
        severity: inputs compared = ``n_samples x shifts x severities``.
    severities
        The severities (1..5) the shift suite runs in this budget.
    extras
        Whether ImageNet-C's held-out extra corruptions are included (the shift suite runs them outside
        the quick budget).
    n_examples
        Disagreeing inputs shown with both predictions.
    """

    n_samples: int = 32
    severities: tuple[int, ...] = (1, 2, 3, 4, 5)
    extras: bool = True
    n_examples: int = 6


def _shifts(ctx: Context, extras: bool) -> list[tuple[str, Any]]:
    """``(name, apply(x, severity, rng))`` of every shift the shift suite runs on this data."""
    if ctx.modality == "image":
        from roadworthy.shifts import SHIFTS

        return [(name, sh.apply) for name, sh in SHIFTS.items() if extras or sh.group != "extra"]
    from roadworthy.checks.tabular import schema_for
    from roadworthy.shifts.tabular import TAB_SHIFTS

    schema = schema_for(ctx)

    def tabular(sh: Any) -> Any:
        def apply(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
            out = sh.apply(x, np.zeros(len(x), np.int64), severity, rng, schema)
            return out.x, out.rows

        return apply

    names = [n for n, sh in TAB_SHIFTS.items() if n != "tab_label_shift"]  # label shift moves no input
    return [(n, tabular(TAB_SHIFTS[n])) for n in names]


@register
class ParityShift(ParityCheck):
    """Agreement with the reference on shifted inputs: every shift at every severity the budget runs."""

    id = "parity.shift"
    title = "Parity: shifted inputs vs the reference model"
    Params = ShiftParams
    budget_params: ClassVar[dict[str, dict[str, Any]]] = {
        "quick": {"n_samples": 16, "severities": (1, 3, 5), "extras": False},
        "thorough": {"n_samples": 100},
    }

    @classmethod
    def plan_passes(cls, params: Any, n_data: int) -> tuple[float, float]:
        """Both models on every shifted input (about 30 shifts)."""
        return 2.0 * planned_samples(params, n_data) * len(params.severities) * 30, 0.0

    def run(self, ctx: Context) -> Outcome:
        p: ShiftParams = self.params
        n = ctx.data.n_samples if p.n_samples <= 0 else min(p.n_samples, ctx.data.n_samples)
        idx = ctx.sample(n, self.id)
        x0, y0 = ctx.data.x[idx], np.asarray(ctx.data.y[idx])
        shifts = _shifts(ctx, p.extras)
        parts: list[Comparison] = []
        xs_all, ys_all, labels = [], [], []
        grid: dict[str, dict[int, float]] = {}
        with ctx.progress.task(self.id, total=len(shifts) * len(p.severities)) as task:
            for name, apply in shifts:
                grid[name] = {}
                for s in p.severities:
                    out = apply(x0, s, ctx.rng(self.id, name, s))
                    if isinstance(out, tuple):  # tabular shifts may drop or repeat rows
                        xs, rows = out
                        ys = y0[rows]
                    else:
                        xs, rows, ys = out, np.arange(len(x0)), y0
                    task.advance(1)
                    if len(xs) == 0:
                        continue
                    xs = np.asarray(xs, np.float32)
                    comp = compare(ctx, xs)
                    grid[name][s] = comp.disagreement
                    parts.append(comp)
                    xs_all.append(xs)
                    ys_all.append(ys)
                    labels += [f"{name} s{s}, row {int(idx[r])}" for r in rows]
        comp = Comparison.concat(parts)
        x, y = np.concatenate(xs_all), np.concatenate(ys_all)
        details: dict[str, Any] = {
            "n_samples": int(n),
            "severities": list(p.severities),
            "shifts": [name for name, _ in shifts],
            "disagreement_by_shift": {name: {str(s): v for s, v in g.items()} for name, g in grid.items()},
        }
        worst = max(grid, key=lambda k: max(grid[k].values(), default=0.0))
        details[evidence.KEY] = [
            evidence.heatmap(
                "Top-1 disagreement with the reference by shift (rows) and severity (columns)",
                [[grid[name].get(s) for s in p.severities] for name in grid],
                list(grid),
                [f"s{s}" for s in p.severities],
                vmin=0.0,
                vmax=max(0.05, max((v for g in grid.values() for v in g.values()), default=0.0)),
                fmt="{:.1%}",
                cmap="Reds",
            )
        ]
        tail = f" Most disagreement under {worst.replace('_', ' ')}." if comp.disagreements else ""
        return source_outcome(ctx, "shift", comp, x, y, lambda i: labels[i], p.n_examples, details, tail)


# ------------------------------------------------------------------------------------------ adversarial


@dataclass(frozen=True)
class AdversarialParams:
    """Parameters of ``parity.adversarial``.

    Attributes
    ----------
    n_samples
        Evaluation images attacked (stratified sample).
    eps
        L-inf budget of the PGD run against the reference (the attack suite's default, 8/255).
    steps
        PGD steps.
    n_examples
        Disagreeing inputs shown with both predictions.
    """

    n_samples: int = 128
    eps: float = 8 / 255
    steps: int = 20
    n_examples: int = 6


@register
class ParityAdversarial(ParityCheck):
    """Agreement on adversarial inputs found by PGD against the reference (white-box reference, images).

    Adversarial inputs sit where the reference's decision is closest to changing, so they show first
    where a conversion moved the boundary: a quantized copy that agrees on natural data can part here.
    """

    id = "parity.adversarial"
    title = "Parity: the reference's adversarial inputs"
    requires = Requires(modalities=frozenset({"image"}))
    Params = AdversarialParams
    budget_params: ClassVar[dict[str, dict[str, Any]]] = {
        "quick": {"n_samples": 64, "steps": 10},
        "thorough": {"n_samples": 500, "steps": 50},
    }

    @classmethod
    def unmet(cls, ctx: Context) -> str | None:
        reason = super().unmet(ctx)
        if reason is None and "white_box" not in capabilities(ctx.reference_model):  # type: ignore[arg-type]
            return "the reference model offers no gradients (white_box), so PGD cannot run against it"
        return reason

    @classmethod
    def plan_passes(cls, params: Any, n_data: int) -> tuple[float, float]:
        """Both models on the adversarial inputs; the gradient passes run on the reference."""
        n = planned_samples(params, n_data)
        return 2.0 * n, float(n * params.steps)

    def run(self, ctx: Context) -> Outcome:
        import torch

        from roadworthy.attacks.pgd import pgd

        p: AdversarialParams = self.params
        n = min(p.n_samples, ctx.data.n_samples) if p.n_samples > 0 else ctx.data.n_samples
        idx = np.sort(ctx.sample(n, self.id))
        x0, y = np.asarray(ctx.data.x[idx], np.float32), np.asarray(ctx.data.y[idx])
        gen = torch.Generator().manual_seed(ctx.torch_seed(self.id))
        with ctx.progress.task(self.id, total=1) as task:
            adv = pgd(
                ctx.reference_model,
                x0,
                y.astype(np.int64),
                eps=p.eps,
                steps=p.steps,
                generator=gen,
                batch_size=ctx.batch_size,
            )
            task.advance(1)
        adv = np.asarray(adv, np.float32)
        comp = compare(ctx, adv)
        details = {
            "attack": "pgd_linf against the reference",
            "eps": p.eps,
            "steps": p.steps,
            "reference_fooled": int(np.count_nonzero(comp.reference_pred != y)),
        }
        return source_outcome(
            ctx,
            "adversarial",
            comp,
            adv,
            y,
            lambda i: f"PGD {p.eps * 255:.0f}/255 on row {int(idx[i])}",
            p.n_examples,
            details,
        )


# ---------------------------------------------------------------------------------------------- mutants


@dataclass(frozen=True)
class MutantParams:
    """Parameters of ``parity.mutants``.

    Attributes
    ----------
    n_seeds
        Evaluation images mutated (stratified sample).
    mutants_per_seed
        Random mutants of each (one metamorphic mutation of the fuzz suite each, under DeepHunter's
        constraint).
    n_examples
        Disagreeing inputs shown with both predictions.
    """

    n_seeds: int = 64
    mutants_per_seed: int = 16
    n_examples: int = 6


@register
class ParityMutants(ParityCheck):
    """Agreement on random metamorphic mutants of evaluation images (the fuzz suite's operators)."""

    id = "parity.mutants"
    title = "Parity: fuzzing mutants vs the reference model"
    requires = Requires(modalities=frozenset({"image"}))
    Params = MutantParams
    budget_params: ClassVar[dict[str, dict[str, Any]]] = {
        "quick": {"n_seeds": 32, "mutants_per_seed": 8},
        "thorough": {"n_seeds": 200, "mutants_per_seed": 32},
    }

    @classmethod
    def plan_passes(cls, params: Any, n_data: int) -> tuple[float, float]:
        return 2.0 * min(params.n_seeds, n_data) * params.mutants_per_seed, 0.0

    def run(self, ctx: Context) -> Outcome:
        from roadworthy.coverage.mutations import default_operators, mutate

        p: MutantParams = self.params
        idx = np.sort(ctx.sample(min(p.n_seeds, ctx.data.n_samples), self.id))
        seeds = np.asarray(ctx.data.x[idx], np.float32)
        rep = np.repeat(np.arange(len(idx)), max(1, p.mutants_per_seed))
        x = seeds[rep]
        zeros = np.zeros(len(x))
        ops = default_operators()
        m = mutate(x, x, zeros.astype(bool), zeros.astype(np.int64), zeros, ctx.rng(self.id), ops)
        keep = np.flatnonzero(m.ok)
        xm, rows = m.x[keep], rep[keep]
        y = np.asarray(ctx.data.y[idx])[rows]
        comp = compare(ctx, xm)
        op_names = [op.name for op in ops]
        by_op: dict[str, dict[str, int]] = {}
        for j, k in enumerate(keep):
            name = op_names[int(m.op[k])]
            entry = by_op.setdefault(name, {"mutants": 0, "disagreements": 0})
            entry["mutants"] += 1
            entry["disagreements"] += int(comp.disagree[j])
        details = {
            "n_seeds": len(idx),
            "mutants": len(keep),
            "mutation_failures": int(len(x) - len(keep)),
            "operators": by_op,
        }

        def describe(i: int) -> str:
            k = keep[i]
            return f"{op_names[int(m.op[k])]}({m.param[k]}) of row {int(idx[rows[i]])}"

        return source_outcome(ctx, "mutants", comp, xm, y, describe, p.n_examples, details)


# ---------------------------------------------------------------------------------------------- summary


@register
class ParitySummary(ParityCheck):
    """Every input the parity checks compared, pooled: ``parity.disagreement`` (the gated number)."""

    id = "parity.summary"
    title = "Parity: overall disagreement with the reference model"
    depends_on = ("parity.*",)

    def run(self, ctx: Context) -> Outcome:
        rows = []
        k_total = n_total = 0
        for source in SOURCES:
            r = ctx.results.get(f"parity.{source}")
            key = f"parity.{source}.disagreement"
            if r is None or r.status not in ("pass", "warn", "fail") or r.metrics.get(key) is None:
                continue
            n = int(r.metrics[f"{key}_n"] or 0)
            k = int(r.details.get("disagreements", round(float(r.metrics[key]) * n)))  # type: ignore[arg-type]
            k_total += k
            n_total += n
            rows.append(
                {
                    "source": source,
                    "disagreements": k,
                    "inputs": n,
                    "disagreement": r.metrics[key],
                    "ci": [r.metrics[f"{key}_ci_low"], r.metrics[f"{key}_ci_high"]],
                    "max_abs_logit_diff": r.metrics.get(f"parity.{source}.max_abs_logit_diff"),
                    "compared_in": r.details.get("compared_in"),
                }
            )
        details: dict[str, Any] = {"reference": reference_description(ctx), "sources": rows}
        if not n_total:
            return Outcome(
                details=details,
                warnings=["no parity check produced results, so there is nothing to pool"],
                summary=f"No input was compared with the reference {reference_name(ctx)}.",
            )
        metrics = proportion_metrics("parity.disagreement", k_total, n_total)
        details["meaning"] = (
            "Every input compared by the parity checks, pooled (sources weigh by their input counts)."
        )
        details[evidence.KEY] = [
            evidence.bars(
                "Top-1 disagreement with the reference by source of inputs",
                [row["source"] for row in rows],
                {"disagreement": [row["disagreement"] for row in rows]},
                "disagreement rate",
            )
        ]
        by = ", ".join(f"{row['source']} {row['disagreement']:.2%}" for row in rows)
        return Outcome(
            metrics=metrics,
            details=details,
            summary=(
                f"Against the reference {reference_name(ctx)}: {k_total} of {n_total} inputs predicted "
                f"differently ({metrics['parity.disagreement']:.2%}, 95% CI "
                f"{metrics['parity.disagreement_ci_low']:.2%}-{metrics['parity.disagreement_ci_high']:.2%}; "
                f"{by})."
            ),
        )


# ------------------------------------------------------------------------------------------------- fuzz


@dataclass(frozen=True)
class FuzzParams:
    """Parameters of ``parity.fuzz``.

    Attributes
    ----------
    max_queries
        Mutants sent to both models by the guided search; the random baseline gets as many.
    n_seeds
        Evaluation images (stratified sample) the searches start from.
    mutants_per_seed, seeds_per_iteration
        Mutants per chosen parent, and parents per iteration.
    random_baseline
        Whether random mutation with the same budget runs beside it.
    n_examples
        Disagreeing mutants shown with both predictions.
    """

    max_queries: int = 4000
    n_seeds: int = 64
    mutants_per_seed: int = 8
    seeds_per_iteration: int = 16
    random_baseline: bool = True
    n_examples: int = 6


def _fuzz_metrics(prefix: str, r: Any) -> dict[str, float]:
    return {
        f"{prefix}.queries": float(r.queries),
        f"{prefix}.disagreements": float(len(r.disagreements)),
        f"{prefix}.invalid_disagreements": float(r.invalid_disagreements),
        f"{prefix}.seeds_with_disagreement": float(r.seeds_with_disagreement),
        f"{prefix}.disagreements_per_10k": r.per_10k_queries,
    }


@register
class ParityFuzz(ParityCheck):
    """Differential fuzzing (DiffChaser, Xie et al., ASE 2019): mutants steered to where the two disagree.

    Disagreements that the evaluation data does not show are searched for: from images both models
    agree on, the mutants that widen the gap between their outputs are kept and mutated further
    (DeepHunter's operators and constraint, the fuzz suite's); a mutant on which the top-1 classes differ
    counts when the session's validity gate accepts it. Random mutation with the same number of queries
    runs beside it, so the value of the steering is measured, not assumed. A searched rate is not a rate on
    natural data: it is not pooled into ``parity.disagreement``.
    """

    id = "parity.fuzz"
    title = "Parity: differential fuzzing vs the reference model"
    requires = Requires(modalities=frozenset({"image"}))
    Params = FuzzParams
    budget_params: ClassVar[dict[str, dict[str, Any]]] = {
        "quick": {"max_queries": 1000, "n_seeds": 32},
        "thorough": {"max_queries": 20000, "n_seeds": 200},
    }
    plan_queries = ("max_queries", 500)

    @classmethod
    def plan_passes(cls, params: Any, n_data: int) -> tuple[float, float]:
        """Both models on every query, of the guided search and of the random baseline."""
        runs = 2 if params.random_baseline else 1
        return 2.0 * runs * params.max_queries + 2.0 * min(params.n_seeds, n_data), 0.0

    def run(self, ctx: Context) -> Outcome:
        from roadworthy.checks.reference import validity_gate
        from roadworthy.coverage.differential import differential_fuzz
        from roadworthy.errors import RoadworthyError

        p: FuzzParams = self.params
        idx = np.sort(ctx.sample(min(p.n_seeds, ctx.data.n_samples), self.id))
        x = np.asarray(ctx.data.x[idx], np.float32)
        warnings: list[str] = []
        try:
            gate = validity_gate(ctx)
        except (RoadworthyError, ValueError, np.linalg.LinAlgError) as exc:
            gate, why = None, f"the validity gate could not be fitted ({exc})"
        else:
            why = "the validity gate could not be fitted on this model and data"
        if gate is None:
            warnings.append(f"No validity gate ({why}): every disagreeing mutant counts.")
        ref = ctx.reference_model
        assert ref is not None
        common = {
            "max_queries": p.max_queries,
            "mutants_per_seed": p.mutants_per_seed,
            "seeds_per_iteration": p.seeds_per_iteration,
            "is_valid": gate.in_envelope if gate is not None else None,
        }
        args = (ctx.predict_raw, str(ctx.model.output), ctx.predict_reference_raw, str(ref.output))
        runs = {"guided": differential_fuzz(*args, x, guided=True, seed=ctx.random_state(self.id), **common)}
        if p.random_baseline:
            runs["random"] = differential_fuzz(
                *args, x, guided=False, seed=ctx.random_state(self.id, "random"), **common
            )
        metrics = _fuzz_metrics("parity.fuzz", runs["guided"])
        if "random" in runs:
            metrics |= _fuzz_metrics("parity.fuzz.random", runs["random"])
        details: dict[str, Any] = {
            "reference": reference_description(ctx),
            "n_seeds": len(idx),
            "validity_gate": gate.describe() if gate is not None else None,
            "runs": {
                k: {
                    "queries": r.queries,
                    "disagreements": len(r.disagreements),
                    "invalid_disagreements": r.invalid_disagreements,
                    "seeds_with_disagreement": r.seeds_with_disagreement,
                    "per_10k_queries": r.per_10k_queries if r.queries else None,
                }
                for k, r in runs.items()
            },
            "meaning": (
                "A disagreement is a mutant of an evaluation image, changed by small natural "
                "transformations, on which the two models predict different classes and which the "
                "validity gate still accepts as looking like the data. The search looks for them on "
                "purpose, so the rate per query is no rate on natural data; compare the guided search "
                "with random mutation of the same budget."
            ),
        }
        details[evidence.KEY] = [
            evidence.lines(
                "Disagreements found by model queries (both models per query)",
                {
                    k: ([h["queries"] for h in r.history], [h["disagreements"] for h in r.history])
                    for k, r in runs.items()
                },
                "queries",
                "disagreements",
                ylim=None,
            )
        ]
        g = runs["guided"]
        out: list[Example] = []
        for img, root, a, b, _ in g.disagreements:
            if len(out) >= p.n_examples or any(
                e.title.startswith(f"seed row {int(idx[root])}:") for e in out
            ):
                continue
            out.append(
                Example(
                    title=f"seed row {int(idx[root])}: reference {ctx.class_name(b)}, model {ctx.class_name(a)}",
                    label=ctx.class_name(int(ctx.data.y[idx[root]])),
                    original=png_data_uri(x[root]),
                    original_prediction="the seed: both agree",
                    changed=png_data_uri(img),
                    changed_prediction=f"reference: {ctx.class_name(b)}; model: {ctx.class_name(a)}",
                )
            )
        summary = (
            f"Differential fuzzing against the reference {reference_name(ctx)} found {len(g.disagreements)} "
            f"valid disagreement{'s' if len(g.disagreements) != 1 else ''} in {g.queries} queries "
            f"({g.per_10k_queries:.1f} per 10k, from {g.seeds_with_disagreement} of {len(idx)} seeds)"
        )
        if "random" in runs:
            r = runs["random"]
            summary += f"; random mutation with the same budget found {len(r.disagreements)}"
        return Outcome(
            metrics=metrics, details=details, examples=out, warnings=warnings, summary=summary + "."
        )
