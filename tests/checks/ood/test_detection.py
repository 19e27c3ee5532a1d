"""The ood.<detector> checks and ood.summary on the digits CNN."""

from __future__ import annotations

import numpy as np
import pytest

from roadworthy.checks.base import CHECKS, Context
from roadworthy.checks.ood.detection import DetectionParams, detector_scores
from roadworthy.data.base import Dataset
from roadworthy.report.figures import draw

DETECTORS = ("ood.msp", "ood.max_logit", "ood.energy", "ood.mahalanobis", "ood.knn")
INPUT_DETECTORS = ("ood.input_mahalanobis", "ood.input_knn", "ood.isolation_forest")
SMALL = DetectionParams(n_id=300, n_per_source=100)


@pytest.fixture(scope="module")
def shared_ctx(digits_model, digits_data, digits_train_data) -> Context:
    """One context for the tests that only read it, so model outputs are computed once (as in a session)."""
    return Context(model=digits_model, data=digits_data, train_data=digits_train_data, budget="quick", seed=0)


def _run(check_id: str, ctx: Context, params: DetectionParams = SMALL):
    return CHECKS[check_id](params=params).run(ctx)


@pytest.mark.parametrize("check_id", ["ood.mahalanobis", "ood.knn"])
def test_feature_detectors_separate_uniform_noise(shared_ctx: Context, check_id: str) -> None:
    ctx = shared_ctx
    out = _run(check_id, ctx)
    assert out.metrics[f"{check_id}.uniform_noise.auroc"] > 0.9
    assert out.metrics[f"{check_id}.uniform_noise.fpr95"] < 0.6
    assert out.metrics[f"{check_id}.photos.auroc"] > 0.9
    assert out.details["fitted_on"] == "training data" and out.details["n_fitted"] == ctx.train_data.n_samples


def test_every_detector_reports_its_metrics_per_source(shared_ctx: Context) -> None:
    ctx = shared_ctx
    for check_id in DETECTORS:
        out = _run(check_id, ctx)
        srcs = out.details["sources"]
        assert set(srcs) >= {"uniform_noise", "photos", "shift_gaussian_noise", "shift_contrast"}
        for name in ("auroc", "fpr95", "aupr"):
            assert 0.0 <= out.metrics[f"{check_id}.{name}"] <= 1.0
        assert out.metrics[f"{check_id}.auroc"] == pytest.approx(np.mean([r["auroc"] for r in srcs.values()]))
        assert out.metrics[f"{check_id}.auroc"] > 0.6  # a 97% CNN's own scores beat chance on average
        assert out.details["n_id"] == 300
        (item,) = out.details["evidence"]  # drawn by the report from the data alone
        assert item["kind"] == "lines" and set(item["series"]) == set(srcs)
        caption, uri = draw(item)
        assert uri.startswith("data:image/svg+xml;base64,") and "ROC" in caption


def test_every_library_detector_has_one_declared_check() -> None:
    from roadworthy.checks.ood.detection import DETECTOR_CHECKS, DetectionParams, DetectorCheck
    from roadworthy.uncertainty import DETECTORS as LIBRARY

    assert list(DETECTOR_CHECKS) == list(LIBRARY)  # the summary ranks them in this order
    assert CHECKS["ood.summary"].depends_on == DETECTORS + INPUT_DETECTORS
    for name, cls in DETECTOR_CHECKS.items():
        assert CHECKS[f"ood.{name}"] is cls and cls.__bases__ == (DetectorCheck,)
        assert ("features" in cls.requires.capabilities) == (cls.detector.space == "features")
        # input-space detectors are for tables only: a 150,528-column "row" of pixels is no table
        assert (cls.requires.modalities == {"tabular"}) == (cls.detector.space == "input")
        det = cls.make_detector(DetectionParams(k=7, ridge=0.5))
        assert (
            isinstance(det, LIBRARY[name]) and getattr(det, "k", 7) == 7 and getattr(det, "ridge", 0.5) == 0.5
        )


