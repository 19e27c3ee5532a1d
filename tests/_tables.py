"""A small mixed-type table with a planted weakness, and a scikit-learn model trained on it.

Columns: ``age`` (integer, immutable in the tests' schema), ``distance_km`` (continuous, 1-10: the label
leans on it, so a site that records it in another unit breaks the model), ``income`` (continuous, no
signal), ``n_visits`` (integer counts, weak signal), ``region`` (categorical, 4 levels, some signal) and
``member`` (binary, no signal).
"""

from __future__ import annotations

import numpy as np

NAMES = ["age", "distance_km", "income", "n_visits", "region", "member"]
OVERRIDES = {"immutable": ["age"]}


def planted_table(n: int = 600, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    age = rng.integers(18, 81, n)
    distance = rng.uniform(1.0, 10.0, n)
    income = rng.normal(40.0, 12.0, n)
    visits = rng.poisson(6, n)
    region = rng.integers(0, 4, n)
    member = rng.integers(0, 2, n)
    score = distance + 0.6 * (region == 2) + 0.05 * visits + rng.normal(0, 0.3, n)
    y = (score > 5.8).astype(np.int64)
    x = np.column_stack([age, distance, income, visits, region, member]).astype(np.float32)
    return x, y


def planted_model(x: np.ndarray, y: np.ndarray):
    """Standardised logistic regression (a pipeline that does not impute: NaN raises)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from roadworthy.models.sklearn import SklearnModel

    return SklearnModel(make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(x, y))


def planted_torch_model(x: np.ndarray, y: np.ndarray, seed: int = 0, epochs: int = 300):
    """A small MLP on the table (standardisation inside), trained full-batch: a white-box tabular model."""
    import torch
    from torch import nn

    from roadworthy.models.torch import TorchModel

    torch.manual_seed(seed)
    mean = torch.tensor(x.mean(axis=0), dtype=torch.float32)
    std = torch.tensor(x.std(axis=0) + 1e-6, dtype=torch.float32)

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("mean", mean)
            self.register_buffer("std", std)
            self.body = nn.Sequential(nn.Linear(x.shape[1], 32), nn.ReLU(), nn.Linear(32, 2))

        def forward(self, t):
            return self.body((t - self.mean) / self.std)

    net = Net()
    opt = torch.optim.Adam(net.parameters(), lr=0.02)
    xt, yt = torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.int64)
    for _ in range(epochs):
        opt.zero_grad()
        nn.functional.cross_entropy(net(xt), yt).backward()
        opt.step()
    return TorchModel(net.eval(), input_shape=(x.shape[1],))


def planted_context(n_train: int = 400, n_eval: int = 200, seed: int = 0, overrides=OVERRIDES, model=None):
    """A Context on the planted table: training data, evaluation data with the schema overrides.

    ``model`` is a roadworthy model, ``"torch"`` for :func:`planted_torch_model`, or None for the logistic
    regression."""
    from roadworthy.checks.base import Context
    from roadworthy.data.base import Dataset

    x, y = planted_table(n_train + n_eval, seed)
    tr, te = slice(0, n_train), slice(n_train, None)
    model = model or planted_model(x[tr], y[tr])
    if model == "torch":
        model = planted_torch_model(x[tr], y[tr])
    meta = {"schema": overrides} if overrides else {}
    return Context(
        model=model,
        data=Dataset(
            x=x[te], y=y[te], modality="tabular", class_names=["near", "far"], feature_names=NAMES, meta=meta
        ),
        train_data=Dataset(
            x=x[tr], y=y[tr], modality="tabular", class_names=["near", "far"], feature_names=NAMES
        ),
        budget="quick",
        seed=1,
    )
