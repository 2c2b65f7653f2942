"""Renderers are pure functions of stored records (tests/fixtures/records/, from real step/capped runs)."""

import json
import re
from pathlib import Path

import pytest

from harness.report import load_data, render_all, write_reports
from harness.report.html import render_html
from harness.report.junit import render_junit
from harness.report.markdown import render_markdown

REC = Path(__file__).resolve().parent.parent / "fixtures" / "records"
XSD = Path(__file__).resolve().parent.parent / "fixtures" / "junit" / "junit.xsd"


def record(name):
    d = REC / name
    return json.loads((d / "run.json").read_text()), json.loads((d / "summary.json").read_text()), *load_data(d)


def test_markdown_step_shows_scale_up_time_and_churn():
    run, summary, *_ = record("step-autoscale")
    md = render_markdown(run, summary)
    assert "## Autoscaling" in md and "scale-up (`step`)" in md and "1 → 3" in md
    assert re.search(r"\| \d+\.\d s \|", md)  # the time to reach the target
    assert "churn" in md and "`scale_up_time.max <= 60s`" in md and "Goodput" in md


def test_markdown_capped_lists_failed_slo_first_with_reason():
    run, summary, *_ = record("autoscale-capped")
    md = render_markdown(run, summary)
    rows = [l for l in md.splitlines() if l.startswith("| ✅") or l.startswith("| ❌")]
    assert rows[0].startswith("| ❌ | `replicas.max >= 3`")
    assert "caps target.autoscaling.max_replicas at 2" in rows[0]
    assert "**Verdict: FAIL**" in md


def test_html_is_self_contained_with_drawn_plots_and_thresholds():
    run, summary, samples, series = record("step-autoscale")
    html = render_html(run, summary, samples, series)
    assert "<script" not in html and "http://" not in html.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in html
    counts = [int(n) for n in re.findall(r'class="series[^"]*" data-n="(\d+)"', html)]
    assert len(counts) >= 12 and sum(1 for n in counts if n >= 20) >= 8
    assert "SLO ttft.p99 &lt;= 3s" in html  # threshold drawn on the TTFT plots
    assert "3 replicas after" in html  # the scale-up marked on the replica plot
    assert html.index("SLOs (failed first)") < html.index("Autoscaling") < html.index("Latency")


def test_html_failed_first_and_without_data_files():
    run, summary, *_ = record("autoscale-capped")
    html = render_html(run, summary, None, None)
    first_row = re.search(r'<tr class="(pass|fail)">', html)
    assert first_row and first_row.group(1) == "fail"
    assert "no data" in html  # empty plots say so instead of breaking


def test_html_and_markdown_without_summary():
    run, *_ = record("step-autoscale")
    run = {**run, "status": "failed", "error": "stage deploy: boom"}
    assert "boom" in render_markdown(run, None) and "boom" in render_html(run, None)


@pytest.mark.parametrize("name", ["step-autoscale", "autoscale-capped"])
def test_junit_validates_against_the_ci_schema(name):
    xmlschema = pytest.importorskip("xmlschema")
    schema = xmlschema.XMLSchema(str(XSD))
    run, summary, *_ = record(name)
    schema.validate(render_junit(run, summary))
    schema.validate(render_junit(run, None))
    schema.validate(render_junit({**run, "status": "interrupted"}, {**summary, "status": "interrupted"}))


def test_junit_counts_and_failure_message():
    run, summary, *_ = record("autoscale-capped")
    xml = render_junit(run, summary)
    assert 'tests="3" failures="1" errors="0"' in xml
    assert 'message="replicas.max &gt;= 3: observed 2, threshold &gt;= 3' in xml
    inter = render_junit(run, {**summary, "status": "interrupted"})
    assert 'errors="1"' in inter and 'name="run completed"' in inter


def test_write_reports_rerenders_everything(tmp_path):
    src = REC / "step-autoscale"
    for f in src.iterdir():
        (tmp_path / f.name).write_bytes(f.read_bytes())
        if f.name in ("report.md", "report.html", "junit.xml"):
            (tmp_path / f.name).unlink()
    run, summary, samples, series = record("step-autoscale")
    assert sorted(write_reports(tmp_path, run, summary)) == ["junit.xml", "report.html", "report.md"]
    expected = render_all(run, summary, samples, series)  # what was written is the render of the stored data
    assert {n: (tmp_path / n).read_text() for n in expected} == expected


def test_render_all_is_pure():
    import copy

    run, summary, samples, series = record("step-autoscale")
    before = copy.deepcopy((run, summary)), samples.copy(), series.copy()
    out = render_all(run, summary, samples, series)
    assert (run, summary) == before[0] and samples.equals(before[1]) and series.equals(before[2])  # inputs untouched
    again = render_all(*record("step-autoscale"))  # an independent load of the same record: the same text
    assert again == out
    renamed = render_all({**run, "scenario": {**run["scenario"], "name": "renamed-xyz"}}, summary, samples, series)
    assert all("renamed-xyz" in t for n, t in renamed.items() if n != "junit.xml") and renamed != out
