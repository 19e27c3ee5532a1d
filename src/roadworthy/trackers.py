"""Logging a report into MLflow, the way a deployment pipeline reads it.

One :class:`MlflowTracker` describes where the report goes (experiment, run name, or an existing run)
and is used in two steps:

1. :meth:`MlflowTracker.preflight`, before any model is loaded: the tracking store answers (one short
   request, so a dead server costs seconds, not MLflow's minutes of retries), MLflow accepts it (MLflow 3
   refuses the ``./mlruns`` file store by default), and the target run holds no report yet. Every
   problem is one :class:`~roadworthy.errors.InvalidInputError` line (exit 2 on the command line).
2. :meth:`MlflowTracker.log`, after the run. What lands in the run:

   - every measured metric under its own name (characters MLflow refuses become ``_``; the mapping is
     then logged as ``roadworthy/metric_names.json``), linked to the logged model when there is one;
   - one metric per gate, ``gate.<n>.passed`` (1 held, 0 failed; absent when not evaluated; ``n`` counts
     from 1 in the order of the report's ``gates``) and ``gate.<n>.value``, with the rule in the tag
     ``roadworthy.gate.<n>``;
   - the verdict as a number, ``roadworthy.ready`` (1 ready, 0 not ready), and as the tag
     ``roadworthy.verdict``;
   - parameters (tool version, budget, seed, model and data identity, policy source);
   - the report files and the effective policy (``roadworthy/policy.yaml``) as artifacts;
   - the evaluation and training data as run inputs (datasets named after their files, with their
     sha256 as digest);
   - for a model from the registry, tags on the model version: ``roadworthy.verdict``,
     ``roadworthy.ready``, ``roadworthy.run_id`` and ``roadworthy.report`` (a ``runs:/`` URI of its
     ``report.json``), so a pipeline can promote a version by its verdict and find the evidence.

   An interrupted run (Ctrl-C, SIGTERM from a cancelled CI job) is logged too, as what it is: the
   finished checks' metrics and gates, ``roadworthy.ready`` 0, the tag ``roadworthy.verdict`` =
   ``incomplete`` with ``roadworthy.incomplete`` giving the reason and ``roadworthy.pending_checks``
   the checks that did not run, the partial report files, and a run that roadworthy started ends
   ``KILLED``. The model version is not tagged: a partial check is no verdict on it, and an earlier
   complete verdict stays.

A run that already holds a roadworthy report is never written into again: two reports in one run would
merge their metrics under one verdict.

:func:`baseline_file` turns ``--baseline runs:/<id>`` or ``--baseline models:/<name>@<alias>`` into the
``report.json`` logged for that run or model version.
"""

from __future__ import annotations

import math
import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from roadworthy.errors import InvalidInputError, OutputError
from roadworthy.models.mlflow import (
    ModelSource,
    check_tracking,
    is_mlflow_uri,
    mlflow_calls,
    require_mlflow,
    resolve,
)
from roadworthy.results import Report

__all__ = ["MlflowTracker", "TrackingError", "baseline_file", "log_to_mlflow", "mlflow_metric_name"]

REPORT_FILES = ("report.json", "report.html", "report.md", "junit.xml")
ARTIFACT_DIR = "roadworthy"
_BAD_CHARS = re.compile(r"[^A-Za-z0-9_.\- ]")
_MAX_KEY = 250


class TrackingError(OutputError):
    """The report was made but could not be logged to MLflow; ``report`` holds it (exit code 3)."""

    def __init__(self, message: str, report: Report) -> None:
        super().__init__(message)
        self.report = report


def mlflow_metric_name(name: str) -> str:
    """``name`` as a metric key MLflow accepts on every platform.

    MLflow allows letters, digits, ``_ - . /``, spaces (and ``:`` except on Windows), at most 250
    characters, and no name that a path would normalise to another. Anything else becomes ``_``;
    slashes and colons too, so the key is the same on every operating system.
    """
    key = _BAD_CHARS.sub("_", name)
    if key in ("", ".", ".."):
        key = f"metric_{key.replace('.', '_')}"
    if len(key) > _MAX_KEY:
        import hashlib

        key = key[: _MAX_KEY - 9] + "_" + hashlib.sha256(name.encode()).hexdigest()[:8]
    return key


