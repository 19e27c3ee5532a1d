"""A session: one model, its data, the selected checks, a budget and a seed -> one :class:`Report`."""

from __future__ import annotations

import datetime as _dt
import fnmatch
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from roadworthy import __version__
from roadworthy.checks import load_builtin_checks
from roadworthy.checks.base import BUDGETS, Check, Context
from roadworthy.data.base import Dataset
from roadworthy.errors import InvalidInputError
from roadworthy.models.base import Model, capabilities
from roadworthy.policy import Policy, judge, mark_failed_checks
from roadworthy.results import CheckResult, DataDescription, ModelDescription, Report, ToolInfo
from roadworthy.runner import run_checks

log = logging.getLogger("roadworthy")

ALWAYS_SUITES = ("sanity", "clean")
PARTIAL_NAME = "report.partial.json"


def select_checks(suites: Sequence[str] | None, budget: str) -> list[type[Check]]:
    """The registered checks to run.

    ``suites`` holds suite names (``shift``), check ids (``attack.pgd_linf``) or patterns
    (``shift.*noise``); ``None`` means every suite. The ``sanity`` and ``clean`` suites always run (they
    are cheap and other numbers are read against them). A check outside the budget's default set runs
    only when named by its id.
    """
    registry = load_builtin_checks()
    if budget not in BUDGETS:
        raise InvalidInputError(f"--budget must be one of {', '.join(BUDGETS)}. Got {budget!r} instead.")
    chosen: list[type[Check]] = []
    known_suites = {c.suite() for c in registry.values()}
    wanted = list(suites or [])
    for w in wanted:
        if (
            w not in known_suites
            and w not in registry
            and not any(fnmatch.fnmatchcase(i, w) for i in registry)
        ):
            raise InvalidInputError(
                f"--suite {w!r} matches no suite or check. Suites: {', '.join(sorted(known_suites))} "
                "(roadworthy list shows every check)."
            )
    for cid, cls in registry.items():
        explicit = cid in wanted
        in_suite = not wanted or cls.suite() in wanted or cls.suite() in ALWAYS_SUITES
        by_pattern = any(fnmatch.fnmatchcase(cid, w) for w in wanted if "*" in w)
        if explicit or ((in_suite or by_pattern) and budget in cls.budgets):
            chosen.append(cls)
    return chosen


def framework_versions() -> dict[str, str]:
    """Versions of the frameworks that shape the numbers (recorded in every report)."""
    import importlib.metadata as md
    import platform
    import sys

    out = {"python": platform.python_version()}
    for name in ("numpy", "torch", "onnxruntime", "scikit-learn", "scipy", "cleanlab"):
        mod = {"scikit-learn": "sklearn"}.get(name, name)
        if mod in sys.modules or name in ("numpy",):
            try:
                out[name] = md.version(name)
            except md.PackageNotFoundError:
                continue
    return out


def describe_data(ds: Dataset) -> DataDescription:
    return DataDescription(
        path=ds.path,
        sha256=ds.sha256,
        n_samples=ds.n_samples,
        modality=ds.modality,
        input_shape=list(ds.input_shape),
        class_names=list(ds.class_names) if ds.class_names else None,
    )


def describe_model(model: Model, path: str | None = None, sha256: str | None = None) -> ModelDescription:
    caps = capabilities(model)
    return ModelDescription(
        path=path,
        format=str(getattr(model, "format", type(model).__name__)),
        sha256=sha256,
        n_classes=int(model.n_classes),
        white_box="white_box" in caps,
        features="features" in caps,
        output=str(getattr(model, "output", "logits")),
    )


@dataclass
class Session:
    """Everything one run needs. ``run()`` measures, judges and returns the report."""

    model: Model
    data: Dataset
    train_data: Dataset | None = None
    ood_data: Dataset | None = None
    suites: Sequence[str] | None = None
    budget: str = "standard"
    seed: int = 0
    policy: Policy = field(default_factory=Policy)
    baseline: Report | None = None
    out: Path | None = None
    resume: bool = False
    batch_size: int = 256
    model_path: str | None = None
    model_sha256: str | None = None
    progress: Any = None
    say: Callable[[str], None] | None = None
    backend: str = "local"
    model_recipe: Callable[[], Any] | None = None  #: rebuilds the model in another process (ray backend)

    def context(self) -> Context:
        from roadworthy.checks.base import NullProgress

        return Context(
            model=self.model,
            data=self.data,
            train_data=self.train_data,
            ood_data=self.ood_data,
            budget=self.budget,
            seed=self.seed,
            baseline=self.baseline,
            batch_size=self.batch_size,
            progress=self.progress or NullProgress(),
        )

    def run(self) -> Report:
        from roadworthy.memory import keep_freed_memory

        keep_freed_memory()
        classes = select_checks(self.suites, self.budget)
        ctx = self.context()
        created = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        done = self._resumable() if self.resume else None

        def checkpoint(_: CheckResult) -> None:
            if self.out is not None:
                partial = self.build_report(list(ctx.results.values()), created)
                write_text_atomic(self.out / PARTIAL_NAME, partial.model_dump_json(indent=1))

        if self.backend == "ray":
            from roadworthy.backends.ray import run_ray

            results = run_ray(
                classes, ctx, on_result=checkpoint, done=done, say=self.say, model_recipe=self.model_recipe
            )
        elif self.backend == "local":
            results = run_checks(classes, ctx, on_result=checkpoint, done=done, say=self.say)
        else:
            raise InvalidInputError(f"--backend must be 'local' or 'ray'. Got {self.backend!r} instead.")
        report = self.build_report(results, created)
        if self.out is not None:
            (self.out / PARTIAL_NAME).unlink(missing_ok=True)
        return report

    def build_report(self, results: list[CheckResult], created: str) -> Report:
        metrics: dict[str, float | None] = {}
        for r in results:
            metrics.update(r.metrics)
        results = [r.model_copy(deep=True) for r in results]
        gates, verdict = judge(self.policy, metrics, results, self.baseline)
        mark_failed_checks(results, gates)
        baseline_info = None
        if self.baseline is not None:
            baseline_info = {
                "model_sha256": self.baseline.model.sha256,
                "created": self.baseline.created,
                "verdict": self.baseline.verdict,
                "max_drop": self.policy.max_drop,
            }
        return Report(
            tool=ToolInfo(version=__version__, frameworks=framework_versions()),
            created=created,
            seed=self.seed,
            budget=self.budget,
            model=describe_model(self.model, self.model_path, self.model_sha256),
            data=describe_data(self.data),
            train_data=describe_data(self.train_data) if self.train_data is not None else None,
            metrics=metrics,
            checks=results,
            gates=gates,
            verdict=verdict,  # type: ignore[arg-type]
            baseline=baseline_info,
        )

    def _resumable(self) -> dict[str, CheckResult] | None:
        """Finished results of an interrupted run of the same model, data, seed and budget."""
        if self.out is None or not (self.out / PARTIAL_NAME).exists():
            return None
        try:
            old = Report.model_validate(json.loads((self.out / PARTIAL_NAME).read_text(encoding="utf-8")))
        except (ValueError, OSError):
            log.warning("ignoring unreadable %s", self.out / PARTIAL_NAME)
            return None
        same = (
            old.seed == self.seed
            and old.budget == self.budget
            and old.model.sha256 == self.model_sha256
            and old.data.sha256 == self.data.sha256
        )
        if not same:
            log.warning(
                "not resuming: %s belongs to another model, data, seed or budget", self.out / PARTIAL_NAME
            )
            return None
        return {c.id: c for c in old.checks}


def write_text_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
