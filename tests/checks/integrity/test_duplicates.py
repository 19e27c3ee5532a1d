from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from roadworthy.checks.integrity.duplicates import Duplicates, Leakage, _groups
from roadworthy.data.base import Dataset
from roadworthy.errors import InvalidInputError


def _with_copies(ctx):
    """Training data with rows 100 and 200 copied exactly (as rows n, n+1), row 300 copied with one grey
    level of noise (row n+2), and row 400 copied exactly under another label (row n+3)."""
    train = ctx.train_data
    rng = np.random.default_rng(0)
    near = np.clip(train.x[300] + rng.choice([-1, 1], size=train.x[300].shape) / 255, 0, 1)
    x = np.concatenate([train.x, train.x[[100, 200]], near[None], train.x[[400]]]).astype(np.float32)
    y = np.concatenate([train.y, train.y[[100, 200, 300]], [(train.y[400] + 1) % 10]])
    return replace(train, x=x, y=y), len(train.y)


def test_no_false_pairs_on_clean_data(ctx):
    dup = Duplicates().run(ctx)
    leak = Leakage().run(ctx)
    assert dup.details["pairs"] == [] and dup.metrics["integrity.duplicates.count"] == 0
    assert leak.details["pairs"] == [] and leak.metrics["integrity.leakage.count"] == 0


def test_duplicates_found_exactly_where_planted(ctx):
    ctx.train_data, n = _with_copies(ctx)
    out = Duplicates().run(ctx)
    pairs = {(i, j): d for i, j, d in out.details["pairs"]}
    assert set(pairs) == {(100, n), (200, n + 1), (300, n + 2), (400, n + 3)}
    assert pairs[(100, n)] == 0 and pairs[(400, n + 3)] == 0
    assert 0 < pairs[(300, n + 2)] < 0.01
    assert out.metrics["integrity.duplicates.count"] == 4
    assert out.metrics["integrity.duplicates.conflicting_labels"] == 1
    assert [p[:2] for p in out.details["conflicting_pairs"]] == [[400, n + 3]]
    assert out.examples[0].title.startswith("training #400")  # conflicts shown first


def test_leakage_found_exactly_where_planted(ctx):
    test = ctx.data
    x = test.x.copy()
    x[[5, 50]] = ctx.train_data.x[[7, 70]]
    x[123] = np.clip(ctx.train_data.x[11] + 0.5 / 255, 0, 1)
    ctx.data = replace(test, x=x)
    out = Leakage().run(ctx)
    assert sorted((i, j) for i, j, _ in out.details["pairs"]) == [(5, 7), (50, 70), (123, 11)]
    assert out.details["indices"] == [5, 50, 123]
    assert out.metrics["integrity.leakage.count"] == 3
    assert out.metrics["integrity.leakage.rate"] == pytest.approx(3 / len(test.y))


def test_tabular_duplicates_use_standardised_rows(ctx):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 5)).astype(np.float32) * [1, 10, 100, 1000, 0.1]
    x[299] = x[3]
    x[298] = x[4] * (1 + 1e-5)
    ctx.train_data = Dataset(x=x.astype(np.float32), y=rng.integers(0, 10, 300), modality="tabular")
    out = Duplicates().run(ctx)
    assert sorted((i, j) for i, j, _ in out.details["pairs"]) == [(3, 299), (4, 298)]


def test_bad_radius_is_named(ctx):
    with pytest.raises(InvalidInputError, match="radius"):
        Duplicates(Duplicates.Params(radius=2.0)).run(ctx)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 19), st.integers(0, 19)), max_size=30))
def test_redundant_count_is_samples_minus_groups(edges):
    pairs = np.array([(i, j, 0.0) for i, j in edges], dtype=float).reshape(-1, 3)
    # reference: connected components by repeated label propagation
    label = list(range(20))
    for _ in range(20):
        for i, j in edges:
            label[i] = label[j] = min(label[i], label[j])
    assert _groups(20, pairs) == 20 - len(set(label))
