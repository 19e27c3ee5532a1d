"""Plan a run by its cost before it starts: which checks, on how many samples, in about how long.

At the start of a run the session times the model (:func:`probe`: forward passes of a batch like the
checks' and, for a white-box model, forward and backward passes), estimates the cost in model passes of
each check that will run (:func:`check_passes`: the check's own ``plan_passes`` estimate or the fields of
its ``Params``; attacks count a robust model's cost, with no input fooled early), and compares the total
with the budget's time target (:data:`TIME_TARGETS`) or the user's ``--time-limit``. Only when the
estimate exceeds it (the budget's target by more than :data:`AUTO_SHRINK_FACTOR` times, or the time limit
at all) does the planner give every check at most one common time cap, the largest that fits
(:func:`make_plan`): cheap checks keep their samples, expensive ones get fewer (``n_samples``, never
below :data:`MIN_PLANNED_SAMPLES`; fewer samples give wider intervals, never another kind of number),
and a check that names its query budget (``plan_queries``: Square's and HopSkipJump's queries, the
sparse attacks' generations, the laser's iterations, the sticker's steps, the fuzzer's queries) then
gets a smaller one, never below its floor: a weaker search, stated in the plan, the check's ``params``
and the report. Strengths and the gradient attacks' steps never change.

Determinism. A plan that followed the measured speed exactly would make the numbers depend on the
machine. The measured cost per sample is therefore rounded to a power of two (:func:`cost_class`), and
the plan changes nothing while the budget's default plan fits its target: quick and standard runs of
small models keep their numbers on every machine. A planned run records the changed parameters in the
check's ``params``, the plan in ``report.plan`` and its inputs (time limit, cost class, changed
parameters) in the ``run_key``, so ``--resume`` never mixes two plans.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "MIN_PLANNED_SAMPLES",
    "TIME_TARGETS",
    "CheckPlan",
    "Probe",
    "RunPlan",
    "check_passes",
    "cost_class",
    "cpu_count",
    "interval_width",
    "make_plan",
    "parse_duration",
    "probe",
]

#: Wall-clock targets of the budgets in seconds (``None``: no target; thorough takes what it takes).
TIME_TARGETS: dict[str, float | None] = {"quick": 600.0, "standard": 1800.0, "thorough": None}
#: The planner never shrinks a check below this many samples (nor below its budget's own count).
MIN_PLANNED_SAMPLES = 32
#: Without ``--time-limit`` the budget's own plan is kept unless its estimate exceeds the target this many
#: times over (a large model): estimates are coarse and machine-dependent (the probe's cost is rounded
#: to a power of two), and small models, far below their targets, keep their numbers on every machine.
#: An estimate over the target but within this margin is only reported.
AUTO_SHRINK_FACTOR = 1.25
#: The cost probe grows its batch until one forward call takes this long (or the batch is full).
PROBE_SECONDS = 0.5
#: The cost probe's first batch, and how many timed calls it keeps the best of.
PROBE_START_BATCH = 32
PROBE_REPEATS = 3
#: A backward pass costs about twice a forward pass when the probe cannot measure it.
BACKWARD_FACTOR = 2.0


def cpu_count() -> int:
    """CPU cores this process may use (its affinity mask where the system has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def parse_duration(text: str | float | int | None, option: str = "--time-limit") -> float | None:
    """Seconds from ``"15m"``, ``"90s"``, ``"1h"``, ``"1h30m"`` or a plain number of seconds."""
    from roadworthy.errors import InvalidInputError

    if text is None:
        return None
    if isinstance(text, int | float) and not isinstance(text, bool):
        seconds = float(text)
    else:
        import re

        s = str(text).strip().lower()
        parts = re.fullmatch(r"(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)m)?\s*(?:(\d+(?:\.\d+)?)s?)?", s)
        if not s or parts is None or not any(parts.groups()):
            raise InvalidInputError(
                f"{option} must be a duration like 15m, 90s, 1h or 1h30m. Got {text!r} instead."
            )
        h, m, sec = (float(g) if g else 0.0 for g in parts.groups())
        seconds = 3600 * h + 60 * m + sec
    if not math.isfinite(seconds) or seconds <= 0:
        raise InvalidInputError(f"{option} must be a positive duration. Got {text!r} instead.")
    return seconds


def cost_class(seconds: float) -> float:
    """``seconds`` rounded to the nearest power of two: plans differ only between coarse speed classes."""
    if not math.isfinite(seconds) or seconds <= 0:
        return 0.0
    return float(2.0 ** round(math.log2(seconds)))


@dataclass(frozen=True)
class Probe:
    """The model's measured cost per sample, and the batch that measured it."""

    forward_s: float  #: one forward pass of one sample, seconds (cost class)
    backward_s: float | None  #: one forward+backward pass of one sample (white-box models), seconds
    batch: int  #: samples in the probe batch
    measured_forward_s: float  #: before rounding, for the report
    measured_backward_s: float | None = None


def probe(model: Any, x: np.ndarray, batch: int = 256, white_box: bool = False) -> Probe:
    """Time the model per sample on batches like the checks' (best of two after a warm-up call).

    Checks call the model in batches, so the cost per sample is measured on a batch, not on one sample:
    the batch starts at :data:`PROBE_START_BATCH` and grows fourfold (up to ``batch`` and the data)
    while one call takes under :data:`PROBE_SECONDS`, so a small model's fixed cost per call does not
    make it look tens of times slower than it is (on a busy machine a multi-threaded call of a few
    samples waits for descheduled threads at every layer: 8 samples of the demo CNN measured 115 ms
    each where 32 took 14 ms), and a large model is not kept busy long. The best of
    :data:`PROBE_REPEATS` calls is kept: load spikes only ever slow a call down.
    """
    n = min(PROBE_START_BATCH, batch, len(x))
    while True:
        xb = np.ascontiguousarray(x[: max(1, n)], dtype=np.float32)
        model.predict(xb)  # warm-up: lazy initialisation, allocator, thread pools
        fwd_call = min(_timed(model.predict, xb) for _ in range(PROBE_REPEATS))
        if fwd_call >= PROBE_SECONDS or n >= min(batch, len(x)):
            break
        n = min(4 * n, batch, len(x))
    n = len(xb)
    fwd = fwd_call / n
    bwd = None
    if white_box and hasattr(model, "forward_torch"):
        import torch

        def step() -> None:
            # the gradient an attack takes: with respect to the input only (no weight gradients are
            # computed, and none are left in the user's parameters' .grad)
            t = torch.from_numpy(xb).to(getattr(model, "device", "cpu")).requires_grad_(True)
            torch.autograd.grad(model.forward_torch(t).sum(), t)

        step()
        bwd = min(_timed(step) for _ in range(PROBE_REPEATS)) / n
    return Probe(
        forward_s=cost_class(fwd),
        backward_s=cost_class(bwd) if bwd is not None else None,
        batch=n,
        measured_forward_s=fwd,
        measured_backward_s=bwd,
    )


def _timed(fn: Any, *args: Any) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


# ---------------------------------------------------------------------------------------------- costs


def samples_of(params: Any, n_data: int, field_name: str = "n_samples") -> int | None:
    """The sample count a check's ``Params`` declares (``n_samples``, or the field the check names as
    its ``plan_samples``; 0 means all), capped by the data."""
    n = getattr(params, field_name, None)
    if isinstance(n, bool) or not isinstance(n, int):
        return None
    return n_data if n <= 0 else min(n, n_data)


def passes_per_sample(params: Any) -> float:
    """Model passes one sample costs, read from the usual ``Params`` fields (an estimate, by design coarse).

    ``severities`` (shifts), ``steps`` x ``restarts`` (gradient attacks: the strengths of a sweep reuse
    the search by bisection and early stops, so they are not multiplied) plus ``min_norm_steps`` (the
    one minimum-norm run that gives the PGD and APGD checks their whole curve),
    ``max_queries`` (decision-based attacks), ``popsize`` x (``generations`` + 1) x ``strengths``
    (evolutionary attacks), 2 x ``iterations`` x ``restarts`` (greedy search). A check with none of them
    costs one pass per sample.
    """
    get = lambda name: getattr(params, name, None)  # noqa: E731
    k = 1.0
    if isinstance(get("severities"), Sequence):
        k *= max(1, len(get("severities")))
    if isinstance(get("steps"), int):
        min_norm = get("min_norm_steps") if isinstance(get("min_norm_steps"), int) else 0
        k *= max(1, get("steps")) * max(1, get("restarts") or 1) + max(0, min_norm)
    elif isinstance(get("iterations"), int):
        k *= 2 * max(1, get("iterations")) * max(1, get("restarts") or 1)
    if isinstance(get("max_queries"), int):
        k *= max(1, get("max_queries"))
    if isinstance(get("popsize"), int):
        strengths = get("strengths") if isinstance(get("strengths"), Sequence) else (1,)
        k *= get("popsize") * (max(0, get("generations") or 0) + 1) * max(1, len(strengths))
    return k


def check_passes(cls: Any, params: Any, n_data: int) -> tuple[float, float]:
    """(forward passes, gradient passes) one check with ``params`` costs on ``n_data`` evaluation inputs.

    A check that knows its own cost says so through a classmethod ``plan_passes(params, n_data)``
    returning the same pair (or ``None`` for the generic reading) (an attack whose sweep, ladder and bisection each run the model, a fuzzer
    with a query budget); otherwise the generic reading of its ``Params`` applies
    (:func:`passes_per_sample` per sample of :func:`samples_of`). A check without a sample count and
    without its own estimate reads the shared clean outputs (computed once per run, counted once by
    :func:`make_plan`), so it costs no passes of its own here.
    """
    own = getattr(cls, "plan_passes", None)
    estimate = own(params, n_data) if callable(own) else None
    if estimate is not None:
        fwd, grad = estimate
        return float(fwd), float(grad)
    n = samples_of(params, n_data)
    if n is None:
        return 0.0, 0.0
    passes = float(n) * passes_per_sample(params)
    if "white_box" in getattr(cls.requires, "capabilities", frozenset()):
        return 0.0, passes
    return passes, 0.0


# ---------------------------------------------------------------------------------------------- plan


@dataclass
class CheckPlan:
    """One check in the plan."""

    id: str
    samples: int | None  #: samples it will use (None: the whole evaluation set through the shared outputs)
    default_samples: int | None  #: what the budget alone would have used
    passes: float  #: estimated model passes
    estimated_s: float
    overrides: dict[str, Any] = field(default_factory=dict)  #: params the planner changed


@dataclass
class RunPlan:
    """The plan of one run, printed before it starts and written to ``report.plan``."""

    budget: str
    target_s: float | None  #: the time it had to fit (budget target or --time-limit)
    time_limit_s: float | None
    cores: int
    probe: Probe | None
    estimated_s: float  #: after planning
    default_estimated_s: float  #: the budget's default plan
    scaled: bool  #: whether any sample count was shrunk
    checks: list[CheckPlan]

    def overrides(self) -> dict[str, dict[str, Any]]:
        """Changed params by check id (what :class:`Context` applies and the run_key records)."""
        return {c.id: dict(c.overrides) for c in self.checks if c.overrides}

    def key_fields(self) -> dict[str, Any]:
        """The plan inputs that change numbers, for the report's ``run_key``."""
        return {
            "time_limit": self.time_limit_s,
            "plan": self.overrides() or None,
            "cost_class": self.probe.forward_s if self.probe is not None and self.scaled else None,
        }

    def lines(self) -> list[str]:
        """The plan as lines for the terminal, before the run."""
        target = f"target {_fmt_s(self.target_s)}" if self.target_s else "no time target"
        head = (
            f"plan ({self.budget}, {target}, {self.cores} core{'s' if self.cores != 1 else ''}): "
            f"about {_fmt_s(self.estimated_s)} of model time"
        )
        if self.probe is not None:
            head += f"; {self.probe.measured_forward_s * 1e3:.2g} ms per sample forward"
            if self.probe.measured_backward_s is not None:
                head += f", {self.probe.measured_backward_s * 1e3:.2g} ms forward+backward"
        out = [head]
        if not self.scaled and self.target_s and self.estimated_s > self.target_s:
            out.append(
                f"  the estimate exceeds the {_fmt_s(self.target_s)} target; pass --time-limit to plan "
                "fewer samples"
            )
        if self.scaled:
            out.append(
                f"  the budget's default plan (about {_fmt_s(self.default_estimated_s)}) exceeds the target: "
                "sample counts shrunk, intervals will be wider"
            )
        for c in self.checks:
            n = "all" if c.samples is None else str(c.samples)
            shrunk = f" (budget: {c.default_samples})" if c.samples != c.default_samples else ""
            shrunk += "".join(f", {k} {v}" for k, v in c.overrides.items() if v != c.samples)
            out.append(f"  | {c.id:<34} {n:>6} samples{shrunk}  ~{_fmt_s(c.estimated_s)}")
        return out


def _fmt_s(s: float | None) -> str:
    if s is None:
        return "-"
    if s < 60:
        return f"{s:.0f} s"
    if s < 3600:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h"


def _cost(cls: Any, params: Any, n_data: int, units: tuple[float, float]) -> float:
    f, g = check_passes(cls, params, n_data)
    return f * units[0] + g * units[1]


def _capped(cls: Any, params: Any, n_data: int, cap_s: float, units: tuple[float, float]) -> dict[str, Any]:
    """The params ``cls`` gets when it may take at most ``cap_s`` seconds: fewer samples first (floored at
    :data:`MIN_PLANNED_SAMPLES`); then, for a check naming its query budget (``plan_queries = (field,
    floor)``: the queries, iterations or generations of a black-box, sparse or physical attack, a
    fuzzer's queries), a smaller budget, never below the floor. Strengths and the steps of the gradient
    attacks are never changed: a planned attack is as strong per input as the budget's.
    """
    overrides: dict[str, Any] = {}
    cost = _cost(cls, params, n_data, units)
    if cost <= cap_s:
        return overrides
    sample_field = getattr(cls, "plan_samples", "n_samples")
    n = samples_of(params, n_data, sample_field)
    if n:
        samples = max(min(n, MIN_PLANNED_SAMPLES), int(n * cap_s / cost))
        if samples < n:
            overrides[sample_field] = samples
            cost = _cost(cls, apply_overrides(params, overrides), n_data, units)
    field_name, floor = getattr(cls, "plan_queries", None) or (None, 0)
    queries = getattr(params, field_name, None) if field_name else None
    if cost > cap_s and isinstance(queries, int) and not isinstance(queries, bool):
        q = max(min(queries, floor), int(queries * cap_s / cost))
        if q < queries:
            overrides[field_name] = q
    return overrides


def make_plan(
    classes: Sequence[Any],
    budget: str,
    n_data: int,
    probe_result: Probe | None,
    time_limit_s: float | None = None,
    n_train: int = 0,
) -> RunPlan:
    """Estimate each check's cost and give the expensive checks less when the total exceeds the target.

    The total is ``n_data + n_train`` forward passes (the shared clean outputs and training-data
    outputs) plus each check's passes (:func:`check_passes`) times the probe's per-sample cost
    (forward+backward for gradient passes). When it exceeds ``time_limit_s`` (else, by more than
    :data:`AUTO_SHRINK_FACTOR` times, the budget's :data:`TIME_TARGETS` entry), every check gets at most
    one common time cap, the largest that lets the whole plan fit (water-filling): cheap checks keep the
    budget's samples, expensive ones get fewer samples and then, where they name one, a smaller query
    budget (:func:`_capped`). Floors may keep a plan above its target; the plan then says so.
    """
    target = time_limit_s if time_limit_s is not None else TIME_TARGETS.get(budget)
    fwd = probe_result.forward_s if probe_result is not None else 0.0
    bwd = (
        probe_result.backward_s
        if probe_result is not None and probe_result.backward_s is not None
        else fwd * (1 + BACKWARD_FACTOR)
    )
    units = (fwd, bwd)
    defaults = [(cls, cls(budget=budget).params) for cls in classes]
    fixed = (n_data + n_train) * fwd
    # work several checks share (the validity gate's fit): counted once, on the first check needing it
    shared_work: dict[str, tuple[str, float]] = {}
    for cls, params in defaults:
        hook = getattr(cls, "plan_shared_work", None)
        for key, passes in (hook(params, n_data, n_train, budget) if callable(hook) else {}).items():
            shared_work.setdefault(key, (cls.id, float(passes)))
    shared_by: dict[str, float] = {}  # the owner's estimate carries it (it runs the work)
    for owner, passes in shared_work.values():
        shared_by.setdefault(owner, 0.0)
        shared_by[owner] += passes

    def plan_at(cap_s: float) -> list[CheckPlan]:
        shared: set[str] = set()
        out = []
        for cls, params in defaults:
            overrides = _capped(cls, params, n_data, cap_s, units)
            planned = apply_overrides(params, overrides)
            f_passes, g_passes = check_passes(cls, planned, n_data)
            key = getattr(cls, "plan_shared", None)  # work several checks share (one OOD bench)
            if key is not None and key in shared:
                f_passes = g_passes = 0.0
            elif key is not None:
                shared.add(key)
            sample_field = getattr(cls, "plan_samples", "n_samples")
            out.append(
                CheckPlan(
                    id=cls.id,
                    samples=samples_of(planned, n_data, sample_field),
                    default_samples=samples_of(params, n_data, sample_field),
                    passes=f_passes + g_passes + shared_by.get(cls.id, 0.0),
                    estimated_s=(f_passes + shared_by.get(cls.id, 0.0)) * fwd + g_passes * bwd,
                    overrides=overrides,
                )
            )
        return out

    checks = plan_at(math.inf)
    default_total = fixed + sum(c.estimated_s for c in checks)
    limit = target if time_limit_s is not None or target is None else target * AUTO_SHRINK_FACTOR
    if target is not None and limit is not None and default_total > limit:
        # the largest per-check cap whose plan fits the target (floors may keep it from fitting at all)
        lo, hi = 0.0, max(c.estimated_s for c in checks)
        for _ in range(50):
            mid = (lo + hi) / 2
            if fixed + sum(c.estimated_s for c in plan_at(mid)) <= target:
                lo = mid
            else:
                hi = mid
        checks = plan_at(lo)
    total = fixed + sum(c.estimated_s for c in checks)
    return RunPlan(
        budget=budget,
        target_s=target,
        time_limit_s=time_limit_s,
        cores=cpu_count(),
        probe=probe_result,
        estimated_s=total,
        default_estimated_s=default_total,
        scaled=any(c.overrides for c in checks),
        checks=checks,
    )


def apply_overrides(params: Any, overrides: dict[str, Any] | None) -> Any:
    """``params`` with the planner's ``overrides`` (a frozen dataclass is replaced, never mutated)."""
    if not overrides or not dataclasses.is_dataclass(params):
        return params
    return dataclasses.replace(params, **overrides)


def interval_width(metrics: dict[str, float | None]) -> float | None:
    """The widest 95% interval among ``metrics`` (``name_ci_high - name_ci_low``), or ``None``."""
    widths = []
    for k, v in metrics.items():
        if k.endswith("_ci_low"):
            hi = metrics.get(k[: -len("_ci_low")] + "_ci_high")
            if v is not None and hi is not None and math.isfinite(v) and math.isfinite(hi):
                widths.append(hi - v)
    return max(widths) if widths else None


# ---------------------------------------------------------------------------------------------- memory

#: Memory a batch of model calls may take (inputs and activations); the batch size follows from it.
BATCH_MEMORY_BYTES = 512 * 2**20
_peak_before_reset = 0


def peak_rss_mb() -> float | None:
    """The process's peak resident memory in MiB (``ru_maxrss``, kept across :func:`batch_memory` probes)."""
    try:
        import resource
        import sys
    except ImportError:  # Windows
        return None
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kb = kb / 1024 if sys.platform == "darwin" else kb  # bytes on macOS, KiB on Linux
    return max(kb, _peak_before_reset) / 1024


def _status_kb(field_name: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def _reset_peak() -> bool:
    """Start a new peak-RSS window (``VmHWM`` reset through ``/proc/self/clear_refs``), keeping the
    process's peak so far for :func:`peak_rss_mb`. False where the kernel offers no reset."""
    global _peak_before_reset
    _peak_before_reset = max(_peak_before_reset, _status_kb("VmHWM") or 0)
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")
    except OSError:
        return False
    return True


@contextlib.contextmanager
def peak_window(out: dict[str, float]) -> Iterator[None]:
    """Measure the peak resident memory (MiB) reached while the block runs into ``out["peak_rss_mb"]``.

    Linux only (``VmHWM`` reset per window); elsewhere ``out`` stays empty. The process-wide peak of
    :func:`peak_rss_mb` is unaffected.
    """
    ok = _reset_peak()
    try:
        yield
    finally:
        after = _status_kb("VmHWM") if ok else None
        if after is not None:
            out["peak_rss_mb"] = after / 1024


def batch_memory(model: Any, x: np.ndarray, batch: int = 8) -> float | None:
    """Bytes one sample takes during a forward call, measured as the growth of the peak RSS (Linux).

    The kernel's peak (``VmHWM``) is reset through ``/proc/self/clear_refs`` before the call; the
    process's earlier peak is kept for :func:`peak_rss_mb`. ``None`` where this cannot be measured.
    """
    xb = np.ascontiguousarray(x[: max(1, min(batch, len(x)))], dtype=np.float32)
    before = _status_kb("VmRSS")
    if before is None or not _reset_peak():
        return None
    model.predict(xb)
    after = _status_kb("VmHWM")
    if after is None:
        return None
    return max(0, after - before) * 1024 / len(xb) + xb[0].nbytes


def batch_size_for(per_sample_bytes: float | None, requested: int) -> int:
    """The largest power of two (at least 8, at most ``requested``) whose batch fits BATCH_MEMORY_BYTES."""
    if not per_sample_bytes or per_sample_bytes * requested <= BATCH_MEMORY_BYTES:
        return requested
    fit = int(BATCH_MEMORY_BYTES // per_sample_bytes)
    return max(min(8, requested), min(requested, 2 ** int(math.log2(max(1, fit)))))
