"""Tabular shifts: every emitted row respects the schema except where a shift's point is to leave it."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from roadworthy.schema import infer_schema
from roadworthy.shifts.tabular import DRIFT_FACTORS, TAB_SHIFTS, scale_feature
from tests._tables import NAMES, OVERRIDES, planted_table

X, Y = planted_table(300)
SCHEMA = infer_schema(X, NAMES, overrides=OVERRIDES)


@settings(max_examples=60, deadline=None)
@given(name=st.sampled_from(sorted(TAB_SHIFTS)), severity=st.integers(1, 5), seed=st.integers(0, 2**31))
def test_every_shifted_row_keeps_the_schema_it_does_not_mean_to_break(name, severity, seed):
    sh = TAB_SHIFTS[name]
    out = sh.apply(X[:120], Y[:120], severity, np.random.default_rng(seed), SCHEMA)
    assert out.x.shape == (len(out.rows), X.shape[1]) and out.x.dtype == np.float32
    orig = X[:120][out.rows]
    v = SCHEMA.violations(out.x, orig)
    assert v["immutable"] == 0, name
    np.testing.assert_array_equal(out.x[:, 0], orig[:, 0])  # age is immutable
    broken = {k for k, n in v.items() if n}
    assert broken <= sh.breaks, f"{name} s{severity} broke {broken - sh.breaks}"


@pytest.mark.parametrize("name", sorted(TAB_SHIFTS))
def test_same_seed_same_rows_and_severity_5_changes_something(name):
    sh = TAB_SHIFTS[name]
    a = sh.apply(X, Y, 5, np.random.default_rng(7), SCHEMA)
    b = sh.apply(X, Y, 5, np.random.default_rng(7), SCHEMA)
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.rows, b.rows)
    changed = not np.array_equal(a.rows, np.arange(len(X))) or not np.array_equal(a.x, X, equal_nan=True)
    assert changed, f"{name} left the table as it was at severity 5"


def test_higher_severity_changes_more():
    def share_changed(name, s):
        out = TAB_SHIFTS[name].apply(X, Y, s, np.random.default_rng(0), SCHEMA)
        return np.mean(~np.isclose(out.x, X[out.rows]) | np.isnan(out.x))

    for name in ("tab_missing_values", "tab_outliers", "tab_category_shift"):
        assert share_changed(name, 5) > share_changed(name, 1), name


def test_label_shift_tilts_the_prior_and_covariate_shift_moves_the_mean():
    out = TAB_SHIFTS["tab_label_shift"].apply(X, Y, 5, np.random.default_rng(0), SCHEMA)
    rare = np.argmin(np.bincount(Y))
    assert np.mean(Y[out.rows] == rare) > np.mean(rare == Y) + 0.1
    cov = TAB_SHIFTS["tab_covariate_shift"].apply(X, Y, 5, np.random.default_rng(0), SCHEMA)
    z = lambda a: (a - SCHEMA.mean) / SCHEMA.std  # noqa: E731
    assert np.linalg.norm(z(cov.x).mean(axis=0) - z(X).mean(axis=0)) > 0.5


def test_scale_feature_multiplies_one_column_and_rounds_integers():
    out = scale_feature(X, 1, 3, SCHEMA)
    np.testing.assert_allclose(out[:, 1], X[:, 1] * DRIFT_FACTORS[2], rtol=1e-6)
    np.testing.assert_array_equal(np.delete(out, 1, axis=1), np.delete(X, 1, axis=1))
    visits = scale_feature(X, 3, 3, SCHEMA)[:, 3]
    np.testing.assert_array_equal(visits, np.round(visits))


def test_a_shift_that_needs_categories_says_why_not_on_a_numeric_table():
    numeric = infer_schema(X[:, :3], NAMES[:3])
    assert "no mutable binary or categorical" in TAB_SHIFTS["tab_unseen_category"].applicable(numeric)
    assert TAB_SHIFTS["tab_gaussian_noise"].applicable(numeric) is None


def test_one_hot_groups_stay_valid_under_every_shift_that_keeps_levels():
    """A one-hot group is one categorical column to the shifts: redrawn or dropped as a whole, never left
    with zero or two members set (unless the shift breaks levels on purpose: an unseen category)."""
    from roadworthy.schema import infer_schema
    from roadworthy.shifts.tabular import TAB_SHIFTS

    rng = np.random.default_rng(0)
    n = 400
    color = rng.integers(0, 3, n)
    x = np.column_stack([rng.uniform(0, 10, n), np.eye(3)[color]]).astype(np.float32)
    y = (color == 1).astype(np.int64)
    schema = infer_schema(x, ["size", "color_red", "color_green", "color_blue"])
    assert schema.groups == ((1, 2, 3),)
    for name, sh in TAB_SHIFTS.items():
        if sh.applicable(schema) is not None or "levels" in sh.breaks:
            continue
        for s in (1, 5):
            out = sh.apply(x, y, s, np.random.default_rng(s), schema)
            block = out.x[:, 1:]
            done = np.all(np.isfinite(block), axis=1)
            assert np.all(block[done].sum(axis=1) == 1), (name, s)
            assert schema.violations(out.x, x[out.rows])["levels"] == 0, (name, s)
    moved = TAB_SHIFTS["tab_category_shift"].apply(x, y, 5, np.random.default_rng(0), schema).x
    assert np.mean(np.any(moved[:, 1:] != x[:, 1:], axis=1)) > 0.2  # the group really is redrawn
