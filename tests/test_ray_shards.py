"""Sample sharding: any split of a check's blocks gives the numbers of one shard, locally and on Ray.

The layout tests need no Ray: they run a sharded check's blocks in different groups (as Ray workers
would) and merge them. The Ray tests start a local Ray instance and compare the local backend with 1 and
4 workers, metric for metric (latency aside).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from roadworthy.checks.attack.pgd import PGDLinf
from roadworthy.checks.base import Block, Context, ShardInputError, blocks_of
from roadworthy.checks.shift.suite import SHIFT_CHECKS
from roadworthy.runner.local import run_check

SHIFT = SHIFT_CHECKS["gaussian_noise"]


def _fresh(ctx: Context) -> Context:
    """The same session inputs with an empty cache, as a Ray worker builds it."""
    return Context(
        model=ctx.model, data=ctx.data, train_data=ctx.train_data, budget=ctx.budget, seed=ctx.seed
    )


def _in_groups(check, ctx: Context, sizes: list[int]) -> list:
    blocks = check.blocks(ctx)
    parts, at = [], 0
    for size in sizes:
        parts += check.run_blocks(_fresh(ctx), blocks[at : at + size])  # each group on its own "worker"
        at += size
    assert at == len(blocks)
    return parts


def test_blocks_cover_the_items_in_order():
    assert blocks_of(130, 64) == [Block(0, 0, 64), Block(1, 64, 128), Block(2, 128, 130)]
    assert blocks_of(0) == []


@pytest.mark.parametrize(
    ("check", "sizes"),
    [
        (SHIFT(SHIFT.Params(n_samples=300, severities=(1, 3)), budget="quick"), [1, 3, 1]),
        (PGDLinf(PGDLinf.Params(n_samples=150, steps=3, min_norm_steps=10), budget="quick"), [2, 1]),
    ],
    ids=["shift", "pgd"],
)
def test_any_split_of_the_blocks_gives_the_one_shard_numbers(ctx, check, sizes):
    whole = check.run(ctx)  # the local backend's path: every block in one shard
    assert len(check.blocks(ctx)) == sum(sizes) > 1
    merged = check.merge(_fresh(ctx), _in_groups(check, ctx, sizes))
    assert merged.metrics == whole.metrics
    assert json.dumps(merged.details, sort_keys=True, default=str) == json.dumps(
        whole.details, sort_keys=True, default=str
    )


def test_the_shift_check_shares_its_outputs_for_later_checks(ctx):
    check = SHIFT(SHIFT.Params(n_samples=100, severities=(3,)), budget="quick")
    fresh = _fresh(ctx)
    check.run(fresh)
    shared = fresh.shared_shifted("gaussian_noise", 3)
    assert len(shared) == 1 and shared[0].raw.shape == (100, 10) and shared[0].by == check.id
    assert shared[0].change > 0


def test_a_sharded_check_failing_for_an_input_reason_stops_the_run(ctx):
    with pytest.raises(ShardInputError, match=r"attack.pgd_linf: .*every `eps` must be"):
        run_check(PGDLinf, ctx, PGDLinf.Params(n_samples=8, eps=2.0))


# ------------------------------------------------------------------------------------------------ Ray

SUITES = ["shift.gaussian_noise", "attack.pgd_linf", "attack.fgsm"]


def _measured(report) -> dict[str, float]:
    return {k: v for k, v in report.metrics.items() if not k.startswith("sanity.latency")}


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray")
    import os

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        yield ray
    finally:
        ray.shutdown()


@pytest.mark.slow
def test_local_and_one_and_four_ray_workers_give_identical_metrics(local_ray, digits_module, digits_split):
    import roadworthy

    _, _, x_te, y_te = digits_split
    x_te, y_te = x_te[:260], y_te[:260]  # 5 blocks of the shift sample, 4 of the attack's
    kw = {"suites": SUITES, "budget": "quick", "input_shape": (1, 16, 16)}
    local = {seed: roadworthy.check(digits_module, (x_te, y_te), seed=seed, **kw) for seed in (0, 5)}
    assert _measured(local[0]) != _measured(local[5])  # the seed matters, so it must travel
    for seed, workers in ((0, 1), (0, 4), (5, 4)):
        remote = roadworthy.check(
            digits_module, (x_te, y_te), seed=seed, backend="ray", workers=workers, cpus_per_task=0.5, **kw
        )
        assert _measured(remote) == _measured(local[seed]), (seed, workers)
        assert len(_measured(remote)) > 20
        for cid in SUITES:
            r = next(c for c in remote.checks if c.id == cid)
            assert len(r.details["ray"]["shards"]) == workers  # 4 workers on 2 CPUs at 0.5 CPU each
            assert all(s["pid"] and s["retries"] == 0 for s in r.details["ray"]["shards"])
            # every shard's passes are counted (a worker also computes its own clean predictions)
            loc = next(c for c in local[seed].checks if c.id == cid)
            assert r.model_passes["forward"] >= loc.model_passes["forward"] > 0


@pytest.mark.slow
def test_every_shard_failing_for_an_input_reason_stops_the_ray_run(local_ray, digits_module, digits_data):
    from roadworthy.config import LoadOptions, ModelRecipe
    from roadworthy.models import load_model
    from roadworthy.runner.ray import run_ray

    model = load_model(digits_module, input_shape=(1, 16, 16))
    ctx = Context(
        model=model,
        data=digits_data,
        budget="quick",
        plan_params={"attack.pgd_linf": {"eps": 2.0, "n_samples": 130}},
    )
    recipe = ModelRecipe(digits_module, LoadOptions(), (1, 16, 16))
    with pytest.raises(ShardInputError, match=r"attack.pgd_linf: every shard failed: .*every `eps` must be"):
        run_ray([PGDLinf], ctx, model_recipe=recipe, workers=2, cpus_per_task=0.5)
    assert np.isfinite(model.predict(digits_data.x[:2])).all()  # the driver's model is untouched
