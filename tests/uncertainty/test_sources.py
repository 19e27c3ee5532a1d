"""Generated OOD inputs keep the model's input format; heavy shifts really change the inputs."""

from __future__ import annotations

import numpy as np
import pytest

from roadworthy.errors import InvalidInputError
from roadworthy.shifts import apply_shift
from roadworthy.uncertainty import sources


@pytest.mark.parametrize("kind", sources.FAR_IMAGE_SOURCES)
@pytest.mark.parametrize("shape", [(1, 16, 16), (3, 24, 32)])
def test_far_sources_have_the_input_shape_and_range(kind: str, shape: tuple[int, int, int]) -> None:
    x = sources.far_ood_images(kind, 6, shape, np.random.default_rng(0))
    assert x.shape == (6, *shape) and x.dtype == np.float32
    assert x.min() >= 0.0 and x.max() <= 1.0
    again = sources.far_ood_images(kind, 6, shape, np.random.default_rng(0))
    np.testing.assert_array_equal(x, again)


def test_photo_crops_are_photos_not_noise() -> None:
    x = sources.photo_crops(20, (3, 16, 16), np.random.default_rng(0))
    # neighbouring pixels of a photo are alike; of uniform noise they are not
    assert np.abs(np.diff(x, axis=3)).mean() < 0.12
    assert x.std() > 0.05
    grey = sources.to_channels(x[0], 1)
    assert grey.shape == (1, 16, 16)


@pytest.mark.parametrize("name", sources.NEAR_IMAGE_SHIFTS)
def test_heavy_shifts_keep_format_and_change_the_image(digits_data, name: str) -> None:
    x = digits_data.x[:16]
    out, origin = sources.shifted_images(x, name, 5, np.random.default_rng(0), apply_shift)
    assert out.shape == x.shape and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert origin in ("shift suite", "built-in")
    assert np.abs(out - x).mean() > 0.005  # a shift that changes nothing is replaced by the built-in one
    assert (
        np.abs(sources._fallback_shift(x.astype(np.float64), name, 5, np.random.default_rng(0)) - x).mean()
        > 0.005
    )


def test_tabular_sources() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3)).astype(np.float32)
    x[:, 1] = 2 * x[:, 0]
    shuffled = sources.shuffled_columns(x, rng)
    np.testing.assert_allclose(np.sort(shuffled, axis=0), np.sort(x, axis=0))  # marginals kept
    assert abs(np.corrcoef(shuffled[:, 0], shuffled[:, 1])[0, 1]) < 0.3  # dependence broken
    for kind in sources.FAR_TABULAR_SOURCES:
        assert sources.far_ood_tabular(kind, 10, x, rng).shape == (10, 3)
    with pytest.raises(InvalidInputError, match="unknown far-OOD source"):
        sources.far_ood_tabular("photos", 10, x, rng)
