"""``junit.xml``: one test case per gate, so any CI shows which rule held and which failed."""

from __future__ import annotations

from xml.etree import ElementTree as ET

from roadworthy.results import Report


def render_junit(report: Report) -> str:
    """JUnit XML: a failed gate is a ``<failure>``, a gate on an unmeasured metric is ``<skipped>``."""
    cases = report.gates
    failures = sum(1 for g in cases if g.passed is False)
    skipped = sum(1 for g in cases if g.passed is None)
    duration = sum(c.duration_s for c in report.checks)
    suites = ET.Element(
        "testsuites",
        name="roadworthy",
        tests=str(len(cases)),
        failures=str(failures),
        errors="0",
        skipped=str(skipped),
        time=f"{duration:.3f}",
    )
    state = "incomplete" if report.incomplete is not None else report.verdict
    suite = ET.SubElement(
        suites,
        "testsuite",
        name=f"roadworthy gates ({state})",
        tests=str(len(cases)),
        failures=str(failures),
        errors="0",
        skipped=str(skipped),
        time=f"{duration:.3f}",
        timestamp=report.created,
    )
    props = ET.SubElement(suite, "properties")
    for k, v in (
        ("verdict", report.verdict),
        ("model", report.model.path or ""),
        ("seed", str(report.seed)),
        ("budget", report.budget),
        ("roadworthy", report.tool.version),
        *((("incomplete", report.incomplete.reason),) if report.incomplete is not None else ()),
        *(("warning", w) for w in report.warnings),
    ):
        ET.SubElement(props, "property", name=k, value=v)
    for g in cases:
        classname = f"roadworthy.{g.source}" + (f".{g.metric.split('.', 1)[0]}" if g.metric else "")
        case = ET.SubElement(suite, "testcase", name=g.rule, classname=classname, time="0")
        value = "not measured" if g.value is None else f"{g.value:.6g}"
        if g.passed is False:
            why = f"value {value}" + (f" ({g.note})" if g.note else "")
            f = ET.SubElement(case, "failure", message=f"{g.rule} failed: {why}", type="GateFailed")
            f.text = f"measured {g.metric} = {value}; rule: {g.rule}" + (f"; {g.note}" if g.note else "")
        elif g.passed is None:
            ET.SubElement(case, "skipped", message=f"not evaluated: {g.metric} was not measured")
        else:
            ET.SubElement(case, "system-out").text = f"{g.metric} = {value}"
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"
