"""The local backend: every check in this process, in dependency order.

It orders the checks, skips what the model cannot support, isolates failures and times each one.

A check that raises is recorded with status ``error`` and its message; the others still run. After
every check the caller's ``on_result`` hook runs (the session writes a partial report there), so no
result already computed is lost to a later failure.
"""

from __future__ import annotations

import contextlib
import fnmatch
import logging
import time
import traceback
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from roadworthy.checks import SUITE_ORDER
from roadworthy.checks.base import Check, Context, Outcome, ShardInputError
from roadworthy.errors import RoadworthyWarning
from roadworthy.plan import peak_window
from roadworthy.results import CheckResult

log = logging.getLogger("roadworthy")


def order_checks(classes: Iterable[type[Check]]) -> list[type[Check]]:
    """Suite order (sanity, clean, shift, ood, attack, integrity, ...), then dependencies first."""
    rank = {s: i for i, s in enumerate(SUITE_ORDER)}
    pending = sorted(classes, key=lambda c: rank.get(c.suite(), len(rank)))
    ordered: list[type[Check]] = []
    placed: set[str] = set()
    ids = [c.id for c in pending]
    while pending:
        progressed = False
        for cls in list(pending):
            deps = [i for i in ids if i != cls.id and any(fnmatch.fnmatchcase(i, p) for p in cls.depends_on)]
            # a check that depends on "suite.*" must not wait for another aggregator of the same pattern
            deps = [d for d in deps if d in placed or not _depends_on_each_other(cls, d, pending)]
            if all(d in placed for d in deps):
                ordered.append(cls)
                placed.add(cls.id)
                pending.remove(cls)
                progressed = True
        if not progressed:  # a cycle: run the rest in suite order rather than never
            ordered.extend(pending)
            break
    return ordered


def _depends_on_each_other(cls: type[Check], other_id: str, pending: list[type[Check]]) -> bool:
    other = next((c for c in pending if c.id == other_id), None)
    return other is not None and any(fnmatch.fnmatchcase(cls.id, p) for p in other.depends_on)


def run_check(
    cls: type[Check],
    ctx: Context,
    params: object = None,
    compute: Callable[[Check], Outcome] | None = None,
) -> CheckResult:
    """Run one check in isolation and return its result.

    Never raises for a failing check, except :class:`~roadworthy.checks.base.ShardInputError` (every
    shard of a sharded check failed for an input reason: the run stops with exit 2, no verdict).
    ``compute(check)`` replaces ``check.run(ctx)`` (the Ray backend merges the shards' parts there).
    """
    base = {"id": cls.id, "suite": cls.suite(), "title": cls.title}
    reason = cls.unmet(ctx)
    if reason:
        return CheckResult(**base, status="skipped", summary=f"Skipped: {reason}.")
    start = time.perf_counter()
    if params is not None:
        check = cls(params, budget=ctx.budget)
    else:
        check = cls.planned(ctx.budget, ctx.plan_params.get(cls.id))
    passes = {"forward": 0, "gradient": 0}
    memory: dict[str, float] = {}
    try:
        with (
            warnings.catch_warnings(record=True) as caught,
            counting_passes(ctx.model, passes),
            peak_window(memory),
        ):
            warnings.simplefilter("always", RoadworthyWarning)
            outcome = check.run(ctx) if compute is None else compute(check)
    except ShardInputError:
        raise
    except Exception as exc:  # noqa: BLE001 - a crashing check must not take the others down
        log.warning("check %s failed: %s", cls.id, exc)
        return CheckResult(
            **base,
            status="error",
            error=f"{type(exc).__name__}: {exc}",
            summary=f"The check crashed: {type(exc).__name__}: {exc}",
            details={"traceback": traceback.format_exc(limit=8)[-4000:]},
            params=check.params_dict(),
            duration_s=time.perf_counter() - start,
            model_passes=passes,
            peak_rss_mb=memory.get("peak_rss_mb"),
        )
    extra = [str(w.message) for w in caught if issubclass(w.category, RoadworthyWarning)]
    all_warnings = list(dict.fromkeys([*outcome.warnings, *extra]))
    return CheckResult(
        **base,
        status="warn" if all_warnings else "pass",
        summary=outcome.summary,
        metrics={k: float(v) if v is not None else None for k, v in outcome.metrics.items()},
        details=_jsonable(outcome.details),
        examples=outcome.examples,
        warnings=all_warnings,
        params=check.params_dict(),
        duration_s=time.perf_counter() - start,
        model_passes=passes,
        peak_rss_mb=memory.get("peak_rss_mb"),
    )


