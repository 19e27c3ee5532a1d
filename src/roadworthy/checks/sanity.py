"""The ``sanity`` suite: cheap checks for mistakes that silently make every other number wrong.

A model left in training mode (dropout, batch-norm batch statistics), a non-deterministic pipeline,
or outputs with the wrong number of columns corrupt every metric downstream; these checks run first
and by default, and cost a few dozen model calls.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from roadworthy.checks.base import Check, Context, Outcome, register
from roadworthy.models.base import to_probs


@dataclass(frozen=True)
class SanityParams:
    n_samples: int = 64  #: inputs used for the determinism and batch checks
    atol: float = 1e-4  #: largest tolerated difference of probabilities


def _probe(ctx: Context, n: int) -> np.ndarray:
    idx = ctx.sample(n, "sanity")
    return ctx.data.x[idx]


@register
class Determinism(Check):
    """Same input, same output: the model is called twice on the same batch.

    ``sanity.determinism`` is 1 when the two calls agree within ``atol`` on every probability, else 0;
    ``sanity.max_output_difference`` is the largest difference seen. Dropout left on, random
    preprocessing or a stochastic defence make it fail — and make every robustness number irreproducible.
    """

    id = "sanity.determinism"
    title = "Determinism"
    Params = SanityParams

    def run(self, ctx: Context) -> Outcome:
        x = _probe(ctx, self.params.n_samples)
        a = to_probs(ctx.model.predict(x), ctx.model.output)
        b = to_probs(ctx.model.predict(x), ctx.model.output)
        diff = float(np.nanmax(np.abs(a - b))) if a.shape == b.shape else float("inf")
        same_pred = float(np.mean(a.argmax(1) == b.argmax(1))) if a.shape == b.shape else 0.0
        ok = diff <= self.params.atol
        metrics = {
            "sanity.determinism": 1.0 if ok else 0.0,
            "sanity.max_output_difference": diff,
        }
        summary = (
            "Two calls on the same inputs gave the same outputs."
            if ok
            else f"Two calls on the same inputs differ (max probability difference {diff:.2g}; "
            f"{same_pred:.0%} same predictions): dropout on, random preprocessing or a stochastic model?"
        )
        details = {"n_samples": len(x), "same_prediction_rate": same_pred}
        warns = [] if ok else [summary]
        mode_note = getattr(ctx.model, "training_mode_note", None)  # saved in training mode, by the adapter
        if mode_note:
            details["training_mode"] = mode_note
            warns.append(mode_note)
        return Outcome(metrics=metrics, details=details, warnings=warns, summary=summary)


@register
class BatchInvariance(Check):
    """Predictions do not depend on the batch they are computed in.

    The same inputs are predicted one at a time, in batches of 7 and all at once. ``sanity.batch_invariance``
    is 1 when every probability agrees within ``atol``. A model left in training mode (batch-norm using
    batch statistics) or padding effects break it.
    """

    id = "sanity.batch_invariance"
    title = "Batch-size invariance"
    Params = SanityParams

    @classmethod
    def plan_passes(cls, params: Any, n_data: int) -> tuple[float, float]:
        """The inputs one at a time, in sevens and all at once."""
        return float(3 * min(params.n_samples, 32, n_data)), 0.0

    def run(self, ctx: Context) -> Outcome:
        x = _probe(ctx, min(self.params.n_samples, 32))
        full = to_probs(ctx.model.predict(x), ctx.model.output)
        ones = np.concatenate(
            [to_probs(ctx.model.predict(x[i : i + 1]), ctx.model.output) for i in range(len(x))]
        )
        sevens = np.concatenate(
            [to_probs(ctx.model.predict(x[i : i + 7]), ctx.model.output) for i in range(0, len(x), 7)]
        )
        diff = float(max(np.abs(full - ones).max(), np.abs(full - sevens).max()))
        flips = int(np.sum((full.argmax(1) != ones.argmax(1)) | (full.argmax(1) != sevens.argmax(1))))
        ok = diff <= self.params.atol
        summary = (
            "Predictions are the same at batch sizes 1, 7 and full."
            if ok
            else f"Predictions change with batch size (max difference {diff:.2g}, {flips} of {len(x)} top-1 "
            "flips): a model left in training mode (batch-norm statistics) is the usual cause."
        )
        return Outcome(
            metrics={"sanity.batch_invariance": 1.0 if ok else 0.0, "sanity.batch_max_difference": diff},
            details={"n_samples": len(x), "prediction_flips": flips, "batch_sizes": [1, 7, len(x)]},
            warnings=[] if ok else [summary],
            summary=summary,
        )


@register
class OutputContract(Check):
    """Outputs are finite and have one column per class.

    ``sanity.outputs_valid`` is 1 when a batch of evaluation inputs gives an ``(N, n_classes)`` array of
    finite numbers; the details say whether the model emits logits or probabilities.
    """

    id = "sanity.outputs"
    title = "Output shape and finiteness"
    Params = SanityParams

    def run(self, ctx: Context) -> Outcome:
        raw = ctx.clean_raw
        n_bad = int((~np.isfinite(raw)).sum())
        shape_ok = raw.ndim == 2 and raw.shape == (ctx.data.n_samples, ctx.n_classes)
        ok = shape_ok and n_bad == 0
        problems = []
        if not shape_ok:
            problems.append(
                f"output shape {tuple(raw.shape)}, expected ({ctx.data.n_samples}, {ctx.n_classes})"
            )
        if n_bad:
            problems.append(f"{n_bad} non-finite output values")
        summary = "Outputs are finite with one column per class." if ok else "; ".join(problems)
        return Outcome(
            metrics={"sanity.outputs_valid": 1.0 if ok else 0.0},
            details={"output_kind": ctx.model.output, "shape": list(raw.shape), "non_finite": n_bad},
            warnings=problems,
            summary=summary,
        )


@dataclass(frozen=True)
class LatencyParams:
    repeats: int = 30  #: timed calls at batch size 1
    batch_repeats: int = 5  #: timed calls at batch size 64
    warmup: int = 3


@register
class Latency(Check):
    """Inference latency per sample at batch size 1 and at batch size 64 (wall clock, this machine).

    ``sanity.latency_ms_p50`` / ``_p95`` are the median and 95th percentile of single-sample calls in
    milliseconds; ``sanity.latency_ms_p50_batch64`` / ``_p95_batch64`` are per-sample times inside a
    batch of 64. Numbers depend on the machine and thread count: compare them on the same hardware.
    """

    id = "sanity.latency"
    title = "Latency"
    Params = LatencyParams
    budget_params = {
        "quick": {"repeats": 20, "batch_repeats": 3},
        "thorough": {"repeats": 100, "batch_repeats": 10},
    }

    @classmethod
    def plan_passes(cls, params: Any, n_data: int) -> tuple[float, float]:
        """Single-sample calls (warm-up included) and the batches of 64."""
        return float(params.warmup + params.repeats + 64 * (params.batch_repeats + 1)), 0.0

    def run(self, ctx: Context) -> Outcome:
        p = self.params
        x = ctx.data.x[ctx.sample(64, "latency")]
        if len(x) < 64:
            x = np.concatenate([x] * (64 // len(x) + 1))[:64]
        for _ in range(p.warmup):
            ctx.model.predict(x[:1])
        single = []
        for i in range(p.repeats):
            t = time.perf_counter()
            ctx.model.predict(x[i % 64 : i % 64 + 1])
            single.append((time.perf_counter() - t) * 1e3)
        ctx.model.predict(x)
        batch = []
        for _ in range(p.batch_repeats):
            t = time.perf_counter()
            ctx.model.predict(x)
            batch.append((time.perf_counter() - t) * 1e3 / len(x))
        metrics = {
            "sanity.latency_ms_p50": float(np.percentile(single, 50)),
            "sanity.latency_ms_p95": float(np.percentile(single, 95)),
            "sanity.latency_ms_p50_batch64": float(np.percentile(batch, 50)),
            "sanity.latency_ms_p95_batch64": float(np.percentile(batch, 95)),
        }
        summary = (
            f"{metrics['sanity.latency_ms_p50']:.2f} ms per sample at batch 1 (p95 "
            f"{metrics['sanity.latency_ms_p95']:.2f} ms); {metrics['sanity.latency_ms_p50_batch64']:.3f} ms per "
            "sample at batch 64."
        )
        return Outcome(
            metrics=metrics, details={"repeats": p.repeats, "batch_repeats": p.batch_repeats}, summary=summary
        )
