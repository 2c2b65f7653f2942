"""Renderers are pure functions of stored records (tests/fixtures/records/, from real step/capped runs)."""

import json
import re
from pathlib import Path

import numpy as np
import pytest

from harness.record import read_record
from harness.report import load_data, render_all, write_reports
from harness.report.html import latency_charts, render_html, server_charts
from harness.report.junit import render_junit
from harness.report.markdown import render_markdown

REC = Path(__file__).resolve().parent.parent / "fixtures" / "records"
XSD = Path(__file__).resolve().parent.parent / "fixtures" / "junit" / "junit.xsd"


def record(name):
    """The stored files as JSON (what report.html reads)."""
    d = REC / name
    return json.loads((d / "run.json").read_text()), json.loads((d / "summary.json").read_text()), *load_data(d)


def typed(name):
    """The stored record, upgraded and typed (what report.md, junit.xml and render_all read)."""
    return (*read_record(REC / name), *load_data(REC / name))


def test_markdown_step_shows_scale_up_time_and_churn():
    run, summary, *_ = typed("step-autoscale")
    md = render_markdown(run, summary)
    assert "## Autoscaling" in md and "scale-up (`step`)" in md and "1 → 3" in md
    assert re.search(r"\| \d+\.\d s \|", md)  # the time to reach the target
    assert "churn" in md and "`scale_up_time.max <= 60s`" in md and "Goodput" in md


def test_markdown_capped_lists_failed_slo_first_with_reason():
    run, summary, *_ = typed("autoscale-capped")
    md = render_markdown(run, summary)
    rows = [line for line in md.splitlines() if line.startswith("| ✅") or line.startswith("| ❌")]
    assert rows[0].startswith("| ❌ | `replicas.max >= 3`")
    assert "caps target.autoscaling.max_replicas at 2" in rows[0]
    assert "**Verdict: FAIL**" in md


def _traces(charts):
    return {c.key: [t for t in c.fig.data] for c in charts}


def test_html_is_self_contained_interactive_with_thresholds():
    run, summary, samples, series = record("step-autoscale")
    html = render_html(run, summary, samples, series)
    assert "plotly.js v" in html and html.count('class="plotly-graph-div"') >= 12  # plotly.js inline, one div per chart
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=", html)  # nothing fetched: opens offline
    assert html.index("SLOs (failed first)") < html.index("Autoscaling") < html.index("Latency")
    charts = latency_charts(run, summary, samples)
    assert all(c.fig.layout.margin.t and c.fig.layout.hovermode for c in charts)  # the shared layout is applied
    lat = _traces(charts)
    dots = lat["ttft-time"][0]
    assert len(dots.x) == len(samples[samples["ok"]]) and dots.mode == "markers"
    names = [t.name for t in lat["ttft-time"]]
    assert "SLO ttft.p99 <= 3s (PASS)" in names  # threshold as a legend entry, not text over the data
    srv = _traces(server_charts(run, summary, series))
    assert [t.name for t in srv["replicas"] if t.name == "scale step reached"] and len(srv["replicas"][0].x) >= 20
    assert len(srv["kv-cache"][0].x) >= 20 and len(srv["queue"][0].x) >= 20


def test_cdf_axis_fits_the_data_and_marks_a_far_threshold():
    run, summary, samples, _ = record("step-autoscale")
    cdfs = {c.key: c for c in latency_charts(run, summary, samples)}
    itl = cdfs["itl-cdf"].fig
    p999 = float(
        np.percentile(
            np.concatenate([np.asarray(g) for g in samples[~samples["warmup"] & samples["ok"]]["itl_ms"]]), 99.9
        )
    )
    lo, hi = itl.layout.xaxis.range
    assert hi == pytest.approx(1.1 * p999, rel=0.01)  # data fills the plot (old SVG ran the axis to the threshold)
    far = {**summary, "slos": [{**s, "threshold": 50_000.0} if s["signal"] == "ttft" else s for s in summary["slos"]]}
    ttft = {c.key: c for c in latency_charts(run, far, samples)}["ttft-cdf"].fig
    assert ttft.layout.xaxis.range[1] < 10_000 and any("50000 ms" in (a.text or "") for a in ttft.layout.annotations)


def test_html_failed_first_and_without_data_files():
    run, summary, *_ = record("autoscale-capped")
    html = render_html(run, summary, None, None)
    first_row = re.search(r'<tr class="(pass|fail)">', html)
    assert first_row and first_row.group(1) == "fail"
    assert "no replica series from Prometheus" in html  # empty plots say so instead of breaking


def test_html_and_markdown_without_summary():
    run, *_ = typed("step-autoscale")
    run = run.model_copy(update={"status": "failed", "error": "stage deploy: boom"})
    assert "boom" in render_markdown(run, None) and "boom" in render_html(run.model_dump(mode="json"), None)


@pytest.mark.parametrize("name", ["step-autoscale", "autoscale-capped"])
def test_junit_validates_against_the_ci_schema(name):
    xmlschema = pytest.importorskip("xmlschema")
    schema = xmlschema.XMLSchema(str(XSD))
    run, summary, *_ = typed(name)
    schema.validate(render_junit(run, summary))
    schema.validate(render_junit(run, None))
    inter = run.model_copy(update={"status": "interrupted"}), summary.model_copy(update={"status": "interrupted"})
    schema.validate(render_junit(*inter))


def test_junit_counts_and_failure_message():
    run, summary, *_ = typed("autoscale-capped")
    xml = render_junit(run, summary)
    assert 'tests="3" failures="1" errors="0"' in xml
    assert 'message="replicas.max &gt;= 3: observed 2, threshold &gt;= 3' in xml
    inter = render_junit(run, summary.model_copy(update={"status": "interrupted"}))
    assert 'errors="1"' in inter and 'name="run completed"' in inter


def test_write_reports_rerenders_everything(tmp_path):
    src = REC / "step-autoscale"
    for f in src.iterdir():
        (tmp_path / f.name).write_bytes(f.read_bytes())
        if f.name in ("report.md", "report.html", "junit.xml"):
            (tmp_path / f.name).unlink()
    run, summary = read_record(tmp_path)
    samples, series = load_data(tmp_path)
    assert sorted(write_reports(tmp_path, run, summary)) == ["junit.xml", "report.html", "report.md"]
    expected = render_all(run, summary, samples, series)  # what was written is the render of the stored data
    assert {n: (tmp_path / n).read_text() for n in expected} == expected


def test_render_all_is_pure():
    import copy

    run, summary, samples, series = typed("step-autoscale")
    before = copy.deepcopy((run, summary)), samples.copy(), series.copy()
    out = render_all(run, summary, samples, series)
    assert (run, summary) == before[0] and samples.equals(before[1]) and series.equals(before[2])  # inputs untouched
    again = render_all(*typed("step-autoscale"))  # an independent load of the same record: the same text
    assert again == out
    renamed_run = run.model_copy(update={"scenario": {**run.scenario, "name": "renamed-xyz"}})
    renamed = render_all(renamed_run, summary, samples, series)
    assert all("renamed-xyz" in t for n, t in renamed.items() if n != "junit.xml") and renamed != out
