"""Every dashboard panel query runs against a real Prometheus scraping a live local stack under load."""

import json
import subprocess
import sys
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from harness.commands.dashboards import build_dashboards, import_ray_dashboards, panel_queries

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration

SCENARIO = """
name: dash
# its own app and route: the app stays up (--keep-app) on the shared stack while later modules deploy `llm` at /
target: {engine: sim, model: sim-dash, app_name: dash, route_prefix: /dash, sim: {ttft_ms: 20, itl_ms: 5}}
workload: {prompt_tokens: {mean: 32}, output_tokens: {mean: 16}}
load: {stages: [{duration_s: 12, users: 3, spawn_rate: 3}]}
slos: [error_rate <= 1%]
"""
# Signals the sim engine (and Serve on CPU) export; GPU, preemption and error panels may be empty here.
MAY_BE_EMPTY = ("GPU", "Preemptions", "Replica starts")


def query(url: str, expr: str) -> dict:
    q = urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(f"{url}/api/v1/query?{q}", timeout=10) as r:
        return json.loads(r.read())


@pytest.fixture(scope="module")
def live(tmp_path_factory, shared_stack):
    tmp = tmp_path_factory.mktemp("dash")
    env = shared_stack  # the session's `harness up` stack; it is stopped after the session
    sc = tmp / "dash.yaml"
    sc.write_text(SCENARIO)
    r = subprocess.run(
        [sys.executable, "-m", "harness.cli", "run", str(sc), "--keep-app", "-q", "--results-dir", str(tmp / "res")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    return json.loads((Path(env["HARNESS_STATE_DIR"]) / "current-stack.json").read_text())


def test_every_panel_query_parses_and_sim_signals_have_data(live):
    url = live["prometheus_url"]
    empty = []
    for name, dash in build_dashboards().items():
        for title, expr in panel_queries(dash):
            res = query(url, expr)
            assert res["status"] == "success", (name, title, expr, res)
            if not res["data"]["result"] and not title.startswith(MAY_BE_EMPTY):
                empty.append((name, title))
    assert not empty, f"panels without data for signals the sim exports: {empty}"


def test_imported_ray_dashboards_have_no_cluster_filter_and_parse(live, tmp_path):
    paths = import_ray_dashboards(Path(live["ray"]["temp_dir"]), tmp_path)
    assert any(p.name.startswith("serve_") for p in paths)
    url = live["prometheus_url"]
    subst = {
        "$SessionName": ".+",
        "$Instance": ".+",
        "$__rate_interval": "1m",
        "$__range": "5m",
        "$interval": "1m",
        "$__interval": "1m",
        "$Application": ".+",
        "$Deployment": ".+",
        "$Route": ".+",
        "$Replica": ".+",
        "$datasource": "prometheus",
    }
    checked = 0
    for p in paths:
        text = p.read_text()
        assert "ray_io_cluster=~" not in text
        for t in (t for panel in json.loads(text).get("panels", []) for t in panel.get("targets", [])):
            expr = t.get("expr")
            if not expr:
                continue
            for k, v in subst.items():
                expr = expr.replace("${" + k[1:] + "}", v).replace(k, v)
            if "$" in expr:  # a template variable we do not emulate
                continue
            assert query(url, expr)["status"] == "success", (p.name, expr)
            checked += 1
    assert checked > 20
