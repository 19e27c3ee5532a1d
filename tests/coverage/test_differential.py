"""Differential fuzzing (DiffChaser-style) between a model and a damaged copy of it."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from roadworthy.coverage.differential import differential_fuzz, gap
from roadworthy.errors import InvalidInputError


@pytest.fixture(scope="module")
def pair(digits_module, digits_model):
    import torch

    from roadworthy.models.torch import TorchModel

    damaged = copy.deepcopy(digits_module)
    with torch.no_grad():
        damaged[0].weight[0] *= 3.0
    return TorchModel(damaged, input_shape=(1, 16, 16)), digits_model


def test_gap_ranks_disagreements_above_agreements():
    ref = np.array([[3.0, 0.0], [3.0, 0.0], [3.0, 0.0]], np.float32)
    model = np.array([[3.0, 0.0], [1.0, 0.0], [0.0, 1.0]], np.float32)
    g = gap(model, "logits", ref, "logits")
    assert g[0] == pytest.approx(0.0, abs=1e-6) and 0 < g[1] < 1 <= g[2]


@pytest.mark.parametrize("guided", [True, False])
def test_found_disagreements_are_real_and_the_budget_holds(pair, digits_split, guided):
    digits_x = digits_split[2][:200]
    model, reference = pair
    kw = {"max_queries": 400, "mutants_per_seed": 4, "seeds_per_iteration": 10, "guided": guided, "seed": 1}
    r = differential_fuzz(model.predict, "logits", reference.predict, "logits", digits_x[:40], **kw)
    assert 0 < r.queries <= 400 and r.guided is guided
    assert [h["queries"] for h in r.history] == sorted(h["queries"] for h in r.history)
    for img, root, a, b, _ in r.disagreements:
        assert a != b and 0 <= root < 40
        assert int(model.predict(img[None]).argmax()) == a
        assert int(reference.predict(img[None]).argmax()) == b
        assert float(np.abs(img - digits_x[root]).max()) > 0  # a mutant, not the seed
    again = differential_fuzz(model.predict, "logits", reference.predict, "logits", digits_x[:40], **kw)
    assert again.queries == r.queries and len(again.disagreements) == len(r.disagreements)


def test_a_validity_gate_that_rejects_everything_leaves_only_invalid_findings(pair, digits_split):
    digits_x = digits_split[2][:200]
    model, reference = pair
    r = differential_fuzz(
        model.predict,
        "logits",
        reference.predict,
        "logits",
        digits_x[:40],
        max_queries=400,
        is_valid=lambda x: np.zeros(len(x), bool),
        seed=1,
    )
    assert r.disagreements == [] and r.per_10k_queries == 0.0


def test_images_only():
    with pytest.raises(InvalidInputError, match="N, C, H, W"):
        differential_fuzz(None, "logits", None, "logits", np.zeros((3, 4), np.float32))
