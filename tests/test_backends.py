"""The Ray backend gives the same numbers as the local one (skipped where ray is not installed)."""

from __future__ import annotations

import pytest

from roadworthy.session import Session


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
            model_recipe=lambda: load_model(digits_module, input_shape=(1, 16, 16)),
        )

    local = session("local").run()
    try:
        remote = session("ray").run()
    finally:
        ray.shutdown()
    assert [c.id for c in remote.checks] == [c.id for c in local.checks]
    assert remote.metrics["clean.accuracy"] == local.metrics["clean.accuracy"]
    assert remote.metrics["sanity.determinism"] == 1.0
