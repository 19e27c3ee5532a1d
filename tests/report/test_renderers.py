"""Renderers: saved reference outputs, escaping, self-containment, schema round trip."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from roadworthy.report import render, write_reports
from roadworthy.results import Report, load_report
from tests.report._fixtures import HOSTILE, fixed_report

GOLDEN = Path(__file__).parent / "golden"


@pytest.mark.parametrize(("fmt", "name"), [("markdown", "report.md"), ("junit", "junit.xml")])
def test_matches_saved_reference(fmt, name):
    """Saved outputs; regenerate with ROADWORTHY_UPDATE_GOLDEN=1 after an intended change, then review the diff."""
    import os

    text = render(fixed_report(), fmt)
    path = GOLDEN / name
    if os.environ.get("ROADWORTHY_UPDATE_GOLDEN"):
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8")


def test_junit_has_one_case_per_gate():
    root = ET.fromstring(render(fixed_report(), "junit"))
    cases = root.findall(".//testcase")
    assert [c.get("name") for c in cases] == [g.rule for g in fixed_report().gates]
    assert root.get("failures") == "1" and root.get("skipped") == "1"
    assert cases[1].find("failure") is not None and cases[2].find("skipped") is not None


def test_html_escapes_user_text_and_needs_no_network():
    html = render(fixed_report(), "html")
    assert HOSTILE not in html
    assert "&lt;script&gt;" in html
    assert "<script" not in html.lower()
    assert "javascript:" not in html  # unsafe image URIs are dropped, not embedded
    # nothing is fetched: no http(s) resources, and the CSP forbids it anyway
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert "default-src 'none'" in html
    # verdict first, then gates, then checks
    assert html.index('id="verdict"') < html.index('id="gates"') < html.index('id="suite-clean"')
    assert "NOT READY" in html and "not evaluated" in html


def test_markdown_is_short_and_table_safe():
    md = render(fixed_report(), "markdown")
    assert len(md) < 60_000
    assert "**NOT READY**" in md
    assert "bad \\| pipe" in md  # a pipe in a message does not break the table
    # raw HTML only inside code spans, where GitHub shows it as text
    assert "<script>" not in re.sub(r"`[^`]*`", "", md)


def test_write_reports_and_round_trip(tmp_path):
    written = write_reports(fixed_report(), tmp_path)
    assert set(written) == {"json", "html", "markdown", "junit"}
    again = load_report(str(written["json"]))
    assert again == fixed_report()


def test_non_finite_metrics_become_null(tmp_path):
    r = fixed_report()
    r.metrics["shift.ece"] = float("nan")
    raw = json.loads(render(r, "json"))
    assert raw["metrics"]["shift.ece"] is None


metric_names = st.from_regex(r"[a-z]{1,8}(\.[a-z_]{1,10}){1,3}", fullmatch=True)


@settings(max_examples=40, deadline=None)
@given(
    metrics=st.dictionaries(
        metric_names, st.floats(allow_nan=False, allow_infinity=False, width=64), max_size=12
    )
)
def test_report_survives_a_json_round_trip(metrics):
    r = fixed_report()
    r.metrics = metrics
    back = Report.model_validate_json(render(r, "json"))
    assert back.metrics.keys() == metrics.keys()
    assert all(math.isclose(back.metrics[k], v, rel_tol=0, abs_tol=0) for k, v in metrics.items())


def test_load_report_errors(tmp_path):
    from roadworthy.errors import InvalidInputError

    p = tmp_path / "r.json"
    p.write_text("{not json")
    with pytest.raises(InvalidInputError, match=r"r.json: not a readable JSON report"):
        load_report(str(p))
    p.write_text(json.dumps({"schema_version": "9"}))
    with pytest.raises(InvalidInputError, match=r"schema_version '1', found '9'"):
        load_report(str(p))


def test_html_draws_evidence_from_the_report_alone():
    """Figures come from ``details["evidence"]``: a check no registry knows still shows its plots."""
    import subprocess
    import sys

    from roadworthy import evidence
    from roadworthy.results import CheckResult

    report = fixed_report()
    report.checks.append(
        CheckResult(
            id="future.check",
            suite="future",
            title="A check from a newer roadworthy",
            status="pass",
            details={
                "evidence": [
                    evidence.lines("a curve of the future", {"s": ([0, 1], [0.2, 0.8])}, "x", "y"),
                    {"kind": "hologram", "caption": "an unknown kind"},
                    {"kind": "image", "caption": "hostile uri", "uri": "javascript:alert(1)"},
                ]
            },
        )
    )
    html = render(report, "html")
    assert "a curve of the future" in html
    assert "an unknown kind" not in html and "javascript:alert(1)" not in html
    code = (
        "import sys, roadworthy.report.html, roadworthy.report.figures; "
        "sys.exit(any(m.startswith('roadworthy.checks') for m in sys.modules))"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
