"""A model saved in training mode is tested as saved (and says so); TorchScript errors keep their cause."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import roadworthy
from roadworthy.errors import InvalidInputError, RoadworthyWarning
from roadworthy.models import load_model

torch = pytest.importorskip("torch")


class DropoutNet(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = torch.nn.Linear(4, 32)
        self.drop = torch.nn.Dropout(0.5)
        self.head = torch.nn.Linear(32, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.drop(torch.relu(self.body(x))))


class Reshaping(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(x.shape[0], 4)[:, :3]


def _save(module, path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.script(module).save(str(path))
    return path


def _data(n=64):
    rng = np.random.default_rng(0)
    return rng.random((n, 4), dtype=np.float32), np.arange(n) % 3


def test_torchscript_saved_in_training_mode_is_tested_as_saved_and_fails_determinism(tmp_path):
    torch.manual_seed(0)
    path = _save(DropoutNet().train(), tmp_path / "train_mode.pt")
    with pytest.warns(RoadworthyWarning, match=r"saved in training mode \(Dropout at 'drop'\)"):
        model = load_model(path, input_shape=(4,))
    assert model.module.training  # not silently switched to eval
    assert "tested as saved" in model.training_mode_note
    with pytest.warns(RoadworthyWarning, match="saved in training mode"):
        report = roadworthy.check(str(path), _data(), suites=["sanity"], budget="quick")
    assert report.metrics["sanity.determinism"] == 0.0
    determinism = report.check("sanity.determinism")
    assert "saved in training mode" in determinism.details["training_mode"]
    assert any("saved in training mode" in w for w in determinism.warnings)


def test_torchscript_saved_in_eval_mode_passes_without_a_note(tmp_path):
    torch.manual_seed(0)
    path = _save(DropoutNet().eval(), tmp_path / "eval_mode.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("error", RoadworthyWarning)
        model = load_model(path, input_shape=(4,))
    assert model.training_mode_note is None
    report = roadworthy.check(str(path), _data(), suites=["sanity"], budget="quick")
    assert report.metrics["sanity.determinism"] == 1.0
    assert "training_mode" not in report.check("sanity.determinism").details


def test_a_live_module_in_training_mode_is_switched_to_eval_loudly():
    torch.manual_seed(0)
    net = DropoutNet().train()
    with pytest.warns(
        RoadworthyWarning, match=r"was in training mode \(Dropout at 'drop'\); it was switched"
    ):
        model = load_model(net, input_shape=(4,))
    x, _ = _data(8)
    np.testing.assert_array_equal(model.predict(x), model.predict(x))


def test_a_torchscript_failure_names_its_cause_not_the_interpreter(tmp_path):
    path = _save(Reshaping(), tmp_path / "reshaping.pt")
    with pytest.raises(InvalidInputError) as info:
        load_model(path, input_shape=(3, 5))
    message = str(info.value)
    assert "shape '[2, 4]' is invalid for input of size 30" in message
    assert "TorchScript interpreter" not in message and "\n" not in message
