from __future__ import annotations

import numpy as np
import pytest

from roadworthy.checks.integrity.poisoning import Poisoning, robust_z
from roadworthy.errors import InvalidInputError
from roadworthy.results import CheckResult
from tests.checks.integrity.conftest import _train_cnn, make_ctx


@pytest.fixture(scope="module")
def backdoored_outcome(backdoored_module, backdoored_digits, digits_split):
    """The poisoning check on the backdoored CNN, run once for the tests that read it."""
    x, y, _ = backdoored_digits
    _, _, x_te, y_te = digits_split
    return Poisoning().run(make_ctx(backdoored_module, x, y, x_te, y_te))


def test_backdoored_cnn_is_flagged_naming_target_and_source(backdoored_outcome, backdoored_digits):
    _, _, poisoned = backdoored_digits
    out = backdoored_outcome
    assert out.details["suspect_classes"] == ["6"]
    verdict = out.details["verdicts"][0]
    assert verdict["resembles"] == "3"
    assert "class 6 looks poisoned" in out.summary
    flagged = set(out.details["indices"])
    hits = len(flagged & set(poisoned.tolist()))
    assert hits / len(poisoned) >= 0.8
    assert hits / len(flagged) >= 0.8
    assert out.metrics["integrity.poisoning.suspect_count"] == len(flagged)
    assert out.metrics["integrity.poisoning.score"] >= Poisoning.Params().z_threshold
    assert len(out.details["scores"]) == len(out.details["indices"])
    # the gallery shows a suspect beside a typical member of the same class
    assert out.examples and out.examples[0].extra and out.examples[0].label == "6"


def test_clean_twin_is_not_flagged(clean_twin_module, digits_split):
    x_tr, y_tr, x_te, y_te = digits_split
    out = Poisoning().run(make_ctx(clean_twin_module, x_tr, y_tr, x_te, y_te))
    assert out.details["suspect_classes"] == []
    assert out.details["indices"] == []
    assert out.metrics["integrity.poisoning.suspect_count"] == 0
    assert out.metrics["integrity.poisoning.score"] < Poisoning.Params().z_threshold
    assert "no class" in out.summary


def test_figure_is_built_from_the_result(ctx):
    out = Poisoning().run(ctx)
    result = CheckResult(
        id=Poisoning.id,
        suite="integrity",
        title=Poisoning.title,
        status="pass",
        metrics=out.metrics,
        details=out.details,
        params={"z_threshold": 2.5},
    )
    from roadworthy.report.figures import draw

    back = CheckResult.model_validate_json(result.model_dump_json())
    figs = [draw(item) for item in back.details["evidence"]]
    assert len(figs) == 1 and figs[0][1].startswith("data:image/svg+xml")
    assert back.details["evidence"][0]["hline"] == Poisoning().params.z_threshold


def test_robust_z_ignores_one_extreme_class():
    z = robust_z(np.array([0.20, 0.22, 0.21, 0.19, 0.60]), floor=0.01)
    assert z[-1] > 10
    assert np.abs(z[:-1]).max() < 1.5
    assert np.isfinite(robust_z(np.ones(4), floor=0.03)).all()


def test_bad_relative_size_is_named(ctx):
    with pytest.raises(InvalidInputError, match="max_relative_size"):
        Poisoning(Poisoning.Params(max_relative_size=0.9)).run(ctx)


@pytest.fixture(scope="module")
def blended(digits_split):
    """A blended backdoor (Chen et al. 2017: a noise image mixed in at 15%) on 10% of the set, to class 2."""
    from roadworthy.backdoor import plant_blended

    x_tr, y_tr, _, _ = digits_split
    planted = plant_blended(x_tr, y_tr, target=2, rate=0.1, alpha=0.15, seed=0)
    return planted, _train_cnn(planted.x, planted.y)


def test_blended_backdoor_is_named_without_a_pasteable_trigger(blended, digits_split):
    planted, module = blended
    _, _, x_te, y_te = digits_split
    out = Poisoning().run(make_ctx(module, planted.x, planted.y, x_te, y_te))
    assert out.details["suspect_classes"] == ["2"]
    verdict = out.details["verdicts"][0]
    # no patch to paste: named because the group separates and its members look like other classes
    assert "look like other classes" in verdict["split"] and "drawn from other classes" in out.summary
    flagged = set(out.details["indices"])
    hits = len(flagged & set(planted.indices.tolist()))
    assert hits / len(planted.indices) >= 0.8 and hits / len(flagged) >= 0.8


@pytest.fixture(scope="module")
def badnets_low_rate(digits_split):
    """BadNets at 2% of the training set (26 samples, a sixth of the target class) to class 3."""
    from roadworthy.backdoor import plant_badnets

    x_tr, y_tr, _, _ = digits_split
    planted = plant_badnets(x_tr, y_tr, target=3, rate=0.02, size=3, seed=1)
    return planted, _train_cnn(planted.x, planted.y)


