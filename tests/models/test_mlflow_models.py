"""Models from MLflow, against a real tracking server on SQLite: registry versions and aliases, run
artifacts, logged models, the flavors read safely (pt2, skops) and those that need --trust-pickle."""

from __future__ import annotations

import time

import numpy as np
import pytest

from roadworthy.errors import InvalidInputError, UnsafeFileError
from roadworthy.models import load_model
from roadworthy.models.mlflow import is_mlflow_uri
from tests._mlflow import free_port, needs_mlflow, tracking_uri

pytestmark = pytest.mark.slow


def test_which_sources_are_mlflow_uris():
    assert is_mlflow_uri("models:/signnet/1") and is_mlflow_uri("models:/signnet@champion")
    assert is_mlflow_uri("runs:/0123/model") and is_mlflow_uri("m-" + "a" * 32)
    assert not is_mlflow_uri("model.pt") and not is_mlflow_uri("m-short.pt")


@pytest.fixture(scope="module")
def torch_scores(digits_module, digits_split):
    import torch

    x = digits_split[2][:20]
    with torch.no_grad():
        return x, digits_module(torch.from_numpy(x)).numpy()


def test_registry_version_loads_as_torch_export_with_its_signature(registered_digits, torch_scores):
    x, expected = torch_scores
    model = load_model(registered_digits.uri)  # no input shape given: the MLmodel signature has it
    assert model.format == "torch.export" and model.input_spec.shape == (1, 16, 16)
    np.testing.assert_allclose(model.predict(x), expected, rtol=1e-4, atol=1e-4)
    source = model.mlflow_source
    assert (source.name, source.version, source.run_id) == ("digits", "1", registered_digits.run_id)
    assert len(model.sha256) == 64 and model.white_box  # a real torch.export program: gradients too


def test_alias_and_logged_model_and_run_uris_reach_the_same_model(registered_digits, torch_scores):
    from mlflow import MlflowClient

    MlflowClient().set_registered_model_alias("digits", "champion", registered_digits.version)
    x, expected = torch_scores
    by_alias = load_model("models:/digits@champion")
    assert by_alias.mlflow_source.version == "1" and by_alias.mlflow_source.alias == "champion"
    assert load_model("models:/digits/champion").mlflow_source.version == "1"
    logged = load_model(f"models:/{registered_digits.model_id}")
    assert logged.mlflow_source.model_id == registered_digits.model_id
    for model in (by_alias, logged):
        np.testing.assert_allclose(model.predict(x), expected, rtol=1e-4, atol=1e-4)


def test_a_plain_torchscript_file_in_a_run(mlflow_server, digits_module, torch_scores, tmp_path):
    import mlflow
    import torch

    x, expected = torch_scores
    path = tmp_path / "model.pt"
    torch.jit.save(torch.jit.trace(digits_module, torch.from_numpy(x[:2])), str(path))
    with mlflow.start_run() as run:
        mlflow.log_artifact(str(path), artifact_path="files")
    for uri in (f"runs:/{run.info.run_id}/files/model.pt", f"runs:/{run.info.run_id}/files"):
        model = load_model(uri, input_shape=(1, 16, 16))
        assert model.format == "torchscript"
        np.testing.assert_allclose(model.predict(x), expected, rtol=1e-5, atol=1e-5)


def test_a_registered_onnx_flavor_loads_as_onnx(mlflow_server, digits_module, torch_scores, tmp_path):
    """mlflow.onnx.log_model -> registry -> models:/ URI: read by the ONNX adapter, same scores."""
    import warnings

    import mlflow
    import mlflow.onnx
    import onnx
    import torch

    x, expected = torch_scores
    path = tmp_path / "digits.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            digits_module,
            (torch.from_numpy(x[:2]),),
            str(path),
            dynamo=False,
            input_names=["pixels"],
            output_names=["logits"],
            dynamic_axes={"pixels": {0: "batch"}, "logits": {0: "batch"}},
        )
    with mlflow.start_run():
        mlflow.onnx.log_model(
            onnx.load(str(path)), name="digits-onnx", registered_model_name="digits_onnx", pip_requirements=[]
        )
    model = load_model("models:/digits_onnx/1", input_shape=(1, 16, 16))
    assert model.format == "onnx"
    np.testing.assert_allclose(model.predict(x), expected, rtol=1e-4, atol=1e-4)
    assert model.mlflow_source.name == "digits_onnx"


@pytest.fixture(scope="module")
def sklearn_models(mlflow_server):
    """A logistic regression logged twice: with skops (MLflow's default) and as a pickle."""
    import mlflow
    import mlflow.sklearn
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    x, y = load_iris(return_X_y=True)
    clf = LogisticRegression(max_iter=500).fit(x, y)
    uris = {}
    with mlflow.start_run():
        for fmt in ("skops", "pickle"):
            info = mlflow.sklearn.log_model(
                clf, name=f"iris-{fmt}", serialization_format=fmt, pip_requirements=[]
            )
            uris[fmt] = info.model_uri
    return uris, clf, x.astype(np.float32)


def test_skops_flavor_loads_safely_and_a_pickle_needs_trust(sklearn_models):
    uris, clf, x = sklearn_models
    safe = load_model(uris["skops"], input_shape=(4,))
    assert safe.format == "skops"
    np.testing.assert_allclose(safe.predict(x[:10]).argmax(1), clf.predict(x[:10]))
    with pytest.raises(
        UnsafeFileError, match=r"stored this sklearn model as a pickle.*--trust-pickle.*skops"
    ):
        load_model(uris["pickle"], input_shape=(4,))
    trusted = load_model(uris["pickle"], input_shape=(4,), trust_pickle=True)
    assert trusted.format == "mlflow-sklearn"
    np.testing.assert_allclose(trusted.predict(x[:10]).argmax(1), clf.predict(x[:10]))


def test_missing_version_and_run_are_one_line_errors(registered_digits):
    with pytest.raises(InvalidInputError, match=r"^models:/digits/99: .*") as exc:
        load_model("models:/digits/99")
    assert "\n" not in str(exc.value)
    with pytest.raises(InvalidInputError, match=r"^runs:/0{32}/model: "):
        load_model("runs:/" + "0" * 32 + "/model")


def test_dead_tracking_server_fails_in_seconds():
    needs_mlflow()
    with tracking_uri(f"http://127.0.0.1:{free_port()}"):
        start = time.monotonic()
        with pytest.raises(
            InvalidInputError, match=r"MLflow tracking server http://127\.0\.0\.1:\d+: not reachable"
        ):
            load_model("models:/digits/1")
        assert time.monotonic() - start < 10


def test_file_store_is_refused_with_the_way_out(tmp_path, monkeypatch):
    needs_mlflow()
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    refused = r"refuses the file store.*MLFLOW_ALLOW_FILE_STORE=true.*sqlite"
    with tracking_uri((tmp_path / "mlruns").as_uri()), pytest.raises(InvalidInputError, match=refused):
        load_model("models:/digits/1")
