"""A session: one model, its data, the selected checks, a budget and a seed -> one :class:`Report`.

Every setting that changes a number (the model and data fingerprints, the load options, budget, seed,
suites, batch size, baseline, tool version) goes into the report's ``run_key``; ``--resume`` reuses the
finished checks of an interrupted run only when its partial report carries the same key. An interrupt
(Ctrl-C, or SIGTERM from a cancelled CI job, which the CLI turns into the same exception) ends the run
with an *incomplete* report of the checks that finished: never ready.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fnmatch
import hashlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from roadworthy import __version__
from roadworthy._files import array_fingerprint, write_text_atomic
from roadworthy.checks import load_builtin_checks
from roadworthy.checks.base import BUDGETS, Check, Context
from roadworthy.data.base import Dataset
from roadworthy.errors import InvalidInputError, RunInterrupted
from roadworthy.models.base import Model, ModelInfo, capabilities
from roadworthy.policy import Policy, judge, mark_failed_checks
from roadworthy.results import (
    CheckResult,
    DataDescription,
    Gate,
    Incomplete,
    ModelDescription,
    Plan,
    PlannedCheck,
    Report,
    Resumed,
    RunInfo,
    ToolInfo,
)
from roadworthy.runner import BACKENDS, PREPARE

__all__ = ["PARTIAL_NAME", "Session", "select_checks", "write_text_atomic"]

log = logging.getLogger("roadworthy")

ALWAYS_SUITES = ("sanity", "clean")
PARTIAL_NAME = "report.partial.json"
#: Below this many evaluation samples every interval is wide and the report says so ("small-sample").
MIN_EVAL_SAMPLES = 30


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
        unreadable_images=int(ds.meta.get("unreadable_images", 0)),
        unreadable_files=[str(f) for f in ds.meta.get("unreadable_files", [])],
    )


def data_fingerprint(ds: Dataset | None) -> str | None:
    """The data file's sha256, or for data given as arrays a hash of their contents (cached)."""
    if ds is None:
        return None
    if ds.sha256:
        return ds.sha256
    if "fingerprint" not in ds.meta:
        ds.meta["fingerprint"] = "arrays:" + array_fingerprint(ds.x, ds.y)
    return str(ds.meta["fingerprint"])


def model_fingerprint(model: Model) -> str | None:
    """A hash of an in-memory model's weights (PyTorch modules, scikit-learn estimators), else None.

    A model loaded from a file is identified by the file's sha256 instead; a plain function has no
    weights to hash, so a run on it cannot be resumed.
    """
    module = getattr(model, "module", None)
    if module is not None and hasattr(module, "state_dict"):
        import torch

        h = hashlib.sha256(type(module).__name__.encode())
        for name, t in module.state_dict().items():
            h.update(name.encode())
            h.update(str(tuple(t.shape)).encode())
            h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
        return "weights:" + h.hexdigest()
    estimator = getattr(model, "estimator", None)
    if estimator is not None:
        import pickle

        try:  # dumping (never loading) a fitted estimator: its parameters and learned arrays
            return "estimator:" + hashlib.sha256(pickle.dumps(estimator, protocol=4)).hexdigest()
        except (pickle.PicklingError, TypeError, AttributeError):
            return None
    return None


def data_class_count(ds: Dataset) -> int:
    """How many classes the data itself declares: its class names, else the largest label + 1."""
    if ds.class_names and ds.meta.get("class_names_source") != "model":
        return len(ds.class_names)
    return int(ds.y.max()) + 1 if len(ds.y) else 0


def run_warnings(model: Model, data: Dataset) -> list[str]:
    """Doubts about the whole run that no single check raises: too few samples, classes that do not fit."""
    out = []
    n = data.n_samples
    if n < MIN_EVAL_SAMPLES:
        out.append(
            f"small-sample: the evaluation data has only {n} sample{'s' if n != 1 else ''} (fewer than "
            f"{MIN_EVAL_SAMPLES}); every number rests on chance and every interval is wide — use a few "
            "hundred samples or more"
        )
    k_model, k_data = int(model.n_classes), data_class_count(data)
    if k_data and k_model != k_data:
        out.append(
            f"the model has {k_model} outputs but the data has {k_data} classes: check that model and data "
            "belong together (per-class tables list the classes that occur)"
        )
    return out


def _jsonable(v: Any) -> Any:
    """Settings as JSON values (tuples as lists, paths and other objects as text)."""
    if v is None or isinstance(v, bool | int | float | str):
        return v
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_jsonable(x) for x in v]
    if hasattr(v, "tolist"):
        return _jsonable(v.tolist())
    return str(v)


def model_identity(model: Model) -> ModelInfo | None:
    """Where a model came from, as its loader recorded it (``None`` for a model built in memory)."""
    identity = getattr(model, "identity", None)
    return identity if isinstance(identity, ModelInfo) else None


