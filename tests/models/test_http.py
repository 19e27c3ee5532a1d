"""Served models over HTTP: the Open Inference Protocol v2 against a real server on 127.0.0.1 serving the
digits CNN, and MLflow's scoring protocol against a real ``mlflow models serve`` of a registered model."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

import roadworthy
from roadworthy.errors import InvalidInputError
from roadworthy.models import load_model
from roadworthy.models.http import EndpointError, HttpModel, is_endpoint_url
from tests._mlflow import free_port
from tests._v2server import V2Server


@pytest.fixture(scope="module")
def scores_fn(digits_module):
    import torch

    def fn(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return digits_module(torch.from_numpy(x)).numpy()

    return fn


@pytest.fixture()
def v2(scores_fn):
    with V2Server(scores_fn, (1, 16, 16)) as server:
        yield server


def test_v2_endpoint_predicts_what_the_model_does_in_batches(v2, scores_fn, digits_split):
    x = digits_split[2][:70]
    model = HttpModel(v2.url, max_batch=32)
    assert model.input_spec.shape == (1, 16, 16)  # from the server's metadata
    assert model.n_classes == 10 and model.output == "logits" and model.white_box is False
    scores = model.predict(x)
    np.testing.assert_allclose(scores, scores_fn(x), rtol=1e-5, atol=1e-5)
    assert v2.batch_sizes[-3:] == [32, 32, 6]  # split into requests of at most max_batch


def test_v2_binary_tensor_extension_gives_the_same_scores(v2, scores_fn, digits_split):
    x = digits_split[2][:40]
    model = HttpModel(v2.url, binary=True, max_batch=16)
    as_json = HttpModel(v2.url, binary=False, max_batch=16).predict(x)
    np.testing.assert_allclose(model.predict(x), as_json, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(model.predict(x), scores_fn(x), rtol=1e-5, atol=1e-5)
    named = HttpModel(v2.url, binary=True, output_name="logits")
    np.testing.assert_allclose(named.predict(x), scores_fn(x), rtol=1e-5, atol=1e-5)


def test_v2_binary_by_default_and_json_for_a_server_without_it(scores_fn, digits_split):
    x = digits_split[2][:8]
    for speaks_binary in (True, False):
        with V2Server(scores_fn, (1, 16, 16), binary=speaks_binary) as server:
            model = HttpModel(server.url)
            assert model.binary is speaks_binary
            np.testing.assert_allclose(model.predict(x), scores_fn(x), rtol=1e-5, atol=1e-5)
            if not speaks_binary:
                with pytest.raises(EndpointError, match=r"HTTP 400: .*binary tensor data is not supported"):
                    HttpModel(server.url, binary=True)  # asked for explicitly: no silent fallback


def test_v2_concurrent_requests_keep_the_order(v2, scores_fn, digits_split):
    x = digits_split[2][:100]
    model = HttpModel(v2.url, max_batch=10, concurrency=4)
    np.testing.assert_allclose(model.predict(x), scores_fn(x), rtol=1e-5, atol=1e-5)


def test_v2_without_declared_shape_uses_the_given_one(scores_fn):
    with V2Server(scores_fn, (1, 16, 16), declare_shape=False) as server:
        with pytest.raises(InvalidInputError, match="input shape"):
            HttpModel(server.url)
        assert HttpModel(server.url, input_shape=(1, 16, 16)).n_classes == 10


def test_retries_with_backoff_then_succeeds(v2, digits_split):
    model = HttpModel(v2.url, retries=3, backoff=0.05)
    v2.fail_with = [503, 502]
    before = v2.requests
    start = time.monotonic()
    assert model.predict(digits_split[2][:4]).shape == (4, 10)
    assert v2.requests - before == 3
    assert time.monotonic() - start >= 0.05 + 0.1 - 0.01  # waited 0.05 s, then 0.1 s


def test_retry_after_is_honoured(v2, digits_split):
    model = HttpModel(v2.url, retries=1, backoff=0.0)
    v2.fail_with, v2.retry_after = [429], "0.3"
    start = time.monotonic()
    model.predict(digits_split[2][:2])
    assert time.monotonic() - start >= 0.29


def test_gives_up_after_the_retries_with_one_line(v2, digits_split):
    model = HttpModel(v2.url, retries=2, backoff=0.01)
    v2.fail_with = [503, 503, 503]
    with pytest.raises(EndpointError, match=r"failed after 3 tries: HTTP 503") as exc:
        model.predict(digits_split[2][:2])
    assert "\n" not in str(exc.value)


def test_client_errors_are_not_retried(v2, digits_split):
    model = HttpModel(v2.url, retries=3, backoff=0.01)
    v2.fail_with = [400]
    before = v2.requests
    with pytest.raises(EndpointError, match=r"HTTP 400: .*injected 400"):
        model.predict(digits_split[2][:2])
    assert v2.requests - before == 1


def test_timeout_is_an_error_not_a_hang(v2, digits_split):
    model = HttpModel(v2.url, timeout=0.2, retries=1, backoff=0.0)
    v2.delay_s = 1.0
    start = time.monotonic()
    with pytest.raises(EndpointError, match="timeout"):
        model.predict(digits_split[2][:2])
    assert time.monotonic() - start < 2.0


def test_rate_limit_spaces_the_requests(v2, digits_split):
    model = HttpModel(v2.url, max_rps=20, max_batch=2)
    start = time.monotonic()
    model.predict(digits_split[2][:12])  # 6 requests at most 20 per second: >= 5 intervals of 50 ms
    assert time.monotonic() - start >= 0.24


def test_output_by_name_and_a_missing_one(v2):
    assert HttpModel(v2.url, output_name="logits").n_classes == 10
    with pytest.raises(EndpointError, match="no output named 'probs'"):
        HttpModel(v2.url, output_name="probs")


def test_dead_endpoint_is_one_clear_line_at_once():
    url = f"http://127.0.0.1:{free_port()}/v2/models/m/infer"
    start = time.monotonic()
    with pytest.raises(EndpointError, match=r"nothing answers at 127\.0\.0\.1:\d+ \(connection refused\)"):
        HttpModel(url, input_shape=(4,))
    assert time.monotonic() - start < 2.0


def test_urls_the_adapter_does_not_speak(v2):
    assert is_endpoint_url("https://x/invocations") and not is_endpoint_url("models:/a/1")
    with pytest.raises(InvalidInputError, match=r"unknown endpoint.*invocations.*v2/models"):
        HttpModel(v2.base + "/predict", input_shape=(4,))
    with pytest.raises(InvalidInputError, match="timeout"):
        HttpModel(v2.url, timeout=0)


def test_load_model_and_check_accept_the_url(v2, digits_split):
    model = load_model(v2.url)
    assert model.format == "http-v2"
    _, _, x, y = digits_split
    report = roadworthy.check(v2.url, (x[:60], y[:60]), suites=["clean"], budget="quick")
    assert report.model.path == v2.url and report.model.white_box is False
    assert report.metrics["clean.accuracy"] > 0.8


def test_transport_settings_from_the_environment(v2, monkeypatch):
    monkeypatch.setenv("ROADWORTHY_HTTP_TIMEOUT", "7.5")
    monkeypatch.setenv("ROADWORTHY_HTTP_MAX_BATCH", "16")
    monkeypatch.setenv("ROADWORTHY_HTTP_BINARY", "0")
    model = load_model(v2.url)
    assert model.timeout == 7.5 and model.max_batch == 16 and model.binary is False
    monkeypatch.setenv("ROADWORTHY_HTTP_RETRIES", "many")
    with pytest.raises(InvalidInputError, match="ROADWORTHY_HTTP_RETRIES must be an integer"):
        load_model(v2.url)


# -- MLflow's scoring protocol, against `mlflow models serve` ------------------------------------------


@pytest.mark.slow
def test_mlflow_served_model_predicts_like_the_module(served_digits, scores_fn, digits_split):
    x = digits_split[2][:50]
    model = HttpModel(served_digits.url + "/invocations", input_shape=(1, 16, 16), max_batch=20)
    assert model.format == "http-mlflow" and model.n_classes == 10
    np.testing.assert_allclose(model.predict(x), scores_fn(x), rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_cli_checks_a_served_model(served_digits, tmp_path, digits_split, capsys):
    from tests._mlflow import run_cli, write_npz

    data = write_npz(tmp_path / "test.npz", digits_split, 120)
    code, out, err = run_cli(
        ["check", "--model", served_digits.url + "/invocations", "--data", data, "--suite", "clean",
         "--budget", "quick", "--out", tmp_path / "r"],
        capsys,
    )  # fmt: skip
    assert code in (0, 1), err
    assert "roadworthy:" in out
    report = roadworthy.results.load_report(str(tmp_path / "r" / "report.json"))
    assert report.model.format == "http-mlflow" and report.metrics["clean.accuracy"] > 0.8


# -- transport settings: CLI options, the Python API, the environment ---------------------------------


def test_http_settings_from_the_python_api_win_over_the_environment(v2, monkeypatch, digits_split):
    monkeypatch.setenv("ROADWORTHY_HTTP_TIMEOUT", "7.5")
    monkeypatch.setenv("ROADWORTHY_HTTP_RETRIES", "5")
    monkeypatch.setenv("ROADWORTHY_HTTP_AUTHORIZATION", "Bearer from-env")
    model = load_model(
        v2.url, http={"timeout": 3, "max_batch": 8, "binary": False, "headers": {"X-Team": "cv"}}
    )
    assert (model.timeout, model.retries, model.max_batch, model.binary) == (3.0, 5, 8, False)
    model.predict(digits_split[2][:20])
    assert v2.batch_sizes[-3:] == [8, 8, 4]
    assert v2.last_headers["X-Team"] == "cv" and v2.last_headers["Authorization"] == "Bearer from-env"
    _, _, x, y = digits_split
    settings = roadworthy.HttpSettings(max_batch=16, concurrency=2)
    report = roadworthy.check(v2.url, (x[:40], y[:40]), suites=["clean"], budget="quick", http=settings)
    assert max(v2.batch_sizes[-3:]) == 16 and "http" not in report.options  # transport: not in the run_key


def test_http_settings_are_validated_with_the_option_name():
    from roadworthy.config import HttpSettings

    for kw, option in (
        ({"timeout": 0}, "--http-timeout"),
        ({"retries": -1}, "--http-retries"),
        ({"retries": 1.5}, "--http-retries"),
        ({"max_rps": float("inf")}, "--http-max-rps"),
        ({"max_batch": 0}, "--http-max-batch"),
        ({"concurrency": True}, "--http-concurrency"),
    ):
        with pytest.raises(InvalidInputError, match=f"^{option} must be"):
            HttpSettings(**kw)
    with pytest.raises(InvalidInputError, match=r"unknown key.*tmeout"):
        roadworthy.LoadOptions(http={"tmeout": 3})
    secret = HttpSettings(headers={"X-Token": "s3cret"})
    assert "s3cret" not in repr(secret) and "s3cret" not in repr(roadworthy.LoadOptions(http=secret))
    with pytest.raises(InvalidInputError, match=r"Authorization.*ROADWORTHY_HTTP_AUTHORIZATION"):
        HttpSettings.from_cli(header=["Authorization: Bearer abc"])
    with pytest.raises(InvalidInputError, match="'Name: value'"):
        HttpSettings.from_cli(header=["no-colon"])
    assert HttpSettings.from_cli() is None


def test_cli_http_options_reach_the_adapter(v2, tmp_path, digits_split, capsys, monkeypatch):
    from tests._mlflow import run_cli, write_npz

    monkeypatch.setenv("ROADWORTHY_HTTP_MAX_BATCH", "64")  # the option wins over the environment
    data = write_npz(tmp_path / "test.npz", digits_split, 50)
    code, _, err = run_cli(
        ["check", "--model", v2.url, "--data", data, "--suite", "clean", "--budget", "quick",
         "--http-timeout", "5", "--http-retries", "1", "--http-max-rps", "1000", "--http-max-batch", "20",
         "--http-concurrency", "2", "--http-json", "--http-header", "X-Team: vision", "--out", tmp_path / "r"],
        capsys,
    )  # fmt: skip
    assert code in (0, 1), err
    assert v2.batch_sizes and max(v2.batch_sizes) == 20
    assert v2.last_headers["X-Team"] == "vision" and "Inference-Header-Content-Length" not in v2.last_headers
    run_key_options = json.loads((tmp_path / "r" / "report.json").read_text())["options"]
    assert not any("http" in k for k in run_key_options)


def test_cli_http_options_are_refused_for_a_model_file_and_secrets(tmp_path, capsys, digits_split):
    from tests._mlflow import run_cli, write_npz

    data = write_npz(tmp_path / "test.npz", digits_split, 20)
    code, _, err = run_cli(["check", "--model", "m.onnx", "--data", data, "--http-timeout", "5"], capsys)
    assert code == 2 and err.count("\n") == 1 and "apply to a served model" in err
    code, _, err = run_cli(
        ["check", "--model", "http://127.0.0.1:9/invocations", "--data", data, "--http-header", "Authorization: x"],
        capsys,
    )  # fmt: skip
    assert code == 2 and err.count("\n") == 1 and "ROADWORTHY_HTTP_AUTHORIZATION" in err
    code, _, err = run_cli(["check", "--model", "m.onnx", "--data", data, "--http-max-batch", "0"], capsys)
    assert code == 2 and "--http-max-batch must be an integer >= 1" in err


@pytest.mark.parametrize("path", ["/invocations", "/v2/models/m/infer"])
def test_cli_dead_endpoint_is_exit_2_with_one_line_at_once(tmp_path, capsys, digits_split, path):
    from tests._mlflow import run_cli, write_npz

    data = write_npz(tmp_path / "test.npz", digits_split, 20)
    url = f"http://127.0.0.1:{free_port()}{path}"
    start = time.monotonic()
    code, _, err = run_cli(["check", "--model", url, "--data", data, "--out", tmp_path / "r"], capsys)
    assert code == 2 and err.count("\n") == 1 and "connection refused" in err
    assert time.monotonic() - start < 10  # no retries with back-off for what is not there


def test_a_host_that_drops_connections_fails_after_the_connect_timeout():
    """A listener whose accept queue is full: the SYN is dropped, as by a firewall, and the connection
    is never made. The probe fails after ``connect_timeout``, not after ``timeout`` times the retries."""
    import socket

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    fillers = []
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        for _ in range(4):  # fill the accept queue (never accepted)
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
            fillers.append(s)
        time.sleep(0.1)
        start = time.monotonic()
        with pytest.raises(
            EndpointError, match=r"nothing answers at 127\.0\.0\.1:\d+ \(no connection within 0\.5 s"
        ):
            HttpModel(
                f"http://127.0.0.1:{port}/invocations", input_shape=(4,), timeout=30, connect_timeout=0.5
            )
        assert time.monotonic() - start < 5
    finally:
        for s in fillers:
            s.close()
        listener.close()


@pytest.mark.slow
def test_mlflow_served_sklearn_pyfunc_returns_probabilities(mlflow_server, tmp_path):
    """A second flavor behind `mlflow models serve`: scikit-learn (skops) served through pyfunc with
    ``predict_proba``, a tabular model whose answer is probabilities, not logits."""
    import mlflow
    import mlflow.sklearn
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    from tests._mlflow import running, start_model_server

    x, y = load_iris(return_X_y=True)
    x = x.astype(np.float32)
    clf = LogisticRegression(max_iter=500).fit(x, y)
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(
            clf, name="iris", input_example=x[:2], pyfunc_predict_fn="predict_proba", pip_requirements=[]
        )
    with running(start_model_server(info.model_uri, mlflow_server.url, tmp_path)) as server:
        model = load_model(server.url + "/invocations", input_shape=(4,), http={"max_batch": 64})
        assert model.format == "http-mlflow" and model.output == "probs" and model.n_classes == 3
        np.testing.assert_allclose(model.predict(x), clf.predict_proba(x), atol=1e-5)