def test_summary_names_the_best_detector_and_describes_the_gate(shared_ctx: Context) -> None:
    ctx = shared_ctx
    out = _run("ood.summary", ctx)
    d = out.details
    assert d["best_detector"] in d["detectors"] and len(d["detectors"]) == 5
    assert out.metrics["ood.best_auroc"] == pytest.approx(max(d["mean_auroc"].values()))
    assert out.metrics["ood.best_auroc"] == pytest.approx(
        _run(f"ood.{d['best_detector']}", ctx).metrics[f"ood.{d['best_detector']}.auroc"]
    )
    gate = d["validity_gate"]
    assert gate["detector"] in d["detectors"] and gate["out_of_envelope"]["uniform_noise"] > 0.5
    assert out.metrics["ood.validity.clean_in_envelope"] >= 0.9
    assert 1 <= len(out.examples) <= 8 and out.examples[0].original.startswith("data:image/png")
    assert [item["kind"] for item in d["evidence"]] == ["lines", "heatmap"]
    assert all(draw(item)[1].startswith("data:image/svg+xml;base64,") for item in d["evidence"])


def test_user_ood_data_is_scored_as_its_own_source(digits_model, digits_data, digits_train_data) -> None:
    rng = np.random.default_rng(5)
    inverted = Dataset(
        x=1.0 - digits_data.x[:80], y=np.zeros(80, np.int64), modality="image", path="inverted.npz"
    )
    ctx = Context(
        model=digits_model, data=digits_data, train_data=digits_train_data, ood_data=inverted, seed=0
    )
    out = _run("ood.knn", ctx)
    assert (
        out.details["sources"]["user"]["n"] == 80
        and out.details["sources"]["user"]["origin"] == "inverted.npz"
    )
    assert out.metrics["ood.knn.user.auroc"] > 0.9  # white digits on black are far from black on white
    bad = Dataset(x=rng.random((5, 1, 8, 8)).astype(np.float32), y=np.zeros(5, np.int64), modality="image")
    ctx_bad = Context(model=digits_model, data=digits_data, ood_data=bad, seed=0)
    with pytest.raises(ValueError, match="--ood-data: inputs must have the evaluation data's shape"):
        _run("ood.msp", ctx_bad)


def test_same_seed_same_numbers_other_seed_other_inputs(digits_model, digits_data, digits_train_data) -> None:
    def metrics(seed: int) -> dict[str, float]:
        c = Context(model=digits_model, data=digits_data, train_data=digits_train_data, seed=seed)
        return _run("ood.energy", c).metrics

    first, again, other = metrics(0), metrics(0), metrics(1)
    assert first == again
    assert first != other


def test_probability_models_are_warned_about_a_constant_energy(digits_model, digits_data) -> None:
    class Probs:  # the same network behind a softmax, as many exported models are
        n_classes, input_spec, output, format = 10, digits_model.input_spec, "probs", "callable"

        def predict(self, x: np.ndarray) -> np.ndarray:
            z = digits_model.predict(x)
            e = np.exp(z - z.max(axis=1, keepdims=True))
            return e / e.sum(axis=1, keepdims=True)

    ctx = Context(model=Probs(), data=digits_data, seed=0)
    energy = _run("ood.energy", ctx)
    assert any("constant" in w for w in energy.warnings)
    # its logits are log p, so the energy -log(sum p) is 0 up to float rounding for every input, ID and
    # OOD alike: whatever AUROC the rounding noise gives is meaningless (0.57 on one CPU, 0.5 on another)
    scores = detector_scores(ctx, "energy", SMALL)
    spread = np.concatenate(list(scores.values()))
    assert np.abs(spread).max() < 1e-5
    logit_scores = detector_scores(ctx, "max_logit", SMALL)
    assert np.ptp(np.concatenate(list(logit_scores.values()))) > 1e3 * np.ptp(spread)
    assert 0.0 <= energy.metrics["ood.energy.auroc"] <= 1.0
    summary = _run("ood.summary", ctx)
    assert "energy" not in summary.details["detectors"]
    assert summary.details["validity_gate"]["detector"] in ("max_logit", "msp")


