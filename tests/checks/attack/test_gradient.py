"""White-box attacks on the trained digits CNN: strength, budgets, determinism, self-checks."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from roadworthy import evidence
from roadworthy.checks.attack.apgd import APGDCE, APGDDLR
from roadworthy.checks.attack.fgsm import FGSM
from roadworthy.checks.attack.pgd import PGDL2, PGDLinf
from roadworthy.checks.base import Context
from roadworthy.report.figures import draw
from roadworthy.runner import run_check
from tests.checks.attack.conftest import headline


def test_pgd_check_reports_contract_metrics(ctx):
    # the quick budget's minimum-norm steps (30): at 20 the search missed 3-5 of 127 inputs PGD broke,
    # depending on the CPU's rounding, which the agreement self-check rightly calls untrustworthy
    steps = PGDLinf.budget_params["quick"]["min_norm_steps"]
    out = PGDLinf(PGDLinf.Params(n_samples=128, steps=5, min_norm_steps=steps), budget="quick").run(ctx)
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
        return (
            PGDLinf(PGDLinf.Params(n_samples=64, steps=5, min_norm_steps=20), budget="quick").run(c).metrics
        )

    assert run(0) == run(0)


def test_masked_gradients_trigger_the_trust_warning(masked_ctx):
    out = PGDLinf(PGDLinf.Params(n_samples=64, steps=5, min_norm_steps=20), budget="quick").run(masked_ctx)
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
    l2 = PGDL2(PGDL2.Params(n_samples=48, steps=5, min_norm_steps=20), budget="quick").run(ctx)
    assert "attack.pgd_l2.eps_0.50000.robust_accuracy" in l2.metrics
    assert l2.details["threat_model"]["norm"] == "L2"
    assert l2.details["trust"]["huge_eps"]["eps"] == pytest.approx(0.5 * 16)
    dlr = APGDDLR(APGDDLR.Params(n_samples=48, steps=8), budget="quick").run(ctx)
    assert dlr.metrics["attack.apgd_dlr.trustworthy"] == 1.0, headline(dlr.metrics)
    result = run_check(PGDL2, ctx, PGDL2.Params(n_samples=16, steps=2, min_norm_steps=20))
    figs = [draw(item) for item in result.details[evidence.KEY]]  # evidence: the curve as data
    assert figs and figs[0][1].startswith("data:image/svg+xml")


def test_invalid_strength_is_a_clear_user_error(ctx):
    from roadworthy.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match=r"every `eps` must be \(0, 1\] for L-inf"):
        PGDLinf(PGDLinf.Params(n_samples=8, eps=2.0), budget="quick").run(ctx)


def test_trust_thresholds_are_parameters_and_findings_are_metrics(ctx):
    """A threshold no attack can meet makes the check untrustworthy; the finding's value is a metric."""
    p = PGDLinf.Params(n_samples=32, steps=2, min_norm_steps=20, sweep=(8 / 255, 16 / 255))
    normal = PGDLinf(p, budget="quick").run(ctx)
    assert normal.metrics["attack.pgd_linf.trustworthy"] == 1.0, headline(normal.metrics)
    huge = normal.metrics["attack.pgd_linf.trust.huge_eps"]
    assert 0.0 <= huge <= p.max_accuracy_at_huge_eps
    assert 0.0 <= normal.metrics["attack.pgd_linf.trust.gradients"] <= p.max_dead_gradients
    assert 0.0 <= normal.metrics["attack.pgd_linf.trust.agreement"] <= max(p.max_disagreement, 2 / 32)
    strict = dataclasses.replace(p, max_accuracy_at_huge_eps=-1.0)
    out = PGDLinf(strict, budget="quick").run(ctx)
    assert out.metrics["attack.pgd_linf.trustworthy"] == 0.0
    assert out.metrics["attack.pgd_linf.trust.huge_eps"] == huge  # same seed, same measurement
    assert PGDLinf(strict).params_dict()["max_accuracy_at_huge_eps"] == -1.0  # reaches the report
    ((item,),) = [out.details[evidence.KEY]]
    assert item["kind"] == "lines" and list(item["series"]) == ["attack.pgd_linf"]
