"""HopSkipJump's starting points and its trust verdict.

A healthy CNN often maps all uniform noise to one class; noise then gives that class's inputs no start.
The check starts from the nearest evaluation input of another predicted class instead, leaves inputs
without any start out of the accuracies, and judges the evaluation, not the start heuristic.
"""

from __future__ import annotations

import numpy as np
import pytest

from roadworthy.checks.attack.hopskipjump import HopSkipJump
from roadworthy.checks.attack.summary import AttackSummary
from roadworthy.policy import Policy, evaluate_gates
from roadworthy.runner import run_check
from tests.checks.attack.conftest import ROUGH, headline, roughness


def test_the_wrapper_is_a_healthy_model_that_maps_noise_to_one_class(noise_is_zero_model, low_digits):
    assert (roughness(low_digits.x) < ROUGH - 0.03).all()
    noise = np.random.default_rng(0).uniform(0, 1, (500, 1, 16, 16)).astype(np.float32)
    assert (noise_is_zero_model.predict(noise).argmax(1) == 0).all()
    assert (noise_is_zero_model.predict(low_digits.x).argmax(1) == low_digits.y).mean() > 0.95


def test_every_input_starts_from_a_real_input_and_the_default_gate_passes(noise_is_zero_model, low_digits):
    from roadworthy.checks.base import Context

    ctx = Context(model=noise_is_zero_model, data=low_digits, budget="standard", seed=0)
    hsj = run_check(HopSkipJump, ctx)  # the standard budget's defaults
    m = hsj.metrics
    assert m["attack.hopskipjump.trustworthy"] == 1.0, hsj.details["trust"]
    assert hsj.status == "pass", (hsj.error, hsj.warnings)
    starts = hsj.details["starts"]
    # Noise starts nothing for class 0 (about a fifth of the inputs); real inputs start every one.
    assert starts["none"] == 0 and starts["from_noise"] == 0, starts
    assert starts["from_input"] == hsj.details["n_clean_correct"] >= 36
    assert m["attack.hopskipjump.start_failures"] == 0.0
    assert {f["name"] for f in hsj.details["trust"]["findings"]} == {"coverage", "progress", "stability"}
    # Starting near a real input leaves the distances to shrink; every input is broken by L2 2 or less.
    assert m["attack.hopskipjump.eps_2.00000.robust_accuracy"] < 0.1, headline(m)
    assert m["attack.hopskipjump.robust_accuracy_n"] == 40

    ctx.results[hsj.id] = hsj
    summary = run_check(AttackSummary, ctx)
    assert summary.metrics["attack.trustworthy"] == 1.0, summary.warnings
    gates = [g for g in evaluate_gates(Policy(), summary.metrics) if g.metric == "attack.trustworthy"]
    assert len(gates) == 1 and gates[0].passed is True


def test_a_model_with_one_answer_leaves_its_inputs_out_and_is_not_trustworthy(digits_data):
    from roadworthy.checks.base import Context
    from roadworthy.models.function import FunctionModel

    def always_three(x: np.ndarray) -> np.ndarray:
        out = np.zeros((len(x), 10), np.float32)
        out[:, 3] = 1.0
        return out

    ctx = Context(model=FunctionModel(always_three, input_shape=(1, 16, 16)), data=digits_data, seed=0)
    hsj = run_check(HopSkipJump, ctx, HopSkipJump.Params(n_samples=40, max_queries=40))
    assert hsj.status == "warn", hsj.error
    m = hsj.metrics
    assert m["attack.hopskipjump.start_failures"] == 1.0
    starts = hsj.details["starts"]
    # The threes (about a tenth of the sample) cannot be attacked: the robust accuracy rests on the others.
    assert starts["none"] == starts["attacked"] > 0
    assert m["attack.hopskipjump.robust_accuracy_n"] == 40 - starts["attacked"]
    assert m["attack.hopskipjump.robust_accuracy"] == 0.0
    assert m["attack.hopskipjump.trustworthy"] == 0.0
    assert "no input could be attacked" in hsj.details["trust"]["statement"]
    assert "predicts no other class" in hsj.details["trust"]["statement"]


