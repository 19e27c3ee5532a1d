"""The fuzz loop on the trained digits CNN: planted weaknesses are found, invalid mutants are not
defects, budgets and seeds are honoured, black-box models get prediction feedback."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from roadworthy.coverage import fuzz, make_operators, random_testing
from roadworthy.errors import InvalidInputError


@pytest.fixture(scope="module")
def seeds(digits_split):
    _, _, x_te, y_te = digits_split
    return x_te[:40], y_te[:40]


@pytest.fixture(scope="module")
def bright_threshold(seeds):
    """A mean brightness above most seeds' that one or two brightness steps reach (the few seeds above it
    are misclassified by the planted model and dropped by the dry run)."""
    x, _ = seeds
    return float(np.median(x.mean(axis=(1, 2, 3))) + 0.08)


@pytest.fixture(scope="module")
def planted(digits_module, bright_threshold):
    """The digits CNN with a planted weakness: on bright inputs it answers the next class."""
    import torch
    from torch import nn

    class Planted(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = digits_module

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            logits = self.net(x)
            bright = x.mean(dim=(1, 2, 3)) > bright_threshold
            return torch.where(bright[:, None], logits.roll(1, dims=1), logits)

    return Planted().eval()


def _comparable(result):
    """Everything but the timings."""
    d = dataclasses.asdict(result)
    d.pop("seconds")
    for f in d["failures"]:
        f["image"] = None if f["image"] is None else f["image"].tobytes()
    return d


SMALL = {"max_queries": 840, "seeds_per_iteration": 4, "mutants_per_seed": 20}


def test_fuzzing_finds_a_planted_weakness(
    planted, digits_module, seeds, bright_threshold, digits_split
) -> None:
    x, y = seeds
    x_tr = digits_split[0][:300]
    # pixel operators and small rotations, which the clean 16-px digits model mostly survives
    ops = make_operators(
        ["rotation", "brightness", "contrast", "blur"], params={"rotation": [a for a in range(-10, 11) if a]}
    )
    result = fuzz(planted, x, y, train=x_tr, operators=ops, seed=0, max_examples=1000, **SMALL)
    assert result.profile_source == "training"
    assert result.layers and result.criterion == "kmnc"
    assert result.n_queries == SMALL["max_queries"]
    # every mutant is counted under its root seed, the denominator of per-class failure rates
    assert sum(result.mutants_by_seed.values()) == result.n_mutants
    assert set(result.mutants_by_seed) <= set(range(len(x)))
    assert {f.seed_index for f in result.failures} <= set(result.mutants_by_seed)
    assert result.n_seeds_dropped >= int((x.mean(axis=(1, 2, 3)) > bright_threshold).sum())
    triggered = [f for f in result.failures if f.image.mean() > bright_threshold]
    assert len(result.failures) >= 12
    # the failures are the planted weakness: mutants brightened past the trigger
    assert len(triggered) > 0.7 * len(result.failures)
    assert all(any(op in ("brightness", "contrast") for op, _ in f.chain) for f in triggered)
    for f in result.failures:
        assert f.predicted_class != f.true_class
        assert f.true_class == y[f.seed_index]
    clean = fuzz(digits_module, x, y, train=x_tr, operators=ops, seed=0, **SMALL)
    assert len(result.failures) > 3 * len(clean.failures)
    # coverage grows from the dry run, and every criterion is reported
    assert set(result.coverage_after) == {"nc", "kmnc", "nbc", "snac", "tknc"}
    assert result.coverage_after["kmnc"].cells_covered > result.coverage_before["kmnc"].cells_covered
    assert result.queue_size > result.queue_size_initial == result.n_seeds


def test_invalid_mutants_are_not_counted_as_failures(planted, seeds, bright_threshold) -> None:
    x, y = seeds

    def in_distribution(batch: np.ndarray) -> np.ndarray:
        # the gate calls anything as bright as the plant's trigger out of distribution
        return batch.mean(axis=(1, 2, 3)) <= bright_threshold

    result = fuzz(planted, x, y, is_valid=in_distribution, seed=0, max_examples=1000, **SMALL)
    assert result.validity == "failures"
    assert result.invalid_failures, "the planted failures should be judged invalid"
    assert all(f.valid is False and f.image.mean() > bright_threshold for f in result.invalid_failures)
    assert all(f.valid is True and f.image.mean() <= bright_threshold for f in result.valid_failures)
    assert len(result.valid_failures) + len(result.invalid_failures) == len(result.failures)
    assert result.seeds_attacked == len({f.seed_index for f in result.valid_failures})

    everything = fuzz(
        planted, x, y, is_valid=in_distribution, validity_on="all", queue_invalid=False, seed=0, **SMALL
    )
    assert everything.validity == "all"
    assert sum(s["invalid"] for s in everything.operators.values()) >= len(everything.invalid_failures) > 0


def test_same_seed_same_result(digits_module, seeds) -> None:
    x, y = seeds
    a = fuzz(digits_module, x, y, seed=3, strategy="prob", **SMALL)
    b = fuzz(digits_module, x, y, seed=3, strategy="prob", **SMALL)
    c = fuzz(digits_module, x, y, seed=4, strategy="prob", **SMALL)
    assert _comparable(a) == _comparable(b)
    assert _comparable(a) != _comparable(c)
    assert a.profile_source == "evaluation"  # no training data given


@pytest.mark.parametrize("strategy", ["uniform", "recency", "tensorfuzz"])
def test_other_strategies_run_within_budget(digits_module, seeds, strategy) -> None:
    x, y = seeds
    result = fuzz(digits_module, x, y, strategy=strategy, criterion="nbc", criteria=["tknc"], seed=1, **SMALL)
    assert result.strategy == strategy and result.criterion == "nbc"
    assert set(result.coverage_after) == {"nbc", "tknc"}
    assert result.n_queries <= SMALL["max_queries"]
    if strategy == "recency":
        assert result.queue_size <= result.queue_size_initial + result.n_mutants


def test_random_testing_queues_every_passing_mutant(digits_module, seeds) -> None:
    x, y = seeds
    result = random_testing(digits_module, x, y, seed=0, **SMALL)
    assert result.mode == "random" and result.strategy == "uniform"
    assert result.queue_size == result.queue_size_initial + result.n_mutants - len(result.failures)
    assert result.n_queries == SMALL["max_queries"]


def test_misclassified_seeds_are_dropped_and_counted(digits_module, seeds) -> None:
    x, y = seeds
    wrong = y.copy()
    wrong[:5] = (wrong[:5] + 1) % 10
    result = fuzz(digits_module, x, wrong, seed=0, max_queries=200)
    assert result.n_seeds_dropped >= 5
    assert result.n_seeds + result.n_seeds_dropped == len(x)
    assert all(f.seed_index >= 5 or f.true_class == wrong[f.seed_index] for f in result.failures)


def test_black_box_model_gets_prediction_feedback(digits_module, seeds) -> None:
    from roadworthy.models.torch import TorchModel

    x, y = seeds
    wrapped = TorchModel(digits_module, input_shape=(1, 16, 16))
    black = type("Black", (), {})()
    black.predict, black.output, black.n_classes = wrapped.predict, "logits", 10
    result = fuzz(black, x, y, seed=0, **SMALL)
    assert result.criterion == "prediction" and result.layers == ()
    assert set(result.coverage_after) == {"prediction"}
    assert (
        result.coverage_after["prediction"].cells_covered > result.coverage_before["prediction"].cells_covered
    )
    with pytest.raises(InvalidInputError, match="black box"):
        fuzz(black, x, y, criterion="kmnc", max_queries=100)


def test_progress_and_parameter_errors(digits_module, seeds) -> None:
    x, y = seeds
    seen: list[tuple[int, int]] = []
    fuzz(
        digits_module, x, y, seed=0, max_queries=300, progress=lambda done, total: seen.append((done, total))
    )
    assert seen and seen[-1] == (300, 300)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    with pytest.raises(InvalidInputError, match="strategy"):
        fuzz(digits_module, x, y, strategy="newest")
    with pytest.raises(InvalidInputError, match="max_queries"):
        fuzz(digits_module, x, y, max_queries=0)
    with pytest.raises(InvalidInputError, match="one label per seed"):
        fuzz(digits_module, x, y[:3])


@pytest.mark.parametrize("mode", ["coverage", "random"])
def test_queue_images_stay_under_the_cap_and_results_do_not_depend_on_it(digits_module, seeds, mode) -> None:
    """The queue grows with the run, its held images do not: beyond ``max_queue_bytes`` they are
    dropped and rebuilt exactly from seed and steps, so every number is the same as with all held."""
    x, y = seeds
    run = fuzz if mode == "coverage" else random_testing
    image = x[0].nbytes
    held_all = run(digits_module, x, y, seed=5, **SMALL)
    assert held_all.queue_images["rebuilt"] == 0
    for cap in (0, 6 * image):
        capped = run(digits_module, x, y, seed=5, max_queue_bytes=cap, **SMALL)
        assert capped.queue_images["peak_bytes"] <= cap
        assert capped.queue_images["rebuilt"] > 0
        a, b = _comparable(held_all), _comparable(capped)
        a.pop("queue_images"), b.pop("queue_images")
        assert a == b
    # a longer run queues more entries but holds no more bytes
    longer = run(digits_module, x, y, seed=5, max_queue_bytes=6 * image, **(SMALL | {"max_queries": 1640}))
    assert longer.queue_size > held_all.queue_size
    assert longer.queue_images["peak_bytes"] <= 6 * image


def test_mutants_are_forwarded_in_batches_of_at_most_batch_size(digits_module, seeds) -> None:
    x, y = seeds
    sizes: list[int] = []
    hook = digits_module.register_forward_pre_hook(lambda _m, args: sizes.append(len(args[0])))
    try:
        result = fuzz(digits_module, x, y, seed=0, batch_size=32, **SMALL)
    finally:
        hook.remove()
    assert max(sizes) <= 32
    assert result.n_queries == SMALL["max_queries"]
    same = fuzz(digits_module, x, y, seed=0, **SMALL)  # one pass per iteration: the same result
    assert _comparable(result) == _comparable(same)


def test_nc_gate_changes_no_result_and_is_removed_after_the_run(digits_module, seeds, monkeypatch) -> None:
    """The probe skips the layer extrema NC cannot use during a run: every criterion's coverage and
    every failure are the same as with all extrema read, and the probe reads them all again after."""
    from roadworthy.coverage import make_probe
    from roadworthy.coverage._layers import Probe, TorchProbe

    x, y = seeds
    probe = make_probe(digits_module, x[:1])
    skipped = []
    call = TorchProbe.__call__

    def spy(self, xs):
        o = call(self, xs)
        skipped.append(int(np.isnan(o.layer_min).sum()))
        return o

    monkeypatch.setattr(TorchProbe, "__call__", spy)
    gated = fuzz(digits_module, x, y, seed=5, probe=probe, **SMALL)
    assert probe.gate is None
    assert sum(skipped) > 0  # the gate did skip minima
    skipped.clear()
    monkeypatch.setattr(Probe, "gate_extrema", lambda self, gate: False)
    monkeypatch.setattr(TorchProbe, "gate_extrema", lambda self, gate: False)
    plain = fuzz(digits_module, x, y, seed=5, probe=probe, **SMALL)
    assert sum(skipped) == 0
    assert _comparable(gated) == _comparable(plain)
    assert gated.coverage_after["nc"].cells_covered > 0
    probe.close()
