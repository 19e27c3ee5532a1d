"""Plan a run by its cost before it starts: which checks, on how many samples, in about how long.

At the start of a run the session times the model (:func:`probe`: a forward pass of a small batch and,
for a white-box model, a forward and backward pass), estimates each selected check's cost in model passes
(:func:`check_passes`, from the fields of its ``Params``), and compares the total with the budget's time
target (:data:`TIME_TARGETS`) or the user's ``--time-limit``. Only when the estimate exceeds it (the
budget's target by more than :data:`AUTO_SHRINK_FACTOR` times, or the time limit at all) does the planner
shrink the checks' sample counts (``n_samples``), all by one factor, never below
:data:`MIN_PLANNED_SAMPLES`: fewer samples give wider intervals, never another kind of number. Steps,
queries and strengths are left at the budget's values, so a planned attack is as strong as an unplanned one.

Determinism. A plan that followed the measured speed exactly would make the numbers depend on the
machine. The measured cost per sample is therefore rounded to a power of two (:func:`cost_class`), and
the plan changes nothing while the budget's default plan fits its target: quick and standard runs of
small models keep their numbers on every machine. A planned run records the changed parameters in the
check's ``params``, the plan in ``report.plan`` and its inputs (time limit, cost class, changed
parameters) in the ``run_key``, so ``--resume`` never mixes two plans.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Sequence
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
#: times over (a large model): estimates are coarse and machine-dependent, and small models must keep
#: their numbers on every machine. An estimate over the target but within this margin is only reported.
AUTO_SHRINK_FACTOR = 4.0
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


def probe(model: Any, x: np.ndarray, batch: int = 32, white_box: bool = False) -> Probe:
    """Time the model on ``batch`` samples of ``x`` (best of two after a warm-up call).

    Checks call the model in batches, so the cost per sample is measured on a batch, not on one sample
    (whose fixed call overhead would make a small model look tens of times slower than it is).
    """
    xb = np.ascontiguousarray(x[: max(1, min(batch, len(x)))], dtype=np.float32)
    n = len(xb)
    model.predict(xb)  # warm-up: lazy initialisation, allocator, thread pools
    fwd = min(_timed(lambda: model.predict(xb)) for _ in range(2)) / n
    bwd = None
    if white_box and hasattr(model, "forward_torch"):
        import torch

        def step() -> None:
            # the gradient an attack takes: with respect to the input only (no weight gradients are
            # computed, and none are left in the user's parameters' .grad)
            t = torch.from_numpy(xb).to(getattr(model, "device", "cpu")).requires_grad_(True)
            torch.autograd.grad(model.forward_torch(t).sum(), t)

        step()
        bwd = min(_timed(step) for _ in range(2)) / n
    return Probe(
        forward_s=cost_class(fwd),
        backward_s=cost_class(bwd) if bwd is not None else None,
        batch=n,
        measured_forward_s=fwd,
        measured_backward_s=bwd,
    )


def _timed(fn: Any) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


# ---------------------------------------------------------------------------------------------- costs


def samples_of(params: Any, n_data: int) -> int | None:
    """The sample count a check's ``Params`` declares (``n_samples``; 0 means all), capped by the data."""
    n = getattr(params, "n_samples", None)
    if isinstance(n, bool) or not isinstance(n, int):
        return None
    return n_data if n <= 0 else min(n, n_data)


def passes_per_sample(params: Any) -> float:
    """Model passes one sample costs, read from the usual ``Params`` fields (an estimate, by design coarse).

    ``severities`` (shifts), ``steps`` x ``restarts`` (gradient attacks: the strengths of a sweep reuse
    the search by bisection and early stops, so they are not multiplied),
    ``max_queries`` (decision-based attacks), ``popsize`` x (``generations`` + 1) x ``strengths``
    (evolutionary attacks), 2 x ``iterations`` x ``restarts`` (greedy search). A check with none of them
    costs one pass per sample.
    """
    get = lambda name: getattr(params, name, None)  # noqa: E731
    k = 1.0
    if isinstance(get("severities"), Sequence):
        k *= max(1, len(get("severities")))
    if isinstance(get("steps"), int):
        k *= max(1, get("steps")) * max(1, get("restarts") or 1)
    elif isinstance(get("iterations"), int):
        k *= 2 * max(1, get("iterations")) * max(1, get("restarts") or 1)
    if isinstance(get("max_queries"), int):
        k *= max(1, get("max_queries"))
    if isinstance(get("popsize"), int):
        strengths = get("strengths") if isinstance(get("strengths"), Sequence) else (1,)
        k *= get("popsize") * (max(0, get("generations") or 0) + 1) * max(1, len(strengths))
    return k