def test_low_rate_badnets_named_by_the_trigger_test(badnets_low_rate, digits_split):
    """At 2% the pasted group pattern need not reach 50% success; the verdict comes from the binomial test
    of its hits against the best other class's group pattern, so it must be significant and well above
    that null, whatever the exact success."""
    from roadworthy.backdoor import SIGNIFICANCE

    planted, module = badnets_low_rate
    _, _, x_te, y_te = digits_split
    out = Poisoning().run(make_ctx(module, planted.x, planted.y, x_te, y_te))
    assert out.details["suspect_classes"] == ["3"]
    assert "confirmed by trigger" in out.details["verdicts"][0]["split"]
    row = next(r for r in out.details["classes"] if r["label"] == 3)["untangling"]
    assert row["trigger_p"] < SIGNIFICANCE / 10
    assert row["trigger_success"] > 2 * row["trigger_null"]
    flagged = set(out.details["indices"])
    hits = len(flagged & set(planted.indices.tolist()))
    assert hits / len(planted.indices) >= 0.7 and hits / len(flagged) >= 0.8


def test_min_trigger_success_is_an_effect_floor(badnets_low_rate, digits_split):
    """A significant trigger below the effect floor is not a verdict by the trigger route."""
    planted, module = badnets_low_rate
    _, _, x_te, y_te = digits_split
    ctx = make_ctx(module, planted.x, planted.y, x_te, y_te)
    out = Poisoning(Poisoning.Params(min_trigger_success=1.0)).run(ctx)
    assert not any("confirmed by trigger" in v["split"] for v in out.details["verdicts"])


@pytest.fixture(scope="module")
def label_flipped(digits_split):
    """The demo's attack on digits: 26 fives (2% of the training set) relabelled 3, no trigger."""
    x_tr, y_tr, _, _ = digits_split
    rng = np.random.default_rng(3)
    flipped = np.sort(rng.choice(np.flatnonzero(y_tr == 5), size=26, replace=False))
    y = y_tr.copy()
    y[flipped] = 3
    return y, flipped, _train_cnn(x_tr, y)


def test_label_flip_named_by_its_concentrated_disagreement(label_flipped, digits_split):
    """A flip of 5 -> 3 is named through the (3, 5) cell of given vs out-of-sample labels, far above the
    cells of the other classes; the flipped rows are the suspects."""
    from roadworthy.backdoor import SIGNIFICANCE

    y, flipped, module = label_flipped
    x_tr, _, x_te, y_te = digits_split
    out = Poisoning().run(make_ctx(module, x_tr, y, x_te, y_te))
    assert out.details["suspect_classes"] == ["3"]
    verdict = out.details["verdicts"][0]
    assert verdict["resembles"] == "5" and "label disagreement" in verdict["split"]
    row = next(r for r in out.details["classes"] if r["label"] == 3)["label_pairs"]
    assert (
        row["source"] == 5 and row["p"] < SIGNIFICANCE / 10 and row["count"] > 2 * row["null_rate"] * row["n"]
    )
    flagged = set(out.details["indices"])
    hits = len(flagged & set(flipped.tolist()))
    assert hits / len(flipped) >= 0.8 and hits / len(flagged) >= 0.8


def test_a_look_alike_group_whose_labels_agree_out_of_sample_is_no_flip(
    backdoored_module, backdoored_digits, digits_split, monkeypatch
):
    """The look-alike rule proposes (source -> class); with an out-of-sample classifier that agrees with
    every given label the proposal is not confirmed and gives no verdict of its own (the patched group is
    still named, by its working trigger)."""
    x, y, _ = backdoored_digits
    _, _, x_te, y_te = digits_split
    monkeypatch.setattr(
        Poisoning, "_out_of_sample", lambda self, ctx, y: np.eye(ctx.n_classes)[y] * 0.9 + 0.01
    )
    out = Poisoning().run(make_ctx(backdoored_module, x, y, x_te, y_te))
    row = next(r for r in out.details["classes"] if r["label"] == 6)
    assert row["lookalike_confirmation"]["source"] == 3 and not row["lookalike_confirmation"]["confirmed"]
    assert all(v["evidence"] not in ("features", "inputs") for v in out.details["verdicts"])
    assert out.details["suspect_classes"] == ["6"]
    assert "confirmed by trigger" in out.details["verdicts"][0]["split"]


@pytest.fixture(scope="module")
def all_to_all(digits_split):
    """BadNets all-to-all at 2%: a white 3x3 corner square on about 3 samples of every class, c -> c + 1."""
    from roadworthy.backdoor import badnets_trigger, plant_all_to_all

    x_tr, y_tr, _, _ = digits_split
    planted = plant_all_to_all(x_tr, y_tr, badnets_trigger(x_tr.shape[1:], size=3), rate=0.02, seed=0)
    return planted, _train_cnn(planted.x, planted.y)


