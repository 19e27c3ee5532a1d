"""The model-level backdoor checks on a BadNets digits CNN and its clean twin (tests/backdoor/conftest.py)."""

from __future__ import annotations

import numpy as np
import pytest

from roadworthy.checks.base import Context
from roadworthy.checks.integrity.backdoor import BackdoorScan, Strip
from roadworthy.data.base import Dataset
from roadworthy.errors import InvalidInputError
from tests.backdoor.conftest import TARGET, twins  # noqa: F401  (the session fixture)

NAMES = [str(i) for i in range(10)]


def _ctx(model, t, budget="standard") -> Context:
    data = Dataset(x=t.x_test, y=t.y_test, modality="image", class_names=NAMES, path="test")
    return Context(model=model, data=data, budget=budget, seed=0)  # no training data


@pytest.fixture(scope="module")
def runs(twins):  # noqa: F811
    out = {}
    for name, model in (("backdoored", twins.backdoored), ("clean", twins.clean)):
        ctx = _ctx(model, twins)
        scan = BackdoorScan(budget="standard").run(ctx)
        out[name] = (scan, Strip(budget="standard").run(ctx))
    return out


def test_checks_need_no_training_data():
    assert not BackdoorScan.requires.train_data and not Strip.requires.train_data
    assert "white_box" in BackdoorScan.requires.capabilities
    assert not Strip.requires.capabilities  # queries only


def test_target_class_is_named_and_confirmed(runs):
    scan, _ = runs["backdoored"]
    assert scan.details["suspect_classes"] == [str(TARGET)]
    assert scan.metrics["integrity.backdoor_scan.suspect_count"] == 1
    assert scan.metrics["integrity.backdoor_scan.max_anomaly_index"] > 2
    assert scan.metrics["integrity.backdoor_scan.mask_ratio"] < 0.5
    # the recovered trigger works on held-out inputs of other classes
    assert scan.metrics["integrity.backdoor_scan.attack_success_ci_low"] > 0.5
    assert f"class {TARGET} looks like a backdoor target" in scan.summary
    kinds = [e["kind"] for e in scan.details["evidence"]]
    assert "image" in kinds and "bars" in kinds
    assert scan.examples and scan.examples[0].changed_prediction == str(TARGET)


def test_clean_twin_is_not_flagged(runs):
    scan, strip = runs["clean"]
    assert scan.details["suspect_classes"] == []
    assert scan.metrics["integrity.backdoor_scan.suspect_count"] == 0
    assert "no class has an outlying trigger" in scan.summary
    # nothing flagged: STRIP has no trigger to measure against, only its false rejections
    assert "integrity.strip.detection_rate" not in strip.metrics
    assert strip.metrics["integrity.strip.false_rejection_rate_ci_low"] <= 0.05


def test_strip_detects_the_recovered_trigger(runs):
    _, strip = runs["backdoored"]
    assert strip.details["trigger_from"] == str(TARGET)
    assert strip.metrics["integrity.strip.detection_rate"] >= 0.7
    assert strip.metrics["integrity.strip.false_rejection_rate_ci_low"] <= 0.05
    assert 0 < strip.metrics["integrity.strip.threshold"] < 1


def test_bad_parameters_are_named(twins):  # noqa: F811
    ctx = _ctx(twins.clean, twins)
    with pytest.raises(InvalidInputError, match="max_norm_ratio"):
        BackdoorScan(BackdoorScan.Params(max_norm_ratio=0)).run(ctx)
    with pytest.raises(InvalidInputError, match="frr"):
        Strip(Strip.Params(frr=0.7)).run(ctx)


def test_black_box_model_is_skipped_with_the_reason(twins):  # noqa: F811
    class Black:
        n_classes = 10
        output = "logits"

        def predict(self, x):
            return twins.clean.predict(x)

    ctx = _ctx(Black(), twins)
    reason = BackdoorScan.unmet(ctx)
    assert reason and "white_box" in reason
    assert Strip.unmet(ctx) is None
    assert np.isfinite(Strip(budget="quick").run(ctx).metrics["integrity.strip.threshold"])