def metric_keys(names: Any) -> dict[str, str]:
    """MLflow keys for metric ``names``: a name MLflow accepts keeps it; a rewritten one that would
    collide with another gets a short hash of the original appended."""
    keys = {n: n for n in names if mlflow_metric_name(n) == n}
    taken = set(keys.values())
    for name in sorted(set(names) - set(keys)):
        key = mlflow_metric_name(name)
        if key in taken:
            import hashlib

            key = mlflow_metric_name(f"{key}_{hashlib.sha256(name.encode()).hexdigest()[:8]}")
        keys[name] = key
        taken.add(key)
    return keys


@dataclass
class MlflowTracker:
    """Where a report is logged in MLflow; pass one as ``mlflow=`` to :func:`roadworthy.check`.

    Parameters
    ----------
    experiment
        Experiment name; created when missing. Default: MLflow's current experiment
        (``MLFLOW_EXPERIMENT_NAME``, ``mlflow.set_experiment``, else ``Default``).
    run_name
        Name of the new run (default ``roadworthy <model>``).
    run_id
        Log into this existing run (a training or pipeline run) instead of a new one. Refused when
        the run already holds a roadworthy report.
    tracking_uri
        Tracking server or store; default ``MLFLOW_TRACKING_URI``.
    tags
        Extra run tags (``{"ci.job": "1234"}``).
    tag_model_version
        Tag the registered model version (or logged model) the model came from with the verdict.

    After :meth:`log`, ``logged_run_id`` holds the run's id.
    """

    experiment: str | None = None
    run_name: str | None = None
    run_id: str | None = None
    tracking_uri: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    tag_model_version: bool = True
    logged_run_id: str | None = field(default=None, init=False)

    @classmethod
    def coerce(cls, value: Any) -> MlflowTracker | None:
        """A tracker from ``True``, a dict of its fields, a tracker, or ``None``/``False`` for none."""
        if value is None or value is False:
            return None
        if value is True:
            return cls()
        if isinstance(value, cls):
            return value
        if isinstance(value, dict):
            known = {"experiment", "run_name", "run_id", "tracking_uri", "tags", "tag_model_version"}
            unknown = sorted(set(value) - known)
            if unknown:
                raise InvalidInputError(
                    f"`mlflow` has unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(known))}"
                )
            return cls(**value)
        raise InvalidInputError(
            f"`mlflow` must be True, a dict or an MlflowTracker. Got {type(value).__name__} instead."
        )

    # -- before the run ------------------------------------------------------------------------

    def preflight(self) -> None:
        """Everything about the tracking side that can fail, checked in seconds before any check runs.

        Raises
        ------
        InvalidInputError
            The store does not answer or is refused, the run does not exist or already holds a report,
            or the experiment is deleted.
        """
        mlflow = require_mlflow("--mlflow logging")
        if self.tracking_uri:
            mlflow.set_tracking_uri(self.tracking_uri)
        check_tracking("--mlflow logging")
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient

        client = MlflowClient()
        with mlflow_calls():
            try:
                if self.run_id:
                    run = client.get_run(self.run_id)
                    if run.info.lifecycle_stage == "deleted":
                        raise InvalidInputError(f"--mlflow-run-id {self.run_id}: the run is deleted")
                    _refuse_second_report(run)
                elif mlflow.active_run() is not None and not self.experiment:
                    _refuse_second_report(client.get_run(mlflow.active_run().info.run_id))
                if self.experiment:
                    exp = client.get_experiment_by_name(self.experiment)
                    if exp is not None and exp.lifecycle_stage == "deleted":
                        raise InvalidInputError(
                            f"--mlflow-experiment {self.experiment}: the experiment is deleted; restore it "
                            "(mlflow experiments restore) or choose another name"
                        )
            except MlflowException as exc:
                what = f"--mlflow-run-id {self.run_id}" if self.run_id else "MLflow"
                raise InvalidInputError(f"{what}: {_first_line(exc)}") from exc

    # -- after the run -------------------------------------------------------------------------

    def log(
        self,
        report: Report,
        out: str | Path | None = None,
        *,
        policy: Any = None,
        model: Any = None,
    ) -> str:
        """Log ``report`` (files from ``out``, written to a temporary folder when ``None``); return the run id.

        ``policy`` (a :class:`~roadworthy.policy.Policy`) is logged as ``roadworthy/policy.yaml``;
        ``model`` (the adapter) tells which registered version or logged model to link.

        Raises
        ------
        TrackingError
            MLflow refused or could not be reached; the report itself is fine.
        """
        from mlflow.exceptions import MlflowException

        try:
            with mlflow_calls():
                self.logged_run_id = self._log(report, out, policy, model)
        except (MlflowException, OSError) as exc:
            raise TrackingError(
                f"MLflow logging failed after the run ({_first_line(exc)}); the report files are in "
                f"{out if out is not None else 'no folder (out=None)'}",
                report,
            ) from exc
        except InvalidInputError as exc:
            raise TrackingError(str(exc), report) from exc
        return self.logged_run_id

    def _log(self, report: Report, out: str | Path | None, policy: Any, model: Any) -> str:
        import mlflow
        from mlflow.tracking import MlflowClient

        client = MlflowClient()
        source = self._model_source(report, model)
        run_id, started = self._open_run(mlflow, client, report)
        status = "FAILED"
        try:
            _refuse_second_report(client.get_run(run_id))
            self._log_values(client, run_id, report, source)
            self._log_inputs(client, run_id, report)
            self._log_files(client, run_id, report, out, policy)
            # the verdict tag last: a run carrying it holds a whole report
            incomplete = report.incomplete is not None
            client.set_tag(run_id, "roadworthy.verdict", "incomplete" if incomplete else report.verdict)
            if source is not None and self.tag_model_version and not incomplete:
                self._tag_model(client, source, run_id, report)
            status = "KILLED" if incomplete else "FINISHED"
        finally:
            if started:
                client.set_terminated(run_id, status=status)
        return run_id

    def _open_run(self, mlflow: Any, client: Any, report: Report) -> tuple[str, bool]:
        if self.run_id:
            return self.run_id, False
        active = mlflow.active_run()
        if active is not None and not self.experiment:
            return active.info.run_id, False
        if self.experiment:
            exp = client.get_experiment_by_name(self.experiment)
            experiment_id = (
                exp.experiment_id if exp is not None else client.create_experiment(self.experiment)
            )
        else:
            current = getattr(mlflow.tracking.fluent, "_get_experiment_id", None)  # honours set_experiment
            experiment_id = current() if current is not None else "0"
        name = self.run_name or f"roadworthy {Path(str(report.model.path or report.model.format)).name}"
        run = client.create_run(experiment_id, run_name=name)
        return run.info.run_id, True

    def _model_source(self, report: Report, model: Any) -> ModelSource | None:
        source = getattr(model, "mlflow_source", None)
        if source is None and report.model.path and is_mlflow_uri(report.model.path):
            source = resolve(report.model.path)  # the Python API got a Report without the adapter
        return source

    def _log_values(self, client: Any, run_id: str, report: Report, source: ModelSource | None) -> None:
        from mlflow.entities import Metric, Param, RunTag

        now = int(time.time() * 1000)
        model_id = source.model_id if source is not None else None
        data_name, data_digest = _dataset_identity(report.data)
        metrics: list[Metric] = []

        def metric(key: str, value: float) -> None:
            metrics.append(
                Metric(
                    key, float(value), now, 0,
                    model_id=model_id, dataset_name=data_name, dataset_digest=data_digest,
                )
            )  # fmt: skip

        measured = {k: v for k, v in report.metrics.items() if v is not None and math.isfinite(v)}
        skipped = sorted(set(report.metrics) - set(measured))
        keys = metric_keys(measured)
        renamed = {name: key for name, key in keys.items() if key != name}
        for name, value in sorted(measured.items()):
            metric(keys[name], value)
        tags = {
            "roadworthy.failed_gates": "; ".join(g.rule for g in report.gates if g.passed is False)[:5000],
            "roadworthy.unmeasured_metrics": ", ".join(skipped)[:5000],
            "roadworthy.model": str(report.model.path or ""),
            **self.tags,
        }
        for n, gate in enumerate(report.gates, 1):
            outcome = {True: "passed", False: "failed", None: "not evaluated"}[gate.passed]
            tags[f"roadworthy.gate.{n}"] = f"{gate.rule}: {outcome}" + (
                f" (value {gate.value:g})" if gate.value is not None else ""
            )
            if gate.passed is not None:
                metric(f"gate.{n}.passed", 1.0 if gate.passed else 0.0)
            if gate.value is not None and math.isfinite(gate.value):
                metric(f"gate.{n}.value", gate.value)
        metric("roadworthy.ready", 1.0 if report.verdict == "ready" else 0.0)
        if report.incomplete is not None:
            inc = report.incomplete
            tags["roadworthy.incomplete"] = (
                f"{inc.reason}: {len(inc.finished)} of {len(inc.finished) + len(inc.pending)} checks finished"
            )
            tags["roadworthy.pending_checks"] = ", ".join(inc.pending)[:5000]
        if source is not None:
            tags["roadworthy.model_uri"] = source.uri
            if source.name:
                tags["roadworthy.registered_model"] = f"{source.name}/{source.version}"
            if source.model_id:
                tags["roadworthy.model_id"] = source.model_id
        params = {
            "roadworthy.version": report.tool.version,
            "roadworthy.budget": report.budget,
            "roadworthy.seed": str(report.seed),
            "roadworthy.model": str(report.model.path or "")[:6000],
            "roadworthy.model_format": report.model.format,
            "roadworthy.model_sha256": report.model.sha256 or "",
            "roadworthy.data": str(report.data.path or ""),
            "roadworthy.data_sha256": report.data.sha256 or "",
        }
        for i in range(0, len(metrics), 1000):  # MLflow's batch limits
            client.log_batch(run_id, metrics=metrics[i : i + 1000])
        client.log_batch(run_id, params=[Param(k, v) for k, v in params.items()])
        items = [RunTag(k, v) for k, v in tags.items()]
        for i in range(0, len(items), 100):
            client.log_batch(run_id, tags=items[i : i + 100])
        if renamed:
            client.log_dict(run_id, renamed, f"{ARTIFACT_DIR}/metric_names.json")

    def _log_inputs(self, client: Any, run_id: str, report: Report) -> None:
        from mlflow.entities import DatasetInput, InputTag

        inputs = []
        for context, description in (("evaluation", report.data), ("training", report.train_data)):
            if description is None:
                continue
            dataset = _dataset(description)
            tags = [InputTag("mlflow.data.context", context)]
            inputs.append(DatasetInput(dataset._to_mlflow_entity(), tags=tags))
        if inputs:
            client.log_inputs(run_id, datasets=inputs)

    def _log_files(
        self, client: Any, run_id: str, report: Report, out: str | Path | None, policy: Any
    ) -> None:
        with tempfile.TemporaryDirectory(prefix="roadworthy-mlflow-") as tmp:
            folder = Path(out) if out is not None else Path(tmp)
            if out is None:
                from roadworthy.report import write_reports

                write_reports(report, folder)
            for name in REPORT_FILES:
                if (folder / name).exists():
                    client.log_artifact(run_id, str(folder / name), artifact_path=ARTIFACT_DIR)
            if policy is not None:
                path = Path(tmp) / "policy.yaml"
                path.write_text(policy_yaml(policy), encoding="utf-8")
                client.log_artifact(run_id, str(path), artifact_path=ARTIFACT_DIR)

    def _tag_model(self, client: Any, source: ModelSource, run_id: str, report: Report) -> None:
        tags = {
            "roadworthy.verdict": report.verdict,
            "roadworthy.ready": "1" if report.verdict == "ready" else "0",
            "roadworthy.run_id": run_id,
            "roadworthy.report": f"runs:/{run_id}/{ARTIFACT_DIR}/report.json",
        }
        if source.name and source.version:
            for key, value in tags.items():
                client.set_model_version_tag(source.name, source.version, key, value)
        elif source.model_id:
            client.set_logged_model_tags(source.model_id, tags)


