"""Sample sharding: any split of a check's blocks gives the numbers of one shard, locally and on Ray.

The layout tests need no Ray: they run a sharded check's blocks in different groups (as Ray workers
would) and merge them. The Ray tests start a local Ray instance and compare the local backend with 1 and
4 workers, metric for metric (latency aside).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from roadworthy.checks.attack.hopskipjump import HopSkipJump
from roadworthy.checks.attack.laser import LaserBeam
from roadworthy.checks.attack.pgd import PGDLinf
from roadworthy.checks.attack.pixels import FewPixelAttack, LineAttack
from roadworthy.checks.attack.square import SquareAttack
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


def _same(a, b) -> None:
    assert a.metrics == b.metrics
    assert json.dumps(a.details, sort_keys=True, default=str) == json.dumps(
        b.details, sort_keys=True, default=str
    )
    assert [e.changed for e in a.examples] == [e.changed for e in b.examples]


def _as_a_cluster_would(check, ctx: Context, order: list[int]):
    """Each block on its own fresh "worker", run in ``order``; then, like the Ray driver, the parts are
    taken in block order until the check's rule says enough (later blocks are dropped)."""
    blocks = check.blocks(ctx)
    got = {i: check.run_blocks(_fresh(ctx), [blocks[i]])[0] for i in order}
    parts = []
    for i in range(len(blocks)):
        parts.append(got[i])
        if check.enough(ctx, parts):
            break
    return check.merge(_fresh(ctx), parts), len(parts)


BLACK_BOX = {
    # breaks nearly every input: the rule stops after the first 32 inputs (2 of 6 blocks)
    "square_stops": SquareAttack(
        SquareAttack.Params(
            n_samples=96, eps=0.3, sweep=(0.1, 0.3), max_queries=60, huge_samples=4, interval_half_width=0.06
        )
    ),
    "square_all": SquareAttack(
        SquareAttack.Params(n_samples=40, max_queries=40, huge_samples=4, interval_half_width=0.0)
    ),
    "pixels": FewPixelAttack(
        FewPixelAttack.Params(n_samples=40, strengths=(1, 4), default=4, popsize=8, generations=3)
    ),
    "line": LineAttack(LineAttack.Params(n_samples=40, strengths=(8,), default=8, popsize=8, generations=3)),
    "laser": LaserBeam(LaserBeam.Params(n_samples=40, restarts=1, iterations=8)),
    "hopskipjump": HopSkipJump(HopSkipJump.Params(n_samples=40, max_queries=60, init_evals=10)),
}


@pytest.mark.parametrize("name", list(BLACK_BOX))
def test_black_box_checks_give_the_one_shard_numbers_in_any_split(ctx, name):
    """Square, few-pixel, line, laser and HopSkipJump work in blocks of 16 inputs keyed by the block:
    blocks run in any order on separate workers, merged in order up to the sequential rule's stop, give
    the local run's metrics, details and examples exactly."""
    check = BLACK_BOX[name]
    whole = check.run(_fresh(ctx))
    n_blocks = len(check.blocks(ctx))
    assert n_blocks >= 3
    order = list(np.random.default_rng(7).permutation(n_blocks))
    merged, used = _as_a_cluster_would(check, ctx, order)
    _same(merged, whole)
    seq = whole.details.get("sequential")
    if name == "square_stops":
        assert seq["stopped_early"] and seq["attacked_inputs"] == 16 * used and 2 <= used < n_blocks
    elif seq is not None:
        assert not seq["stopped_early"] and used == n_blocks


@pytest.mark.parametrize("detector", ["energy", "knn"])
def test_ood_detector_units_give_the_one_shard_numbers_in_any_order(ctx, detector):
    """An OOD detector check's blocks are the bench's units (the ID rows, each source chunk by chunk,
    every chunk from its own generator): units scored on separate workers in any order merge into the
    local run's metrics and details; the merged scores are published for the summary."""
    from roadworthy.checks.ood.detection import DETECTOR_CHECKS, DetectionParams, detector_scores

    params = DetectionParams(n_id=120, n_per_source=40)
    check = DETECTOR_CHECKS[detector](params)
    fresh = _fresh(ctx)
    whole = check.run(fresh)
    assert len(check.blocks(ctx)) == 9  # the ID rows and eight sources, one chunk each at 16 x 16 px
    order = list(np.random.default_rng(3).permutation(len(check.blocks(ctx))))
    merged, used = _as_a_cluster_would(check, ctx, order)
    assert used == len(check.blocks(ctx))
    _same(merged, whole)
    published = detector_scores(fresh, detector, params)
    assert set(published) == {"id", *whole.details["sources"]} and len(published["id"]) == 120


