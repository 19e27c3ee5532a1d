"""The backend table, and the Ray backend giving the local one's numbers (skipped without ray)."""

from __future__ import annotations

import pickle

import pytest

from roadworthy.config import BACKEND_NAMES, LoadOptions, ModelRecipe
from roadworthy.runner import BACKENDS, run_checks
from roadworthy.session import Session


def test_every_backend_name_has_a_run_function():
    assert tuple(BACKENDS) == BACKEND_NAMES
    assert BACKENDS["local"] is run_checks


def test_the_model_recipe_is_picklable_and_spells_the_load_options_once(tmp_path, digits_module):
    torch = pytest.importorskip("torch")
    path = tmp_path / "m.pt"
    torch.jit.script(digits_module).save(str(path))
    recipe = ModelRecipe(str(path), LoadOptions(mean=[0.5], std=[0.5]), (1, 16, 16))
    again = pickle.loads(pickle.dumps(recipe))
    assert again == recipe
    model = again()
    assert model.identity.path == str(path) and len(model.identity.sha256) == 64


@pytest.mark.slow
def test_ray_backend_matches_local(digits_module, digits_data):
    ray = pytest.importorskip("ray")
    from roadworthy.models import load_model

    def session(backend: str) -> Session:
        model = load_model(digits_module, input_shape=(1, 16, 16))
        return Session(
            model=model,
            data=digits_data,
            suites=["clean"],
            budget="quick",
            backend=backend,
            model_recipe=ModelRecipe(digits_module, LoadOptions(), (1, 16, 16)),
        )

    local = session("local").run()
    try:
        remote = session("ray").run()
    finally:
        ray.shutdown()
    assert [c.id for c in remote.checks] == [c.id for c in local.checks]
    assert remote.metrics["clean.accuracy"] == local.metrics["clean.accuracy"]
    assert remote.metrics["sanity.determinism"] == 1.0
