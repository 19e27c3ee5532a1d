"""The public metric names, as data the policy validator reads (``docs/metrics.md`` in machine form).

``docs/`` is not installed with the package, so the names a gate may refer to live here; a test keeps
this list and ``docs/metrics.md`` in step. A pattern holds placeholders in angle brackets
(``shift.<shift>.s<k>.accuracy``); :func:`known_names` fills them with the values a run can produce
(the registered shifts, attacks and detectors, severities 1-5, any strength) and returns shell-style
patterns (``*`` for an open value such as a strength).
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Iterable
from functools import cache, lru_cache

#: Every documented metric name or pattern, in the order of docs/metrics.md.
PATTERNS: tuple[str, ...] = (
    # sanity
    "sanity.determinism",
    "sanity.max_output_difference",
    "sanity.batch_invariance",
    "sanity.batch_max_difference",
    "sanity.outputs_valid",
    "sanity.latency_ms_p50",
    "sanity.latency_ms_p95",
    "sanity.latency_ms_p50_batch64",
    "sanity.latency_ms_p95_batch64",
    # clean
    "clean.accuracy",
    "clean.balanced_accuracy",
    "clean.worst_class_accuracy",
    "clean.macro_f1",
    "clean.ece",
    # shift
    "shift.<shift>.s<k>.accuracy",
    "shift.<shift>.accuracy",
    "shift.<shift>.in_envelope_failures",
    "shift.<shift>.out_of_envelope_failures",
    "shift.mean_accuracy",
    "shift.rpc",
    "shift.worst_accuracy",
    "shift.flip_rate",
    "shift.ece",
    "shift.mce",
    "shift.relative_mce",
    "shift.tab_feature_sensitivity.worst_accuracy",
    "shift.tab_feature_sensitivity.max_drop",
    # ood
    "ood.<detector>.auroc",
    "ood.<detector>.fpr95",
    "ood.<detector>.aupr",
    "ood.<detector>.<source>.auroc",
    "ood.<detector>.<source>.fpr95",
    "ood.best_auroc",
    "ood.best_fpr95",
    "ood.validity.clean_in_envelope",
    "ood.calibration.ece",
    "ood.calibration.brier",
    "ood.calibration.nll",
    "ood.calibration.ece_shifted",
    "ood.calibration.brier_shifted",
    "ood.calibration.nll_shifted",
    "ood.calibration.temperature",
    "ood.calibration.ece_after_temperature",
    "ood.calibration.ece_shifted_after_temperature",
    # attack
    "attack.<attack>.robust_accuracy",
    "attack.<attack>.eps_<e>.robust_accuracy",
    "attack.<attack>.success_rate",
    "attack.<attack>.median_perturbation",
    "attack.<attack>.queries",
    "attack.<attack>.trustworthy",
    "attack.<attack>.trust.gradients",
    "attack.<attack>.trust.huge_eps",
    "attack.<attack>.trust.monotone",
    "attack.<attack>.trust.agreement",
    "attack.<attack>.passes_over_floor",
    "attack.<attack>.trust.progress",
    "attack.<attack>.trust.stability",
    "attack.<attack>.trust.coverage",
    "attack.<attack>.trust.beats_noise",
    "attack.hopskipjump.start_failures",
    "attack.trustworthy",
    # fuzz
    "fuzz.<criterion>.coverage",
    "fuzz.<criterion>.coverage_before",
    "fuzz.failures",
    "fuzz.valid_failures",
    "fuzz.invalid_failures",
    "fuzz.unique_failures",
    "fuzz.mutants",
    "fuzz.failure_rate",
    "fuzz.random.<criterion>.coverage",
    "fuzz.random.<criterion>.coverage_before",
    "fuzz.random.failures",
    "fuzz.random.valid_failures",
    "fuzz.random.invalid_failures",
    "fuzz.random.unique_failures",
    "fuzz.random.mutants",
    "fuzz.random.failure_rate",
    # parity
    "parity.<inputs>.disagreement",
    "parity.<inputs>.max_abs_logit_diff",
    "parity.<inputs>.p99_abs_logit_diff",
    "parity.<inputs>.accuracy",
    "parity.<inputs>.reference_accuracy",
    "parity.disagreement",
    "parity.fuzz.queries",
    "parity.fuzz.disagreements",
    "parity.fuzz.invalid_disagreements",
    "parity.fuzz.seeds_with_disagreement",
    "parity.fuzz.disagreements_per_10k",
    "parity.fuzz.random.queries",
    "parity.fuzz.random.disagreements",
    "parity.fuzz.random.invalid_disagreements",
    "parity.fuzz.random.seeds_with_disagreement",
    "parity.fuzz.random.disagreements_per_10k",
    # integrity
    "integrity.label_issues.count",
    "integrity.label_issues.rate",
    "integrity.poisoning.suspect_count",
    "integrity.poisoning.score",
    "integrity.backdoor_scan.max_anomaly_index",
    "integrity.backdoor_scan.suspect_count",
    "integrity.backdoor_scan.mask_ratio",
    "integrity.backdoor_scan.attack_success",
    "integrity.strip.false_rejection_rate",
    "integrity.strip.detection_rate",
    "integrity.strip.threshold",
    "integrity.duplicates.count",
    "integrity.duplicates.rate",
    "integrity.duplicates.conflicting_labels",
    "integrity.leakage.count",
    "integrity.leakage.rate",
    "integrity.outliers.count",
    "integrity.outliers.rate",
    "integrity.class_balance.imbalance_ratio",
    "integrity.class_balance.missing_classes",
)

#: Suffixes every measured proportion also carries (``X_ci_low``, ``X_ci_high``, ``X_n``).
SUFFIXES: tuple[str, ...] = ("_ci_low", "_ci_high", "_n")

#: Placeholder values named in docs/metrics.md; the registered checks add theirs at run time.
SHIFTS: tuple[str, ...] = (
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "defocus_blur",
    "glass_blur",
    "motion_blur",
    "zoom_blur",
    "snow",
    "frost",
    "fog",
    "brightness",
    "contrast",
    "elastic_transform",
    "pixelate",
    "jpeg_compression",
    "speckle_noise",
    "gaussian_blur",
    "spatter",
    "saturate",
    "sun_fading",
    "vegetation",
    "stickers",
    "low_light",
    "rain",
    "rotation",
    "scale",
    "translation",
    "perspective",
    "tab_gaussian_noise",
    "tab_missing_values",
    "tab_unit_drift",
    "tab_category_shift",
    "tab_unseen_category",
    "tab_feature_dropout",
    "tab_outliers",
    "tab_covariate_shift",
    "tab_label_shift",
)
ATTACKS: tuple[str, ...] = (
    "fgsm",
    "pgd_linf",
    "pgd_l2",
    "apgd_ce",
    "apgd_dlr",
    "autoattack",
    "square",
    "hopskipjump",
    "pixels",
    "line",
    "laser",
    "sticker",
    "tab_score",
    "tab_boundary",
    "tab_pgd",
)
DETECTORS: tuple[str, ...] = (
    "msp",
    "max_logit",
    "energy",
    "mahalanobis",
    "knn",
    "input_mahalanobis",
    "input_knn",
    "isolation_forest",
)
CRITERIA: tuple[str, ...] = ("nc", "kmnc", "nbc", "snac", "tknc", "prediction")
#: where the parity suite's inputs come from (``parity.<inputs>.disagreement``)
PARITY_INPUTS: tuple[str, ...] = ("clean", "shift", "adversarial", "mutants")
SOURCES: tuple[str, ...] = (
    "uniform_noise",
    "gaussian_noise",
    "flat_colour",
    "photos",
    "uniform_in_range",
    "shift_*",
    "user",
)


def _registered(suite: str, exclude: Iterable[str] = ()) -> list[str]:
    from roadworthy.checks import load_builtin_checks

    skip = {f"{suite}.{e}" for e in ("summary", *exclude)}
    return [
        cid.split(".", 1)[1]
        for cid in load_builtin_checks()
        if cid.startswith(f"{suite}.") and cid not in skip
    ]


@lru_cache(maxsize=1)
def known_names() -> tuple[str, ...]:
    """Every metric name a built-in check can produce, as shell patterns (``*`` where any value fits)."""
    values = {
        "<shift>": sorted({*SHIFTS, *_registered("shift", ("tab_feature_sensitivity",))}),
        "<attack>": sorted({*ATTACKS, *_registered("attack")}),
        "<detector>": sorted({*DETECTORS, *_registered("ood", ("calibration", "validity"))}),
        "<source>": list(SOURCES),
        "<inputs>": list(PARITY_INPUTS),
        "<criterion>": list(CRITERIA),
        "<k>": ["1", "2", "3", "4", "5"],
        "<e>": ["*"],
    }
    names: list[str] = []
    for pattern in PATTERNS:
        expanded = [pattern]
        for key, options in values.items():
            expanded = [e.replace(key, v) for e in expanded for v in (options if key in e else [""])]
        names.extend(expanded)
    return tuple(dict.fromkeys(n + s for n in names for s in ("", *SUFFIXES)))


def globs_overlap(a: str, b: str) -> bool:
    """Whether some name matches both shell patterns ``a`` and ``b`` (only ``*`` is special)."""

    @cache
    def go(i: int, j: int) -> bool:
        if i == len(a) and j == len(b):
            return True
        # a star matches nothing more, or swallows the other pattern's next symbol (a star included)
        if i < len(a) and a[i] == "*" and (go(i + 1, j) or (j < len(b) and go(i, j + 1))):
            return True
        if j < len(b) and b[j] == "*" and (go(i, j + 1) or (i < len(a) and go(i + 1, j))):
            return True
        return i < len(a) and j < len(b) and a[i] == b[j] and a[i] != "*" and go(i + 1, j + 1)

    return go(0, 0)


def is_known(metric: str, extra_prefixes: Iterable[str] = ()) -> bool:
    """Whether ``metric`` (a name or a ``*`` pattern) can name a metric of a built-in or selected check.

    ``extra_prefixes`` are ids of selected checks that docs/metrics.md does not describe (plug-ins): any
    name under them (``myteam.check.value``) is accepted.
    """
    if any(metric.startswith(p + ".") or globs_overlap(metric, p + ".*") for p in extra_prefixes):
        return True
    if "*" in metric:
        return any(globs_overlap(metric, n) for n in known_names())
    return any(fnmatch.fnmatchcase(metric, n) for n in known_names())


def nearest(metric: str) -> str | None:
    """The known metric name closest to ``metric`` (for a "did you mean" hint), or None."""
    candidates = [n.replace("*", "0.03137" if "eps_" in n else "x") for n in known_names()]
    close = difflib.get_close_matches(metric.replace("*", "x"), candidates, n=1, cutoff=0.6)
    return close[0] if close else None