def _refuse_second_report(run: Any) -> None:
    """Refuse a run that already holds a roadworthy report: its values would mix with this one's."""
    verdict = run.data.tags.get("roadworthy.verdict")
    if verdict is not None or "roadworthy.ready" in run.data.metrics:
        raise InvalidInputError(
            f"MLflow run {run.info.run_id} already holds a roadworthy report (verdict {verdict or 'unknown'}); "
            "two reports in one run would mix their metrics under one verdict: log into a new run"
        )


def _dataset_identity(description: Any) -> tuple[str | None, str | None]:
    if description is None:
        return None, None
    name = Path(str(description.path)).name if description.path else "data"
    digest = (description.sha256 or "")[:36] or None
    return (name, digest) if digest else (None, None)


def _dataset(description: Any) -> Any:
    """An MLflow dataset for a report's data description: named after its file, digest from its sha256."""
    from mlflow.data.code_dataset_source import CodeDatasetSource
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset

    name, digest = _dataset_identity(description)
    if description.path:
        try:
            source = resolve_dataset_source(str(Path(description.path).resolve()))
        except Exception:  # noqa: BLE001 - an unusual path: fall back to a source without location
            source = CodeDatasetSource(tags={"path": str(description.path)})
    else:
        source = CodeDatasetSource(tags={"origin": "in-memory arrays"})
    return MetaDataset(source=source, name=name or "data", digest=digest)


