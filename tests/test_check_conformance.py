"""Every registered check, run for real on a tiny image model and a tiny tabular model.

A check added to the registry is covered here without being named: it must run or be skipped with a
stated reason, publish metric names that belong to it and are documented, give every accuracy its
interval and sample count, keep details that survive JSON, report all its parameters, and give the same
numbers for the same seed twice.

Metric names: a check's names start with its id, except the documented suite-level names (the public
contract in docs/metrics.md, e.g. ``clean.ece`` from ``clean.accuracy`` or ``shift.mean_accuracy`` from
``shift.summary``); no two checks publish the same name.
"""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest

from roadworthy import metric_names
from roadworthy.checks import load_builtin_checks

REGISTRY = load_builtin_checks()
N_EVAL = 48

#: Metrics that measure the machine, not the model: they differ between two runs by nature.
TIMING = ("sanity.latency_ms",)


def _image_context():
    """A 3-channel 16-px CNN on scikit-learn digits (4 classes), with training data."""
    import torch

    from roadworthy.checks.base import Context
    from roadworthy.data.base import Dataset
    from roadworthy.models.torch import TorchModel
    from tests._models import digits_images, tiny_cnn, train

    x, y = digits_images(size=16, channels=3)
    keep = y < 4
    x, y = x[keep], y[keep]
    rng = np.random.default_rng(0)
    idx = rng.permutation(len(y))
    tr, te = idx[:300], idx[300 : 300 + N_EVAL]
    torch.set_num_threads(1)
    module = train(tiny_cnn(in_channels=3, n_classes=4), x[tr], y[tr], epochs=6)
    model = TorchModel(module, input_shape=(3, 16, 16))
    names = ["zero", "one", "two", "three"]

    def make():
        return Context(
            model=model,
            data=Dataset(x=x[te], y=y[te], modality="image", class_names=names, path="eval"),
            train_data=Dataset(x=x[tr], y=y[tr], modality="image", class_names=names, path="train"),
            budget="quick",
            seed=3,
        )

    return make


def _tabular_context():
    """Logistic regression on scikit-learn's wine table (13 features, 3 classes), with training data."""
    from sklearn.datasets import load_wine
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from roadworthy.checks.base import Context
    from roadworthy.data.base import Dataset
    from roadworthy.models.sklearn import SklearnModel

    d = load_wine()
    x, y = d.data.astype(np.float32), d.target.astype(np.int64)
    rng = np.random.default_rng(0)
    idx = rng.permutation(len(y))
    tr, te = idx[:120], idx[120 : 120 + N_EVAL]
    est = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(x[tr], y[tr])
    model = SklearnModel(est)
    names = list(d.target_names)

    def make():
        return Context(
            model=model,
            data=Dataset(x=x[te], y=y[te], modality="tabular", class_names=names, path="eval"),
            train_data=Dataset(x=x[tr], y=y[tr], modality="tabular", class_names=names, path="train"),
            budget="quick",
            seed=3,
        )

    return make


def _run_all(make):
    """Every registered check (whatever its default budgets), in dependency order, on a fresh context."""
    from roadworthy.runner import run_checks

    ctx = make()
    return {r.id: r for r in run_checks(list(REGISTRY.values()), ctx)}


@pytest.fixture(scope="module", params=["image", "tabular"])
def runs(request):
    make = _image_context() if request.param == "image" else _tabular_context()
    return request.param, _run_all(make), _run_all(make)


@pytest.mark.slow
def test_every_check_runs_or_says_why_not(runs):
    modality, first, _ = runs
    assert set(first) == set(REGISTRY)
    for cid, r in first.items():
        assert r.status != "error", f"{cid} crashed on the {modality} model: {r.error}"
        if r.status == "skipped":
            assert r.summary.startswith("Skipped: ") and len(r.summary) > len("Skipped: ."), cid
            assert not r.metrics, f"{cid} was skipped but published metrics"
        else:
            assert r.summary.strip(), f"{cid} gives no summary sentence"
    ran = [cid for cid, r in first.items() if r.status != "skipped"]
    assert len(ran) >= 10, f"only {ran} ran on the {modality} model"


@pytest.mark.slow
def test_metric_names_belong_to_the_check_and_are_documented(runs):
    _, first, _ = runs
    owner: dict[str, str] = {}
    for cid, r in first.items():
        suite = cid.split(".", 1)[0]
        for name in r.metrics:
            assert name.startswith(suite + "."), f"{cid} publishes {name} outside its suite"
            assert metric_names.is_known(name), f"{cid} publishes {name}, which docs/metrics.md lacks"
            assert name not in owner, f"{name} is published by both {owner.get(name)} and {cid}"
            owner[name] = cid


@pytest.mark.slow
def test_every_accuracy_has_its_interval_and_sample_count(runs):
    _, first, _ = runs
    for cid, r in first.items():
        for name, value in r.metrics.items():
            if not name.endswith("accuracy"):
                continue
            for suffix in ("_ci_low", "_ci_high", "_n"):
                assert name + suffix in r.metrics, f"{cid}: {name} has no {suffix}"
            lo, hi, n = (r.metrics[name + s] for s in ("_ci_low", "_ci_high", "_n"))
            if value is not None and n:
                assert lo <= value + 1e-9 and value <= hi + 1e-9, f"{name} = {value} outside [{lo}, {hi}]"
                assert 0.0 <= lo <= hi <= 1.0


@pytest.mark.slow
def test_details_survive_a_json_round_trip_and_params_are_reported(runs):
    _, first, _ = runs
    for cid, r in first.items():
        text = json.dumps(r.details, allow_nan=False)  # NaN/inf would not be JSON
        assert json.loads(text) == r.details, cid
        for ex in r.examples:
            json.dumps(ex.model_dump(), allow_nan=False)
        if r.status == "skipped":
            continue
        cls = REGISTRY[cid]
        fields = {f.name for f in dataclasses.fields(cls.Params)}
        assert set(r.params) == fields, f"{cid} reports params {sorted(r.params)}, has {sorted(fields)}"


@pytest.mark.slow
def test_the_same_seed_gives_the_same_metrics_twice(runs):
    _, first, second = runs
    for cid, r in first.items():
        a = {k: v for k, v in r.metrics.items() if not k.startswith(TIMING)}
        b = {k: v for k, v in second[cid].metrics.items() if not k.startswith(TIMING)}
        assert a.keys() == b.keys(), cid
        for k in a:
            same = a[k] == b[k] or (
                a[k] is not None and b[k] is not None and math.isnan(a[k]) and math.isnan(b[k])
            )
            assert same, f"{k}: {a[k]} then {b[k]} with the same seed"
