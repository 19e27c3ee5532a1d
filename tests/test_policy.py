"""Gates, wildcards, 'not evaluated', baseline drops and the verdict."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from roadworthy.errors import InvalidInputError
from roadworthy.policy import DEFAULT_POLICY_TEXT, GateRule, Policy, evaluate_gates, judge
from roadworthy.results import CheckResult


def _policy(*gates: str, **kw) -> Policy:
    return Policy(gates=[GateRule.parse(g) for g in gates], **kw)


def test_gate_parsing_and_evaluation():
    gates = evaluate_gates(
        _policy("clean.accuracy >= 0.9", "shift.rpc < 0.5"), {"clean.accuracy": 0.93, "shift.rpc": 0.7}
    )
    assert [(g.rule, g.value, g.passed) for g in gates] == [
        ("clean.accuracy >= 0.9", 0.93, True),
        ("shift.rpc < 0.5", 0.7, False),
    ]


def test_unmeasured_metric_is_not_evaluated_never_passed():
    (gate,) = evaluate_gates(_policy("attack.pgd_linf.robust_accuracy >= 0.1"), {"clean.accuracy": 1.0})
    assert gate.passed is None and gate.value is None
    gates, verdict = judge(_policy("attack.pgd_linf.robust_accuracy >= 0.1", fail_on_error=False), {}, [])
    assert verdict == "ready" and gates[0].passed is None
    _, strict = judge(_policy("attack.pgd_linf.robust_accuracy >= 0.1", fail_on_unevaluated=True), {}, [])
    assert strict == "not-ready"


def test_nan_metric_is_not_evaluated():
    (gate,) = evaluate_gates(_policy("clean.ece <= 0.1"), {"clean.ece": float("nan")})
    assert gate.passed is None


def test_wildcard_gate_expands_per_metric():
    metrics = {
        "attack.fgsm.robust_accuracy": 0.3,
        "attack.pgd_linf.robust_accuracy": 0.05,
        "attack.fgsm.queries": 1.0,
    }
    gates = evaluate_gates(_policy("attack.*.robust_accuracy >= 0.1"), metrics)
    assert {g.metric: g.passed for g in gates} == {
        "attack.fgsm.robust_accuracy": True,
        "attack.pgd_linf.robust_accuracy": False,
    }


def test_baseline_max_drop(tmp_path):
    from roadworthy.results import DataDescription, ModelDescription, Report, ToolInfo

    base = Report(
        tool=ToolInfo(version="0"),
        created="t",
        seed=0,
        budget="quick",
        model=ModelDescription(path=None, format="torch", n_classes=2, white_box=True),
        data=DataDescription(path=None, n_samples=10, modality="image", input_shape=[1, 8, 8]),
        metrics={
            "clean.accuracy": 0.95,
            "shift.mean_accuracy": 0.80,
            "clean.accuracy_ci_low": 0.9,
            "clean.ece": 0.01,
        },
        verdict="ready",
    )
    pol = _policy(max_drop=0.02, fail_on_error=False)
    gates, verdict = judge(
        pol, {"clean.accuracy": 0.94, "shift.mean_accuracy": 0.70, "clean.ece": 0.5}, [], base
    )
    by_metric = {g.metric: g.passed for g in gates if g.source == "baseline"}
    assert by_metric == {"clean.accuracy": True, "shift.mean_accuracy": False}
    assert verdict == "not-ready"


def test_errored_check_fails_verdict_by_default():
    crashed = CheckResult(id="attack.fgsm", suite="attack", title="FGSM", status="error", error="boom")
    gates, verdict = judge(_policy("clean.accuracy >= 0.5"), {"clean.accuracy": 0.9}, [crashed])
    assert verdict == "not-ready"
    assert gates[-1].source == "runner" and "attack.fgsm" in gates[-1].rule
    _, lenient = judge(
        _policy("clean.accuracy >= 0.5", fail_on_error=False), {"clean.accuracy": 0.9}, [crashed]
    )
    assert lenient == "ready"


@pytest.mark.parametrize(
    "bad", ["clean.accuracy", "clean.accuracy => 0.9", ">= 0.9", "clean.accuracy >= high"]
)
def test_malformed_gate_is_a_clear_error(bad):
    with pytest.raises(InvalidInputError, match="METRIC OP NUMBER"):
        GateRule.parse(bad, "roadworthy.yaml")


def test_policy_file_errors(tmp_path):
    p = tmp_path / "roadworthy.yaml"
    p.write_text("gates: [clean.accuracy >= 0.9]\nspeling: 1\n")
    with pytest.raises(InvalidInputError, match=r"roadworthy.yaml: unknown policy key\(s\) speling"):
        Policy.load(p)
    p.write_text("gates:\n  - clean.accuracy >= 0.9\nbaseline:\n  max_drop: 3\n")
    with pytest.raises(InvalidInputError, match="max_drop must be a number in"):
        Policy.load(p)
    with pytest.raises(InvalidInputError, match="policy file not found"):
        Policy.load(tmp_path / "missing.yaml")


def test_default_policy_text_is_the_default_policy(tmp_path):
    p = tmp_path / "roadworthy.yaml"
    p.write_text(DEFAULT_POLICY_TEXT)
    loaded = Policy.load(p)
    assert [g.text for g in loaded.gates] == [g.text for g in Policy().gates]
    assert loaded.max_drop == 0.02 and loaded.fail_on_error and not loaded.fail_on_unevaluated


@given(value=st.floats(0, 1), t1=st.floats(0, 1), t2=st.floats(0, 1))
def test_gate_is_monotone_in_its_threshold(value, t1, t2):
    lo, hi = sorted((t1, t2))
    (g_hi,) = evaluate_gates(_policy(f"m >= {hi!r}"), {"m": value})
    (g_lo,) = evaluate_gates(_policy(f"m >= {lo!r}"), {"m": value})
    assert not (g_hi.passed and not g_lo.passed)  # passing a stricter gate implies passing a looser one
