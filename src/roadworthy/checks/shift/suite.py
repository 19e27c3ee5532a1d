"""The shift checks: one per shift of :mod:`roadworthy.shifts` (``shift.<name>``) and ``shift.summary``.

Each per-shift check applies its shift at severities 1-5 to a stratified sample of the evaluation data
(the same sample for every shift) and measures accuracy per severity, the share of predictions that flip
between the clean image and severity 1, and the calibration error under the shift. Where the session's
validity gate (:func:`roadworthy.checks.reference.validity_gate`) can be fitted, failures are split into
in-envelope (the input still looks like the data: a real defect) and out-of-envelope (the input left the
data distribution; Berend et al., ASE 2020).

``shift.summary`` aggregates them as ImageNet-C does (Hendrycks & Dietterich, ICLR 2019): mean accuracy
over shifts (mPC), its ratio to clean accuracy (rPC), the worst shift, and with a baseline report the
corruption errors normalised by the baseline's (mCE, relative mCE).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from roadworthy import evidence
from roadworthy.checks.base import Block, Check, Context, Outcome, Requires, ShiftedOutputs, register
from roadworthy.checks.reference import gate_plan_passes, validity_gate
from roadworthy.errors import RoadworthyError
from roadworthy.evidence import png_data_uri
from roadworthy.models.base import to_logits, to_probs
from roadworthy.results import Example, ExampleImage
from roadworthy.shifts import SHIFTS, Shift, image_size, table_name
from roadworthy.stats import expected_calibration_error, proportion_metrics

log = logging.getLogger(__name__)

N_BINS = 15
N_CANDIDATES = 8  # images whose shifted versions are kept to pick the example strip from
CAVEAT = (
    "Severity parameters follow ImageNet-C (224 px) and CIFAR-10-C (32 px), chosen and scaled by image "
    "size, with procedural frost and line-kernel motion blur; the numbers are not directly comparable "
    "with published ImageNet-C or CIFAR-10-C results, which use the released image files."
)


@dataclass(frozen=True)
class ShiftParams:
    """Parameters of every per-shift check.

    Attributes
    ----------
    n_samples
        Size of the stratified sample of the evaluation data; 0 means all of it.
    severities
        Which severities (1..5) to measure; the per-shift accuracy is their mean.
    n_examples
        How many example strips (one image at every severity) to attach.
    """

    n_samples: int = 2000
    severities: tuple[int, ...] = (1, 2, 3, 4, 5)
    n_examples: int = 1


def sample_indices(ctx: Context, n_samples: int) -> np.ndarray:
    """The evaluation rows every shift check uses: one stratified sample per size and seed."""
    n = ctx.data.n_samples if n_samples <= 0 else n_samples
    return ctx.sample(n, "shift")


def _gate(ctx: Context) -> tuple[Any, str | None]:
    """The session's validity gate, or ``None`` with the reason it is unavailable."""
    try:
        gate = validity_gate(ctx)
    except (RoadworthyError, ValueError, np.linalg.LinAlgError) as exc:
        return None, f"the validity gate could not be fitted ({exc})"
    if gate is None:
        return None, "the validity gate could not be fitted on this model and data"
    return gate, None


def _in_envelope(ctx: Context, gate: Any, xs: np.ndarray, raw: np.ndarray) -> np.ndarray:
    """The gate's verdict on shifted inputs; a gate on logits reuses the outputs already computed."""
    if gate.detector.space == "logits":
        return gate.detector.score(to_logits(raw, ctx.model.output)) <= gate.threshold
    return gate.in_envelope(xs)


def _bin_sums(probs: np.ndarray, y: np.ndarray) -> dict[str, list[float]]:
    """Per confidence bin: count, sum of confidences, number correct (for pooling ECE across checks)."""
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == y
    edges = np.linspace(0.0, 1.0, N_BINS + 1)
    b = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, N_BINS - 1)
    return {
        "count": np.bincount(b, minlength=N_BINS).astype(float).tolist(),
        "confidence_sum": np.bincount(b, weights=conf, minlength=N_BINS).tolist(),
        "correct_sum": np.bincount(b, weights=correct.astype(float), minlength=N_BINS).tolist(),
    }


