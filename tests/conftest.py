"""Shared fixtures: a trained tiny CNN on scikit-learn digits (16x16 grey), its data splits, a context."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("ROADWORTHY_PLAIN_PROGRESS", "1")


@pytest.fixture(scope="session")
def digits_split():
    """(x_train, y_train, x_test, y_test): 1,297 / 500 digits, float32 NCHW (1, 16, 16) in [0, 1]."""
    from tests._models import digits_images

    x, y = digits_images()
    rng = np.random.default_rng(0)
    idx = rng.permutation(len(y))
    tr, te = idx[:1297], idx[1297:]
    return x[tr], y[tr], x[te], y[te]


@pytest.fixture(scope="session")
def digits_module(digits_split):
    """A trained ``nn.Module`` (about 97% test accuracy, 15 epochs, ~4 s), eval mode."""
    import torch

    from tests._models import tiny_cnn, train

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    x_tr, y_tr, _, _ = digits_split
    return train(tiny_cnn(), x_tr, y_tr, epochs=15)


@pytest.fixture(scope="session")
def digits_model(digits_module):
    """The trained CNN wrapped as a roadworthy model (white box, features)."""
    from roadworthy.models.torch import TorchModel

    return TorchModel(digits_module, input_shape=(1, 16, 16))


@pytest.fixture(scope="session")
def digits_data(digits_split):
    from roadworthy.data.base import Dataset

    _, _, x_te, y_te = digits_split
    return Dataset(
        x=x_te, y=y_te, modality="image", class_names=[str(i) for i in range(10)], path="digits-test"
    )


@pytest.fixture(scope="session")
def digits_train_data(digits_split):
    from roadworthy.data.base import Dataset

    x_tr, y_tr, _, _ = digits_split
    return Dataset(
        x=x_tr, y=y_tr, modality="image", class_names=[str(i) for i in range(10)], path="digits-train"
    )


@pytest.fixture()
def ctx(digits_model, digits_data, digits_train_data):
    """A fresh context on the digits CNN (quick budget, seed 0)."""
    from roadworthy.checks.base import Context

    return Context(model=digits_model, data=digits_data, train_data=digits_train_data, budget="quick", seed=0)


# real MLflow servers (tracking on SQLite, `mlflow models serve`), started once when a test asks for them
from tests._mlflow import mlflow_server, registered_digits, served_digits  # noqa: E402, F401