def check_passes(cls: Any, params: Any, n_data: int) -> tuple[float, bool]:
    """(model passes, whether they are gradient passes) of one check with ``params``.

    A check without a sample count reads the shared clean outputs (computed once per run, counted once
    by :func:`make_plan`), so it costs no passes of its own here.
    """
    n = samples_of(params, n_data)
    gradient = "white_box" in getattr(cls.requires, "capabilities", frozenset())
    if n is None:
        return 0.0, False
    return float(n) * passes_per_sample(params), gradient


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
            shrunk = f" (budget: {c.default_samples})" if c.overrides else ""
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


def make_plan(
    classes: Sequence[Any],
    budget: str,
    n_data: int,
    probe_result: Probe | None,
    time_limit_s: float | None = None,
) -> RunPlan:
    """Estimate each check's cost and shrink sample counts when the total exceeds the target.

    The total is ``n_data`` forward passes (the shared clean outputs) plus each check's passes times the
    probe's per-sample cost (forward+backward for gradient passes). When it exceeds ``time_limit_s``
    (else, by more than :data:`AUTO_SHRINK_FACTOR` times, the budget's :data:`TIME_TARGETS` entry), every
    ``n_samples`` is multiplied by one factor chosen so that the total fits the target, floored at
    ``MIN_PLANNED_SAMPLES``.
    """
    target = time_limit_s if time_limit_s is not None else TIME_TARGETS.get(budget)
    fwd = probe_result.forward_s if probe_result is not None else 0.0
    bwd = (
        probe_result.backward_s
        if probe_result is not None and probe_result.backward_s is not None
        else fwd * (1 + BACKWARD_FACTOR)
    )
    rows = []
    for cls in classes:
        params = cls(budget=budget).params
        passes, gradient = check_passes(cls, params, n_data)
        rows.append((cls, params, passes, bwd if gradient else fwd, samples_of(params, n_data)))
    fixed = n_data * fwd
    default_total = fixed + sum(p * c for _, _, p, c, _ in rows)
    factor = 1.0
    limit = target if time_limit_s is not None or target is None else target * AUTO_SHRINK_FACTOR
    if target is not None and limit is not None and default_total > limit:
        scalable = sum(p * c for _, _, p, c, n in rows if n)
        room = max(0.0, target - fixed)
        factor = min(1.0, room / scalable) if scalable > 0 else 1.0
    checks: list[CheckPlan] = []
    for cls, _params, passes, unit, n in rows:
        overrides: dict[str, Any] = {}
        samples = n
        if n and factor < 1.0:
            floor = min(n, MIN_PLANNED_SAMPLES)
            samples = max(floor, int(n * factor))
            if samples < n:
                overrides["n_samples"] = samples
                passes = passes * samples / n
        checks.append(
            CheckPlan(
                id=cls.id,
                samples=samples,
                default_samples=n,
                passes=passes,
                estimated_s=passes * unit,
                overrides=overrides,
            )
        )
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


def batch_memory(model: Any, x: np.ndarray, batch: int = 8) -> float | None:
    """Bytes one sample takes during a forward call, measured as the growth of the peak RSS (Linux).

    The kernel's peak (``VmHWM``) is reset through ``/proc/self/clear_refs`` before the call; the
    process's earlier peak is kept for :func:`peak_rss_mb`. ``None`` where this cannot be measured.
    """
    global _peak_before_reset
    xb = np.ascontiguousarray(x[: max(1, min(batch, len(x)))], dtype=np.float32)
    before = _status_kb("VmRSS")
    if before is None:
        return None
    _peak_before_reset = max(_peak_before_reset, _status_kb("VmHWM") or 0)
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")
    except OSError:
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
