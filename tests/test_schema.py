"""The feature schema: inference, the policy's overrides, and projection onto the domain."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from roadworthy.errors import InvalidInputError
from roadworthy.schema import infer_schema
from tests._tables import NAMES, OVERRIDES, planted_table


def test_kinds_ranges_and_levels_are_inferred_from_the_data():
    x, _ = planted_table(400)
    s = infer_schema(x, NAMES)
    kinds = {f.name: f.kind for f in s.features}
    assert kinds == {
        "age": "integer",
        "distance_km": "continuous",
        "income": "continuous",
        "n_visits": "integer",
        "region": "categorical",
        "member": "binary",
    }
    region = s.features[NAMES.index("region")]
    assert region.levels == (0.0, 1.0, 2.0, 3.0)
    d = s.features[NAMES.index("distance_km")]
    assert 1.0 <= d.low < 1.2 and 9.8 < d.high <= 10.0
    assert s.to_dict()["counts"] == {"continuous": 2, "integer": 2, "binary": 1, "categorical": 1}


def test_policy_overrides_set_immutable_kinds_and_ranges():
    x, _ = planted_table(200)
    s = infer_schema(
        x,
        NAMES,
        overrides={"immutable": ["age"], "kinds": {"n_visits": "continuous"}, "ranges": {"income": [0, 200]}},
    )
    f = {f.name: f for f in s.features}
    assert f["age"].immutable and not f["income"].immutable
    assert f["n_visits"].kind == "continuous"
    assert (f["income"].low, f["income"].high) == (0.0, 200.0)
    assert set(s.overridden) == {"age", "n_visits", "income"}
    assert s.to_dict()["immutable"] == ["age"]


@pytest.mark.parametrize(
    "overrides, words",
    [
        ({"immutable": ["height"]}, "no column named 'height'"),
        ({"kinds": {"age": "ordinal"}}, "expected one of"),
        ({"ranges": {"age": [5, 1]}}, "low <= high"),
        ({"mutable": ["age"]}, "unknown key"),
    ],
)
def test_bad_overrides_are_one_line_errors(overrides, words):
    x, _ = planted_table(50)
    with pytest.raises(InvalidInputError, match=words):
        infer_schema(x, NAMES, overrides=overrides)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), scale=st.floats(0.01, 50.0))
def test_projection_lands_every_row_inside_the_schema(seed, scale):
    """Whatever is thrown at it, a projected row keeps immutables, integers, levels and ranges."""
    x, _ = planted_table(300)
    s = infer_schema(x, NAMES, overrides=OVERRIDES)
    rng = np.random.default_rng(seed)
    orig = x[:50]
    wild = orig + rng.standard_normal(orig.shape).astype(np.float32) * scale * s.std.astype(np.float32)
    out = s.project(wild, orig)
    assert s.violations(out, orig) == {"immutable": 0, "integer": 0, "levels": 0, "range": 0, "missing": 0}
    np.testing.assert_array_equal(out[:, 0], orig[:, 0])


def _colour_table(n: int = 120, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    """A numeric column, a one-hot colour whose column names share no prefix, and a one-hot ``size_*``."""
    rng = np.random.default_rng(seed)
    colour = np.eye(3)[rng.integers(0, 3, n)]
    size = np.eye(2)[rng.integers(0, 2, n)]
    x = np.column_stack([rng.normal(size=n), colour, size])
    return x, ["weight", "red", "green", "blue", "size_s", "size_l"]


def test_declared_one_hot_groups_replace_the_inferred_ones():
    x, names = _colour_table()
    inferred = infer_schema(x, names)
    assert inferred.to_dict()["one_hot"] == [["size_s", "size_l"]]  # the colour has no shared prefix
    declared = infer_schema(x, names, overrides={"one_hot": [["red", "green", "blue"]]})
    assert declared.to_dict()["one_hot"] == [["red", "green", "blue"]]
    assert {"red", "green", "blue"} <= set(declared.overridden)
    assert infer_schema(x, names, overrides={"one_hot": []}).groups == ()
    # projection keeps a declared group one-hot whatever is thrown at it
    rng = np.random.default_rng(1)
    wild = x + rng.normal(scale=3.0, size=x.shape)
    out = declared.project(wild, x)
    block = out[:, 1:4]
    assert np.all((block == 0) | (block == 1)) and np.all(block.sum(axis=1) == 1)


@pytest.mark.parametrize(
    "groups, words",
    [
        ([["red"]], "at least two different columns"),
        ([["red", "green", "blue"], ["blue", "size_s"]], "already in another one-hot group"),
        ([["red", "green"]], r"row \d+ of the data is not one-hot over red, green"),
        ([["red", "purple"]], "no column named 'purple'"),
        ("red", "expected a list of lists"),
    ],
)
def test_bad_one_hot_groups_are_one_line_errors(groups, words):
    x, names = _colour_table()
    with pytest.raises(InvalidInputError, match=words):
        infer_schema(x, names, overrides={"one_hot": groups})
