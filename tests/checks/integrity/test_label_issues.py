from __future__ import annotations

import numpy as np
import pytest

from roadworthy.checks.integrity.label_issues import LabelIssues, confident_learning, out_of_sample_probs
from roadworthy.errors import InvalidInputError
from roadworthy.results import CheckResult
from tests.checks.integrity.conftest import make_ctx


def _precision_recall(flagged: list[int], truth: np.ndarray) -> tuple[float, float]:
    hits = len(set(flagged) & set(truth.tolist()))
    return hits / max(1, len(flagged)), hits / len(truth)


@pytest.mark.parametrize("classifier", ["rda", "lda", "logreg"])
def test_planted_flips_are_recovered_from_model_features(
    flipped_module, flipped_digits, digits_split, classifier
):
    x_tr, _, x_te, y_te = digits_split
    y_noisy, flipped = flipped_digits
    ctx = make_ctx(flipped_module, x_tr, y_noisy, x_te, y_te)
    out = LabelIssues(LabelIssues.Params(classifier=classifier)).run(ctx)
    precision, recall = _precision_recall(out.details["indices"], flipped)
    assert precision >= 0.8
    assert recall >= 0.6
    assert out.metrics["integrity.label_issues.count"] == len(out.details["indices"])
    assert out.metrics["integrity.label_issues.rate"] == pytest.approx(
        len(out.details["indices"]) / len(y_noisy)
    )
    assert out.metrics["integrity.label_issues.rate_ci_low"] <= out.metrics["integrity.label_issues.rate"]
    # the noise estimate lands near the planted 5%
    assert 0.02 <= out.details["estimated_noise_rate"] <= 0.08
    assert out.details["probability_source"]["approximate"] is True
    assert "penultimate" in out.details["probability_source"]["inputs"]


def test_suggested_labels_point_back_to_the_true_class(flipped_module, flipped_digits, digits_split):
    x_tr, y_true, x_te, y_te = digits_split
    y_noisy, flipped = flipped_digits
    out = LabelIssues(budget="quick").run(make_ctx(flipped_module, x_tr, y_noisy, x_te, y_te))
    idx = np.array(out.details["indices"])
    suggested = np.array(out.details["suggested_labels"])
    assert len(idx) == len(suggested) == len(out.details["scores"]) == len(out.details["given_labels"])
    assert (suggested != y_noisy[idx]).all()
    is_flip = np.isin(idx, flipped)
    assert (suggested[is_flip] == y_true[idx[is_flip]]).mean() >= 0.8
    # ranked most suspicious first: self-confidence ascending
    assert np.all(np.diff(out.details["scores"]) >= 0)
    assert len(out.examples) == min(8, len(idx))
    assert out.examples[0].label == str(y_noisy[idx[0]])
    assert out.examples[0].original_prediction == str(suggested[0])


def test_without_a_feature_layer_the_raw_inputs_are_used(flipped_module, flipped_digits, digits_split):
    x_tr, _, x_te, y_te = digits_split
    y_noisy, flipped = flipped_digits
    out = LabelIssues(budget="quick").run(make_ctx(flipped_module, x_tr, y_noisy, x_te, y_te, features=False))
    assert "raw inputs" in out.details["probability_source"]["inputs"]
    precision, recall = _precision_recall(out.details["indices"], flipped)
    assert precision >= 0.6
    assert recall >= 0.6


def test_clean_labels_raise_almost_nothing(ctx):
    out = LabelIssues(budget="quick").run(ctx)
    assert out.metrics["integrity.label_issues.rate"] < 0.02  # a few sklearn digits are truly ambiguous


def test_figure_and_report_round_trip(ctx):
    out = LabelIssues(budget="quick").run(ctx)
    result = CheckResult(
        id=LabelIssues.id,
        suite="integrity",
        title=LabelIssues.title,
        status="pass",
        metrics=out.metrics,
        details=out.details,
    )
    result = CheckResult.model_validate_json(result.model_dump_json())
    from roadworthy.report.figures import draw

    figs = [draw(item) for item in result.details["evidence"]]
    assert len(figs) == 1 and figs[0][1].startswith("data:image/svg+xml;base64,")
    assert "confident joint" in figs[0][0]


def test_confident_learning_on_synthetic_probabilities():
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 3, 600)
    probs = np.full((600, 3), 0.05)
    probs[np.arange(600), y_true] = 0.9
    y = y_true.copy()
    flips = rng.choice(600, 30, replace=False)
    y[flips] = (y[flips] + 1) % 3
    found = confident_learning(y, probs)
    assert set(found["indices"].tolist()) == set(flips.tolist())
    assert found["joint"].shape == (3, 3)
    assert 1 - np.trace(found["joint"]) == pytest.approx(0.05, abs=0.01)


def test_out_of_sample_probs_handles_a_class_with_few_samples():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(103, 4))
    y = np.r_[np.zeros(50, int), np.ones(50, int), np.full(3, 2)]
    z[y == 1] += 3
    probs, folds = out_of_sample_probs(z, y, n_classes=4)
    assert folds == 3
    assert probs.shape == (103, 4)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    assert (probs[:, 3] < 1e-6).all()  # a class with no training sample gets only the floor


@pytest.mark.parametrize(
    ("field", "value"), [("filter_by", "nope"), ("rank_by", "nope"), ("n_folds", 1), ("classifier", "svm")]
)
def test_bad_parameters_are_named(ctx, field, value):
    params = LabelIssues.Params(**{field: value})
    with pytest.raises(InvalidInputError, match=field):
        LabelIssues(params).run(ctx)


def _table_ctx(x, y):
    from sklearn.linear_model import LogisticRegression

    from roadworthy.checks.base import Context
    from roadworthy.data.base import Dataset
    from roadworthy.models import load_model

    model = load_model(LogisticRegression(max_iter=1000).fit((x - x.mean(0)) / x.std(0), y))
    ds = Dataset(x=x.astype(np.float32), y=y, modality="tabular", class_names=["no", "yes"], path="t")
    return Context(model=model, data=ds, train_data=ds, budget="quick", seed=0)


def test_a_table_in_raw_units_is_judged_as_if_it_were_standardised():
    """Income (about 25,000) beside age: unscaled, the income alone decides every distance."""
    rng = np.random.default_rng(0)
    n = 1000
    age = rng.uniform(20, 70, n)
    income = rng.lognormal(np.log(25_000), 0.35, n)
    other = rng.normal(size=(n, 3))
    x = np.column_stack([age, income, other])
    z = (x - x.mean(0)) / x.std(0)
    y = (z[:, 0] - z[:, 2] + 0.3 * rng.normal(size=n) > 0).astype(np.int64)  # age decides, income not
    raw = LabelIssues(budget="quick").run(_table_ctx(x, y)).metrics["integrity.label_issues.rate"]
    scaled = LabelIssues(budget="quick").run(_table_ctx(z, y)).metrics["integrity.label_issues.rate"]
    assert scaled < 0.05
    assert raw < 0.05
    assert abs(raw - scaled) < 0.02
