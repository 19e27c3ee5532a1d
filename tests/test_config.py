"""Settings as objects: LoadOptions and RunConfig, the run key they feed, the model's identity."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from roadworthy.checks.base import Check, Outcome
from roadworthy.config import BUDGETS, LoadOptions, RunConfig
from roadworthy.errors import InvalidInputError


class Draws(Check):
    """Draws from the global generators: a run must not have seeded them."""

    id = "test.draws"
    title = "Draws"

    def run(self, ctx):
        return Outcome(metrics={"test.draws.value": float(np.random.random())})


def test_every_load_option_but_trust_pickle_is_in_the_run_key(digits_model, digits_data):
    from roadworthy.session import Session

    opts = LoadOptions(
        mean=[0.5],
        std=[0.25],
        input_shape=[1, 16, 16],
        feature_layer="fc",
        class_names=["a"],
        target="label",
        image_size="16x16",
        strict_data=True,
    )
    fields = {f.name for f in dataclasses.fields(LoadOptions)}
    # trust_pickle and the served model's transport settings (http) change no number
    assert (
        set(opts.run_key_fields()) == fields - LoadOptions.NOT_IN_RUN_KEY == fields - {"trust_pickle", "http"}
    )
    base = Session(model=digits_model, data=digits_data, suites=["clean"], budget="quick")
    key = base.run_options()
    for name, value in opts.run_key_fields().items():  # each one alone changes the key
        changed = dataclasses.replace(base, options={name: value}).run_options()
        assert changed != key, name
    # and the run settings that change a number are there under their own names
    for name in set(f.name for f in dataclasses.fields(RunConfig)) - RunConfig.NOT_IN_RUN_KEY:
        assert name in key or {"suites": "checks", "baseline": "baseline_metrics"}[name] in key


def test_run_config_refuses_bad_values_in_one_line():
    with pytest.raises(InvalidInputError, match="--budget must be one of quick, standard, thorough"):
        RunConfig(budget="huge")
    with pytest.raises(InvalidInputError, match="--backend must be one of local, ray"):
        RunConfig(backend="dask")
    with pytest.raises(InvalidInputError, match="--batch-size must be at least 1"):
        RunConfig(batch_size=0)
    with pytest.raises(InvalidInputError, match="--mean values must be in"):
        LoadOptions(mean=[124])
    assert RunConfig(suites=["clean"]).suites == ("clean",) and BUDGETS[0] == "quick"
    assert LoadOptions(mean=[0.5]) == LoadOptions(mean=(0.5,))  # sequences normalised once


def test_check_takes_the_objects_or_the_keywords_not_both(digits_module, digits_data):
    import roadworthy

    by_keywords = roadworthy.check(digits_module, digits_data, suites=["clean"], budget="quick", seed=3)
    by_objects = roadworthy.check(
        digits_module,
        digits_data,
        config=roadworthy.RunConfig(suites=["clean"], budget="quick", seed=3),
        load=roadworthy.LoadOptions(),
    )
    numbers = {k: v for k, v in by_keywords.metrics.items() if "latency" not in k}  # timings vary
    assert {k: by_objects.metrics[k] for k in numbers} == numbers
    assert by_objects.run_key == by_keywords.run_key
    with pytest.raises(InvalidInputError, match="budget inside `config` or as keywords"):
        roadworthy.check(digits_module, digits_data, budget="quick", config=RunConfig())


def test_a_model_file_is_hashed_once_and_its_identity_reaches_the_report(
    tmp_path, digits_module, digits_data, monkeypatch
):
    torch = pytest.importorskip("torch")
    import roadworthy
    from roadworthy import _files

    path = tmp_path / "digits.pt"
    torch.jit.script(digits_module).save(str(path))
    digest = _files.sha256_path(path)
    hashed = []
    real = _files.sha256_path

    def counting(p):
        hashed.append(str(p))
        return real(p)

    monkeypatch.setattr(_files, "sha256_path", counting)
    monkeypatch.setattr("roadworthy.models.sha256_path", counting)
    report = roadworthy.check(str(path), digits_data, suites=["clean"], budget="quick")
    assert hashed == [str(path)]
    assert report.model.sha256 == digest and report.model.path == str(path)
    assert report.model.format == "torchscript"
    assert report.options["model_sha256"] == digest


def test_the_runner_seeds_no_global_generator(digits_model, digits_data):
    from roadworthy.checks.base import Context
    from roadworthy.runner import run_check

    ctx = Context(model=digits_model, data=digits_data, seed=0)
    np.random.seed(12345)
    expected = np.random.random()
    np.random.seed(12345)
    value = run_check(Draws, ctx).metrics["test.draws.value"]
    assert value == expected  # the check drew what the global generator held, not a re-seeded stream
