"""Every adapter keeps the Model protocol's promises (one parametrized test over all of them)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from roadworthy.models import Model, capabilities, describe_model, load_model

KINDS = ["module", "script", "export", "export_b1", "onnx", "onnx_b1", "onnx_nhwc", "skops", "function"]


@pytest.fixture(scope="module")
def adapters(model_files, digits_module, digits_tabular, tmp_path_factory):
    import skops.io as sio
    from sklearn.linear_model import LogisticRegression

    x_tab, y_tab = digits_tabular
    skops_path = tmp_path_factory.mktemp("conformance") / "lr.skops"
    sio.dump(LogisticRegression(max_iter=200).fit(x_tab, y_tab), skops_path)
    weights = np.random.default_rng(0).normal(size=(256, 10)).astype(np.float32)
    return {
        "module": lambda: load_model(digits_module, input_shape=(1, 16, 16)),
        "skops": lambda: load_model(skops_path),
        "function": lambda: load_model(lambda x: x.reshape(len(x), -1) @ weights, input_shape=(1, 16, 16)),
        **{k: (lambda k=k: load_model(model_files[k], input_shape=(1, 16, 16))) for k in model_files},
    }


@pytest.mark.parametrize("kind", KINDS)
def test_adapter_conformance(kind, adapters, digits_x, digits_tabular):
    model = adapters[kind]()
    assert isinstance(model, Model)
    x = digits_tabular[0][:37] if model.input_spec.modality == "tabular" else digits_x[:37]
    assert model.input_spec.shape == x.shape[1:]
    scores = model.predict(x)
    assert scores.shape == (37, model.n_classes) and scores.dtype == np.float32
    assert np.isfinite(scores).all()
    np.testing.assert_array_equal(model.predict(x), scores)  # deterministic
    pieces = np.concatenate([model.predict(x[:5]), model.predict(x[5:6]), model.predict(x[6:])])
    np.testing.assert_allclose(pieces, scores, atol=1e-5)  # batch size does not matter
    assert model.output in ("logits", "probs")
    caps = capabilities(model)
    if "white_box" in caps:
        import torch

        t = torch.from_numpy(x[:4]).requires_grad_(True)
        out = model.forward_torch(t)
        assert out.shape == (4, model.n_classes)
        out[:, 0].sum().backward()
        assert t.grad is not None and t.grad.shape == t.shape
    if "features" in caps:
        feats = model.features(x)
        assert feats.ndim == 2 and len(feats) == 37 and np.isfinite(feats).all()
    info = describe_model(model)
    json.dumps(info)
    assert info["n_classes"] == model.n_classes and info["white_box"] == ("white_box" in caps)