def test_an_ood_source_chunk_is_the_same_made_alone_or_in_order(ctx):
    """Each chunk of a source draws from its own generator: made alone, it equals the same chunk made
    in order after the others (so a worker can make any chunk)."""
    from roadworthy.checks.ood.detection import DetectionParams, bench

    b = bench(_fresh(ctx), DetectionParams(n_id=50, n_per_source=30))
    b.chunk = 7  # several chunks per source
    for src in ("uniform_noise", next(s for s in b.sizes if s.startswith("shift_"))):
        in_order = np.concatenate([x for _, x in b.chunks(ctx, src)])
        alone = b.make_chunk(_fresh(ctx), src, 14)
        assert in_order.shape[0] == 30 and np.array_equal(alone, in_order[14:21])
        assert np.array_equal(b.take(ctx, src, 16)[0], in_order[16])


@pytest.mark.parametrize(
    ("with_train", "campaigns"),
    [(True, 1), (False, 1), (True, 3)],
    ids=["train_bounds", "seed_bounds", "three_sub_campaigns"],
)
def test_fuzz_campaigns_give_the_one_shard_report_in_any_order(
    digits_model, digits_data, digits_train_data, with_train, campaigns
):
    """``fuzz.deephunter``'s blocks are its two campaigns (guided, random baseline): each on its own
    fresh "worker" (profiling the bounds and fitting the gate again there), random first, merged in
    block order, gives the local run's metrics, details, examples, warnings and summary exactly (with
    training data, with the bounds profiled on the seeds, and with each run split into three
    sub-campaigns: six blocks in a random order)."""
    from roadworthy.checks.fuzz.deephunter import DeepHunterFuzz, FuzzParams

    ctx = Context(
        model=digits_model,
        data=digits_data,
        train_data=digits_train_data if with_train else None,
        budget="quick",
        seed=4,
    )
    check = DeepHunterFuzz(
        FuzzParams(max_queries=400, n_seeds=30, n_profile=200, n_examples=3, campaigns=campaigns)
    )
    whole = check.run(_fresh(ctx))
    n = 2 * campaigns
    assert [(b.index, b.start, b.stop) for b in check.blocks(ctx)] == [(i, i, i + 1) for i in range(n)]
    order = [1, 0] if n == 2 else list(np.random.default_rng(5).permutation(n))
    merged, used = _as_a_cluster_would(check, ctx, order)
    assert used == n and whole.details["campaigns"]["count"] == campaigns
    _same(merged, whole)
    assert merged.warnings == whole.warnings and merged.summary == whole.summary
    assert whole.metrics["fuzz.mutants"] > 0 and whole.metrics["fuzz.random.mutants"] > 0
    assert bool(whole.warnings) is not with_train  # the seeds-profile warning only without training data


def test_fuzz_without_the_random_baseline_is_one_block(ctx):
    from roadworthy.checks.fuzz.deephunter import DeepHunterFuzz, FuzzParams

    check = DeepHunterFuzz(FuzzParams(max_queries=200, n_seeds=20, n_profile=100, random_baseline=False))
    assert check.blocks(ctx) == [Block(0, 0, 1)]
    merged, _ = _as_a_cluster_would(check, ctx, [0])
    _same(merged, check.run(_fresh(ctx)))
    assert set(merged.details["runs"]) == {"guided"}


def test_the_sequential_rule_is_applied_after_each_block_from_32_inputs_on():
    """The rule never looks before 32 inputs (the first wave), then after every block of 16; it reads
    only the parts' per-input results."""
    check = BLACK_BOX["square_stops"]

    def part(n_broken: int) -> dict:  # 16 inputs, all correct, the first n_broken flipped at the default
        found = np.arange(16) < n_broken
        return {
            "pred": np.zeros(16, int),
            "correct": np.ones(16, bool),
            "found": found,
            "hi": np.where(found, 0.3, np.inf),
            "default": 0.3,
        }

    assert not check.enough(None, [part(16)])  # 16 inputs all broken: tight, but before 32 inputs
    assert check.enough(None, [part(16), part(16)])  # 32 of 32 broken: within 0.06
    assert not check.enough(None, [part(8), part(8)])  # half broken: an interval of about +-0.17
    assert not BLACK_BOX["square_all"].stops_early() and BLACK_BOX["square_stops"].stops_early()


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
    with pytest.raises(ShardInputError, match=r"attack.pixels: .*`popsize` must be >= 4"):
        run_check(FewPixelAttack, ctx, FewPixelAttack.Params(n_samples=8, popsize=2))


