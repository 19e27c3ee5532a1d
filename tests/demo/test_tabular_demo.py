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
    result = CliRunner().invoke(
        app,
        ["demo", "--tabular", "--strict", "--out", str(out)],
        catch_exceptions=False,
        standalone_mode=False,
    )
    assert "report.html" in result.output, result.output[-2000:]
    (out / "exit_code").write_text(str(result.return_value))  # what `roadworthy` exits with
    return out


def test_tabular_demo_is_not_ready_because_of_its_planted_weakness(tabular_run: Path) -> None:
    """The default policy's tabular gates fail the demo (exit 1 under --strict) on the planted reliance."""
    assert (tabular_run / "exit_code").read_text() == "1"
    report = json.loads((tabular_run / "report.json").read_text())
    assert report["verdict"] == "not-ready"
    failed = [g["metric"] for g in report["gates"] if g["passed"] is False]
    assert failed == ["shift.tab_feature_sensitivity.max_drop"]
    evaluated = {g["metric"] for g in report["gates"] if g["passed"] is not None}
    assert {
        "attack.tab_score.eps_0.10000.robust_accuracy",
        "attack.tab_boundary.eps_0.10000.robust_accuracy",
    } <= evaluated


def test_a_robust_tabular_model_passes_the_default_tabular_gates() -> None:
    """A random forest on every column of the same table: no single column's unit drift breaks it."""
    from sklearn.ensemble import RandomForestClassifier

    import roadworthy
    from roadworthy.models.sklearn import SklearnModel

    demo = load_tabular_demo()
    forest = RandomForestClassifier(n_estimators=200, max_features=0.3, random_state=0)
    model = SklearnModel(forest.fit(demo.train.x, demo.train.y))
    report = roadworthy.check(
        model, demo.test, train_data=demo.train, suites=["clean", "shift", "attack"], budget="quick"
    )
    tab = [g for g in report.gates if g.metric and g.metric.startswith(("shift.tab_", "attack.tab_"))]
    assert len(tab) >= 3 and all(g.passed for g in tab), [(g.rule, g.value) for g in tab]
    assert report.verdict == "ready", [(g.rule, g.value) for g in report.gates if g.passed is False]


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


def test_every_suite_of_the_tabular_report_runs_or_says_why_not_and_no_section_is_empty(
    tabular_run: Path,
) -> None:
    """The issue's target over the whole demo report: each check that ran has numbers or says why it does
    not apply to this table; each skipped check gives its reason; every suite section of report.html shows
    each of its checks with that text, so no section is empty."""
    import html
    import itertools
    import re

    report = json.loads((tabular_run / "report.json").read_text())
    page = (tabular_run / "report.html").read_text()
    suites: dict[str, list[dict]] = {}
    for c in report["checks"]:
        suites.setdefault(c["suite"], []).append(c)
        if c["status"] == "skipped":
            assert re.match(r"Skipped: \S.{8,}", c["summary"]), (c["id"], c["summary"])
        elif not c["metrics"]:
            # ran without a number: only when it says why (not applicable, or unsupported by the model)
            reason = c["details"].get("reason") or ""
            assert c["summary"].startswith("Not applicable") or reason, (c["id"], c["summary"])
        else:
            assert c["summary"].strip(), c["id"]
    assert set(suites) >= {"sanity", "clean", "shift", "ood", "attack", "fuzz", "parity", "integrity"}
    heads = [m.start() for m in re.finditer(r'<h2 id="suite-', page)] + [page.index('id="provenance"')]
    sections = {
        re.match(r'<h2 id="suite-([a-z_]+)"', page[a:]).group(1): page[a:b]
        for a, b in itertools.pairwise(heads)
    }
    assert set(sections) == set(suites)
    for suite, checks in suites.items():
        text = html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", sections[suite])))
        for c in checks:
            assert c["id"] in text and " ".join(c["summary"].split())[:60] in text, (suite, c["id"])
        if all(c["status"] == "skipped" for c in checks):  # a suite that does not apply says why, per check
            assert "Skipped:" in text, suite
    # the suites that cannot apply to this scikit-learn table say so with their reason
    assert all("needs image data" in c["summary"] for c in suites["fuzz"])
    assert all("--reference-model" in c["summary"] for c in suites["parity"])


def test_a_policy_one_hot_group_that_the_data_breaks_is_refused_before_the_run(tmp_path: Path) -> None:
    """The policy's ``schema: one_hot:`` is checked against the data before anything runs (the CLI turns
    this error into exit 2 and one line)."""
    import roadworthy
    from roadworthy.errors import InvalidInputError

    demo = load_tabular_demo()
    names = list(demo.train.feature_names)
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"schema:\n  one_hot: [[{names[0]!r}, {names[1]!r}]]\n")
    with pytest.raises(InvalidInputError, match=r"one_hot\[0\]: row \d+ of the data is not one-hot"):
        roadworthy.check(
            demo.model, demo.test, train_data=demo.train, suites=["clean"], budget="quick", policy=bad
        )
