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
    out = pgd_attack(TORCH.forward_torch, XT, YT, SCHEMA, eps, np.random.default_rng(seed), steps=8)
    assert _in_domain(out.adversarial, XT)
    np.testing.assert_array_equal(out.adversarial[:, 0], XT[:, 0])  # age is immutable
    cats = SCHEMA.indices("binary", "categorical")
    np.testing.assert_array_equal(out.adversarial[:, cats], XT[:, cats])  # gradients move no level
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
