"""The parity suite: an exported or quantized model against the model it was made from.

A real digits CNN (trained in the test session) is exported to ONNX exactly, damaged on purpose (one conv
channel's weights scaled by 5) and quantized to int8; each is compared with the trained module.
"""

from __future__ import annotations

import copy
import json
import warnings

import numpy as np
import pytest

from roadworthy.checks import load_builtin_checks
from roadworthy.checks.base import Context
from roadworthy.coverage.differential import Comparison, compare_outputs
from roadworthy.errors import InvalidInputError
from roadworthy.runner import run_checks

REGISTRY = load_builtin_checks()
PARITY = [c for cid, c in REGISTRY.items() if cid.startswith("parity.")]


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory, digits_module):
    """The digits CNN as an exact ONNX export, its int8 copy, and a damaged in-memory copy."""
    import torch

    from roadworthy.models.quantize import int8_copy

    root = tmp_path_factory.mktemp("parity")
    x = torch.rand(4, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    onnx = root / "model.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            digits_module,
            (x,),
            str(onnx),
            dynamo=False,
            input_names=["pixels"],
            output_names=["logits"],
            dynamic_axes={"pixels": {0: "batch"}, "logits": {0: "batch"}},
        )
        script = root / "model.pt"
        torch.jit.trace(digits_module, x).save(str(script))
    int8 = int8_copy(onnx, root / "model.int8.onnx")
    damaged = copy.deepcopy(digits_module)
    with torch.no_grad():
        damaged[0].weight[0] *= 5.0  # one channel of the first conv
        damaged[0].bias[0] *= 5.0
    return {"onnx": onnx, "int8": int8, "script": script, "damaged": damaged, "root": root}


def _ctx(model, reference, data, budget="quick", seed=0):
    return Context(model=model, data=data, reference_model=reference, budget=budget, seed=seed)


def _load(path):
    from roadworthy.models import load_model

    return load_model(str(path), input_shape=(1, 16, 16))


def _run(ctx, ids):
    return {r.id: r for r in run_checks([REGISTRY[i] for i in ids], ctx)}


# ------------------------------------------------------------------------------------------- library


def test_compare_outputs_of_identical_logits_agree_everywhere():
    z = np.random.default_rng(0).normal(size=(50, 4)).astype(np.float32)
    c = compare_outputs(z, "logits", z.copy(), "logits")
    assert c.n == 50 and c.disagreements == 0 and c.max_abs_diff == 0.0 and c.space == "logits"


def test_compare_outputs_falls_back_to_probabilities_and_counts_flips():
    from roadworthy.stats import softmax

    z = np.array([[2.0, 0.0], [0.0, 2.0], [1.0, 0.9]], np.float32)
    swapped = z.copy()
    swapped[2] = [0.9, 1.0]
    c = compare_outputs(softmax(swapped), "probs", z, "logits")
    assert c.space == "probabilities"
    assert c.disagree.tolist() == [False, False, True]
    assert 0 < c.max_abs_diff < 0.1  # probabilities of a near tie moved a little
    both = Comparison.concat([c, c])
    assert both.n == 6 and both.disagreements == 2


def test_compare_outputs_refuses_other_class_counts():
    with pytest.raises(InvalidInputError, match="same"):
        compare_outputs(np.zeros((3, 4)), "logits", np.zeros((3, 5)), "logits")


# --------------------------------------------------------------------------------------------- checks


def test_without_a_reference_every_parity_check_is_skipped_with_the_reason(digits_model, digits_data):
    results = _run(_ctx(digits_model, None, digits_data), [c.id for c in PARITY])
    assert set(results) == {c.id for c in PARITY} and len(results) == 6
    for r in results.values():
        assert r.status == "skipped" and "--reference-model" in r.summary and not r.metrics


def test_an_exact_onnx_export_agrees_on_every_clean_input(artifacts, digits_model, digits_data):
    model = _load(artifacts["onnx"])
    r = _run(_ctx(model, digits_model, digits_data), ["parity.clean"])["parity.clean"]
    m = r.metrics
    assert r.status == "pass", r.error
    assert m["parity.clean.disagreement"] == 0.0 and m["parity.clean.disagreement_n"] == digits_data.n_samples
    assert m["parity.clean.disagreement_ci_high"] < 0.01  # 500 inputs, none disagreeing
    assert m["parity.clean.max_abs_logit_diff"] < 1e-3  # float rounding, not a change of the model
    assert m["parity.clean.p99_abs_logit_diff"] <= m["parity.clean.max_abs_logit_diff"]
    assert m["parity.clean.accuracy"] == m["parity.clean.reference_accuracy"] > 0.9
    assert r.details["compared_in"] == "logits" and r.details["reference"]["format"] == "torch"
    assert "reference" in r.summary and not r.examples


