"""Fixtures of the attack tests (algorithms and checks): an ONNX export of the digits CNN, a gradient-masked wrapper, a
wrapper that answers class 0 for every noise-like input, helpers."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="session")
def digits_onnx_model(digits_module, tmp_path_factory):
    """The digits CNN exported to ONNX and run by onnxruntime behind a plain function (black-box only)."""
    import onnxruntime as ort
    import torch

    from roadworthy.models.function import FunctionModel

    path = tmp_path_factory.mktemp("onnx") / "digits.onnx"
    torch.onnx.export(
        digits_module,
        torch.zeros(1, 1, 16, 16),
        str(path),
        dynamo=False,
        input_names=["input"],
        dynamic_axes={"input": {0: "batch"}},
    )
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

    def fn(x: np.ndarray) -> np.ndarray:
        return session.run(None, {"input": x.astype(np.float32)})[0]

    return FunctionModel(fn, input_shape=(1, 16, 16))


@pytest.fixture()
def onnx_ctx(digits_onnx_model, digits_data):
    from roadworthy.checks.base import Context

    return Context(model=digits_onnx_model, data=digits_data, budget="quick", seed=0)


class Quantise:
    """Rounds inputs to 4 grey levels: a non-differentiable preprocessing step that zeroes every gradient."""

    def __new__(cls, module):
        import torch

        class _Q(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.inner = module

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return self.inner(torch.round(x * 3) / 3)

        return _Q()


@pytest.fixture(scope="session")
def masked_model(digits_module):
    """The digits CNN behind input quantisation: white-box attacks see zero gradients (gradient masking)."""
    from roadworthy.models.torch import TorchModel

    return TorchModel(Quantise(digits_module), input_shape=(1, 16, 16))


@pytest.fixture()
def masked_ctx(masked_model, digits_data):
    from roadworthy.checks.base import Context

    return Context(model=masked_model, data=digits_data, budget="quick", seed=0)


#: Mean absolute difference between horizontal neighbours above which the wrapper answers class 0: the
#: digits lie below 0.18, uniform noise above 0.28.
ROUGH = 0.23


def roughness(x: np.ndarray) -> np.ndarray:
    """Per-image mean absolute difference between horizontal neighbours: low on digits, high on noise."""
    return np.abs(np.diff(x, axis=-1)).reshape(len(x), -1).mean(axis=1)


@pytest.fixture(scope="session")
def noise_is_zero_model(digits_module):
    """The digits CNN behind a roughness detector: every rough (noise-like) input is class 0, black box."""
    import torch

    from roadworthy.models.function import FunctionModel

    def fn(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            logits = digits_module(torch.from_numpy(np.ascontiguousarray(x, np.float32))).numpy()
        rough = roughness(x) > ROUGH
        logits[rough, 0] = logits[rough].max(axis=1) + 10.0
        return logits

    return FunctionModel(fn, input_shape=(1, 16, 16))


@pytest.fixture(scope="session")
def low_digits(digits_data):
    """Test digits 0-4 only: class 0, the noise class, is a fifth of the inputs."""
    from roadworthy.data.base import Dataset

    keep = digits_data.y < 5
    return Dataset(
        x=digits_data.x[keep],
        y=digits_data.y[keep],
        modality="image",
        class_names=digits_data.class_names,
        path="digits-0-4",
    )


def headline(metrics: dict[str, float]) -> dict[str, float]:
    """Metrics without the interval and count companions, for readable assertion messages."""
    return {k: v for k, v in metrics.items() if not k.endswith(("_ci_low", "_ci_high", "_n"))}


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Small batches of tiny convolutions run fastest on one thread, and many times slower on two when the
    machine's cores are shared; restored afterwards so other suites keep their setting."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
