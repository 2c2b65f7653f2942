"""junit.xml: one testcase per SLO (pure function of the record). Validates against the JUnit schema CI systems
read (tests/fixtures/junit/junit.xsd): testsuite carries timestamp and hostname, testcase name/classname/time."""

from __future__ import annotations

import time
from xml.etree import ElementTree as ET

from harness.report.fmt import fmt_value


def _timestamp(run: dict) -> str:
    t = (run.get("timeline") or {}).get("load_started_at") or (run.get("timeline") or {}).get("created_at") or 0.0
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(float(t)))


def _hostname(run: dict) -> str:
    env = run.get("environment") or {}
    return (
        str(env.get("hostname") or (run.get("stack") or {}).get("ray_address") or "localhost").split(":")[0]
        or "localhost"
    )


def render_junit(run: dict, summary: dict | None) -> str:
    name = run.get("scenario", {}).get("name", "scenario")
    cls = f"harness.{name}"
    slos = (summary or {}).get("slos", [])
    status = (summary or {}).get("status") or run.get("status")
    run_error = summary is None or status != "completed"
    load_bad = not run_error and bool((summary or {}).get("measure_only") and summary.get("load_failure"))
    failures = sum(1 for s in slos if not s["passed"]) + load_bad
    tests, errors = len(slos) + (1 if run_error else 0) + load_bad, 1 if run_error else 0
    dur = f"{float(run.get('stage_durations_s', {}).get('load_s', 0) or 0):.3f}"
    suites = ET.Element(
        "testsuites", name="harness", tests=str(tests), failures=str(failures), errors=str(errors), time=dur
    )
    suite = ET.SubElement(
        suites,
        "testsuite",
        name=cls,
        tests=str(tests),
        failures=str(failures),
        errors=str(errors),
        skipped="0",
        time=dur,
        timestamp=_timestamp(run),
        hostname=_hostname(run),
    )
    props = ET.SubElement(suite, "properties")
    env = run.get("environment", {})
    for k, v in (
        ("run_id", run.get("run_id")),
        ("status", status),
        ("ray", env.get("ray")),
        ("vllm", env.get("vllm")),
        ("git_commit", env.get("git_commit")),
    ):
        ET.SubElement(props, "property", name=k, value=str(v))
    if run_error:  # a run that did not complete fails the build even if every SLO measured so far passed
        case = ET.SubElement(suite, "testcase", classname=cls, name="run completed", time="0")
        why = run.get("error") or ("no summary was written" if summary is None else f"status {status}")
        ET.SubElement(case, "error", message=f"run {status}: {why}", type="RunError").text = why
    if load_bad:  # a measure-only run has no SLOs; its one check is that the load worked
        case = ET.SubElement(suite, "testcase", classname=cls, name="load worked", time="0")
        ET.SubElement(
            case, "failure", message=f"the load failed: {summary['load_failure']}", type="LoadFailed"
        ).text = summary["load_failure"]
    for s in sorted(slos, key=lambda s: s["passed"]):  # failed first
        case = ET.SubElement(suite, "testcase", classname=cls, name=s["slo"], time="0")
        if not s["passed"]:
            obs = fmt_value(s["observed"], s["unit"]) if s["observed"] is not None else "no data"
            bound = f"{s['op']} {fmt_value(s['threshold'], s['unit'])}"
            msg = f"{s['slo']}: observed {obs}, threshold {bound} ({s['source']})"
            ET.SubElement(case, "failure", message=msg, type="SLOFailed").text = s.get("reason") or msg
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"
