"""White-box attacks on the trained digits CNN: strength, budgets, determinism, self-checks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from roadworthy.checks.attack import _common as common
from roadworthy.checks.attack.gradient import (
    APGDCE,
    APGDDLR,
    FGSM,
    PGDL2,
    PGDLinf,
    apgd,
    apgd_checkpoints,
    fgsm,
    pgd,
)
from roadworthy.checks.base import Context
from roadworthy.runner import run_check
from tests.checks.attack.conftest import headline


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


def test_apgd_checkpoints_follow_the_paper():
    assert apgd_checkpoints(100) == [22, 41, 57, 70, 80, 87, 93, 99]


def test_pgd_check_reports_contract_metrics(ctx):
    out = PGDLinf(PGDLinf.Params(n_samples=128, steps=5, refine_steps=1), budget="quick").run(ctx)
    m = out.metrics
    for key in (
        "attack.pgd_linf.robust_accuracy",
        "attack.pgd_linf.robust_accuracy_ci_low",
        "attack.pgd_linf.eps_0.03137.robust_accuracy",
        "attack.pgd_linf.eps_0.00392.robust_accuracy",
        "attack.pgd_linf.success_rate",
        "attack.pgd_linf.median_perturbation",
        "attack.pgd_linf.trustworthy",
    ):
        assert key in m, key
    assert m["attack.pgd_linf.robust_accuracy"] == m["attack.pgd_linf.eps_0.03137.robust_accuracy"]
    curve = out.details["curve"]["robust_accuracy"]
    assert curve == sorted(curve, reverse=True)  # cumulative: never rises with strength
    assert 0 < m["attack.pgd_linf.median_perturbation"] < 0.5
    assert m["attack.pgd_linf.trustworthy"] == 1.0 and not out.warnings
    assert out.details["threat_model"]["nist_class"] == "evasion, white-box"
    assert out.details["threat_model"]["eps_text"] == "8/255"
    assert set(out.details["per_class"]) == {str(i) for i in range(10)}
    assert out.summary.startswith("PGD-Linf: robust accuracy") and "trustworthy" in out.summary
    assert 1 <= len(out.examples) <= 6 and out.examples[0].extra[0].uri.startswith("data:image/png")


def test_median_perturbation_is_a_real_flipping_eps(ctx):
    """Each input's reported smallest eps really flips it (bisection keeps the upper end)."""
    out = FGSM(FGSM.Params(n_samples=128, refine_steps=3), budget="quick").run(ctx)
    med = out.metrics["attack.fgsm.median_perturbation"]
    assert math.isfinite(med)
    lo = out.metrics["attack.fgsm.eps_0.06275.robust_accuracy"]
    assert lo < out.metrics["attack.fgsm.eps_0.00392.robust_accuracy"]


def test_attacks_are_deterministic_from_the_seed(digits_model, digits_data):
    def run(seed: int) -> dict[str, float]:
        c = Context(model=digits_model, data=digits_data, budget="quick", seed=seed)
        return PGDLinf(PGDLinf.Params(n_samples=64, steps=5, refine_steps=1), budget="quick").run(c).metrics

    assert run(0) == run(0)


def test_masked_gradients_trigger_the_trust_warning(masked_ctx):
    out = PGDLinf(PGDLinf.Params(n_samples=64, steps=5, refine_steps=0), budget="quick").run(masked_ctx)
    assert out.metrics["attack.pgd_linf.trustworthy"] == 0.0
    assert any("gradients were zero for 100% of samples" in w for w in out.warnings), out.warnings
    assert out.summary.count("not trustworthy") == 1
    health = out.details["trust"]["gradient_health"]
    assert health["zero"] == 1.0


def test_dlr_is_skipped_for_a_binary_model(digits_data):
    from roadworthy.models.torch import TorchModel

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(256, 2))
    model = TorchModel(net, input_shape=(1, 16, 16))
    data = digits_data.subset(np.flatnonzero(digits_data.y < 2))
    c = Context(model=model, data=data, budget="quick", seed=0)
    result = run_check(APGDDLR, c)
    assert result.status == "skipped" and "at least 3 classes" in result.summary
    ce = run_check(APGDCE, c)  # the CE variant handles two classes
    assert ce.status in ("pass", "warn"), ce.error


def test_l2_and_apgd_checks_run(ctx):
    l2 = PGDL2(PGDL2.Params(n_samples=48, steps=5, refine_steps=0), budget="quick").run(ctx)
    assert "attack.pgd_l2.eps_0.50000.robust_accuracy" in l2.metrics
    assert l2.details["threat_model"]["norm"] == "L2"
    assert l2.details["trust"]["huge_eps"]["eps"] == pytest.approx(0.5 * 16)
    dlr = APGDDLR(APGDDLR.Params(n_samples=48, steps=8), budget="quick").run(ctx)
    assert dlr.metrics["attack.apgd_dlr.trustworthy"] == 1.0, headline(dlr.metrics)
    figs = PGDL2.figures(run_check(PGDL2, ctx, PGDL2.Params(n_samples=16, steps=2, refine_steps=0)))
    assert figs and figs[0][1].startswith("data:image/svg+xml")


def test_invalid_strength_is_a_clear_user_error(ctx):
    from roadworthy.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match=r"every `eps` must be \(0, 1\] for L-inf"):
        PGDLinf(PGDLinf.Params(n_samples=8, eps=2.0), budget="quick").run(ctx)
