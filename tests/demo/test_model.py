"""The shipped road-sign model: loads safely, is accurate on the clean test split, is white-box."""

from __future__ import annotations

from importlib import resources

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from roadworthy.demo import load_demo_data, load_demo_model  # noqa: E402
from roadworthy.demo.model import SignNet, shipped_facts  # noqa: E402
from roadworthy.demo.train import _crop, labels_sha256, train  # noqa: E402


@pytest.fixture(scope="module")
def test_split():
    # the test split comes from its own random stream, so a tiny training split leaves it unchanged
    return load_demo_data(n_train=15).test


@pytest.fixture(scope="module")
def model():
    return load_demo_model()


def test_weights_are_small_and_load_with_weights_only() -> None:
    ref = resources.files("roadworthy.demo").joinpath("signnet.pt")
    with resources.as_file(ref) as path:
        assert path.stat().st_size < 1_000_000
        state = torch.load(path, map_location="cpu", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    SignNet(width=shipped_facts()["width"]).load_state_dict(state)  # strict: every key matches


def test_shipped_model_is_accurate_on_the_clean_test_split(model, test_split) -> None:
    facts = shipped_facts()
    # the split the weights were scored on, byte for byte: the generator gives the same bytes on every
    # CPU (tests/demo/test_signs.py), so the fingerprint is exact
    assert labels_sha256(test_split.y) == facts["data"]["test_labels_sha256"]
    assert test_split.sha256 == facts["data"]["test_sha256"]
    pred = model.predict(test_split.x).argmax(axis=1)
    accuracy = float((pred == test_split.y).mean())
    assert accuracy >= 0.95
    assert accuracy == pytest.approx(facts["clean_test_accuracy"], abs=0.002)
    # every class is learnt, the poisoned target included
    for c in range(len(test_split.class_names)):
        assert (pred[test_split.y == c] == c).mean() >= 0.85, test_split.class_names[c]


def test_model_is_white_box_with_features(model, test_split) -> None:
    facts = shipped_facts()
    assert model.white_box and model.has_features
    assert model.n_classes == len(facts["class_names"]) == 15
    assert model.output == "logits"
    x = test_split.x[:8]
    f = model.features(x)
    assert f.shape == (8, facts["embedding_dim"]) == (8, 128)
    # the features are what the classifier sees: logits = W f + b
    lin = model.module.classifier
    logits = f @ lin.weight.detach().numpy().T + lin.bias.detach().numpy()
    np.testing.assert_allclose(logits, model.predict(x), rtol=1e-4, atol=1e-4)
    xt = torch.from_numpy(x).requires_grad_(True)
    model.forward_torch(xt)[:, 0].sum().backward()
    assert xt.grad is not None and float(xt.grad.abs().sum()) > 0


def test_crop_matches_slicing() -> None:
    padded = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8)
    dy, dx = torch.tensor([0, 3]), torch.tensor([2, 1])
    out = _crop(padded, dy, dx, 5, 5)
    torch.testing.assert_close(out[0], padded[0, :, 0:5, 2:7])
    torch.testing.assert_close(out[1], padded[1, :, 3:8, 1:6])


@pytest.mark.slow
def test_shipped_facts_fingerprint_the_training_split_exactly() -> None:
    from roadworthy.demo import load_demo_data

    facts = shipped_facts()["data"]
    demo = load_demo_data(seed=0)
    assert demo.train.sha256 == facts["train_sha256"]
    assert len(demo.poisoned_indices) == facts["n_poisoned"]


def test_training_is_reproducible() -> None:
    a, facts_a = train(seed=1, epochs=1, n_train=240, n_test=30, threads=1)
    b, facts_b = train(seed=1, epochs=1, n_train=240, n_test=30, threads=1)
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        torch.testing.assert_close(va, vb, rtol=0, atol=0, msg=k)
    assert facts_a["history"] == facts_b["history"]
    assert facts_a["data"]["n_poisoned"] == 1 and facts_a["data"]["n_train"] == 240
