"""``fuzz.deephunter``: a planted weakness is found, invalid mutants are not failures, black boxes get
prediction feedback, and the report carries coverage before/after beside random testing."""

from __future__ import annotations

import numpy as np
import pytest

from roadworthy.checks.base import Context
from roadworthy.checks.fuzz import deephunter
from roadworthy.checks.fuzz.deephunter import DeepHunterFuzz, FuzzParams

SMALL = FuzzParams(max_queries=600, n_seeds=40, n_profile=300, n_examples=3)


class _RejectAll:
    """A validity gate that calls every input out of distribution."""

    def in_envelope(self, x: np.ndarray) -> np.ndarray:
        return np.zeros(len(x), dtype=bool)

    def describe(self) -> dict:
        return {"detector": "reject-all (test)"}


def _planted(module, target: int, threshold: float):
    """The digits CNN with a planted weakness: images brighter than ``threshold`` on average are ``target``."""
    import torch
    from torch import nn

    class Planted(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.base = module

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            logits = self.base(x)
            bright = x.mean(dim=(1, 2, 3)) > threshold
            forced = torch.full_like(logits, -20.0)
            forced[:, target] = 20.0
            return torch.where(bright[:, None], forced, logits)

    return Planted().eval()


def test_a_planted_weakness_is_found(digits_module, digits_data, digits_train_data, monkeypatch):
    from roadworthy.models.torch import TorchModel

    x = digits_data.x
    # just above the seeds' typical brightness: a brightness/contrast mutation crosses it, the seeds do not
    threshold = float(np.quantile(x.mean(axis=(1, 2, 3)), 0.9)) + 0.02
    monkeypatch.setattr(deephunter, "_gate", lambda ctx: (None, "not under test"))

    def to_three(module) -> int:
        model = TorchModel(module, input_shape=(1, 16, 16))
        ctx = Context(model=model, data=digits_data, train_data=digits_train_data, budget="quick", seed=0)
        out = DeepHunterFuzz(SMALL).run(ctx)
        assert out.details["feedback"] == "neuron coverage"
        pairs = out.details["runs"]["guided"]["class_pairs"]
        return sum(r["valid_failures"] for r in pairs if r["predicted"] == "3" and r["true"] != "3")

    planted, plain = to_three(_planted(digits_module, 3, threshold)), to_three(digits_module)
    # the weakness shows as many more failures into the planted class than the plain model has
    assert planted >= 2 * plain + 10, (planted, plain)


def test_invalid_mutants_are_not_failures(ctx, monkeypatch):
    monkeypatch.setattr(deephunter, "_gate", lambda ctx: (_RejectAll(), None))
    out = DeepHunterFuzz(SMALL).run(ctx)
    m = out.metrics
    assert m["fuzz.failures"] > 0, "the digits CNN should fail on some mutants"
    assert m["fuzz.valid_failures"] == 0
    assert m["fuzz.invalid_failures"] == m["fuzz.failures"]
    assert m["fuzz.unique_failures"] == 0 and m["fuzz.failure_rate"] == 0.0
    assert out.examples == []  # only valid failures are shown as defects


def test_report_has_coverage_before_after_and_the_random_baseline(ctx):
    out = DeepHunterFuzz(SMALL).run(ctx)
    m = out.metrics
    for c in ("nc", "kmnc", "nbc", "snac", "tknc"):
        for prefix in ("fuzz", "fuzz.random"):
            assert 0.0 <= m[f"{prefix}.{c}.coverage_before"] <= m[f"{prefix}.{c}.coverage"] <= 1.0
    assert m["fuzz.mutants"] == m["fuzz.random.mutants"]  # the same budget
    lo, hi = m["fuzz.failure_rate_ci_low"], m["fuzz.failure_rate_ci_high"]
    assert 0.0 <= lo <= m["fuzz.failure_rate"] <= hi <= 1.0
    kinds = [e["kind"] for e in out.details["evidence"]]
    assert kinds.count("bars") == 2 and "heatmap" in kinds and "lines" in kinds
    assert out.details["validity"]["gate"] is not None  # the session's gate, fitted on training data
    assert out.details["meaning"]
    # DeepHunter's random mode draws entries uniformly whatever the guided run's strategy
    assert out.details["runs"]["guided"]["strategy"] == "prob"
    assert out.details["runs"]["random"]["strategy"] == "uniform"
    assert "uniform" in out.details["baseline"]
    held = out.details["runs"]["guided"]["queue_images"]
    assert 0 < held["peak_bytes"] <= held["max_bytes"] and held["rebuilt"] >= 0


def test_a_black_box_model_is_fuzzed_with_prediction_feedback(digits_module, digits_data):
    import torch

    from roadworthy.models.function import FunctionModel

    def fn(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return digits_module(torch.from_numpy(x)).numpy()

    model = FunctionModel(fn, input_shape=(1, 16, 16), n_classes=10, output="logits")
    ctx = Context(model=model, data=digits_data, budget="quick", seed=0)
    out = DeepHunterFuzz(SMALL).run(ctx)
    assert "prediction" in out.details["feedback"]
    assert "fuzz.prediction.coverage" in out.metrics
    assert not any(k.startswith("fuzz.kmnc") for k in out.metrics)


@pytest.mark.parametrize("budget", ["quick", "standard", "thorough"])
def test_budgets_grow(budget):
    p = DeepHunterFuzz(budget=budget).params
    assert p.max_queries >= 1000 and p.random_baseline


def test_operators_constraint_and_project_shifts_are_parameters(ctx, monkeypatch):
    """The check's parameters choose DeepHunter's operators, its constraint, and add the project's
    shifts as pixel operators; every mutant still satisfies the constraint."""
    import dataclasses

    from roadworthy.coverage import mutations
    from roadworthy.errors import InvalidInputError

    monkeypatch.setattr(deephunter, "_gate", lambda ctx: (None, "not under test"))
    seen: list[tuple[float, float]] = []
    real = mutations.mutate

    def spy(*args, **kwargs):
        seen.append((args[7], args[8]))  # alpha, beta as the loop passes them
        return real(*args, **kwargs)

    monkeypatch.setattr("roadworthy.coverage.fuzzer.mutate", spy)
    params = dataclasses.replace(
        SMALL,
        random_baseline=False,
        operators=("brightness", "rotation"),
        shifts=("jpeg_compression", "gaussian_noise"),
        shift_severities=(1,),
        alpha=0.05,
        beta=0.3,
    )
    out = DeepHunterFuzz(params).run(ctx)
    ops = out.details["runs"]["guided"]["operators"]
    assert set(ops) == {"brightness", "rotation", "shift:jpeg_compression", "shift:gaussian_noise"}
    assert ops["shift:jpeg_compression"]["mutants"] > 0  # a mild JPEG pass fits DeepHunter's bound
    assert seen and set(seen) == {(0.05, 0.3)}
    with pytest.raises(InvalidInputError, match="unknown shift"):
        DeepHunterFuzz(dataclasses.replace(params, shifts=("hail",))).run(ctx)
    with pytest.raises(InvalidInputError, match="shift_severities"):
        DeepHunterFuzz(dataclasses.replace(params, shift_severities=(9,))).run(ctx)
    with pytest.raises(InvalidInputError, match="mutation operator"):
        DeepHunterFuzz(dataclasses.replace(params, operators=("warp",))).run(ctx)


def test_a_model_wrong_on_every_seed_is_the_checks_error_but_a_bad_parameter_stops_the_run(digits_data):
    """Run as sample-sharded blocks, the check keeps the rule of every sharded check: an invalid
    parameter (an unknown shift operator) fails every block for an input reason and stops the run
    (exit 2); a model that misclassifies every seed is a finding about the model, the check's error."""
    import dataclasses

    from roadworthy.checks.base import ShardInputError
    from roadworthy.data.base import Dataset
    from roadworthy.models.function import FunctionModel
    from roadworthy.runner.local import run_check

    keep = digits_data.y != 0
    data = Dataset(
        x=digits_data.x[keep], y=digits_data.y[keep], modality="image", class_names=digits_data.class_names
    )

    def always_zero(x: np.ndarray) -> np.ndarray:
        out = np.zeros((len(x), 10), np.float32)
        out[:, 0] = 5.0
        return out

    model = FunctionModel(always_zero, input_shape=(1, 16, 16), n_classes=10, output="logits")
    ctx = Context(model=model, data=data, budget="quick", seed=0)
    for campaigns in (1, 2):
        result = run_check(DeepHunterFuzz, ctx, dataclasses.replace(SMALL, campaigns=campaigns))
        assert result.status == "error" and "misclassifies every seed" in result.error
    # with every class: only the zeros are right; sub-campaigns without a zero among their seeds drop them
    full = Context(model=model, data=digits_data, budget="quick", seed=0)
    split = run_check(DeepHunterFuzz, full, dataclasses.replace(SMALL, campaigns=10))
    assert split.status != "error", split.error
    guided = split.details["runs"]["guided"]
    assert split.details["n_seeds"] + split.details["n_seeds_dropped"] == SMALL.n_seeds
    assert 1 <= split.details["n_seeds"] < 10  # the zeros among the 40 seeds, in fewer than 10 groups
    assert guided["mutants"] > 0 and split.details["campaigns"]["count"] == 10
    with pytest.raises(ShardInputError, match=r"fuzz.deephunter: .*unknown shift"):
        run_check(DeepHunterFuzz, ctx, dataclasses.replace(SMALL, shifts=("hail",)))


def test_both_campaigns_share_one_profile_of_the_bounds_per_process(ctx, monkeypatch):
    """The guided campaign and the random baseline (two blocks) profile the training data once in a
    process and share the bounds; a fresh context (another worker) profiles again, to the same values."""
    from roadworthy import coverage
    from roadworthy.checks.base import Context

    calls: list[int] = []
    real = coverage.profile

    def counting(probe, x, *args, **kwargs):
        calls.append(len(x))
        return real(probe, x, *args, **kwargs)

    monkeypatch.setattr(coverage, "profile", counting)
    monkeypatch.setattr(deephunter, "_gate", lambda ctx: (None, "not under test"))
    check = DeepHunterFuzz(SMALL)
    blocks = check.blocks(ctx)
    assert len(blocks) == 2
    parts = check.run_blocks(ctx, blocks)
    assert calls == [SMALL.n_profile]
    other = Context(model=ctx.model, data=ctx.data, train_data=ctx.train_data, budget="quick", seed=0)
    again = check.run_blocks(other, blocks[1:])
    assert calls == [SMALL.n_profile] * 2
    assert again[0]["result"].coverage_after == parts[1]["result"].coverage_after
    assert [p["run"] for p in parts] == ["guided", "random"] and parts[0]["profile_source"] == "training"


def test_sub_campaigns_merge_into_one_result_over_every_seed(digits_model, digits_data, digits_train_data):
    """``merge_results``: sub-campaigns on round-robin groups of seeds merge into one result whose
    coverage is the union of theirs (never below any of them; after the dry runs exactly the one
    campaign's, since together they ran every seed once), whose counts add up, and whose failures point
    at the right seeds of the whole sample."""
    from roadworthy.coverage import fuzz, make_probe, merge_results, profile

    x = np.asarray(digits_data.x[:36], np.float32)
    y = np.asarray(digits_data.y[:36]).astype(np.int64)
    probe = make_probe(digits_model, x[:1])
    try:
        bounds = profile(probe, np.asarray(digits_train_data.x[:200], np.float32))
        kw = {"train": bounds, "probe": probe, "mutants_per_seed": 5, "seeds_per_iteration": 4}
        whole = fuzz(digits_model, x, y, max_queries=300, seed=1, **kw)
        groups = [np.arange(g, 36, 3) for g in range(3)]
        parts = [
            fuzz(digits_model, x[gr], y[gr], max_queries=100, seed=10 + g, keep_cells=True, **kw)
            for g, gr in enumerate(groups)
        ]
    finally:
        probe.close()
    merged = merge_results(parts, groups)
    for name, s in merged.coverage_after.items():
        assert s.cells_covered >= max(p.coverage_after[name].cells_covered for p in parts)
        assert s.cells_covered <= sum(p.coverage_after[name].cells_covered for p in parts)
        assert merged.coverage_before[name] == whole.coverage_before[name]
    assert merged.n_queries == sum(p.n_queries for p in parts) <= 300
    assert merged.n_mutants == sum(p.n_mutants for p in parts) > 0
    assert merged.n_seeds == whole.n_seeds and sum(merged.mutants_by_seed.values()) == merged.n_mutants
    assert len(merged.failures) == sum(len(p.failures) for p in parts) > 0
    for f in merged.failures:  # the seed index points into the whole sample, at a seed of the same class
        assert f.true_class == y[f.seed_index]
    assert [f.seed_index % 3 for f in merged.failures[: len(parts[0].failures)]] == [0] * len(
        parts[0].failures
    )
    assert {h["campaign"] for h in merged.history} == {0, 1, 2}


def test_campaigns_must_leave_each_sub_campaign_seeds_and_queries(ctx):
    import dataclasses

    from roadworthy.checks.base import ShardInputError
    from roadworthy.runner.local import run_check

    for bad, queries, why in ((0, 600, "between 1 and"), (41, 600, "between 1 and"), (20, 50, "must exceed")):
        with pytest.raises(ShardInputError, match=why):
            run_check(DeepHunterFuzz, ctx, dataclasses.replace(SMALL, campaigns=bad, max_queries=queries))