# ------------------------------------------------------------------------------------------------ Ray

SUITES = ["shift.gaussian_noise", "attack.pgd_linf", "attack.fgsm", "ood.max_logit"]


def _measured(report) -> dict[str, float]:
    return {k: v for k, v in report.metrics.items() if not k.startswith("sanity.latency")}


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray instance started as ``--backend ray`` starts one (on 127.0.0.1 only)."""
    ray = pytest.importorskip("ray")
    import os

    from roadworthy.runner.ray import connect

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    connect(None, 60, num_cpus=2)
    try:
        yield ray
    finally:
        ray.shutdown()


@pytest.mark.slow
def test_the_local_ray_instance_listens_on_loopback_only(local_ray):
    """Every listening socket of the instance's processes (GCS, raylet, agents, this driver and a worker
    actor) is on 127.0.0.1: a local instance is not reachable from the network."""
    import os

    from tests._ray_loopback import is_loopback, listening

    @local_ray.remote(num_cpus=0.5)
    class Probe:
        def pid(self) -> int:
            return os.getpid()

    probe = Probe.remote()
    worker = local_ray.get(probe.pid.remote())
    assert local_ray.util.get_node_ip_address() == "127.0.0.1"
    pids = _descendants(os.getpid()) | {os.getpid(), worker}
    found = listening(sorted(pids))
    local_ray.kill(probe)
    assert {pid for pid, _, _ in found} >= {os.getpid(), worker}
    assert [x for x in found if not is_loopback(x[1])] == []


def _descendants(root: int) -> set[int]:
    from pathlib import Path

    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    out, grew = {root}, True
    while grew:
        more = {pid for pid, ppid in parents.items() if ppid in out} - out
        out |= more
        grew = bool(more)
    return out - {root}


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


@pytest.mark.slow
def test_sequential_black_box_checks_stop_at_the_same_block_on_ray(local_ray, digits_module, digits_data):
    """Square with a rule that stops, and HopSkipJump, on 2 Ray workers (Square's next block runs ahead
    on the idle worker and is dropped past the stop): the local backend's metrics, block for block."""
    from roadworthy.config import LoadOptions, ModelRecipe
    from roadworthy.models import load_model
    from roadworthy.runner.local import run_checks
    from roadworthy.runner.ray import run_ray

    model = load_model(digits_module, input_shape=(1, 16, 16))
    plan = {
        "attack.square": {
            "n_samples": 96, "eps": 0.3, "sweep": (0.1, 0.3), "max_queries": 60, "huge_samples": 4,
            "interval_half_width": 0.06,
        },
        "attack.hopskipjump": {"n_samples": 40, "max_queries": 120, "init_evals": 20},
    }  # fmt: skip
    classes = [SquareAttack, HopSkipJump]

    def ctx() -> Context:
        return Context(model=model, data=digits_data, budget="quick", seed=3, plan_params=plan)

    local = {r.id: r for r in run_checks(classes, ctx())}
    recipe = ModelRecipe(digits_module, LoadOptions(), (1, 16, 16))
    remote = {}
    for cls in classes:  # one at a time: Square alone keeps a worker free to run its next block ahead
        remote.update(
            {r.id: r for r in run_ray([cls], ctx(), model_recipe=recipe, workers=2, cpus_per_task=0.5)}
        )
    for cid in local:
        assert remote[cid].status == local[cid].status != "error", remote[cid].error
        assert remote[cid].metrics == local[cid].metrics, cid
    seq = remote["attack.square"].details["sequential"]
    where = remote["attack.square"].details["ray"]
    assert seq["stopped_early"] and len(where["shards"]) == seq["attacked_inputs"] // 16
    assert where["blocks_run_ahead_dropped"] >= 1  # blocks past the stop ran on idle workers, unused
    # those still queued or running at the stop were cancelled (ray.cancel), not left to finish
    assert 0 <= where["blocks_run_ahead_cancelled"] <= where["blocks_run_ahead_dropped"]
    hsj = remote["attack.hopskipjump"].details["ray"]["shards"]
    assert [sh["blocks"] for sh in hsj] == [2, 1]  # 40 inputs: 3 blocks of 16 on 2 workers


