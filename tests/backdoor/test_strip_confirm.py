"""STRIP flags triggered inputs at a calibrated false rejection rate; pasting the planted trigger confirms it."""

from __future__ import annotations

import numpy as np
import pytest

from roadworthy.backdoor import attack_success, common_pattern, strip
from roadworthy.errors import InvalidInputError
from tests.backdoor.conftest import TARGET


@pytest.fixture(scope="module")
def strips(twins):
    x, y = twins.x_test, twins.y_test
    triggered = twins.planted.trigger.apply(x[y != TARGET])
    return {
        name: strip(model, x, triggered, n_overlays=16, seed=0)
        for name, model in (("backdoored", twins.backdoored), ("clean", twins.clean))
    }


def test_strip_detects_triggered_inputs_of_the_backdoored_model(strips):
    r = strips["backdoored"]
    assert r.detection_rate > 0.8
    assert r.false_rejection_rate < 0.06  # calibrated for 1% on the other half of the clean inputs
    assert r.triggered_entropy.mean() < 0.5 * r.clean_entropy.mean()


def test_strip_on_the_clean_twin_flags_few_triggered_inputs(strips):
    r = strips["clean"]
    assert r.detection_rate < 0.2
    assert r.false_rejection_rate < 0.06


def test_fitted_detector_is_deployable(strips, twins):
    det = strips["backdoored"].detector
    flagged = det.detect(twins.planted.trigger.apply(twins.x_test[:40]))
    clean = det.detect(twins.x_test[:40])
    assert flagged.mean() > 0.7 and clean.mean() < 0.15
    items = strips["backdoored"].evidence()
    assert items[0]["kind"] == "lines" and set(items[0]["series"]) == {"clean (held out)", "with trigger"}


def test_strip_rejects_bad_parameters(twins):
    with pytest.raises(InvalidInputError, match="`blend`"):
        strip(twins.clean, twins.x_test[:8], blend="sum")
    with pytest.raises(InvalidInputError, match="`frr`"):
        strip(twins.clean, twins.x_test[:8], frr=0.7)


def test_planted_trigger_works_only_on_the_backdoored_model(twins):
    t = twins.planted.trigger
    bd = attack_success(twins.backdoored, twins.x_test, twins.y_test, t.mask, t.pattern, TARGET)
    clean = attack_success(twins.clean, twins.x_test, twins.y_test, t.mask, t.pattern, TARGET)
    assert bd.rate > 0.9 and bd.hits <= bd.n and bd.ci_low <= bd.rate <= bd.ci_high
    assert clean.rate < 0.1
    assert (twins.y_test != TARGET).sum() >= bd.n  # class-0 inputs and misclassified inputs left out


def test_common_pattern_recovers_the_planted_patch(twins):
    p = twins.planted
    mask, pattern = common_pattern(p.x[p.indices], p.x[p.y != TARGET])
    planted = p.trigger.mask[0] > 0
    assert (mask[0] > 0)[planted].all()
    assert mask.sum() <= planted.sum() + 4
    assert np.allclose(pattern[0][planted], 1.0, atol=0.05)
    # a clean class has no shared patch
    clean_rows = np.flatnonzero(twins.y_train == 3)
    other = np.flatnonzero(twins.y_train != 3)
    assert common_pattern(twins.x_train[clean_rows], twins.x_train[other])[0].sum() == 0
