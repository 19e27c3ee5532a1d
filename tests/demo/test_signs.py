"""The procedural road-sign generator: determinism, format, balance, and that classes look different."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from roadworthy.demo.signs import CLASS_NAMES, class_templates, make_signs
from roadworthy.errors import InvalidInputError

REQUIRED = ["stop", "yield", "no_entry", "speed_limit_30", "speed_limit_50", "speed_limit_80"]


def test_class_list_has_the_required_signs_and_at_least_twelve_classes() -> None:
    assert len(CLASS_NAMES) >= 12
    assert len(set(CLASS_NAMES)) == len(CLASS_NAMES)
    assert set(REQUIRED) <= set(CLASS_NAMES)


def test_same_seed_same_arrays_other_seed_other_arrays() -> None:
    x1, y1 = make_signs(40, seed=3)
    x2, y2 = make_signs(40, seed=3)
    x3, y3 = make_signs(40, seed=4)
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(y1, y2)
    assert not np.array_equal(x1, x3)
    assert not np.array_equal(y1, y3)


@settings(max_examples=15, deadline=None)
@given(n=st.integers(0, 40), seed=st.integers(0, 2**32 - 1), size=st.sampled_from([16, 32, 40]))
def test_format_range_and_balance(n: int, seed: int, size: int) -> None:
    x, y = make_signs(n, seed=seed, size=size)
    assert x.shape == (n, 3, size, size)
    assert x.dtype == np.float32 and y.dtype == np.int64
    assert np.isfinite(x).all()
    if n:
        assert x.min() >= 0.0 and x.max() <= 1.0
        counts = np.bincount(y, minlength=len(CLASS_NAMES))
        assert counts.max() - counts.min() <= 1
        assert counts.sum() == n


def test_every_class_appears_and_images_vary() -> None:
    x, y = make_signs(3 * len(CLASS_NAMES), seed=0)
    assert set(np.unique(y)) == set(range(len(CLASS_NAMES)))
    # no two images alike: position, scale, background and lighting all vary
    flat = x.reshape(len(x), -1)
    dist = np.abs(flat[:, None, :] - flat[None, :, :]).mean(axis=2)
    assert dist[~np.eye(len(x), dtype=bool)].min() > 0.02
    # and images use a good part of the range (not blank or saturated)
    assert (x.reshape(len(x), -1).std(axis=1) > 0.02).all()


def test_class_subset_labels_are_positions_in_the_subset() -> None:
    x, y = make_signs(20, seed=1, classes=["speed_limit_30", "stop"])
    assert set(np.unique(y)) == {0, 1}
    xi, yi = make_signs(20, seed=1, classes=[CLASS_NAMES.index("speed_limit_30"), 0])
    np.testing.assert_array_equal(x, xi)
    np.testing.assert_array_equal(y, yi)


def test_templates_have_the_colours_of_real_signs() -> None:
    t = class_templates(64)
    assert set(t) == set(CLASS_NAMES)

    def share(name: str, colour: tuple[float, float, float]) -> float:
        rgba = t[name]
        on = rgba[..., 3] > 0.99
        rgb = rgba[on][:, :3] / rgba[on][:, 3:]
        return float((np.abs(rgb - np.asarray(colour)).max(axis=1) < 0.2).mean())

    red, white, blue, yellow = (0.78, 0.09, 0.12), (0.96, 0.96, 0.95), (0.07, 0.31, 0.69), (0.98, 0.77, 0.07)
    assert share("stop", red) > 0.6 and share("stop", white) > 0.1
    assert share("no_entry", red) > 0.6 and share("no_entry", white) > 0.1
    assert share("yield", red) > 0.4 and share("yield", white) > 0.2
    for limit in ("speed_limit_30", "speed_limit_50", "speed_limit_80"):
        assert share(limit, white) > 0.3 and share(limit, red) > 0.25
    for name in ("roundabout", "turn_left", "turn_right", "keep_right"):
        assert share(name, blue) > 0.6
    assert share("priority_road", yellow) > 0.3
    # the digits make the speed limits differ from each other
    d = [t[f"speed_limit_{v}"][..., :3] for v in (30, 50, 80)]
    for i in range(3):
        for j in range(i + 1, 3):
            assert (np.abs(d[i] - d[j]).max(axis=2) > 0.5).mean() > 0.005  # over 20 of 4096 pixels
    # turn_left is the mirror image of turn_right
    assert np.abs(t["turn_left"][:, ::-1] - t["turn_right"]).mean() < 0.01
    assert np.abs(t["turn_left"] - t["turn_right"]).mean() > 0.03


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n": -1}, "`n`"),
        ({"n": 2.5}, "`n`"),
        ({"size": 8}, "`size`"),
        ({"classes": ["stop", "bogus"]}, "bogus"),
        ({"classes": [99]}, "99"),
        ({"classes": ["stop", "stop"]}, "once"),
    ],
)
def test_bad_arguments_name_the_parameter(kwargs: dict, match: str) -> None:
    args = {"n": 4, "seed": 0, **kwargs}
    with pytest.raises(InvalidInputError, match=match):
        make_signs(**args)