def _ece_from_bins(count: np.ndarray, conf_sum: np.ndarray, correct_sum: np.ndarray) -> float:
    total = count.sum()
    if total <= 0:
        return math.nan
    return float(np.abs(conf_sum - correct_sum).sum() / total)


def _mean_accuracy_metrics(name: str, mean_accuracy: float, n: int) -> dict[str, float]:
    """A mean of accuracies on the same ``n`` images, with a Wilson interval as if from ``n`` images.

    The severities (or shifts) share their images, so they are not independent samples: the interval
    uses the number of distinct images, which is conservative.
    """
    return proportion_metrics(name, round(mean_accuracy * n), n) | {name: mean_accuracy}


class ShiftCheck(Check):
    """Accuracy of the model under one shift at severities 1-5 (base of the generated ``shift.<name>``)."""

    shift_name: ClassVar[str]

    @classmethod
    def plan_passes(cls, params: Any, n_data: int) -> tuple[float, float]:
        """Every sampled input at every severity, and at most once more for a failing one (a validity
        gate on features embeds the failures it splits)."""
        n = n_data if params.n_samples <= 0 else min(params.n_samples, n_data)
        return float(2 * n * len(params.severities)), 0.0

    @classmethod
    def plan_shared_work(cls, params: Any, n_data: int, n_train: int, budget: str) -> dict[str, float]:
        """Fitting the validity gate that splits failures (once per run, whichever check comes first)."""
        return {"ood.validity_gate": gate_plan_passes(n_data, n_train, budget)}

    requires = Requires(modalities=frozenset({"image"}))
    Params = ShiftParams
    budget_params: ClassVar[dict[str, dict[str, Any]]] = {
        # quick: 24 shifts (no ImageNet-C extras) x 3 severities x 400 images = 28,800 model calls
        "quick": {"n_samples": 400, "severities": (1, 3, 5)},
        "thorough": {"n_samples": 0},
    }

    def shard_items(self, ctx: Context) -> int:
        """The sampled rows: their blocks of positions run anywhere and merge in order."""
        return len(sample_indices(ctx, self.params.n_samples))

    def _candidates(self, ctx: Context, idx: np.ndarray) -> list[int]:
        """Positions whose shifted images are kept for the example strip (correct ones first)."""
        y, clean_pred = ctx.data.y[idx], ctx.clean_pred[idx]
        pick = ctx.rng(self.id, "examples").permutation(len(idx))
        return [int(i) for i in pick if clean_pred[i] == y[i]][:N_CANDIDATES] or [
            int(i) for i in pick[:N_CANDIDATES]
        ]

    def run_block(self, ctx: Context, block: Block) -> dict[str, Any]:
        """Every severity on the block's rows: outputs, the gate's split of failures, the strip images.

        The shift's randomness is keyed by check, severity and block, so the same seed gives the same
        shifted images whichever worker runs the block.
        """
        p: ShiftParams = self.params
        sh: Shift = SHIFTS[self.shift_name]
        name = sh.name
        idx = sample_indices(ctx, p.n_samples)
        rows = idx[block.start : block.stop]
        y = ctx.data.y[rows]
        gate, gate_note = _gate(ctx)
        mine = [i for i in self._candidates(ctx, idx) if block.start <= i < block.stop]
        x0 = ctx.data.x[rows]
        part: dict[str, Any] = {
            "clean": ctx.clean_probs[rows].astype(np.float32, copy=False),
            "gate": gate.describe() if gate is not None else None,
            "gate_note": gate_note,
            "raw": {},
            "inside": {},
            "change": {},
            "kept": {i: {} for i in mine},
        }
        for s in p.severities:
            # outputs already published on these rows (this check run before in the session, or another
            # check that fed the same rows): reused, the model is not called again
            hit = ctx.find_shifted(name, s, idx)
            if hit is not None and hit.by != self.id:  # its images are gone: no split, no strip here
                part["raw"][s] = hit.raw[block.start : block.stop]
                part["inside"][s], part["change"][s] = None, None
                continue
            xs = sh.apply(x0, s, ctx.rng(self.id, s, "block", block.index))
            if hit is not None:  # the same check again: the images are made again for the split and strip
                raw = hit.raw[block.start : block.stop]
            else:
                raw = ctx.predict_raw(xs).astype(np.float32, copy=False)
            pred = to_probs(raw, ctx.model.output).argmax(axis=1)
            inside = None
            if gate is not None:  # only failures are split and scored
                inside = np.ones(len(rows), bool)
                fail = np.flatnonzero(pred != y)
                if fail.size:
                    inside[fail] = _in_envelope(ctx, gate, xs[fail], raw[fail])
            for i in mine:
                part["kept"][i][s] = (xs[i - block.start].copy(), int(pred[i - block.start]))
            part["raw"][s], part["inside"][s] = raw, inside
            part["change"][s] = float(np.abs(xs - x0, dtype=np.float32).sum(dtype=np.float64))
            del xs
        return part

    def merge(self, ctx: Context, parts: list[dict[str, Any]]) -> Outcome:
        """Metrics from the merged per-sample outputs; the outputs are shared with later checks."""
        p: ShiftParams = self.params
        sh: Shift = SHIFTS[self.shift_name]
        name = sh.name
        idx = sample_indices(ctx, p.n_samples)
        y = ctx.data.y[idx]
        n = len(idx)
        per = max(1, int(np.prod(ctx.data.input_shape)))
        if parts:
            clean_probs = np.concatenate([q["clean"] for q in parts])
            gate_described, gate_note = parts[0]["gate"], parts[0]["gate_note"]
        else:
            clean_probs = ctx.clean_probs[idx]
            gate, gate_note = _gate(ctx)
            gate_described = gate.describe() if gate is not None else None
        clean_pred = clean_probs.argmax(axis=1)
        has_gate = gate_described is not None
        kept: dict[int, dict[int, tuple[np.ndarray, int]]] = {}
        for q in parts:
            kept.update(q["kept"])

        metrics: dict[str, float] = {}
        per_severity: list[dict[str, Any]] = []
        all_probs, all_y = [], []
        in_failures = out_failures = 0
        for s in p.severities:
            raw = (
                np.concatenate([q["raw"][s] for q in parts])
                if parts
                else np.zeros((0, ctx.n_classes), np.float32)
            )
            reused = any(q["change"][s] is None for q in parts)  # another check's outputs, as they are
            if ctx.find_shifted(name, s, idx) is None:  # published once, by the check that computed them
                change = float(sum(q["change"][s] for q in parts))
                ctx.share_shifted(
                    ShiftedOutputs(name, int(s), np.asarray(idx), raw, change / max(1, n * per), self.id)
                )
            split = has_gate and parts and not reused and all(q["inside"][s] is not None for q in parts)
            inside = np.concatenate([q["inside"][s] for q in parts]) if split else None
            probs = to_probs(raw, ctx.model.output).astype(np.float32, copy=False)
            pred = probs.argmax(axis=1)
            correct = pred == y
            metrics |= proportion_metrics(f"shift.{name}.s{s}.accuracy", correct)
            row: dict[str, Any] = {
                "severity": s,
                "accuracy": float(correct.mean()),
                "ece": expected_calibration_error(probs, y, N_BINS),
                "flip_rate": float(np.mean(pred != clean_pred)),
                "mean_confidence": float(probs.max(axis=1).mean()),
            }
            if inside is not None:
                fail = ~correct
                row |= {
                    "in_envelope_failures": int(np.sum(fail & inside)),
                    "out_of_envelope_failures": int(np.sum(fail & ~inside)),
                }
                in_failures += row["in_envelope_failures"]
                out_failures += row["out_of_envelope_failures"]
            per_severity.append(row)
            all_probs.append(probs)
            all_y.append(y)

        accs = [r["accuracy"] for r in per_severity]
        mean_acc = float(np.mean(accs))
        metrics |= _mean_accuracy_metrics(f"shift.{name}.accuracy", mean_acc, n)
        if has_gate:
            metrics[f"shift.{name}.in_envelope_failures"] = float(in_failures)
            metrics[f"shift.{name}.out_of_envelope_failures"] = float(out_failures)
        pooled_probs, pooled_y = np.concatenate(all_probs), np.concatenate(all_y)
        first = per_severity[0]
        clean_acc = float(np.mean(clean_pred == y))
        size = image_size(ctx.data.x[:1])
        details: dict[str, Any] = {
            "shift": name,
            "group": sh.group,
            "description": sh.description,
            "imagenet_c": sh.imagenet_c,
            "n_samples": n,
            "severities": list(p.severities),
            "severity_accuracy": {str(r["severity"]): r["accuracy"] for r in per_severity},
            "per_severity": per_severity,
            "clean_accuracy": clean_acc,
            "flip_rate": first["flip_rate"],
            "flip_severity": first["severity"],
            "flips": round(first["flip_rate"] * n),
            "ece": expected_calibration_error(pooled_probs, pooled_y, N_BINS),
            "calibration_bins": _bin_sums(pooled_probs, pooled_y),
            "image_size": size,
            "parameter_table": table_name(size)
            if sh.group in ("noise", "blur", "weather", "digital", "extra")
            else "own",
            "caveat": CAVEAT,
        }
        if has_gate:
            details["validity"] = {
                "gate": gate_described,
                "in_envelope_failures": in_failures,
                "out_of_envelope_failures": out_failures,
            }
        else:
            details["validity"] = {"gate": None, "reason": gate_note}
        worst = int(np.argmin(accs))
        summary = (
            f"{name.replace('_', ' ')}: accuracy {mean_acc:.1%} on average over severities "
            f"{', '.join(map(str, p.severities))} (clean {clean_acc:.1%}), "
            f"{accs[worst]:.1%} at severity {per_severity[worst]['severity']}."
        )
        return Outcome(
            metrics=metrics,
            details=details,
            examples=self._strips(ctx, sh, idx, y, clean_pred, kept, p),
            summary=summary,
        )

    def _strips(
        self,
        ctx: Context,
        sh: Shift,
        idx: np.ndarray,
        y: np.ndarray,
        clean_pred: np.ndarray,
        kept: dict[int, dict[int, tuple[np.ndarray, int]]],
        p: ShiftParams,
    ) -> list[Example]:
        """One image at every severity with the model's prediction; images that fail early come first."""

        def first_failure(i: int) -> int:
            wrong = [s for s, (_, pred) in sorted(kept[i].items()) if pred != y[i]]
            return wrong[0] if wrong else 99

        order = sorted(kept, key=first_failure)[: p.n_examples]
        examples = []
        for i in order:
            strip = sorted(kept[i].items())
            if not strip:
                continue
            last_s, (last_img, last_pred) = strip[-1]
            examples.append(
                Example(
                    title=f"{sh.name} at severities {strip[0][0]}-{last_s}",
                    label=ctx.class_name(int(y[i])),
                    original=png_data_uri(ctx.data.x[idx[i]]),
                    original_prediction=ctx.class_name(int(clean_pred[i])),
                    changed=png_data_uri(last_img),
                    changed_prediction=ctx.class_name(last_pred),
                    extra=[
                        ExampleImage(caption=f"s{s}: {ctx.class_name(pred)}", uri=png_data_uri(img))
                        for s, (img, pred) in strip
                    ],
                )
            )
        return examples


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