def test_tabular_model_without_features() -> None:
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    from roadworthy.models.function import FunctionModel

    x, y = load_iris(return_X_y=True)
    x = x.astype(np.float32)
    clf = LogisticRegression(max_iter=500).fit(x[::2], y[::2])
    model = FunctionModel(lambda b: clf.decision_function(b), input_shape=(4,), output="logits")
    data = Dataset(x=x[1::2], y=y[1::2], modality="tabular")
    ctx = Context(model=model, data=data, train_data=Dataset(x=x[::2], y=y[::2], modality="tabular"), seed=0)
    assert CHECKS["ood.mahalanobis"].unmet(ctx) == "the model does not offer features"
    out = _run("ood.energy", ctx)
    # every column of iris is continuous: no unseen-category shift
    assert set(out.details["sources"]) == {
        "uniform_in_range",
        "uniform_noise",
        "gaussian_noise",
        "shift_shuffled_columns",
        "shift_tab_gaussian_noise",
        "shift_tab_unit_drift",
        "shift_tab_outliers",
    }
    # a linear model grows more confident the further an input lies from the data (Hein et al., CVPR
    # 2019), so its own scores rank far-away noise as *more* in-distribution: the check must show that
    assert out.metrics["ood.energy.uniform_noise.auroc"] < 0.5
    summary = _run("ood.summary", ctx)
    assert summary.details["detectors"] == [
        "msp",
        "max_logit",
        "energy",
        "input_mahalanobis",
        "input_knn",
        "isolation_forest",
    ]
    assert not summary.examples
    # so the validity gate, which may use the input-space detectors on a table, picks one of them and
    # rejects the noise that the model's own scores would let through
    gate = summary.details["validity_gate"]
    assert gate["detector"] in ("input_mahalanobis", "input_knn", "isolation_forest")
    assert gate["out_of_envelope"]["uniform_noise"] >= 0.9
    cal = CHECKS["ood.calibration"](budget="quick").run(ctx)
    assert cal.details["shifted"]["shifts"] == {"gaussian_noise": "built-in"}


def test_tabular_ood_on_a_scikit_learn_model_is_a_real_section() -> None:
    """A pipeline without features: the input-space detectors run, see far OOD and the planted unit drift."""
    from roadworthy.checks.ood.detection import bench
    from roadworthy.checks.tabular import schema_for
    from tests._tables import planted_context

    ctx = planted_context()
    assert all(CHECKS[c].unmet(ctx) is None for c in INPUT_DETECTORS)
    for check_id in INPUT_DETECTORS:
        out = _run(check_id, ctx)
        srcs = out.details["sources"]
        assert {"uniform_in_range", "shift_tab_unit_drift", "shift_tab_unseen_category"} <= set(srcs)
        assert srcs["shift_tab_unit_drift"]["group"] == "near" and srcs["uniform_in_range"]["group"] == "far"
        # noise past the observed range is easy for a detector on the inputs themselves
        assert out.metrics[f"{check_id}.uniform_noise.auroc"] > 0.9
        assert out.metrics[f"{check_id}.gaussian_noise.auroc"] > 0.9
        # a column ten times its size is seen more often than by chance (an unseen category changes only
        # 40% of the rows at severity 5, too few to ask for a margin)
        assert out.metrics[f"{check_id}.shift_tab_unit_drift.auroc"] > 0.6
        assert out.details["fitted_on"] == "training data"
    # the model's own confidence cannot see noise past the range (a linear model grows surer), the inputs can
    summary = _run("ood.summary", ctx)
    assert summary.details["best_detector"] in ("input_mahalanobis", "input_knn", "isolation_forest")
    # the far source "random values in range" lies on the schema: whole numbers, valid levels, real ages
    b = bench(ctx, SMALL)
    x = np.concatenate([c for _, c in b.chunks(ctx, "uniform_in_range")])
    schema = schema_for(ctx)
    assert np.array_equal(schema.project(x), x)
    assert np.isin(x[:, 0], ctx.data.x[:, 0]).all()  # age is immutable: copied from real rows


def test_isolation_forest_is_seeded_from_the_session() -> None:
    from tests._tables import planted_context

    a = _run("ood.isolation_forest", planted_context()).metrics
    b = _run("ood.isolation_forest", planted_context()).metrics
    assert a == b
