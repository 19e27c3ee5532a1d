"""The report schema (``report.json``, schema_version "1") as Pydantic models.

Renderers (HTML, Markdown, JUnit) are pure functions of :class:`Report`, so they can never disagree.
Field names and metric names are a public contract: see ``docs/report-schema.md``.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_serializer

SCHEMA_VERSION = "1"

Status = Literal["pass", "warn", "fail", "error", "skipped"]
Verdict = Literal["ready", "not-ready"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ToolInfo(_Model):
    name: str = "roadworthy"
    version: str
    frameworks: dict[str, str] = Field(default_factory=dict)


class ModelDescription(_Model):
    path: str | None
    format: str
    sha256: str | None = None
    n_classes: int
    white_box: bool
    features: bool = False
    output: str = "logits"


class DataDescription(_Model):
    path: str | None
    sha256: str | None = None
    n_samples: int
    modality: str
    input_shape: list[int]
    class_names: list[str] | None = None
    #: image files that could not be decoded and were left out (see ``--strict-data``); their names
    unreadable_images: int = 0
    unreadable_files: list[str] = Field(default_factory=list)


class ExampleImage(_Model):
    caption: str
    uri: str


class Example(_Model):
    """One piece of visual evidence: an original input beside its changed version."""

    title: str = ""
    label: str | None = None
    original: str | None = None
    original_prediction: str | None = None
    changed: str | None = None
    changed_prediction: str | None = None
    extra: list[ExampleImage] = Field(default_factory=list)


class CheckResult(_Model):
    id: str
    suite: str
    title: str
    status: Status
    summary: str = ""
    metrics: dict[str, float | None] = Field(default_factory=dict)
    details: dict[str, Any] = Field(default_factory=dict)
    examples: list[Example] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    params: dict[str, Any] = Field(default_factory=dict)
    duration_s: float = 0.0
    error: str | None = None
    #: samples the check sent through the model adapter: {"forward": n, "gradient": m} (a gradient pass
    #: is a forward with an input that needs its gradient, and its backward); None when not counted
    model_passes: dict[str, int] | None = None
    #: the process's peak resident memory (MiB) while this check ran, its data and the model included
    #: (Linux; None elsewhere and for checks run in another process)
    peak_rss_mb: float | None = None

    @field_serializer("metrics")
    def _finite_metrics(self, metrics: dict[str, float | None]) -> dict[str, float | None]:
        return {k: _json_number(v) for k, v in metrics.items()}


class Gate(_Model):
    """One policy rule and its outcome. ``passed`` is ``None`` when the metric was not measured."""

    rule: str
    value: float | None
    passed: bool | None
    metric: str | None = None
    source: str = "policy"
    note: str | None = None  #: why a gate failed without a value (``fail_on_unevaluated``)


class Incomplete(_Model):
    """Why a report lacks checks: an interrupted run, or a partial report written while one ran."""

    reason: str
    finished: list[str] = Field(default_factory=list)
    pending: list[str] = Field(default_factory=list)


class Resumed(_Model):
    """Checks reused from the partial report of an earlier, interrupted run with the same ``run_key``."""

    source: str
    reused: list[str] = Field(default_factory=list)


class PlannedCheck(_Model):
    """One check in ``report.plan``: what the planner chose, what it expected and what happened."""

    id: str
    samples: int | None = None  #: samples it used (None: the whole evaluation set via the shared outputs)
    default_samples: int | None = None  #: what the budget alone would have used
    changed: dict[str, Any] = Field(default_factory=dict)  #: params the plan changed (samples, queries)
    estimated_passes: float | None = None  #: model passes the plan expected (a robust model's count)
    passes_used: int | None = None  #: samples the check sent through the model (forward + gradient)
    peak_rss_mb: float | None = None  #: the process's peak resident memory while the check ran (MiB)
    estimated_s: float = 0.0
    actual_s: float | None = None
    interval_width: float | None = None  #: widest 95% interval among its metrics (the precision achieved)


class Plan(_Model):
    """How the run was planned by cost before it started (see ``roadworthy.plan``)."""

    budget: str
    target_s: float | None = None  #: the time it had to fit: the budget's target or --time-limit
    time_limit_s: float | None = None
    forward_ms: float | None = None  #: measured forward cost per sample
    backward_ms: float | None = None  #: measured forward+backward cost per sample (white-box)
    estimated_s: float = 0.0
    default_estimated_s: float = 0.0  #: the budget's unplanned estimate
    scaled: bool = False  #: sample counts were shrunk to fit the target
    checks: list[PlannedCheck] = Field(default_factory=list)


class RunInfo(_Model):
    """What the run cost on the machine that ran it."""

    wall_s: float
    peak_rss_mb: float | None = None  #: the process's peak resident memory (``ru_maxrss``)
    cores: int
    device: str = "cpu"
    batch_size: int | None = None  #: the batch size of model calls


class Report(_Model):
    schema_version: str = SCHEMA_VERSION
    tool: ToolInfo
    created: str
    seed: int
    budget: str
    model: ModelDescription
    #: ``--reference-model``: the artifact the parity suite compared ``model`` with, else ``None``
    reference_model: ModelDescription | None = None
    data: DataDescription
    train_data: DataDescription | None = None
    metrics: dict[str, float | None] = Field(default_factory=dict)
    checks: list[CheckResult] = Field(default_factory=list)
    gates: list[Gate] = Field(default_factory=list)
    verdict: Verdict
    baseline: dict[str, Any] | None = None
    warnings: list[str] = Field(default_factory=list)  #: doubts about the whole run (small sample, ...)
    incomplete: Incomplete | None = None  #: set when checks are missing: never ready
    run_key: str | None = None  #: sha256 of everything that changes a number (resume compares it)
    options: dict[str, Any] = Field(default_factory=dict)  #: the settings that went into ``run_key``
    resumed: Resumed | None = None
    plan: Plan | None = None  #: the cost plan, its estimates, actual times and interval widths
    run: RunInfo | None = None  #: wall time, peak memory, cores and device of this run

    @field_serializer("metrics")
    def _finite_metrics(self, metrics: dict[str, float | None]) -> dict[str, float | None]:
        return {k: _json_number(v) for k, v in metrics.items()}

    def check(self, check_id: str) -> CheckResult | None:
        """The result of ``check_id``, or ``None`` when it was not run."""
        return next((c for c in self.checks if c.id == check_id), None)


def _json_number(v: float | None) -> float | None:
    """JSON has no NaN or infinity: unmeasurable numbers are written as null."""
    if v is None or not math.isfinite(v):
        return None
    return float(v)


def load_report(path: str, ignored: list[str] | None = None) -> Report:
    """Read and validate a ``report.json``; raise :class:`InvalidInputError` naming the file on failure.

    Fields this version does not know (a report from a newer roadworthy with the same schema version)
    are dropped rather than refused; their dotted paths are appended to ``ignored`` when given.
    """
    import json
    from pathlib import Path

    from pydantic import ValidationError

    from roadworthy.errors import InvalidInputError

    p = Path(path)
    try:
        raw = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise InvalidInputError(f"{path}: file not found") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidInputError(f"{path}: not a readable JSON report ({exc})") from exc
    if not isinstance(raw, dict) or raw.get("schema_version") != SCHEMA_VERSION:
        found = raw.get("schema_version") if isinstance(raw, dict) else type(raw).__name__
        raise InvalidInputError(
            f"{path}: expected a roadworthy report with schema_version '1', found {found!r}"
        )
    dropped = ignored if ignored is not None else []
    for _ in range(1000):  # one round per unknown field at most
        try:
            return Report.model_validate(raw)
        except ValidationError as exc:
            extra = [e["loc"] for e in exc.errors() if e["type"] == "extra_forbidden"]
            if not extra:
                first = exc.errors()[0]
                where = ".".join(str(p) for p in first["loc"])
                raise InvalidInputError(f"{path}: invalid report at '{where}': {first['msg']}") from exc
            for loc in extra:
                _drop(raw, loc)
                dropped.append(".".join(str(p) for p in loc))
    raise InvalidInputError(f"{path}: too many unknown fields to read as a schema '1' report")


def _drop(raw: Any, loc: tuple[Any, ...]) -> None:
    """Delete the field at ``loc`` (a pydantic error location) from nested dicts and lists."""
    node = raw
    for key in loc[:-1]:
        node = node[key]
    if isinstance(node, dict):
        node.pop(loc[-1], None)
