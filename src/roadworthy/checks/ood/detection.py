"""``ood.<detector>`` checks: can the model's own outputs tell inputs from outside its world apart?

Each check scores held-out in-distribution (ID) evaluation inputs and generated OOD inputs with one
post-hoc detector (no retraining) and reports how well the scores separate them. Threat model: not an
attacker but the world: a deployed model will be shown blank frames, sensor noise, scenes of another
kind and images degraded beyond recognition, and it answers them with some class. A detector that
separates them lets the system abstain instead.

Sources (each scored separately, see :mod:`roadworthy.uncertainty.sources`): far-OOD noise, flat colours
and photo crops; near-OOD evaluation inputs under severity-5 shifts; and the user's ``--ood-data``. For a
table: random values inside each column's observed range (on the feature schema) and noise past it;
held-out rows under the tabular shift library's per-feature shifts at severity 5 (noise, unit drift,
outliers, unseen categories; the ones the schema allows) and with every column shuffled. Besides the
model's own scores, tables get three detectors on the standardised rows themselves, which need no model
internals: ``ood.input_mahalanobis``, ``ood.input_knn`` and ``ood.isolation_forest``.

Metrics per detector ``d``: ``ood.d.auroc``, ``ood.d.fpr95`` and ``ood.d.aupr``, each the mean over the
sources, and ``ood.d.<source>.auroc`` / ``.fpr95`` per source. AUROC 0.5 is chance, 1 perfect; FPR95 is
the share of OOD inputs still accepted when 95% of ID inputs are accepted (lower is better); AUPR is
average precision with ID as the positive class. ``ood.summary`` names the best detector by AUROC.

Every detector check is a :class:`DetectorCheck` that declares its detector (from
:mod:`roadworthy.uncertainty.detectors`), the parameters the detector takes and what the model must
offer; the base owns the shared bench of inputs, the scoring, the metrics, the summary and the evidence.
A new detector is one class in :mod:`roadworthy.uncertainty.detectors` and one short class here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from roadworthy import evidence
from roadworthy.checks.base import Block, Check, Context, Outcome, Requires, register
from roadworthy.checks.reference import embed, eval_embedding, fit_embedding, reference, validity_gate
from roadworthy.checks.tabular import schema_for
from roadworthy.data.base import stratified_sample
from roadworthy.errors import InvalidInputError
from roadworthy.evidence import png_data_uri
from roadworthy.results import Example
from roadworthy.shifts import apply_shift
from roadworthy.shifts.tabular import TAB_SHIFTS
from roadworthy.stats import proportion_metrics
from roadworthy.uncertainty import sources
from roadworthy.uncertainty.detectors import (
    KNN,
    Detector,
    Energy,
    InputKNN,
    InputMahalanobis,
    IsolationForest,
    Mahalanobis,
    MaxLogit,
    MaxSoftmax,
    aupr,
    auroc,
    fpr_at_tpr,
    roc_points,
)

log = logging.getLogger(__name__)

ROC_AXES = ("in-distribution inputs flagged (false alarms)", "OOD inputs flagged")


@dataclass(frozen=True)
class DetectionParams:
    n_id: int = 1000  #: held-out in-distribution inputs scored
    n_per_source: int = 500  #: generated inputs per OOD source (and at most this many of --ood-data x 4)
    near_severity: int = 5  #: severity of the shifts that make near-OOD inputs
    far_sources: tuple[str, ...] = ()  #: far-OOD sources; empty means every source for the modality
    near_shifts: tuple[str, ...] = ()  #: shifts for near-OOD; empty means the default heavy shifts
    k: int = 50  #: neighbours for ood.knn (fewer for small reference sets, see KNN)
    ridge: float = 1e-3  #: covariance ridge for ood.mahalanobis, relative to the mean variance
    trees: int = 200  #: trees of ood.isolation_forest


BUDGET_PARAMS: dict[str, dict[str, Any]] = {
    "quick": {"n_id": 500, "n_per_source": 200},
    "standard": {"n_id": 1000, "n_per_source": 500},
    "thorough": {"n_id": 5000, "n_per_source": 1000},
}
LOGITS = Requires(modalities=frozenset({"image", "tabular"}))
FEATURES = Requires(capabilities=frozenset({"features"}), modalities=frozenset({"image", "tabular"}))
#: detectors on the standardised rows themselves: any tabular model, no internals needed
INPUTS = Requires(modalities=frozenset({"tabular"}))


# ------------------------------------------------------------------------------------------- shared work


#: floats of OOD images generated at once (about 16 MB): a source is made and embedded chunk by chunk
CHUNK_FLOATS = 4_000_000


@dataclass
class Bench:
    """Held-out ID rows and the recipe of every OOD source, fixed once per session and parameters.

    The OOD images themselves are never all held: :meth:`chunks` makes a source chunk by chunk from
    its own seeded generator, so the same images come back every time (to embed them in a second
    space, or to show one in the report) while memory holds one chunk. At 224 px, 500 images per
    source and nine sources, holding them would take 2.7 GB.
    """

    id_idx: np.ndarray
    sizes: dict[str, int]  # source -> number of inputs
    groups: dict[str, str]  # source -> "far" | "near" | "user"
    origin: dict[str, str]  # source -> where its inputs came from (near shifts: known once made)
    make: dict[str, Any]  # source -> fn(start, stop, rng) -> images of rows start:stop
    seeds: dict[str, tuple[Any, ...]]  # source -> keys of its generators (ctx.rng(*keys, "chunk", start))
    chunk: int = 1
    #: near shifts: where the images of the chunk made last came from ("shift suite" or "built-in")
    last_where: dict[str, str] = field(default_factory=dict)

    def units(self) -> list[tuple[str, int, int]]:
        """``(source, start, stop)``: the ID rows (source ``"id"``), then every source chunk by chunk;
        the blocks a detector check shards into (each made and embedded on its own)."""
        out = [("id", 0, len(self.id_idx))]
        for src, n in self.sizes.items():
            out += [(src, a, min(n, a + self.chunk)) for a in range(0, n, self.chunk)]
        return out

    def make_chunk(self, ctx: Context, src: str, start: int) -> np.ndarray:
        """The images of source ``src`` in the chunk starting at ``start``, from that chunk's own
        generator: the same on every call and in every process, whichever chunks were made before."""
        stop = min(self.sizes[src], start + self.chunk)
        return self.make[src](start, stop, ctx.rng(*self.seeds[src], "chunk", start))

    def chunks(self, ctx: Context, src: str) -> Any:
        """``(start, images)`` of source ``src``, one chunk at a time, the same on every call."""
        for start in range(0, self.sizes[src], self.chunk):
            yield start, self.make_chunk(ctx, src, start)

    def take(self, ctx: Context, src: str, i: int) -> np.ndarray:
        """Input ``i`` of source ``src`` (shape ``(1, ...)``), made again with its chunk."""
        if not 0 <= i < self.sizes[src]:
            raise IndexError(f"source {src!r} has {self.sizes[src]} inputs, not {i + 1}")
        start = i - i % self.chunk
        return self.make_chunk(ctx, src, start)[i - start : i - start + 1].copy()


def _bench_key(p: DetectionParams) -> str:
    return f"ood.bench:{p.n_id}:{p.n_per_source}:{p.near_severity}:{p.far_sources}:{p.near_shifts}"


def bench(ctx: Context, p: DetectionParams) -> Bench:
    """The ID inputs and OOD sources for ``p``, fixed once per session."""

    def build() -> Bench:
        ref = reference(ctx)
        held = ref.heldout_idx
        id_idx = held[stratified_sample(ctx.data.y[held], p.n_id, ctx.rng("ood.id_sample"))]
        sizes: dict[str, int] = {}
        groups: dict[str, str] = {}
        origin: dict[str, str] = {}
        make: dict[str, Any] = {}
        seeds: dict[str, tuple[Any, ...]] = {}
        last_where: dict[str, str] = {}
        n = p.n_per_source
        image = ctx.modality == "image"
        schema = None if image else schema_for(ctx)
        far = p.far_sources or (sources.FAR_IMAGE_SOURCES if image else sources.FAR_TABULAR_SOURCES)
        for kind in far:
            if image:
                make[kind] = lambda a, b, rng, kind=kind: sources.far_ood_images(
                    kind, b - a, ctx.data.input_shape, rng
                )
            else:
                make[kind] = lambda a, b, rng, kind=kind: sources.far_ood_tabular(
                    kind, b - a, ctx.data.x, rng, schema
                )
            sizes[kind], seeds[kind] = n, ("ood.far", kind)
            groups[kind], origin[kind] = "far", "generated"
        near = p.near_shifts or (sources.NEAR_IMAGE_SHIFTS if image else sources.NEAR_TABULAR_SHIFTS)
        # near-OOD from held-out rows only: shifted copies of fitting samples would look familiar
        base = held[stratified_sample(ctx.data.y[held], n, ctx.rng("ood.near_sample"))]
        for name in near:
            key = f"shift_{name}"
            if image:

                def shifted(a: int, b: int, rng: Any, name: str = name, key: str = key) -> Any:
                    x, w = sources.shifted_images(
                        ctx.data.x[base[a:b]], name, p.near_severity, rng, apply_shift
                    )
                    last_where[key] = w
                    return x

                make[key] = shifted
                origin[key] = "shift suite"
            elif name == "shuffled_columns":
                make[key] = lambda a, b, rng: sources.shuffled_columns(ctx.data.x[base[a:b]], rng)
                origin[key] = "built-in"
            elif name in TAB_SHIFTS:
                sh = TAB_SHIFTS[name]
                assert schema is not None
                if sh.applicable(schema) is not None:
                    if p.near_shifts:  # asked for by name: say why it is left out
                        log.warning("near-OOD %s left out: %s", name, sh.applicable(schema))
                    continue
                make[key] = lambda a, b, rng, sh=sh: (
                    sh.apply(ctx.data.x[base[a:b]], ctx.data.y[base[a:b]], p.near_severity, rng, schema).x
                )
                origin[key] = f"shift suite, severity {p.near_severity}"
            else:
                raise InvalidInputError(
                    f"unknown tabular near-OOD shift {name!r}; use 'shuffled_columns' or one of "
                    f"{', '.join(TAB_SHIFTS)}"
                )
            sizes[key], seeds[key], groups[key] = len(base), ("ood.near", name), "near"
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
                else np.arange(len(user))
            )
            make["user"] = lambda a, b, rng: np.asarray(user[rows[a:b]], np.float32)
            sizes["user"], seeds["user"] = len(rows), ("ood.user",)
            groups["user"], origin["user"] = "user", ctx.ood_data.path or "--ood-data"
        chunk = max(1, CHUNK_FLOATS // max(1, int(np.prod(ctx.data.input_shape))))
        return Bench(id_idx, sizes, groups, origin, make, seeds, chunk, last_where)

    return ctx.cached(_bench_key(p), build)


def unit_embedding(
    ctx: Context, p: DetectionParams, space: str, unit: tuple[str, int, int]
) -> tuple[np.ndarray, str | None]:
    """Logits or features of one unit of :meth:`Bench.units` (the ID rows, or one chunk of a source),
    computed once per space and shared by every detector, and where a near shift's images came from."""
    src, start, stop = unit

    def build() -> tuple[np.ndarray, str | None]:
        b = bench(ctx, p)
        if src == "id":
            return eval_embedding(ctx, space)[b.id_idx[start:stop]], None  # type: ignore[arg-type]
        x = b.make_chunk(ctx, src, start)
        return embed(ctx, x, space), b.last_where.get(src)  # type: ignore[arg-type]

    return ctx.cached(f"{_bench_key(p)}:{space}:{src}:{start}", build)


