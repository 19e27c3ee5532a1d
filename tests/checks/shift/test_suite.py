"""The shift checks on the digits CNN: per-shift metrics, the summary's aggregates, mCE against a baseline."""

from __future__ import annotations

import numpy as np
import pytest

from roadworthy.checks import load_builtin_checks
from roadworthy.checks.shift.suite import ShiftParams, ShiftSummary, corruption_errors
from roadworthy.report.figures import draw
from roadworthy.results import CheckResult, DataDescription, ModelDescription, Report, ToolInfo
from roadworthy.runner import run_check
from roadworthy.shifts import SHIFTS

SMALL = ShiftParams(n_samples=150, severities=(1, 3, 5))


def run(ctx, check_id: str, params: object = SMALL) -> CheckResult:
    result = run_check(load_builtin_checks()[check_id], ctx, params)
    assert result.status in ("pass", "warn"), result.error
    ctx.results[check_id] = result
    return result


def test_every_shift_is_a_registered_check() -> None:
    registry = load_builtin_checks()
    for name in SHIFTS:
        cls = registry[f"shift.{name}"]
        assert cls.shift_name == name and "severities 1-5" in cls.__doc__
    assert registry["shift.summary"].depends_on == ("shift.*",)


@pytest.mark.parametrize("name", ["contrast", "fog", "low_light", "rotation", "translation", "stickers"])
def test_strong_shifts_hurt_more_at_severity_5(ctx, name: str) -> None:
    idx = ctx.sample(300, "test")
    x, y = ctx.data.x[idx], ctx.data.y[idx]
    acc = {
        s: float(
            np.mean(ctx.predict_probs(SHIFTS[name].apply(x, s, np.random.default_rng(s))).argmax(1) == y)
        )
        for s in (1, 5)
    }
    assert acc[5] < acc[1] - 0.02, acc  # at least 2 points lower


def test_one_shift_check_reports_accuracy_per_severity(ctx) -> None:
    r = run(ctx, "shift.contrast")
    m, d = r.metrics, r.details
    for s in (1, 3, 5):
        key = f"shift.contrast.s{s}.accuracy"
        assert 0 <= m[f"{key}_ci_low"] <= m[key] <= m[f"{key}_ci_high"] <= 1
        assert m[f"{key}_n"] == 150
        assert d["severity_accuracy"][str(s)] == pytest.approx(m[key])
    assert "shift.contrast.s2.accuracy" not in m
    mean = np.mean([m[f"shift.contrast.s{s}.accuracy"] for s in (1, 3, 5)])
    assert m["shift.contrast.accuracy"] == pytest.approx(mean)
    assert m["shift.contrast.s5.accuracy"] < m["shift.contrast.s1.accuracy"]
    assert d["parameter_table"] == "cifar" and d["image_size"] == 16
    assert 0 <= d["flip_rate"] <= 1 and 0 <= d["ece"] <= 1
    assert d["clean_accuracy"] > 0.9
    # the validity gate splits every failure, and only failures, into in and out of the envelope
    failures = sum(round((1 - row["accuracy"]) * 150) for row in d["per_severity"])
    v = d["validity"]
    from roadworthy.checks.reference import validity_gate

    # the split uses the session's gate, whichever detector it picked for this model
    assert v["gate"]["detector"] == validity_gate(ctx).describe()["detector"]
    assert v["in_envelope_failures"] + v["out_of_envelope_failures"] == failures
    assert m["shift.contrast.in_envelope_failures"] == v["in_envelope_failures"]
    # one strip: the clean image and one image per severity, captioned with the prediction
    (ex,) = r.examples
    assert [e.caption.split(":")[0] for e in ex.extra] == ["s1", "s3", "s5"]
    assert all(e.uri.startswith("data:image/png;base64,") for e in ex.extra)
    assert ex.original and ex.label in [str(i) for i in range(10)]


def test_same_seed_same_numbers(ctx) -> None:
    a = run(ctx, "shift.snow", ShiftParams(n_samples=100, severities=(2, 4)))
    b = run(ctx, "shift.snow", ShiftParams(n_samples=100, severities=(2, 4)))
    assert a.metrics == b.metrics


