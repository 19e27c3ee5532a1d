"""`roadworthy demo` end to end: every suite on the road-sign model, the four files, the planted poisoning found."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
def test_demo_end_to_end(tmp_path):
    exe = Path(sys.executable).parent / "roadworthy"
    proc = subprocess.run(
        [str(exe), "demo", "--out", str(tmp_path)], capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "roadworthy: NOT READY" in proc.stdout and str(tmp_path / "report.html") in proc.stdout
    assert {p.name for p in tmp_path.iterdir()} == {"report.json", "report.html", "report.md", "junit.xml"}

    report = json.loads((tmp_path / "report.json").read_text())
    suites = {c["suite"] for c in report["checks"] if c["status"] != "skipped"}
    assert {"sanity", "clean", "shift", "ood", "attack", "integrity"} <= suites
    assert not [c["id"] for c in report["checks"] if c["status"] == "error"]
    m = report["metrics"]
    assert m["clean.accuracy"] >= 0.95 and m["clean.accuracy_n"] == 1000
    assert m["sanity.determinism"] == 1 and m["sanity.batch_invariance"] == 1
    assert 0 < m["shift.mean_accuracy"] < m["clean.accuracy"]
    assert m["attack.pgd_linf.robust_accuracy"] < m["attack.fgsm.robust_accuracy"] + 1e-9

    # the article's poisoning: stop signs labelled speed_limit_30 are found and the class is named
    from roadworthy.demo import load_demo_data

    poisoned = set(load_demo_data(seed=0).poisoned_indices.tolist())
    flagged = next(c for c in report["checks"] if c["id"] == "integrity.label_issues")["details"]["indices"]
    assert len(poisoned & set(flagged)) >= 0.8 * len(poisoned)
    poisoning = next(c for c in report["checks"] if c["id"] == "integrity.poisoning")
    assert poisoning["details"]["suspect_classes"] == ["speed_limit_30"]
    failed = [g["rule"] for g in report["gates"] if g["passed"] is False]
    assert failed == ["integrity.poisoning.suspect_count <= 0"]
