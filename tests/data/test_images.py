"""A class-per-folder image tree: names from folders, one common size, non-images skipped with one warning."""

from __future__ import annotations

import numpy as np
import pytest

from roadworthy.data import load_data
from roadworthy.errors import InvalidInputError, RoadworthyWarning


def _png(path, array):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


@pytest.fixture()
def tree(tmp_path):
    """signs/{stop,yield}/: RGB PNGs of two sizes, a grey one, a stray README.txt and a notes.md."""
    rng = np.random.default_rng(0)
    root = tmp_path / "signs"
    first = rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)
    _png(root / "stop" / "a.png", first)
    _png(root / "stop" / "b.png", rng.integers(0, 256, (24, 20, 3), dtype=np.uint8))
    _png(root / "yield" / "c.png", rng.integers(0, 256, (12, 10), dtype=np.uint8))
    (root / "README.txt").write_text("road signs")
    (root / "yield" / "notes.md").write_text("not an image")
    return root, first


def test_folder_tree_loads_with_one_warning_counting_skipped_files(tree):
    root, first = tree
    with pytest.warns(
        RoadworthyWarning, match=r"skipped 2 files that are not an image \(README.txt, notes.md\)"
    ) as record:
        ds = load_data(root)
    assert len([w for w in record if "skipped" in str(w.message)]) == 1
    assert ds.modality == "image"
    assert ds.class_names == ["stop", "yield"]
    assert ds.y.tolist() == [0, 0, 1]
    assert ds.input_shape == (3, 12, 10)  # the first image's size, RGB because not every image is grey
    np.testing.assert_allclose(ds.x[0], first.transpose(2, 0, 1) / 255.0, atol=1e-6)
    assert np.allclose(ds.x[2, 0], ds.x[2, 1])  # the grey image repeated to three channels
    assert ds.meta["skipped_files"] == 2


def test_image_size_channels_and_class_names_arguments(tree):
    root, _ = tree
    with pytest.warns(RoadworthyWarning):
        ds = load_data(root, image_size=16, channels=1, class_names="halt,give way")
    assert ds.input_shape == (1, 16, 16)
    assert ds.class_names == ["halt", "give way"]


def test_folder_sha256_follows_names_and_content(tree):
    root, _ = tree
    with pytest.warns(RoadworthyWarning):
        before = load_data(root).sha256
    (root / "yield" / "c.png").rename(root / "yield" / "d.png")
    with pytest.warns(RoadworthyWarning):
        after = load_data(root).sha256
    assert before != after


def test_all_grey_tree_stays_grey(tmp_path):
    for k, name in enumerate(["a", "b"]):
        _png(tmp_path / name / "x.png", np.full((8, 8), 40 * k, dtype=np.uint8))
    ds = load_data(tmp_path)
    assert ds.input_shape == (1, 8, 8)


def test_folder_without_class_folders_or_images(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "flat").mkdir()
    _png(tmp_path / "flat" / "x.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(
        InvalidInputError, match=r"^flat: expected one sub-folder of images per class, found no sub-folders$"
    ):
        load_data("flat")
    (tmp_path / "empty" / "cls").mkdir(parents=True)
    (tmp_path / "empty" / "cls" / "readme.txt").write_text("x")
    with (
        pytest.warns(RoadworthyWarning),
        pytest.raises(InvalidInputError, match=r"^empty: no images found in 1 class folders \(empty data\)$"),
    ):
        load_data("empty")


def test_truncated_image_is_an_error_naming_the_file(tmp_path):
    _png(tmp_path / "a" / "x.png", np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8))
    data = (tmp_path / "a" / "x.png").read_bytes()
    (tmp_path / "a" / "x.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(InvalidInputError, match=r"x.png: cannot read the image"):
        load_data(tmp_path)
