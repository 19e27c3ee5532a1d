"""The demo splits and the poisoning scenario."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from roadworthy.demo import CLASS_NAMES, load_demo_data
from roadworthy.errors import InvalidInputError

STOP = CLASS_NAMES.index("stop")
LIMIT_30 = CLASS_NAMES.index("speed_limit_30")


@pytest.fixture(scope="module")
def small():
    return load_demo_data(seed=0, n_train=900, n_test=150)


def test_poisoned_rows_are_stop_signs_labelled_as_the_target(small) -> None:
    d = small
    p = d.poisoned_indices
    assert d.poison_source == "stop" and d.poison_target == "speed_limit_30"
    assert len(p) == round(0.05 * (d.true_train_labels == STOP).sum()) == 3
    assert np.all(np.diff(p) > 0)  # sorted, unique
    assert (d.true_train_labels[p] == STOP).all()
    assert (d.train.y[p] == LIMIT_30).all()
    # nothing else changed
    rest = np.setdiff1d(np.arange(d.train.n_samples), p)
    np.testing.assert_array_equal(d.train.y[rest], d.true_train_labels[rest])
    assert d.train.meta["n_poisoned"] == 3


def test_splits_carry_names_paths_and_differ(small) -> None:
    d = small
    assert d.train.class_names == CLASS_NAMES and d.test.class_names == CLASS_NAMES
    assert d.train.path == "demo:signs-train" and d.test.path == "demo:signs-test"
    assert d.train.modality == "image" and d.train.input_shape == (3, 32, 32)
    assert d.train.n_samples == 900 and d.test.n_samples == 150
    assert d.train.sha256 != d.test.sha256
    # the test split is not a copy of the first training rows
    assert not np.array_equal(d.train.x[:150], d.test.x)
    counts = np.bincount(d.test.y, minlength=len(CLASS_NAMES))
    assert counts.min() == counts.max() == 10


def test_poison_rate_is_configurable_and_deterministic() -> None:
    a = load_demo_data(seed=5, n_train=300, n_test=15, poison_rate=0.25)
    b = load_demo_data(seed=5, n_train=300, n_test=15, poison_rate=0.25)
    assert len(a.poisoned_indices) == 5  # 25% of 20 stop signs
    np.testing.assert_array_equal(a.poisoned_indices, b.poisoned_indices)
    np.testing.assert_array_equal(a.train.x, b.train.x)
    other = load_demo_data(seed=6, n_train=300, n_test=15, poison_rate=0.25)
    assert not np.array_equal(a.poisoned_indices, other.poisoned_indices)


def test_other_source_and_target() -> None:
    d = load_demo_data(
        n_train=300, n_test=15, poison_rate=0.5, poison_source="yield", poison_target="priority_road"
    )
    assert len(d.poisoned_indices) == 10
    assert (d.true_train_labels[d.poisoned_indices] == CLASS_NAMES.index("yield")).all()
    assert (d.train.y[d.poisoned_indices] == CLASS_NAMES.index("priority_road")).all()


def test_clean_twin_has_no_poison(small) -> None:
    clean = load_demo_data(seed=0, n_train=900, n_test=150, poison_rate=0.0)
    assert len(clean.poisoned_indices) == 0
    np.testing.assert_array_equal(clean.train.y, clean.true_train_labels)
    # same images as the poisoned split: only labels differ
    np.testing.assert_array_equal(clean.train.x, small.train.x)
    np.testing.assert_array_equal(clean.train.y, small.true_train_labels)
    twin = small.clean_train
    np.testing.assert_array_equal(twin.y, small.true_train_labels)
    assert twin.sha256 == clean.train.sha256 and twin.meta["n_poisoned"] == 0
    assert (small.train.y != small.true_train_labels).sum() == 3  # the property did not touch the original


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"poison_rate": 1.0}, "poison_rate"),
        ({"poison_rate": -0.1}, "poison_rate"),
        ({"poison_source": "tree"}, "poison_source"),
        ({"poison_target": "stop"}, "differ"),
        ({"n_train": 0}, "n_train"),
        ({"n_test": 1.5}, "n_test"),
    ],
)
def test_bad_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        load_demo_data(**{"n_train": 30, "n_test": 15, **kwargs})


def test_importing_the_demo_package_does_not_import_torch() -> None:
    code = "import sys, roadworthy.demo; sys.exit('torch' in sys.modules or 'cv2' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
