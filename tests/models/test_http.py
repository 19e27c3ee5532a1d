"""Served models over HTTP: the Open Inference Protocol v2 against a real server on 127.0.0.1 serving the
digits CNN, and MLflow's scoring protocol against a real ``mlflow models serve`` of a registered model."""

from __future__ import annotations

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
