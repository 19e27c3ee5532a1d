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


def test_a_large_inputs_probes_in_blocks_estimate_the_boundary_normal(monkeypatch):
    """Probes of one large input are drawn and asked in blocks; the estimate of a linear boundary's
    normal is as good as the one-block estimate (cosine with the true normal)."""
    from roadworthy.attacks import hopskipjump as hsj

    rng = np.random.default_rng(0)
    d = 3 * 24 * 24
    w = rng.standard_normal(d).astype(np.float32)
    w /= np.linalg.norm(w)
    x_b = np.full((1, 3, 24, 24), 0.5, np.float32)

    def labels(b: np.ndarray) -> np.ndarray:
        return (b.reshape(len(b), -1) - 0.5) @ w > 0  # class 1 on the positive side

    oracle = hsj._Oracle(lambda b: labels(b).astype(np.int64), np.array([0]))
    whole = hsj._estimate_gradient(oracle, np.array([0]), x_b, 400, 0.05, np.random.default_rng(1))
    monkeypatch.setattr(hsj, "_PROBE_BYTES", 37 * d * 4)  # blocks of 37 probes
    asked = float(oracle.queries[0])
    blocks = hsj._estimate_gradient(oracle, np.array([0]), x_b, 400, 0.05, np.random.default_rng(1))
    assert oracle.queries[0] - asked == 400  # every probe asked once
    cos_whole = float(whole.reshape(-1) @ w)
    cos_blocks = float(blocks.reshape(-1) @ w)
    assert cos_blocks > 0.3 and abs(cos_blocks - cos_whole) < 0.05
    assert np.linalg.norm(blocks) == pytest.approx(1.0, abs=1e-4)


def test_pixel_populations_in_memory_bounded_calls_give_the_same_search(monkeypatch):
    """The few-pixel search sends its candidates in calls of at most EVAL_BYTES of images; the search
    (a deterministic function of the scores) is the same as in one call per generation."""
    from roadworthy.attacks import pixels

    rng = np.random.default_rng(2)
    x = rng.uniform(0, 1, (6, 3, 8, 8)).astype(np.float32)
    w = rng.standard_normal((2, 3 * 8 * 8)).astype(np.float32)
    sizes: list[int] = []

    def probs(b: np.ndarray) -> np.ndarray:
        sizes.append(len(b))
        z = b.reshape(len(b), -1) @ w.T
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    y = probs(x).argmax(axis=1)
    one = pixels.few_pixel(probs, x, y, 2, 10, 4, 0.5, np.random.default_rng(3))
    monkeypatch.setattr(pixels, "EVAL_BYTES", 2 * 10 * 3 * 8 * 8 * 4)  # two inputs' candidates per call
    sizes.clear()
    blocked = pixels.few_pixel(probs, x, y, 2, 10, 4, 0.5, np.random.default_rng(3))
    assert max(sizes) <= 20
    for a, b in zip(one, blocked, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)
