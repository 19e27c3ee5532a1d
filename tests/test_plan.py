"""Planning a run by cost: the plan is printed and reported, a time limit shrinks sample counts (wider
intervals, same kind of number), the run key records the plan, and the report carries peak memory."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from roadworthy import plan as planning
from roadworthy.checks.base import Check, Outcome
from roadworthy.errors import InvalidInputError
from roadworthy.stats import proportion_metrics


@dataclass(frozen=True)
class SampledParams:
    n_samples: int = 400
    steps: int = 10


class Sampled(Check):
    """Accuracy on ``n_samples`` stratified samples: its interval widens when the plan shrinks them."""

    id = "test.sampled"
    title = "Sampled accuracy"
    Params = SampledParams

    def run(self, ctx):
        idx = ctx.sample(self.params.n_samples, self.id)
        hits = ctx.predict_probs(ctx.data.x[idx]).argmax(1) == ctx.data.y[idx]
        return Outcome(metrics=proportion_metrics("test.sampled.accuracy", hits))


def _probe(forward_s: float) -> planning.Probe:
    return planning.Probe(forward_s=forward_s, backward_s=None, batch=8, measured_forward_s=forward_s)


def test_plan_keeps_the_budget_when_it_fits_and_shrinks_samples_when_it_does_not():
    fits = planning.make_plan([Sampled], "quick", 1000, _probe(1e-6))
    assert not fits.scaled and fits.checks[0].samples == 400 and fits.overrides() == {}
    # 1000 clean passes (1 s) + 400 samples x 10 steps (4 s) at 1 ms; a 3 s limit leaves room for half
    tight = planning.make_plan([Sampled], "quick", 1000, _probe(0.001), time_limit_s=3)
    c = tight.checks[0]
    assert tight.scaled and c.default_samples == 400
    assert planning.MIN_PLANNED_SAMPLES <= c.samples < 400
    assert c.samples == 200 and tight.estimated_s <= 3 + 1e-9 < tight.default_estimated_s
    assert tight.overrides() == {"test.sampled": {"n_samples": c.samples}}
    # never below the floor, however tight the limit
    floor = planning.make_plan([Sampled], "quick", 1000, _probe(1.0), time_limit_s=1)
    assert floor.checks[0].samples == planning.MIN_PLANNED_SAMPLES
    assert any("shrunk" in line for line in tight.lines())


def test_cost_class_and_durations():
    assert planning.cost_class(0.0011) == planning.cost_class(0.0009) == 2.0**-10
    assert planning.parse_duration("15m") == 900
    assert planning.parse_duration("1h30m") == 5400
    assert planning.parse_duration("90s") == planning.parse_duration("90") == 90
    for bad in ("soon", "-5", "0", "15x"):
        with pytest.raises(InvalidInputError, match="--time-limit"):
            planning.parse_duration(bad)


def test_batch_size_follows_memory_per_sample():
    assert planning.batch_size_for(None, 256) == 256
    assert planning.batch_size_for(1000.0, 256) == 256  # small samples: as requested
    big = planning.batch_size_for(20 * 2**20, 256)  # 20 MiB per sample: 512 MiB / 20 MiB -> 16
    assert big == 16 and big * 20 * 2**20 <= planning.BATCH_MEMORY_BYTES
    assert planning.batch_size_for(10 * 2**30, 256) == 8  # never below 8


def test_batch_memory_measures_a_forward_call(digits_model, digits_data):
    per_sample = planning.batch_memory(digits_model, digits_data.x)
    if per_sample is None:
        pytest.skip("peak RSS cannot be reset on this system")
    assert per_sample >= digits_data.x[0].nbytes
    assert planning.peak_rss_mb() > 10


def _session(monkeypatch, digits_model, digits_data, **kw):
    from roadworthy.checks import base
    from roadworthy.session import Session

    monkeypatch.setitem(base.CHECKS, Sampled.id, Sampled)
    return Session(model=digits_model, data=digits_data, suites=["test"], budget="quick", **kw)


def test_a_time_limit_shrinks_the_plan_widens_intervals_and_is_reported(
    monkeypatch, digits_model, digits_data
):
    # the probe is made slow (a fixed cost class), so the plan does not depend on this machine's speed
    monkeypatch.setattr(planning, "probe", lambda *a, **k: _probe(0.01))
    said: list[str] = []
    free = _session(monkeypatch, digits_model, digits_data, say=said.append).run()
    limited_said: list[str] = []
    limited = _session(
        monkeypatch, digits_model, digits_data, time_limit_s=12.0, say=limited_said.append
    ).run()
    # the plan is printed before the run and written to the report
    assert said[0].startswith("plan (quick") and any("test.sampled" in s for s in said)
    assert free.plan is not None and not free.plan.scaled
    assert limited.plan is not None and limited.plan.scaled and limited.plan.time_limit_s == 12.0
    n_free = free.check("test.sampled").params["n_samples"]
    n_lim = limited.check("test.sampled").params["n_samples"]
    n_avail = min(400, digits_data.n_samples)
    assert n_free == 400 and n_lim < n_avail  # the reported params say what ran
    assert limited.metrics["test.sampled.accuracy_n"] == n_lim
    # the same measurement with fewer samples: a wider interval, stated in the plan
    planned = {c.id: c for c in limited.plan.checks}["test.sampled"]
    free_planned = {c.id: c for c in free.plan.checks}["test.sampled"]
    assert planned.interval_width > free_planned.interval_width
    assert planned.actual_s is not None and planned.samples == n_lim
    # the run key records the time limit and the changed params
    assert free.run_key != limited.run_key
    assert limited.options["time_limit"] == 12.0
    assert limited.options["plan"]["test.sampled"] == {"n_samples": n_lim}


def test_run_key_includes_the_time_limit(monkeypatch, digits_model, digits_data):
    a = _session(monkeypatch, digits_model, digits_data).run_options()
    b = _session(monkeypatch, digits_model, digits_data, time_limit_s=900.0).run_options()
    assert a["time_limit"] is None and b["time_limit"] == 900.0 and a != b


def test_report_run_info_has_peak_memory_and_cores(monkeypatch, digits_model, digits_data):
    report = _session(monkeypatch, digits_model, digits_data).run()
    run = report.run
    assert run is not None and run.wall_s > 0 and run.cores >= 1 and run.device == "cpu"
    assert run.peak_rss_mb is not None and run.peak_rss_mb > 10
    assert run.batch_size == 256  # small images: the requested batch
    assert "peak_rss_mb" in report.model_dump(mode="json")["run"]


class Counting:
    """Wraps a model and counts the samples it is asked to predict."""

    def __init__(self, model):
        self._m = model
        self.calls: list[int] = []

    def __getattr__(self, name):
        return getattr(self._m, name)

    def predict(self, x):
        self.calls.append(len(x))
        return self._m.predict(x)


def test_clean_outputs_are_computed_once_across_checks(monkeypatch, digits_model, digits_data):
    """sanity, clean and calibration all read the clean outputs: the full evaluation set goes through once."""
    from roadworthy.session import Session

    counting = Counting(digits_model)
    monkeypatch.setattr(planning, "probe", lambda *a, **k: _probe(1e-6))
    report = Session(model=counting, data=digits_data, suites=["clean"], budget="quick").run()
    assert {c.id for c in report.checks} >= {"clean.accuracy", "sanity.outputs"}
    full = sum(1 for n in counting.calls if n == digits_data.n_samples)
    chunks_of_full = sum(counting.calls) // digits_data.n_samples
    assert full <= 1 and chunks_of_full <= 3, counting.calls  # once, plus the small sanity probes


def test_plain_progress_prints_eta_lines_inside_long_tasks(monkeypatch):
    import io

    from roadworthy import progress

    clock = iter(float(t) for t in range(0, 1000, 40))  # 40 s between calls: every call is a heartbeat
    monkeypatch.setattr(progress.time, "perf_counter", lambda: next(clock))
    out = io.StringIO()
    with progress.PlainProgress(stream=out).task("pgd", total=100) as t:
        for _ in range(3):
            t.advance(1)  # 1 %, 2 %, 3 %: no quarter reached, but 40 s passed each time
    lines = out.getvalue().splitlines()
    assert len(lines) == 3 and all("elapsed" in ln and "left" in ln for ln in lines), lines
    assert "pgd: 1% (40 s elapsed, about 66.0 min left)" in lines[0]


def test_runner_lines_show_elapsed_and_time_left(ctx):
    from roadworthy.runner import run_checks

    said: list[str] = []
    ctx.plan_estimates = {"test.sampled": 5.0}
    run_checks([Sampled.__mro__[0]], ctx, say=said.append)
    assert said[0].startswith("- test.sampled (1/1)") and "elapsed" in said[1]


def test_device_cuda_is_refused_without_a_gpu(tmp_path, digits_module, digits_data):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    from roadworthy.api import check

    with pytest.raises(InvalidInputError, match="--device cuda: PyTorch sees no CUDA GPU"):
        check(digits_module, (digits_data.x, digits_data.y), device="cuda", suites=["clean"])


def test_cli_time_limit_and_device_options(tmp_path):
    from click.testing import CliRunner

    from roadworthy.cli import app

    res = CliRunner().invoke(app, ["check", "-m", "x.pt", "-d", "x.npz", "--time-limit", "soon"])
    assert res.exit_code != 0 and "--time-limit" in str(res.exception or res.output)
    res = CliRunner().invoke(app, ["check", "--help"])
    assert "--time-limit" in res.output and "--device" in res.output


def test_planning_changes_nothing_for_small_models_on_their_budget(monkeypatch, digits_model, digits_data):
    """A quick run of a tiny model fits its target: no param changes, the run key has no plan."""
    from roadworthy.session import Session, select_checks

    s = Session(model=digits_model, data=digits_data, budget="standard")
    p = s.make_plan(select_checks(None, "standard"))
    assert not p.scaled and p.overrides() == {} and p.estimated_s < 1800
    assert s.run_options()["plan"] is None


@dataclass(frozen=True)
class QueryParams:
    n_samples: int = 400
    max_queries: int = 1000


class Queried(Check):
    """A black-box attack whose cost is samples x queries; the plan may lower both, samples first."""

    id = "test.queried"
    title = "Queried"
    Params = QueryParams
    plan_queries = ("max_queries", 100)

    @classmethod
    def plan_passes(cls, params, n_data):
        return float(min(params.n_samples, n_data) * params.max_queries), 0.0


class SharedA(Check):
    id = "test.shared_a"
    title = "A"
    plan_shared = "bench"

    @classmethod
    def plan_passes(cls, params, n_data):
        return 1000.0, 0.0


class SharedB(SharedA):
    id = "test.shared_b"


def test_query_budgets_shrink_only_after_samples_reach_their_floor():
    # 1 s of clean passes + 400 x 1000 passes at 1 ms = 401 s; 20 s takes the samples to their floor
    # (32, still 32 s), then lowers the queries
    p = planning.make_plan([Queried], "quick", 1000, _probe(0.001), time_limit_s=20)
    c = p.checks[0]
    assert c.overrides["n_samples"] == planning.MIN_PLANNED_SAMPLES
    assert 100 <= c.overrides["max_queries"] < 1000
    assert p.estimated_s <= 20 + 1e-6
    assert any("max_queries" in line for line in p.lines())
    # a limit the samples alone can meet leaves the queries at the budget's
    roomy = planning.make_plan([Queried], "quick", 1000, _probe(0.001), time_limit_s=300)
    assert "max_queries" not in roomy.checks[0].overrides and roomy.checks[0].samples < 400
    # never below the query floor
    floor = planning.make_plan([Queried], "quick", 1000, _probe(1.0), time_limit_s=1)
    assert floor.checks[0].overrides["max_queries"] == 100


def test_work_shared_by_several_checks_is_counted_once():
    p = planning.make_plan([SharedA, SharedB], "quick", 0, _probe(0.001))
    assert [c.passes for c in p.checks] == [1000.0, 0.0]
    assert p.estimated_s == pytest.approx(1.0)


def test_the_probe_grows_its_batch_until_a_call_is_measurable():
    calls = []

    class Slow:
        def predict(self, x):
            calls.append(len(x))
            return np.zeros((len(x), 2), np.float32)

    pr = planning.probe(Slow(), np.zeros((1000, 4), np.float32), batch=256)
    assert pr.batch == 256 and max(calls) == 256  # a trivial model: the full batch
    assert min(calls) == planning.PROBE_START_BATCH


def test_the_plan_holds_only_the_checks_that_will_run(digits_model, digits_data):
    from roadworthy.session import Session, select_checks

    s = Session(model=digits_model, data=digits_data, budget="quick")
    ids = [c.id for c in s.make_plan(select_checks(None, "quick")).checks]
    assert "shift.gaussian_noise" in ids and "attack.pgd_linf" in ids
    assert not [i for i in ids if i.startswith(("shift.tab_", "attack.tab_"))]  # tabular only
    assert "integrity.label_issues" not in ids  # needs training data


@dataclass(frozen=True)
class CheapParams:
    n_samples: int = 400


class Cheap(Check):
    id = "test.cheap"
    title = "Cheap"
    Params = CheapParams


def test_expensive_checks_give_way_first_and_cheap_ones_keep_their_samples():
    # Cheap: 400 passes (0.4 s); Sampled: 400 x 10 = 4000 passes (4 s); a 3 s limit (1 s of clean passes)
    p = planning.make_plan([Cheap, Sampled], "quick", 1000, _probe(0.001), time_limit_s=3)
    cheap, costly = p.checks
    assert cheap.overrides == {} and cheap.samples == 400
    assert planning.MIN_PLANNED_SAMPLES <= costly.samples < 200  # less than a common factor would leave
    assert p.estimated_s <= 3 + 1e-9


def test_each_check_reports_the_model_passes_it_used(digits_model, digits_data):
    """Forward and gradient passes are counted per check and land in report.plan; the model is left as it was."""
    import roadworthy

    rep = roadworthy.check(digits_model, digits_data, suites=["attack.fgsm"], budget="quick")
    by_id = {c.id: c for c in rep.checks}
    fgsm = by_id["attack.fgsm"].model_passes
    n = by_id["attack.fgsm"].params["n_samples"]
    assert fgsm["gradient"] >= 1 and fgsm["forward"] >= 1
    assert fgsm["gradient"] <= min(n, len(digits_data.y)) + 256  # one gradient per input (+ health check)
    planned = {c.id: c for c in rep.plan.checks}
    assert planned["attack.fgsm"].passes_used == fgsm["forward"] + fgsm["gradient"]
    assert by_id["clean.accuracy"].model_passes is not None
    assert "predict" not in vars(digits_model) and "forward_torch" not in vars(digits_model)


def test_pgd_and_apgd_estimates_include_the_minimum_norm_run():
    """The plan's passes for PGD/APGD are the check's own floor: samples x (steps x restarts + min_norm_steps)."""
    from roadworthy.checks.attack.apgd import APGDCE
    from roadworthy.checks.attack.pgd import PGDLinf

    for cls, budget in ((PGDLinf, "standard"), (APGDCE, "standard"), (PGDLinf, "thorough")):
        p = cls.Params(**cls.budget_params[budget])
        forward, gradient = planning.check_passes(cls, p, 10_000)
        n = min(p.n_samples, 10_000)
        assert forward == 0 and gradient == n * (p.steps * p.restarts + p.min_norm_steps)
        assert p.min_norm_steps > 0


def test_probe_takes_input_gradients_only_and_leaves_parameters_untouched(digits_data) -> None:
    from roadworthy.models.torch import TorchModel
    from tests._models import tiny_cnn

    model = TorchModel(tiny_cnn().eval(), input_shape=(1, 16, 16))
    assert all(param.grad is None for param in model.module.parameters())
    p = planning.probe(model, digits_data.x, batch=8, white_box=True)
    assert p.measured_backward_s is not None and p.measured_backward_s > 0
    # an attack needs d(loss)/d(input); weight gradients would cost time and stay in the user's .grad
    assert all(param.grad is None for param in model.module.parameters())


def test_shared_work_such_as_the_validity_gate_is_planned_once_on_the_first_check():
    from roadworthy.session import select_checks

    classes = [
        c for c in select_checks(["shift"], "quick") if c.id in ("shift.gaussian_noise", "shift.shot_noise")
    ]
    plan = planning.make_plan(classes, "quick", 500, _probe(0.001), n_train=1000)
    first, second = plan.checks
    # the gate: features of 500 evaluation rows, 4 x 200 proxies and 1000 training rows in two spaces
    assert first.passes - second.passes == 500 + 2 * 800 + 2 * 1000
    assert plan.estimated_s == pytest.approx(1.5 + (first.passes + second.passes) * 0.001)


def test_the_eta_follows_the_pace_of_the_finished_checks():
    from roadworthy.runner.local import _remaining

    class A:
        id = "a"

    class B:
        id = "b"

    import re

    def left_s(text: str) -> float:
        value, unit = re.search(r"about ([0-9.]+) (s|min) left", text).groups()
        return float(value) * (60 if unit == "min" else 1)

    # a finished in 3000 s against 1000 s planned: the rest is expected at about the same pace
    est = {"a": 1000.0, "b": 100.0}
    assert 250 <= left_s(_remaining([B], est, 3000.0, 1, [A])) <= 300
    assert left_s(_remaining([B], est, 1000.0, 1, [A])) == pytest.approx(100, abs=3)  # "1.7 min"
    # a 1-second check that took 26 s on a busy machine does not multiply a 10-minute plan by 26
    est = {"a": 1.0, "b": 600.0}
    assert 600 < left_s(_remaining([B], est, 26.0, 1, [A])) < 2 * 600


def test_the_ood_summary_is_planned_like_the_detectors_it_reads():
    """A shrunk plan gives the summary the detectors' bench size, so it reuses their outputs."""
    from roadworthy.session import select_checks

    classes = [
        c for c in select_checks(["ood"], "standard") if c.id.startswith("ood.") and c.id != "ood.calibration"
    ]
    plan = planning.make_plan(classes, "standard", 1000, _probe(0.05), time_limit_s=60)
    changed = {c.id: c.overrides.get("n_per_source") for c in plan.checks}
    assert changed["ood.summary"] is not None and len(set(changed.values())) == 1
    assert [c.passes for c in plan.checks if c.id != "ood.msp"] == [0.0] * (len(plan.checks) - 1)


def test_each_check_reports_its_own_peak_memory(digits_model, digits_data):
    """A check that holds 200 MiB shows a peak at least that far above one that holds nothing; the
    window is reset per check, so the next check's peak is not the earlier one's."""
    from roadworthy.checks.base import Check, Context, Outcome
    from roadworthy.runner.local import run_check

    class Hungry(Check):
        id = "test.hungry"
        title = "holds 200 MiB"

        def run(self, ctx: Context) -> Outcome:
            block = np.ones(200 * 2**20 // 8)
            return Outcome(metrics={"test.hungry.sum": float(block[:10].sum())})

    class Light(Check):
        id = "test.light"
        title = "holds nothing"

        def run(self, ctx: Context) -> Outcome:
            return Outcome(metrics={"test.light.one": 1.0})

    ctx = Context(model=digits_model, data=digits_data)
    hungry = run_check(Hungry, ctx)
    light = run_check(Light, ctx)
    if light.peak_rss_mb is None:
        pytest.skip("peak RSS cannot be reset on this system")
    assert hungry.peak_rss_mb is not None
    assert hungry.peak_rss_mb - light.peak_rss_mb > 150
    assert planning.peak_rss_mb() >= hungry.peak_rss_mb - 1
