"""HopSkipJump's starts: the nearest real input of another predicted class, noise as the fallback."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st


def _parity(b: np.ndarray) -> np.ndarray:
    """Class 1 where the mean grey level is above one half, else 0."""
    return (b.reshape(len(b), -1).mean(axis=1) > 0.5).astype(np.int64)


def test_start_prefers_the_nearest_input_of_another_class():
    from roadworthy.attacks.hopskipjump import StartPool

    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (6, 1, 4, 4)).astype(np.float32)
    y = np.array([0, 0, 1, 1, 2, 2])
    pool = StartPool(x, y)
    near = pool.nearest_other(x, y, 3)
    for i in range(6):
        others = np.flatnonzero(y != y[i])
        d = np.linalg.norm((x[others] - x[i]).reshape(len(others), -1), axis=1)
        assert list(near[i]) == list(others[np.argsort(d, kind="stable")][:3])
    # Fewer candidates than asked for: -1 pads; rows restricts the pool.
    assert (StartPool(x, y, rows=np.array([0, 2])).nearest_other(x[:1], y[:1], 3)[0] == [2, -1, -1]).all()
    with pytest.raises(ValueError, match="labels"):
        StartPool(x, y[:3])


def test_noise_is_the_fallback_when_the_pool_has_no_other_class():
    from roadworthy.attacks.hopskipjump import StartPool, hop_skip_jump_result

    rng = np.random.default_rng(1)
    x = rng.uniform(0.0, 0.4, (5, 1, 6, 6)).astype(np.float32)  # all class 0
    y = _parity(x)
    pool = StartPool(x, y)  # every pool input is class 0 too
    r = hop_skip_jump_result(_parity, x, y, max_queries=200, rng=rng, pool=pool)
    # Uniform noise has a mean near one half: about half the tries are class 1.
    assert (r.start == "noise").all()
    assert np.isfinite(r.distances).all() and (_parity(r.x_adv) != y).all()
    assert (r.distances <= r.start_distances + 1e-6).all()


@settings(max_examples=10, deadline=None)
@given(queries=st.integers(1, 120), seed=st.integers(0, 2**16))
def test_real_input_starts_stay_inside_the_query_cap_and_the_range(queries, seed):
    from roadworthy.attacks.hopskipjump import StartPool, hop_skip_jump_result
    from roadworthy.checks.attack import _common as common

    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 1, (6, 2, 5, 5)).astype(np.float32)
    w = rng.normal(size=(50, 3)).astype(np.float32)

    def labels(b: np.ndarray) -> np.ndarray:
        return (b.reshape(len(b), 50) @ w).argmax(1)

    y = labels(x)
    r = hop_skip_jump_result(labels, x, y, max_queries=queries, rng=rng, pool=StartPool(x, y))
    assert (r.queries <= queries).all()
    common.verify_budget(x, r.x_adv, np.where(np.isfinite(r.distances), r.distances, 0.0), "l2", "hsj")
    started = r.start != "none"
    assert (labels(r.x_adv[started]) != y[started]).all()
    assert (r.distances[started] <= r.start_distances[started] + 1e-6).all()
    # Every input whose class is not the only one in the batch starts from a real input.
    assert (r.start[[len(set(y) - {c}) > 0 for c in y]] == "input").all()