def test_a_model_wrong_everywhere_has_nothing_to_attack():
    from roadworthy.checks.base import Context
    from roadworthy.data.base import Dataset
    from roadworthy.models.function import FunctionModel

    x = np.random.default_rng(0).uniform(0, 1, (30, 1, 8, 8)).astype(np.float32)
    data = Dataset(x=x, y=np.arange(30) % 3, modality="image", class_names=list("abcd"), path="none-right")

    def always_d(b: np.ndarray) -> np.ndarray:
        out = np.zeros((len(b), 4), np.float32)
        out[:, 3] = 1.0
        return out

    ctx = Context(model=FunctionModel(always_d, input_shape=(1, 8, 8)), data=data, seed=0)
    hsj = run_check(HopSkipJump, ctx)
    assert hsj.status == "pass", hsj.error
    assert hsj.metrics["attack.hopskipjump.robust_accuracy"] == 0.0
    assert hsj.metrics["attack.hopskipjump.start_failures"] == 0.0
    assert hsj.details["starts"]["attacked"] == 0


def test_labels_that_change_between_calls_make_the_evaluation_untrustworthy(digits_onnx_model, digits_data):
    from roadworthy.checks.base import Context
    from roadworthy.models.function import FunctionModel

    coin = np.random.default_rng(5)

    def flaky(x: np.ndarray) -> np.ndarray:
        logits = digits_onnx_model.predict(x)
        return logits + coin.normal(0, 1.0, logits.shape).astype(np.float32)  # a randomised defence

    ctx = Context(model=FunctionModel(flaky, input_shape=(1, 16, 16)), data=digits_data, seed=0)
    assert (ctx.clean_pred == digits_data.y).mean() > 0.9  # it still looks healthy on clean data
    hsj = run_check(HopSkipJump, ctx, HopSkipJump.Params(n_samples=16, max_queries=300))
    bad = {f["name"] for f in hsj.details["trust"]["findings"] if not f["ok"]}
    assert hsj.metrics["attack.hopskipjump.trustworthy"] == 0.0
    assert "stability" in bad, hsj.details["trust"]


def test_a_budget_too_small_to_iterate_is_not_trustworthy(onnx_ctx):
    hsj = run_check(HopSkipJump, onnx_ctx, HopSkipJump.Params(n_samples=8, max_queries=30))
    assert hsj.details["starts"]["none"] == 0
    assert hsj.metrics["attack.hopskipjump.trustworthy"] == 0.0
    (progress,) = [f for f in hsj.details["trust"]["findings"] if f["name"] == "progress"]
    assert not progress["ok"] and progress["value"] == pytest.approx(1.0)


def test_progress_and_stability_findings():
    from roadworthy.checks.attack import trust

    start = np.array([4.0, 2.0, 1.0, np.inf])
    assert trust.progress_finding(start, start * 0.5).ok
    assert trust.progress_finding(start, start * 0.5).value == pytest.approx(0.5)
    slow = trust.progress_finding(start, start * 0.9)
    assert slow.ok and slow.value == pytest.approx(0.9)  # slow is a warning of the check, not distrust
    stuck = trust.progress_finding(start, start)
    assert not stuck.ok and "did not move" in stuck.message
    assert trust.progress_finding(np.array([np.inf]), np.array([np.inf])).ok  # nothing to judge
    assert trust.stability_finding(np.ones(20, bool)).ok
    assert trust.stability_finding(np.r_[np.ones(19, bool), False]).ok  # one in twenty: within noise
    assert not trust.stability_finding(np.r_[np.ones(16, bool), np.zeros(4, bool)]).ok
    assert trust.coverage_finding(0, 0, "").ok and not trust.coverage_finding(5, 0, "no class").ok


def test_a_large_evaluation_set_gives_a_pool_balanced_over_predicted_classes(onnx_ctx):
    params = HopSkipJump.Params(n_samples=8, max_queries=200, start_pool=50, slow_progress=0.0)
    hsj = run_check(HopSkipJump, onnx_ctx, params)
    starts = hsj.details["starts"]
    assert starts["pool"] == 50 and starts["from_input"] == starts["attacked"] > 0  # 5 per predicted class
    # slow_progress=0 turns every run into a slow one: a warning, never distrust.
    assert hsj.metrics["attack.hopskipjump.trustworthy"] == 1.0
    assert any("had not converged" in w for w in hsj.warnings), hsj.warnings
