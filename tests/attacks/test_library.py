"""The attack library is usable from Python alone: roadworthy models or functions, NumPy or torch."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
import torch

import roadworthy.attacks as attacks
from roadworthy.checks.attack import _common as common
from roadworthy.errors import InvalidInputError

SRC = Path(attacks.__file__).parent


def test_pgd_takes_a_roadworthy_model_and_numpy_and_returns_numpy(digits_model, digits_data):
    x, y = digits_data.x[:24], digits_data.y[:24]
    adv = attacks.pgd(digits_model, x, y, eps=0.3, steps=10, generator=torch.Generator().manual_seed(0))
    assert isinstance(adv, np.ndarray) and adv.shape == x.shape and adv.dtype == np.float32
    common.verify_budget(x, adv, 0.3, "linf", "pgd")
    assert (digits_model.predict(adv).argmax(1) == y).mean() < 0.2
    # The same attack through the model's torch forward and tensors gives the same inputs.
    same = attacks.pgd(
        digits_model.forward_torch,
        torch.from_numpy(x),
        torch.from_numpy(y),
        eps=0.3,
        steps=10,
        generator=torch.Generator().manual_seed(0),
    )
    assert isinstance(same, torch.Tensor) and np.array_equal(same.numpy(), adv)
    for fn in (attacks.fgsm, attacks.apgd):
        out = fn(digits_model, x, y, 8 / 255)
        assert isinstance(out, np.ndarray)
        common.verify_budget(x, out, 8 / 255, "linf", fn.__name__)


def test_black_box_attacks_take_a_roadworthy_model(digits_model, digits_data):
    x, y = digits_data.x[:8], digits_data.y[:8]
    adv, queries = attacks.square_attack(
        digits_model, x, y, 0.3, max_queries=50, rng=np.random.default_rng(0)
    )
    common.verify_budget(x, adv, 0.3, "linf", "square")
    assert (queries <= 50).all()
    same, _ = attacks.square_attack(
        lambda b: digits_model.predict(b), x, y, 0.3, max_queries=50, rng=np.random.default_rng(0)
    )
    assert np.array_equal(adv, same)
    adv, success, _ = attacks.few_pixel(digits_model, x, y, pixels=2, popsize=8, generations=2)
    common.verify_budget(x, adv, 2.0, "l0", "pixels")
    assert success.dtype == bool


def test_a_white_box_attack_on_a_black_box_model_is_a_clear_error(digits_data):
    from roadworthy.models.function import FunctionModel

    black = FunctionModel(lambda b: np.zeros((len(b), 10), np.float32), input_shape=(1, 16, 16))
    with pytest.raises(InvalidInputError, match="white-box attack needs gradients"):
        attacks.pgd(black, digits_data.x[:2], digits_data.y[:2])


def test_the_library_imports_no_check_and_no_report():
    """Algorithms sit below checks: they import the ground floor and models' protocols only."""
    allowed = (
        "roadworthy.attacks",
        "roadworthy.errors",
        "roadworthy.models.base",
        "roadworthy.schema",
        "roadworthy.stats",
    )
    for path in SRC.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("roadworthy"):
                assert node.module.startswith(allowed), f"{path.name} imports {node.module}"
            if isinstance(node, ast.Import):
                assert not any(a.name.startswith("roadworthy.") for a in node.names), path.name


def test_gradient_batches_shrink_for_large_inputs_only():
    """A gradient loop keeps the requested batch for small images and lowers it for 224 px ones (a
    ResNet's activations for 256 such inputs would need several GB), never below 8."""
    from roadworthy.attacks._losses import GRAD_BATCH_INPUT_BYTES, grad_batch

    small = np.zeros((300, 3, 32, 32), np.float32)
    large = np.zeros((300, 3, 224, 224), np.float32)
    huge = np.zeros((2, 3, 2048, 2048), np.float32)
    assert grad_batch(small, 256) == 256
    b = grad_batch(large, 256)
    assert 8 <= b < 256 and b * large[0].nbytes <= GRAD_BATCH_INPUT_BYTES
    assert grad_batch(huge, 256) == 8
    assert grad_batch(small, 4) == 4  # never above the request
