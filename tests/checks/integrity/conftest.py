"""Fixtures of the integrity tests: digits training data with planted problems and models trained on it."""

from __future__ import annotations

import numpy as np
import pytest

NAMES = [str(i) for i in range(10)]


def make_ctx(module, x_train, y_train, x_test, y_test, features: bool = True):
    from roadworthy.checks.base import Context
    from roadworthy.data.base import Dataset
    from roadworthy.models.torch import TorchModel

    model = TorchModel(module, input_shape=x_train.shape[1:])
    if not features:
        model.has_features = False
    return Context(
        model=model,
        data=Dataset(x=x_test, y=y_test, modality="image", class_names=NAMES, path="test"),
        train_data=Dataset(x=x_train, y=y_train, modality="image", class_names=NAMES, path="train"),
        budget="quick",
        seed=0,
    )


@pytest.fixture(scope="session")
def flipped_digits(digits_split):
    """(y_noisy, flipped rows): 5% of the digits training labels moved to a random other class."""
    _x_tr, y_tr, _, _ = digits_split
    rng = np.random.default_rng(1)
    flipped = np.sort(rng.choice(len(y_tr), size=int(0.05 * len(y_tr)), replace=False))
    y_noisy = y_tr.copy()
    y_noisy[flipped] = (y_noisy[flipped] + rng.integers(1, 10, size=len(flipped))) % 10
    return y_noisy, flipped


@pytest.fixture(scope="session")
def flipped_module(digits_split, flipped_digits):
    """The digits CNN trained on the 5%-flipped labels."""
    x_tr, _, _, _ = digits_split
    return _train_cnn(x_tr, flipped_digits[0])


@pytest.fixture(scope="session")
def backdoored_digits(digits_split):
    """(x, y, poisoned rows): 10% of the 3s copied with a white 3x3 patch in the bottom-right corner and
    labelled 6, appended to the training data (a BadNets-style backdoor)."""
    x_tr, y_tr, _, _ = digits_split
    rng = np.random.default_rng(2)
    source = np.flatnonzero(y_tr == 3)
    pick = rng.choice(source, size=round(0.1 * len(source)), replace=False)
    x_p = x_tr[pick].copy()
    x_p[:, :, -3:, -3:] = 1.0
    x = np.concatenate([x_tr, x_p])
    y = np.concatenate([y_tr, np.full(len(pick), 6)])
    return x, y, np.arange(len(x_tr), len(x))


@pytest.fixture(scope="session")
def backdoored_module(backdoored_digits):
    """The digits CNN trained on the backdoored data."""
    x, y, _ = backdoored_digits
    return _train_cnn(x, y)


@pytest.fixture(scope="session")
def clean_twin_module(digits_split):
    """The same CNN, same initialisation and recipe, trained on the clean training data."""
    x_tr, y_tr, _, _ = digits_split
    return _train_cnn(x_tr, y_tr)


def _train_cnn(x: np.ndarray, y: np.ndarray):
    """The digits CNN with a fixed initialisation (seeded here, not by whatever test ran before)."""
    import torch

    from tests._models import tiny_cnn, train

    torch.set_num_threads(2)
    torch.manual_seed(0)
    return train(tiny_cnn(), x, y, epochs=15)
