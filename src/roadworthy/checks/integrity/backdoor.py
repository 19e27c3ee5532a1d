"""Backdoors found in the model itself (no training data): Neural Cleanse and the STRIP input detector.

Both checks read only the evaluation data. ``integrity.backdoor_scan`` reverse-engineers, per class, the
smallest trigger that sends clean inputs to it (:func:`roadworthy.backdoor.neural_cleanse`) and names a
class whose trigger is an outlier; ``integrity.strip`` fits the STRIP detector users could deploy in
front of the model and measures it on the trigger the scan recovered (when one was flagged).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from roadworthy import evidence
from roadworthy.checks.base import Check, Context, Outcome, Requires, register
from roadworthy.errors import InvalidInputError
from roadworthy.stats import proportion_metrics

if TYPE_CHECKING:
    from roadworthy.backdoor import NeuralCleanseResult
    from roadworthy.results import Example

#: Context cache key under which the scan leaves its recovered trigger for STRIP.
RECOVERED = "integrity.backdoor_scan.recovered"


@register
class BackdoorScan(Check):
    """Neural Cleanse (Wang et al., IEEE S&P 2019): a hidden all-to-one backdoor, found from the model alone.

    Threat model: the model was trained (by someone else, on data you cannot see) to send any input
    carrying a small trigger to one target class. For every class the check optimises the smallest mask
    and pattern that send ``n_inputs`` clean evaluation inputs to it; the target of a backdoor needs a
    far smaller mask than the others. A class is a *suspect* when its anomaly index (median absolute
    deviation of the mask norms, below the median) exceeds ``anomaly_threshold`` (2, the paper's cut)
    **and** its mask is at most ``max_norm_ratio`` of the median mask (on 10 to 15 classes a MAD index
    alone names a clean class now and then: a planted trigger is a shortcut several times smaller than
    any natural one, a clean model's smallest class about 0.6 of the median). The suspect's trigger is
    then pasted on held-out evaluation inputs of the other classes: ``attack_success`` with its interval
    confirms (or not) that it works as a backdoor.

    The optimisation stops a class once its mask stops shrinking (the paper's early stop) and the whole
    scan after ``max_seconds``, a safety net: the standard budget (120 steps of 8 inputs per class) is
    sized so that a 32-px, 10-class CNN (the demo's) finishes its steps in two minutes on two busy
    cores without reaching the cap (with 16 inputs per class it did not, and the cap decided the result). The default ``quick`` run leaves it out: its cost does not fit a CI run, and a scan cut short
    by ``max_seconds`` would make the numbers depend on the machine's speed. Name it to run it anyway
    (``--suite integrity.backdoor_scan``: a short, coarse scan, enough for an obvious patch backdoor).
    """

    id = "integrity.backdoor_scan"
    title = "Backdoor scan of the model (Neural Cleanse trigger reverse-engineering)"
    requires = Requires(capabilities=frozenset({"white_box"}), modalities=frozenset({"image"}), min_classes=3)
    budgets = frozenset({"standard", "thorough"})

    @dataclass(frozen=True)
    class Params:
        n_inputs: int = 200
        steps: int = 120
        batch_size: int = 8
        check_every: int = 5
        early_stop: int = 4
        max_seconds: float = 110.0
        max_classes: int = 50
        anomaly_threshold: float = 2.0
        max_norm_ratio: float = 0.5
        n_confirm: int = 500

    Params: ClassVar[type] = Params  # type: ignore[no-redef]
    budget_params: ClassVar[dict[str, dict[str, Any]]] = {
        "quick": {"n_inputs": 64, "steps": 40, "batch_size": 8, "max_seconds": 30.0, "n_confirm": 200},
        "thorough": {
            "n_inputs": 500,
            "steps": 400,
            "batch_size": 32,
            "max_seconds": 900.0,
            "n_confirm": 2000,
        },
    }

    def run(self, ctx: Context) -> Outcome:
        from roadworthy.backdoor import attack_success, neural_cleanse

        p = self.params
        if p.n_inputs < 4 or p.max_norm_ratio <= 0 or p.anomaly_threshold <= 0:
            raise InvalidInputError(
                "integrity.backdoor_scan: `n_inputs` must be >= 4 and `max_norm_ratio`, `anomaly_threshold` "
                f"positive. Got {p.n_inputs}, {p.max_norm_ratio}, {p.anomaly_threshold}."
            )
        x_all = np.asarray(ctx.data.x, dtype=np.float32)
        y_all = np.asarray(ctx.data.y, dtype=np.int64)
        k = ctx.n_classes
        classes = list(range(min(k, p.max_classes)))
        opt_rows = ctx.sample(p.n_inputs, self.id, "optimise")
        rest = np.setdiff1d(np.arange(len(y_all)), opt_rows)
        rng = ctx.rng(self.id, "confirm")
        confirm_rows = (
            rng.choice(rest, size=min(p.n_confirm, len(rest)), replace=False) if len(rest) else opt_rows
        )
        nc = neural_cleanse(
            ctx.model,
            x_all[opt_rows],
            y_all[opt_rows],
            classes=classes,
            steps=p.steps,
            batch_size=p.batch_size,
            check_every=p.check_every,
            early_stop=p.early_stop,
            max_seconds=p.max_seconds,
            seed=ctx.torch_seed(self.id),
            eval_batch_size=ctx.batch_size,
        )
        ratio = nc.l1 / max(float(np.median(nc.l1)), 1e-12)
        suspects = [
            c
            for c in nc.flagged(p.anomaly_threshold)
            if ratio[nc.classes.index(c)] <= p.max_norm_ratio and nc.reached[nc.classes.index(c)]
        ]
        top = suspects[0] if suspects else nc.suspect
        i = nc.classes.index(top)
        mask, pattern = nc.trigger(top)
        success = attack_success(
            ctx.model, x_all[confirm_rows], y_all[confirm_rows], mask, pattern, top, batch_size=ctx.batch_size
        )
        ctx.cached(
            RECOVERED,
            lambda: {
                "label": top,
                "mask": mask,
                "pattern": pattern,
                "flagged": bool(suspects),
                # per class, for the data-level scan's combined score (integrity.poisoning)
                "suspects": list(suspects),
                "anomaly_index": {c: float(a) for c, a in zip(nc.classes, nc.anomaly_index, strict=True)},
                "mask_ratio": {c: float(r) for c, r in zip(nc.classes, ratio, strict=True)},
            },
        )
        metrics = {
            "integrity.backdoor_scan.max_anomaly_index": float(nc.anomaly_index.max()),
            "integrity.backdoor_scan.suspect_count": float(len(suspects)),
            "integrity.backdoor_scan.mask_ratio": float(ratio[i]),
            **proportion_metrics("integrity.backdoor_scan.attack_success", success.hits, success.n),
        }
        warnings = []
        if nc.stopped == "time":
            warnings.append(
                f"the scan stopped at its time limit ({p.max_seconds:g} s) after {nc.steps} steps; classes not "
                "converged may read as less anomalous than they are (raise `max_seconds` or use --budget thorough)"
            )
        if not nc.reached.all():
            missed = [ctx.class_name(c) for c, r in zip(nc.classes, nc.reached, strict=True) if not r]
            warnings.append(f"no trigger reached the attack threshold for class(es) {', '.join(missed)}")
        name = ctx.class_name(top)
        if suspects:
            summary = (
                f"class {name} looks like a backdoor target: its smallest trigger covers {nc.l1[i]:.1f} px "
                f"({ratio[i]:.0%} of the median class), anomaly index {nc.anomaly_index[i]:.1f}, and sends "
                f"{success.rate:.0%} of held-out inputs of other classes to it."
            )
        else:
            summary = (
                f"no class has an outlying trigger (largest anomaly index {nc.anomaly_index.max():.1f}, class "
                f"{name}, mask {ratio[i]:.0%} of the median; thresholds {p.anomaly_threshold:g} and "
                f"{p.max_norm_ratio:.0%})."
            )
        names = [ctx.class_name(c) for c in nc.classes]
        details = {
            "suspect_classes": [ctx.class_name(c) for c in suspects],
            "candidate": name,
            "classes": [
                {
                    "class": names[j],
                    "label": c,
                    "mask_l1": round(float(nc.l1[j]), 3),
                    "mask_ratio": round(float(ratio[j]), 4),
                    "anomaly_index": round(float(nc.anomaly_index[j]), 3),
                    "reached": bool(nc.reached[j]),
                    "optimisation_success": round(float(nc.attack_success[j]), 4),
                    "steps": int(nc.class_steps[j]),
                }
                for j, c in enumerate(nc.classes)
            ],
            "confirmation": {
                "class": name,
                "n": success.n,
                "hits": success.hits,
                "rate": success.rate,
                "baseline": success.baseline,
            },
            "steps": nc.steps,
            "stopped": nc.stopped,
            "seconds": round(nc.seconds, 2),
            evidence.KEY: nc.evidence(names),
        }
        examples = _trigger_examples(ctx, x_all[confirm_rows], y_all[confirm_rows], mask, pattern, top, nc)
        return Outcome(
            metrics=metrics, details=details, examples=examples, warnings=warnings, summary=summary
        )


def _trigger_examples(
    ctx: Context,
    x: np.ndarray,
    y: np.ndarray,
    mask: np.ndarray,
    pattern: np.ndarray,
    target: int,
    nc: NeuralCleanseResult,
    n: int = 3,
) -> list[Example]:
    """Held-out inputs of other classes, before and with the recovered trigger."""
    from roadworthy.backdoor import apply_trigger
    from roadworthy.results import Example

    rows = np.flatnonzero(y != target)[:n]
    if not len(rows):
        return []
    patched = apply_trigger(x[rows], mask, pattern)
    before = ctx.predict_probs(x[rows]).argmax(axis=1)
    after = ctx.predict_probs(patched).argmax(axis=1)
    return [
        Example(
            title=f"recovered trigger for class {ctx.class_name(target)} pasted on a {ctx.class_name(int(y[r]))}",
            label=ctx.class_name(int(y[r])),
            original=evidence.png_data_uri(x[r]),
            original_prediction=ctx.class_name(int(b)),
            changed=evidence.png_data_uri(p),
            changed_prediction=ctx.class_name(int(a)),
        )
        for r, p, b, a in zip(rows, patched, before, after, strict=True)
    ]


@register
class Strip(Check):
    """STRIP (Gao et al., ACSAC 2019): an input-level backdoor detector you could deploy, and how it performs.

    Every input is superimposed on ``n_overlays`` clean images; a clean input's prediction follows the
    overlay (high entropy), a triggered one sticks to the target (low entropy). The threshold is fitted
    on half of ``n_inputs`` clean evaluation inputs for the false rejection rate ``frr``; the other half
    measures the observed FRR (with its interval). When ``integrity.backdoor_scan`` flagged a class in
    the same run, its recovered trigger is pasted on held-out inputs of other classes and the detection
    rate is reported too; otherwise only the FRR and threshold (no trigger to measure against). Queries
    only: black-box models run it.
    """

    id = "integrity.strip"
    title = "STRIP input-level backdoor detector (entropy under superimposition)"
    requires = Requires(modalities=frozenset({"image"}))

    @dataclass(frozen=True)
    class Params:
        n_inputs: int = 400
        n_overlays: int = 16
        frr: float = 0.01
        blend: str = "add"
        n_triggered: int = 200

    Params: ClassVar[type] = Params  # type: ignore[no-redef]
    budget_params: ClassVar[dict[str, dict[str, Any]]] = {
        "quick": {"n_inputs": 100, "n_overlays": 8, "n_triggered": 50},
        "thorough": {"n_inputs": 1000, "n_overlays": 32, "n_triggered": 500},
    }
    plan_samples = "n_inputs"  #: what a large model's plan lowers (stated in the plan)

    @classmethod
    def plan_passes(cls, params: Any, n_data: int) -> tuple[float, float]:
        """Every clean and triggered input superimposed on ``n_overlays`` images."""
        n = min(params.n_inputs, n_data) + min(params.n_triggered, n_data)
        return float(n * params.n_overlays), 0.0

    def run(self, ctx: Context) -> Outcome:
        from roadworthy.backdoor import apply_trigger, strip

        p = self.params
        if not 0.0 < p.frr < 0.5:
            raise InvalidInputError(f"integrity.strip: `frr` must be in (0, 0.5). Got {p.frr} instead.")
        x_all = np.asarray(ctx.data.x, dtype=np.float32)
        y_all = np.asarray(ctx.data.y, dtype=np.int64)
        rows = ctx.sample(p.n_inputs, self.id)
        recovered = ctx.cached(RECOVERED, lambda: None)  # left by integrity.backdoor_scan when it ran first
        x_trig = None
        trigger_from = None
        if recovered is not None and recovered["flagged"]:
            rest = np.setdiff1d(np.arange(len(y_all)), rows)
            rest = rest[y_all[rest] != recovered["label"]][: p.n_triggered]
            if len(rest):
                x_trig = apply_trigger(x_all[rest], recovered["mask"], recovered["pattern"])
                trigger_from = ctx.class_name(recovered["label"])
        res = strip(
            ctx.model,
            x_all[rows],
            x_trig,
            n_overlays=p.n_overlays,
            blend=p.blend,  # type: ignore[arg-type]
            frr=p.frr,
            seed=ctx.random_state(self.id),
            batch_size=ctx.batch_size,
        )
        false_rej = int((res.clean_entropy < res.detector.threshold).sum())
        metrics = {
            **proportion_metrics("integrity.strip.false_rejection_rate", false_rej, res.n_clean),
            "integrity.strip.threshold": float(res.detector.threshold),
        }
        if res.n_triggered:
            hits = int((res.triggered_entropy < res.detector.threshold).sum())
            metrics.update(proportion_metrics("integrity.strip.detection_rate", hits, res.n_triggered))
            summary = (
                f"STRIP flags {res.detection_rate:.0%} of inputs carrying the trigger recovered for class "
                f"{trigger_from}, rejecting {res.false_rejection_rate:.1%} of clean inputs (target FRR {p.frr:.0%})."
            )
        else:
            summary = (
                f"STRIP detector fitted (threshold {res.detector.threshold:.3f}, observed FRR "
                f"{res.false_rejection_rate:.1%} for a target of {p.frr:.0%}); no flagged trigger to measure "
                "detection against."
            )
        details = {
            "threshold": float(res.detector.threshold),
            "method": res.detector.method,
            "clean_entropy_mean": float(res.detector.clean_mean),
            "clean_entropy_std": float(res.detector.clean_std),
            "n_clean": res.n_clean,
            "n_triggered": res.n_triggered,
            "trigger_from": trigger_from,
            evidence.KEY: res.evidence(),
        }
        return Outcome(metrics=metrics, details=details, summary=summary)
