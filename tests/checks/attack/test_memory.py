"""Memory of the attack checks: what a check holds must not grow with its sample.

The white-box attacks (FGSM's sweep, the PGD/APGD curves) work their sample in blocks (:data:`roadworthy.checks.base.SHARD_BLOCK`) and carry
only per-input results and a few example inputs to the merge. Measured with ``tracemalloc``, which sees
every NumPy array (input copies, adversarial copies): the traced peak of a check on 448 inputs is about
that on 64, where holding every input and its adversarial copy would make it seven times larger.
"""

from __future__ import annotations

import dataclasses
import tracemalloc

import numpy as np
import pytest

from roadworthy.checks.attack import _common as common
from roadworthy.checks.attack.fgsm import FGSM
from roadworthy.checks.attack.pgd import PGDLinf
from roadworthy.checks.attack.sticker import AdversarialSticker
from roadworthy.checks.base import Context

SIZE = 32  # 3x32x32 inputs: 12 KiB each, so the inputs dominate what the check allocates


@pytest.fixture(scope="module")
def image_model():
    """A random-weight CNN on 3x32x32 (fragile: FGSM flips most inputs, so every input has an adversarial
    copy to hold)."""
    from roadworthy.models.torch import TorchModel
    from tests._models import tiny_cnn

    return TorchModel(tiny_cnn(in_channels=3, size=SIZE, seed=1).eval(), input_shape=(3, SIZE, SIZE))


def _ctx(model, n: int) -> Context:
    """``n`` smooth random images labelled with the model's own prediction (all correct)."""
    from roadworthy.data.base import Dataset

    rng = np.random.default_rng(0)
    base = rng.uniform(0.2, 0.8, size=(n, 3, SIZE // 4, SIZE // 4)).astype(np.float32)
    x = np.ascontiguousarray(base.repeat(4, axis=2).repeat(4, axis=3))
    y = model.predict(x).argmax(axis=1).astype(np.int64)
    names = [str(i) for i in range(10)]
    data = Dataset(x=x, y=y, modality="image", class_names=names, path="random")
    return Context(model=model, data=data, train_data=data, budget="standard", seed=0)


def _traced_peak(check, ctx: Context) -> tuple[int, object]:
    ctx.clean_pred, common.attack_order(ctx)  # shared by every check: computed before the window
    tracemalloc.start()
    try:
        out = check.run(ctx)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak, out


@pytest.mark.parametrize(
    "check",
    [FGSM(FGSM.Params(refine_steps=2)), PGDLinf(PGDLinf.Params(steps=3, min_norm_steps=5))],
    ids=["fgsm", "pgd"],
)
def test_white_box_peak_memory_does_not_grow_with_the_sample(image_model, check):
    params = check.params
    small, _ = _traced_peak(type(check)(dataclasses.replace(params, n_samples=64)), _ctx(image_model, 64))
    large, out = _traced_peak(type(check)(dataclasses.replace(params, n_samples=448)), _ctx(image_model, 448))
    one_copy = 448 * 3 * SIZE * SIZE * 4  # every input once: 5.3 MiB
    assert out.metrics[f"{check.id}.success_rate"] > 0.5  # most inputs have an adversarial copy
    assert large < small + one_copy / 4, (small, large)
    assert len(out.examples) == params.max_examples


def test_fgsm_in_blocks_gives_the_unblocked_numbers(image_model):
    """The blocked sweep (7 blocks) and one block of the whole sample: the same per-input work, so
    the same metrics (robust accuracies within one input of 448, for batch-size-dependent rounding of
    a gradient component at zero)."""
    ctx = _ctx(image_model, 448)
    blocked = FGSM(FGSM.Params(n_samples=448, refine_steps=2))
    whole = FGSM(FGSM.Params(n_samples=448, refine_steps=2))
    whole.shard_block = 10_000
    assert len(blocked.blocks(ctx)) == 7 and len(whole.blocks(ctx)) == 1
    a, b = blocked.run(ctx).metrics, whole.run(ctx).metrics
    assert a.keys() == b.keys()
    for key in a:
        if key.endswith(("robust_accuracy", "success_rate")):
            assert abs(a[key] - b[key]) <= 1 / 448 + 1e-12, key
    assert a["attack.fgsm.trustworthy"] == b["attack.fgsm.trustworthy"] == 1.0


def test_fgsm_any_split_of_its_blocks_gives_the_one_shard_numbers(image_model):
    """FGSM is sample-sharded: its blocks merged from two groups (two Ray workers) give the local run's
    outcome, examples included."""
    ctx = _ctx(image_model, 200)
    check = FGSM(FGSM.Params(n_samples=200, refine_steps=2))
    whole = check.run(ctx)
    blocks = check.blocks(ctx)
    fresh = Context(model=ctx.model, data=ctx.data, train_data=ctx.data, budget="standard", seed=0)
    parts = check.run_blocks(ctx, blocks[:1]) + check.run_blocks(fresh, blocks[1:])
    merged = check.merge(fresh, parts)
    assert merged.metrics == whole.metrics
    assert [e.changed for e in merged.examples] == [e.changed for e in whole.examples]


def test_sticker_peak_memory_does_not_grow_with_the_sample_or_training_set(image_model, monkeypatch):
    """The sticker reads its training mini-batches and pastes its held-out inputs in chunks of a fixed
    number of bytes: neither the held-out sample nor the training set is held (nor their pasted copies).
    The chunk (16 MiB: 27 inputs at 224 px) is lowered to 512 KiB, 42 inputs of 3x32x32, so that the
    448 inputs here take several chunks as 224 px inputs would."""
    from roadworthy.attacks import _losses

    monkeypatch.setattr(_losses, "GRAD_BATCH_INPUT_BYTES", 512 * 2**10)
    params = AdversarialSticker.Params(sweep=(0.05,), steps=4, batch_size=32)
    small, _ = _traced_peak(
        AdversarialSticker(dataclasses.replace(params, n_samples=64, n_train=64)), _ctx(image_model, 128)
    )
    large, out = _traced_peak(
        AdversarialSticker(dataclasses.replace(params, n_samples=448, n_train=448)), _ctx(image_model, 448)
    )
    one_copy = 448 * 3 * SIZE * SIZE * 4
    assert out.details["optimised_on"]["n"] == 448 and out.details["threat_model"]["samples"] == 448
    assert large < small + one_copy / 4, (small, large)


def test_fgsm_attack_on_a_sample_gives_the_run_numbers(image_model):
    """``FGSM.attack`` on a whole sample (the gradient signs per block) and the sharded ``run``."""
    ctx = _ctx(image_model, 150)
    check = FGSM(FGSM.Params(n_samples=150, refine_steps=2))
    s = check.sample(ctx)
    assert check.outcome(ctx, s, check.attack(ctx, s)).metrics == check.run(ctx).metrics
