"""Neural Cleanse names the backdoor's target, recovers a trigger where it was planted, spares the clean twin."""

from __future__ import annotations

import numpy as np
import pytest

from roadworthy.backdoor import ANOMALY_THRESHOLD, anomaly_index, attack_success, neural_cleanse
from roadworthy.errors import UnsupportedModelError
from tests.backdoor.conftest import TARGET


@pytest.fixture(scope="module")
def scans(twins):
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        x, y = twins.x_test[:200], twins.y_test[:200]
        return {
            name: neural_cleanse(model, x, y, steps=200, seed=0)
            for name, model in (("backdoored", twins.backdoored), ("clean", twins.clean))
        }
    finally:
        torch.set_num_threads(threads)


def test_target_class_is_named(scans):
    r = scans["backdoored"]
    assert r.suspect == TARGET
    assert r.flagged() == [TARGET]
    i = r.classes.index(TARGET)
    assert r.anomaly_index[i] > ANOMALY_THRESHOLD
    assert r.l1[i] < 0.5 * np.median(r.l1)
    assert r.reached.all()


def test_clean_twin_is_not_flagged(scans):
    r = scans["clean"]
    assert r.flagged() == []
    assert r.anomaly_index.max() < ANOMALY_THRESHOLD


def test_recovered_trigger_sits_where_it_was_planted(scans, twins):
    mask, _ = scans["backdoored"].trigger(TARGET)
    planted = twins.planted.trigger.mask[0] > 0
    near = np.zeros_like(planted)  # the planted square and a one-pixel ring around it
    rows, cols = np.nonzero(planted)
    near[max(0, rows.min() - 1) : rows.max() + 2, max(0, cols.min() - 1) : cols.max() + 2] = True
    share = mask[0][near].sum() / mask.sum()
    assert share > 0.4, f"only {share:.0%} of the recovered mask lies on the planted corner"
    # on the clean twin the smallest trigger for the same class lies elsewhere
    clean_mask, _ = scans["clean"].trigger(TARGET)
    assert clean_mask[0][near].sum() / clean_mask.sum() < 0.2


def test_recovered_trigger_confirms_the_backdoor(scans, twins):
    mask, pattern = scans["backdoored"].trigger(TARGET)
    hit = attack_success(twins.backdoored, twins.x_test[200:], twins.y_test[200:], mask, pattern, TARGET)
    assert hit.rate > 0.9 and hit.ci_low > 0.8 and hit.n > 200
    assert hit.baseline < 0.05


def test_evidence_holds_the_trigger_image(scans):
    items = scans["backdoored"].evidence([str(i) for i in range(10)])
    kinds = [it["kind"] for it in items]
    assert kinds.count("image") >= 1 and "bars" in kinds
    assert items[0]["hline"] == ANOMALY_THRESHOLD


def test_same_seed_same_triggers(twins, one_thread):
    x, y = twins.x_test[:64], twins.y_test[:64]
    a = neural_cleanse(twins.backdoored, x, y, classes=[0, 1, 2], steps=15, batch_size=8, seed=7)
    b = neural_cleanse(twins.backdoored, x, y, classes=[0, 1, 2], steps=15, batch_size=8, seed=7)
    assert np.array_equal(a.masks, b.masks) and np.array_equal(a.patterns, b.patterns)


def test_black_box_models_are_refused_with_the_reason(twins):
    from roadworthy.models.function import FunctionModel

    black = FunctionModel(twins.backdoored.predict, n_classes=10, input_shape=(1, 16, 16))
    with pytest.raises(UnsupportedModelError, match="white-box"):
        neural_cleanse(black, twins.x_test[:10])


def test_anomaly_index_counts_robust_deviations_below_the_median():
    ai = anomaly_index(np.array([10.0, 11.0, 9.0, 10.0, 12.0, 8.0, 2.0]))
    assert ai.argmax() == 6 and ai[6] > 3
    assert ai[4] < 0  # larger than the median: negative
    assert np.all(anomaly_index(np.full(5, 3.0)) == 0)


def test_the_users_model_gets_no_weight_gradients(one_thread):
    from roadworthy.models.torch import TorchModel
    from tests._models import tiny_cnn

    model = TorchModel(tiny_cnn().eval(), input_shape=(1, 16, 16))
    x = np.random.default_rng(0).random((16, 1, 16, 16), dtype=np.float32)
    neural_cleanse(model, x, classes=[0, 1, 2], steps=4, batch_size=4, seed=0)
    # only the mask and pattern are optimised: the model's weights get no gradient computed or kept
    assert all(param.grad is None for param in model.module.parameters())


def test_classes_in_separate_gradient_batches_give_the_same_triggers(twins, one_thread, monkeypatch):
    """Large inputs put fewer classes in one gradient batch (memory); every class's term of the loss is
    its own, so one class per batch finds the same masks as all classes in one batch (float rounding)."""
    import importlib

    nc = importlib.import_module("roadworthy.backdoor.neural_cleanse")  # the module, not the function
    x, y = twins.x_test[:64], twins.y_test[:64]
    together = nc.neural_cleanse(twins.backdoored, x, y, classes=[0, 1, 2], steps=15, batch_size=8, seed=7)
    per_image = 4 * int(np.prod(x.shape[1:]))
    monkeypatch.setattr(nc, "GRAD_BATCH_INPUT_BYTES", 8 * per_image)  # 8 images: one class per batch
    apart = nc.neural_cleanse(twins.backdoored, x, y, classes=[0, 1, 2], steps=15, batch_size=8, seed=7)
    np.testing.assert_allclose(apart.l1, together.l1, rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(apart.masks, together.masks, atol=1e-3)
