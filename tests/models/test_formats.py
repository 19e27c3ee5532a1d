"""The digits CNN loaded from every file format gives the module's own predictions and features."""

from __future__ import annotations

import numpy as np
import pytest

from roadworthy.errors import InvalidInputError
from roadworthy.models import capabilities, describe_model, load_model, to_probs

FORMATS = {
    "script": "torchscript",
    "trace": "torchscript",
    "export": "torch.export",
    "export_b1": "torch.export",
    "onnx": "onnx",
    "onnx_b1": "onnx",
    "onnx_nhwc": "onnx",
}


@pytest.mark.parametrize("key", list(FORMATS))
def test_file_gives_the_modules_predictions_and_features(key, model_files, digits_x, reference):
    logits, features = reference
    model = load_model(model_files[key], input_shape=(1, 16, 16))
    assert model.format == FORMATS[key]
    assert model.n_classes == 10
    assert model.input_spec.shape == (1, 16, 16)
    scores = model.predict(digits_x)  # 200 samples: the fixed-batch files run in chunks of 1
    assert scores.shape == (200, 10)
    if key == "onnx_nhwc":
        assert model.output == "probs"
        np.testing.assert_allclose(scores, to_probs(logits, "logits"), atol=1e-5)
    else:
        assert model.output == "logits"
        np.testing.assert_allclose(scores, logits, atol=1e-4)
    assert "features" in capabilities(model)
    np.testing.assert_allclose(model.features(digits_x), features, atol=1e-4)


@pytest.mark.parametrize("key", ["script", "export", "export_b1"])
def test_torch_files_are_white_box_with_real_gradients(key, model_files, digits_x, digits_module):
    import torch

    model = load_model(model_files[key], input_shape=(1, 16, 16))
    assert "white_box" in capabilities(model)
    x = torch.from_numpy(digits_x[:3]).requires_grad_(True)
    model.forward_torch(x).sum().backward()
    x_ref = torch.from_numpy(digits_x[:3]).requires_grad_(True)
    digits_module(x_ref).sum().backward()
    assert float(x.grad.abs().sum()) > 0
    np.testing.assert_allclose(x.grad.numpy(), x_ref.grad.numpy(), atol=1e-5)


def test_onnx_is_black_box_and_reads_layout_and_batch_from_the_graph(model_files):
    plain = load_model(model_files["onnx"])  # no input_shape needed: the graph says (1, 16, 16)
    assert "white_box" not in capabilities(plain)
    assert (plain.input_name, plain.layout, plain._fixed_batch) == ("pixels", "NCHW", None)
    nhwc = load_model(model_files["onnx_nhwc"])
    assert (nhwc.layout, nhwc.input_spec.shape) == ("NHWC", (1, 16, 16))
    fixed = load_model(model_files["onnx_b1"])
    assert fixed._fixed_batch == 1


def test_export_reads_shape_from_the_graph_and_frees_a_fixed_batch_when_safe(model_files):
    model = load_model(model_files["export_b1"])
    assert model.input_spec.shape == (1, 16, 16)
    assert model._fixed_batch is None  # the batch-1 guard was dropped: the graph gives the same for any batch