def embeddings(ctx: Context, p: DetectionParams, space: str) -> dict[str, np.ndarray]:
    """Logits or features of the ID inputs (``"id"``) and every OOD source, from the units' (each
    source made and embedded chunk by chunk; only the embeddings are kept)."""
    out: dict[str, list[np.ndarray]] = {}
    for unit in bench(ctx, p).units():
        out.setdefault(unit[0], []).append(unit_embedding(ctx, p, space, unit)[0])
    return {src: np.concatenate(zs) for src, zs in out.items()}


def fitted_detector(ctx: Context, name: str, p: DetectionParams) -> Detector:
    """The detector ``name`` (an :data:`DETECTOR_CHECKS` key) fitted once per process and parameters."""

    def build() -> Detector:
        det = DETECTOR_CHECKS[name].make_detector(p)
        if hasattr(det, "seed"):  # a randomised detector: seeded from the session
            det.seed = int(ctx.rng("ood.detector", name).integers(2**31 - 1))
        if det.needs_fit:
            det.fit(fit_embedding(ctx, det.space), reference(ctx).fit_y)
        return det

    return ctx.cached(f"{_bench_key(p)}:detector:{name}:{p.k}:{p.ridge}:{p.trees}", build)


def _scores_key(name: str, p: DetectionParams) -> str:
    return f"{_bench_key(p)}:scores:{name}:{p.k}:{p.ridge}:{p.trees}"


