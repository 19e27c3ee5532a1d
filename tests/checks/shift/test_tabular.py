"""The tabular shift checks on a small scikit-learn model with a planted weakness."""

from __future__ import annotations

import numpy as np

from roadworthy.checks import load_builtin_checks
from roadworthy.runner import run_checks
from tests._tables import planted_context, planted_model, planted_table

REG = load_builtin_checks()


def _run(ctx, prefix="shift.tab"):
    classes = [c for cid, c in REG.items() if cid.startswith(prefix) or cid == "shift.summary"]
    return {r.id: r for r in run_checks(classes, ctx)}


def test_the_planted_feature_is_ranked_first_and_immutable_columns_are_never_drifted():
    r = _run(planted_context(), "shift.tab_feature_sensitivity")["shift.tab_feature_sensitivity"]
    ranking = r.details["ranking"]
    assert r.details["top_feature"] == "distance_km" == ranking[0]["feature"]
    assert ranking[0]["drop"] > ranking[1]["drop"] + 0.1  # by a margin, not by rounding
    assert "age" not in {row["feature"] for row in ranking}
    assert r.metrics["shift.tab_feature_sensitivity.max_drop"] > 0.1
    assert (
        r.metrics["shift.tab_feature_sensitivity.worst_accuracy_ci_low"]
        <= r.metrics["shift.tab_feature_sensitivity.worst_accuracy"]
    )
    assert r.details["evidence"][0]["kind"] == "bars"
    assert r.details["evidence"][0]["labels"][0] == "distance_km"


def test_every_shift_runs_reports_the_schema_and_feeds_the_summary():
    results = _run(planted_context())
    noise = results["shift.tab_gaussian_noise"]
    assert noise.status == "pass"
    assert noise.details["schema"]["immutable"] == ["age"]
    assert noise.details["schema_violations"]["immutable"] == 0
    accs = [noise.details["severity_accuracy"][s] for s in ("1", "5")]
    assert accs[1] <= accs[0]  # more noise never helps by much on this model
    summary = results["shift.summary"]
    assert summary.status == "pass"
    assert "tab_unit_drift" in summary.details["shifts"]
    assert 0.0 < summary.metrics["shift.mean_accuracy"] <= 1.0
    assert all(r.status != "error" for r in results.values())


def test_missing_values_are_unsupported_without_imputation_and_measured_with_it():
    results = _run(planted_context(), "shift.tab_missing_values")
    r = results["shift.tab_missing_values"]
    assert r.status == "warn" and not r.metrics
    assert r.details["supported"] is False and "NaN" in r.details["reason"]

    from sklearn.ensemble import HistGradientBoostingClassifier

    from roadworthy.models.sklearn import SklearnModel

    x, y = planted_table(600)
    hgb = SklearnModel(HistGradientBoostingClassifier(max_iter=40, random_state=0).fit(x[:400], y[:400]))
    r = _run(planted_context(model=hgb), "shift.tab_missing_values")["shift.tab_missing_values"]
    assert r.details["supported"] is True
    assert 0.5 <= r.metrics["shift.tab_missing_values.s1.accuracy"] <= 1.0


def test_a_shift_that_does_not_apply_says_why_without_metrics():
    # no categorical column: the planted table without region and member
    from roadworthy.checks.base import Context
    from roadworthy.data.base import Dataset

    x, y = planted_table(500)
    x = x[:, :4]
    model = planted_model(x[:300], y[:300])
    ctx = Context(model=model, data=Dataset(x=x[300:], y=y[300:], modality="tabular"), budget="quick")
    r = _run(ctx, "shift.tab_unseen_category")["shift.tab_unseen_category"]
    assert r.summary.startswith("Not applicable") and not r.metrics
    assert np.isfinite(
        _run(ctx, "shift.tab_gaussian_noise")["shift.tab_gaussian_noise"].metrics[
            "shift.tab_gaussian_noise.accuracy"
        ]
    )


def test_tabular_shift_failures_are_split_by_the_input_space_validity_gate():
    """Failures of a tabular shift are split by the session's gate, chosen among the input-space detectors
    on the demo's correlated columns: outliers and far unit drifts leave the envelope, and the split adds
    up to the failures; shift.summary pools it."""
    from roadworthy.checks.base import Context
    from roadworthy.demo.tabular import load_tabular_demo

    demo = load_tabular_demo()
    ctx = Context(model=demo.model, data=demo.test, train_data=demo.train, budget="quick", seed=0)
    classes = [REG[c] for c in ("shift.tab_unit_drift", "shift.tab_gaussian_noise", "shift.summary")]
    results = {r.id: r for r in run_checks(classes, ctx)}
    for cid in ("shift.tab_unit_drift", "shift.tab_gaussian_noise"):
        r = results[cid]
        v = r.details["validity"]
        assert v["gate"]["detector"] in ("input_mahalanobis", "input_knn", "isolation_forest")
        failures = sum(
            round((1 - row["accuracy"]) * r.details["n_samples"]) for row in r.details["per_severity"]
        )
        assert v["in_envelope_failures"] + v["out_of_envelope_failures"] == failures
        name = cid.removeprefix("shift.")
        assert r.metrics[f"shift.{name}.out_of_envelope_failures"] == v["out_of_envelope_failures"]
        for row in r.details["per_severity"]:
            assert row["in_envelope_failures"] + row["out_of_envelope_failures"] == round(
                (1 - row["accuracy"]) * r.details["n_samples"]
            )
    # a x10 unit error puts a row far outside the data: most unit-drift failures are out of the envelope
    drift = results["shift.tab_unit_drift"].details["validity"]
    assert drift["out_of_envelope_failures"] > drift["in_envelope_failures"]
    pooled = results["shift.summary"].details["validity"]
    assert pooled["out_of_envelope_failures"] >= drift["out_of_envelope_failures"]
