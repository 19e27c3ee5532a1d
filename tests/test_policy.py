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


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            'gates: []\nfail_on_unevaluated: "false"\n',
            r"fail_on_unevaluated must be true or false, unquoted\. Got 'false' \(a str\)",
        ),
        ("gates: []\nfail_on_error: maybe\n", r"fail_on_error must be true or false, unquoted\. Got 'maybe'"),
        (
            "gates: []\nbaseline:\n  maxdrop: 0.1\n",
            r"unknown policy key\(s\) baseline\.maxdrop; allowed under baseline: max_drop",
        ),
        (
            "gates: []\nbaseline:\n  max_drop: true\n",
            r"baseline\.max_drop must be a number in \[0, 1\]\. Got True",
        ),
        ("gates: clean.accuracy >= 0.9\n", r"'gates' must be a list of 'METRIC OP NUMBER' strings"),
        ("gates:\n  - 0.9\n", r"'gates' must be a list of 'METRIC OP NUMBER' strings"),
    ],
)
def test_policy_file_is_validated_strictly(tmp_path, text, message):
    """A quoted boolean, a YAML word that is no boolean, a misspelt nested key: refused, never guessed."""
    p = tmp_path / "roadworthy.yaml"
    p.write_text(text)
    with pytest.raises(InvalidInputError, match=message) as exc:
        Policy.load(p)
    assert str(exc.value).startswith(f"{p}: ") and "\n" not in str(exc.value)


def test_unquoted_booleans_are_read_as_such(tmp_path):
    p = tmp_path / "roadworthy.yaml"
    p.write_text("gates: []\nfail_on_unevaluated: true\nfail_on_error: false\nbaseline:\n  max_drop: 0\n")
    pol = Policy.load(p)
    assert pol.fail_on_unevaluated is True and pol.fail_on_error is False and pol.max_drop == 0.0


def test_gate_on_unknown_metric_names_the_nearest_known_one():
    from roadworthy.session import select_checks

    classes = select_checks(None, "quick")
    with pytest.raises(InvalidInputError, match=r"gate 'clean.acuracy >= 0.9' names unknown metric") as exc:
        _policy("clean.acuracy >= 0.9").check_metric_names(classes)
    assert "did you mean clean.accuracy?" in str(exc.value)
    with pytest.raises(InvalidInputError, match=r"did you mean shift\.gaussian_noise\.accuracy"):
        _policy("shift.gausian_noise.accuracy >= 0.5").check_metric_names(classes)
    with pytest.raises(InvalidInputError, match=r"unknown metric 'atack\.\*\.robust_accuracy'"):
        _policy("atack.*.robust_accuracy >= 0.1").check_metric_names(classes)
    # documented names, patterns, CI bounds and wildcards are accepted, measured in this run or not
    _policy(
        "clean.accuracy_ci_low >= 0.9",
        "attack.*.robust_accuracy >= 0.1",
        "attack.pgd_linf.eps_0.00392.robust_accuracy >= 0.5",
        "shift.fog.s3.accuracy >= 0.5",
        "ood.energy.shift_fog.auroc >= 0.5",
        "integrity.leakage.count <= 0",
    ).check_metric_names(classes)
    Policy().check_metric_names(classes)


def test_plugin_checks_may_gate_on_their_own_metrics():
    from roadworthy.checks.base import Check

    class Mine(Check):
        id = "myteam.drift"
        title = "a plug-in"

    _policy("myteam.drift.score <= 0.2", "myteam.* <= 1").check_metric_names([Mine])
    with pytest.raises(InvalidInputError, match=r"unknown metric 'myteam\.score'"):
        _policy("myteam.score <= 0.2").check_metric_names([])


def test_fail_on_unevaluated_fails_the_unmeasured_gates_by_name():
    from roadworthy.report import render
    from roadworthy.report.text import verdict_sentence
    from tests.report._fixtures import fixed_report

    pol = _policy("clean.accuracy >= 0.5", "integrity.leakage.count <= 0", fail_on_unevaluated=True)
    gates, verdict = judge(pol, {"clean.accuracy": 0.9}, [])
    assert verdict == "not-ready"
    leak = next(g for g in gates if g.metric == "integrity.leakage.count")
    assert leak.passed is False and leak.value is None and "fail_on_unevaluated" in leak.note
    report = fixed_report().model_copy(update={"gates": gates, "checks": []})
    sentence = verdict_sentence(report)
    assert "1 of 3 gates failed: integrity.leakage.count <= 0 (not measured)" in sentence
    junit = render(report, "junit")
    assert 'failures="1"' in junit and "fail_on_unevaluated" in junit