def test_summary_is_consistent_with_the_shift_checks(ctx) -> None:
    names = ["contrast", "fog", "rotation", "gaussian_noise"]
    per = {n: run(ctx, f"shift.{n}") for n in names}
    r = run(ctx, "shift.summary", None)
    m, d = r.metrics, r.details
    means = {n: per[n].metrics[f"shift.{n}.accuracy"] for n in names}
    assert m["shift.mean_accuracy"] == pytest.approx(np.mean(list(means.values())))
    assert m["shift.worst_accuracy"] == pytest.approx(min(means.values()))
    assert d["worst_shift"] == min(means, key=means.get)
    clean = per["fog"].details["clean_accuracy"]
    assert clean == pytest.approx(
        np.mean(ctx.clean_pred[ctx.sample(150, "shift")] == ctx.data.y[ctx.sample(150, "shift")])
    )
    assert m["shift.rpc"] == pytest.approx(m["shift.mean_accuracy"] / clean)
    flips = sum(per[n].details["flips"] for n in names)
    assert m["shift.flip_rate"] == pytest.approx(flips / (150 * len(names)))
    assert 0 <= m["shift.ece"] <= 1
    # the grid lists the worst shift first, one column per severity
    assert d["shifts"][0] == d["worst_shift"] and d["severities"] == [1, 3, 5]
    assert d["grid"][0] == [per[d["worst_shift"]].details["severity_accuracy"][str(s)] for s in (1, 3, 5)]
    assert "not directly comparable" in d["caveat"] and d["parameter_table"] == "cifar"
    assert "shift.mce" not in m  # no baseline
    (item,) = d["evidence"]  # drawn by the report from the data alone
    assert item["kind"] == "heatmap" and item["rows"] == d["shifts"] and item["columns"] == ["s1", "s3", "s5"]
    caption, uri = draw(item)
    assert "worst shift first" in caption and uri.startswith("data:image/svg+xml;base64,")


def _report(metrics: dict[str, float]) -> Report:
    return Report(
        tool=ToolInfo(version="0"),
        created="2026-01-01T00:00:00Z",
        seed=0,
        budget="quick",
        model=ModelDescription(path=None, format="torch", n_classes=10, white_box=True),
        data=DataDescription(path=None, n_samples=150, modality="image", input_shape=[1, 16, 16]),
        metrics=metrics,
        verdict="ready",
    )


def test_mce_is_normalised_by_the_baseline(ctx) -> None:
    for n in ("contrast", "fog", "rotation"):
        run(ctx, f"shift.{n}")
    # a baseline that measured contrast and fog (and rotation, which is no ImageNet-C corruption)
    base = {"clean.accuracy": 0.9}
    for n, accs in {"contrast": (0.8, 0.6, 0.4), "fog": (0.7, 0.5, 0.3), "rotation": (0.1, 0.1, 0.1)}.items():
        for s, a in zip((1, 3, 5), accs, strict=False):
            base[f"shift.{n}.s{s}.accuracy"] = a
    ctx.baseline = _report(base)
    r = run(ctx, "shift.summary", None)
    model = {
        n: {s: ctx.results[f"shift.{n}"].metrics[f"shift.{n}.s{s}.accuracy"] for s in (1, 3, 5)}
        for n in ("contrast", "fog")
    }
    clean = r.details["clean_accuracy"]
    ce_contrast = sum(1 - model["contrast"][s] for s in (1, 3, 5)) / (0.2 + 0.4 + 0.6)
    ce_fog = sum(1 - model["fog"][s] for s in (1, 3, 5)) / (0.3 + 0.5 + 0.7)
    assert r.metrics["shift.mce"] == pytest.approx((ce_contrast + ce_fog) / 2)
    rel_contrast = sum(1 - model["contrast"][s] - (1 - clean) for s in (1, 3, 5)) / (1.2 - 3 * 0.1)
    rel_fog = sum(1 - model["fog"][s] - (1 - clean) for s in (1, 3, 5)) / (1.5 - 3 * 0.1)
    assert r.metrics["shift.relative_mce"] == pytest.approx((rel_contrast + rel_fog) / 2)
    assert r.details["baseline"]["corruptions"] == ["contrast", "fog"]


def test_corruption_errors_by_hand() -> None:
    model = {"fog": {1: 0.9, 2: 0.7}, "snow": {1: 0.5}}
    base = {"fog": {1: 0.6, 2: 0.4, 3: 0.2}, "snow": {1: 0.5}}
    ce = corruption_errors(model, base, model_clean=0.95, base_clean=0.8)
    assert ce["ce"] == {"fog": pytest.approx(0.4 / 1.0), "snow": pytest.approx(1.0)}
    assert ce["relative_ce"]["fog"] == pytest.approx((0.4 - 0.1) / (1.0 - 0.4))
    assert ce["mce"] == pytest.approx(0.7)


def test_summary_without_shift_results_says_so(ctx) -> None:
    r = run_check(ShiftSummary, ctx)
    assert r.status == "warn" and not r.metrics
