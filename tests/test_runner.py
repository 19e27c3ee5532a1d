"""Runner: failure isolation, skipping, dependency order, partial reports and resume."""

from __future__ import annotations

import json

import pytest

from roadworthy.checks.base import Check, Outcome, Requires
from roadworthy.errors import RunInterrupted
from roadworthy.runner import order_checks, run_check, run_checks


class Boom(Check):
    id = "test.boom"
    title = "Crashes"

    def run(self, ctx):
        raise RuntimeError("kaboom")


class Fine(Check):
    id = "test.fine"
    title = "Works"

    def run(self, ctx):
        return Outcome(metrics={"test.fine.value": 1.0}, summary="ok")


class NeedsTrain(Check):
    id = "test.needs_train"
    title = "Needs training data"
    requires = Requires(train_data=True)

    def run(self, ctx):  # pragma: no cover - must be skipped
        raise AssertionError


class Summary(Check):
    id = "test.summary"
    title = "Reads the others"
    depends_on = ("test.*",)

    def run(self, ctx):
        return Outcome(metrics={"test.summary.seen": float(len(ctx.results))})


def test_a_crashing_check_is_isolated(ctx):
    results = run_checks([Boom, Fine], ctx)
    by_id = {r.id: r for r in results}
    assert by_id["test.boom"].status == "error"
    assert by_id["test.boom"].error == "RuntimeError: kaboom"
    assert "kaboom" in by_id["test.boom"].details["traceback"]
    assert by_id["test.fine"].status == "pass" and by_id["test.fine"].metrics == {"test.fine.value": 1.0}


def test_unmet_requirements_skip_with_reason(ctx):
    ctx.train_data = None
    r = run_check(NeedsTrain, ctx)
    assert r.status == "skipped" and "--train-data" in r.summary


def test_dependencies_run_first(ctx):
    assert [c.id for c in order_checks([Summary, Boom, Fine])][-1] == "test.summary"
    results = run_checks([Summary, Fine, Boom], ctx)
    assert results[-1].metrics["test.summary.seen"] == 2.0


def test_partial_report_after_each_check_and_resume(tmp_path, digits_model, digits_data, monkeypatch):
    from roadworthy.checks import base
    from roadworthy.session import PARTIAL_NAME, Session

    monkeypatch.setitem(base.CHECKS, Fine.id, Fine)
    monkeypatch.setitem(base.CHECKS, Boom.id, Boom)
    seen = []
    session = Session(model=digits_model, data=digits_data, suites=["test"], budget="quick", out=tmp_path)

    def spy(text):
        seen.append(text)
        partial = tmp_path / PARTIAL_NAME
        if text.startswith("  test.fine"):
            saved = json.loads(partial.read_text()) if partial.exists() else None
            # the partial file holds every check finished before this one
            assert saved is not None and {c["id"] for c in saved["checks"]} >= {"clean.accuracy"}

    session.say = spy
    report = session.run()
    assert not (tmp_path / PARTIAL_NAME).exists()
    ids = [c.id for c in report.checks]
    assert "test.fine" in ids and "clean.accuracy" in ids
    assert report.verdict == "not-ready"  # test.boom errored and the default policy fails on errors

    # an interrupted run leaves the partial report, marked incomplete; --resume reuses its finished checks
    def interrupt(self, ctx):
        raise KeyboardInterrupt

    monkeypatch.setattr(Boom, "run", interrupt)
    with pytest.raises(RunInterrupted) as stopped:
        Session(model=digits_model, data=digits_data, suites=["test"], budget="quick", out=tmp_path).run()
    partial = stopped.value.report
    assert partial.verdict == "not-ready" and partial.incomplete.pending == ["test.boom"]
    assert "test.fine" in partial.incomplete.finished and (tmp_path / PARTIAL_NAME).exists()
    calls, said = [], []
    monkeypatch.setattr(Fine, "run", lambda self, ctx: calls.append(1) or Outcome())
    monkeypatch.setattr(Boom, "run", lambda self, ctx: Outcome())
    resumed = Session(
        model=digits_model,
        data=digits_data,
        suites=["test"],
        budget="quick",
        out=tmp_path,
        resume=True,
        say=said.append,
    ).run()
    assert calls == []
    assert "test.fine" in resumed.resumed.reused and "test.boom" not in resumed.resumed.reused
    assert any(
        line.startswith(f"resuming: reused {len(resumed.resumed.reused)} finished checks") for line in said
    )
    assert resumed.incomplete is None and resumed.run_key == partial.run_key


def test_resume_refuses_a_partial_report_of_other_settings(tmp_path, digits_model, digits_data, monkeypatch):
    """Every setting that changes a number is in the run key: another seed, or option, reuses nothing."""
    from roadworthy.checks import base
    from roadworthy.session import PARTIAL_NAME, Session

    monkeypatch.setitem(base.CHECKS, Fine.id, Fine)

    def interrupt(self, ctx):
        raise KeyboardInterrupt

    monkeypatch.setitem(base.CHECKS, Boom.id, Boom)
    monkeypatch.setattr(Boom, "run", interrupt)
    kw = {"model": digits_model, "data": digits_data, "suites": ["test"], "budget": "quick", "out": tmp_path}
    with pytest.raises(RunInterrupted):
        Session(**kw, options={"mean": [0.5]}).run()
    monkeypatch.setattr(Boom, "run", lambda self, ctx: Outcome())
    calls, said = [], []
    monkeypatch.setattr(Fine, "run", lambda self, ctx: calls.append(1) or Outcome())
    report = Session(**kw, options={"mean": [0.4]}, resume=True, say=said.append).run()
    assert calls == [1] and report.resumed is None
    assert any(line.startswith("not resuming") and "mean" in line for line in said), said
    assert not (tmp_path / PARTIAL_NAME).exists()


def test_resume_never_mixes_two_feature_schemas(tmp_path, monkeypatch):
    """The policy's schema overrides are in the run key: another schema reuses nothing."""
    from roadworthy.checks import base
    from roadworthy.data.base import Dataset
    from roadworthy.session import Session
    from tests._tables import NAMES, planted_model, planted_table

    x, y = planted_table(200)
    model = planted_model(x, y)

    def data(schema):
        return Dataset(
            x=x, y=y, modality="tabular", feature_names=NAMES, meta={"schema": schema} if schema else {}
        )

    monkeypatch.setitem(base.CHECKS, Fine.id, Fine)
    monkeypatch.setitem(base.CHECKS, Boom.id, Boom)
    kw = {"model": model, "suites": ["test"], "budget": "quick", "out": tmp_path}
    plain = Session(data=data(None), **kw).run_options()
    ages = Session(data=data({"immutable": ["age"]}), **kw).run_options()
    regions = Session(data=data({"immutable": ["region"]}), **kw).run_options()
    assert "schema" not in plain and ages["schema"] == {"immutable": ["age"]}
    assert len({json.dumps(o, sort_keys=True) for o in (plain, ages, regions)}) == 3
    assert Session(data=data({"immutable": ["age"]}), **kw).run_options() == ages

    monkeypatch.setattr(Boom, "run", lambda self, ctx: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(RunInterrupted):
        Session(data=data({"immutable": ["age"]}), **kw).run()
    monkeypatch.setattr(Boom, "run", lambda self, ctx: Outcome())
    calls, said = [], []
    monkeypatch.setattr(Fine, "run", lambda self, ctx: calls.append(1) or Outcome())
    report = Session(data=data({"immutable": ["region"]}), **kw, resume=True, say=said.append).run()
    assert calls == [1] and report.resumed is None
    assert any(line.startswith("not resuming") and "schema" in line for line in said), said