def test_all_to_all_named_by_one_pattern_across_classes(all_to_all, digits_split):
    """No class holds a group worth splitting; the poisoned samples are label disagreements sharing one
    pattern, so most classes are named, with the carriers as suspects."""
    planted, module = all_to_all
    _, _, x_te, y_te = digits_split
    out = Poisoning().run(make_ctx(module, planted.x, planted.y, x_te, y_te))
    pooled = out.details["pooled_trigger"]
    assert pooled["significant"] and pooled["held_out_disagreeing"] > 0.5 * pooled["held_out"]
    assert len(out.details["suspect_classes"]) >= 8
    assert any(v["split"].startswith("pooled trigger") for v in out.details["verdicts"])
    flagged = set(out.details["indices"])
    hits = len(flagged & set(planted.indices.tolist()))
    assert hits / len(planted.indices) >= 0.8 and hits / len(flagged) >= 0.8


def test_one_score_per_class_with_the_model_level_scan(backdoored_module, backdoored_digits, digits_split):
    """When integrity.backdoor_scan ran first in the session, every class gets one score over the
    data-level methods and the Neural Cleanse anomaly index (both robust z-scores), with the method that
    raised it, and a verdict notes whether the model-level scan names the class too."""
    from roadworthy.checks.integrity.backdoor import BackdoorScan

    x, y, _ = backdoored_digits
    _, _, x_te, y_te = digits_split
    ctx = make_ctx(backdoored_module, x, y, x_te, y_te)
    scan = BackdoorScan().run(ctx)  # quick budget
    out = Poisoning().run(ctx)
    nc = {r["label"]: r["anomaly_index"] for r in scan.details["classes"]}
    for row in out.details["classes"]:
        combined = row["combined"]
        assert combined["score"] >= nc[row["label"]] - 1e-3 and combined["method"]
        data_scores = [row[v]["score"] for v in out.details["views"]] + [row["untangling"]["score"]]
        assert combined["score"] >= max(data_scores) - 1e-3
    verdict = out.details["verdicts"][0]
    assert verdict["label"] == 6
    assert verdict["model_scan"]["flagged"] == ("6" in scan.details["suspect_classes"])
    assert out.details["model_scan"]["anomaly_index"]["6"] == pytest.approx(nc[6], abs=1e-3)


def test_without_the_model_level_scan_the_combined_score_is_data_level(clean_twin_module, digits_split):
    x_tr, y_tr, x_te, y_te = digits_split
    out = Poisoning().run(make_ctx(clean_twin_module, x_tr, y_tr, x_te, y_te))
    assert "model_scan" not in out.details
    assert all("neural cleanse" not in r["combined"]["method"] for r in out.details["classes"])


# ---------------------------------------------------------------------------------------------- review list


@pytest.fixture(scope="module")
def badnets_one_percent(digits_split):
    """BadNets at 1% of the training set (13 samples from every other class, to class 0): about one
    poisoned sample per source class, below what the class-level tests are sized for."""
    from roadworthy.backdoor import plant_badnets

    x_tr, y_tr, _, _ = digits_split
    planted = plant_badnets(x_tr, y_tr, target=0, rate=0.01, size=3, seed=0)
    return planted, _train_cnn(planted.x, planted.y)


def _check_screen(out, y, level):
    """The label screen's rows are rows the out-of-sample classifier calls another class whose
    conformal p-value against the evaluation rows is at most ``level``, most disputed first."""
    screen = out.details["review"]["screen"]
    assert screen["level"] == level and screen["calibration_rows"] > 0
    rows, prob, pv, pred = (np.asarray(screen[k]) for k in ("rows", "given_label_prob", "p", "predicted"))
    assert len(rows) == len(set(rows.tolist())) == len(prob) == len(pv) == len(pred)
    assert (pv <= level).all() and (pred != y[rows]).all()
    assert (np.diff(prob) >= 0).all()
    return rows