def test_default_policy_gates_black_box_models_on_black_box_attacks():
    """PGD cannot run without gradients: for a black box the default policy gates Square and HopSkipJump."""
    white, notes = Policy().for_model(white_box=True)
    assert any(g.metric.startswith("attack.pgd_linf") for g in white.gates) and not notes
    black, notes = Policy().for_model(white_box=False)
    metrics = {g.metric for g in black.gates}
    assert not any(m.startswith("attack.pgd_linf") for m in metrics) and not notes
    assert {"attack.square.robust_accuracy", "attack.hopskipjump.eps_0.10000.robust_accuracy"} <= metrics
    fragile = {"attack.square.robust_accuracy": 0.0, "clean.accuracy": 1.0}
    _, verdict = judge(black, fragile, [])
    assert verdict == "not-ready"
    # a policy without black-box gates keeps its white-box gate (not evaluated) and says why
    own, notes = _policy("attack.pgd_linf.robust_accuracy >= 0.1", black_box_gates=[]).for_model(False)
    assert [g.metric for g in own.gates] == ["attack.pgd_linf.robust_accuracy"]
    assert "black_box_gates" in notes[0]


def test_default_policy_text_has_the_black_box_gates(tmp_path):
    p = tmp_path / "roadworthy.yaml"
    p.write_text(DEFAULT_POLICY_TEXT)
    assert [g.text for g in Policy.load(p).black_box_gates] == [g.text for g in Policy().black_box_gates]


def test_default_policy_gates_the_valid_fuzz_failure_rate():
    """Fuzzing fails the default policy only when the evidence says more than 5% of the valid mutants
    break the model (the interval's lower end), so a small budget's wide interval does not fail it."""
    rule = "fuzz.failure_rate_ci_low <= 0.05"
    assert rule in [g.text for g in Policy().gates]
    for low, passed in ((0.0, True), (0.049, True), (0.2, False)):
        metrics = {"fuzz.failure_rate": low + 0.03, "fuzz.failure_rate_ci_low": low}
        (gate,) = [g for g in evaluate_gates(Policy(), metrics) if g.metric == "fuzz.failure_rate_ci_low"]
        assert gate.passed is passed


def test_default_policy_has_tabular_gates_that_apply_only_to_tables(tmp_path):
    """The tabular gates join only for a feature table: an image run never lists them as not evaluated."""
    p = tmp_path / "roadworthy.yaml"
    p.write_text(DEFAULT_POLICY_TEXT)
    assert [g.text for g in Policy.load(p).tabular_gates] == [g.text for g in Policy().tabular_gates]
    image, _ = Policy().for_model(white_box=True)
    assert not any(g.metric.startswith(("shift.tab_", "attack.tab_")) for g in image.gates)
    table, _ = Policy().for_model(white_box=False, tabular=True)
    metrics = {g.metric for g in table.gates}
    assert {"shift.tab_feature_sensitivity.max_drop", "attack.tab_*.eps_0.10000.robust_accuracy"} <= metrics
    assert not table.tabular_gates and not table.reference_gates
    # one column's unit drift costing 47 points fails; a 2-point cost passes; the wildcard gates each attack
    for drop, verdict in ((0.47, "not-ready"), (0.02, "ready")):
        metrics = {
            "shift.tab_feature_sensitivity.max_drop": drop,
            "attack.tab_score.eps_0.10000.robust_accuracy": 0.9,
            "attack.tab_boundary.eps_0.10000.robust_accuracy": 0.9,
        }
        gates, got = judge(table, metrics, [])
        assert got == verdict
        assert {g.metric for g in gates if g.metric and g.metric.startswith("attack.tab_")} == {
            "attack.tab_score.eps_0.10000.robust_accuracy",
            "attack.tab_boundary.eps_0.10000.robust_accuracy",
        }
    weak = {
        "shift.tab_feature_sensitivity.max_drop": 0.0,
        "attack.tab_score.eps_0.10000.robust_accuracy": 0.3,
    }
    assert judge(table, weak, [])[1] == "not-ready"


def test_tabular_gates_in_a_policy_file_are_checked_like_the_others(tmp_path):
    p = tmp_path / "roadworthy.yaml"
    p.write_text("gates: []\ntabular_gates:\n  - shift.tab_feature_sensitivity.max_drop <= 0.1\n")
    assert [g.text for g in Policy.load(p).tabular_gates] == ["shift.tab_feature_sensitivity.max_drop <= 0.1"]
    p.write_text("gates: []\ntabular_gates: shift.rpc\n")
    with pytest.raises(InvalidInputError, match="'tabular_gates' must be a list"):
        Policy.load(p)
    p.write_text("gates: []\ntabular_gates:\n  - shift.tab_feature_sensitivty.max_drop <= 0.1\n")
    with pytest.raises(InvalidInputError, match="unknown metric"):
        Policy.load(p).check_metric_names([])
