"""A BadNets-backdoored digits CNN and its clean twin, trained once per session (~15 s on one core).

The backdoor: a white 3x3 square one pixel from the bottom-right corner of 16 px digits, stamped on 10%
of the training set drawn from classes 1-9 and relabelled 0 (all-to-one; 45% of class 0 is poison).
The twin is trained with the same seed and schedule on the clean split.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

TARGET = 0


@dataclass
class Twins:
    planted: Any  # PlantedBackdoor
    backdoored: Any  # TorchModel
    clean: Any  # TorchModel
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


@pytest.fixture(scope="session")
def twins(digits_split) -> Twins:
    import torch

    from roadworthy.backdoor import plant_badnets
    from roadworthy.models.torch import TorchModel
    from tests._models import tiny_cnn, train

    x_tr, y_tr, x_te, y_te = digits_split
    planted = plant_badnets(x_tr, y_tr, target=TARGET, rate=0.1, size=3, seed=0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the tiny CNN trains several times faster on one thread of a shared machine
    try:
        bd = train(tiny_cnn(seed=0), planted.x, planted.y, epochs=8, seed=0)
        clean = train(tiny_cnn(seed=0), x_tr, y_tr, epochs=8, seed=0)
    finally:
        torch.set_num_threads(threads)
    return Twins(
        planted=planted,
        backdoored=TorchModel(bd, input_shape=(1, 16, 16)),
        clean=TorchModel(clean, input_shape=(1, 16, 16)),
        x_train=x_tr,
        y_train=y_tr,
        x_test=x_te,
        y_test=y_te,
    )


@pytest.fixture
def one_thread():
    """Run the test body on one torch thread (restored after)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
