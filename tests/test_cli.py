"""The command line: exit codes and the one-line messages, on real files of a real model."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from roadworthy.cli import main


def run(args: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in args])
    out, err = capsys.readouterr()
    return int(exc.value.code or 0), out, err


@pytest.fixture(scope="module")
def files(tmp_path_factory, digits_module, digits_split):
    import torch

    d = tmp_path_factory.mktemp("cli")
    _, _, x_te, y_te = digits_split
    np.savez(d / "test.npz", x=(x_te[:200, 0] * 255).round().astype(np.uint8), y=y_te[:200])
    ts = torch.jit.trace(digits_module, torch.from_numpy(x_te[:2]))
    torch.jit.save(ts, str(d / "model.pt"))
    return d


def test_check_writes_four_files_and_exits_0_when_ready(files, tmp_path, capsys):
    policy = tmp_path / "p.yaml"
    policy.write_text("gates:\n  - clean.accuracy >= 0.5\n  - sanity.determinism >= 1\n")
    code, out, err = run(
        [
            "check",
            "--model",
            files / "model.pt",
            "--data",
            files / "test.npz",
            "--suite",
            "clean",
            "--budget",
            "quick",
            "--policy",
            policy,
            "--out",
            tmp_path / "r",
        ],
        capsys,
    )
    assert code == 0, err
    assert "roadworthy: READY" in out and str(tmp_path / "r" / "report.html") in out
    assert {p.name for p in (tmp_path / "r").iterdir()} == {
        "report.json",
        "report.html",
        "report.md",
        "junit.xml",
    }
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["verdict"] == "ready" and report["model"]["format"] == "torchscript"
    assert report["metrics"]["clean.accuracy"] > 0.9
    assert report["data"]["n_samples"] == 200 and report["data"]["input_shape"] == [1, 16, 16]


def test_failing_gate_exits_1(files, tmp_path, capsys):
    policy = tmp_path / "p.yaml"
    policy.write_text("gates:\n  - clean.accuracy >= 0.999\n")
    code, out, _ = run(
        [
            "check",
            "-m",
            files / "model.pt",
            "-d",
            files / "test.npz",
            "-s",
            "clean",
            "--budget",
            "quick",
            "--policy",
            policy,
            "--out",
            tmp_path / "r",
        ],
        capsys,
    )
    assert code == 1 and "NOT READY" in out and "clean.accuracy >= 0.999" in out
    junit = (tmp_path / "r" / "junit.xml").read_text()
    assert 'failures="1"' in junit


def _one_line_error(code: int, err: str) -> str:
    assert code == 2, err
    lines = [ln for ln in err.strip().splitlines() if ln]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def test_missing_model_file(files, tmp_path, capsys):
    code, _, err = run(["check", "-m", tmp_path / "nope.onnx", "-d", files / "test.npz"], capsys)
    assert "nope.onnx" in _one_line_error(code, err)


def test_truncated_model(files, tmp_path, capsys):
    bad = tmp_path / "model.pt"
    bad.write_bytes((files / "model.pt").read_bytes()[:300])
    code, _, err = run(["check", "-m", bad, "-d", files / "test.npz"], capsys)
    assert "model.pt" in _one_line_error(code, err)


def test_labels_outside_the_models_classes(files, tmp_path, capsys):
    data = dict(np.load(files / "test.npz"))
    data["y"] = data["y"].copy()
    data["y"][0] = 42
    np.savez(tmp_path / "bad.npz", **data)
    code, _, err = run(["check", "-m", files / "model.pt", "-d", tmp_path / "bad.npz"], capsys)
    line = _one_line_error(code, err)
    assert "bad.npz" in line and "42" in line and "[0, 10)" in line


def test_nan_values(files, tmp_path, capsys):
    x = np.load(files / "test.npz")["x"].astype(np.float32) / 255
    x[3, 2, 2] = np.nan
    np.savez(tmp_path / "nan.npz", x=x, y=np.load(files / "test.npz")["y"])
    code, _, err = run(["check", "-m", files / "model.pt", "-d", tmp_path / "nan.npz"], capsys)
    line = _one_line_error(code, err)
    assert "nan.npz" in line and "NaN" in line


def test_shape_mismatch(files, tmp_path, capsys):
    np.savez(tmp_path / "big.npz", x=np.zeros((4, 3, 20, 20), np.uint8), y=np.zeros(4, np.int64))
    code, _, err = run(["check", "-m", files / "model.pt", "-d", tmp_path / "big.npz"], capsys)
    assert "big.npz" in _one_line_error(code, err)


def test_empty_data(files, tmp_path, capsys):
    np.savez(tmp_path / "empty.npz", x=np.zeros((0, 16, 16), np.uint8), y=np.zeros(0, np.int64))
    code, _, err = run(["check", "-m", files / "model.pt", "-d", tmp_path / "empty.npz"], capsys)
    assert "empty.npz" in _one_line_error(code, err)


class _Marker:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


def test_pickle_refused_without_trust_and_nothing_runs(files, tmp_path, capsys):
    marker = tmp_path / "pwned"
    (tmp_path / "model.pkl").write_bytes(pickle.dumps(_Marker(str(marker))))
    code, _, err = run(["check", "-m", tmp_path / "model.pkl", "-d", files / "test.npz"], capsys)
    line = _one_line_error(code, err)
    assert "model.pkl" in line and "--trust-pickle" in line
    assert not marker.exists()


def test_bad_usage_exits_2(capsys):
    code, _, err = run(["check", "--model", "m.onnx"], capsys)
    assert code == 2 and "Missing option '--data'" in err
    code, _, err = run(["check", "-m", "m", "-d", "d", "--budget", "huge"], capsys)
    assert code == 2 and "huge" in err


def test_bad_policy_exits_2(files, tmp_path, capsys):
    policy = tmp_path / "p.yaml"
    policy.write_text("gates:\n  - clean.accuracy is high\n")
    code, _, err = run(
        ["check", "-m", files / "model.pt", "-d", files / "test.npz", "--policy", policy], capsys
    )
    assert "METRIC OP NUMBER" in _one_line_error(code, err)


def test_render_compare_init_list(files, tmp_path, capsys):
    code, _, _ = run(
        [
            "check",
            "-m",
            files / "model.pt",
            "-d",
            files / "test.npz",
            "-s",
            "clean",
            "--budget",
            "quick",
            "--out",
            tmp_path / "a",
        ],
        capsys,
    )
    assert code in (0, 1)
    for name in ("report.html", "report.md", "junit.xml"):
        (tmp_path / "a" / name).unlink()
    code, out, _ = run(["render", tmp_path / "a" / "report.json", "--out", tmp_path / "b"], capsys)
    assert code == 0 and {p.name for p in (tmp_path / "b").iterdir()} == {
        "report.html",
        "report.md",
        "junit.xml",
    }

    old = json.loads((tmp_path / "a" / "report.json").read_text())
    worse = json.loads(json.dumps(old))
    worse["metrics"]["clean.accuracy"] -= 0.1
    (tmp_path / "old.json").write_text(json.dumps(old))
    (tmp_path / "new.json").write_text(json.dumps(worse))
    code, out, _ = run(["compare", tmp_path / "old.json", tmp_path / "new.json"], capsys)
    assert code == 1 and "clean.accuracy" in out and "-0.1000" in out
    code, out, _ = run(["compare", tmp_path / "old.json", tmp_path / "old.json"], capsys)
    assert code == 0 and "No accuracy metric dropped" in out

    code, _, err = run(["render", tmp_path / "missing.json"], capsys)
    assert "missing.json" in _one_line_error(code, err)

    code, out, _ = run(["init", "--out", tmp_path / "roadworthy.yaml"], capsys)
    assert code == 0 and (tmp_path / "roadworthy.yaml").read_text().startswith("# roadworthy policy")
    code, _, err = run(["init", "--out", tmp_path / "roadworthy.yaml"], capsys)
    assert "--force" in _one_line_error(code, err)

    code, out, _ = run(["list"], capsys)
    assert code == 0 and "clean.accuracy" in out and "sanity.determinism" in out


def test_baseline_comparison_gates(files, tmp_path, capsys):
    run(
        [
            "check",
            "-m",
            files / "model.pt",
            "-d",
            files / "test.npz",
            "-s",
            "clean",
            "--budget",
            "quick",
            "--out",
            tmp_path / "base",
        ],
        capsys,
    )
    base = json.loads((tmp_path / "base" / "report.json").read_text())
    base["metrics"]["clean.accuracy"] = 1.5  # an impossible baseline: any real run drops below it
    (tmp_path / "base.json").write_text(json.dumps(base))
    policy = tmp_path / "p.yaml"
    policy.write_text("gates: []\n")
    code, _, _ = run(
        [
            "check",
            "-m",
            files / "model.pt",
            "-d",
            files / "test.npz",
            "-s",
            "clean",
            "--budget",
            "quick",
            "--policy",
            policy,
            "--baseline",
            tmp_path / "base.json",
            "--out",
            tmp_path / "new",
        ],
        capsys,
    )
    assert code == 1
    report = json.loads((tmp_path / "new" / "report.json").read_text())
    failed = [g for g in report["gates"] if g["passed"] is False]
    assert [g["source"] for g in failed] == ["baseline"] and failed[0]["metric"] == "clean.accuracy"


def test_console_script_entry_point(files, tmp_path):
    """The installed `roadworthy` script itself, in a subprocess (plain progress, no TTY)."""
    exe = Path(sys.executable).parent / "roadworthy"
    proc = subprocess.run(
        [str(exe), "check", "-m", str(files / "model.pt"), "-d", str(tmp_path / "none.npz")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and proc.stderr.startswith("roadworthy: error:") and "none.npz" in proc.stderr


def test_python_api_accepts_arrays_and_names_bad_ones(digits_module, digits_split):
    import roadworthy
    from roadworthy.errors import InvalidInputError

    _, _, x, y = digits_split
    report = roadworthy.check(digits_module, (x[:100], y[:100]), suites=["clean"], budget="quick")
    assert report.data.n_samples == 100 and report.metrics["clean.accuracy"] > 0.9
    bad = x[:100].copy()
    bad[5, 0, 1, 1] = np.inf
    with pytest.raises(
        InvalidInputError, match=r"data: x contains 1 NaN or infinite values \(first at index 5\)"
    ):
        roadworthy.check(digits_module, (bad, y[:100]), suites=["clean"], budget="quick")
    with pytest.raises(InvalidInputError, match=r"Found 0\.5 at index 0"):
        roadworthy.check(digits_module, (x[:2], np.array([0.5, 1.0])), suites=["clean"], budget="quick")


def test_bad_mean_option_is_a_one_line_error(files, capsys):
    code, _, err = run(
        ["check", "-m", files / "model.pt", "-d", files / "test.npz", "--mean", "0.5,abc"], capsys
    )
    assert "--mean must be comma-separated numbers" in _one_line_error(code, err)
