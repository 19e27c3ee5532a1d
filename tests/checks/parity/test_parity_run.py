"""--reference-model through the command line, the API, the run key and the policy."""

from __future__ import annotations

import copy
import hashlib
import json
import warnings

import numpy as np
import pytest

from roadworthy.cli import main
from roadworthy.policy import Policy, judge


def run(args, capsys):
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in args])
    out, err = capsys.readouterr()
    return int(exc.value.code or 0), out, err


@pytest.fixture(scope="module")
def files(tmp_path_factory, digits_module, digits_split):
    """200 test digits, the CNN as ONNX (shipped) and TorchScript (reference), a damaged TorchScript copy."""
    import torch

    d = tmp_path_factory.mktemp("parity-cli")
    _, _, x_te, y_te = digits_split
    np.savez(d / "test.npz", x=(x_te[:200, 0] * 255).round().astype(np.uint8), y=y_te[:200])
    x = torch.from_numpy(x_te[:2])
    damaged = copy.deepcopy(digits_module)
    with torch.no_grad():
        damaged[0].weight[0] *= 5.0
        damaged[0].bias[0] *= 5.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.trace(digits_module, x).save(str(d / "trained.pt"))
        torch.jit.trace(damaged, x).save(str(d / "damaged.pt"))
        torch.onnx.export(
            digits_module,
            (x,),
            str(d / "shipped.onnx"),
            dynamo=False,
            input_names=["pixels"],
            dynamic_axes={"pixels": {0: "batch"}},
        )
        torch.save(digits_module, str(d / "whole.pt"))
    return d


def _check(files, out, *extra):
    return [
        "check",
        "--model",
        files / "shipped.onnx",
        "--data",
        files / "test.npz",
        "--budget",
        "quick",
        "--out",
        out,
        *extra,
    ]


def test_cli_reference_model_end_to_end(files, tmp_path, capsys):
    code, out, err = run(
        _check(files, tmp_path / "r", "--reference-model", files / "trained.pt", "--suite", "parity"), capsys
    )
    assert code == 0, out + err
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    m = report["metrics"]
    assert m["parity.clean.disagreement"] == 0 and m["parity.clean.max_abs_logit_diff"] < 1e-3
    for source in ("clean", "shift", "adversarial", "mutants"):
        assert m[f"parity.{source}.disagreement_n"] > 0, source
    assert m["parity.disagreement"] <= 0.01
    sha = hashlib.sha256((files / "trained.pt").read_bytes()).hexdigest()
    assert (
        report["reference_model"]["path"].endswith("trained.pt")
        and report["reference_model"]["sha256"] == sha
    )
    assert report["options"]["reference_model_sha256"] == sha
    gate = next(g for g in report["gates"] if g["metric"] == "parity.disagreement")
    assert gate["passed"] is True
    summary = next(c for c in report["checks"] if c["id"] == "parity.summary")["summary"]
    assert "trained.pt" in summary
    assert "parity" in (tmp_path / "r" / "report.md").read_text()


def test_cli_a_damaged_reference_fails_the_default_gate(files, tmp_path, capsys):
    args = _check(files, tmp_path / "r", "--reference-model", files / "damaged.pt")
    code, out, err = run([*args, "--suite", "parity.clean", "--suite", "parity.summary"], capsys)
    assert code == 1, out + err
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    gate = next(g for g in report["gates"] if g["metric"] == "parity.disagreement")
    assert gate["passed"] is False and report["metrics"]["parity.disagreement_ci_low"] > 0.01
    assert report["verdict"] == "not-ready"


def test_without_a_reference_the_reference_gates_do_not_apply_even_under_fail_on_unevaluated(
    files, tmp_path, capsys
):
    policy = tmp_path / "p.yaml"
    policy.write_text(
        "gates:\n  - clean.accuracy >= 0.5\nreference_gates:\n  - parity.disagreement <= 0.01\n"
        "fail_on_unevaluated: true\n"
    )
    code, out, err = run(_check(files, tmp_path / "r", "--suite", "clean", "--policy", policy), capsys)
    assert code == 0, out + err
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert not any((g["metric"] or "").startswith("parity.") for g in report["gates"])
    assert report["reference_model"] is None and "reference_model_sha256" not in report["options"]


def test_a_pickled_reference_is_refused_without_trust_pickle(files, tmp_path, capsys):
    code, _out, err = run(
        _check(files, tmp_path / "r", "--reference-model", files / "whole.pt", "--suite", "clean"), capsys
    )
    assert code == 2 and "pickle" in err.lower() and "Traceback" not in err


def test_a_reference_with_other_classes_is_refused(files, digits_split):
    import torch

    import roadworthy
    from roadworthy.errors import InvalidInputError

    other = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(256, 3))
    with pytest.raises(InvalidInputError, match="3 classes"):
        roadworthy.check(
            str(files / "shipped.onnx"),
            str(files / "test.npz"),
            reference_model=other,
            suites=["clean"],
            budget="quick",
        )


def test_policy_reference_gates_apply_only_with_a_reference():
    policy = Policy()
    assert [g.text for g in policy.reference_gates] == ["parity.disagreement <= 0.01"]
    without, _ = policy.for_model(True, reference=False)
    with_ref, _ = policy.for_model(True, reference=True)
    assert not any(g.metric.startswith("parity") for g in without.gates)
    assert "parity.disagreement <= 0.01" in [g.text for g in with_ref.gates]
    strict = Policy(fail_on_unevaluated=True)
    gates, verdict = judge(strict.for_model(True, reference=False)[0], {"clean.accuracy": 0.99}, [])
    assert not any((g.metric or "").startswith("parity") for g in gates)
    gates, verdict = judge(strict.for_model(True, reference=True)[0], {"clean.accuracy": 0.99}, [])
    parity = next(g for g in gates if g.metric == "parity.disagreement")
    assert parity.passed is False and verdict == "not-ready"  # with a reference, an unmeasured gate fails


def test_the_default_policy_text_has_the_reference_gates(tmp_path):
    from roadworthy.policy import DEFAULT_POLICY_TEXT

    p = tmp_path / "p.yaml"
    p.write_text(DEFAULT_POLICY_TEXT)
    assert [g.text for g in Policy.load(p).reference_gates] == [g.text for g in Policy().reference_gates]


def test_the_run_key_holds_the_reference_so_resume_never_mixes_two(digits_module, digits_model, digits_data):
    from roadworthy.models.torch import TorchModel
    from roadworthy.session import Session

    other = copy.deepcopy(digits_module)
    with __import__("torch").no_grad():
        other[0].bias[0] += 1.0
    a = Session(model=digits_model, data=digits_data, reference_model=digits_model).run_options([])
    b = Session(
        model=digits_model, data=digits_data, reference_model=TorchModel(other, input_shape=(1, 16, 16))
    ).run_options([])
    none = Session(model=digits_model, data=digits_data).run_options([])
    assert a["reference_model_sha256"] != b["reference_model_sha256"]
    assert "reference_model_sha256" not in none