def detector_scores(ctx: Context, name: str, p: DetectionParams) -> dict[str, np.ndarray]:
    """The detector ``name``'s scores on the ID inputs (``"id"``) and each source, computed once per
    session and parameters (the detector check publishes them when it merges its blocks)."""

    def build() -> dict[str, np.ndarray]:
        det = fitted_detector(ctx, name, p)
        return {src: det.score(z) for src, z in embeddings(ctx, p, det.space).items()}

    return ctx.cached(_scores_key(name, p), build)


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


# ------------------------------------------------------------------------------------------------ checks

#: every detector check by its detector's name, in registration order (the summary's order)
DETECTOR_CHECKS: dict[str, type[DetectorCheck]] = {}


class DetectorCheck(Check):
    """One post-hoc OOD detector scored on held-out ID inputs against every OOD source (base class).

    A subclass declares ``id``, ``title``, its ``detector`` class, the :class:`DetectionParams` fields the
    detector's constructor takes (``detector_params``) and ``requires``; this base builds the shared bench
    of ID and OOD inputs, fits and scores the detector, and reports per-source and mean AUROC, FPR95 and
    AUPR, a summary sentence and the ROC curves as evidence.
    """

    detector: ClassVar[type[Detector]]
    #: fields of :class:`DetectionParams` passed to the detector's constructor by name
    detector_params: ClassVar[tuple[str, ...]] = ()
    #: the score is constant (useless) for a model that outputs probabilities instead of logits
    constant_on_probabilities: ClassVar[bool] = False
    Params = DetectionParams
    budget_params = BUDGET_PARAMS
    plan_shared = "ood.bench"  #: the ID and OOD inputs go through the model once for every detector
    plan_samples = "n_per_source"  #: what a large model's plan lowers (stated in the plan)

    @classmethod
    def plan_passes(cls, params: Any, n_data: int) -> tuple[float, float]:
        """Every generated source and near shift, in logit and feature space (the ID rows are shared)."""
        sources_n = len(params.far_sources or sources.FAR_IMAGE_SOURCES) + len(
            params.near_shifts or sources.NEAR_IMAGE_SHIFTS
        )
        return float(2 * sources_n * params.n_per_source), 0.0

    requires = LOGITS

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        DETECTOR_CHECKS[cls.detector.name] = cls

    @classmethod
    def make_detector(cls, p: DetectionParams) -> Detector:
        """A fresh, unfitted detector with this check's parameters."""
        return cls.detector(**{name: getattr(p, name) for name in cls.detector_params})

    # -- sharded: a block is one unit of the bench (the ID rows, or one chunk of one source)
    shard_block = 1

    def shard_items(self, ctx: Context) -> int:
        return len(bench(ctx, self.params).units())

    def run_block(self, ctx: Context, block: Block) -> dict[str, Any]:
        """The detector's scores on one unit (made and embedded once per process for every detector),
        and what the fit left that the report states (fitted rows, the k used)."""
        p: DetectionParams = self.params
        det = fitted_detector(ctx, self.detector.name, p)
        units = bench(ctx, p).units()[block.start : block.stop]
        got = [unit_embedding(ctx, p, det.space, u) for u in units]
        return {
            "scores": [det.score(z) for z, _ in got],
            "where": [w for _, w in got],
            "n_fitted": det.n_fitted if det.needs_fit else None,
            "k_used": det.k_used if isinstance(det, (KNN, InputKNN)) else None,
        }

    def merge(self, ctx: Context, parts: list[dict[str, Any]]) -> Outcome:
        p: DetectionParams = self.params
        name = self.detector.name
        b = bench(ctx, p)
        by_src: dict[str, list[np.ndarray]] = {}
        where: dict[str, set[str]] = {}
        for (src, _, _), sc, w in zip(
            b.units(),
            (x for q in parts for x in q["scores"]),
            (x for q in parts for x in q["where"]),
            strict=True,
        ):
            by_src.setdefault(src, []).append(sc)
            if w:
                where.setdefault(src, set()).add(w)
        merged = {src: np.concatenate(v) for src, v in by_src.items()}
        # published for the summary: it reads them instead of scoring again (where they merge: no model)
        scores = ctx.cached(_scores_key(name, p), lambda: merged)
        origin = {src: " and ".join(sorted(where[src])) if src in where else o for src, o in b.origin.items()}
        fit = parts[0] if parts else {"n_fitted": None, "k_used": None}
        return self.outcome(ctx, scores, origin, fit)

    def outcome(
        self, ctx: Context, scores: dict[str, np.ndarray], origin: dict[str, str], fit: dict[str, Any]
    ) -> Outcome:
        """Metrics, details, evidence and summary from the merged per-input scores."""
        p: DetectionParams = self.params
        name = self.detector.name
        det = self.detector
        b = bench(ctx, p)
        rows = source_metrics(scores)
        prefix = f"ood.{name}"
        metrics = {f"{prefix}.{m}": _mean(rows, m) for m in ("auroc", "fpr95", "aupr")}
        for src, r in rows.items():
            metrics[f"{prefix}.{src}.auroc"] = r["auroc"]
            metrics[f"{prefix}.{src}.fpr95"] = r["fpr95"]
        groups = {
            g: _mean(rows, "auroc", b.groups, g) for g in ("far", "near", "user") if g in b.groups.values()
        }
        pooled = np.concatenate([s for src, s in scores.items() if src != "id"])
        details: dict[str, Any] = {
            "detector": name,
            "score": (det.__doc__ or "").strip().splitlines()[0],
            "higher_means": "more out-of-distribution",
            "n_id": len(scores["id"]),
            "n_fitted": fit["n_fitted"],
            "fitted_on": reference(ctx).fit_from if det.needs_fit else None,
            "sources": {src: {"group": b.groups[src], "origin": origin[src], **r} for src, r in rows.items()},
            "auroc_by_group": groups,
            "roc_pooled": roc_points(scores["id"], pooled, 51),
        }
        if fit["k_used"] is not None:
            details["k_used"] = fit["k_used"]
        details[evidence.KEY] = [
            evidence.lines(
                f"ROC curves of {name} per OOD source",
                {src: (r["roc"]["fpr"], r["roc"]["tpr"]) for src, r in rows.items()},
                *ROC_AXES,
                ylim=(0.0, 1.02),
            )
        ]
        warnings = []
        if self.constant_on_probabilities and ctx.model.output == "probs":
            warnings.append(
                f"the model outputs probabilities, so its {name} score is constant and cannot separate anything"
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


@register
class MaxSoftmaxDetection(DetectorCheck):
    """Maximum softmax probability as an OOD score (Hendrycks & Gimpel, "A Baseline for Detecting
    Misclassified and Out-of-Distribution Examples", ICLR 2017): the baseline every detector must beat.
    """

    id = "ood.msp"
    title = "OOD detection: maximum softmax probability"
    detector = MaxSoftmax


@register
class MaxLogitDetection(DetectorCheck):
    """Maximum logit as an OOD score (Hendrycks et al., "Scaling Out-of-Distribution Detection for
    Real-World Settings", ICML 2022): unlike MSP it keeps the logits' scale, which softmax discards.
    """

    id = "ood.max_logit"
    title = "OOD detection: maximum logit"
    detector = MaxLogit


@register
class EnergyDetection(DetectorCheck):
    """Free energy ``-logsumexp(logits)`` as an OOD score (Liu et al., "Energy-based Out-of-distribution
    Detection", NeurIPS 2020), temperature 1: aligned with the input density, less over-confident than MSP.
    """

    id = "ood.energy"
    title = "OOD detection: energy score"
    detector = Energy
    constant_on_probabilities = True


@register
class MahalanobisDetection(DetectorCheck):
    """Mahalanobis distance of penultimate features to the closest class mean under a shared covariance
    (Lee et al., "A Simple Unified Framework for Detecting Out-of-Distribution Samples and Adversarial
    Attacks", NeurIPS 2018; last layer only, no input pre-processing), fitted on in-distribution data.
    """

    id = "ood.mahalanobis"
    title = "OOD detection: Mahalanobis distance on features"
    detector = Mahalanobis
    detector_params = ("ridge",)
    requires = FEATURES


@register
class KNNDetection(DetectorCheck):
    """Distance to the k-th nearest in-distribution neighbour of L2-normalised penultimate features (Sun et
    al., "Out-of-Distribution Detection with Deep Nearest Neighbors", ICML 2022): no density assumption.
    """

    id = "ood.knn"
    title = "OOD detection: k-nearest-neighbour distance on features"
    detector = KNN
    detector_params = ("k",)
    requires = FEATURES


@register
class InputMahalanobisDetection(DetectorCheck):
    """Mahalanobis distance of the standardised input row to the closest class mean under a shared
    covariance (Lee et al., NeurIPS 2018, on inputs instead of features): for tables, where a
    scikit-learn model has no features; a row whose columns do not go together scores high.
    """

    id = "ood.input_mahalanobis"
    title = "OOD detection: Mahalanobis distance on standardised inputs"
    detector = InputMahalanobis
    detector_params = ("ridge",)
    requires = INPUTS


@register
class InputKNNDetection(DetectorCheck):
    """Euclidean distance to the k-th nearest in-distribution row, columns standardised (Sun et al., ICML
    2022, on inputs instead of features): for tables; no density assumption, no model internals.
    """

    id = "ood.input_knn"
    title = "OOD detection: k-nearest-neighbour distance on standardised inputs"
    detector = InputKNN
    detector_params = ("k",)
    requires = INPUTS


@register
class IsolationForestDetection(DetectorCheck):
    """Isolation Forest on standardised input rows (Liu, Ting & Zhou, ICDM 2008): random trees isolate an
    unusual row in few splits. For tables; fitted on in-distribution rows, seeded from the session.
    """

    id = "ood.isolation_forest"
    title = "OOD detection: Isolation Forest on standardised inputs"
    detector = IsolationForest
    detector_params = ("trees",)
    requires = INPUTS


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
    requires = LOGITS
    depends_on = tuple(cls.id for cls in DETECTOR_CHECKS.values())
    # planned exactly like the detectors, so that it reads their bench instead of building a bigger one
    plan_shared = DetectorCheck.plan_shared
    plan_samples = DetectorCheck.plan_samples

    @classmethod
    def plan_passes(cls, params: Any, n_data: int) -> tuple[float, float]:
        return DetectorCheck.plan_passes(params, n_data)

    def run(self, ctx: Context) -> Outcome:
        p = self.params
        names = [
            name
            for name, cls in DETECTOR_CHECKS.items()
            if cls.unmet(ctx) is None and not (cls.constant_on_probabilities and ctx.model.output == "probs")
        ]
        table = {name: source_metrics(detector_scores(ctx, name, p)) for name in names}
        mean_auroc = {name: _mean(rows, "auroc") for name, rows in table.items()}
        best = max(names, key=lambda n: mean_auroc[n])
        b = bench(ctx, p)
        srcs = list(b.sizes)
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
            sc = detector_scores(ctx, n, p)
            pooled[n] = roc_points(sc["id"], np.concatenate([s for k, s in sc.items() if k != "id"]), 51)
        details["roc_pooled"] = pooled

        gate = validity_gate(ctx)
        if gate is not None:
            details["validity_gate"] = gate.describe()
            # the gate's space is logits or features, both already embedded for the detectors
            z = embeddings(ctx, p, gate.detector.space)
            details["validity_gate"]["out_of_envelope"] = {
                s: float(np.mean(gate.detector.score(z[s]) > gate.threshold)) for s in srcs
            }
            if gate.clean_in_envelope is not None:
                kept = round(gate.clean_in_envelope * gate.clean_in_envelope_n)
                metrics.update(
                    proportion_metrics("ood.validity.clean_in_envelope", kept, gate.clean_in_envelope_n)
                )
        details[evidence.KEY] = [
            evidence.lines(
                "ROC curves per detector, all OOD sources pooled",
                {n: (r["fpr"], r["tpr"]) for n, r in pooled.items()},
                *ROC_AXES,
                ylim=(0.0, 1.02),
            ),
            evidence.heatmap(  # sources down, detectors across: long names fit
                "AUROC per OOD source (rows) and detector (columns); 0.5 is chance",
                np.asarray([details["auroc"][n] for n in names], float).T.tolist(),
                srcs,
                names,
                vmin=0.5,
            ),
        ]
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
        scores = detector_scores(ctx, best, self.params)
        tau = np.sort(scores["id"])[int(np.ceil(0.95 * len(scores["id"]))) - 1]
        out = []
        for src in list(b.sizes)[:8]:
            i = int(np.argmin(scores[src]))
            x = b.take(ctx, src, i)
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
