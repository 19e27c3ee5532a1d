"""White-box attack algorithms on the trained digits CNN and a tiny linear model: strength, budgets."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from roadworthy.attacks.apgd import apgd, apgd_checkpoints
from roadworthy.attacks.fgsm import fgsm
from roadworthy.attacks.pgd import pgd
from roadworthy.checks.attack import _common as common


def _accuracy(model, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model.forward_torch(x).argmax(1) == y).float().mean())


@pytest.fixture(scope="module")
def batch(digits_data):
    x = torch.from_numpy(digits_data.x[:120])
    y = torch.from_numpy(digits_data.y[:120])
    return x, y


def test_pgd_at_large_eps_drives_accuracy_near_zero(digits_model, batch):
    x, y = batch
    assert _accuracy(digits_model, x, y) > 0.9
    f = digits_model.forward_torch
    gen = torch.Generator().manual_seed(0)
    assert _accuracy(digits_model, pgd(f, x, y, 0.3, steps=20, generator=gen), y) < 0.03
    assert _accuracy(digits_model, pgd(f, x, y, 3.0, steps=20, norm="l2", generator=gen), y) < 0.03
    assert _accuracy(digits_model, apgd(f, x, y, 0.3, steps=20, loss="dlr", generator=gen), y) < 0.03


def test_pgd_is_at_least_as_strong_as_fgsm(digits_model, batch):
    x, y = batch
    f = digits_model.forward_torch
    eps = 24 / 255
    acc_fgsm = _accuracy(digits_model, fgsm(f, x, y, eps), y)
    acc_pgd = _accuracy(
        digits_model, pgd(f, x, y, eps, steps=10, generator=torch.Generator().manual_seed(0)), y
    )
    acc_apgd = _accuracy(
        digits_model, apgd(f, x, y, eps, steps=10, generator=torch.Generator().manual_seed(0)), y
    )
    # iterating must find strictly more adversarial inputs than the single FGSM step (the gap depends on
    # the trained weights: 5 to 16 points on this fixture across torch thread settings)
    assert acc_pgd < acc_fgsm
    assert acc_apgd <= acc_pgd + 0.02


def _tiny_linear() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(2 * 6 * 6, 4)).eval()


@settings(max_examples=25, deadline=None)
@given(
    eps=st.floats(0.0, 0.6),
    norm=st.sampled_from(["linf", "l2"]),
    steps=st.integers(1, 4),
    restarts=st.integers(1, 2),
    attack=st.sampled_from(["pgd", "apgd", "fgsm"]),
    per_sample=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_perturbations_stay_inside_eps_and_range(eps, norm, steps, restarts, attack, per_sample, seed):
    net = _tiny_linear()
    g = torch.Generator().manual_seed(seed)
    x = torch.rand((7, 2, 6, 6), generator=g)
    x[0] = 0.0  # inputs on the range's edges
    x[1] = 1.0
    y = torch.randint(0, 4, (7,), generator=g)
    e = torch.rand(7, generator=g) * eps if per_sample else eps
    if attack == "pgd":
        adv = pgd(net, x, y, e, steps=steps, norm=norm, restarts=restarts, generator=g)
    elif attack == "apgd":
        adv = apgd(net, x, y, e, steps=steps + 2, norm=norm, restarts=restarts, generator=g)
    else:
        norm = "linf"
        adv = fgsm(net, x, y, e)
    budget = e.numpy() if per_sample else eps
    common.verify_budget(x.numpy(), adv.numpy(), budget, norm, attack)  # raises if violated
    size = common.perturbation_norms(x.numpy(), adv.numpy(), norm)
    assert (size <= np.asarray(budget) + 1e-5).all()
    assert float(adv.min()) >= 0.0 and float(adv.max()) <= 1.0


def test_apgd_checkpoints_follow_the_paper():
    assert apgd_checkpoints(100) == [22, 41, 57, 70, 80, 87, 93, 99]


def test_budget_verification_raises_on_violation():
    x = np.zeros((2, 1, 4, 4), np.float32)
    bad = x.copy()
    bad[1, 0, 0, 0] = 0.1
    with pytest.raises(common.AttackBudgetError, match="sample 1"):
        common.verify_budget(x, bad, 0.05, "linf", "test")
    bad[1, 0, 0, 0] = -0.1
    with pytest.raises(common.AttackBudgetError, match=r"\[0, 1\]"):
        common.verify_budget(x, bad, 1.0, "linf", "test")
    with pytest.raises(ValueError, match="`norm`"):
        pgd(_tiny_linear(), torch.zeros(1, 2, 6, 6), torch.zeros(1, dtype=torch.long), 0.1, norm="l1")
