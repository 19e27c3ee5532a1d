"""`roadworthy demo` end to end: every suite on the road-sign model, the four files, the planted poisoning
found; and the same verdict and accuracies on generic CPU kernels."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.demo.kernels import generic_env, running_generic

#: how far an accuracy may move between CPUs (README, "Reproducibility")
ACCURACY_TOLERANCE = 0.01


def _demo(out: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).parent / "roadworthy"
    return subprocess.run(
        [str(exe), "demo", "--out", str(out)], capture_output=True, text=True, timeout=1200, env=env
    )


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """The quick demo report made in this process's environment (native kernels under `make test`)."""
    out = tmp_path_factory.mktemp("demo")
    return out, _demo(out)


@pytest.mark.slow
def test_demo_end_to_end(demo_run):
    tmp_path, proc = demo_run
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


@pytest.mark.slow
def test_generic_cpu_kernels_give_the_same_verdict_and_accuracies(demo_run, tmp_path):
    """The README's reproducibility promise, checked the one way a single machine can: the quick demo
    report again with NumPy, OpenCV and torch on generic kernels (the rounding of another CPU) has the
    same verdict and every accuracy within ACCURACY_TOLERANCE. The whole quick demo, not a subset of
    suites: the shifts, attacks and integrity checks are where rounding could tip a verdict."""
    if running_generic():
        pytest.skip("this run is on generic kernels already; the normal leg (`make test`) compares them")
    native_out, native_proc = demo_run
    assert native_proc.returncode == 0, native_proc.stderr[-2000:]
    proc = _demo(tmp_path, env=generic_env())
    assert proc.returncode == 0, proc.stderr[-2000:]
    native = json.loads((native_out / "report.json").read_text())
    generic = json.loads((tmp_path / "report.json").read_text())

    assert generic["verdict"] == native["verdict"]
    assert [g["passed"] for g in generic["gates"]] == [g["passed"] for g in native["gates"]]
    accuracies = sorted(k for k in native["metrics"] if k.endswith("accuracy"))
    assert "clean.accuracy" in accuracies and len(accuracies) > 10
    assert sorted(k for k in generic["metrics"] if k.endswith("accuracy")) == accuracies
    off = {
        k: (native["metrics"][k], generic["metrics"][k])
        for k in accuracies
        if abs(native["metrics"][k] - generic["metrics"][k]) > ACCURACY_TOLERANCE
    }
    assert not off, off


def test_makefile_sets_the_same_generic_kernels() -> None:
    from tests.demo.kernels import GENERIC_KERNELS

    makefile = (Path(__file__).parents[2] / "Makefile").read_text(encoding="utf-8")
    for key, value in GENERIC_KERNELS.items():
        assert f'{key}="{value}"' in makefile or f"{key}={value} " in makefile, key