def test_a_damaged_copy_is_caught_with_an_interval_that_excludes_zero(artifacts, digits_model, digits_data):
    from roadworthy.models.torch import TorchModel

    damaged = TorchModel(artifacts["damaged"], input_shape=(1, 16, 16))
    r = _run(_ctx(damaged, digits_model, digits_data), ["parity.clean"])["parity.clean"]
    m = r.metrics
    assert m["parity.clean.disagreement"] > 0 and m["parity.clean.disagreement_ci_low"] > 0
    assert m["parity.clean.max_abs_logit_diff"] > 0.1
    assert r.examples and "reference:" in r.examples[0].title and "model:" in r.examples[0].title
    assert r.examples[0].original.startswith("data:image/png")


def test_an_int8_copy_reports_its_disagreement_with_an_interval(artifacts, digits_data):
    reference = _load(artifacts["onnx"])
    int8 = _load(artifacts["int8"])
    r = _run(_ctx(int8, reference, digits_data), ["parity.clean"])["parity.clean"]
    m = r.metrics
    v, lo, hi = (m[f"parity.clean.disagreement{s}"] for s in ("", "_ci_low", "_ci_high"))
    assert 0.0 <= lo <= v <= hi <= 1.0 and hi > 0  # an interval, also when no input flips
    assert m["parity.clean.disagreement_n"] == digits_data.n_samples
    assert 0 < m["parity.clean.max_abs_logit_diff"] < 5  # quantization moves logits, a little
    assert r.details["reference"]["path"].endswith("model.onnx")


def test_every_source_runs_and_the_summary_pools_them(artifacts, digits_model, digits_data):
    from roadworthy.models.torch import TorchModel

    damaged = TorchModel(artifacts["damaged"], input_shape=(1, 16, 16))
    results = _run(_ctx(damaged, digits_model, digits_data), [c.id for c in PARITY])
    for r in results.values():
        assert r.status in ("pass", "warn"), (r.id, r.error, r.summary)
    total_n = sum(
        results[f"parity.{s}"].metrics[f"parity.{s}.disagreement_n"]
        for s in ("clean", "shift", "adversarial", "mutants")
    )
    k = sum(
        round(
            results[f"parity.{s}"].metrics[f"parity.{s}.disagreement"]
            * results[f"parity.{s}"].metrics[f"parity.{s}.disagreement_n"]
        )
        for s in ("clean", "shift", "adversarial", "mutants")
    )
    summary = results["parity.summary"].metrics
    assert summary["parity.disagreement_n"] == total_n
    assert summary["parity.disagreement"] == pytest.approx(k / total_n)
    assert summary["parity.disagreement_ci_low"] > 0
    shift = results["parity.shift"]
    # quick budget: the shift suite's severities, every non-extra shift
    assert shift.details["severities"] == [1, 3, 5] and len(shift.details["shifts"]) >= 20
    assert results["parity.adversarial"].details["reference_fooled"] > 0
    fuzz = results["parity.fuzz"].metrics  # searched, so not pooled into parity.disagreement
    assert 0 < fuzz["parity.fuzz.queries"] <= 1000 and 0 < fuzz["parity.fuzz.random.queries"] <= 1000
    assert fuzz["parity.fuzz.disagreements"] > 0
    assert fuzz["parity.fuzz.disagreements_per_10k"] == pytest.approx(
        1e4 * fuzz["parity.fuzz.disagreements"] / fuzz["parity.fuzz.queries"]
    )
    ex = results["parity.fuzz"].examples
    assert ex and ex[0].changed.startswith("data:image/png") and "reference:" in ex[0].changed_prediction
    json.dumps([r.details for r in results.values()], allow_nan=False)


def test_the_adversarial_source_needs_a_white_box_reference(artifacts, digits_model, digits_data):
    reference = _load(artifacts["onnx"])  # ONNX: no gradients
    r = _run(_ctx(digits_model, reference, digits_data), ["parity.adversarial"])["parity.adversarial"]
    assert r.status == "skipped" and "gradients" in r.summary


def test_the_same_seed_gives_the_same_numbers(artifacts, digits_model, digits_data):
    from roadworthy.models.torch import TorchModel

    damaged = TorchModel(artifacts["damaged"], input_shape=(1, 16, 16))
    ids = ["parity.shift", "parity.mutants"]
    a = _run(_ctx(damaged, digits_model, digits_data, seed=4), ids)
    b = _run(_ctx(damaged, digits_model, digits_data, seed=4), ids)
    for i in ids:
        assert a[i].metrics == b[i].metrics
