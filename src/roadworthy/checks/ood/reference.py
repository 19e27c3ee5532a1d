"""The in-distribution reference every OOD score is fitted and judged on, shared through ``ctx.cached``.

Feature-based detectors need in-distribution (ID) samples to fit on, and a threshold needs ID samples
it was *not* fitted on. With ``--train-data`` the detectors fit on (a stratified sample of) the
training data and all evaluation data is held out. Without it the evaluation data is split into two
stratified halves: the detectors fit on half A and are judged on half B.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from roadworthy.checks.base import Context
from roadworthy.checks.ood.detectors import Space
from roadworthy.data.base import stratified_sample

log = logging.getLogger(__name__)

#: at most this many training samples are embedded to fit feature-based detectors, per budget
FIT_CAP = {"quick": 2000, "standard": 10000, "thorough": 20000}


@dataclass
class Reference:
    """In-distribution data for fitting and holding out, as indices and cached embeddings.

    ``fit_x``/``fit_y`` are the samples detectors are fitted on; ``heldout_idx`` are evaluation rows the
    detectors never saw (all of them with training data, half B without); ``half_a``/``half_b`` are
    the stratified halves of the evaluation data.
    """

    fit_x: np.ndarray
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
            return Reference(td.x[idx], td.y[idx], "training data", np.arange(ctx.data.n_samples), a, b, True)
        return Reference(ctx.data.x[a], ctx.data.y[a], "half of the evaluation data", b, a, b, False)

    return ctx.cached("ood.reference", build)


def embed(ctx: Context, x: np.ndarray, space: Space) -> np.ndarray:
    """Logits or penultimate features of ``x``, batched."""
    return ctx.features(x) if space == "features" else ctx.predict_logits(x)


def eval_embedding(ctx: Context, space: Space) -> np.ndarray:
    """Logits or features of every evaluation row (the clean caches shared with other suites)."""
    return ctx.clean_features if space == "features" else ctx.clean_logits


def fit_embedding(ctx: Context, space: Space) -> np.ndarray:
    """Logits or features of the reference's fitting samples, computed once per space."""
    ref = reference(ctx)
    if not ref.from_train:
        return eval_embedding(ctx, space)[ref.half_a]
    return ctx.cached(f"ood.fit_embedding.{space}", lambda: embed(ctx, ref.fit_x, space))
