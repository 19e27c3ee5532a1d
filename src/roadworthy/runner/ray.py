"""The Ray backend: checks that depend on no other check run in parallel as Ray tasks.

Each task rebuilds the model from its *recipe* (a picklable zero-argument callable: the
:class:`roadworthy.config.ModelRecipe` the session loaded the model with, or any other) because framework sessions do not travel between processes; the data sets go to
Ray's object store once. Aggregating checks (``depends_on``) then run here, in order, on the results.
Install with ``pip install 'roadworthy[ray]'``; ``RAY_ADDRESS`` selects a cluster (default: local).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from roadworthy.checks.base import Check, Context
from roadworthy.errors import InvalidInputError, require
from roadworthy.results import CheckResult
from roadworthy.runner.local import order_checks, run_check


def _remote_check(check_id: str, recipe: Callable[[], Any], payload: dict[str, Any]) -> CheckResult:
    from roadworthy.checks import CHECKS, load_builtin_checks

    load_builtin_checks()
    ctx = Context(model=recipe(), **payload)
    return run_check(CHECKS[check_id], ctx)


def run_ray(
    classes: Sequence[type[Check]],
    ctx: Context,
    on_result: Callable[[CheckResult], None] | None = None,
    done: dict[str, CheckResult] | None = None,
    say: Callable[[str], None] | None = None,
    model_recipe: Callable[[], Any] | None = None,
    num_cpus: int | None = None,
    **_: object,
) -> list[CheckResult]:
    """Run ``classes`` with Ray; results come back in dependency order, like the local backend's."""
    ray = require("ray", "ray", "--backend ray")
    if model_recipe is None:
        raise InvalidInputError(
            "--backend ray needs a model that can be rebuilt in a worker (a file or a picklable object)"
        )
    ordered = order_checks(classes)
    # the parity suite compares with ctx.reference_model, which stays in this process: it runs here
    parallel = [
        c
        for c in ordered
        if not c.depends_on
        and c.suite() != "parity"
        and not (done and c.id in done and done[c.id].status != "error")
    ]
    if not ray.is_initialized():
        ray.init(
            address=os.environ.get("RAY_ADDRESS"),
            num_cpus=num_cpus,
            include_dashboard=False,
            log_to_driver=False,
            ignore_reinit_error=True,
            configure_logging=False,
        )
    payload = {
        "data": ctx.data,
        "train_data": ctx.train_data,
        "ood_data": ctx.ood_data,
        "budget": ctx.budget,
        "seed": ctx.seed,
        "baseline": ctx.baseline,
        "batch_size": ctx.batch_size,
        "plan_params": ctx.plan_params,
    }
    payload_ref = ray.put(payload)
    task = ray.remote(_remote_check)
    pending = {task.remote(c.id, model_recipe, payload_ref): c.id for c in parallel}
    finished: dict[str, CheckResult] = dict(done or {})
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        ref = ready[0]
        cid = pending.pop(ref)
        try:
            result = ray.get(ref)
        except Exception as exc:  # noqa: BLE001 - a lost worker is that check's error, not the run's
            cls = next(c for c in parallel if c.id == cid)
            result = CheckResult(
                id=cid,
                suite=cls.suite(),
                title=cls.title,
                status="error",
                error=f"{type(exc).__name__}: {exc}",
                summary=f"The Ray task failed: {exc}",
            )
        finished[cid] = result
        if say:
            say(f"  {cid}: {result.status} ({result.duration_s:.1f} s, ray)")
        ctx.results[cid] = result
        if on_result:
            on_result(result)
    results: list[CheckResult] = []
    for cls in ordered:
        if cls.id not in finished:  # aggregators, in order, with every result they read in ctx.results
            finished[cls.id] = run_check(cls, ctx)
            if say:
                say(f"  {cls.id}: {finished[cls.id].status} ({finished[cls.id].duration_s:.1f} s)")
            if on_result:
                on_result(finished[cls.id])
        ctx.results[cls.id] = finished[cls.id]
        results.append(finished[cls.id])
    return results