def _make_check(sh: Shift) -> type[Check]:
    """One registered check class for the shift ``sh``."""
    doc = (
        f"Accuracy under {sh.name.replace('_', ' ')} ({sh.group}) at severities 1-5. {sh.description}\n\n"
        "Threat model: natural distribution shift, no adversary (Hendrycks & Dietterich, ICLR 2019, for the "
        "ImageNet-C corruptions; the article's own shifts otherwise). The number is the share of the sample "
        "classified correctly after the shift, per severity and averaged over severities."
    )
    attrs: dict[str, Any] = {
        "id": f"shift.{sh.name}",
        "title": f"Shift: {sh.name.replace('_', ' ')}",
        "shift_name": sh.name,
        "__doc__": doc,
    }
    if sh.group == "extra":  # ImageNet-C's held-out validation corruptions: not in the quick budget
        attrs["budgets"] = frozenset({"standard", "thorough"})
    cls = type(f"Shift{_camel(sh.name)}", (ShiftCheck,), attrs)
    return register(cls)


SHIFT_CHECKS: dict[str, type[Check]] = {name: _make_check(sh) for name, sh in SHIFTS.items()}


# ---------------------------------------------------------------------------------------------- summary


def corruption_errors(
    model_acc: dict[str, dict[int, float]],
    base_acc: dict[str, dict[int, float]],
    model_clean: float | None,
    base_clean: float | None,
) -> dict[str, Any]:
    """ImageNet-C corruption errors of a model normalised by a baseline model's.

    ``CE_c = sum_s E(model, s, c) / sum_s E(base, s, c)`` over the severities both measured, and the
    relative CE ``sum_s (E(model, s, c) - E_clean(model)) / sum_s (E(base, s, c) - E_clean(base))``;
    mCE and relative mCE are their means over the corruptions (``E`` = 1 - accuracy).
    """
    ce: dict[str, float] = {}
    rel: dict[str, float] = {}
    for c, by_s in model_acc.items():
        common = sorted(set(by_s) & set(base_acc.get(c, {})))
        if not common:
            continue
        e_model = np.array([1 - by_s[s] for s in common])
        e_base = np.array([1 - base_acc[c][s] for s in common])
        if e_base.sum() > 0:
            ce[c] = float(e_model.sum() / e_base.sum())
        if model_clean is not None and base_clean is not None:
            denom = float((e_base - (1 - base_clean)).sum())
            if denom > 0:
                rel[c] = float((e_model - (1 - model_clean)).sum() / denom)
    return {
        "ce": ce,
        "relative_ce": rel,
        "mce": float(np.mean(list(ce.values()))) if ce else math.nan,
        "relative_mce": float(np.mean(list(rel.values()))) if rel else math.nan,
    }