@pytest.mark.slow
def test_fuzz_campaigns_on_one_and_two_ray_workers_give_the_local_report(
    local_ray, digits_module, digits_data, digits_train_data
):
    """``fuzz.deephunter`` on Ray: with 2 workers its two campaigns run as two shards (each worker
    profiles the bounds and fits the gate itself), with 1 worker as one shard of both blocks, and split
    into 2 sub-campaigns per run as two shards of two blocks; the metrics, details (the Ray record
    aside) and examples are the local backend's."""
    from roadworthy.checks.fuzz.deephunter import DeepHunterFuzz
    from roadworthy.config import LoadOptions, ModelRecipe
    from roadworthy.models import load_model
    from roadworthy.runner.local import run_checks
    from roadworthy.runner.ray import run_ray

    model = load_model(digits_module, input_shape=(1, 16, 16))
    recipe = ModelRecipe(digits_module, LoadOptions(), (1, 16, 16))

    def ctx(campaigns: int) -> Context:
        params = {
            "max_queries": 300,
            "n_seeds": 30,
            "n_profile": 200,
            "n_examples": 2,
            "campaigns": campaigns,
        }
        return Context(
            model=model,
            data=digits_data,
            train_data=digits_train_data,
            budget="quick",
            seed=2,
            plan_params={"fuzz.deephunter": params},
        )

    local = {}
    for workers, campaigns, blocks in ((2, 1, [1, 1]), (1, 1, [2]), (2, 2, [2, 2])):
        if campaigns not in local:
            (local[campaigns],) = run_checks([DeepHunterFuzz], ctx(campaigns))
            assert local[campaigns].status != "error", local[campaigns].error
        want = local[campaigns]
        (remote,) = run_ray(
            [DeepHunterFuzz], ctx(campaigns), model_recipe=recipe, workers=workers, cpus_per_task=0.5
        )
        assert remote.status == want.status, remote.error
        assert remote.metrics == want.metrics, (workers, campaigns)
        shards = remote.details.pop("ray")["shards"]
        assert [sh["blocks"] for sh in shards] == blocks and all(sh["retries"] == 0 for sh in shards)
        assert json.dumps(remote.details, sort_keys=True, default=str) == json.dumps(
            want.details, sort_keys=True, default=str
        )
        assert [e.changed for e in remote.examples] == [e.changed for e in want.examples]
    assert local[2].details["campaigns"]["count"] == 2 and local[2].metrics != local[1].metrics


@pytest.mark.slow
def test_integrity_checks_share_one_embedding_on_ray(local_ray, digits_module, digits_split):
    """label_issues, outliers and poisoning on 2 Ray workers: the embedding's shards run once (the
    later checks are served by the first one's, recorded as ``shared_with``) and every metric is the
    local backend's."""
    from roadworthy.config import LoadOptions, ModelRecipe
    from roadworthy.data.base import Dataset
    from roadworthy.models import load_model
    from roadworthy.runner.local import run_checks
    from roadworthy.runner.ray import run_ray

    x_tr, y_tr, x_te, y_te = digits_split
    names = [str(i) for i in range(10)]
    model = load_model(digits_module, input_shape=(1, 16, 16))
    train = Dataset(x=x_tr[:600], y=y_tr[:600], modality="image", class_names=names, path="train")
    test = Dataset(x=x_te[:200], y=y_te[:200], modality="image", class_names=names, path="test")
    classes = list(_integrity().values())

    def ctx() -> Context:
        return Context(model=model, data=test, train_data=train, budget="quick", seed=4)

    local = {r.id: r for r in run_checks(classes, ctx())}
    recipe = ModelRecipe(digits_module, LoadOptions(), (1, 16, 16))
    remote = {r.id: r for r in run_ray(classes, ctx(), model_recipe=recipe, workers=2, cpus_per_task=0.5)}
    for cid in INTEGRITY:
        assert remote[cid].status == local[cid].status != "error", remote[cid].error
        assert remote[cid].metrics == local[cid].metrics, cid
        shards = remote[cid].details["ray"]["shards"]
        assert [sh["blocks"] for sh in shards] == [7, 6]  # 800 rows: 13 blocks of 64 on 2 workers
    owner = INTEGRITY[0]
    assert all("shared_with" not in sh for sh in remote[owner].details["ray"]["shards"])
    for cid in INTEGRITY[1:]:
        assert {sh.get("shared_with") for sh in remote[cid].details["ray"]["shards"]} == {owner}
    assert remote[owner].model_passes["forward"] >= 800  # the shards' feature passes, counted once
    assert remote["integrity.outliers"].model_passes["forward"] == 0


