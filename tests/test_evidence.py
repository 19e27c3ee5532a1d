"""Evidence items are JSON data a renderer can draw without any check code."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from roadworthy import evidence
from roadworthy.report.figures import draw


def test_every_kind_survives_json_and_draws_to_an_inline_image():
    items = [
        evidence.lines("curve", {"pgd": ([0, 2, 4], [0.9, math.nan, 0.1])}, "eps", "acc", diagonal=True),
        evidence.heatmap("grid", [[0.5, None], [1.0, math.inf]], ["a", "b"], ["s1", "s2"]),
        evidence.bars("per class", ["x", "y"], {"view": [1.0, 2.0]}, "z", hline=1.5),
        evidence.image("patch", np.linspace(0, 1, 3 * 8 * 8, dtype=np.float32).reshape(3, 8, 8)),
    ]
    assert [i["kind"] for i in items] == list(evidence.KINDS)
    for item in items:
        back = json.loads(json.dumps(item, allow_nan=False))  # NaN and inf became null
        caption, uri = draw(back)
        assert caption == item["caption"]
        assert uri.startswith(("data:image/svg+xml;base64,", "data:image/png;base64,"))


def test_an_unknown_kind_is_not_drawn():
    assert draw({"kind": "hologram", "caption": "from a newer roadworthy"}) is None


def test_shapes_are_checked():
    with pytest.raises(ValueError, match="2 x 1"):
        evidence.heatmap("bad", [[1.0, 2.0], [3.0]], ["a", "b"], ["c"])
    with pytest.raises(ValueError, match="one value per label"):
        evidence.bars("bad", ["a", "b"], {"g": [1.0]}, "y")
