"""The fast paths of the shift building blocks agree with the plain computation they replace."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest

from roadworthy.shifts import SHIFTS, base
from roadworthy.shifts import _ops as ops


def photos(n: int, channels: int, size: int, seed: int = 0) -> np.ndarray:
    """Smooth random images with some edges: blurred noise plus a bright square."""
    rng = np.random.default_rng(seed)
    x = rng.random((n, channels, size, size), dtype=np.float32)
    x = ops.gaussian_blur(x, 1.5)
    x[:, :, size // 4 : size // 2, size // 3 : size // 2 + 3] = 0.9
    return x


def naive_motion_blur(x: np.ndarray, radius: float, sigma: float, angles: np.ndarray) -> np.ndarray:
    """Shift-and-add over every tap of the line, with replicated edges: the definition."""
    width = max(1, round(2 * radius + 1))
    n, _c, h, w = x.shape
    out = np.zeros_like(x, dtype=np.float64)
    for i in range(n):
        taps = ops.line_taps(width, max(sigma, 1e-3), float(round(angles[i])))
        taps = [t for t in taps if abs(t[0]) < h and abs(t[1]) < w]  # a line longer than the image is cut
        p = max(max(abs(t[0]), abs(t[1])) for t in taps)
        xp = np.pad(x[i], ((0, 0), (p, p), (p, p)), mode="edge")
        for dy, dx, wt in taps:
            out[i] += wt * xp[:, p + dy : p + dy + h, p + dx : p + dx + w]
    return out.astype(np.float32)


@pytest.mark.parametrize(("size", "channels"), [(20, 1), (40, 3), (96, 3)])
def test_motion_blur_pieces_match_shift_and_add(size: int, channels: int) -> None:
    x = photos(4, channels, size)
    angles = np.array([-45.0, -7.2, 30.0, 44.6]) if size != 20 else np.array([-135.0, -100.0, -45.0, -60.0])
    for radius, sigma in [(3, 1), (10, 6), (20, 15)]:
        np.testing.assert_allclose(
            ops.motion_blur(x, radius, sigma, angles), naive_motion_blur(x, radius, sigma, angles), atol=2e-6
        )


def test_line_segments_cover_every_tap_once_and_fit_the_direct_filter() -> None:
    taps = ops.line_taps(41, 15.0, 37.0)
    pieces = ops.line_segments(taps)
    assert len(pieces) > 1
    assert all(k.size <= ops.DIRECT_FILTER_CELLS for _, _, k in pieces)
    assert sum(float(k.sum()) for _, _, k in pieces) == pytest.approx(sum(t[2] for t in taps), abs=1e-6)
    assert sum(int((k != 0).sum()) for _, _, k in pieces) == len(taps)


@pytest.mark.parametrize("border", ["reflect", "replicate"])
def test_dft_filter_matches_opencv_filter2d(border: str) -> None:
    x = photos(2, 3, 70)
    kernel = ops.disk_kernel(8, 0.5)
    assert kernel.size > ops.DIRECT_FILTER_CELLS  # the DFT path
    b = cv2.BORDER_REFLECT_101 if border == "reflect" else cv2.BORDER_REPLICATE
    expect = np.stack([[cv2.filter2D(p, -1, kernel, borderType=b) for p in im] for im in x])
    np.testing.assert_allclose(ops.filter2d(x, kernel, border=border), expect, atol=1e-5)
    # an asymmetric kernel: correlation, not convolution
    skew = np.zeros((13, 13), np.float32)
    skew[2, 9], skew[6, 6], skew[11, 1] = 0.5, 0.3, 0.2
    expect = np.stack([[cv2.filter2D(p, -1, skew, borderType=b) for p in im] for im in x])
    np.testing.assert_allclose(ops.filter2d(x, skew, border=border), expect, atol=1e-5)


@pytest.mark.parametrize(("radius", "alias"), [(3, 0.1), (4, 0.5), (6, 0.5), (10, 0.5), (1.5, 0.1)])
def test_disk_kernel_trimming_keeps_the_blur(radius: float, alias: float) -> None:
    k = ops.disk_kernel(radius, alias)
    assert k.shape[0] == k.shape[1] and k.shape[0] % 2 == 1
    assert k.sum() == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(k, k[::-1, ::-1], atol=1e-7)
    # the disk itself is inside: every pixel within the radius has weight
    c = k.shape[0] // 2
    assert k.shape[0] >= 2 * int(radius) + 1
    assert k[c, c + int(radius)] > 0
    # padding the kernel back with zeros gives the same image
    x = photos(1, 1, 48)
    padded = np.pad(k, 2)
    np.testing.assert_allclose(ops.filter2d(x, k), ops.filter2d(x, padded), atol=1e-6)


def test_zoom_mean_keeps_flat_images_and_centres_the_zoom() -> None:
    flat = np.full((2, 3, 80, 80), 0.4, np.float32)
    np.testing.assert_allclose(ops.zoom_mean(flat, np.arange(1.0, 1.3, 0.05)), 0.4, atol=1e-6)
    # a zoom about the centre leaves the centre pixel's neighbourhood (a bright dot there) in place
    dot = np.zeros((1, 1, 81, 81), np.float32)
    dot[:, :, 38:43, 38:43] = 1.0
    zoomed = ops.zoom_center(dot, 1.2)
    assert zoomed[0, 0, 40, 40] == pytest.approx(1.0, abs=1e-6)
    ys, xs = np.nonzero(zoomed[0, 0] > 0.5)
    assert abs(ys.mean() - 40) <= 0.6 and abs(xs.mean() - 40) <= 0.6
    assert (zoomed[0, 0] > 0.5).sum() > 25  # magnified


def test_plasma_fractal_range_shape_and_determinism() -> None:
    a = ops.plasma_fractal(np.random.default_rng(3), 2, 64, 1.7)
    b = ops.plasma_fractal(np.random.default_rng(3), 2, 64, 1.7)
    assert a.shape == (2, 64, 64) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert a.min(axis=(1, 2)) == pytest.approx([0, 0]) and a.max(axis=(1, 2)) == pytest.approx([1, 1])
    # smooth: neighbouring values differ far less than random ones (diamond-square is a fractal, not noise)
    assert np.abs(np.diff(a, axis=2)).mean() < 0.25 * np.abs(a - a.mean()).mean()


def test_large_batches_are_transformed_in_chunks_with_the_same_result(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    x = photos(7, 3, 32)
    whole = SHIFTS["defocus_blur"].apply(x, 3, np.random.default_rng(0))
    monkeypatch.setattr(base, "CHUNK_BYTES", x[0].nbytes * 2)  # 2 images per call
    calls: list[int] = []
    fn = SHIFTS["defocus_blur"].fn
    shift = dataclasses.replace(
        SHIFTS["defocus_blur"], fn=lambda a, s, r: calls.append(len(a)) or fn(a, s, r)
    )
    chunked = shift.apply(x, 3, np.random.default_rng(0))
    assert calls == [2, 2, 2, 1]
    np.testing.assert_allclose(chunked, whole, atol=1e-6)
    # random shifts stay deterministic under chunking
    noisy = [SHIFTS["gaussian_noise"].apply(x, 2, np.random.default_rng(5)) for _ in range(2)]
    np.testing.assert_array_equal(noisy[0], noisy[1])
    assert noisy[0].min() >= 0.0 and noisy[0].max() <= 1.0
