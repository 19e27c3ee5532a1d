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


def _clean_run(files, out, *extra) -> list:
    return [
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
        out,
        *extra,
    ]


def test_unknown_metric_in_policy_exits_2_before_the_model_is_loaded(files, tmp_path, capsys):
    policy = tmp_path / "p.yaml"
    policy.write_text("gates:\n  - clean.acuracy >= 0.9\n")
    # the model file does not exist: the policy error must come first
    code, _, err = run(
        ["check", "-m", tmp_path / "none.pt", "-d", files / "test.npz", "--policy", policy], capsys
    )
    line = _one_line_error(code, err)
    assert str(policy) in line and "clean.acuracy >= 0.9" in line and "did you mean clean.accuracy?" in line


def test_quoted_boolean_in_policy_exits_2(files, tmp_path, capsys):
    policy = tmp_path / "p.yaml"
    policy.write_text('gates: []\nfail_on_unevaluated: "false"\n')
    code, _, err = run(
        ["check", "-m", tmp_path / "none.pt", "-d", files / "test.npz", "--policy", policy], capsys
    )
    assert "fail_on_unevaluated must be true or false" in _one_line_error(code, err)


def test_fail_on_unevaluated_names_the_gate_and_fails_it_in_junit(files, tmp_path, capsys):
    policy = tmp_path / "p.yaml"
    policy.write_text(
        "gates:\n  - clean.accuracy >= 0.5\n  - integrity.leakage.count <= 0\nfail_on_unevaluated: true\n"
    )
    code, out, _ = run(_clean_run(files, tmp_path / "r", "--policy", policy), capsys)
    assert code == 1 and "NOT READY" in out
    assert "integrity.leakage.count <= 0 (not measured)" in out and "fail_on_unevaluated" in out
    junit = (tmp_path / "r" / "junit.xml").read_text()
    assert 'failures="1"' in junit and "fail_on_unevaluated" in junit


def test_out_naming_a_file_exits_2_before_the_model_is_loaded(files, tmp_path, capsys):
    (tmp_path / "taken").write_text("not a folder")
    code, _, err = run(
        ["check", "-m", tmp_path / "none.pt", "-d", files / "test.npz", "--out", tmp_path / "taken"], capsys
    )
    line = _one_line_error(code, err)
    assert str(tmp_path / "taken") in line and "is a file" in line
    code, _, err = run(
        ["check", "-m", tmp_path / "none.pt", "-d", files / "test.npz", "--out", tmp_path / "taken" / "r"],
        capsys,
    )
    assert "taken is a file" in _one_line_error(code, err)
    # bad input found later leaves no empty output folder behind
    code, _, err = run(
        ["check", "-m", tmp_path / "none.pt", "-d", files / "test.npz", "--out", tmp_path / "new"], capsys
    )
    assert "none.pt" in _one_line_error(code, err) and not (tmp_path / "new").exists()


