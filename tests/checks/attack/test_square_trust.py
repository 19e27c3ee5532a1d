"""Square Attack's trust verdict judges the evaluation, not the random search's reach at a huge strength.

At L-inf 0.5 Square draws noise-like images; a healthy CNN that maps all noise to one class keeps that
class's inputs correct against every one of them. The self-check also moves each input toward the nearest
evaluation input of another predicted class, so such a model is trusted, while a constant model (nothing
to break) and a randomised one (answers that change between calls) are not.
"""

from __future__ import annotations

import numpy as np

from roadworthy.attacks._pool import StartPool
from roadworthy.attacks.square import move_toward_other_class, square_attack_result
from roadworthy.checks.attack.square import SquareAttack
from roadworthy.policy import Policy, evaluate_gates
from roadworthy.runner import run_check, run_checks
from roadworthy.session import select_checks
from tests.checks.attack.conftest import ROUGH, roughness


def test_the_quick_attack_suite_trusts_a_healthy_model_that_maps_noise_to_one_class(
    noise_is_zero_model, low_digits
):
    from roadworthy.checks.base import Context

    ctx = Context(model=noise_is_zero_model, data=low_digits, budget="quick", seed=0)
    classes = [c for c in select_checks(["attack"], "quick") if c.suite() == "attack"]
    results = {r.id: r for r in run_checks(classes, ctx)}
    square = results["attack.square"]
    assert square.status == "pass", (square.error, square.warnings)
    huge = square.details["trust"]["huge_eps"]
    assert huge["robust_accuracy"] <= 0.1, huge
    assert square.metrics["attack.square.trustworthy"] == 1.0, square.details["trust"]
    assert {f["name"] for f in square.details["trust"]["findings"]} == {"huge_eps", "stability"}

    summary = results["attack.summary"]
    assert summary.metrics["attack.trustworthy"] == 1.0, summary.warnings
    metrics = {k: v for r in results.values() for k, v in r.metrics.items()}
    gates = [g for g in evaluate_gates(Policy(), metrics) if g.metric.startswith("attack.")]
    assert [g.passed for g in gates if g.metric == "attack.trustworthy"] == [True]
    assert all(g.passed is not False for g in gates), gates  # the white-box gate is not evaluated here


def test_square_at_a_huge_strength_leaves_the_noise_class_standing(noise_is_zero_model, low_digits):
    """Why the move is needed: Square's own search at L-inf 0.5 cannot break class 0 on this model."""
    x = low_digits.x[low_digits.y == 0][:8]
    y = np.zeros(len(x), np.int64)
    r = square_attack_result(noise_is_zero_model.predict, x, y, 0.5, 50, rng=np.random.default_rng(0))
    assert (noise_is_zero_model.predict(r.x_adv).argmax(1) == 0).mean() >= 0.5
    pool = StartPool(low_digits.x, noise_is_zero_model.predict(low_digits.x).argmax(1))
    moved, fooled = move_toward_other_class(noise_is_zero_model.predict, x, y, pool, 0.5)
    assert fooled.all()
    assert (roughness(moved) < ROUGH).all()  # the moves look like digits, not noise


def test_a_constant_model_leaves_nothing_breakable_and_is_not_trustworthy(digits_data):
    from roadworthy.checks.base import Context
    from roadworthy.models.function import FunctionModel

    def always_three(x: np.ndarray) -> np.ndarray:
        out = np.zeros((len(x), 10), np.float32)
        out[:, 3] = 1.0
        return out

    ctx = Context(model=FunctionModel(always_three, input_shape=(1, 16, 16)), data=digits_data, seed=0)
    params = SquareAttack.Params(n_samples=60, sweep=(8 / 255,), max_queries=20, huge_queries=20)
    sq = run_check(SquareAttack, ctx, params)
    assert sq.metrics["attack.square.trustworthy"] == 0.0
    (huge,) = [f for f in sq.details["trust"]["findings"] if f["name"] == "huge_eps"]
    assert not huge["ok"] and huge["value"] == 1.0
    assert sq.details["trust"]["huge_eps"]["fooled_by_move_only"] == 0


def test_a_randomised_model_is_not_trustworthy(digits_onnx_model, digits_data):
    from roadworthy.checks.base import Context
    from roadworthy.models.function import FunctionModel

    coin = np.random.default_rng(5)

    def noisy_inputs(x: np.ndarray) -> np.ndarray:  # a randomised defence: fresh input noise every call
        return digits_onnx_model.predict(np.clip(x + coin.normal(0, 0.2, x.shape), 0, 1).astype(np.float32))

    ctx = Context(
        model=FunctionModel(noisy_inputs, input_shape=(1, 16, 16)), data=digits_data, budget="quick"
    )
    assert (ctx.clean_pred == digits_data.y).mean() > 0.9  # it still looks healthy on clean data
    sq = run_check(SquareAttack, ctx)
    assert sq.metrics["attack.square.trustworthy"] == 0.0
    (stability,) = [f for f in sq.details["trust"]["findings"] if f["name"] == "stability"]
    assert not stability["ok"] and stability["value"] > 0.3, sq.details["trust"]
