"""The shifts' contract: shape, dtype, range, identity at severity 0, determinism, growing damage."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from roadworthy.errors import InvalidInputError
from roadworthy.shifts import SHIFTS, apply_shift
from roadworthy.shifts import _ops as ops
from roadworthy.shifts.base import large_weight, sized, table_name

NAMES = sorted(SHIFTS)

# Shifts whose published severity table is not monotone in mean absolute change, by design:
NOT_MONOTONE = {
    # severities 1-2 desaturate, 3-5 oversaturate: two directions, not one growing change
    "saturate": "desaturates at 1-2 and oversaturates at 3-5",
    # the tables shrink the random affine part while growing the local warp: the pixel change shrinks
    "elastic_transform": "affine jitter falls while the local displacement grows",
    # CIFAR-10-C lowers the image's weight while raising the frost's: the net change depends on brightness
    "frost": "the image weight falls as the texture weight rises",
    # severities 4-5 switch from water drops to (smaller) mud splashes
    "spatter": "water at 1-3, mud at 4-5",
    # CIFAR-10-C's 4 -> 5 keeps the scrambling and raises the blur, which averages scrambled pixels back
    "glass_blur": "more blur at the same scrambling partly undoes the scrambling",
}


def scenes(n: int, channels: int, h: int, w: int | None = None, seed: int = 0) -> np.ndarray:
    """Structured test images: a shaded background with a few flat-coloured discs (edges, flat areas)."""
    w = w or h
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    yy, xx = yy / h, xx / w
    out = np.empty((n, channels, h, w), np.float32)
    for i in range(n):
        base = (
            rng.uniform(0.2, 0.8, channels)[:, None, None]
            + rng.uniform(-0.2, 0.2, channels)[:, None, None] * yy
        )
        img = np.broadcast_to(base, (channels, h, w)).copy()
        for _ in range(3):
            cy, cx, r = rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8), rng.uniform(0.1, 0.3)
            img[:, np.hypot(yy - cy, xx - cx) < r] = rng.uniform(0, 1, channels)[:, None]
        out[i] = img
    return np.clip(out, 0, 1)


def damage(name: str, x: np.ndarray, severity: int, seed: int = 7) -> float:
    return float(np.abs(SHIFTS[name].apply(x, severity, np.random.default_rng(seed)) - x).mean())


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(("size", "channels"), [(16, 1), (16, 3), (32, 1), (32, 3)])
def test_contract_small(name: str, size: int, channels: int) -> None:
    x = scenes(3, channels, size)
    for severity in range(6):
        a = SHIFTS[name].apply(x, severity, np.random.default_rng(severity))
        b = SHIFTS[name].apply(x, severity, np.random.default_rng(severity))
        assert a.shape == x.shape and a.dtype == np.float32
        assert np.isfinite(a).all() and a.min() >= 0.0 and a.max() <= 1.0
        np.testing.assert_array_equal(a, b)  # same seed, same output
    np.testing.assert_array_equal(SHIFTS[name].apply(x, 0, np.random.default_rng(0)), x)


@pytest.mark.parametrize("name", NAMES)
def test_contract_224(name: str) -> None:
    for channels in (1, 3):
        x = scenes(1, channels, 224, seed=channels)
        for severity in (1, 5):
            y = SHIFTS[name].apply(x, severity, np.random.default_rng(0))
            assert y.shape == x.shape and y.dtype == np.float32 and y.min() >= 0.0 and y.max() <= 1.0
            if name != "saturate" or channels == 3:  # a gray image has no saturation to change
                assert np.abs(y - x).mean() > 1e-4, f"{name} did nothing at 224 px, severity {severity}"


@settings(max_examples=60, deadline=None)
@given(
    name=st.sampled_from(NAMES),
    severity=st.integers(0, 5),
    seed=st.integers(0, 2**32 - 1),
    h=st.integers(16, 48),
    w=st.integers(16, 48),
    channels=st.sampled_from([1, 3]),
    n=st.integers(1, 3),
)
def test_any_size_keeps_range_and_is_deterministic(name, severity, seed, h, w, channels, n) -> None:
    x = scenes(n, channels, h, w, seed=seed % 1000)
    a = apply_shift(name, x, severity, np.random.default_rng(seed))
    assert a.shape == x.shape and a.dtype == np.float32
    assert a.min() >= 0.0 and a.max() <= 1.0
    np.testing.assert_array_equal(a, apply_shift(name, x, severity, np.random.default_rng(seed)))


@pytest.mark.parametrize("name", [n for n in NAMES if n not in NOT_MONOTONE])
def test_damage_grows_with_severity(name: str, digits_split) -> None:
    # averaged over a batch; random shifts may dip by a hair (0.002 = half a grey level, or 3%)
    for x in (digits_split[2][:24], scenes(16, 3, 32), scenes(16, 1, 32, seed=1)):
        d = [damage(name, x, s) for s in range(6)]
        assert d[0] == 0.0 and d[5] > 0.0, d
        for k in range(5):
            assert d[k + 1] >= d[k] - max(0.002, 0.03 * d[k]), f"{name}: damage by severity {np.round(d, 4)}"


def test_every_shift_has_a_group_and_a_description() -> None:
    assert len(SHIFTS) >= 28
    for s in SHIFTS.values():
        assert s.group in ("noise", "blur", "weather", "digital", "extra", "article", "geometry")
        assert s.description
    assert sum(s.imagenet_c for s in SHIFTS.values()) == 15


def test_bad_input_is_rejected_with_a_clear_message() -> None:
    x = scenes(1, 3, 16)
    with pytest.raises(InvalidInputError, match=r"`severity` must be an integer in \[0, 5\]\. Got 6"):
        apply_shift("fog", x, 6, np.random.default_rng(0))
    with pytest.raises(InvalidInputError, match="`name` must be one of"):
        apply_shift("hail", x, 1, np.random.default_rng(0))
    with pytest.raises(InvalidInputError, match="at least 16 px"):
        apply_shift("fog", np.zeros((1, 3, 8, 8), np.float32), 1, np.random.default_rng(0))
    with pytest.raises(InvalidInputError, match="C 1 or 3"):
        apply_shift("fog", np.zeros((1, 2, 16, 16), np.float32), 1, np.random.default_rng(0))


def test_severity_tables_follow_image_size() -> None:
    small, large = [1, 2, 3, 4, 5], [10, 20, 30, 40, 50]
    assert sized(2, 32, small, large)[0] == 2 and sized(2, 224, small, large)[0] == 20
    assert sized(2, 16, small, large, pixel=(0,))[0] == pytest.approx(2.0)  # not below CIFAR's pixels
    assert sized(2, 48, small, large, pixel=(0,))[0] == pytest.approx(3.0)  # 2 px at 32 -> 3 px at 48
    assert sized(2, 448, small, large, pixel=(0,))[0] == pytest.approx(40.0)
    mid = sized(2, 112, small, large)[0]
    assert 2 < mid < 20 and large_weight(112) == pytest.approx(0.5)
    assert (table_name(32), table_name(112), table_name(224)) == ("cifar", "interpolated", "imagenet")


def test_poisson_sampler_matches_the_poisson_law() -> None:
    x = np.full((1, 1, 200, 200), 100 / 255, np.float32)
    for c in (3.0, 60.0, 500.0):
        k = ops.poisson_scaled(x, c, np.random.default_rng(0)) * c
        lam = 100 / 255 * c
        assert abs(k.mean() - lam) < 4 * np.sqrt(lam / k.size) + 1e-3
        assert abs(k.var() / lam - 1) < 0.05
        assert np.allclose(k, np.round(k), atol=1e-3)


def test_brightness_and_saturate_equal_an_hsv_round_trip() -> None:
    from matplotlib.colors import hsv_to_rgb, rgb_to_hsv

    x = scenes(2, 3, 16, seed=3)
    hsv = rgb_to_hsv(x.transpose(0, 2, 3, 1).astype(np.float64))
    bright = hsv.copy()
    bright[..., 2] = np.clip(bright[..., 2] + 0.15, 0, 1)  # CIFAR table, severity 3
    expect = hsv_to_rgb(bright).transpose(0, 3, 1, 2)
    np.testing.assert_allclose(apply_shift("brightness", x, 3, np.random.default_rng(0)), expect, atol=1e-5)
    sat = hsv.copy()
    sat[..., 1] = np.clip(sat[..., 1] * 2 + 0.1, 0, 1)  # CIFAR table, severity 4
    expect = hsv_to_rgb(sat).transpose(0, 3, 1, 2)
    np.testing.assert_allclose(apply_shift("saturate", x, 4, np.random.default_rng(0)), expect, atol=1e-5)


def test_jpeg_matches_pillow_at_the_same_quality() -> None:
    import io

    from PIL import Image

    x = scenes(2, 3, 32, seed=5)
    ours = apply_shift("jpeg_compression", x, 5, np.random.default_rng(0))  # CIFAR quality 40
    for i in range(2):
        buf = io.BytesIO()
        Image.fromarray(np.rint(x[i].transpose(1, 2, 0) * 255).astype(np.uint8)).save(buf, "JPEG", quality=40)
        ref = np.asarray(Image.open(buf), np.float32).transpose(2, 0, 1) / 255
        assert np.abs(ours[i] - ref).mean() < 2 / 255
