"""Planting backdoors: where the trigger goes, how many samples, which labels."""

from __future__ import annotations

import numpy as np
import pytest

from roadworthy.backdoor import (
    apply_trigger,
    badnets_trigger,
    blended_trigger,
    plant,
    plant_all_to_all,
    plant_badnets,
)
from roadworthy.errors import InvalidInputError


def _data(n=200, k=5, shape=(1, 12, 12), seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, *shape)).astype(np.float32) * 0.5, rng.integers(0, k, n)


def test_badnets_trigger_is_a_square_in_the_corner():
    t = badnets_trigger((3, 16, 16), size=3, corner="bottom_right", margin=1)
    assert t.mask.shape == (1, 16, 16) and t.pattern.shape == (3, 16, 16)
    assert t.l1 == 9
    assert t.mask[0, 12:15, 12:15].all() and t.mask.sum() == 9
    tl = badnets_trigger((1, 16, 16), size=4, corner="top_left", margin=0)
    assert tl.mask[0, :4, :4].all() and tl.mask.sum() == 16


def test_plant_poisons_the_requested_share_of_other_classes():
    x, y = _data()
    p = plant_badnets(x, y, target=2, rate=0.1, seed=3)
    assert len(p.indices) == 20
    assert (p.y[p.indices] == 2).all() and (p.source_labels != 2).all()
    assert (p.source_labels == y[p.indices]).all()
    untouched = ~p.is_poisoned
    assert np.array_equal(p.x[untouched], x[untouched]) and np.array_equal(p.y[untouched], y[untouched])
    # the square is white on every poisoned input, and the caller's arrays are not modified
    assert (p.x[p.indices][:, :, 8:11, 8:11] == 1.0).all()
    assert not (x[:, :, 8:11, 8:11] == 1.0).all()
    again = plant_badnets(x, y, target=2, rate=0.1, seed=3)
    assert np.array_equal(again.indices, p.indices)


def test_blended_trigger_mixes_the_whole_input():
    x, y = _data()
    t = blended_trigger(x.shape[1:], alpha=0.2, seed=0)
    out = apply_trigger(x[:4], t.mask, t.pattern)
    assert np.allclose(out, 0.8 * x[:4] + 0.2 * t.pattern, atol=1e-6)
    p = plant(x, y, t, target=0, rate=0.05)
    assert len(p.indices) == 10 and p.x.min() >= 0 and p.x.max() <= 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"rate": 0.0}, "`rate` must be in"), ({"rate": 1.5}, "`rate` must be in"), ({"size": 20}, "must fit")],
)
def test_bad_parameters_name_themselves(kwargs, message):
    x, y = _data()
    with pytest.raises(InvalidInputError, match=message):
        plant_badnets(x, y, **kwargs)


def test_tabular_input_is_refused():
    with pytest.raises(InvalidInputError, match=r"\(N, C, H, W\)"):
        plant_badnets(np.zeros((10, 4), np.float32), np.zeros(10, int))


def test_all_to_all_relabels_every_class_to_the_next():
    x, y = _data(n=300, k=5)
    t = badnets_trigger((1, 12, 12), size=3)
    p = plant_all_to_all(x, y, t, rate=0.2, n_classes=5, seed=1)
    assert len(p.indices) == 60 and p.target == -1
    assert (p.y[p.indices] == (y[p.indices] + 1) % 5).all()
    assert np.array_equal(p.targets, p.y[p.indices]) and (p.source_labels == y[p.indices]).all()
    # drawn from every class (not only from classes other than one target), every class is a target
    assert set(p.source_labels.tolist()) == set(range(5)) and p.target_classes == list(range(5))
    assert (p.x[p.indices][:, :, 8:11, 8:11] == 1.0).all()
    untouched = ~p.is_poisoned
    assert np.array_equal(p.y[untouched], y[untouched])
    # all-to-one keeps its single target
    assert plant_badnets(x, y, target=2, rate=0.1).target_classes == [2]
    with pytest.raises(InvalidInputError, match="n_classes"):
        plant_all_to_all(x, y, t, rate=0.1, n_classes=3)
