"""The tabular attack checks on the planted table."""

from __future__ import annotations

from roadworthy.checks import load_builtin_checks
from roadworthy.runner import run_checks
from tests._tables import planted_context

REG = load_builtin_checks()


def test_tabular_attacks_measure_graded_budgets_and_name_the_planted_feature():
    classes = [REG["attack.tab_score"], REG["attack.tab_boundary"], REG["attack.summary"]]
    results = {r.id: r for r in run_checks(classes, planted_context())}
    for name in ("tab_score", "tab_boundary"):
        r = results[f"attack.{name}"]
        assert r.status == "pass", r.warnings
        accs = [r.metrics[f"attack.{name}.eps_{e:.5f}.robust_accuracy"] for e in (0.1, 0.25, 0.5, 1.0)]
        assert accs == sorted(accs, reverse=True)  # a bigger budget never leaves more standing
        assert accs[-1] < accs[0]
        assert r.metrics[f"attack.{name}.robust_accuracy"] == accs[2]
        assert r.details["most_changed_features"][0]["feature"] == "distance_km"
        assert "age" not in {f["feature"] for f in r.details["most_changed_features"]}
        assert r.details["schema_violations"]["immutable"] == 0
        assert r.details["threat_model"]["immutable"] == ["age"]
    assert results["attack.summary"].metrics["attack.trustworthy"] == 1.0


def test_tabular_pgd_on_a_torch_mlp_measures_graded_budgets_and_stays_on_the_schema():
    ctx = planted_context(model="torch")
    assert "white_box" in ctx.capabilities
    assert REG["attack.tab_pgd"].unmet(planted_context()) is not None  # scikit-learn: no gradients
    results = {r.id: r for r in run_checks([REG["attack.tab_pgd"], REG["attack.summary"]], ctx)}
    r = results["attack.tab_pgd"]
    assert r.status == "pass", r.warnings
    accs = [r.metrics[f"attack.tab_pgd.eps_{e:.5f}.robust_accuracy"] for e in (0.1, 0.25, 0.5, 1.0)]
    assert accs[-1] < accs[0]
    assert r.metrics["attack.tab_pgd.robust_accuracy"] == accs[2]
    assert r.details["schema_violations"] == {k: 0 for k in r.details["schema_violations"]}
    top = [f["feature"] for f in r.details["most_changed_features"]]
    # the planted numeric column leads; levels move too now (the greedy categorical step), age never
    assert top and top[0] == "distance_km" and "age" not in top
    assert r.details["threat_model"]["knowledge"].startswith("white-box")


def test_tabular_attack_flips_are_judged_by_the_input_space_validity_gate():
    """The rows an attack flips at the default budget are judged by the session's gate, which on the demo
    table is an input-space detector; the split adds up to the flipped rows."""
    from roadworthy.checks.base import Context
    from roadworthy.demo.tabular import load_tabular_demo

    demo = load_tabular_demo()
    ctx = Context(model=demo.model, data=demo.test, train_data=demo.train, budget="quick", seed=0)
    (r,) = run_checks([REG["attack.tab_score"]], ctx)
    v = r.details["validity"]
    assert v["gate"] in ("input_mahalanobis", "input_knn", "isolation_forest")
    broken = next(e for e in r.details["per_eps"] if e["eps"] == 0.5)["broken"]
    assert v["broken"] == broken > 0
    assert v["in_envelope"] + v["out_of_envelope"] == broken