def _baseline_grid(report: Any) -> tuple[dict[str, dict[int, float]], float | None]:
    """Per-corruption, per-severity accuracies and clean accuracy read from a baseline report."""
    grid: dict[str, dict[int, float]] = {}
    for key, value in (report.metrics or {}).items():
        parts = key.split(".")
        if (
            len(parts) == 4
            and parts[0] == "shift"
            and parts[3] == "accuracy"
            and parts[2][:1] == "s"
            and value is not None
        ):
            sev = parts[2][1:]
            if sev.isdigit():
                grid.setdefault(parts[1], {})[int(sev)] = float(value)
    clean = report.metrics.get("clean.accuracy") if report.metrics else None
    return grid, (float(clean) if clean is not None else None)


@register
class ShiftSummary(Check):
    """Aggregate robustness under shift: mPC, rPC, worst shift, flip rate, ECE, and mCE against a baseline.

    Hendrycks & Dietterich, ICLR 2019. ``shift.mean_accuracy`` (mPC) is the mean over the shifts run of
    their mean accuracy over severities; ``shift.rpc`` divides it by clean accuracy on the same images
    (1 = no loss); ``shift.worst_accuracy`` is the worst shift's mean accuracy; ``shift.flip_rate`` the
    share of predictions that change between a clean image and its severity-1 shift, pooled over shifts;
    ``shift.ece`` the expected calibration error of all shifted predictions pooled. With ``--baseline``,
    ``shift.mce`` and ``shift.relative_mce`` normalise this model's errors by the baseline's, as ImageNet-C
    normalises by AlexNet, over the 15 ImageNet-C corruptions both reports measured (below 1 = better).
    Threat model: natural distribution shift, no adversary.
    """

    id = "shift.summary"
    title = "Shift: summary (mPC, rPC, worst shift, mCE)"
    requires = Requires(modalities=frozenset({"image", "tabular"}))  # tabular: the shift.tab_* checks
    depends_on = ("shift.*",)

    def run(self, ctx: Context) -> Outcome:
        results = [
            r
            for key, r in sorted(ctx.results.items())
            if key.startswith("shift.")
            and key != self.id
            and r.status in ("pass", "warn", "fail")
            and "severity_accuracy" in r.details
        ]
        if not results:
            return Outcome(
                warnings=["no shift check produced results, so there is nothing to summarise"],
                summary="No shift was measured.",
            )
        grid = {
            r.details["shift"]: {int(s): float(a) for s, a in r.details["severity_accuracy"].items()}
            for r in results
        }
        by_shift = {r.details["shift"]: r for r in results}
        mean_by_shift = {name: float(np.mean(list(g.values()))) for name, g in grid.items()}
        n = int(min(r.details["n_samples"] for r in results))
        clean = by_shift[next(iter(by_shift))].details.get("clean_accuracy")
        if clean is None:  # every shift check records it; this is for results from elsewhere
            clean = float(np.mean(ctx.clean_pred == ctx.data.y))
        mpc = float(np.mean(list(mean_by_shift.values())))
        worst_name = min(mean_by_shift, key=mean_by_shift.__getitem__)
        metrics = _mean_accuracy_metrics("shift.mean_accuracy", mpc, n)
        metrics["shift.rpc"] = mpc / clean if clean > 0 else math.nan
        metrics |= _mean_accuracy_metrics("shift.worst_accuracy", mean_by_shift[worst_name], n)
        flips = sum(int(r.details["flips"]) for r in results)
        metrics |= proportion_metrics(
            "shift.flip_rate", flips, sum(int(r.details["n_samples"]) for r in results)
        )
        bins = [r.details["calibration_bins"] for r in results]
        metrics["shift.ece"] = _ece_from_bins(
            np.sum([b["count"] for b in bins], axis=0),
            np.sum([b["confidence_sum"] for b in bins], axis=0),
            np.sum([b["correct_sum"] for b in bins], axis=0),
        )
        order = sorted(mean_by_shift, key=mean_by_shift.__getitem__)  # worst first
        severities = sorted({s for g in grid.values() for s in g})
        details: dict[str, Any] = {
            "shifts": order,
            "severities": severities,
            "grid": [[grid[name].get(s) for s in severities] for name in order],
            "mean_accuracy_by_shift": {name: mean_by_shift[name] for name in order},
            "groups": {name: by_shift[name].details.get("group") for name in order},
            "clean_accuracy": clean,
            "worst_shift": worst_name,
            "worst_cell": min(
                ((name, s, a) for name, g in grid.items() for s, a in g.items()), key=lambda t: t[2]
            ),
            "n_samples": n,
            "parameter_table": next(
                (t for r in results if (t := r.details.get("parameter_table")) not in (None, "own")), "own"
            ),
            "image_size": by_shift[order[0]].details.get("image_size"),
            "caveat": CAVEAT,
            "definitions": {
                "shift.mean_accuracy": "mPC: mean over the shifts run of each shift's mean accuracy over severities",
                "shift.rpc": "mPC divided by clean accuracy on the same images",
                "shift.worst_accuracy": "the lowest per-shift mean accuracy",
                "shift.flip_rate": "share of images whose prediction changes between clean and severity 1, pooled",
                "shift.ece": "expected calibration error (15 bins) of all shifted predictions pooled",
            },
        }
        validity = {
            name: {
                k: by_shift[name].details["validity"][k]
                for k in ("in_envelope_failures", "out_of_envelope_failures")
            }
            for name in order
            if "in_envelope_failures" in by_shift[name].details.get("validity", {})
        }
        if validity:
            details["validity"] = {
                "per_shift": validity,
                "in_envelope_failures": sum(v["in_envelope_failures"] for v in validity.values()),
                "out_of_envelope_failures": sum(v["out_of_envelope_failures"] for v in validity.values()),
            }
        details[evidence.KEY] = [
            evidence.heatmap(
                "Accuracy by shift and severity, worst shift first",
                details["grid"],
                order,
                [f"s{s}" for s in severities],
                title="Accuracy under shift",
            )
        ]
        warnings: list[str] = []
        if ctx.baseline is not None:
            base_grid, base_clean = _baseline_grid(ctx.baseline)
            main = {
                name: g
                for name, g in grid.items()
                if SHIFTS.get(name) is not None and SHIFTS[name].imagenet_c
            }
            ce = corruption_errors(main, base_grid, clean, base_clean)
            if ce["ce"]:
                metrics["shift.mce"] = ce["mce"]
                if math.isfinite(ce["relative_mce"]):
                    metrics["shift.relative_mce"] = ce["relative_mce"]
                details["baseline"] = ce | {
                    "corruptions": sorted(ce["ce"]),
                    "baseline_clean_accuracy": base_clean,
                }
            else:
                warnings.append(
                    "the baseline report has no accuracies for the ImageNet-C corruptions measured here, so no mCE"
                )
        summary = (
            f"Mean accuracy under {len(grid)} shifts {mpc:.1%} ({metrics['shift.rpc']:.0%} of clean {clean:.1%}); "
            f"worst: {worst_name.replace('_', ' ')} at {mean_by_shift[worst_name]:.1%}."
        )
        return Outcome(metrics=metrics, details=details, warnings=warnings, summary=summary)
