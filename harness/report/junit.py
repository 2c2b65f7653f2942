"""junit.xml: one testcase per SLO (pure function of the summary)."""

from __future__ import annotations

from xml.etree import ElementTree as ET

from harness.report.fmt import fmt_value


def render_junit(run: dict, summary: dict | None) -> str:
    name = run.get("scenario", {}).get("name", "scenario")
    slos = (summary or {}).get("slos", [])
    failures = sum(1 for s in slos if not s["passed"])
    suites = ET.Element("testsuites", name="harness", tests=str(len(slos)), failures=str(failures), errors="0")
    suite = ET.SubElement(suites, "testsuite", name=f"harness.{name}", tests=str(len(slos)), failures=str(failures),
                          errors="0", skipped="0", time=f"{run.get('stage_durations_s', {}).get('load_s', 0):.3f}")
    props = ET.SubElement(suite, "properties")
    for k, v in (("run_id", run.get("run_id")), ("status", run.get("status")), ("ray", run.get("environment", {}).get("ray"))):
        ET.SubElement(props, "property", name=k, value=str(v))
    if summary is None:
        case = ET.SubElement(suite, "testcase", classname=f"harness.{name}", name="run", time="0")
        ET.SubElement(case, "error", message=f"run {run.get('status')}: {run.get('error') or 'no summary'}", type="RunError")
        suites.set("errors", "1")
        suite.set("errors", "1")
        suite.set("tests", "1")
    for s in slos:
        case = ET.SubElement(suite, "testcase", classname=f"harness.{name}", name=s["slo"], time="0")
        if not s["passed"]:
            obs = fmt_value(s["observed"], s["unit"]) if s["observed"] is not None else "no data"
            msg = f"{s['slo']}: observed {obs}, threshold {s['op']} {fmt_value(s['threshold'], s['unit'])} ({s['source']})"
            ET.SubElement(case, "failure", message=msg, type="SLOFailed").text = s.get("reason") or msg
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"
