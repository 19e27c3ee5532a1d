"""The in-distribution reference checks of every suite share: fitting and held-out rows, their embeddings,
and the validity gate fitted on them, each computed once per session through ``ctx.cached``.

Feature-based detectors need in-distribution (ID) samples to fit on, and a threshold needs ID samples
it was *not* fitted on. With ``--train-data`` the detectors fit on (a stratified sample of) the
training data and all evaluation data is held out. Without it the evaluation data is split into two
stratified halves: the detectors fit on half A and are judged on half B.

The validity gate (:func:`validity_gate`, the algorithm in :mod:`roadworthy.uncertainty.validity`) is
used by the OOD suite, which describes it, and by the shift suite, which splits its failures into
in-envelope and out-of-envelope ones::

    gate = validity_gate(ctx)
    if gate is not None:
        inside = gate.in_envelope(x_shifted)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from roadworthy.checks.base import SHIFT_CHUNK_FLOATS, Context
from roadworthy.data.base import Dataset, stratified_sample
from roadworthy.errors import InvalidInputError
from roadworthy.uncertainty import sources
from roadworthy.uncertainty.detectors import Space
from roadworthy.uncertainty.validity import QUANTILE, ValidityGate, candidate_detectors, select_detector

log = logging.getLogger(__name__)

#: at most this many training samples are embedded to fit feature-based detectors, per budget
FIT_CAP = {"quick": 2000, "standard": 10000, "thorough": 20000}
#: generated far-OOD inputs per source used to pick the gate's detector
N_PROXY = 200
#: far-OOD tabular sources the gate's detector is picked on: noise, and rows whose columns are each
#: plausible but do not fit together (``uniform_in_range``, on the schema): what a fuzzer or attacker
#: that ignores the columns' relations makes
GATE_TABULAR_SOURCES = ("uniform_noise", "gaussian_noise", "uniform_in_range")


@dataclass
class Reference:
    """In-distribution data for fitting and holding out, as indices and cached embeddings.

    ``fit_rows`` of ``fit_data`` (labels ``fit_y``) are the samples detectors are fitted on, kept as
    row indices: a copy of 10,000 training images of 224 px would take 6 GB; ``heldout_idx`` are
    evaluation rows the detectors never saw (all of them with training data, half B without);
    ``half_a``/``half_b`` are the stratified halves of the evaluation data.
    """

    fit_data: Dataset
    fit_rows: np.ndarray
    fit_y: np.ndarray
    fit_from: str
    heldout_idx: np.ndarray
    half_a: np.ndarray
    half_b: np.ndarray
    from_train: bool


def eval_halves(ctx: Context) -> tuple[np.ndarray, np.ndarray]:
    """Two stratified halves ``(a, b)`` of the evaluation rows, fixed per seed and shared by OOD checks."""

    def split() -> tuple[np.ndarray, np.ndarray]:
        rng = ctx.rng("ood.eval_halves")
        a, b = [], []
        odd_to_a = True  # alternate which half gets a class's odd sample, so the halves stay balanced
        for c in np.unique(ctx.data.y):
            idx = rng.permutation(np.flatnonzero(ctx.data.y == c))
            cut = len(idx) // 2
            if len(idx) % 2:
                cut += int(odd_to_a)
                odd_to_a = not odd_to_a
            a.append(idx[:cut])
            b.append(idx[cut:])
        return np.sort(np.concatenate(a)), np.sort(np.concatenate(b))

    return ctx.cached("ood.eval_halves", split)


def reference(ctx: Context) -> Reference:
    """The session's ID reference (see the module docstring), computed once."""

    def build() -> Reference:
        a, b = eval_halves(ctx)
        if ctx.train_data is not None and ctx.train_data.n_samples > 0:
            cap = FIT_CAP.get(ctx.budget, FIT_CAP["standard"])
            idx = stratified_sample(ctx.train_data.y, cap, ctx.rng("ood.fit_sample"))
            td = ctx.train_data
            return Reference(td, idx, td.y[idx], "training data", np.arange(ctx.data.n_samples), a, b, True)
        return Reference(ctx.data, a, ctx.data.y[a], "half of the evaluation data", b, a, b, False)

    return ctx.cached("ood.reference", build)


def embed(ctx: Context, x: np.ndarray, space: Space) -> np.ndarray:
    """Logits, penultimate features or (``"input"``) the rows themselves of ``x``, batched."""
    if space == "input":  # input-space detectors standardise the rows themselves
        return np.asarray(x, np.float32).reshape(len(x), -1)
    return ctx.features(x) if space == "features" else ctx.predict_logits(x)


def eval_embedding(ctx: Context, space: Space) -> np.ndarray:
    """Logits, features or inputs of every evaluation row (the clean caches shared with other suites)."""
    if space == "input":
        return np.asarray(ctx.data.x, np.float32).reshape(ctx.data.n_samples, -1)
    return ctx.clean_features if space == "features" else ctx.clean_logits