@pytest.mark.slow
def test_a_worker_starts_warm_with_the_drivers_memory_settings(local_ray, digits_module, digits_data):
    """A worker actor started by the prepare hook has, before its first check, the model rebuilt, the
    checks' lazily imported libraries loaded, and glibc's freed-memory settings of the driver's session
    (without them every batch was page-faulted afresh: the worker ran the checks about 20% slower)."""
    from roadworthy.config import LoadOptions, ModelRecipe
    from roadworthy.runner.ray import prepare_ray

    recipe = ModelRecipe(digits_module, LoadOptions(), (1, 16, 16))
    pool = prepare_ray(recipe, workers=1, cpus_per_task=0.5, sample=digits_data.x[:2])

    def state(worker) -> tuple:
        import sys

        from roadworthy import memory

        return memory._applied, "sklearn.neighbors" in sys.modules, worker.model is not None, worker.failure

    try:
        assert local_ray.get(pool.actors[0].__ray_call__.remote(state)) == (True, True, True, None)
    finally:
        pool.close()


class _FakeAutoAttack:
    """Stands in for ``pyautoattack.AutoAttack`` (not installed in CI): one random-sign step of size
    ``eps`` from a generator seeded by ``seed``, so the check's seeding per block is what is tested."""

    def __init__(self, model, norm, eps, version, device, seed, **_):
        self.model, self.eps, self.seed = model, eps, seed

    def run_standard_evaluation(self, x, y, batch_size):
        import torch

        gen = torch.Generator().manual_seed(self.seed)
        sign = torch.randint(0, 2, x.shape, generator=gen).float() * 2 - 1
        return (x + self.eps * sign).clamp(0, 1)


def test_autoattack_blocks_give_the_one_shard_numbers_in_any_split(ctx, monkeypatch):
    import sys
    import types

    from roadworthy.checks.attack.autoattack import AutoAttackEnsemble

    fake = types.ModuleType("pyautoattack")
    fake.AutoAttack = _FakeAutoAttack
    fake.__version__ = "fake"
    monkeypatch.setitem(sys.modules, "pyautoattack", fake)
    check = AutoAttackEnsemble(AutoAttackEnsemble.Params(n_samples=150, eps=0.3))
    whole = check.run(_fresh(ctx))
    assert len(check.blocks(ctx)) == 3 and 0 < whole.metrics["attack.autoattack.robust_accuracy"] < 1
    _same(check.merge(_fresh(ctx), _in_groups(check, ctx, [1, 2])), whole)
    assert whole.details["threat_model"]["package"] == "pyautoattack fake"


# ------------------------------------------------------------------------------------- integrity


def _integrity() -> dict:
    from roadworthy.checks.integrity.label_issues import LabelIssues
    from roadworthy.checks.integrity.outliers import Outliers
    from roadworthy.checks.integrity.poisoning import Poisoning

    return {c.id: c for c in (LabelIssues, Outliers, Poisoning)}


INTEGRITY = ["integrity.label_issues", "integrity.outliers", "integrity.poisoning"]


@pytest.mark.parametrize("cid", INTEGRITY)
def test_integrity_embedding_blocks_give_the_one_shard_numbers_in_any_order(ctx, cid):
    """The integrity checks' shared embedding (training rows' features and shrunk inputs, then the
    evaluation rows' features) is computed block by block on separate fresh "workers" in random order;
    merged in block order it gives the local run's metrics, details and examples exactly."""
    check = _integrity()[cid].planned("quick")
    whole = check.run(_fresh(ctx))
    blocks = check.blocks(ctx)
    n_train, n_eval = len(ctx.train_data.x), len(ctx.data.x)
    assert blocks[-1].stop == n_train + n_eval and n_train % 64  # one block holds rows of both sets
    order = list(np.random.default_rng(11).permutation(len(blocks)))
    merged, used = _as_a_cluster_would(check, ctx, order)
    assert used == len(blocks)
    _same(merged, whole)


def test_integrity_checks_embed_once_per_session(ctx):
    """The second and third integrity check of a session read the merged embedding: the model's feature
    layer is not called again (poisoning's trigger tests still call ``predict``), the same arrays."""
    from roadworthy.checks.integrity._embedding import EMBEDDING

    classes = _integrity()
    fresh = _fresh(ctx)
    first = run_check(classes[INTEGRITY[0]], fresh)
    emb = fresh.peek(EMBEDDING)
    assert first.model_passes["forward"] == len(ctx.train_data.x) + len(ctx.data.x)
    assert emb.train_features.shape[0] == len(ctx.train_data.x) and emb.eval_features.shape[0] == len(
        ctx.data.x
    )
    calls = []
    features = fresh.model.features
    fresh.model.features = lambda x: calls.append(len(x)) or features(x)
    try:
        for cid in INTEGRITY[1:]:
            assert run_check(classes[cid], fresh).status != "error"
            assert fresh.peek(EMBEDDING) is emb
    finally:
        del fresh.model.features
    assert calls == []
