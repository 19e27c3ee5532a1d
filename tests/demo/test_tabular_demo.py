"""`roadworthy demo --tabular`: the planted unit-drift weakness is ranked first, every suite runs or says why."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from roadworthy.demo.tabular import PLANTED_FEATURE, USED_FEATURES, load_tabular_demo


def test_tabular_demo_data_and_model() -> None:
    demo = load_tabular_demo()
    assert demo.train.modality == demo.test.modality == "tabular"
    assert demo.train.n_samples + demo.test.n_samples == 569 and demo.test.x.shape[1] == 30
    assert set(USED_FEATURES) <= set(demo.test.feature_names) and demo.planted_feature == PLANTED_FEATURE
    acc = float(np.mean(demo.model.predict(demo.test.x).argmax(axis=1) == demo.test.y))
    assert acc > 0.85
    # the planted weakness: the same rows with worst radius recorded 2.54 times larger lose accuracy
    j = demo.test.feature_names.index(PLANTED_FEATURE)
    drifted = demo.test.x.copy()
    drifted[:, j] *= 2.54
    assert float(np.mean(demo.model.predict(drifted).argmax(axis=1) == demo.test.y)) < acc - 0.2


@pytest.fixture(scope="module")
def tabular_run(tmp_path_factory) -> Path:
    from roadworthy.cli import app

    out = tmp_path_factory.mktemp("tabular_demo")
    result = CliRunner().invoke(app, ["demo", "--tabular", "--out", str(out)], catch_exceptions=False)
    assert "report.html" in result.output, result.output[-2000:]
    return out


def test_tabular_demo_ranks_the_planted_feature_first(tabular_run: Path) -> None:
    report = json.loads((tabular_run / "report.json").read_text())
    checks = {c["id"]: c for c in report["checks"]}
    assert not [cid for cid, c in checks.items() if c["status"] == "error"]
    sens = checks["shift.tab_feature_sensitivity"]["details"]
    assert sens["top_feature"] == PLANTED_FEATURE
    assert sens["ranking"][0]["drop"] > sens["ranking"][1]["drop"] + 0.1
    # the pipeline does not impute: missing values are reported as unsupported, not a crash
    missing = checks["shift.tab_missing_values"]
    assert missing["details"]["supported"] is False and "NaN" in missing["details"]["reason"]
    # every suite ran something on the table, or (fuzz) says in every check why it does not apply
    by_suite: dict[str, list[dict]] = {}
    for c in report["checks"]:
        by_suite.setdefault(c["suite"], []).append(c)
    for suite, cs in by_suite.items():
        ran = [c for c in cs if c["status"] != "skipped"]
        assert ran or all(c["summary"].startswith("Skipped:") for c in cs), suite
    for suite in ("sanity", "clean", "shift", "ood", "attack", "integrity"):
        assert any(c["status"] != "skipped" for c in by_suite[suite]), suite
    ood = {c["id"] for c in by_suite["ood"] if c["status"] != "skipped"}
    assert {"ood.input_mahalanobis", "ood.input_knn", "ood.isolation_forest", "ood.summary"} <= ood
    md = (tabular_run / "report.md").read_text()
    assert PLANTED_FEATURE in md
