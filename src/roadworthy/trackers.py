"""Experiment-tracker logging: a report's metrics, verdict and files into MLflow.

Optional (``pip install 'roadworthy[mlflow]'``). The run goes to ``MLFLOW_TRACKING_URI`` (MLflow's
own default is ``./mlruns``); an active run is reused, else a new one is started and ended.
"""

from __future__ import annotations

import math
from pathlib import Path

from roadworthy.errors import require
from roadworthy.results import Report


def log_to_mlflow(report: Report, out: str | Path | None = None, run_name: str | None = None) -> str:
    """Log metrics (finite ones), parameters, the verdict and the report files; return the run id."""
    mlflow = require("mlflow", "mlflow", "--mlflow logging")
    active = mlflow.active_run()
    run = active or mlflow.start_run(
        run_name=run_name or f"roadworthy {report.model.path or report.model.format}"
    )
    try:
        mlflow.log_params(
            {
                "roadworthy.version": report.tool.version,
                "roadworthy.budget": report.budget,
                "roadworthy.seed": report.seed,
                "roadworthy.model_sha256": report.model.sha256 or "",
                "roadworthy.data_sha256": report.data.sha256 or "",
            }
        )
        finite = {k: float(v) for k, v in report.metrics.items() if v is not None and math.isfinite(v)}
        mlflow.log_metrics(finite)
        mlflow.set_tags(
            {
                "roadworthy.verdict": report.verdict,
                "roadworthy.failed_gates": "; ".join(g.rule for g in report.gates if g.passed is False)[
                    :5000
                ],
            }
        )
        if out is not None:
            for name in ("report.json", "report.html", "report.md", "junit.xml"):
                path = Path(out) / name
                if path.exists():
                    mlflow.log_artifact(str(path), artifact_path="roadworthy")
        return str(run.info.run_id)
    finally:
        if active is None:
            mlflow.end_run()
