"""Folder labels reach the model by name, end to end: a model that is right on every image scores 1.0
whichever classes a test folder holds, or the run is refused; never a silent accuracy of 0.
"""

from __future__ import annotations

import numpy as np
import pytest

import roadworthy
from roadworthy.errors import InvalidInputError

# the model's output order (not alphabetical): output k answers "colour k is the brightest channel"
ORDER = ["red", "green", "blue"]


@pytest.fixture(scope="module")
def colour_model():
    """A fixed network: the mean of each channel, scaled; output ``k`` is channel ``k`` (R, G, B)."""
    import torch

    net = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(3, 3))
    with torch.no_grad():
        net[2].weight.copy_(10 * torch.eye(3))
        net[2].bias.zero_()
    return net.eval()


def _folder(root, colours, n=3, size=(12, 12)):
    from PIL import Image

    for colour in colours:
        (root / colour).mkdir(parents=True, exist_ok=True)
        pixel = np.zeros(3, np.uint8)
        pixel[ORDER.index(colour)] = 200
        for i in range(n):
            Image.fromarray(np.tile(pixel, (*size, 1))).save(root / colour / f"{i}.png")
    return root


def _accuracy(model, data, **kw):
    report = roadworthy.check(model, data, suites=["clean"], budget="quick", input_shape=(3, 12, 12), **kw)
    return report.metrics["clean.accuracy"], report


@pytest.mark.parametrize("colours", [ORDER, ["blue", "red"], ["green"]])
def test_class_names_map_every_folder_by_name(colour_model, tmp_path, colours):
    data = _folder(tmp_path / "test", colours)
    accuracy, report = _accuracy(colour_model, data, class_names=ORDER)
    assert accuracy == 1.0
    assert report.data.class_names == ORDER


def test_a_test_folder_lacking_classes_takes_its_labels_from_the_training_folder(colour_model, tmp_path):
    # with no class list, the training folder's sorted names are the model's order
    import torch

    alphabetical = sorted(ORDER)  # blue, green, red
    perm = [ORDER.index(c) for c in alphabetical]
    model = torch.nn.Sequential(*colour_model[:2], torch.nn.Linear(3, 3)).eval()
    with torch.no_grad():
        model[2].weight.copy_(colour_model[2].weight[perm])
        model[2].bias.zero_()
    train = _folder(tmp_path / "train", ORDER, n=10)
    test = _folder(tmp_path / "test", ["red"])
    report = roadworthy.check(model, test, train, suites=["clean"], budget="quick", input_shape=(3, 12, 12))
    assert report.metrics["clean.accuracy"] == 1.0
    assert report.data.class_names == alphabetical


def test_a_partial_folder_without_any_class_list_is_refused(colour_model, tmp_path):
    data = _folder(tmp_path / "test", ["blue", "red"])
    with pytest.raises(
        InvalidInputError,
        match=r"the class folders name 2 classes \(blue, red\) but the model has 3 outputs.*--class-names",
    ):
        _accuracy(colour_model, data)


def test_folders_are_read_at_the_size_the_model_declares(tmp_path):
    """A model that records its input size (an exported program here) sets the folder's size."""
    import torch

    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 3)).eval()
    program = torch.export.export(net, (torch.rand(2, 3, 8, 8),))
    data = _folder(tmp_path / "test", ORDER, size=(40, 30))
    report = roadworthy.check(program, data, suites=["clean"], budget="quick", class_names=ORDER)
    assert report.data.input_shape == [3, 8, 8]
    report = roadworthy.check(
        net, data, suites=["clean"], budget="quick", image_size="8x8", class_names=ORDER
    )
    assert report.data.input_shape == [3, 8, 8]


def test_unreadable_images_reach_the_report(colour_model, tmp_path):
    from roadworthy.errors import RoadworthyWarning

    root = _folder(tmp_path / "test", ORDER)
    (root / "red" / "9.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    with pytest.warns(RoadworthyWarning, match="unreadable image"):
        acc, report = _accuracy(colour_model, root, class_names=ORDER)
    assert acc == 1.0
    assert report.data.unreadable_images == 1 and report.data.unreadable_files[0].endswith("9.png")
    assert any("1 unreadable image left out" in w for w in report.warnings)