def policy_yaml(policy: Any) -> str:
    """The effective policy as YAML a ``--policy`` option reads back."""
    import yaml

    body = {
        "gates": [g.text for g in policy.gates],
        "black_box_gates": [g.text for g in policy.black_box_gates],
        "reference_gates": [g.text for g in policy.reference_gates],
        "tabular_gates": [g.text for g in getattr(policy, "tabular_gates", [])],
        "baseline": {"max_drop": policy.max_drop},
        "fail_on_unevaluated": policy.fail_on_unevaluated,
        "fail_on_error": policy.fail_on_error,
    }
    return f"# effective policy (from: {policy.source})\n" + yaml.safe_dump(body, sort_keys=False)


def baseline_file(baseline: str | Path) -> str:
    """A local ``report.json`` for ``--baseline``: the path itself, or the report logged in MLflow.

    ``runs:/<id>`` reads ``roadworthy/report.json`` of that run (``runs:/<id>/<path>`` a given
    artifact); ``models:/<name>/<version>``, ``models:/<name>@<alias>`` and logged models read the
    report of the run that checked that model (its ``roadworthy.run_id`` tag), else of the run that
    produced it.

    Raises
    ------
    InvalidInputError
        No such run or model, or no report in it.
    """
    text = str(baseline)
    if not is_mlflow_uri(text):
        return text
    check_tracking(f"--baseline {text}")
    import mlflow
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    if text.startswith("runs:/"):
        run_id, _, path = text.removeprefix("runs:/").partition("/")
        candidates = [(run_id, path if path.endswith(".json") else f"{path or ARTIFACT_DIR}/report.json")]
    else:
        source = resolve(text)
        tags: dict[str, str] = {}
        with mlflow_calls():
            if source.name and source.version:
                tags = client.get_model_version(source.name, source.version).tags or {}
            elif source.model_id:
                tags = client.get_logged_model(source.model_id).tags or {}
        runs = [tags.get("roadworthy.run_id"), source.run_id]
        candidates = [(r, f"{ARTIFACT_DIR}/report.json") for r in dict.fromkeys(runs) if r]
    tried = []
    for run_id, path in candidates:
        try:
            with mlflow_calls():
                return mlflow.artifacts.download_artifacts(
                    artifact_uri=f"runs:/{run_id}/{path}",
                    dst_path=tempfile.mkdtemp(prefix="roadworthy-baseline-"),
                )
        except Exception as exc:  # noqa: BLE001 - MlflowException or transport error: try the next run
            tried.append(f"runs:/{run_id}/{path} ({_first_line(exc)[:120]})")
    raise InvalidInputError(
        f"--baseline {text}: no roadworthy report found; tried {'; '.join(tried) or 'no run'}. "
        "Check the deployed model with --mlflow once to create it"
    )


def log_to_mlflow(report: Report, out: str | Path | None = None, run_name: str | None = None) -> str:
    """Log ``report`` to MLflow's current experiment (or active run); return the run id.

    The short form of ``MlflowTracker(run_name=run_name)``: preflight, then :meth:`MlflowTracker.log`.
    """
    tracker = MlflowTracker(run_name=run_name)
    tracker.preflight()
    return tracker.log(report, out)


def _first_line(exc: BaseException) -> str:
    from roadworthy.models._common import first_line

    return first_line(exc, 300)
