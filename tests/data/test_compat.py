"""validate_compat: labels, shapes, channels, modality, columns and class mapping against a real model."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from roadworthy.data import Dataset, load_data, validate_compat
from roadworthy.errors import InvalidInputError, RoadworthyWarning
from roadworthy.models import load_model


@pytest.fixture(scope="module")
def grey_onnx(tmp_path_factory):
    """An untrained copy of the digits CNN exported to ONNX: it fixes its input at (1, 16, 16)."""
    import torch

    from tests._models import tiny_cnn

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("compat") / "grey.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            tiny_cnn().eval(),
            (torch.rand(2, 1, 16, 16),),
            str(path),
            dynamo=False,
            dynamic_axes={"input": {0: "n"}},
            input_names=["input"],
        )
    return load_model(path)


@pytest.fixture(scope="module")
def rgb_model():
    import torch

    from tests._models import tiny_cnn

    torch.manual_seed(0)
    return load_model(tiny_cnn(in_channels=3), input_shape=(3, 16, 16))


def _images(n, c, h=16, w=16, y=None):
    x = np.random.default_rng(0).random((n, c, h, w), dtype=np.float32)
    return Dataset(
        x=x, y=np.asarray(y if y is not None else np.arange(n) % 10), modality="image", path="data.npz"
    )


def test_labels_outside_the_models_classes(grey_onnx):
    ds = _images(3, 1, y=[42, 1, 2])
    with pytest.raises(InvalidInputError) as info:
        validate_compat(grey_onnx, ds, "data.npz")
    assert str(info.value) == "data.npz: labels must be integers in [0, 10). Found 42 at index 0."


def test_labels_are_not_checked_for_ood_data(grey_onnx):
    ds = _images(3, 1, y=[42, 1, 2])
    assert validate_compat(grey_onnx, ds, "ood.npz", check_labels=False) is ds


def test_image_size_mismatch_names_both_shapes(grey_onnx):
    with pytest.raises(InvalidInputError) as info:
        validate_compat(grey_onnx, _images(2, 1, 28, 28), "data.npz")
    assert str(info.value) == (
        "data.npz: images are 28x28 with 1 channel (1, 28, 28) but the model takes (1, 16, 16); "
        "resize the images to 16x16 (for a folder, image_size=16)"
    )


def test_channels_last_confusion_gets_a_hint(tmp_path):
    import torch

    class Wide(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.flatten(1)[:, :4]

    path = tmp_path / "wide.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Wide(), (torch.rand(1, 3, 8, 5),), str(path), dynamo=False)
    model = load_model(path)
    assert model.input_spec.shape == (3, 8, 5)
    with pytest.raises(
        InvalidInputError, match=r"the data may be channels-last where the model is channels-first"
    ):
        validate_compat(model, _images(2, 5, 3, 8, y=[0, 1]), "data.npz")


def test_grey_data_is_repeated_for_an_rgb_model_with_a_warning(rgb_model):
    ds = _images(4, 1)
    with pytest.warns(
        RoadworthyWarning,
        match=r"data.npz: grey images repeated to 3 channels to fit the model's input \(3, 16, 16\)",
    ):
        out = validate_compat(rgb_model, ds, "data.npz")
    assert out.input_shape == (3, 16, 16)
    np.testing.assert_array_equal(out.x[:, 2], ds.x[:, 0])
    rgb_model.predict(out.x)


def test_rgb_data_is_converted_to_grey_with_a_warning(grey_onnx):
    ds = _images(2, 3)
    with pytest.warns(RoadworthyWarning, match=r"RGB images converted to grey"):
        out = validate_compat(grey_onnx, ds, "data.npz")
    expected = 0.299 * ds.x[:, 0] + 0.587 * ds.x[:, 1] + 0.114 * ds.x[:, 2]
    np.testing.assert_allclose(out.x[:, 0], expected, atol=1e-6)


def test_modality_mismatch(grey_onnx, tmp_path):
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression

    table = Dataset(x=np.zeros((2, 256), np.float32), y=np.array([0, 1]), modality="tabular")
    with pytest.raises(InvalidInputError) as info:
        validate_compat(grey_onnx, table, "data.csv")
    assert str(info.value) == (
        "data.csv: the model takes images (1, 16, 16) but the data is a table of 256 columns; reshape x to (N, 1, 16, 16)"
    )
    d = load_digits()
    sk = load_model(LogisticRegression(max_iter=100).fit(d.data[:200] / 16, d.target[:200]))
    with pytest.raises(
        InvalidInputError,
        match=r"^data.npz: the model takes tables of 64 features but the data is images \(1, 8, 8\); flatten the images to \(N, 64\)$",
    ):
        validate_compat(sk, _images(2, 1, 8, 8), "data.npz")


def test_string_classes_are_mapped_by_name(tmp_path):
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 3))
    names = np.array(["cat", "dog", "emu"])[np.arange(60) % 3]
    x[:, 0] += np.arange(60) % 3 * 3
    model = load_model(LogisticRegression().fit(x, names))
    # the evaluation data lacks "dog": its own sorted classes would be cat=0, emu=1
    keep = names != "dog"
    frame = pd.DataFrame(x[keep], columns=["a", "b", "c"]).assign(animal=names[keep])
    frame.to_csv(tmp_path / "pets.csv", index=False)
    ds = load_data(tmp_path / "pets.csv", target="animal")
    assert ds.class_names == ["cat", "emu"]
    out = validate_compat(model, ds, "pets.csv")
    assert out.class_names == ["cat", "dog", "emu"]
    assert set(out.y.tolist()) == {0, 2}
    assert (model.predict(out.x).argmax(1) == out.y).mean() > 0.9
    frame.assign(animal=["cat"] * (len(frame) - 1) + ["gnu"]).to_csv(tmp_path / "gnu.csv", index=False)
    with pytest.raises(
        InvalidInputError,
        match=r"^gnu.csv: label 'gnu' at index 39 is not one of the model's classes \(cat, dog, emu\)$",
    ):
        validate_compat(model, load_data(tmp_path / "gnu.csv", target="animal"), "gnu.csv")


def test_integer_classes_that_are_not_indices(tmp_path):
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    y = np.array([3, 7, 9])[np.arange(30) % 3]
    x = rng.normal(size=(30, 2)) + y[:, None]
    model = load_model(LogisticRegression().fit(x, y))
    np.savez(tmp_path / "d.npz", x=x, y=y)
    out = validate_compat(model, load_data(tmp_path / "d.npz"), "d.npz")
    assert out.y[:3].tolist() == [0, 1, 2] and out.class_names == ["3", "7", "9"]


def test_table_columns_are_reordered_to_the_models_feature_names(tmp_path):
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(40, 3)), columns=["a", "b", "c"])
    y = (frame["a"] > 0).astype(int)
    model = load_model(LogisticRegression().fit(frame, y))
    frame[["c", "a", "b"]].assign(label=y).to_csv(tmp_path / "t.csv", index=False)
    out = validate_compat(model, load_data(tmp_path / "t.csv", target="label"), "t.csv")
    assert out.feature_names == ["a", "b", "c"]
    np.testing.assert_allclose(out.x, frame.to_numpy(np.float32))
    frame[["c", "a"]].assign(label=y).to_csv(tmp_path / "short.csv", index=False)
    with pytest.raises(
        InvalidInputError, match=r"^short.csv: the model expects feature columns the data lacks: b$"
    ):
        validate_compat(model, load_data(tmp_path / "short.csv", target="label"), "short.csv")


def test_fewer_class_names_than_model_classes_are_padded(grey_onnx):
    ds = _images(3, 1, y=[0, 1, 2])
    ds.class_names = ["zero", "one", "two"]
    with pytest.warns(RoadworthyWarning, match="the data names 3 classes but the model has 10"):
        out = validate_compat(grey_onnx, ds, "data")
    assert out.class_names[:4] == ["zero", "one", "two", "3"] and len(out.class_names) == 10


def test_digits_model_and_its_own_data_pass_unchanged(digits_model, digits_data):
    assert validate_compat(digits_model, digits_data) is digits_data
