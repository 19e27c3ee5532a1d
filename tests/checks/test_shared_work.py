"""Expensive work done once per run: shifted batches fed to the model once and shared between the shift
suite, ``ood.calibration`` and the validity gate; memory that does not grow with severities or data size."""

from __future__ import annotations

import tracemalloc
from typing import Any

import numpy as np
import pytest

from roadworthy.checks import base as checks_base
from roadworthy.checks import load_builtin_checks
from roadworthy.checks.base import Context, ShiftedOutputs
from roadworthy.checks.ood.calibration import CalibrationParams
from roadworthy.checks.ood.detection import DetectionParams
from roadworthy.checks.reference import validity_gate
from roadworthy.checks.shift.suite import ShiftParams
from roadworthy.runner import run_check


class Counting:
    """A model that counts the samples it is asked to predict (and embed), delegating the rest."""

    def __init__(self, model: Any) -> None:
        self._model = model
        self.predicted = 0
        self.embedded = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)

    def predict(self, x: np.ndarray) -> np.ndarray:
        self.predicted += len(x)
        return self._model.predict(x)

    def features(self, x: np.ndarray) -> np.ndarray:
        self.embedded += len(x)
        return self._model.features(x)


def _run(ctx: Context, check_id: str, params: object) -> Any:
    result = run_check(load_builtin_checks()[check_id], ctx, params)
    assert result.status in ("pass", "warn"), result.error
    ctx.results[check_id] = result
    return result


@pytest.fixture()
def counted(digits_model, digits_data, digits_train_data) -> tuple[Context, Counting]:
    model = Counting(digits_model)
    ctx = Context(model=model, data=digits_data, train_data=digits_train_data, budget="quick", seed=0)
    return ctx, model


def test_shifted_batches_reach_the_model_once_across_shift_and_calibration(counted) -> None:
    ctx, model = counted
    ctx.clean_raw  # noqa: B018 - the clean outputs, computed once, before counting
    validity_gate(ctx)  # fitted once per session (it embeds its own reference data)
    before, embedded = model.predicted, model.embedded
    shift = _run(ctx, "shift.contrast", ShiftParams(n_samples=200, severities=(1, 3, 5)))
    # one pass per severity over the 200 rows; failures are judged by the gate from these outputs
    # (logits gate) or through one features pass over the failures only
    assert model.predicted - before == 3 * 200
    failures = sum(round((1 - r["accuracy"]) * 200) for r in shift.details["per_severity"])
    gate_on_logits = validity_gate(ctx).detector.space == "logits"
    assert model.embedded - embedded == (0 if gate_on_logits else failures)
    (entry,) = ctx.shared_shifted("contrast", 3)
    assert isinstance(entry, ShiftedOutputs) and entry.by == "shift.contrast" and entry.raw.shape == (200, 10)
    assert entry.change > 0.01

    before = model.predicted
    cal = _run(ctx, "ood.calibration", CalibrationParams(n_shifted=120, shifts=("contrast",)))
    assert model.predicted == before  # clean outputs cached, shifted outputs reused: no model call at all
    assert cal.details["shifted"]["n_samples"] == 120
    assert cal.details["shifted"]["shifts"]["contrast"] == "shift suite (outputs of shift.contrast)"
    # the reused outputs are the shift suite's on those rows: accuracy within the shift's range
    accs = [r["accuracy"] for r in shift.details["per_severity"]]
    assert min(accs) - 0.15 <= cal.details["shifted"]["accuracy"] <= max(accs) + 0.15

    # the same check again reuses its outputs too (the images are made again for its examples only)
    before = model.predicted
    again = _run(ctx, "shift.contrast", ShiftParams(n_samples=200, severities=(1, 3, 5)))
    assert model.predicted == before
    assert again.metrics == shift.metrics
    assert again.details["validity"] == shift.details["validity"]


def test_calibration_without_the_shift_suite_predicts_its_own_share_once(counted) -> None:
    ctx, model = counted
    ctx.clean_raw  # noqa: B018
    validity_gate(ctx)  # the shift check below asks for it
    before = model.predicted
    cal = _run(ctx, "ood.calibration", CalibrationParams(n_shifted=120, shifts=("contrast", "fog")))
    assert model.predicted - before == 120
    assert set(cal.details["shifted"]["shifts"]) == {"contrast", "fog"}
    # a different sample set of rows gets its own entry: it never answers for the shift suite's rows
    (entry,) = ctx.shared_shifted("contrast", 3)
    assert entry.by == "ood.calibration" and len(entry.rows) == 60
    before = model.predicted
    _run(ctx, "shift.contrast", ShiftParams(n_samples=200, severities=(3,)))
    assert model.predicted - before == 200
    assert len(ctx.shared_shifted("contrast", 3)) == 2


def test_ood_sources_are_made_again_not_held(counted) -> None:
    ctx, model = counted
    p = DetectionParams(n_id=100, n_per_source=64, near_shifts=("contrast",))
    r = _run(ctx, "ood.energy", p)
    assert r.details["sources"]["shift_contrast"]["n"] == 64
    before = model.predicted
    again = _run(ctx, "ood.energy", p)  # scores cached per session: no model call
    assert model.predicted == before and again.metrics == r.metrics


# ------------------------------------------------------------------------------------- memory bounds


def _peak(fn: Any) -> int:
    """Peak bytes traced (NumPy reports its arrays to tracemalloc) while ``fn`` runs."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        fn()
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


@pytest.fixture()
def small_chunks(monkeypatch) -> int:
    """Stream 16 images per chunk, so that the data is many chunks long (digits: 256 floats each)."""
    monkeypatch.setattr(checks_base, "SHIFT_CHUNK_FLOATS", 16 * 256)
    return 16 * 256 * 4


def _warm(digits_model, digits_data, digits_train_data) -> Context:
    ctx = Context(model=digits_model, data=digits_data, train_data=digits_train_data, budget="quick", seed=0)
    ctx.clean_raw  # noqa: B018
    validity_gate(ctx)
    return ctx


def test_shift_peak_memory_does_not_grow_with_severities_or_rows(
    small_chunks, digits_model, digits_data, digits_train_data
) -> None:
    image = int(np.prod(digits_data.input_shape)) * 4

    def peak(n: int, severities: tuple[int, ...]) -> int:
        ctx = _warm(digits_model, digits_data, digits_train_data)
        return _peak(
            lambda: _run(ctx, "shift.gaussian_noise", ShiftParams(n_samples=n, severities=severities))
        )

    one, five = peak(480, (1,)), peak(480, (1, 2, 3, 4, 5))
    # five severities hold five sets of outputs (480 x 10 floats each), never five sets of images
    assert five - one < 0.25 * 4 * 480 * image
    small, large = peak(96, (1, 3)), peak(480, (1, 3))
    # 384 more rows cost their outputs and labels, not a copy of their images (1.5 MB here)
    assert large - small < 0.5 * 384 * image


def test_calibration_peak_memory_does_not_grow_with_shifted_rows(
    small_chunks, digits_model, digits_data, digits_train_data
) -> None:
    image = int(np.prod(digits_data.input_shape)) * 4

    def peak(n: int) -> int:
        ctx = _warm(digits_model, digits_data, digits_train_data)
        return _peak(lambda: _run(ctx, "ood.calibration", CalibrationParams(n_shifted=n)))

    small, large = peak(80), peak(480)
    assert large - small < 0.25 * 400 * image
