"""The validity gate on the digits CNN: keeps valid inputs, rejects noise, falls back without features."""

from __future__ import annotations

import numpy as np
import pytest

from roadworthy.checks.base import Context
from roadworthy.checks.reference import validity_gate
from roadworthy.uncertainty.validity import ValidityGate, conformal_threshold


def _noise(n: int = 200, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).random((n, 1, 16, 16)).astype(np.float32)


def test_gate_keeps_clean_inputs_and_rejects_noise(ctx: Context) -> None:
    gate = validity_gate(ctx)
    assert isinstance(gate, ValidityGate)
    d = gate.describe()
    assert set(d["candidates"]) == {"mahalanobis", "knn", "energy", "max_logit", "msp"}
    # the chosen detector lets the fewest generated far-OOD inputs through its threshold
    accepted = {name: c["ood_accepted"] for name, c in d["candidates"].items()}
    assert accepted[gate.detector.name] == min(accepted.values())
    held_out = d["clean_in_envelope"]
    assert held_out is not None and held_out >= 0.9
    assert gate.in_envelope(ctx.data.x).mean() >= 0.9
    assert gate.in_envelope(_noise()).mean() < 0.5  # rejects most noise (0 to 0.3 across trainings)
    assert validity_gate(ctx) is gate  # fitted once per session
    assert gate.in_envelope(ctx.data.x[:0]).shape == (0,)


def test_gate_without_training_data_uses_half_the_evaluation_data(digits_model, digits_data) -> None:
    ctx = Context(model=digits_model, data=digits_data, budget="quick", seed=0)
    gate = validity_gate(ctx)
    assert gate is not None
    d = gate.describe()
    assert d["fit_on"] == "half of the evaluation data"
    assert d["n_fitted"] + d["n_calibration"] == digits_data.n_samples
    assert gate.in_envelope(digits_data.x).mean() >= 0.9
    assert gate.in_envelope(_noise()).mean() < 0.6


def test_gate_without_features_uses_the_logits(digits_model, digits_data, digits_train_data) -> None:
    class LogitsOnly:  # the same network seen as a black box: predictions only
        n_classes, input_spec, output, format = 10, digits_model.input_spec, "logits", "callable"

        def predict(self, x: np.ndarray) -> np.ndarray:
            return digits_model.predict(x)

    ctx = Context(model=LogitsOnly(), data=digits_data, train_data=digits_train_data, budget="quick", seed=0)
    gate = validity_gate(ctx)
    assert gate is not None and gate.detector.name in ("energy", "max_logit", "msp")
    assert gate.in_envelope(digits_data.x).mean() >= 0.9


def test_gate_is_deterministic_for_a_seed(digits_model, digits_data) -> None:
    taus = [validity_gate(Context(model=digits_model, data=digits_data, seed=3)).threshold for _ in range(2)]
    assert taus[0] == taus[1]


@pytest.mark.parametrize(("n", "expected"), [(19, 19.0), (99, 95.0), (1, 1.0)])
def test_conformal_threshold_covers_the_quantile(n: int, expected: float) -> None:
    # scores 1..n: the ceil((n+1) * 0.95)-th smallest, capped at n
    assert conformal_threshold(np.arange(1, n + 1, dtype=float)) == expected


def _imports(path) -> set[str]:
    """Every ``roadworthy`` module a source file imports, at the top or inside a function."""
    import ast

    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return {m for m in out if m.startswith("roadworthy")}


def test_the_shift_and_ood_suites_share_the_gate_without_importing_each_other() -> None:
    from pathlib import Path

    import roadworthy

    src = Path(roadworthy.__file__).parent
    rules = {  # folder -> module prefixes its files must not import
        "checks/shift": ("roadworthy.checks.ood", "roadworthy.report"),
        "checks/ood": ("roadworthy.checks.shift", "roadworthy.report"),
        "shifts": ("roadworthy.checks", "roadworthy.report"),
        "uncertainty": ("roadworthy.checks", "roadworthy.report", "roadworthy.shifts"),
    }
    for folder, banned in rules.items():
        for path in (src / folder).rglob("*.py"):
            bad = sorted(m for m in _imports(path) if m.startswith(banned))
            assert not bad, f"{path.relative_to(src)} imports {bad}"


def test_tabular_gate_chooses_among_the_input_space_detectors_too() -> None:
    """On a table the gate's candidates include the input-space detectors; rows whose columns are each
    plausible but do not fit together (uniform in range) pass a score on the model's outputs, so the gate
    picks an input-space detector, keeps clean rows and rejects most such rows."""
    from roadworthy.checks.tabular import schema_for
    from roadworthy.demo.tabular import load_tabular_demo
    from roadworthy.uncertainty import sources

    demo = load_tabular_demo()  # 30 correlated measurements: independent columns make implausible rows
    ctx = Context(model=demo.model, data=demo.test, train_data=demo.train, budget="quick", seed=0)
    gate = validity_gate(ctx)
    assert gate is not None
    d = gate.describe()
    assert {"input_mahalanobis", "input_knn", "isolation_forest", "max_logit", "msp"} <= set(d["candidates"])
    accepted = {name: c["ood_accepted"] for name, c in d["candidates"].items()}
    assert accepted[gate.detector.name] == min(accepted.values())
    assert gate.detector.space == "input"
    # the model's own confidence lets far more of the generated rows through than the chosen detector
    assert min(accepted["max_logit"], accepted["msp"]) > accepted[gate.detector.name] + 0.2
    assert gate.in_envelope(ctx.data.x).mean() >= 0.85
    fresh = sources.far_ood_tabular(
        "uniform_in_range", 300, ctx.data.x, np.random.default_rng(7), schema=schema_for(ctx)
    )
    assert gate.in_envelope(fresh).mean() < 0.3
    assert validity_gate(ctx) is gate