@pytest.mark.skipif(
    hasattr(__import__("os"), "geteuid") and __import__("os").geteuid() == 0, reason="root writes anywhere"
)
def test_out_in_a_read_only_folder_exits_2(files, tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        code, _, err = run(
            ["check", "-m", tmp_path / "none.pt", "-d", files / "test.npz", "--out", ro / "r"], capsys
        )
        assert "cannot" in _one_line_error(code, err)
    finally:
        ro.chmod(0o700)


@pytest.mark.parametrize("debug", ["", "1"])
def test_disk_full_exits_3_with_one_line_and_no_tmp_files(files, tmp_path, capsys, monkeypatch, debug):
    import errno
    import os

    from roadworthy import _files

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(_files.os, "fsync", full)
    if debug:
        monkeypatch.setenv("ROADWORTHY_DEBUG", "1")
    code, out, err = run(_clean_run(files, tmp_path / "r"), capsys)
    assert code == 3, err
    assert "READY" not in out
    last = err.strip().splitlines()[-1]
    assert (
        last.startswith("roadworthy: error:") and "No space left on device" in last and "report.html" in last
    )
    assert not list((tmp_path / "r").glob("*.tmp"))
    assert ("Traceback" in err) == bool(debug)


def test_sigterm_writes_finished_checks_as_an_incomplete_report(files, tmp_path, capsys, monkeypatch):
    """A cancelled CI job sends SIGTERM: the finished checks are written, marked INCOMPLETE, exit 1."""
    import os
    import signal

    from roadworthy.checks import base
    from roadworthy.checks.base import Check

    class Cancelled(Check):
        id = "test.cancelled"
        title = "Receives SIGTERM"

        def run(self, ctx):
            os.kill(os.getpid(), signal.SIGTERM)
            raise AssertionError("SIGTERM did not interrupt the run")

    monkeypatch.setitem(base.CHECKS, Cancelled.id, Cancelled)
    policy = tmp_path / "p.yaml"
    policy.write_text("gates:\n  - clean.accuracy >= 0.5\n")
    previous = signal.getsignal(signal.SIGTERM)
    code, out, _ = run(
        [
            "check",
            "-m",
            files / "model.pt",
            "-d",
            files / "test.npz",
            "-s",
            "test.cancelled",
            "--budget",
            "quick",
            "--policy",
            policy,
            "--out",
            tmp_path / "r",
        ],
        capsys,
    )
    assert signal.getsignal(signal.SIGTERM) == previous  # the handler is restored
    assert code == 1 and "roadworthy: INCOMPLETE" in out and "SIGTERM" in out
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["verdict"] == "not-ready" and report["incomplete"]["pending"] == ["test.cancelled"]
    assert "clean.accuracy" in report["incomplete"]["finished"]
    assert "**INCOMPLETE**" in (tmp_path / "r" / "report.md").read_text()
    assert ">INCOMPLETE<" in (tmp_path / "r" / "report.html").read_text()
    assert 'failures="0"' not in (tmp_path / "r" / "junit.xml").read_text()
    # the partial report stays for --resume, and rendering it never shows READY
    code, _, err = run(["render", tmp_path / "r" / "report.partial.json", "--out", tmp_path / "p"], capsys)
    assert code == 0 and "incomplete report" in err
    assert "**INCOMPLETE**" in (tmp_path / "p" / "report.md").read_text()


def test_mean_in_0_255_units_is_refused_with_a_hint(files, tmp_path, capsys):
    code, _, err = run(
        ["check", "-m", tmp_path / "none.pt", "-d", files / "test.npz", "--mean", "123.7", "--std", "0.5"],
        capsys,
    )
    line = _one_line_error(code, err)
    assert "--mean" in line and "123.7" in line and "0.4851" in line and "0-255" in line


def test_resume_reuses_only_a_run_with_the_same_settings(files, tmp_path, capsys):
    """A partial report of another --mean/--std must not lend its numbers; the same settings reuse them."""
    out = tmp_path / "r"
    run(_clean_run(files, out), capsys)
    base_acc = json.loads((out / "report.json").read_text())["metrics"]["clean.accuracy"]
    (out / "report.json").rename(out / "report.partial.json")  # as if interrupted after every check
    _, out_text, err = run(_clean_run(files, out, "--resume", "--mean", "0.9", "--std", "0.1"), capsys)
    assert "not resuming" in err + out_text and "mean" in err + out_text
    shifted = json.loads((out / "report.json").read_text())
    assert shifted["resumed"] is None and abs(shifted["metrics"]["clean.accuracy"] - base_acc) > 0.05
    assert shifted["options"]["mean"] == [0.9]
    # now an interrupted run with the very same settings: its checks are reused, and the report says so
    (out / "report.json").rename(out / "report.partial.json")
    _, out_text, err = run(_clean_run(files, out, "--resume", "--mean", "0.9", "--std", "0.1"), capsys)
    report = json.loads((out / "report.json").read_text())
    n = len(report["resumed"]["reused"])
    assert n >= 4 and f"reused {n} finished checks" in err + out_text
    assert report["metrics"]["clean.accuracy"] == shifted["metrics"]["clean.accuracy"]


def test_baseline_of_other_data_is_refused_unless_forced(files, tmp_path, capsys):
    run(_clean_run(files, tmp_path / "base"), capsys)
    data = dict(np.load(files / "test.npz"))
    np.savez(tmp_path / "other.npz", x=data["x"][:150], y=data["y"][:150])
    args = [
        "check",
        "-m",
        tmp_path / "none.pt",
        "-d",
        tmp_path / "other.npz",
        "-s",
        "clean",
        "--budget",
        "quick",
        "--baseline",
        tmp_path / "base" / "report.json",
        "--out",
        tmp_path / "new",
    ]
    code, _, err = run(args, capsys)
    line = _one_line_error(code, err)
    assert "baseline measured other data" in line and "--force-baseline" in line
    args[2] = files / "model.pt"
    code, _, err = run([*args, "--force-baseline"], capsys)
    assert code in (0, 1) and "roadworthy: warning: the baseline measured other data" in err
    report = json.loads((tmp_path / "new" / "report.json").read_text())
    assert any("baseline measured other data" in w for w in report["warnings"])
    code, out, _ = run(
        ["compare", tmp_path / "base" / "report.json", tmp_path / "new" / "report.json"], capsys
    )
    assert out.startswith("warning: the reports measured different data")


def test_small_sample_and_class_count_warnings(files, tmp_path, capsys):
    import torch

    data = dict(np.load(files / "test.npz"))
    np.savez(tmp_path / "five.npz", x=data["x"][:5], y=data["y"][:5])
    wide = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(256, 1000))
    torch.jit.save(torch.jit.trace(wide, torch.zeros(2, 1, 16, 16)), str(tmp_path / "wide.pt"))
    policy = tmp_path / "p.yaml"
    policy.write_text("gates: []\n")
    _, _, err = run(
        [
            "check",
            "-m",
            tmp_path / "wide.pt",
            "-d",
            tmp_path / "five.npz",
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
    assert "roadworthy: warning: small-sample" in err
    assert "1000 outputs but the data has" in err
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert len(report["warnings"]) == 2
    assert "small-sample" in (tmp_path / "r" / "report.md").read_text()
    assert "small-sample" in (tmp_path / "r" / "report.html").read_text()
    assert "small-sample" in (tmp_path / "r" / "junit.xml").read_text()
    assert (tmp_path / "r" / "report.json").stat().st_size < 1_000_000  # no 1000x1000 confusion matrix


def test_render_accepts_a_report_with_a_field_it_does_not_know(files, tmp_path, capsys):
    run(_clean_run(files, tmp_path / "a"), capsys)
    raw = json.loads((tmp_path / "a" / "report.json").read_text())
    raw["from_the_future"] = {"x": 1}
    raw["checks"][0]["also_new"] = 2
    (tmp_path / "new.json").write_text(json.dumps(raw))
    code, _, err = run(["render", tmp_path / "new.json", "--out", tmp_path / "b"], capsys)
    assert code == 0 and "from_the_future" in err and "checks.0.also_new" in err
    assert (tmp_path / "b" / "report.html").exists()


def test_check_help_lists_every_exit_code(capsys):
    code, out, _ = run(["check", "--help"], capsys)
    assert code == 0 and all(f"{n} " in out for n in ("0", "1", "2", "3"))
    assert "--force-baseline" in out


def test_warnings_print_without_python_source_paths(files, tmp_path):
    """An RGB file for a grey model is converted with a warning: one line, no 'file.py:123:'."""
    data = dict(np.load(files / "test.npz"))
    np.savez(tmp_path / "rgb.npz", x=np.repeat(data["x"][:60, :, :, None], 3, axis=3), y=data["y"][:60])
    exe = Path(sys.executable).parent / "roadworthy"
    args = [
        "check",
        "-m",
        files / "model.pt",
        "-d",
        tmp_path / "rgb.npz",
        "--input-shape",
        "1,16,16",
        "-s",
        "clean",
    ]
    proc = subprocess.run(
        [str(exe), *map(str, args), "--budget", "quick", "--out", str(tmp_path / "r")],
        capture_output=True,
        text=True,
    )
    warned = [ln for ln in proc.stderr.splitlines() if ln.startswith("roadworthy: warning:")]
    assert warned, proc.stderr
    assert not any(".py:" in ln for ln in proc.stderr.splitlines()), proc.stderr


def test_black_box_model_is_gated_on_black_box_attacks_by_default(tmp_path):
    """A function model (no gradients) whose answer flips with a tiny change: NOT READY by default."""
    import roadworthy

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 120)
    # every image's mean brightness sits within 0.01 of the decision threshold 0.5
    level = 0.5 + np.where(y == 1, 1, -1) * rng.uniform(0.003, 0.01, 120)
    x = np.clip(level[:, None, None, None] + rng.uniform(-0.02, 0.02, (120, 1, 8, 8)), 0, 1).astype(
        np.float32
    )
    x += (level - x.mean(axis=(1, 2, 3)))[:, None, None, None].astype(np.float32)

    def fragile(batch):
        m = batch.reshape(len(batch), -1).mean(axis=1) - 0.5
        return np.stack([-m, m], axis=1) * 400

    report = roadworthy.check(fragile, (x, y), suites=["attack.square"], budget="quick")
    assert report.model.white_box is False and report.metrics["clean.accuracy"] == 1.0
    gates = {g.metric: g for g in report.gates}
    assert gates["attack.square.robust_accuracy"].passed is False
    assert not any(m and m.startswith("attack.pgd_linf") for m in gates)
    assert report.verdict == "not-ready"
