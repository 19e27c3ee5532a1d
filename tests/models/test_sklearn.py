"""scikit-learn models through skops (trusted types only), class mapping and binary margins."""

from __future__ import annotations

import numpy as np
import pytest

from roadworthy.errors import UnsafeFileError
from roadworthy.models import describe_model, load_model


def passthrough(x):
    return x


def test_logistic_regression_via_skops(tmp_path, digits_tabular):
    import skops.io as sio
    from sklearn.linear_model import LogisticRegression

    x, y = digits_tabular
    est = LogisticRegression(max_iter=300).fit(x[:400], y[:400])
    path = tmp_path / "digits.skops"
    sio.dump(est, path)
    model = load_model(path)
    assert (model.format, model.n_classes, model.output) == ("skops", 10, "probs")
    assert model.input_spec.shape == (64,) and model.input_spec.modality == "tabular"
    probs = model.predict(x[400:])
    np.testing.assert_allclose(probs, est.predict_proba(x[400:]), atol=1e-6)
    assert (probs.argmax(1) == y[400:]).mean() > 0.8  # far above 10% chance
    info = describe_model(model, path)
    assert (info["white_box"], info["features"], info["n_classes"]) == (False, False, 10)


def test_forest_with_trusted_tree_type_loads(tmp_path, digits_tabular):
    import skops.io as sio
    from sklearn.ensemble import RandomForestClassifier

    x, y = digits_tabular
    est = RandomForestClassifier(n_estimators=5, random_state=0).fit(x, y)
    path = tmp_path / "forest.skops"
    sio.dump(est, path)
    assert "sklearn.tree._tree.Tree" in sio.get_untrusted_types(file=path)
    np.testing.assert_allclose(load_model(path).predict(x[:20]), est.predict_proba(x[:20]))


def test_untrusted_skops_type_is_refused_unless_trusted(tmp_path, digits_tabular):
    import skops.io as sio
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    x, y = digits_tabular
    est = make_pipeline(FunctionTransformer(passthrough), LogisticRegression(max_iter=200)).fit(x, y)
    path = tmp_path / "custom.skops"
    sio.dump(est, path)
    with pytest.raises(UnsafeFileError) as info:
        load_model(path)
    message = str(info.value)
    assert message.startswith(f"{path}: the skops file holds types roadworthy does not trust (")
    assert "test_sklearn.passthrough" in message and "--trust-pickle" in message
    model = load_model(path, trust_pickle=True)
    np.testing.assert_allclose(model.predict(x[:10]), est.predict_proba(x[:10]), atol=1e-6)


def test_classes_that_are_not_indices_are_exposed(digits_tabular):
    from sklearn.linear_model import LogisticRegression

    x, y = digits_tabular
    keep = y < 3
    labels = np.array(["cat", "dog", "emu"])[y[keep]]
    model = load_model(LogisticRegression(max_iter=300).fit(x[keep], labels))
    assert list(model.classes_) == ["cat", "dog", "emu"]
    assert not model.classes_are_indices
    assert describe_model(model)["classes"] == ["cat", "dog", "emu"]


def test_binary_decision_function_gives_two_logit_columns(digits_tabular):
    from sklearn.svm import LinearSVC

    x, y = digits_tabular
    keep = y < 2
    est = LinearSVC().fit(x[keep], y[keep])
    model = load_model(est)
    assert model.output == "logits"
    scores = model.predict(x[keep])
    assert scores.shape == (int(keep.sum()), 2)
    np.testing.assert_array_equal(scores.argmax(1), est.predict(x[keep]))


def test_dataframe_estimator_gets_its_feature_names(digits_tabular):
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    x, y = digits_tabular
    frame = pd.DataFrame(x[:, :5], columns=[f"f{i}" for i in range(5)])
    est = LogisticRegression(max_iter=200).fit(frame, y)
    model = load_model(est)
    assert model.feature_names == [f"f{i}" for i in range(5)]
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "X does not have valid feature names" warning
        np.testing.assert_allclose(model.predict(x[:7, :5]), est.predict_proba(frame.iloc[:7]), atol=1e-6)