def test_low_rate_poisoning_rows_are_listed_for_review(badnets_one_percent, digits_split):
    """Whether or not a class is named, nearly all of a 1% dirty-label backdoor's rows are in the
    reviewer's list, at a precision far above the 1% base rate; where no class is named the list is
    the label screen and no verdict is raised by it."""
    planted, module = badnets_one_percent
    _, _, x_te, y_te = digits_split
    out = Poisoning().run(make_ctx(module, planted.x, planted.y, x_te, y_te))
    review = out.details["review"]
    rows = set(review["rows"])
    hits = len(rows & set(planted.indices.tolist()))
    assert hits / len(planted.indices) >= 0.7
    assert hits / len(rows) >= 0.1  # 10x the base rate (ART's detectors: 0.01-0.04 here)
    screen = _check_screen(out, planted.y, Poisoning.Params().screen_level)
    assert len(set(screen.tolist()) & set(planted.indices.tolist())) / len(planted.indices) >= 0.7
    if out.details["suspect_classes"]:
        assert review["source"].startswith("verdict suspects")
        assert review["rows"][: len(out.details["indices"])] == out.details["indices"]
    else:
        assert review["source"] == "label screen" and review["rows"] == screen.tolist()
        assert out.metrics["integrity.poisoning.suspect_count"] == 0
        assert "listed for review" in out.summary and "no class is named" in out.summary


def test_clean_twin_review_is_the_label_screen_only(clean_twin_module, digits_split):
    """A clean model names no class; its review list is the label screen: a few percent of the rows,
    whose labels the out-of-sample classifier disputes; a stricter level lists a subset, a looser one a
    superset."""
    x_tr, y_tr, x_te, y_te = digits_split
    ctx = make_ctx(clean_twin_module, x_tr, y_tr, x_te, y_te)
    out = Poisoning().run(ctx)
    assert out.details["suspect_classes"] == [] and out.details["indices"] == []
    review = out.details["review"]
    assert review["source"] == "label screen"
    rows = _check_screen(out, y_tr, 0.01)
    assert review["rows"] == rows.tolist()
    assert len(rows) <= 0.05 * len(y_tr)
    strict = _check_screen(Poisoning(Poisoning.Params(screen_level=0.004)).run(ctx), y_tr, 0.004)
    loose = _check_screen(Poisoning(Poisoning.Params(screen_level=0.05)).run(ctx), y_tr, 0.05)
    assert set(strict.tolist()) <= set(rows.tolist()) <= set(loose.tolist())


def test_screen_needs_enough_evaluation_rows(clean_twin_module, digits_split):
    """A level finer than the evaluation data can calibrate lists nothing and says why."""
    x_tr, y_tr, x_te, y_te = digits_split
    out = Poisoning(Poisoning.Params(screen_level=0.001)).run(
        make_ctx(clean_twin_module, x_tr, y_tr, x_te[:100], y_te[:100])
    )
    screen = out.details["review"]["screen"]
    assert "rows" not in screen and "999" in screen["skipped"]
    assert out.details["review"]["rows"] == []


def test_with_a_verdict_the_review_is_the_verdict_suspects(backdoored_outcome, backdoored_digits):
    _, y, _ = backdoored_digits
    out = backdoored_outcome
    assert out.details["suspect_classes"] == ["6"]
    review = out.details["review"]
    assert review["source"].startswith("verdict suspects")
    assert review["rows"][: len(out.details["indices"])] == out.details["indices"]
    _check_screen(out, y, 0.01)  # reported beside the verdict
    _extras_are_screened_rows_of_disagreement_classes(out, y)


def _extras_are_screened_rows_of_disagreement_classes(out, y):
    """Review rows beyond the verdict suspects are screened rows of a class named by label disagreement."""
    review, n = out.details["review"], len(out.details["indices"])
    extra = review["rows"][n:]
    by_disagreement = {
        v["label"]
        for v in out.details["verdicts"]
        if v["evidence"] == "label disagreement" or "confirmed by label disagreement" in v["split"]
    }
    assert set(extra) <= set(review["screen"]["rows"]) and not set(extra) & set(out.details["indices"])
    assert all(y[i] in by_disagreement for i in extra)
    assert bool(extra) == ("screened rows" in review["source"])
    return extra


def test_label_flip_review_adds_the_named_class_screened_rows(label_flipped, digits_split):
    """A flip named by label disagreement: flipped rows that the out-of-sample classifier calls a third
    class (not the source) are not in the verdict's cell, but the calibrated screen lists them; the review
    list holds the verdict's suspects and those rows, so its recall is at least the verdict's at a
    precision still far above the base rate."""
    y, flipped, module = label_flipped
    x_tr, _, x_te, y_te = digits_split
    out = Poisoning().run(make_ctx(module, x_tr, y, x_te, y_te))
    assert out.details["suspect_classes"] == ["3"]
    _extras_are_screened_rows_of_disagreement_classes(out, y)
    truth = set(flipped.tolist())
    review, verdict = set(out.details["review"]["rows"]), set(out.details["indices"])
    assert len(review & truth) >= len(verdict & truth)
    assert len(review & truth) / len(review) >= 0.8


def test_bad_screen_level_is_named(ctx):
    for level in (0.0, 1.0):
        with pytest.raises(InvalidInputError, match="screen_level"):
            Poisoning(Poisoning.Params(screen_level=level)).run(ctx)
