"""The digits CNN saved in every format roadworthy reads (built once per session, no downloads)."""

from __future__ import annotations

import warnings

import pytest


def nhwc_softmax(module):
    """``module`` taking NHWC input and returning probabilities, as many exported models do."""
    import torch

    class Wrapped(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = module

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.softmax(self.net(x.permute(0, 3, 1, 2)), dim=1)

    return Wrapped().eval()


@pytest.fixture(scope="session")
def model_files(digits_module, tmp_path_factory):
    """Paths of the trained digits CNN as TorchScript, torch.export, ONNX and torch.save files."""
    import torch

    root = tmp_path_factory.mktemp("models")
    x = torch.rand(4, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    paths = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        paths["script"] = root / "script.pt"
        torch.jit.script(digits_module).save(str(paths["script"]))
        paths["trace"] = root / "trace.pt"
        torch.jit.trace(digits_module, x).save(str(paths["trace"]))
        batch = torch.export.Dim("batch")
        paths["export"] = root / "model.pt2"
        program = torch.export.export(digits_module, (x,), dynamic_shapes=({0: batch},))
        torch.export.save(program, str(paths["export"]))
        paths["export_b1"] = root / "model_b1.pt2"
        torch.export.save(torch.export.export(digits_module, (x[:1],)), str(paths["export_b1"]))
        paths["onnx"] = root / "model.onnx"
        torch.onnx.export(
            digits_module,
            (x,),
            str(paths["onnx"]),
            dynamo=False,
            input_names=["pixels"],
            output_names=["logits"],
            dynamic_axes={"pixels": {0: "batch"}, "logits": {0: "batch"}},
        )
        paths["onnx_b1"] = root / "model_b1.onnx"
        torch.onnx.export(digits_module, (x[:1],), str(paths["onnx_b1"]), dynamo=False)
        paths["onnx_nhwc"] = root / "nhwc.onnx"
        torch.onnx.export(
            nhwc_softmax(digits_module),
            (x.permute(0, 2, 3, 1),),
            str(paths["onnx_nhwc"]),
            dynamo=False,
            input_names=["image"],
            dynamic_axes={"image": {0: "batch"}},
        )
        paths["whole"] = root / "whole.pt"
        torch.save(digits_module, str(paths["whole"]))
        paths["state"] = root / "state.pt"
        torch.save(digits_module.state_dict(), str(paths["state"]))
    return paths


@pytest.fixture(scope="session")
def digits_x(digits_split):
    """200 digits test images, float32 NCHW (1, 16, 16)."""
    return digits_split[2][:200]


@pytest.fixture(scope="session")
def reference(digits_module, digits_x):
    """Logits and penultimate features of the nn.Module itself on ``digits_x``."""
    from roadworthy.models.torch import TorchModel

    model = TorchModel(digits_module, input_shape=(1, 16, 16))
    return model.predict(digits_x), model.features(digits_x)


@pytest.fixture(scope="session")
def digits_tabular():
    """scikit-learn digits as a table: 600 rows of 64 features in [0, 1], labels 0-9."""
    import numpy as np
    from sklearn.datasets import load_digits

    d = load_digits()
    return (d.data[:600] / 16.0).astype(np.float32), d.target[:600].astype(np.int64)
