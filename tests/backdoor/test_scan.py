"""The training-data scan names the backdoor's class, finds its poisoned samples, spares the clean twin."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from roadworthy.backdoor import SCORE_THRESHOLD, SIGNIFICANCE, SUCCESS_THRESHOLD, scan_training_data
from roadworthy.backdoor.clusters import binomial_p, null_rate
from roadworthy.errors import InvalidInputError
from tests.backdoor.conftest import TARGET


def _precision_recall(suspects: np.ndarray, poisoned: np.ndarray) -> tuple[float, float]:
    hits = np.isin(suspects, poisoned).sum()
    return hits / max(1, len(suspects)), hits / len(poisoned)


@pytest.fixture(scope="module")
def scans(twins):
    p = twins.planted
    bd, clean = twins.backdoored, twins.clean
    return {
        "backdoored": scan_training_data(p.y, features=bd.features(p.x), x=p.x, model=bd, seed=0),
        "clean": scan_training_data(
            twins.y_train, features=clean.features(twins.x_train), x=twins.x_train, model=clean, seed=0
        ),
        "no model": scan_training_data(p.y, features=bd.features(p.x), x=p.x, seed=0),
    }


def test_target_class_is_named_and_confirmed(scans):
    s = scans["backdoored"]
    assert s.flagged()[0] == TARGET
    assert s.flagged(min_success=SUCCESS_THRESHOLD) == [TARGET]
    f = s.finding(TARGET)
    assert f.score >= SCORE_THRESHOLD and f.method.startswith("untangling")
    assert f.chosen_by == "trigger" and f.trigger_success.rate > 0.8
    # a source-agnostic trigger: the group resembles no single other class, and is close to half its class
    assert f.resemblance < 0.5 and f.relative_size > 0.3


def test_poisoned_samples_found(scans, twins):
    for name in ("backdoored", "no model"):
        precision, recall = _precision_recall(scans[name].suspects(), twins.planted.indices)
        assert precision > 0.8 and recall > 0.8, (name, precision, recall)
    # ranked: the first half of the suspects is at least as clean a set as the whole
    sus = scans["backdoored"].finding(TARGET).suspects
    assert np.isin(sus[: len(sus) // 2], twins.planted.indices).mean() > 0.9


def test_clean_twin_is_not_flagged(scans):
    s = scans["clean"]
    assert s.flagged() == []
    assert max(f.score for f in s.classes) < SCORE_THRESHOLD
    assert all(f.trigger_success is None or f.trigger_success.rate < SUCCESS_THRESHOLD for f in s.classes)


def test_every_class_has_a_score_and_the_method_that_raised_it(scans):
    s = scans["backdoored"]
    assert [f.label for f in s.classes] == list(range(10))
    assert s.views == ["features", "inputs"]
    for f in s.classes:
        assert set(f.scores) == {"features", "inputs"}
        assert f.method in ("untangling (features)", "untangling (inputs)")
        assert f.score == max(f.scores.values())
        assert np.all(np.diff(f.suspect_scores) <= 0)
    kinds = [it["kind"] for it in s.evidence([str(i) for i in range(10)])]
    assert kinds == ["bars", "image"]


def test_scan_needs_something_to_scan():
    with pytest.raises(InvalidInputError, match="`features`"):
        scan_training_data(np.zeros(10, int))


def test_trigger_is_tested_against_the_other_classes_patterns(scans):
    """The backdoor's group pattern beats the best other class's pattern by a binomial test; on the clean
    twin no class is both separable (score >= 2) and significant."""
    alpha = SIGNIFICANCE / 10
    f = scans["backdoored"].finding(TARGET)
    assert f.trigger_p is not None and f.trigger_p < alpha
    assert f.trigger_null is not None and f.trigger_null < f.trigger_success.rate / 2
    for g in scans["clean"].classes:
        assert not (g.score >= 2.0 and g.trigger_p is not None and g.trigger_p < alpha), g.label
    assert all(f.trigger_p is None for f in scans["no model"].classes)


def test_null_rate_and_binomial_p_are_conservative_and_monotone():
    # a null that never fired in n trials is still about 3.8 / n (upper end of the 95% Wilson interval)
    assert 2.0 / 500 < null_rate(0, 500) < 6.0 / 500
    assert null_rate(50, 500) > 0.1
    ps = [binomial_p(h, 400, 0.05) for h in (10, 20, 30, 60)]
    assert all(a > b for a, b in itertools.pairwise(ps))
    assert binomial_p(0, 400, 0.05) == 1.0 and binomial_p(60, 400, 0.05) < 1e-6


def test_foreign_share_is_tested_against_the_other_classes_groups(scans):
    """Every class's foreign share gets a null from the other classes' groups; a clean twin has no class
    that is strongly separable, mostly foreign and significantly more foreign than the others."""
    alpha = SIGNIFICANCE / 10
    for name in ("backdoored", "clean", "no model"):
        for f in scans[name].classes:
            assert f.foreign_null is not None and 0.0 <= f.foreign_null <= 1.0
            assert f.foreign_p is not None and 0.0 <= f.foreign_p <= 1.0
    for f in scans["clean"].classes:
        assert not (f.score >= SCORE_THRESHOLD and f.foreign_share >= 0.5 and f.foreign_p < alpha), f.label
    # a larger foreign count against the same null is never less significant
    f = scans["backdoored"].finding(TARGET)
    n = len(f.suspects)
    p0 = null_rate(round(f.foreign_null * n), n)
    assert binomial_p(n, n, p0) <= binomial_p(max(1, n // 2), n, p0)
