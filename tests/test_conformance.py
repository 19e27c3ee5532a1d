"""Every registered check keeps the contract: id, title, docstring, parameters, budgets, requirements."""

from __future__ import annotations

import dataclasses
import re

import pytest

from roadworthy.checks import load_builtin_checks
from roadworthy.checks.base import BUDGETS, Check, Requires

REGISTRY = load_builtin_checks()
ID = re.compile(r"^[a-z]+\.[a-z0-9_]+$")


def test_every_suite_of_the_design_is_registered():
    suites = {cls.suite() for cls in REGISTRY.values()}
    assert {"sanity", "clean"} <= suites


@pytest.mark.parametrize("check_id", sorted(REGISTRY))
def test_check_contract(check_id):
    cls = REGISTRY[check_id]
    assert issubclass(cls, Check)
    assert ID.match(cls.id), f"{cls.id} is not suite.snake_name"
    assert cls.title and cls.title[0].isupper()
    assert (cls.__doc__ or "").strip(), f"{cls.__name__} needs a docstring saying what its numbers mean"
    assert isinstance(cls.requires, Requires)
    assert cls.requires.capabilities <= {"white_box", "features"}
    assert cls.budgets and set(cls.budgets) <= set(BUDGETS)
    assert set(cls.budget_params) <= set(BUDGETS)
    assert dataclasses.is_dataclass(cls.Params), "Params must be a dataclass"
    assert cls.Params.__dataclass_params__.frozen, "Params must be frozen"
    names = {f.name for f in dataclasses.fields(cls.Params)}
    for budget in BUDGETS:
        unknown = set(cls.budget_params.get(budget, {})) - names
        assert not unknown, f"budget_params[{budget!r}] sets unknown parameters {unknown}"
        check = cls(budget=budget)  # every field has a default, every budget builds
        assert check.params_dict() == check.params_dict()
    for pattern in cls.depends_on:
        assert "." in pattern


def test_import_is_cheap():
    """Importing roadworthy and listing checks must not pull torch, matplotlib or onnxruntime."""
    import subprocess
    import sys

    code = (
        "import sys, roadworthy, roadworthy.checks as c; c.load_builtin_checks(); "
        "heavy = [m for m in ('torch', 'matplotlib', 'onnxruntime', 'cleanlab', 'cv2', 'pandas') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == "", f"importing the registry loaded {out}"
