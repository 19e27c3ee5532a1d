""".npz data in every layout and dtype, and every bad input with its one-line message."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from roadworthy.data import load_data
from roadworthy.errors import InvalidInputError


@pytest.fixture()
def here(tmp_path, monkeypatch):
    """Work inside tmp_path so messages start with the bare file name, as a user would type it."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _images(n=6, h=5, w=7, c=3, seed=0):
    """uint8 NHWC images and labels."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, h, w, c), dtype=np.uint8), np.arange(n) % 3


@pytest.mark.parametrize(
    ("layout", "channels"),
    [("NHWC", 3), ("NCHW", 3), ("NHWC", 1), ("NCHW", 1), ("NHW", 1), ("NHWC", 4)],
)
@pytest.mark.parametrize("dtype", ["uint8", "float32", "float64"])
def test_every_image_layout_and_dtype_gives_nchw_unit_floats(layout, channels, dtype, here):
    raw, y = _images(c=channels)
    expected = raw.transpose(0, 3, 1, 2).astype(np.float32) / 255.0
    x = raw if dtype == "uint8" else raw.astype(dtype) / 255.0
    if layout == "NCHW":
        x = x.transpose(0, 3, 1, 2)
    elif layout == "NHW":
        x = x[..., 0]
    np.savez("data.npz", x=x, y=y)
    ds = load_data("data.npz")
    assert ds.modality == "image"
    assert ds.x.dtype == np.float32 and ds.y.dtype == np.int64
    assert ds.input_shape == (channels, 5, 7)
    np.testing.assert_allclose(ds.x, expected, atol=1e-6)
    assert ds.meta["layout"] == layout
    assert ds.path == "data.npz" and len(ds.sha256) == 64


@settings(max_examples=25, deadline=None)
@given(
    h=st.integers(5, 40),
    w=st.integers(5, 40),
    c=st.sampled_from([1, 3]),
    channels_last=st.booleans(),
)
def test_layout_is_recovered_for_any_image_size(tmp_path_factory, h, w, c, channels_last):
    path = tmp_path_factory.mktemp("npz") / "d.npz"
    x = np.random.default_rng(1).random((2, c, h, w), dtype=np.float32)
    np.savez(path, x=x.transpose(0, 2, 3, 1) if channels_last else x, y=np.array([0, 1]))
    np.testing.assert_array_equal(load_data(path).x, x)


def test_channels_argument_settles_an_ambiguous_shape(here):
    x = np.random.default_rng(0).random((2, 3, 5, 4), dtype=np.float32)  # C=3 first or C=4 last?
    np.savez("data.npz", x=x, y=[0, 1])
    assert load_data("data.npz").input_shape == (3, 5, 4)  # the larger image wins
    assert load_data("data.npz", channels=4).input_shape == (4, 3, 5)


def test_tabular_npz_keeps_its_values(here):
    x = np.random.default_rng(0).normal(size=(10, 4)) * 100  # tables are not limited to [0, 1]
    np.savez("data.npz", x=x, y=np.arange(10) % 2)
    ds = load_data("data.npz")
    assert ds.modality == "tabular" and ds.input_shape == (4,)
    np.testing.assert_allclose(ds.x, x.astype(np.float32))


def test_class_names_from_the_file_from_strings_and_from_the_argument(here):
    x = np.zeros((3, 2))
    np.savez("names.npz", x=x, y=[0, 1, 1], class_names=np.array(["stop", "yield"]))
    assert load_data("names.npz").class_names == ["stop", "yield"]
    assert load_data("names.npz", class_names="halt, give way").class_names == ["halt", "give way"]
    np.savez("strings.npz", x=x, y=np.array(["yield", "stop", "yield"]))
    ds = load_data("strings.npz")
    assert ds.class_names == ["stop", "yield"] and ds.y.tolist() == [1, 0, 1]
    with pytest.raises(
        InvalidInputError, match=r"^names.npz: `class_names` gives 3 names but the data has 2"
    ):
        load_data("names.npz", class_names=["a", "b", "c"])
    np.savez("ints.npz", x=x, y=[0, 4, 1])
    with pytest.raises(
        InvalidInputError, match=r"^ints.npz: `class_names` gives 2 names but the labels go up to 4$"
    ):
        load_data("ints.npz", class_names="a,b")


def test_string_labels_map_by_number_or_by_name_never_as_sorted_text(here):
    y = np.arange(24) % 12
    np.savez("twelve.npz", x=np.zeros((24, 2)), y=y.astype(str))  # '10' and '11' sort before '2' as text
    ds = load_data("twelve.npz")
    assert ds.y.tolist() == y.tolist() and ds.meta["label_source"] == "numeric"
    np.savez("animals.npz", x=np.zeros((3, 2)), y=np.array(["emu", "cat", "emu"]))
    ds = load_data("animals.npz", class_names="cat,dog,emu")
    assert ds.y.tolist() == [2, 0, 2] and ds.class_names == ["cat", "dog", "emu"]
    np.savez("own.npz", x=np.zeros((2, 2)), y=np.array(["emu", "cat"]), class_names=["emu", "gnu", "cat"])
    assert load_data("own.npz").y.tolist() == [0, 2]  # the file's own class list, by name
    with pytest.raises(
        InvalidInputError, match=r"^animals.npz: label 'emu' is not among the class names \(cat, dog\)"
    ):
        load_data("animals.npz", class_names="cat,dog")


def test_sha256_follows_the_content(here):
    np.savez("a.npz", x=np.zeros((2, 2)), y=[0, 1])
    np.savez("b.npz", x=np.ones((2, 2)), y=[0, 1])
    assert load_data("a.npz").sha256 == load_data("a.npz").sha256 != load_data("b.npz").sha256


def _save(name, **arrays):
    np.savez(name, **arrays)
    return name


BAD = [
    (lambda: "missing.npz", r"missing.npz: no such file or folder"),
    (
        lambda: _save("data.npz", images=np.zeros((2, 3)), y=[0, 1]),
        r"data.npz: missing array 'x' \(the file has: images, y\)",
    ),
    (lambda: _save("data.npz", x=np.zeros((2, 3))), r"data.npz: missing array 'y' \(the file has: x\)"),
    (
        lambda: _save("data.npz", x=np.zeros((0, 3)), y=np.zeros(0, int)),
        r"data.npz: no samples \(x is empty, shape \(0, 3\)\)",
    ),
    (
        lambda: _save("data.npz", x=np.zeros((2, 3)), y=[0, 1, 2]),
        r"data.npz: x has 2 samples but y has 3 labels",
    ),
    (
        lambda: _save("data.npz", x=np.zeros((4, 3)), y=[0, 1, 0.5, 1]),
        r"data.npz: y must hold integer class labels. Found 0.5 at index 2.",
    ),
    (
        lambda: _save("data.npz", x=np.zeros((3, 3)), y=[0, -1, 2]),
        r"data.npz: labels must be non-negative integers. Found -1 at index 1.",
    ),
    (
        lambda: _save("data.npz", x=np.zeros((2, 3)), y=np.zeros((2, 4))),
        r"data.npz: y must be 1-D class labels, got shape \(2, 4\) \(one-hot\? use y.argmax\(axis=1\)\)",
    ),
    (
        lambda: _save("data.npz", x=np.full((2, 4, 4), 2.0), y=[0, 1]),
        r"data.npz: float images must be in \[0, 1\]; found values in \[2, 2\]",
    ),
    (
        lambda: _save("data.npz", x=np.full((2, 4, 4), 300, np.int32), y=[0, 1]),
        r"data.npz: integer images must hold values 0-255; found \[300, 300\]",
    ),
    (
        lambda: _save("data.npz", x=np.zeros((2, 5, 6, 7)), y=[0, 1]),
        r"data.npz: x has shape \(2, 5, 6, 7\); images must be N,H,W / N,H,W,C / N,C,H,W with C in 1, 3 or 4",
    ),
    (
        lambda: _save("data.npz", x=np.array([{"a": 1}, None], dtype=object), y=[0, 1]),
        r"data.npz: holds an object array, which would need unpickling",
    ),
    (lambda: Path("data.txt").write_text("1,2") and "data.txt", r"data.txt: unsupported data format '.txt'"),
    (lambda: Path("data.npz").write_bytes(b"") and "data.npz", r"data.npz: the file is empty"),
]


@pytest.mark.parametrize(("make", "message"), BAD)
def test_bad_input_gets_one_line_naming_file_and_fault(make, message, here):
    name = make() or "data.npz"
    with pytest.raises(InvalidInputError) as info:
        load_data(name)
    assert info.match("^" + message)
    assert "\n" not in str(info.value)


def test_nan_and_inf_are_counted_with_the_first_index(here):
    x = np.random.default_rng(0).random((30, 1, 4, 4), dtype=np.float32)
    x[17, 0, 1, 1] = np.nan
    x[17, 0, 2, 2] = np.inf
    x[25, 0, 0, 0] = -np.inf
    np.savez("data.npz", x=x, y=np.zeros(30, int))
    with pytest.raises(InvalidInputError) as info:
        load_data("data.npz")
    assert str(info.value) == "data.npz: x contains 3 NaN or infinite values (first at index 17)"


@pytest.mark.parametrize("keep", [0.5, 0.9])
def test_truncated_npz(keep, here):
    np.savez("full.npz", x=np.random.default_rng(0).random((50, 3, 8, 8)), y=np.zeros(50, int))
    data = Path("full.npz").read_bytes()
    Path("data.npz").write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(InvalidInputError) as info:
        load_data("data.npz")
    assert str(info.value).startswith("data.npz: not a valid .npz file (truncated or corrupt: ")
    assert "\n" not in str(info.value)


def test_counts_in_messages_agree_with_their_nouns(here):
    np.savez("one.npz", x=np.zeros((1, 2)), y=[0, 1])
    with pytest.raises(InvalidInputError, match=r"^one.npz: x has 1 sample but y has 2 labels$"):
        load_data("one.npz")
    np.savez("one_class.npz", x=np.zeros((2, 2)), y=[1, 1])
    with pytest.raises(InvalidInputError, match=r"`class_names` gives 1 name but the labels go up to 1$"):
        load_data("one_class.npz", class_names="only")
