"""Schema-respecting tabular attacks: every adversarial row stays on the schema and in its budget."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from roadworthy.attacks.tabular import (
    boundary_attack,
    linf_distance,
    pgd_attack,
    project_ball,
    score_attack,
)
from roadworthy.schema import infer_schema
from tests._tables import NAMES, OVERRIDES, planted_model, planted_table, planted_torch_model

X, Y = planted_table(500)
SCHEMA = infer_schema(X[:300], NAMES, overrides=OVERRIDES)
MODEL = planted_model(X[:300], Y[:300])
XT, YT = X[300:380], Y[300:380]
CLEAN = {"immutable": 0, "integer": 0, "levels": 0, "range": 0, "missing": 0}


def _in_domain(adv, orig):
    # the evaluation rows may already lie outside the training range: only changed cells are judged
    return SCHEMA.violations(adv, orig) == CLEAN


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31), eps=st.sampled_from([0.1, 0.25, 0.5, 1.0, 3.0]))
def test_score_attack_rows_stay_on_the_schema_and_in_the_budget(seed, eps):
    out = score_attack(MODEL.predict, XT, YT, SCHEMA, eps, np.random.default_rng(seed), steps=15)
    assert _in_domain(out.adversarial, XT)
    np.testing.assert_array_equal(out.adversarial[:, 0], XT[:, 0])  # age is immutable
    assert np.all(linf_distance(out.adversarial, XT, SCHEMA) <= eps + 1e-5)
    cats = SCHEMA.indices("binary", "categorical")
    assert np.all((out.adversarial[:, cats] != XT[:, cats]).sum(axis=1) <= 1)
    pred = MODEL.predict(out.adversarial).argmax(axis=1)
    np.testing.assert_array_equal(out.success, pred != YT)


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**31))
def test_boundary_attack_rows_stay_on_the_schema_and_flip_the_label(seed):
    out = boundary_attack(MODEL.predict, XT, YT, SCHEMA, X[300:], np.random.default_rng(seed))
    assert _in_domain(out.adversarial, XT)
    np.testing.assert_array_equal(out.adversarial[:, 0], XT[:, 0])
    pred = MODEL.predict(out.adversarial).argmax(axis=1)
    assert np.all(pred[out.success] != YT[out.success])
    assert np.all(np.isinf(out.distance[~out.success]))


def test_bigger_budget_breaks_more_and_the_planted_feature_is_changed_most():
    small = score_attack(MODEL.predict, XT, YT, SCHEMA, 0.1, np.random.default_rng(0), steps=40)
    big = score_attack(MODEL.predict, XT, YT, SCHEMA, 1.0, np.random.default_rng(0), steps=40)
    assert big.success.sum() > small.success.sum()
    diff = (big.adversarial != XT)[big.success]
    assert NAMES[int(diff.sum(axis=0).argmax())] == "distance_km"


def test_project_ball_rounds_integers_towards_the_input():
    wild = XT.copy()
    wild[:, 3] += 0.7 * SCHEMA.std[3]  # n_visits: rounding up could leave a 0.5-sd ball
    out = project_ball(wild, XT, 0.5, SCHEMA)
    assert np.all(np.abs(out[:, 3] - XT[:, 3]) <= 0.5 * SCHEMA.std[3] + 1e-6)
    np.testing.assert_array_equal(out[:, 3], np.round(out[:, 3]))


@pytest.mark.parametrize("fn", ["score", "boundary"])
def test_every_column_immutable_changes_nothing(fn):
    frozen = infer_schema(X[:300], NAMES, overrides={"immutable": NAMES})
    rng = np.random.default_rng(0)
    if fn == "score":
        out = score_attack(MODEL.predict, XT, YT, frozen, 1.0, rng, steps=5)
    else:
        out = boundary_attack(MODEL.predict, XT, YT, frozen, X[300:], rng)
    np.testing.assert_array_equal(out.adversarial, XT)


TORCH = planted_torch_model(X[:300], Y[:300])


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**31), eps=st.sampled_from([0.1, 0.25, 0.5, 1.0, 3.0]))
def test_pgd_rows_stay_on_the_schema_and_in_the_budget(seed, eps):
    out = pgd_attack(
        TORCH.forward_torch, XT, YT, SCHEMA, eps, np.random.default_rng(seed), steps=8, categories=False
    )
    assert _in_domain(out.adversarial, XT)
    np.testing.assert_array_equal(out.adversarial[:, 0], XT[:, 0])  # age is immutable
    cats = SCHEMA.indices("binary", "categorical")
    np.testing.assert_array_equal(out.adversarial[:, cats], XT[:, cats])  # categories=False moves no level
    ints = SCHEMA.indices("integer", mutable=False)
    assert np.all(out.adversarial[:, ints] == np.round(out.adversarial[:, ints]))
    assert np.all(linf_distance(out.adversarial, XT, SCHEMA) <= eps + 1e-5)
    pred = TORCH.predict(out.adversarial).argmax(axis=1)
    clean = TORCH.predict(XT).argmax(axis=1)
    # a success is a row the model gets wrong; rows it got wrong to begin with count at once
    assert np.all(pred[out.success] != YT[out.success])
    assert np.all(out.success[clean != YT])
    assert np.all(np.isinf(out.distance[~out.success])) and np.all(out.queries >= 1)


def test_pgd_breaks_more_with_a_bigger_budget_and_beats_random_noise():
    """PGD follows the gradient along distance_km: it flips more than its own random start does."""
    rng = np.random.default_rng(0)
    small = pgd_attack(TORCH.forward_torch, XT, YT, SCHEMA, 0.1, rng, steps=20)
    big = pgd_attack(TORCH.forward_torch, XT, YT, SCHEMA, 1.0, np.random.default_rng(0), steps=20)
    start = pgd_attack(TORCH.forward_torch, XT, YT, SCHEMA, 1.0, np.random.default_rng(0), steps=0)
    assert big.success.sum() > small.success.sum() and big.success.sum() > start.success.sum()
    diff = (big.adversarial != XT)[big.success & ~start.success]
    assert NAMES[int(np.abs(diff).sum(axis=0).argmax())] == "distance_km"


@settings(max_examples=15, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    eps=st.sampled_from([0.1, 0.25, 0.5, 1.0, 3.0]),
    k=st.sampled_from([1, 2, 8]),
)
def test_pgd_with_category_steps_keeps_every_row_on_the_schema(seed, eps, k):
    """With the greedy categorical step every emitted row still holds valid levels (one column changed at
    most), whole integers, values in range, untouched immutable columns and the numeric budget."""
    out = pgd_attack(
        TORCH.forward_torch, XT, YT, SCHEMA, eps, np.random.default_rng(seed), steps=6, category_candidates=k
    )
    assert _in_domain(out.adversarial, XT)
    np.testing.assert_array_equal(out.adversarial[:, 0], XT[:, 0])  # age is immutable
    cats = SCHEMA.indices("binary", "categorical")
    for j in cats:
        assert set(np.unique(out.adversarial[:, j])) <= set(SCHEMA.features[j].levels) | set(XT[:, j])
    assert np.all((out.adversarial[:, cats] != XT[:, cats]).sum(axis=1) <= 1)
    ints = SCHEMA.indices("integer", mutable=False)
    assert np.all(out.adversarial[:, ints] == np.round(out.adversarial[:, ints]))
    assert np.all(linf_distance(out.adversarial, XT, SCHEMA) <= eps + 1e-5)
    pred = TORCH.predict(out.adversarial).argmax(axis=1)
    assert np.all(pred[out.success] != YT[out.success])


def _region_model(x, y, seed=0):
    """An MLP that one-hot encodes ``region`` inside (no gradient reaches the code) and leans on it."""
    import torch
    from torch import nn

    from roadworthy.models.torch import TorchModel

    torch.manual_seed(seed)
    mean = torch.tensor(x.mean(axis=0), dtype=torch.float32)
    std = torch.tensor(x.std(axis=0) + 1e-6, dtype=torch.float32)
    region = NAMES.index("region")

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("mean", mean)
            self.register_buffer("std", std)
            self.body = nn.Sequential(nn.Linear(x.shape[1] + 4, 32), nn.ReLU(), nn.Linear(32, 2))

        def forward(self, t):
            onehot = nn.functional.one_hot(t[:, region].round().long().clamp(0, 3), 4).float()
            return self.body(torch.cat([(t - self.mean) / self.std, onehot], dim=1))

    net = Net()
    opt = torch.optim.Adam(net.parameters(), lr=0.02)
    xt, yt = torch.tensor(x), torch.tensor(y)
    for _ in range(300):
        opt.zero_grad()
        nn.functional.cross_entropy(net(xt), yt).backward()
        opt.step()
    return TorchModel(net.eval(), input_shape=(x.shape[1],))


def test_pgd_flips_the_category_a_model_relies_on():
    """The label is set by region (2 or 3 against 0 or 1): no small numeric edit flips it, a level change
    does. PGD with the categorical step flips most rows by changing region; without it, hardly any."""
    region = NAMES.index("region")
    y = (X[:, region] >= 2).astype(np.int64)
    model = _region_model(X[:300], y[:300])
    xt, yt = X[300:380], y[300:380]
    clean = model.predict(xt).argmax(axis=1) == yt
    assert clean.mean() > 0.95
    with_cats = pgd_attack(model.forward_torch, xt, yt, SCHEMA, 0.1, np.random.default_rng(0), steps=5)
    without = pgd_attack(
        model.forward_torch, xt, yt, SCHEMA, 0.1, np.random.default_rng(0), steps=5, categories=False
    )
    flipped = with_cats.success & clean
    assert flipped.mean() > 0.8 and without.success[clean].mean() < 0.2
    assert np.all(with_cats.adversarial[flipped, region] != xt[flipped, region])
    assert set(np.unique(with_cats.adversarial[:, region])) <= {0.0, 1.0, 2.0, 3.0}
    assert _in_domain(with_cats.adversarial, xt)


ONE_HOT = ["size", "weight", "color_red", "color_green", "color_blue"]


def _one_hot_table(n=500, seed=0):
    rng = np.random.default_rng(seed)
    color = rng.integers(0, 3, n)
    x = np.column_stack([rng.uniform(0, 10, n), rng.normal(50, 10, n), np.eye(3)[color]]).astype(np.float32)
    y = ((color == 1) | (x[:, 0] > 9)).astype(np.int64)  # green (or a very large size) is class 1
    return x, y


def _mlp(x, y, seed=0):
    import torch
    from torch import nn

    from roadworthy.models.torch import TorchModel

    torch.manual_seed(seed)
    mean, std = torch.tensor(x.mean(axis=0)), torch.tensor(x.std(axis=0) + 1e-6)
    body = nn.Sequential(nn.Linear(x.shape[1], 32), nn.ReLU(), nn.Linear(32, 2))
    net = nn.Sequential(type("Std", (nn.Module,), {"forward": lambda self, t: (t - mean) / std})(), body)
    opt = torch.optim.Adam(net.parameters(), lr=0.02)
    xt, yt = torch.tensor(x), torch.tensor(y)
    for _ in range(300):
        opt.zero_grad()
        nn.functional.cross_entropy(net(xt), yt).backward()
        opt.step()
    return TorchModel(net.eval(), input_shape=(x.shape[1],))


# one table, schema and model for the one-hot tests (fitted on the first 300 rows, attacked on the rest)
_X1, _Y1 = _one_hot_table()
_ONE_HOT_SCHEMA = infer_schema(_X1[:300], ONE_HOT)
_ONE_HOT_MODEL = _mlp(_X1[:300], _Y1[:300])


def test_one_hot_groups_are_inferred_and_projected_by_argmax():
    x, _ = _one_hot_table()
    schema = infer_schema(x, ONE_HOT)
    assert schema.groups == ((2, 3, 4),)
    assert schema.to_dict()["one_hot"] == [["color_red", "color_green", "color_blue"]]
    relaxed = np.array([[5, 50, 0.2, 0.7, 0.1], [5, 50, 1, 1, 0], [5, 50, 0, 0, 1]], np.float32)
    out = schema.project(relaxed)
    np.testing.assert_array_equal(out[:, 2:], [[0, 1, 0], [1, 0, 0], [0, 0, 1]])
    # a changed row whose group is not one-hot breaks the levels constraint
    orig = np.array([[5, 50, 1, 0, 0]] * 2, np.float32)
    bad = np.array([[5, 50, 1, 1, 0], [5, 50, 0, 1, 0]], np.float32)
    assert schema.violations(bad, orig)["levels"] == 1
    # columns of one group must share a prefix and hold exactly one 1
    assert infer_schema(x, ["size", "weight", "a_x", "b_y", "c_z"]).groups == ()


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**31), eps=st.sampled_from([0.1, 0.5, 3.0]))
def test_every_attack_keeps_one_hot_groups_valid_and_changes_one_at_most(seed, eps):
    x, y, schema, model = _X1, _Y1, _ONE_HOT_SCHEMA, _ONE_HOT_MODEL
    xt, yt = x[300:360], y[300:360]
    rng = np.random.default_rng(seed)
    outs = [
        score_attack(model.predict, xt, yt, schema, eps, rng, steps=10),
        boundary_attack(model.predict, xt, yt, schema, x[300:], rng),
        pgd_attack(model.forward_torch, xt, yt, schema, eps, rng, steps=4, category_candidates=2),
    ]
    for out in outs:
        adv = out.adversarial
        assert schema.violations(adv, xt) == CLEAN
        assert np.all(adv[:, 2:].sum(axis=1) == 1) and set(np.unique(adv[:, 2:])) <= {0.0, 1.0}
    for out in (outs[0], outs[2]):  # the budgeted attacks
        assert np.all(linf_distance(out.adversarial, xt, schema) <= eps + 1e-5)


def test_pgd_switches_the_one_hot_category_a_model_relies_on():
    """Colour decides the class for all but very large sizes: at 0.1 sd only a colour switch flips a row,
    and PGD with the categorical step makes it (one group changed, still one-hot)."""
    schema = _ONE_HOT_SCHEMA
    xt, yt = _X1[300:400], _Y1[300:400]
    clean = _ONE_HOT_MODEL.predict(xt).argmax(axis=1) == yt
    assert clean.mean() > 0.9
    out = pgd_attack(_ONE_HOT_MODEL.forward_torch, xt, yt, schema, 0.1, np.random.default_rng(0), steps=5)
    numeric = pgd_attack(
        _ONE_HOT_MODEL.forward_torch, xt, yt, schema, 0.1, np.random.default_rng(0), steps=5, categories=False
    )
    flipped = out.success & clean
    assert flipped.mean() > 0.7 and numeric.success[clean].mean() < 0.2
    away = flipped & (xt[:, 0] < 8)  # far from the size boundary only a colour switch flips a row
    assert away.sum() > 0.5 * flipped.sum()
    assert np.all(np.any(out.adversarial[away, 2:] != xt[away, 2:], axis=1))
    assert np.all(out.adversarial[:, 2:].sum(axis=1) == 1)