def test_export_that_bakes_its_batch_size_runs_sample_by_sample(tmp_path):
    import warnings

    import torch

    class Baked(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.head = torch.nn.Linear(16, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(x.reshape(1, -1))  # only right for a batch of one

    torch.manual_seed(0)
    module = Baked().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.export.save(torch.export.export(module, (torch.rand(1, 1, 4, 4),)), str(tmp_path / "baked.pt2"))
    model = load_model(tmp_path / "baked.pt2")
    assert model._fixed_batch == 1
    x = np.random.default_rng(0).random((5, 1, 4, 4), dtype=np.float32)
    with torch.no_grad():
        expected = module.head(torch.from_numpy(x).reshape(5, -1)).numpy()
    np.testing.assert_allclose(model.predict(x), expected, atol=1e-5)
    np.testing.assert_allclose(model.features(x), x.reshape(5, -1), atol=1e-6)


@pytest.mark.parametrize(
    ("key", "layer"),
    [("script", "7"), ("export", "7"), ("onnx", "/6/Flatten_output_0")],
)
def test_named_feature_layer(key, layer, model_files, digits_module, digits_x):
    from roadworthy.models.torch import TorchModel

    expected = TorchModel(digits_module, input_shape=(1, 16, 16), feature_layer="7").features(digits_x[:20])
    assert expected.shape == (20, 256)  # the input of layer 7 is the flattened conv output
    model = load_model(model_files[key], input_shape=(1, 16, 16), feature_layer=layer)
    np.testing.assert_allclose(model.features(digits_x[:20]), expected, atol=1e-4)


@pytest.mark.parametrize("key", ["script", "export", "onnx"])
def test_unknown_feature_layer_is_refused_with_the_layers_it_has(key, model_files):
    with pytest.raises(InvalidInputError, match=r"feature (layer|tensor) 'nope' is not"):
        load_model(model_files[key], input_shape=(1, 16, 16), feature_layer="nope")


@pytest.mark.parametrize("key", ["script", "export", "onnx"])
def test_normalisation_is_applied_inside_the_adapter(key, model_files, digits_module, digits_x):
    import torch

    model = load_model(model_files[key], input_shape=(1, 16, 16), mean=[0.5], std=[0.25])
    with torch.no_grad():
        expected = digits_module((torch.from_numpy(digits_x[:16]) - 0.5) / 0.25).numpy()
    np.testing.assert_allclose(model.predict(digits_x[:16]), expected, atol=1e-4)


def test_torchscript_features_beyond_sequential_come_from_the_graph(tmp_path):
    import warnings

    import torch

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = torch.nn.Linear(4, 8)
            self.head = torch.nn.Linear(8, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(torch.relu(self.body(x)) * 2)

    class ConvOnly(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 3, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.conv(x).mean(dim=(2, 3))

    torch.manual_seed(0)
    net = Net().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.script(net).save(str(tmp_path / "net.pt"))
        torch.jit.script(ConvOnly()).save(str(tmp_path / "conv.pt"))
    x = np.random.default_rng(0).random((6, 4), dtype=np.float32)
    model = load_model(tmp_path / "net.pt", input_shape=(4,))
    assert model.input_spec.modality == "tabular"
    assert {"white_box", "features"} <= capabilities(model)
    with torch.no_grad():
        hidden = (torch.relu(net.body(torch.from_numpy(x))) * 2).numpy()
    np.testing.assert_allclose(model.features(x), hidden, atol=1e-6)
    named = load_model(tmp_path / "net.pt", input_shape=(4,), feature_layer="body")
    np.testing.assert_allclose(named.features(x), x, atol=1e-6)  # the input of the first layer
    with pytest.raises(
        InvalidInputError, match=r"feature layer 'tail' has no parameters used in the TorchScript graph"
    ):
        load_model(tmp_path / "net.pt", input_shape=(4,), feature_layer="tail")
    conv = load_model(tmp_path / "conv.pt", input_shape=(1, 8, 8))
    assert "white_box" in capabilities(conv) and "features" not in capabilities(conv)


def test_probe_failure_names_the_shape(model_files):
    with pytest.raises(InvalidInputError) as info:
        load_model(model_files["script"], input_shape=(1, 20, 20))
    message = str(info.value)
    assert message.startswith(
        f"{model_files['script']}: the model failed on a probe batch of shape (2, 1, 20, 20)"
    )
    assert "\n" not in message


def test_torchscript_needs_an_input_shape(model_files):
    with pytest.raises(InvalidInputError, match=r"does not record its input shape; pass input_shape"):
        load_model(model_files["script"])


def test_describe_model(model_files):
    from roadworthy.models import model_sha256

    model = load_model(model_files["onnx"])
    info = describe_model(model, model_files["onnx"])
    assert info == {
        "path": str(model_files["onnx"]),
        "format": "onnx",
        "sha256": model_sha256(model_files["onnx"]),
        "n_classes": 10,
        "white_box": False,
        "features": True,
        "output": "logits",
        "input_shape": [1, 16, 16],
    }
    assert len(info["sha256"]) == 64
