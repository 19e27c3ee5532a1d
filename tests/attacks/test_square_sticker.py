"""Square Attack's move toward another class stays in the ball; the sticker's patch lands where asked."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from roadworthy.attacks._pool import StartPool
from roadworthy.attacks.square import move_toward_other_class
from roadworthy.attacks.sticker import paste
from roadworthy.checks.attack import _common as common


@pytest.mark.parametrize("eps", [0.05, 0.3, 0.5])
def test_moves_stay_in_the_ball_and_stop_at_the_first_fooling_one(eps):
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (12, 2, 4, 4)).astype(np.float32)
    w = rng.normal(size=(32, 3)).astype(np.float32)
    calls = []

    def scores(b: np.ndarray) -> np.ndarray:
        calls.append(len(b))
        return (b.reshape(len(b), 32) - 0.5) @ w

    y = scores(x).argmax(1)
    assert len(set(y)) == 3
    calls.clear()
    moved, fooled = move_toward_other_class(scores, x, y, StartPool(x, y), eps, tries=4)
    sizes = list(calls)
    common.verify_budget(x, moved, eps, "linf", "move")
    assert (scores(moved).argmax(1)[fooled] != y[fooled]).all()
    # One query per input and try, at most four tries; an input fooled once is not asked again.
    assert sizes[0] == len(x) and len(sizes) <= 4 and sum(sizes) <= 4 * len(x)
    assert all(b <= a for a, b in itertools.pairwise(sizes))
    # No input of another class in the pool: nothing moves.
    one = StartPool(x, np.zeros(len(x), np.int64))
    still, none = move_toward_other_class(scores, x, np.zeros(len(x), np.int64), one, eps)
    assert not none.any() and np.array_equal(still, x)


def test_paste_puts_the_patch_where_asked():
    import torch

    x = torch.zeros(2, 1, 5, 5)
    patch = torch.ones(1, 2, 2)
    out = paste(x, patch, torch.tensor([0, 3]), torch.tensor([1, 2]))
    assert out[0, 0, 0:2, 1:3].eq(1).all() and out[0].sum() == 4
    assert out[1, 0, 3:5, 2:4].eq(1).all() and out[1].sum() == 4
    assert np.isclose(float(out.sum()), 8.0)


def test_patch_training_in_chunks_from_arrays_takes_the_one_batch_steps(monkeypatch):
    """``train_patch`` on NumPy inputs read per mini-batch, its gradient summed over chunks of 8 inputs,
    takes the steps of the one-batch gradient on tensors: the same random draws, the same mean loss."""
    import torch

    from roadworthy.attacks import _losses
    from roadworthy.attacks.sticker import train_patch

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.LazyLinear(5)
    )
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (100, 3, 12, 12)).astype(np.float32)
    y = rng.integers(0, 5, 100)
    net(torch.from_numpy(x[:1]))  # materialise the lazy layer

    def run(xs, ys):
        gen = torch.Generator().manual_seed(3)
        return train_patch(net, xs, ys, side=4, steps=6, batch_size=32, generator=gen).numpy()

    whole = run(torch.from_numpy(x), torch.from_numpy(y))
    monkeypatch.setattr(_losses, "GRAD_BATCH_INPUT_BYTES", 8 * 3 * 12 * 12 * 4)  # 8 inputs per chunk
    chunked = run(x, y)
    assert chunked.shape == whole.shape == (3, 4, 4)
    # a sign can differ only where a gradient component is zero up to rounding: almost every value agrees
    assert np.mean(np.abs(chunked - whole) < 1e-5) >= 0.95
