"""MLflow logging, against a recording stand-in for the mlflow module (mlflow itself is an extra)."""

from __future__ import annotations

import sys
import types

import pytest

from roadworthy.errors import MissingDependencyError
from roadworthy.report import write_reports
from roadworthy.trackers import log_to_mlflow
from tests.report._fixtures import fixed_report


class _Recorder(types.ModuleType):
    def __init__(self) -> None:
        super().__init__("mlflow")
        self.calls: dict[str, list] = {}
        self._active = None

    def _rec(self, name, *a, **k):
        self.calls.setdefault(name, []).append((a, k))

    def active_run(self):
        return self._active

    def start_run(self, run_name=None):
        self._rec("start_run", run_name=run_name)
        self._active = types.SimpleNamespace(info=types.SimpleNamespace(run_id="run-123"))
        return self._active

    def end_run(self):
        self._rec("end_run")
        self._active = None

    def log_params(self, p):
        self._rec("log_params", p)

    def log_metrics(self, m):
        self._rec("log_metrics", m)

    def set_tags(self, t):
        self._rec("set_tags", t)

    def log_artifact(self, path, artifact_path=None):
        self._rec("log_artifact", path, artifact_path)


def test_logs_finite_metrics_verdict_and_files(tmp_path, monkeypatch):
    fake = _Recorder()
    monkeypatch.setitem(sys.modules, "mlflow", fake)
    report = fixed_report()
    report.metrics["shift.ece"] = None
    write_reports(report, tmp_path)
    assert log_to_mlflow(report, tmp_path) == "run-123"
    (metrics,), _ = fake.calls["log_metrics"][0]
    assert metrics["clean.accuracy"] == 0.97 and "shift.ece" not in metrics
    (tags,), _ = fake.calls["set_tags"][0]
    assert tags["roadworthy.verdict"] == "not-ready"
    assert "attack.fgsm.robust_accuracy >= 0.1" in tags["roadworthy.failed_gates"]
    logged = sorted(a[0].rsplit("/", 1)[1] for a, _ in fake.calls["log_artifact"])
    assert logged == ["junit.xml", "report.html", "report.json", "report.md"]
    assert "end_run" in fake.calls  # we started the run, so we end it


def test_missing_mlflow_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)
    with pytest.raises(MissingDependencyError, match=r"roadworthy\[mlflow\]"):
        log_to_mlflow(fixed_report())
