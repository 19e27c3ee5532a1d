"""The batched JPEG emulation against Pillow's libjpeg round trip, and its array contract."""

from __future__ import annotations

import importlib.util
import io
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from roadworthy.shifts._jpeg import CHROMA_TABLE, CHUNK_PIXELS, LUMA_TABLE, jpeg_roundtrip, quant_table

# (height, width): not a multiple of 8 (padding), one MCU-aligned small size, a larger one
SIZES = [(20, 28), (32, 32), (96, 96)]


@lru_cache(maxsize=1)
def _sample_images() -> tuple[np.ndarray, ...]:
    """scikit-learn's two sample photographs, read directly (importing ``sklearn.datasets`` takes seconds)."""
    spec = importlib.util.find_spec("sklearn")
    assert spec is not None and spec.submodule_search_locations
    folder = Path(spec.submodule_search_locations[0]) / "datasets" / "images"
    return tuple(np.asarray(Image.open(folder / name).convert("RGB")) for name in ("china.jpg", "flower.jpg"))


def photos(n: int, h: int, w: int, channels: int = 3, seed: int = 0) -> np.ndarray:
    """``n`` random crops of scikit-learn's two sample photographs, resized (INTER_AREA): float32 NCHW."""
    import cv2

    rng = np.random.default_rng(seed)
    images = _sample_images()
    out = []
    for i in range(n):
        img = images[i % len(images)]
        side = int(rng.integers(64, min(img.shape[:2]) + 1))
        top = int(rng.integers(0, img.shape[0] - side + 1))
        left = int(rng.integers(0, img.shape[1] - side + 1))
        crop = cv2.resize(img[top : top + side, left : left + side], (w, h), interpolation=cv2.INTER_AREA)
        out.append(cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)[..., None] if channels == 1 else crop)
    return np.ascontiguousarray(np.stack(out).transpose(0, 3, 1, 2), dtype=np.float32) / np.float32(255)


def smooth(n: int, h: int, w: int, channels: int = 3) -> np.ndarray:
    """Slowly varying colour waves on 8-bit levels: little for 4:2:0 subsampling to lose."""
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    freq = rng.uniform(0.1, 0.4, (n, channels, 2, 1, 1))
    phase = rng.uniform(0, 2 * np.pi, (n, channels, 1, 1))
    x = 0.5 + 0.4 * np.sin(2 * np.pi * (freq[:, :, 0] * yy + freq[:, :, 1] * xx) + phase)
    return (np.rint(x * 255) / 255).astype(np.float32)


def pillow_roundtrip(x: np.ndarray, quality: int) -> np.ndarray:
    """Reference: each image saved by Pillow as JPEG (its defaults: 4:2:0 for colour) and decoded again."""
    out = np.empty_like(x)
    for i, img in enumerate(x):
        pixels = np.rint(img.transpose(1, 2, 0) * 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(pixels[..., 0] if img.shape[0] == 1 else pixels).save(buf, "JPEG", quality=quality)
        decoded = np.asarray(Image.open(buf), np.float32) / 255
        out[i] = decoded[None] if decoded.ndim == 2 else decoded.transpose(2, 0, 1)
    return out


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize(("h", "w"), SIZES)
def test_shape_dtype_range_and_8_bit_levels(channels: int, h: int, w: int) -> None:
    x = photos(3, h, w, channels)
    y = jpeg_roundtrip(x, 25)
    assert y.shape == x.shape and y.dtype == np.float32
    assert y.min() >= 0.0 and y.max() <= 1.0
    levels = y.astype(np.float64) * 255
    np.testing.assert_allclose(levels, np.rint(levels), atol=1e-3)


@pytest.mark.parametrize("quality", [10, 40])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize(("h", "w"), SIZES)
def test_close_to_pillow(quality: int, channels: int, h: int, w: int) -> None:
    x = photos(8 if h < 96 else 3, h, w, channels, seed=h + quality)
    diff = np.abs(jpeg_roundtrip(x, quality) - pillow_roundtrip(x, quality)).mean()
    # the contract is < 2 gray levels; the emulation gets well under 1 (about 0.05-0.6), kept as a margin
    assert diff < 1 / 255


def test_lower_quality_changes_more() -> None:
    x = photos(8, 32, 32)
    change = [np.abs(jpeg_roundtrip(x, q) - x).mean() for q in (10, 40, 80)]
    assert change[0] > change[1] > change[2] > 0


def test_quality_100_is_close_to_identity() -> None:
    # gray photographs, and colour only where the chroma is smooth: on detailed colour photographs 4:2:0
    # subsampling alone moves pixels by about 3 gray levels on average, in Pillow's round trip as in ours
    for x in (photos(4, 32, 32, channels=1), smooth(4, 32, 32)):
        assert np.abs(jpeg_roundtrip(x, 100) - x).mean() < 1 / 255


def test_deterministic_and_input_untouched() -> None:
    x = photos(4, 20, 28)
    before = x.copy()
    first, second = jpeg_roundtrip(x, 15), jpeg_roundtrip(x, 15)
    np.testing.assert_array_equal(first, second)
    np.testing.assert_array_equal(x, before)


def test_chunked_batch_matches_image_by_image() -> None:
    n = CHUNK_PIXELS // (16 * 16) + 3  # more 16 x 16 images than one chunk holds
    x = smooth(n, 16, 16)
    batch = jpeg_roundtrip(x, 30)
    for i in (0, n - 1):
        np.testing.assert_array_equal(batch[i : i + 1], jpeg_roundtrip(x[i : i + 1], 30))


def test_quant_tables_follow_ijg_scaling() -> None:
    np.testing.assert_array_equal(quant_table(LUMA_TABLE, 50), LUMA_TABLE)  # scale 100 %
    np.testing.assert_array_equal(quant_table(CHROMA_TABLE, 100), np.ones((8, 8)))
    assert quant_table(LUMA_TABLE, 10)[0, 0] == 80  # 5000 // 10 = 500 %
    assert quant_table(CHROMA_TABLE, 1).max() == 255  # clipped for baseline


@pytest.mark.parametrize("quality", [0, 101, 2.5, True])
def test_rejects_bad_quality(quality: float) -> None:
    with pytest.raises(ValueError, match="quality"):
        jpeg_roundtrip(photos(1, 16, 16), quality)


def test_rejects_bad_shape() -> None:
    with pytest.raises(ValueError, match="C in"):
        jpeg_roundtrip(np.zeros((1, 2, 16, 16), np.float32), 50)