def describe_model(model: Model) -> ModelDescription:
    caps = capabilities(model)
    identity = model_identity(model)
    return ModelDescription(
        path=identity.path if identity else None,
        format=str(getattr(model, "format", type(model).__name__)),
        sha256=identity.sha256 if identity else None,
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
    progress: Any = None
    say: Callable[[str], None] | None = None
    backend: str = "local"
    #: rebuilds the model in another process (ray backend): a :class:`roadworthy.config.ModelRecipe`
    model_recipe: Callable[[], Any] | None = None
    #: the backend's own settings (ray: address, timeout, workers, cpus_per_task)
    backend_options: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)  #: load options that change numbers (mean, ...)
    warnings: list[str] = field(default_factory=list)  #: found before the run (e.g. a forced baseline)
    time_limit_s: float | None = None  #: --time-limit: the plan shrinks sample counts to fit it
    device: str = "cpu"  #: where the model runs (recorded in the report's run info)
    plan: Any = None  #: the :class:`roadworthy.plan.RunPlan`, set by :meth:`make_plan`
    #: ``--reference-model``: the artifact the parity suite compares ``model`` with (``None``: no parity)
    reference_model: Model | None = None

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
            plan_params=self.plan.overrides() if self.plan is not None else {},
            plan_estimates={c.id: c.estimated_s for c in self.plan.checks} if self.plan is not None else {},
            reference_model=self.reference_model,
        )

    def make_plan(self, classes: Sequence[type[Check]]) -> Any:
        """Time the model, choose the batch size and plan each check's samples (see :mod:`roadworthy.plan`).

        The batch size only goes down from the requested one, when the measured memory per sample says a
        batch would take more than ``plan.BATCH_MEMORY_BYTES``; the sample counts only go down when the
        estimate exceeds the budget's time target or ``time_limit_s``.
        """
        from roadworthy import plan as planning

        unplanned = self.context()
        classes = [c for c in classes if c.unmet(unplanned) is None]  # what will run, not the skips
        x = self.data.x
        result = None
        if len(x):
            white_box = "white_box" in capabilities(self.model)
            try:
                per_sample = planning.batch_memory(self.model, x)
                self.batch_size = planning.batch_size_for(per_sample, self.batch_size)
                result = planning.probe(self.model, x, batch=self.batch_size, white_box=white_box)
            except Exception as exc:  # noqa: BLE001 - a broken model is the sanity checks' finding, not the plan's
                log.info("cost probe failed (%s); planning without it", exc)
        n_train = len(self.train_data.x) if self.train_data is not None else 0
        self.plan = planning.make_plan(classes, self.budget, len(x), result, self.time_limit_s, n_train)
        for line in self.plan.lines():
            self._announce(line)
        return self.plan

    def run_options(self, classes: Sequence[type[Check]] | None = None) -> dict[str, Any]:
        """Everything that changes a number, as JSON values; its hash is the report's ``run_key``."""
        selected = classes if classes is not None else select_checks(self.suites, self.budget)
        baseline = None
        if self.baseline is not None:
            text = json.dumps(self.baseline.model_dump(mode="json")["metrics"], sort_keys=True)
            baseline = hashlib.sha256(text.encode()).hexdigest()
        return _jsonable(
            {
                "tool_version": __version__,
                "model_sha256": _model_sha256(self.model),
                "data": data_fingerprint(self.data),
                "train_data": data_fingerprint(self.train_data),
                "ood_data": data_fingerprint(self.ood_data),
                "budget": self.budget,
                "seed": self.seed,
                "checks": sorted(c.id for c in selected),
                "batch_size": self.batch_size,
                "baseline_metrics": baseline,
                **(self.plan.key_fields() if self.plan is not None else {"time_limit": self.time_limit_s}),
                **{k: self.options[k] for k in sorted(self.options)},
                # the policy's feature-schema overrides change every tabular shift, attack and OOD row;
                # absent without overrides, so the keys of other runs stay as they were
                **({"schema": self.data.meta["schema"]} if self.data.meta.get("schema") else {}),
                # only with a reference, so the keys of runs without one stay as they were
                **(
                    {"reference_model_sha256": _model_sha256(self.reference_model)}
                    if self.reference_model is not None
                    else {}
                ),
            }
        )

    def run(self) -> Report:
        """Run the selected checks and return the judged report.

        Raises
        ------
        RunInterrupted
            On Ctrl-C (or SIGTERM through the CLI); its ``report`` holds the finished checks, marked
            incomplete, and the partial report stays in ``out`` for ``--resume``.
        """
        from roadworthy.memory import keep_freed_memory

        keep_freed_memory()
        started = time.perf_counter()
        classes = select_checks(self.suites, self.budget)
        backend = BACKENDS.get(self.backend)
        if backend is None:
            raise InvalidInputError(
                f"--backend must be one of {', '.join(BACKENDS)}. Got {self.backend!r} instead."
            )
        # the backend's start (Ray: its worker processes) overlaps the model timing and planning below
        prepare = PREPARE.get(self.backend)
        prepared = (
            prepare(model_recipe=self.model_recipe, sample=self.data.x[:2], **self.backend_options)
            if prepare
            else None
        )
        try:
            return self._run(classes, started, backend, prepared)
        finally:
            if prepared is not None:
                prepared.close()

    def _run(
        self, classes: list[type[Check]], started: float, backend: Callable[..., Any], prepared: Any
    ) -> Report:
        self.make_plan(classes)
        options = self.run_options(classes)
        key = _run_key(options)
        ctx = self.context()
        created = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        done, resumed = self._resumable(key, options, classes) if self.resume else (None, None)
        finished: list[CheckResult] = []
        all_ids = [c.id for c in classes]

        def checkpoint(result: CheckResult) -> None:
            finished.append(result)
            if self.out is not None:
                partial = self.build_report(
                    finished,
                    created,
                    key,
                    options,
                    resumed,
                    self._incomplete("run in progress", finished, all_ids),
                )
                try:
                    write_text_atomic(self.out / PARTIAL_NAME, partial.model_dump_json(indent=1))
                except OSError as exc:  # the run goes on; writing the final report will say what is wrong
                    if not unwritable:
                        self._announce(
                            f"could not write {self.out / PARTIAL_NAME} ({exc.strerror or exc}); "
                            "--resume will not find this run's finished checks",
                            warning=True,
                        )
                    unwritable.append(str(exc))

        unwritable: list[str] = []
        try:
            results = backend(
                classes,
                ctx,
                on_result=checkpoint,
                done=done,
                say=self.say,
                model_recipe=self.model_recipe,
                **self.backend_options,
                **({"prepared": prepared} if prepared is not None else {}),
            )
        except KeyboardInterrupt as exc:
            reason = getattr(exc, "reason", None) or "interrupted (SIGINT)"
            report = self.build_report(
                finished, created, key, options, resumed, self._incomplete(reason, finished, all_ids)
            )
            report.run = self.run_info(time.perf_counter() - started)
            if self.out is not None:  # keep it for --resume
                with contextlib.suppress(OSError):
                    write_text_atomic(self.out / PARTIAL_NAME, report.model_dump_json(indent=1))
            raise RunInterrupted(report, reason) from exc
        report = self.build_report(results, created, key, options, resumed)
        report.run = self.run_info(time.perf_counter() - started)
        if self.out is not None:
            (self.out / PARTIAL_NAME).unlink(missing_ok=True)
        return report

    def run_info(self, wall_s: float) -> RunInfo:
        """Wall time, peak memory, cores, device and batch size of this run."""
        from roadworthy.plan import cpu_count, peak_rss_mb

        return RunInfo(
            wall_s=round(wall_s, 3),
            peak_rss_mb=peak_rss_mb(),
            cores=cpu_count(),
            device=self.device,
            batch_size=self.batch_size,
        )

    def plan_report(self, results: Sequence[CheckResult]) -> Plan | None:
        """``report.plan``: the plan with each check's actual time and widest interval."""
        if self.plan is None:
            return None
        from roadworthy.plan import interval_width

        by_id = {r.id: r for r in results}
        p = self.plan
        checks = []
        for c in p.checks:
            r = by_id.get(c.id)
            checks.append(
                PlannedCheck(
                    id=c.id,
                    samples=c.samples,
                    default_samples=c.default_samples,
                    changed=dict(c.overrides),
                    estimated_passes=round(c.passes, 1),
                    estimated_s=round(c.estimated_s, 3),
                    actual_s=round(r.duration_s, 3) if r is not None else None,
                    passes_used=sum(r.model_passes.values()) if r is not None and r.model_passes else None,
                    interval_width=interval_width(r.metrics) if r is not None else None,
                    peak_rss_mb=round(r.peak_rss_mb, 1) if r is not None and r.peak_rss_mb else None,
                )
            )
        probe = p.probe
        return Plan(
            budget=p.budget,
            target_s=p.target_s,
            time_limit_s=p.time_limit_s,
            forward_ms=probe.measured_forward_s * 1e3 if probe is not None else None,
            backward_ms=(
                probe.measured_backward_s * 1e3
                if probe is not None and probe.measured_backward_s is not None
                else None
            ),
            estimated_s=round(p.estimated_s, 3),
            default_estimated_s=round(p.default_estimated_s, 3),
            scaled=p.scaled,
            checks=checks,
        )

    @staticmethod
    def _incomplete(reason: str, finished: list[CheckResult], all_ids: list[str]) -> Incomplete:
        ids = [r.id for r in finished]
        return Incomplete(reason=reason, finished=ids, pending=[i for i in all_ids if i not in set(ids)])

    def build_report(
        self,
        results: list[CheckResult],
        created: str,
        run_key: str | None = None,
        options: dict[str, Any] | None = None,
        resumed: Resumed | None = None,
        incomplete: Incomplete | None = None,
    ) -> Report:
        """Judge ``results`` and assemble the report; an ``incomplete`` report is never ready."""
        metrics: dict[str, float | None] = {}
        for r in results:
            metrics.update(r.metrics)
        results = [r.model_copy(deep=True) for r in results]
        white_box = "white_box" in capabilities(self.model)
        policy, policy_warnings = self.policy.for_model(
            white_box, reference=self.reference_model is not None, tabular=self.data.modality == "tabular"
        )
        gates, verdict = judge(policy, metrics, results, self.baseline)
        mark_failed_checks(results, gates)
        if incomplete is not None:
            gates.append(
                Gate(
                    rule=f"every selected check finished ({incomplete.reason}: "
                    f"{len(incomplete.finished)} of {len(incomplete.finished) + len(incomplete.pending)})",
                    value=float(len(incomplete.pending)),
                    passed=False,
                    metric=None,
                    source="runner",
                )
            )
            verdict = "not-ready"
        baseline_info = None
        if self.baseline is not None:
            baseline_info = {
                "model_sha256": self.baseline.model.sha256,
                "created": self.baseline.created,
                "verdict": self.baseline.verdict,
                "max_drop": self.policy.max_drop,
                "data_sha256": self.baseline.data.sha256,
            }
        warnings = list(
            dict.fromkeys([*self.warnings, *run_warnings(self.model, self.data), *policy_warnings])
        )
        return Report(
            tool=ToolInfo(version=__version__, frameworks=framework_versions()),
            created=created,
            seed=self.seed,
            budget=self.budget,
            model=describe_model(self.model),
            reference_model=describe_model(self.reference_model)
            if self.reference_model is not None
            else None,
            data=describe_data(self.data),
            train_data=describe_data(self.train_data) if self.train_data is not None else None,
            metrics=metrics,
            checks=results,
            gates=gates,
            verdict=verdict,  # type: ignore[arg-type]
            baseline=baseline_info,
            warnings=warnings,
            incomplete=incomplete,
            run_key=run_key,
            options=options or {},
            resumed=resumed,
            plan=self.plan_report(results),
        )

    def _announce(self, text: str, warning: bool = False) -> None:
        if self.say is not None:
            self.say(text)
        elif warning:
            log.warning("%s", text)
        else:
            log.info("%s", text)

    def _resumable(
        self, key: str, options: dict[str, Any], classes: Sequence[type[Check]]
    ) -> tuple[dict[str, CheckResult] | None, Resumed | None]:
        """Finished results of an interrupted run with the same ``run_key``, and what was reused."""
        if self.out is None:
            return None, None
        path = self.out / PARTIAL_NAME
        if not path.exists():
            self._announce(f"--resume: no {PARTIAL_NAME} in {self.out}; running every check")
            return None, None
        if options.get("model_sha256") is None or (
            "reference_model_sha256" in options and options["reference_model_sha256"] is None
        ):
            self._announce(
                "not resuming: the model (or --reference-model) is a Python function without weights to "
                "fingerprint; "
                f"running every check instead of trusting {path}",
                warning=True,
            )
            return None, None
        try:
            from roadworthy.results import load_report

            old = load_report(str(path))
        except (InvalidInputError, OSError):
            self._announce(f"not resuming: {path} is unreadable; running every check", warning=True)
            return None, None
        if old.run_key != key:
            changed = sorted(k for k in {*options, *old.options} if old.options.get(k) != options.get(k))
            what = ", ".join(changed) if old.options else "settings it does not record (an older roadworthy)"
            self._announce(
                f"not resuming: {path} was made with different {what}; running every check", warning=True
            )
            return None, None
        wanted = {c.id for c in classes}
        done = {c.id: c for c in old.checks if c.id in wanted and c.status != "error"}
        self._announce(
            f"resuming: reused {len(done)} finished check{'s' if len(done) != 1 else ''} from {path}"
            + (f" ({', '.join(sorted(done))})" if 0 < len(done) <= 12 else "")
        )
        return done, Resumed(source=str(path), reused=sorted(done))


def _model_sha256(model: Model) -> str | None:
    """The model file's sha256 (hashed once, by the loader), else a hash of in-memory weights."""
    identity = model_identity(model)
    if identity is not None and identity.sha256:
        return identity.sha256
    return model_fingerprint(model)


def _run_key(options: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(options, sort_keys=True).encode()).hexdigest()
