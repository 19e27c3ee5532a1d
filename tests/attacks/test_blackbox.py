"""Black-box attack algorithms fool an ONNX export of the digits CNN through nothing but its outputs."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from roadworthy.attacks.hopskipjump import hop_skip_jump
from roadworthy.attacks.laser import laser_attack, render_laser, wavelength_to_rgb
from roadworthy.attacks.pixels import render_line, render_pixels
from roadworthy.attacks.square import p_schedule, square_attack
from roadworthy.checks.attack import _common as common


def _linear_scores(seed: int):
    w = np.random.default_rng(seed).normal(size=(2 * 6 * 6, 4)).astype(np.float32)

    def scores(b: np.ndarray) -> np.ndarray:
        return b.reshape(b.shape[0], w.shape[0]) @ w  # also for an empty batch

    return scores


@pytest.fixture(scope="module")
def correct_inputs(digits_onnx_model, digits_data):
    """The first 24 test digits the ONNX model classifies correctly."""
    x, y = digits_data.x[:40], digits_data.y[:40]
    ok = digits_onnx_model.predict(x).argmax(1) == y
    return x[ok][:24], y[ok][:24]


def test_square_attack_fools_the_onnx_model(digits_onnx_model, correct_inputs):
    x, y = correct_inputs

    def logits(b):
        return digits_onnx_model.predict(b)

    adv, queries = square_attack(logits, x, y, eps=0.3, max_queries=150, rng=np.random.default_rng(0))
    common.verify_budget(x, adv, 0.3, "linf", "square")
    fooled = logits(adv).argmax(1) != y
    assert fooled.mean() > 0.9
    assert queries.max() <= 150 and queries[fooled].mean() < 100


def test_square_p_schedule_halves():
    assert p_schedule(0.8, 0, 10000) == 0.8
    assert p_schedule(0.8, 30, 10000) == 0.4
    assert p_schedule(0.8, 9000, 10000) == pytest.approx(0.8 / 512)


def test_hopskipjump_fools_the_onnx_model_with_labels_only(digits_onnx_model, correct_inputs):
    x, y = correct_inputs[0][:12], correct_inputs[1][:12]
    calls = []

    def labels(b):
        calls.append(len(b))
        return digits_onnx_model.predict(b).argmax(1)

    adv, dist, queries = hop_skip_jump(labels, x, y, max_queries=600, rng=np.random.default_rng(0))
    assert np.isfinite(dist).all()
    assert (labels(adv) != y).all()
    assert np.allclose(dist, common.perturbation_norms(x, adv, "l2"), atol=1e-4)
    assert queries.max() <= 600
    assert sum(calls[:-1]) == queries.sum()  # every query is counted
    # The iterations shrink the distance well below where the noise start lies (~ sqrt(256) * 0.4).
    assert np.median(dist) < 2.5


def test_renderers_respect_their_budgets():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (5, 3, 16, 16)).astype(np.float32)
    params = rng.uniform([0, 0, 0, 0, 0] * 3, [16, 16, 1, 1, 1] * 3, size=(5, 15))
    out = render_pixels(x, params)
    assert (common.perturbation_norms(x, out, "l0") <= 3).all()
    lines = render_line(6)(x, rng.uniform([0, 0, 0, 0, 0, 0], [2, 1, 1, 1, 1, 1], size=(5, 6)))
    changed = np.abs(lines - x).max(axis=1) > 0
    assert (changed.sum(axis=(1, 2)) <= 6).all()
    for img in changed:  # all changed pixels lie on one row or one column
        r, c = np.nonzero(img)
        assert len(set(r)) <= 1 or len(set(c)) <= 1
    beam = render_laser(x, np.array([[550.0, 0.3, 0.0, 2.0, 1.0]] * 5))
    common.verify_budget(x, beam, None, None, "laser")
    assert (beam >= x - 1e-6).all()  # light only adds


def test_wavelength_colours():
    rgb = wavelength_to_rgb(np.array([440.0, 490.0, 510.0, 580.0, 645.0, 900.0]))
    np.testing.assert_allclose(
        rgb, [[0, 0, 1], [0, 1, 1], [0, 1, 0], [1, 1, 0], [1, 0, 0], [0, 0, 0]], atol=1e-9
    )


def test_blackbox_attacks_are_deterministic(digits_onnx_model, correct_inputs):
    x, y = correct_inputs
    a = laser_attack(
        lambda b: digits_onnx_model.predict(b), x[:6], y[:6], 1, 10, rng=np.random.default_rng(3)
    )
    b = laser_attack(
        lambda b: digits_onnx_model.predict(b), x[:6], y[:6], 1, 10, rng=np.random.default_rng(3)
    )
    for u, v in zip(a, b, strict=True):
        np.testing.assert_array_equal(u, v)


@settings(max_examples=20, deadline=None)
@given(eps=st.floats(1e-3, 1.0), queries=st.integers(1, 30), seed=st.integers(0, 2**16))
def test_square_stays_inside_eps_range_and_query_cap(eps, queries, seed):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 1, (5, 2, 6, 6)).astype(np.float32)
    x[0] = 0.0
    x[1] = 1.0
    scores = _linear_scores(seed)
    y = scores(x).argmax(1)
    adv, q = square_attack(scores, x, y, eps, queries, rng=rng)
    common.verify_budget(x, adv, eps, "linf", "square")
    assert (q <= queries).all() and (q >= 1).all()


@settings(max_examples=10, deadline=None)
@given(queries=st.integers(20, 200), seed=st.integers(0, 2**16))
def test_hopskipjump_never_exceeds_its_query_cap(queries, seed):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 1, (4, 2, 6, 6)).astype(np.float32)
    scores = _linear_scores(seed)
    y = scores(x).argmax(1)
    adv, dist, q = hop_skip_jump(lambda b: scores(b).argmax(1), x, y, max_queries=queries, rng=rng)
    assert (q <= queries).all()
    common.verify_budget(x, adv, np.where(np.isfinite(dist), dist, 0.0), "l2", "hsj")
    ok = np.isfinite(dist)
    assert (scores(adv[ok]).argmax(1) != y[ok]).all()
