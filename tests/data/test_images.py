"""A class-per-folder image tree: labels from folder names, one common size, bad files skipped with a warning."""

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
        ds = load_data(root, image_size="16x12", channels=1, class_names="yield,stop")
    assert ds.input_shape == (1, 16, 12)
    # folder names are matched to the class list by name, never renamed by position
    assert ds.class_names == ["yield", "stop"]
    assert ds.y.tolist() == [1, 1, 0]


def test_folder_names_outside_the_class_list_are_an_error(tree):
    root, _ = tree
    with pytest.raises(
        InvalidInputError,
        match=r"signs: class folders 'stop', 'yield' are not among the class names \(halt, give way\)",
    ):
        load_data(root, class_names="halt,give way")


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
        pytest.raises(InvalidInputError, match=r"^empty: no images found in 1 class folder \(empty data\)$"),
    ):
        load_data("empty")


def test_truncated_image_is_skipped_and_counted_or_an_error_with_strict_data(tmp_path):
    rng = np.random.default_rng(0)
    for name in ("w.png", "x.png", "y.jpg"):
        _png(tmp_path / "a" / name, rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    data = (tmp_path / "a" / "x.png").read_bytes()
    (tmp_path / "a" / "x.png").write_bytes(data[: len(data) // 2])
    (tmp_path / "a" / "y.jpg").write_bytes(b"not a jpeg at all")  # an image by name whose header is gone
    with pytest.warns(RoadworthyWarning, match=r"skipped 2 unreadable images \(x.png .*y.jpg") as record:
        ds = load_data(tmp_path)
    assert ds.n_samples == 1 and ds.meta["unreadable_images"] == 2
    assert not any("not an image" in str(w.message) for w in record)
    with pytest.raises(InvalidInputError, match=r"y.jpg: cannot read the image \(not a format Pillow"):
        load_data(tmp_path, strict_data=True)
    (tmp_path / "a" / "y.jpg").unlink()
    with pytest.raises(InvalidInputError, match=r"x.png: cannot read the image \(image file is truncated\)"):
        load_data(tmp_path, strict_data=True)


def _classes(root, names, n=2, size=(8, 8)):
    """One solid-colour image per sample; class ``k`` of ``names`` is grey level ``20 * (k + 1)``."""
    for k, name in enumerate(names):
        for i in range(n):
            _png(root / name / f"{i}.png", np.full(size, 20 * (k + 1), dtype=np.uint8))


def test_a_test_folder_lacking_classes_maps_each_folder_by_name(tmp_path):
    _classes(tmp_path / "part", ["cat", "emu"])  # "dog" is missing: positions would shift "emu"
    ds = load_data(tmp_path / "part", class_names="cat,dog,emu")
    assert ds.y.tolist() == [0, 0, 2, 2] and ds.class_names == ["cat", "dog", "emu"]
    _classes(tmp_path / "one", ["emu"])
    assert load_data(tmp_path / "one", class_names="cat,dog,emu").y.tolist() == [2, 2]
    assert load_data(tmp_path / "one").meta["label_source"] == "sorted"  # checked against the model later


def test_numeric_folder_names_are_their_own_indices(tmp_path):
    names = [str(i) for i in range(12)]
    _classes(tmp_path, names, n=1)
    ds = load_data(tmp_path)
    grey = np.round(ds.x[:, 0, 0, 0] * 255).astype(int)
    assert (ds.y == grey // 20 - 1).all()  # "10" and "11" are classes 10 and 11, not 2 and 3
    assert ds.class_names is None and ds.meta["label_source"] == "numeric"


def test_sizes_follow_image_size_or_the_most_common_size(tmp_path):
    _png(tmp_path / "a" / "0.png", np.zeros((30, 40), np.uint8))
    _png(tmp_path / "a" / "1.png", np.zeros((12, 10), np.uint8))
    _png(tmp_path / "a" / "2.png", np.zeros((12, 10), np.uint8))
    with pytest.warns(
        RoadworthyWarning, match=r"2 sizes; all were resized to the most common, 12x10 \(2 of 3\)"
    ):
        assert load_data(tmp_path).input_shape == (1, 12, 10)  # not the first file's 30x40
    assert load_data(tmp_path, image_size=(6, 5)).input_shape == (1, 6, 5)
    with pytest.raises(InvalidInputError, match=r"`image_size` must be a size like 224"):
        load_data(tmp_path, image_size="big")
