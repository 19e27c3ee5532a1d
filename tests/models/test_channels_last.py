"""Channels-last layout for 2-D convolutional networks: same outputs, features and input gradients."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from roadworthy.models.torch import TorchModel
from tests._models import tiny_cnn


@pytest.fixture(scope="module")
def pair():
    """The same CNN (3x32 px) wrapped with the layout chosen automatically and with it kept as is."""
    module = tiny_cnn(3, 10, 32, seed=3).eval()
    auto = TorchModel(copy.deepcopy(module), input_shape=(3, 32, 32), mean=[0.5] * 3, std=[0.25] * 3)
    plain = TorchModel(module, input_shape=(3, 32, 32), mean=[0.5] * 3, std=[0.25] * 3, channels_last=False)
    return auto, plain


def test_conv_models_switch_to_channels_last_and_compute_the_same(pair) -> None:
    import torch

    auto, plain = pair
    assert auto.channels_last and not plain.channels_last
    conv = next(m for m in auto.module.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    x = np.random.default_rng(0).random((37, 3, 32, 32), dtype=np.float32)
    a, b = auto.predict(x), plain.predict(x)
    assert np.allclose(a, b, rtol=1e-4, atol=1e-4 * float(np.abs(b).max()))
    fa, fb = auto.features(x), plain.features(x)
    assert fa.shape == fb.shape and np.allclose(fa, fb, rtol=1e-4, atol=1e-4 * float(np.abs(fb).max()))


def test_input_gradients_are_unchanged_for_white_box_attacks(pair) -> None:
    import torch

    auto, plain = pair
    x = torch.from_numpy(np.random.default_rng(1).random((6, 3, 32, 32), dtype=np.float32))
    grads = []
    for model in (auto, plain):
        xr = x.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(model.forward_torch(xr)[:, 3].sum(), xr)
        grads.append(g.contiguous().numpy())
    assert grads[0].shape == (6, 3, 32, 32)
    scale = float(np.abs(grads[1]).max())
    assert scale > 0 and np.allclose(grads[0], grads[1], rtol=1e-3, atol=1e-4 * scale)


def test_torchscript_and_non_conv_models() -> None:
    import torch

    script = torch.jit.script(tiny_cnn(1, 10, 16).eval())
    model = TorchModel(script, input_shape=(1, 16, 16), format="torchscript")
    assert model.channels_last
    x = np.random.default_rng(2).random((5, 1, 16, 16), dtype=np.float32)
    reference = TorchModel(
        torch.jit.script(tiny_cnn(1, 10, 16).eval()), input_shape=(1, 16, 16), channels_last=False
    )
    assert np.allclose(model.predict(x), reference.predict(x), rtol=1e-4, atol=1e-5)
    mlp = TorchModel(torch.nn.Sequential(torch.nn.Linear(20, 3)).eval(), input_shape=(20,))
    assert not mlp.channels_last  # nothing to gain without a 2-D convolution
