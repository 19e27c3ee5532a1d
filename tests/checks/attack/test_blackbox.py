"""Black-box attacks fool an ONNX export of the digits CNN through nothing but its outputs."""

from __future__ import annotations

import numpy as np

from roadworthy.checks.attack.hopskipjump import HopSkipJump
from roadworthy.checks.attack.laser import LaserBeam
from roadworthy.checks.attack.pixels import FewPixelAttack, LineAttack
from roadworthy.checks.attack.square import SquareAttack
from roadworthy.runner import run_check
from tests.checks.attack.conftest import headline


def test_onnx_model_is_black_box(onnx_ctx):
    assert "white_box" not in onnx_ctx.capabilities
    assert (onnx_ctx.clean_pred == onnx_ctx.data.y).mean() > 0.9


def test_blackbox_checks_run_on_the_onnx_model(onnx_ctx):
    square = run_check(
        SquareAttack, onnx_ctx, SquareAttack.Params(n_samples=32, max_queries=100, sweep=(8 / 255, 0.3))
    )
    assert square.status == "pass", square.error
    assert square.metrics["attack.square.eps_0.30000.robust_accuracy"] < 0.2
    assert square.metrics["attack.square.queries"] <= 100
    assert square.details["threat_model"]["nist_class"] == "evasion, black-box"

    hsj = run_check(HopSkipJump, onnx_ctx, HopSkipJump.Params(n_samples=12, max_queries=300))
    assert hsj.status == "pass", hsj.error
    assert np.isfinite(hsj.metrics["attack.hopskipjump.median_perturbation"])
    assert (
        hsj.metrics["attack.hopskipjump.eps_2.00000.robust_accuracy"]
        < hsj.metrics["attack.hopskipjump.eps_0.10000.robust_accuracy"]
    )


def test_sparse_and_laser_checks_run_on_the_onnx_model(onnx_ctx):
    pixels = run_check(
        FewPixelAttack,
        onnx_ctx,
        FewPixelAttack.Params(n_samples=16, strengths=(1, 4), default=4, popsize=12, generations=5),
    )
    assert pixels.status == "pass", pixels.error
    assert pixels.metrics["attack.pixels.queries"] <= 12 * 6
    line = run_check(
        LineAttack,
        onnx_ctx,
        LineAttack.Params(n_samples=16, strengths=(16,), default=16, popsize=12, generations=5),
    )
    assert line.status == "pass", line.error
    assert line.metrics["attack.line.success_rate"] > 0.05, headline(line.metrics)  # ~0.2-0.35 here
    laser = run_check(LaserBeam, onnx_ctx, LaserBeam.Params(n_samples=16, restarts=2, iterations=30))
    assert laser.status == "pass", laser.error
    assert laser.metrics["attack.laser.success_rate"] > 0.25  # ~0.4-0.65 with this tiny budget
    assert laser.metrics["attack.laser.queries"] <= 2 * (2 * 30 + 1)
    assert laser.details["threat_model"]["physically_realisable"] is True
    assert laser.examples and laser.examples[0].changed.startswith("data:image/png")


def test_square_stops_once_its_interval_is_tight_and_says_so(onnx_ctx):
    """At a strength that breaks nearly every input, 32 inputs already pin the robust accuracy within
    0.06: the sequential rule stops there; without the rule all 96 planned inputs are attacked."""
    params = {"n_samples": 96, "max_queries": 100, "sweep": (0.3,), "eps": 0.3, "huge_samples": 8}
    tight = run_check(SquareAttack, onnx_ctx, SquareAttack.Params(**params, interval_half_width=0.06))
    full = run_check(SquareAttack, onnx_ctx, SquareAttack.Params(**params, interval_half_width=0.0))
    assert tight.status == full.status == "pass", (tight.error, full.error)
    seq = tight.details["sequential"]
    assert seq["stopped_early"] and seq["attacked_inputs"] < 96 and seq["planned_inputs"] == 96
    assert tight.details["threat_model"]["samples"] == seq["attacked_inputs"]
    lo = tight.metrics["attack.square.robust_accuracy_ci_low"]
    hi = tight.metrics["attack.square.robust_accuracy_ci_high"]
    assert (hi - lo) / 2 <= 0.06 + 1e-9
    assert not full.details["sequential"]["stopped_early"]
    assert full.details["threat_model"]["samples"] == 96
    # the attacked inputs are a prefix of the same order: the robust accuracies agree within the interval
    assert lo - 1e-9 <= full.metrics["attack.square.robust_accuracy"] <= hi + 1e-9


def test_laser_keeps_attacking_while_its_interval_is_wide(onnx_ctx):
    """About half the inputs fall to a short laser search: 64 inputs cannot pin that within 0.06, so
    every planned input is attacked and the report says the rule did not stop it."""
    laser = run_check(
        LaserBeam,
        onnx_ctx,
        LaserBeam.Params(n_samples=64, restarts=2, iterations=30, interval_half_width=0.06),
    )
    assert laser.status == "pass", laser.error
    assert 0.15 < laser.metrics["attack.laser.success_rate"] < 0.9, headline(laser.metrics)
    assert laser.details["sequential"]["attacked_inputs"] == 64
    assert not laser.details["sequential"]["stopped_early"]
