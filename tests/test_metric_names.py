"""The machine-readable metric names (shipped in the package) agree with docs/metrics.md."""

from __future__ import annotations

import re
from pathlib import Path

from roadworthy import metric_names

DOCS = Path(__file__).resolve().parents[1] / "docs" / "metrics.md"


def _documented() -> set[str]:
    """Names in the first column of docs/metrics.md's tables, shorthand (`.rate`, `_p95`) expanded."""
    names: set[str] = set()
    for line in DOCS.read_text(encoding="utf-8").splitlines():
        if not line.startswith("| `"):
            continue
        first = line.split("|")[1]
        codes = re.findall(r"`([^`]+)`", first)
        base = codes[0]
        names.add(base)
        for short in codes[1:]:
            if short.startswith("."):
                names.add(base.rsplit(".", 1)[0] + short)
            elif short.startswith("_"):
                # `_p95_batch64` after `sanity.latency_ms_p50_batch64`: as many `_` parts as it has
                names.add(base.rsplit("_", short.count("_"))[0] + short)
            else:
                names.add(short)
    return names


def test_patterns_are_the_documented_names():
    assert set(metric_names.PATTERNS) == _documented()


def test_placeholder_values_are_the_documented_lists():
    text = DOCS.read_text(encoding="utf-8")
    shifts = re.search(r"Shifts: (.*?)`roadworthy list`", text, re.S).group(1)
    assert set(metric_names.SHIFTS) == set(re.findall(r"[a-z_]+", re.sub(r"\(.*?\)", "", shifts)))
    attacks = re.search(r"Attacks: (.*?)\n\n", text, re.S).group(1)
    assert set(metric_names.ATTACKS) == {w for grp in re.findall(r"`([^`]+)`", attacks) for w in grp.split()}


def test_names_a_run_produces_are_known(digits_model, digits_data, digits_train_data):
    """Every metric of a real quick run (sanity, clean, integrity) is known to the validator."""
    from roadworthy.session import Session

    report = Session(
        model=digits_model,
        data=digits_data,
        train_data=digits_train_data,
        suites=["sanity", "clean", "integrity"],
        budget="quick",
    ).run()
    unknown = [m for m in report.metrics if not metric_names.is_known(m)]
    assert report.metrics and unknown == []


def test_wildcards_overlap_like_shell_patterns():
    assert metric_names.globs_overlap("attack.*.robust_accuracy", "attack.fgsm.eps_*.robust_accuracy")
    assert metric_names.globs_overlap("*", "clean.accuracy")
    assert not metric_names.globs_overlap("attack.*.queries", "attack.fgsm.robust_accuracy")
    assert not metric_names.globs_overlap("clean.*x", "clean.accuracy")
