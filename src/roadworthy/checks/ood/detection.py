"""``ood.<detector>`` checks: can the model's own outputs tell inputs from outside its world apart?

Each check scores held-out in-distribution (ID) evaluation inputs and generated OOD inputs with one
post-hoc detector (no retraining) and reports how well the scores separate them. Threat model: not an
attacker but the world: a deployed model will be shown blank frames, sensor noise, scenes of another
kind and images degraded beyond recognition, and it answers them with some class. A detector that
separates them lets the system abstain instead.

Sources (each scored separately, see :mod:`roadworthy.checks.ood.sources`): far-OOD noise, flat colours
and photo crops; near-OOD evaluation inputs under severity-5 shifts; and the user's ``--ood-data``.

Metrics per detector ``d``: ``ood.d.auroc``, ``ood.d.fpr95`` and ``ood.d.aupr``, each the mean over the
sources, and ``ood.d.<source>.auroc`` / ``.fpr95`` per source. AUROC 0.5 is chance, 1 perfect; FPR95 is
the share of OOD inputs still accepted when 95% of ID inputs are accepted (lower is better); AUPR is
average precision with ID as the positive class. ``ood.summary`` names the best detector by AUROC.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from roadworthy.checks.base import Check, Context, Outcome, Requires, register
from roadworthy.checks.ood import sources
from roadworthy.checks.ood.detectors import (
    KNN,
    Detector,
    Energy,
    Mahalanobis,
    MaxLogit,
    MaxSoftmax,
    aupr,
    auroc,
    fpr_at_tpr,
    roc_points,
)
from roadworthy.checks.ood.reference import embed, eval_embedding, fit_embedding, reference
from roadworthy.checks.ood.validity import validity_gate
from roadworthy.data.base import stratified_sample
from roadworthy.errors import InvalidInputError
from roadworthy.results import CheckResult, Example
from roadworthy.stats import proportion_metrics

log = logging.getLogger(__name__)

LOGIT_DETECTORS = ("msp", "max_logit", "energy")
FEATURE_DETECTORS = ("mahalanobis", "knn")


@dataclass(frozen=True)
class DetectionParams:
    n_id: int = 1000  #: held-out in-distribution inputs scored
    n_per_source: int = 500  #: generated inputs per OOD source (and at most this many of --ood-data x 4)
    near_severity: int = 5  #: severity of the shifts that make near-OOD inputs
    far_sources: tuple[str, ...] = ()  #: far-OOD sources; empty means every source for the modality
    near_shifts: tuple[str, ...] = ()  #: shifts for near-OOD; empty means the default heavy shifts
    k: int = 50  #: neighbours for ood.knn (fewer for small reference sets, see KNN)
    ridge: float = 1e-3  #: covariance ridge for ood.mahalanobis, relative to the mean variance


BUDGET_PARAMS: dict[str, dict[str, Any]] = {
    "quick": {"n_id": 500, "n_per_source": 200},
    "standard": {"n_id": 1000, "n_per_source": 500},
    "thorough": {"n_id": 5000, "n_per_source": 1000},
}


# ------------------------------------------------------------------------------------------- shared work


@dataclass
class Bench:
    """Held-out ID rows and the OOD inputs of every source, generated once per session and parameters."""

    id_idx: np.ndarray
    inputs: dict[str, np.ndarray]
    groups: dict[str, str]  # source -> "far" | "near" | "user"
    origin: dict[str, str]  # source -> where its inputs came from


def _bench_key(p: DetectionParams) -> str:
    return f"ood.bench:{p.n_id}:{p.n_per_source}:{p.near_severity}:{p.far_sources}:{p.near_shifts}"


def bench(ctx: Context, p: DetectionParams) -> Bench:
    """The ID inputs and OOD sources for ``p``, computed once per session."""

    def build() -> Bench:
        ref = reference(ctx)
        held = ref.heldout_idx
        id_idx = held[stratified_sample(ctx.data.y[held], p.n_id, ctx.rng("ood.id_sample"))]
        inputs: dict[str, np.ndarray] = {}
        groups: dict[str, str] = {}
        origin: dict[str, str] = {}
        n = p.n_per_source
        image = ctx.modality == "image"
        far = p.far_sources or (sources.FAR_IMAGE_SOURCES if image else sources.FAR_TABULAR_SOURCES)
        for kind in far:
            rng = ctx.rng("ood.far", kind)
            if image:
                inputs[kind] = sources.far_ood_images(kind, n, ctx.data.input_shape, rng)
            else:
                inputs[kind] = sources.far_ood_tabular(kind, n, ctx.data.x, rng)
            groups[kind], origin[kind] = "far", "generated"
        near = p.near_shifts or (sources.NEAR_IMAGE_SHIFTS if image else sources.NEAR_TABULAR_SHIFTS)
        # near-OOD from held-out rows only: shifted copies of fitting samples would look familiar
        base = ctx.data.x[held[stratified_sample(ctx.data.y[held], n, ctx.rng("ood.near_sample"))]]
        for name in near:
            rng = ctx.rng("ood.near", name)
            if image:
                x, where = sources.shifted_images(base, name, p.near_severity, rng)
            elif name == "shuffled_columns":
                x, where = sources.shuffled_columns(base, rng), "built-in"
            else:
                raise InvalidInputError(f"unknown tabular near-OOD shift {name!r}; use 'shuffled_columns'")
            inputs[f"shift_{name}"], groups[f"shift_{name}"], origin[f"shift_{name}"] = x, "near", where
        if ctx.ood_data is not None and ctx.ood_data.n_samples:
            user = ctx.ood_data.x
            if tuple(user.shape[1:]) != ctx.data.input_shape:
                raise InvalidInputError(
                    f"--ood-data: inputs must have the evaluation data's shape {ctx.data.input_shape}. "
                    f"Got {tuple(user.shape[1:])} instead."
                )
            cap = 4 * n
            rows = (
                np.sort(ctx.rng("ood.user").choice(len(user), cap, replace=False))
                if len(user) > cap
                else None
            )
            inputs["user"] = np.asarray(user if rows is None else user[rows], np.float32)
            groups["user"], origin["user"] = "user", ctx.ood_data.path or "--ood-data"
        return Bench(id_idx, inputs, groups, origin)

    return ctx.cached(_bench_key(p), build)


def embeddings(ctx: Context, p: DetectionParams, space: str) -> dict[str, np.ndarray]:
    """Logits or features of the ID inputs (``"id"``) and every OOD source, computed once."""

    def build() -> dict[str, np.ndarray]:
        b = bench(ctx, p)
        out = {"id": eval_embedding(ctx, space)[b.id_idx]}  # type: ignore[arg-type]
        with ctx.progress.task(f"OOD inputs through the model ({space})", total=len(b.inputs)) as task:
            for name, x in b.inputs.items():
                out[name] = embed(ctx, x, space)  # type: ignore[arg-type]
                task.advance()
        return out

    return ctx.cached(f"{_bench_key(p)}:{space}", build)


def make_detector(name: str, p: DetectionParams) -> Detector:
    if name == "mahalanobis":
        return Mahalanobis(ridge=p.ridge)
    if name == "knn":
        return KNN(k=p.k)
    return {"msp": MaxSoftmax, "max_logit": MaxLogit, "energy": Energy}[name]()


def detector_scores(ctx: Context, name: str, p: DetectionParams) -> tuple[Detector, dict[str, np.ndarray]]:
    """The fitted detector ``name`` and its scores on the ID inputs (``"id"``) and each source."""

    def build() -> tuple[Detector, dict[str, np.ndarray]]:
        det = make_detector(name, p)
        if det.needs_fit:
            det.fit(fit_embedding(ctx, det.space), reference(ctx).fit_y)
        return det, {src: det.score(z) for src, z in embeddings(ctx, p, det.space).items()}

    return ctx.cached(f"{_bench_key(p)}:scores:{name}:{p.k}:{p.ridge}", build)


def source_metrics(scores: dict[str, np.ndarray]) -> dict[str, dict[str, Any]]:
    """AUROC, FPR95, AUPR and the ROC curve of every source against the ID scores."""
    ident = scores["id"]
    return {
        src: {
            "n": len(s),
            "auroc": auroc(ident, s),
            "fpr95": fpr_at_tpr(ident, s, 0.95),
            "aupr": aupr(ident, s),
            "roc": roc_points(ident, s, 26),
        }
        for src, s in scores.items()
        if src != "id"
    }


def _mean(
    rows: dict[str, dict[str, Any]], key: str, group: dict[str, str] | None = None, want: str = ""
) -> float:
    vals = [r[key] for src, r in rows.items() if group is None or group[src] == want]
    return float(np.mean(vals)) if vals else float("nan")


def evaluate_detector(ctx: Context, name: str, p: DetectionParams) -> Outcome:
    """The :class:`Outcome` of ``ood.<name>``: per-source and mean separation metrics."""
    det, scores = detector_scores(ctx, name, p)
    b = bench(ctx, p)
    rows = source_metrics(scores)
    prefix = f"ood.{name}"
    metrics = {f"{prefix}.{m}": _mean(rows, m) for m in ("auroc", "fpr95", "aupr")}
    for src, r in rows.items():
        metrics[f"{prefix}.{src}.auroc"] = r["auroc"]
        metrics[f"{prefix}.{src}.fpr95"] = r["fpr95"]
    groups = {g: _mean(rows, "auroc", b.groups, g) for g in ("far", "near", "user") if g in b.groups.values()}
    pooled = np.concatenate([s for src, s in scores.items() if src != "id"])
    details: dict[str, Any] = {
        "detector": name,
        "score": (det.__doc__ or "").strip().splitlines()[0],
        "higher_means": "more out-of-distribution",
        "n_id": len(scores["id"]),
        "n_fitted": det.n_fitted if det.needs_fit else None,
        "fitted_on": reference(ctx).fit_from if det.needs_fit else None,
        "sources": {src: {"group": b.groups[src], "origin": b.origin[src], **r} for src, r in rows.items()},
        "auroc_by_group": groups,
        "roc_pooled": roc_points(scores["id"], pooled, 51),
    }
    if isinstance(det, KNN):
        details["k_used"] = det.k_used
    warnings = []
    if name == "energy" and ctx.model.output == "probs":
        warnings.append(
            "the model outputs probabilities, so its energy score is constant and cannot separate anything"
        )
    if len(scores["id"]) < 100:
        warnings.append(
            f"only {len(scores['id'])} held-out in-distribution inputs: the FPR95 threshold is coarse"
        )
    worst = min(rows, key=lambda s: rows[s]["auroc"])
    group_text = ", ".join(f"{g} {v:.3f}" for g, v in groups.items())
    summary = (
        f"Mean AUROC {metrics[f'{prefix}.auroc']:.3f} over {len(rows)} OOD sources ({group_text}); "
        f"hardest: {worst} (AUROC {rows[worst]['auroc']:.3f}, FPR95 {rows[worst]['fpr95']:.1%})."
    )
    return Outcome(metrics=metrics, details=details, warnings=warnings, summary=summary)


def roc_figure(result: CheckResult) -> list[tuple[str, str]]:
    """ROC curves of one detector, one line per OOD source."""
    from roadworthy.report.figures import line_plot

    srcs = result.details.get("sources", {})
    if not srcs:
        return []
    series = {src: (r["roc"]["fpr"], r["roc"]["tpr"]) for src, r in srcs.items()}
    uri = line_plot(
        series, "in-distribution inputs flagged (false alarms)", "OOD inputs flagged", ylim=(0, 1.02)
    )
    return [(f"ROC curves of {result.details.get('detector', '')} per OOD source", uri)]


# ------------------------------------------------------------------------------------------------ checks

_LOGIT_REQ = Requires(modalities=frozenset({"image", "tabular"}))
_FEATURE_REQ = Requires(capabilities=frozenset({"features"}), modalities=frozenset({"image", "tabular"}))


@register
class MaxSoftmaxDetection(Check):
    """Maximum softmax probability as an OOD score (Hendrycks & Gimpel, "A Baseline for Detecting
    Misclassified and Out-of-Distribution Examples", ICLR 2017): the baseline every detector must beat.
    """

    id = "ood.msp"
    title = "OOD detection: maximum softmax probability"
    Params = DetectionParams
    budget_params = BUDGET_PARAMS
    requires = _LOGIT_REQ

    def run(self, ctx: Context) -> Outcome:
        return evaluate_detector(ctx, "msp", self.params)

    figures = staticmethod(roc_figure)


@register
class MaxLogitDetection(Check):
    """Maximum logit as an OOD score (Hendrycks et al., "Scaling Out-of-Distribution Detection for
    Real-World Settings", ICML 2022): unlike MSP it keeps the logits' scale, which softmax discards.
    """

    id = "ood.max_logit"
    title = "OOD detection: maximum logit"
    Params = DetectionParams
    budget_params = BUDGET_PARAMS
    requires = _LOGIT_REQ

    def run(self, ctx: Context) -> Outcome:
        return evaluate_detector(ctx, "max_logit", self.params)

    figures = staticmethod(roc_figure)


@register
class EnergyDetection(Check):
    """Free energy ``-logsumexp(logits)`` as an OOD score (Liu et al., "Energy-based Out-of-distribution
    Detection", NeurIPS 2020), temperature 1: aligned with the input density, less over-confident than MSP.
    """

    id = "ood.energy"
    title = "OOD detection: energy score"
    Params = DetectionParams
    budget_params = BUDGET_PARAMS
    requires = _LOGIT_REQ

    def run(self, ctx: Context) -> Outcome:
        return evaluate_detector(ctx, "energy", self.params)

    figures = staticmethod(roc_figure)


@register
class MahalanobisDetection(Check):
    """Mahalanobis distance of penultimate features to the closest class mean under a shared covariance
    (Lee et al., "A Simple Unified Framework for Detecting Out-of-Distribution Samples and Adversarial
    Attacks", NeurIPS 2018; last layer only, no input pre-processing), fitted on in-distribution data.
    """

    id = "ood.mahalanobis"
    title = "OOD detection: Mahalanobis distance on features"
    Params = DetectionParams
    budget_params = BUDGET_PARAMS
    requires = _FEATURE_REQ

    def run(self, ctx: Context) -> Outcome:
        return evaluate_detector(ctx, "mahalanobis", self.params)

    figures = staticmethod(roc_figure)


@register
class KNNDetection(Check):
    """Distance to the k-th nearest in-distribution neighbour of L2-normalised penultimate features (Sun et
    al., "Out-of-Distribution Detection with Deep Nearest Neighbors", ICML 2022): no density assumption.
    """

    id = "ood.knn"
    title = "OOD detection: k-nearest-neighbour distance on features"
    Params = DetectionParams
    budget_params = BUDGET_PARAMS
    requires = _FEATURE_REQ

    def run(self, ctx: Context) -> Outcome:
        return evaluate_detector(ctx, "knn", self.params)

    figures = staticmethod(roc_figure)


@register
class DetectionSummary(Check):
    """Which detector to deploy, and what the validity gate used by other suites rejects.

    Ranks every detector the model supports by mean AUROC over the OOD sources (Berend et al., "Cats Are
    Not Fish", ASE 2020: benchmark the detectors, then use the best) and shows the OOD inputs the best
    one accepts most readily. ``ood.best_auroc`` / ``ood.best_fpr95`` are the winner's numbers;
    ``ood.validity.clean_in_envelope`` is the share of held-out clean inputs the validity gate keeps
    (about 95% by construction; measured only when training data frees the evaluation data for it).
    """

    id = "ood.summary"
    title = "OOD detection: best detector and validity gate"
    Params = DetectionParams
    budget_params = BUDGET_PARAMS
    requires = _LOGIT_REQ
    depends_on = ("ood.msp", "ood.max_logit", "ood.energy", "ood.mahalanobis", "ood.knn")

    def run(self, ctx: Context) -> Outcome:
        p = self.params
        names = list(LOGIT_DETECTORS) + (list(FEATURE_DETECTORS) if "features" in ctx.capabilities else [])
        if ctx.model.output == "probs":
            names.remove("energy")  # constant for probability outputs
        table = {name: source_metrics(detector_scores(ctx, name, p)[1]) for name in names}
        mean_auroc = {name: _mean(rows, "auroc") for name, rows in table.items()}
        best = max(names, key=lambda n: mean_auroc[n])
        b = bench(ctx, p)
        srcs = list(b.inputs)
        metrics = {"ood.best_auroc": mean_auroc[best], "ood.best_fpr95": _mean(table[best], "fpr95")}
        details: dict[str, Any] = {
            "best_detector": best,
            "detectors": names,
            "sources": srcs,
            "groups": b.groups,
            "auroc": {n: [table[n][s]["auroc"] for s in srcs] for n in names},
            "fpr95": {n: [table[n][s]["fpr95"] for s in srcs] for n in names},
            "mean_auroc": mean_auroc,
            "mean_fpr95": {n: _mean(table[n], "fpr95") for n in names},
        }
        pooled = {}
        for n in names:
            sc = detector_scores(ctx, n, p)[1]
            pooled[n] = roc_points(sc["id"], np.concatenate([s for k, s in sc.items() if k != "id"]), 51)
        details["roc_pooled"] = pooled

        gate = validity_gate(ctx)
        if gate is not None:
            details["validity_gate"] = gate.describe()
            details["validity_gate"]["out_of_envelope"] = {
                s: float(np.mean(~gate.in_envelope(b.inputs[s]))) for s in srcs
            }
            if gate.clean_in_envelope is not None:
                kept = round(gate.clean_in_envelope * gate.clean_in_envelope_n)
                metrics.update(
                    proportion_metrics("ood.validity.clean_in_envelope", kept, gate.clean_in_envelope_n)
                )
        examples = self._accepted_examples(ctx, best, b) if ctx.modality == "image" else []
        summary = (
            f"Best detector: {best} (mean AUROC {mean_auroc[best]:.3f}, FPR95 {metrics['ood.best_fpr95']:.1%}) "
            f"of {len(names)} over {len(srcs)} OOD sources."
        )
        if gate is not None:
            rej = details["validity_gate"]["out_of_envelope"]
            summary += f" The validity gate ({gate.detector.name}) rejects {np.mean(list(rej.values())):.0%} of OOD inputs."
        return Outcome(metrics=metrics, details=details, examples=examples, summary=summary)

    def _accepted_examples(self, ctx: Context, best: str, b: Bench) -> list[Example]:
        """Per source, the OOD input the best detector finds most in-distribution: its worst miss."""
        from roadworthy.report.images import png_data_uri

        _, scores = detector_scores(ctx, best, self.params)
        tau = np.sort(scores["id"])[int(np.ceil(0.95 * len(scores["id"]))) - 1]
        out = []
        for src in list(b.inputs)[:8]:
            i = int(np.argmin(scores[src]))
            x = b.inputs[src][i : i + 1]
            probs = ctx.predict_probs(x)[0]
            verdict = "accepted as in-distribution" if scores[src][i] <= tau else "flagged as OOD"
            out.append(
                Example(
                    title=f"{src}: most in-distribution-looking input, {verdict} by {best}",
                    label="out-of-distribution",
                    original=png_data_uri(x[0]),
                    original_prediction=f"{ctx.class_name(int(probs.argmax()))} ({probs.max():.0%})",
                )
            )
        return out

    @staticmethod
    def figures(result: CheckResult) -> list[tuple[str, str]]:
        from roadworthy.report.figures import heatmap, line_plot

        d = result.details
        out = []
        pooled = d.get("roc_pooled", {})
        if pooled:
            series = {n: (r["fpr"], r["tpr"]) for n, r in pooled.items()}
            uri = line_plot(
                series, "in-distribution inputs flagged (false alarms)", "OOD inputs flagged", ylim=(0, 1.02)
            )
            out.append(("ROC curves per detector, all OOD sources pooled", uri))
        if d.get("auroc"):
            cols = [d["auroc"][n] for n in d["detectors"]]
            rows = np.asarray(cols, float).T.tolist()  # sources down, detectors across: long names fit
            uri = heatmap(rows, d["sources"], d["detectors"], vmin=0.5)
            out.append(("AUROC per OOD source (rows) and detector (columns); 0.5 is chance", uri))
        return out
