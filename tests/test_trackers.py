"""MLflow logging against a real tracking server (SQLite backend, started once per session).

What a deployment pipeline reads back is asserted through MLflow's own client: metrics (names MLflow
accepts), one metric per gate, the numeric verdict, parameters, the report files and the policy as
artifacts, datasets as run inputs, and the registered model version tagged with the verdict. The
refusals (a second report into one run, a dead server, MLflow 3's file store) are one line and exit 2
before any model is loaded; the pipeline runs end to end: registry model -> check -> log -> alias.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

import roadworthy
from roadworthy.errors import InvalidInputError, MissingDependencyError
from roadworthy.report import write_reports
from roadworthy.trackers import MlflowTracker, log_to_mlflow, mlflow_metric_name
from tests._mlflow import free_port, needs_mlflow, run_cli, tracking_uri, write_npz
from tests.report._fixtures import fixed_report

POLICY = "gates:\n  - clean.accuracy >= 0.5\n  - sanity.determinism >= 1\n"


def test_metric_names_mlflow_refuses_are_rewritten():
    assert mlflow_metric_name("clean.accuracy") == "clean.accuracy"
    assert mlflow_metric_name("plugin.top@k=5 (%)") == "plugin.top_k_5 ___"
    assert mlflow_metric_name("a/b:c") == "a_b_c"  # the same key on every platform
    assert mlflow_metric_name("..") == "metric___" and len(mlflow_metric_name("x" * 400)) == 250


def test_missing_mlflow_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # mlflow not installed
    with pytest.raises(MissingDependencyError, match=r"roadworthy\[mlflow\]"):
        MlflowTracker().preflight()


def test_tracker_from_the_api_option():
    assert MlflowTracker.coerce(None) is None and MlflowTracker.coerce(False) is None
    assert MlflowTracker.coerce({"experiment": "gate"}).experiment == "gate"
    with pytest.raises(InvalidInputError, match=r"unknown key.*expriment"):
        MlflowTracker.coerce({"expriment": "gate"})


# -- against the real server ------------------------------------------------------------------------


@pytest.fixture()
def client(mlflow_server):
    from mlflow import MlflowClient

    return MlflowClient()


@pytest.mark.slow
def test_python_api_logs_what_a_pipeline_reads(client, digits_module, digits_split, tmp_path):
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    data = write_npz(tmp_path / "eval.npz", digits_split, 150)
    tracker = MlflowTracker(experiment="api-gate", run_name="candidate", tags={"ci.job": "42"})
    report = roadworthy.check(
        digits_module, str(data), suites=["clean"], budget="quick", policy=str(policy),
        out=tmp_path / "r", mlflow=tracker,
    )  # fmt: skip
    run = client.get_run(tracker.logged_run_id)
    assert run.info.run_name == "candidate" and run.info.status == "FINISHED"
    assert client.get_experiment(run.info.experiment_id).name == "api-gate"
    metrics, tags, params = run.data.metrics, run.data.tags, run.data.params
    measured = {k for k, v in report.metrics.items() if v is not None}
    assert measured <= set(metrics)  # every measured metric, none lost
    assert metrics["clean.accuracy"] == pytest.approx(report.metrics["clean.accuracy"])
    assert metrics["roadworthy.ready"] == (1.0 if report.verdict == "ready" else 0.0)
    assert metrics["gate.1.passed"] == 1.0 and metrics["gate.1.value"] == pytest.approx(
        report.metrics["clean.accuracy"]
    )
    assert tags["roadworthy.gate.1"].startswith("clean.accuracy >= 0.5: passed")
    assert tags["roadworthy.verdict"] == report.verdict and tags["ci.job"] == "42"
    assert params["roadworthy.budget"] == "quick" and params["roadworthy.data_sha256"] == report.data.sha256
    files = {f.path for f in client.list_artifacts(run.info.run_id, "roadworthy")}
    assert {
        f"roadworthy/{n}" for n in ("report.json", "report.html", "report.md", "junit.xml", "policy.yaml")
    } <= files
    logged_policy = client.download_artifacts(run.info.run_id, "roadworthy/policy.yaml", str(tmp_path))
    assert "- clean.accuracy >= 0.5" in Path(logged_policy).read_text()
    (dataset_input,) = run.inputs.dataset_inputs
    assert dataset_input.dataset.name == "eval.npz" and report.data.sha256.startswith(
        dataset_input.dataset.digest
    )
    assert {t.key: t.value for t in dataset_input.tags}["mlflow.data.context"] == "evaluation"


@pytest.mark.slow
def test_odd_metric_names_are_accepted_by_the_real_server(client, tmp_path):
    report = fixed_report()
    report.metrics["plugin.top@k=5"] = 0.5
    report.metrics["plugin.top_k_5"] = 0.25  # collides with the rewritten name above
    report.metrics["shift.ece"] = None
    write_reports(report, tmp_path)
    run_id = log_to_mlflow(report, tmp_path)
    run = client.get_run(run_id)
    assert run.data.metrics["plugin.top_k_5"] == 0.25
    renamed = [k for k, v in run.data.metrics.items() if v == 0.5 and k.startswith("plugin.top_k_5_")]
    assert len(renamed) == 1  # kept apart, not overwritten
    names = json.loads(
        Path(client.download_artifacts(run_id, "roadworthy/metric_names.json", str(tmp_path))).read_text()
    )
    assert names == {"plugin.top@k=5": renamed[0]}
    assert "shift.ece" in run.data.tags["roadworthy.unmeasured_metrics"]
    assert (
        run.data.metrics["gate.2.passed"] == 0.0 and "gate.3.passed" not in run.data.metrics
    )  # not evaluated
    assert run.data.metrics["roadworthy.ready"] == 0.0


@pytest.mark.slow
def test_a_second_report_into_one_run_is_refused(client, tmp_path):
    import mlflow

    report = fixed_report()
    run = client.create_run(client.get_experiment_by_name("Default").experiment_id)
    MlflowTracker(run_id=run.info.run_id).log(report, None)
    with pytest.raises(InvalidInputError, match=r"already holds a roadworthy report \(verdict not-ready\)"):
        MlflowTracker(run_id=run.info.run_id).preflight()
    with mlflow.start_run():  # the Python API inside an active run: the same refusal, the second time
        log_to_mlflow(report)
        with pytest.raises(InvalidInputError, match="already holds a roadworthy report"):
            log_to_mlflow(report)


@pytest.mark.slow
def test_cli_refuses_a_dead_server_in_seconds_before_loading_the_model(tmp_path, capsys, digits_split):
    needs_mlflow()
    data = write_npz(tmp_path / "t.npz", digits_split, 20)
    with tracking_uri(f"http://127.0.0.1:{free_port()}"):
        start = time.monotonic()
        code, _, err = run_cli(
            [
                "check",
                "--model",
                tmp_path / "no-such-model.pt",
                "--data",
                data,
                "--mlflow",
                "--out",
                tmp_path / "r",
            ],
            capsys,
        )
    assert code == 2 and time.monotonic() - start < 15
    assert err.count("\n") == 1 and "not reachable" in err and "no-such-model" not in err
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_cli_refuses_the_file_store_with_one_line(tmp_path, capsys, digits_split, monkeypatch):
    needs_mlflow()
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    data = write_npz(tmp_path / "t.npz", digits_split, 20)
    with tracking_uri((tmp_path / "mlruns").as_uri()):
        code, _, err = run_cli(
            ["check", "--model", "m.pt", "--data", data, "--mlflow-experiment", "x"], capsys
        )
    assert code == 2 and err.count("\n") == 1 and "MLFLOW_ALLOW_FILE_STORE=true" in err


@pytest.mark.slow
def test_logging_that_fails_after_the_run_prints_the_verdict_then_exits_3(
    mlflow_server, tmp_path, capsys, digits_module, digits_split, monkeypatch
):
    import torch

    model = tmp_path / "model.pt"
    torch.jit.save(torch.jit.trace(digits_module, torch.from_numpy(digits_split[2][:2])), str(model))
    data = write_npz(tmp_path / "t.npz", digits_split, 100)

    def server_gone(*args, **kwargs):  # what MLflow raises when the server dies during the run
        from mlflow.exceptions import MlflowException

        raise MlflowException(
            "API request to endpoint /api/2.0/mlflow/runs/create failed: connection refused"
        )

    monkeypatch.setattr("mlflow.tracking.MlflowClient.create_run", server_gone)
    code, out, err = run_cli(
        ["check", "--model", model, "--data", data, "--suite", "clean", "--budget", "quick", "--mlflow",
         "--out", tmp_path / "r"],
        capsys,
    )  # fmt: skip
    assert code == 3
    assert "roadworthy: READY" in out or "roadworthy: NOT READY" in out  # the verdict line came first
    assert err.strip().splitlines()[-1].startswith("roadworthy: error: MLflow logging failed after the run")
    assert (tmp_path / "r" / "report.json").exists()


@pytest.mark.slow
def test_pipeline_registry_check_log_promote(client, registered_digits, digits_split, tmp_path, capsys):
    """The CI gate of the README: candidate from the registry, checked against the deployed version's
    report, logged, and promoted (alias) only when ready."""
    import mlflow

    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY + "baseline:\n  max_drop: 0.02\n")
    data = write_npz(tmp_path / "eval.npz", digits_split, 200)
    client.set_registered_model_alias("digits", "champion", registered_digits.version)
    common = ["--data", data, "--suite", "clean", "--budget", "quick", "--policy", policy]

    # the deployed version was checked once when it was deployed: its report is in MLflow
    code, out, err = run_cli(
        ["check", "--model", "models:/digits@champion", *common, "--out", tmp_path / "champion",
         "--mlflow-experiment", "deploy-gate", "--mlflow-run-name", "champion"],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    # a new candidate version arrives in the registry
    candidate = mlflow.register_model(f"models:/{registered_digits.model_id}", "digits")

    code, out, err = run_cli(
        ["check", "--model", f"models:/digits/{candidate.version}", *common, "--baseline", "models:/digits@champion",
         "--out", tmp_path / "candidate", "--mlflow-experiment", "deploy-gate", "--mlflow-run-name", "candidate"],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    run_id = out.split("mlflow run: ")[1].split()[0]
    report = json.loads((tmp_path / "candidate" / "report.json").read_text())
    assert report["baseline"] is not None  # the champion's report came from MLflow
    tags = client.get_model_version("digits", candidate.version).tags
    assert tags["roadworthy.verdict"] == "ready" and tags["roadworthy.run_id"] == run_id
    assert tags["roadworthy.report"] == f"runs:/{run_id}/roadworthy/report.json"
    run = client.get_run(run_id)
    assert run.data.tags["roadworthy.registered_model"] == f"digits/{candidate.version}"

    # the promotion step of the CI job: only a ready version gets the alias
    if tags["roadworthy.ready"] == "1":
        client.set_registered_model_alias("digits", "champion", candidate.version)
    assert client.get_model_version_by_alias("digits", "champion").version == candidate.version
    client.set_registered_model_alias("digits", "champion", registered_digits.version)  # for other tests
