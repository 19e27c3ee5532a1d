"""The clean and sanity checks on the trained digits CNN, and on models with classic mistakes."""

from __future__ import annotations

import numpy as np
import pytest

from roadworthy.checks.base import Context
from roadworthy.checks.clean import CleanAccuracy
from roadworthy.checks.sanity import BatchInvariance, Determinism, Latency, OutputContract
from roadworthy.models.function import FunctionModel
from roadworthy.runner import run_check


def test_clean_accuracy_matches_a_hand_count(ctx, digits_module, digits_data):
    import torch

    result = run_check(CleanAccuracy, ctx)
    assert result.status == "pass"
    with torch.no_grad():
        pred = digits_module(torch.from_numpy(digits_data.x)).argmax(1).numpy()
    expected = float(np.mean(pred == digits_data.y))
    m = result.metrics
    assert m["clean.accuracy"] == pytest.approx(expected)
    assert m["clean.accuracy"] > 0.93
    assert m["clean.accuracy_ci_low"] < m["clean.accuracy"] < m["clean.accuracy_ci_high"]
    assert m["clean.accuracy_n"] == 500
    assert 0 <= m["clean.ece"] < 0.1
    cm = np.array(result.details["confusion_matrix"])
    assert cm.sum() == 500 and np.trace(cm) == round(expected * 500)
    assert m["clean.worst_class_accuracy"] <= m["clean.accuracy"]
    assert len(result.details["per_class"]) == 10


def test_sanity_holds_on_an_eval_mode_model(ctx):
    for cls, metric in [
        (Determinism, "sanity.determinism"),
        (BatchInvariance, "sanity.batch_invariance"),
        (OutputContract, "sanity.outputs_valid"),
    ]:
        r = run_check(cls, ctx)
        assert r.metrics[metric] == 1.0, (cls.id, r.summary)
    lat = run_check(Latency, ctx)
    assert 0 < lat.metrics["sanity.latency_ms_p50"] <= lat.metrics["sanity.latency_ms_p95"]


def _ctx_for(fn, digits_data) -> Context:
    return Context(model=FunctionModel(fn, (1, 16, 16), n_classes=10), data=digits_data, budget="quick")


def test_dropout_left_on_breaks_determinism(digits_module, digits_data):
    import torch

    def noisy(x):
        with torch.no_grad():
            logits = digits_module(torch.from_numpy(x))
            return torch.nn.functional.dropout(logits, 0.5, training=True).numpy()

    r = run_check(Determinism, _ctx_for(noisy, digits_data))
    assert r.metrics["sanity.determinism"] == 0.0 and r.status == "warn"


def test_batch_statistics_break_batch_invariance(digits_module, digits_data):
    import torch

    def batchnorm_in_training_mode(x):
        with torch.no_grad():
            t = torch.from_numpy(x)
            t = (t - t.mean(dim=0, keepdim=True)) / (
                t.std(dim=0, keepdim=True, unbiased=False) + 1e-3
            ) * 0.3 + 0.3
            return digits_module(t).numpy()

    r = run_check(BatchInvariance, _ctx_for(batchnorm_in_training_mode, digits_data))
    assert r.metrics["sanity.batch_invariance"] == 0.0
    assert "training mode" in r.summary


def test_non_finite_outputs_are_reported(digits_data):
    def broken(x):
        out = np.zeros((len(x), 10), np.float32)
        out[0, 0] = np.nan
        return out

    r = run_check(OutputContract, _ctx_for(broken, digits_data))
    assert r.metrics["sanity.outputs_valid"] == 0.0
    assert "non-finite" in r.summary