@contextlib.contextmanager
def counting_passes(model: Any, counts: dict[str, int]) -> Iterator[None]:
    """Count the samples sent through ``model``'s ``predict``, ``features`` and ``forward_torch`` into
    ``counts`` while the block runs (instance attributes shadow the methods, removed afterwards).

    A call of ``forward_torch`` with gradients enabled on an input that requires its gradient counts as
    a gradient pass, every other call as a forward pass. Work a library does on the raw module (the
    coverage probes' hooked forward) is not seen here.
    """
    wrapped = []
    for name in ("predict", "features", "forward_torch"):
        method = getattr(model, name, None)
        if method is None or not callable(method) or name in vars(model):
            continue
        try:
            setattr(model, name, _counted(method, name, counts))
        except (AttributeError, TypeError):  # slots or a read-only attribute: not counted
            continue
        wrapped.append(name)
    try:
        yield
    finally:
        for name in wrapped:
            with contextlib.suppress(AttributeError):
                delattr(model, name)


def _counted(method: Callable[..., Any], name: str, counts: dict[str, int]) -> Callable[..., Any]:
    def call(x: Any, *args: Any, **kwargs: Any) -> Any:
        n = int(x.shape[0]) if getattr(x, "ndim", 0) else 1
        kind = "forward"
        if name == "forward_torch":
            import torch

            if torch.is_grad_enabled() and getattr(x, "requires_grad", False):
                kind = "gradient"
        counts[kind] += n
        return method(x, *args, **kwargs)

    return call


def run_checks(
    classes: Sequence[type[Check]],
    ctx: Context,
    on_result: Callable[[CheckResult], None] | None = None,
    done: dict[str, CheckResult] | None = None,
    say: Callable[[str], None] | None = None,
    **_: object,
) -> list[CheckResult]:
    """Run ``classes`` in dependency order; results already in ``done`` (a resumed run) are reused.

    No global random generator is seeded here: every random choice a check makes comes from
    ``ctx.rng(...)`` / ``ctx.torch_seed(...)``, so a check's numbers do not depend on which checks ran
    before it, nor on the backend.
    """
    results: list[CheckResult] = []
    ordered = order_checks(classes)
    estimates = {k: float(v) for k, v in ctx.plan_estimates.items()}
    start = time.perf_counter()
    for i, cls in enumerate(ordered):
        if done and cls.id in done and done[cls.id].status != "error":
            result = done[cls.id]
        else:
            if say:
                say(f"- {cls.id} ({i + 1}/{len(ordered)}) ...")
            result = run_check(cls, ctx)
            if say:
                left = _remaining(
                    ordered[i + 1 :], estimates, time.perf_counter() - start, i + 1, ordered[: i + 1]
                )
                say(f"  {cls.id}: {result.status} ({result.duration_s:.1f} s){left}")
        ctx.results[cls.id] = result
        results.append(result)
        if on_result:
            on_result(result)
    return results


def _remaining(
    rest: Sequence[type[Check]],
    estimates: dict[str, float],
    elapsed: float,
    n_done: int,
    done: Sequence[type[Check]] = (),
) -> str:
    """``"; 3.2 min elapsed, about 10 min left"``: the plan's estimates of the rest, scaled by how the
    finished checks compared with their estimates (a busy machine, work the plan does not model) -- a
    pace that starts at the plan's and follows the measured one as more of the plan has run -- else the
    mean time of the checks so far."""
    if not rest:
        return f"; {_mins(elapsed)} elapsed"
    by_plan = sum(estimates.get(c.id, 0.0) for c in rest)
    planned_so_far = sum(estimates.get(c.id, 0.0) for c in done)
    # the pace of the checks so far, pulled toward the plan's own while little of it has run (a few
    # seconds of sanity checks on a busy machine must not multiply the whole estimate)
    prior = max(30.0, 0.1 * (planned_so_far + by_plan))
    pace = (elapsed + prior) / (planned_so_far + prior)
    left = by_plan * pace if estimates else elapsed / max(1, n_done) * len(rest)
    return f"; {_mins(elapsed)} elapsed, about {_mins(left)} left"


def _mins(s: float) -> str:
    return f"{s:.0f} s" if s < 90 else f"{s / 60:.1f} min"


def _jsonable(v: object) -> object:
    import math

    import numpy as np

    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_jsonable(x) for x in v]
    if isinstance(v, np.ndarray):
        return _jsonable(v.tolist())
    if isinstance(v, np.generic):
        return _jsonable(v.item())
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v
