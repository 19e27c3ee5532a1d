"""The procedural road-sign generator: determinism, format, balance, and that classes look different."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import types

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from roadworthy.demo import _portable as pt
from roadworthy.demo import signs
from roadworthy.demo.signs import CLASS_NAMES, class_templates, make_signs
from roadworthy.errors import InvalidInputError
from tests.demo.kernels import generic_env, native_env

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


def test_pixels_are_eight_bit_values() -> None:
    x, _ = make_signs(30, seed=2)
    k = x * np.float32(255)
    np.testing.assert_array_equal(k, np.round(k))
    # and the float is exactly k / 255, the same division on every machine
    np.testing.assert_array_equal(np.round(k).astype(np.float32) / np.float32(255), x)


_FINGERPRINT = (
    "import hashlib, sys; from roadworthy.demo.signs import make_signs; "
    "x, y = make_signs(45, seed=11, size=int(sys.argv[1])); "
    "print(hashlib.sha256(x.tobytes() + y.tobytes()).hexdigest())"
)


@pytest.mark.parametrize("size", [32, 40])
def test_same_bytes_with_generic_and_with_native_cpu_kernels(size: int) -> None:
    # another CPU takes other SIMD paths in NumPy and OpenCV; the generic kernels are the paths an old
    # CPU would take, so equal bytes here is what "the same on every x86-64 CPU" can be checked by
    digests = [
        subprocess.run(
            [sys.executable, "-c", _FINGERPRINT, str(size)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        for env in (native_env(), generic_env())
    ]
    x, y = make_signs(45, seed=11, size=size)
    assert digests[0] == digests[1] == hashlib.sha256(x.tobytes() + y.tobytes()).hexdigest()


def test_generator_uses_no_cpu_dispatched_float_kernels(monkeypatch: pytest.MonkeyPatch) -> None:
    """OpenCV may only rasterise onto uint8 canvases; NumPy's transcendental and BLAS routines are
    not used (their last bit depends on the CPU); the portable module does that arithmetic."""
    import cv2

    drawn: set[str] = set()

    def rasteriser(name: str):
        real = getattr(cv2, name)

        def draw(img, *args, **kwargs):
            assert img.dtype == np.uint8, f"cv2.{name} drew on a {img.dtype} image"
            drawn.add(name)
            return real(img, *args, **kwargs)

        return draw

    allowed = types.ModuleType("cv2")
    for name in ("fillPoly", "fillConvexPoly", "circle", "line", "ellipse", "putText"):
        setattr(allowed, name, rasteriser(name))
    allowed.getTextSize = cv2.getTextSize
    allowed.FONT_HERSHEY_DUPLEX = cv2.FONT_HERSHEY_DUPLEX
    monkeypatch.setitem(sys.modules, "cv2", allowed)

    def forbidden(*args, **kwargs):
        raise AssertionError("a CPU-dispatched NumPy routine was called")

    for name in ("sin", "cos", "tan", "exp", "log", "power", "dot", "matmul", "einsum"):
        monkeypatch.setattr(np, name, forbidden)
    monkeypatch.setattr(np.linalg, "norm", forbidden)
    signs._template.cache_clear()
    try:
        _, y = make_signs(4 * len(CLASS_NAMES), seed=5)
    finally:
        signs._template.cache_clear()
    assert set(np.unique(y)) == set(range(len(CLASS_NAMES)))
    assert {"fillPoly", "circle", "line", "putText"} <= drawn


def test_portable_functions_match_numpy_closely() -> None:
    x = np.linspace(-40.0, 40.0, 20001)
    sin, cos = pt.sin_cos(x)
    np.testing.assert_allclose(sin, np.sin(x), rtol=0, atol=1e-15)
    np.testing.assert_allclose(cos, np.cos(x), rtol=0, atol=1e-15)
    np.testing.assert_allclose(pt.exp(x / 2), np.exp(x / 2), rtol=1e-15)
    pos = np.exp(np.linspace(-30.0, 30.0, 2001))
    np.testing.assert_allclose(pt.log(pos), np.log(pos), rtol=0, atol=1e-14)
    u = np.linspace(0.0, 1.0, 101)
    np.testing.assert_allclose(pt.power(u, 0.8), u**0.8, rtol=1e-14, atol=0)
    z = pt.standard_normal(np.random.default_rng(0), (20000,))
    assert abs(z.mean()) < 0.03 and abs(z.std() - 1.0) < 0.03
    # box resampling preserves the mean, cubic interpolation reproduces a constant
    img = np.random.default_rng(1).random((64, 48, 3))
    small = pt.resize_area(img, 16, 20)
    assert small.shape == (16, 20, 3)
    np.testing.assert_allclose(small.mean(axis=(0, 1)), img.mean(axis=(0, 1)), rtol=1e-12)
    flat = pt.resample(np.full((5, 1), 0.3), 0, pt.cubic_taps(5, 17))
    np.testing.assert_allclose(flat, 0.3, rtol=1e-15)


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
