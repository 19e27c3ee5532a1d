"""``report.html``: one self-contained page (no network, no scripts), verdict first.

Everything user-controlled (class names, paths, messages) is escaped by Jinja2's autoescaping; images
are inline data URIs that must be PNG or SVG (checked here), so the page opens offline and nothing in
it can run code. A Content-Security-Policy forbids any fetch.
"""

from __future__ import annotations

import logging
import math
import re
from collections import OrderedDict
from typing import Any

from roadworthy.errors import plural
from roadworthy.evidence import KEY as EVIDENCE_KEY
from roadworthy.report.text import HEADLINE_METRICS, fmt_value, verdict_label, verdict_sentence
from roadworthy.results import CheckResult, Report

log = logging.getLogger("roadworthy")

_SAFE_URI = re.compile(r"^data:image/(png|svg\+xml|jpeg);base64,[A-Za-z0-9+/=]+$")

# Which NIST AI 100-2 class each suite's tests belong to (algorithms-spec section H).
THREAT_MODEL = OrderedDict(
    [
        (
            "sanity",
            ("deployment", "not an attack: engineering hygiene (determinism, batch effects, latency)"),
        ),
        ("clean", ("deployment", "not an attack: baseline accuracy on data like the test set")),
        (
            "shift",
            ("deployment", "distribution shift (robustness to natural corruptions; not an attack class)"),
        ),
        ("ood", ("deployment", "distribution shift: detection of unfamiliar inputs and calibration")),
        ("attack", ("deployment", "evasion (integrity violation, untargeted): white-box and black-box")),
        ("fuzz", ("deployment", "evasion: natural-perturbation robustness found by coverage-guided fuzzing")),
        (
            "parity",
            ("deployment", "not an attack: the shipped artifact against the model that was tested"),
        ),
        (
            "integrity",
            ("training", "poisoning: data integrity audit (label errors, targeted/backdoor poisoning)"),
        ),
    ]
)

OUT_OF_SCOPE = (
    "privacy attacks (membership inference, model extraction, data reconstruction, property inference)",
    "model poisoning and supply-chain attacks on the model file or its dependencies",
    "physical-world attacks: the laser and sticker attacks model physical perturbations digitally only",
    "generative-AI abuse (prompt injection, jailbreaks)",
)

LIMITATIONS = (
    "Attack results are empirical lower bounds on vulnerability, not certificates of robustness.",
    "Detectors (label issues, poisoning, OOD) have false positives and false negatives: flagged samples "
    "are candidates for human review.",
    "Every number depends on the seed, the budget and the evaluation sample; intervals are 95% Wilson "
    "intervals on that sample.",
    "Shift severities follow ImageNet-C / CIFAR-10-C tables adapted to the image size; values are not "
    "comparable with published ImageNet-C numbers.",
)


def safe_uri(uri: str | None) -> str:
    """Return ``uri`` if it is an inline PNG/SVG/JPEG data URI, else an empty string."""
    if uri and _SAFE_URI.match(uri):
        return uri
    return ""


def _figures(result: CheckResult) -> list[tuple[str, str]]:
    """``(caption, data URI)`` for each evidence item of ``result`` (see :mod:`roadworthy.evidence`).

    Drawn from the report alone: no check code is imported, so a report of any check renders. A kind
    this version cannot draw, or an item that fails to draw, is left out with a log line.
    """
    from roadworthy.report.figures import draw

    items = result.details.get(EVIDENCE_KEY) or []
    if result.status in ("skipped", "error") or not isinstance(items, list):
        return []
    out = []
    for item in items:
        if not isinstance(item, dict):
            continue
        try:
            drawn = draw(item)
        except Exception as exc:  # noqa: BLE001 - a broken figure must not cost the report
            log.warning("figure for %s failed: %s", result.id, exc)
            continue
        if drawn is None:
            log.info("%s: evidence of kind %r is not drawn by this version", result.id, item.get("kind"))
        elif safe_uri(drawn[1]):
            out.append((drawn[0], drawn[1]))
    return out


def metric_rows(metrics: dict[str, float | None]) -> list[dict[str, Any]]:
    """One row per metric, with its CI bounds and sample count folded in."""
    rows = []
    for name in sorted(metrics):
        if name.endswith(("_ci_low", "_ci_high")) or (name.endswith("_n") and name[:-2] in metrics):
            continue
        lo, hi, n = metrics.get(f"{name}_ci_low"), metrics.get(f"{name}_ci_high"), metrics.get(f"{name}_n")
        rows.append(
            {
                "name": name,
                "value": fmt_value(metrics[name]),
                "ci": f"{fmt_value(lo)} – {fmt_value(hi)}" if lo is not None and hi is not None else "",
                "n": int(n) if n is not None and math.isfinite(n) else "",
            }
        )
    return rows


def _shift_order(item: dict[str, Any]) -> tuple[int, float]:
    r: CheckResult = item["r"]
    if r.id == "shift.summary":
        return (0, 0.0)
    acc = r.metrics.get(f"{r.id}.accuracy")
    return (1, acc) if acc is not None and math.isfinite(acc) else (2, 0.0)


def render_html(report: Report) -> str:
    """The whole report as one HTML string."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("roadworthy", "report/templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = fmt_value
    env.filters["safe_uri"] = safe_uri
    env.filters["plural"] = plural
    suites: OrderedDict[str, list[dict[str, Any]]] = OrderedDict()
    for c in report.checks:
        suites.setdefault(c.suite, []).append(
            {"r": c, "figures": _figures(c), "metrics": metric_rows(c.metrics)}
        )
    if "shift" in suites:  # worst shifts first, the summary above them
        suites["shift"].sort(key=_shift_order)
    suite_rows = []
    for suite, items in suites.items():
        stage, nist = THREAT_MODEL.get(suite, ("deployment", ""))
        ran = [i["r"] for i in items if i["r"].status not in ("skipped",)]
        suite_rows.append(
            {"suite": suite, "stage": stage, "nist": nist, "ran": len(ran), "total": len(items)}
        )
    counts: dict[str, int] = {}
    for c in report.checks:
        counts[c.status] = counts.get(c.status, 0) + 1
    headline = [
        {**row, "name": row["name"]} for row in metric_rows(report.metrics) if row["name"] in HEADLINE_METRICS
    ]
    headline.sort(key=lambda r: HEADLINE_METRICS.index(r["name"]))
    gates = sorted(report.gates, key=lambda g: {False: 0, None: 2, True: 1}[g.passed])
    template = env.get_template("report.html.j2")
    return template.render(
        report=report,
        verdict_sentence=verdict_sentence(report),
        verdict_label=verdict_label(report),
        verdict_class="incomplete" if report.incomplete is not None else report.verdict,
        gates=gates,
        headline=headline,
        suites=suites,
        suite_rows=suite_rows,
        all_metrics=metric_rows(report.metrics),
        counts=counts,
        out_of_scope=OUT_OF_SCOPE,
        limitations=LIMITATIONS,
    )
