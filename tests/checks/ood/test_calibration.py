"""ood.calibration: the helpers against known values, temperature scaling on an over-confident CNN."""

from __future__ import annotations

import numpy as np
import pytest

from roadworthy.checks.base import CHECKS, Context
from roadworthy.checks.ood.calibration import CalibrationParams
from roadworthy.data.base import Dataset
from roadworthy.models.torch import TorchModel
from roadworthy.report.figures import draw
from roadworthy.stats import softmax
from roadworthy.uncertainty.calibration import brier_score, fit_temperature, nll


def test_fit_temperature_recovers_the_temperature_labels_were_drawn_with() -> None:
    rng = np.random.default_rng(0)
    z = rng.normal(scale=4.0, size=(4000, 5))
    p = softmax(z / 2.5, axis=1)
    y = (p.cumsum(axis=1) > rng.random((4000, 1))).argmax(axis=1)
    assert fit_temperature(z, y) == pytest.approx(2.5, rel=0.1)
    assert nll(z, y, fit_temperature(z, y)) < nll(z, y, 1.0)


def test_brier_and_nll_on_known_values() -> None:
    probs = np.array([[1.0, 0.0], [0.5, 0.5]])
    y = np.array([0, 1])
    assert brier_score(probs, y) == pytest.approx((0.0 + 0.5) / 2)
    assert nll(np.log(probs.clip(1e-300)), y) == pytest.approx(np.log(2) / 2)


def _overconfident(module, factor: float) -> TorchModel:
    import torch

    class ScaledLogits(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = module

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x) * factor

    return TorchModel(ScaledLogits(), input_shape=(1, 16, 16))


def test_temperature_scaling_repairs_an_overconfident_model(digits_module, digits_data) -> None:
    # logits x5 on noisy digits: the model errs often yet is almost always sure
    rng = np.random.default_rng(0)
    noisy = np.clip(digits_data.x + rng.normal(0, 0.5, digits_data.x.shape), 0, 1).astype(np.float32)
    data = Dataset(x=noisy, y=digits_data.y, modality="image")
    ctx = Context(model=_overconfident(digits_module, 5.0), data=data, seed=0)
    out = CHECKS["ood.calibration"](params=CalibrationParams(n_shifted=200)).run(ctx)
    m = out.metrics
    assert m["ood.calibration.temperature"] > 3.0
    assert m["ood.calibration.ece"] > 0.15
    assert m["ood.calibration.ece_after_temperature"] < m["ood.calibration.ece"] / 2
    assert m["ood.calibration.ece_shifted_after_temperature"] < m["ood.calibration.ece_shifted"]
    assert "over-confident" in out.summary


def test_calibration_check_on_the_digits_cnn(ctx: Context) -> None:
    check = CHECKS["ood.calibration"](budget="quick")
    out = check.run(ctx)
    m = out.metrics
    assert m["ood.calibration.ece"] == pytest.approx(0.0, abs=0.06)  # a well-trained CNN on clean data
    assert 0.0 <= m["ood.calibration.ece_shifted"] <= 1.0
    assert (
        m["ood.calibration.brier_shifted"] > m["ood.calibration.brier"]
    )  # worse under shift (Ovadia et al.)
    assert 0.1 < m["ood.calibration.temperature"] < 10
    assert out.details["shifted"]["n_samples"] == check.params.n_shifted
    assert set(out.details["reliability"]) == {"clean", "shifted", "after_temperature"}
    (item,) = out.details["evidence"]  # drawn by the report from the data alone
    assert item["kind"] == "lines" and item["diagonal"] and len(item["series"]) == 3
    caption, uri = draw(item)
    assert "Reliability" in caption and uri.startswith("data:image/svg+xml")
    again = CHECKS["ood.calibration"](budget="quick").run(Context(model=ctx.model, data=ctx.data, seed=0))
    assert again.metrics == m