def fit_embedding(ctx: Context, space: Space) -> np.ndarray:
    """Logits or features of the reference's fitting samples, computed once per space."""
    ref = reference(ctx)
    if not ref.from_train:
        return eval_embedding(ctx, space)[ref.half_a]

    def build() -> np.ndarray:  # read the rows chunk by chunk: never a copy of all fitting images
        per = max(1, int(np.prod(ref.fit_data.x.shape[1:])))
        step = max(1, SHIFT_CHUNK_FLOATS // per)
        rows = ref.fit_rows
        return np.concatenate(
            [embed(ctx, ref.fit_data.x[rows[i : i + step]], space) for i in range(0, len(rows), step)]
        )

    return ctx.cached(f"ood.fit_embedding.{space}", build)


# ------------------------------------------------------------------------------------------ validity gate


def proxy_ood(ctx: Context) -> dict[str, np.ndarray]:
    """Far-OOD stand-ins to pick the gate's detector on: generated noise, colours and photos, plus --ood-data.

    Near-OOD shifts are left out on purpose: the gate judges shifted inputs, and a detector chosen for
    flagging shifts would call every shifted input invalid.
    """
    n = N_PROXY
    if ctx.modality == "image":
        out = {
            k: sources.far_ood_images(k, n, ctx.data.input_shape, ctx.rng("ood.gate", k))
            for k in sources.FAR_IMAGE_SOURCES
        }
    else:
        from roadworthy.checks.tabular import schema_for

        schema = schema_for(ctx)
        x_ref = ctx.data.x.reshape(ctx.data.n_samples, -1)
        out = {
            k: sources.far_ood_tabular(k, n, x_ref, ctx.rng("ood.gate", k), schema=schema)
            for k in GATE_TABULAR_SOURCES
        }
    user = ctx.ood_data
    if user is not None and user.n_samples and tuple(user.x.shape[1:]) == ctx.data.input_shape:
        rows = ctx.rng("ood.gate", "user").permutation(user.n_samples)[: 2 * n]
        out["user"] = np.asarray(user.x[np.sort(rows)], np.float32)
    return out


def gate_plan_passes(n_data: int, n_train: int, budget: str, image: bool = True) -> float:
    """Forward passes fitting the validity gate costs, for the run plan: the evaluation data's features
    (the logits are the run's shared clean outputs), the generated far-OOD proxies and the training
    rows it is fitted on, each in both spaces."""
    proxies = len(sources.FAR_IMAGE_SOURCES if image else sources.FAR_TABULAR_SOURCES) * N_PROXY
    fit = min(n_train, FIT_CAP.get(budget, FIT_CAP["standard"]))
    return float(n_data + 2 * proxies + 2 * fit)


def validity_gate(ctx: Context) -> ValidityGate | None:
    """The session's validity gate, fitted once and cached (``ctx.cached("ood.validity_gate")``).

    Every candidate detector (:func:`~roadworthy.uncertainty.validity.candidate_detectors`; for tables the
    input-space detectors of the OOD suite too) is fitted on
    in-distribution data (training data when given, else half of the evaluation data), thresholded at the
    conformal 95th percentile of held-out evaluation scores, and the one that lets the fewest generated
    far-OOD inputs through is kept. With training data, half of the evaluation data stays aside to
    measure how many clean inputs the gate really keeps. Returns ``None`` when nothing can be fitted
    (fewer than 4 evaluation samples, or no usable score).
    """

    def build() -> ValidityGate | None:
        if ctx.data.n_samples < 4:
            log.warning(
                "validity gate: %d evaluation samples are too few to fit a threshold", ctx.data.n_samples
            )
            return None
        ref = reference(ctx)
        # threshold on evaluation rows the detector was not fitted on; with training data keep half B aside
        calib, check = (ref.half_a, ref.half_b) if ref.from_train else (ref.half_b, None)
        try:
            candidates = candidate_detectors(
                "features" in ctx.capabilities,
                ctx.model.output == "logits",
                inputs=ctx.modality == "tabular",
                seed=int(ctx.rng("ood.gate", "isolation_forest").integers(2**31 - 1)),
            )
            det, tau, aurocs = select_detector(
                candidates,
                fit_embedding=lambda space: fit_embedding(ctx, space),
                fit_y=ref.fit_y,
                calibration_embedding=lambda space: eval_embedding(ctx, space)[calib],
                proxies=proxy_ood(ctx),
                embed=lambda x, space: embed(ctx, x, space),
                quantile=QUANTILE,
            )
        except InvalidInputError as exc:
            log.warning("validity gate: %s", exc)
            return None
        space = det.space
        rate = None
        if check is not None and len(check):
            rate = float(np.mean(det.score(eval_embedding(ctx, space)[check]) <= tau))
        return ValidityGate(
            detector=det,
            threshold=tau,
            quantile=QUANTILE,
            embed=lambda x: embed(ctx, x, space),
            fit_on=ref.fit_from,
            n_calibration=len(calib),
            clean_in_envelope=rate,
            clean_in_envelope_n=len(check) if check is not None else 0,
            candidates=aurocs,
        )

    return ctx.cached("ood.validity_gate", build)
