"""`harness verify` and the scrape math on one live local stack (loopback Ray head + Prometheus), reused by the module.

One short sim run provides Serve and engine series; then: verify healthy, verify with a missing / stale discovery
file and with Prometheus down (each fails with its fix), and the harness's Python histogram math against
PromQL's histogram_quantile(q, sum by (le)(increase(x_bucket[W]))) on the same live data.
"""

from __future__ import annotations

import json
import os
import shutil
import time

import pytest
from typer.testing import CliRunner

from harness import stack as stack_mod
from harness.cli import app
from harness.commands.verify import verify
from harness.metrics.mathx import bucket_around
from harness.metrics.scrape import Prom
from harness.stack.net import free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def live(tmp_path_factory, shared_stack):
    old = os.environ.get("HARNESS_STATE_DIR")
    os.environ["HARNESS_STATE_DIR"] = shared_stack["HARNESS_STATE_DIR"]  # the session's `harness up` stack
    st = stack_mod.load_current()
    assert st is not None
    try:
        from harness.report.terminal import RichUI
        from harness.run.pipeline import RunOptions, run
        from harness.scenario import parse_scenario

        sc = parse_scenario(
            {
                "name": "verify-live",
                "target": {"engine": "sim", "model": "sim-tiny", "sim": {"ttft_ms": 40, "itl_ms": 8}},
                "workload": {"api": "chat", "prompt_tokens": {"mean": 64}, "output_tokens": {"mean": 16}},
                "load": {"warmup_s": 2, "stages": [{"duration_s": 8, "users": 4, "spawn_rate": 4}]},
                "slos": ["ttft.p95 <= 10s", "replicas.max >= 1"],
            }
        )
        out = run(sc, RunOptions(results_dir=tmp_path_factory.mktemp("res"), keep_up=True), RichUI(quiet=True))
        yield st, out
    finally:
        if old is None:
            os.environ.pop("HARNESS_STATE_DIR", None)
        else:
            os.environ["HARNESS_STATE_DIR"] = old


def test_verify_healthy_stack_via_cli(live):
    res = CliRunner().invoke(app, ["verify", "--json"])  # no args: the `harness up` stack from the state dir
    assert res.exit_code == 0, res.output
    rep = json.loads(res.output)
    by = {c["name"]: c for c in rep["checks"]}
    assert rep["healthy"] and by["discovery_file"]["status"] == "ok" and by["prometheus_targets"]["status"] == "ok"
    assert by["ray_cluster_active_nodes"]["status"] == "ok"
    assert by["ray_serve_num_router_requests_total"]["status"] == "ok"  # the run routed requests
    assert by["grafana_dashboards"]["status"] == "ok" and len(by["grafana_dashboards"]["data"]["files"]) >= 3
    assert by["vllm_signals"]["data"]["resolved"]["server_ttft"] == "ray_vllm_time_to_first_token_seconds"


def test_verify_missing_and_stale_discovery_file(live, tmp_path):
    st, _ = live
    rep = verify(st.prometheus_url, discovery_file=str(tmp_path / "nope.json"))
    chk = next(c for c in rep.checks if c.name == "discovery_file")
    assert rep.exit_code == 1 and chk.status == "fail" and "wait 10-30 s" in chk.fix and "volume" in chk.fix
    stale = tmp_path / "prom_metrics_service_discovery.json"
    shutil.copy(st.sd_file, stale)
    os.utime(stale, (time.time() - 600, time.time() - 600))
    rep = verify(st.prometheus_url, discovery_file=str(stale), ray_temp_dir=st.ray["temp_dir"])
    chk = next(c for c in rep.checks if c.name == "discovery_file")
    assert rep.exit_code == 1 and chk.status == "fail" and "stale" in chk.detail and "ray stop" in chk.fix
    # Prometheus's own view stays healthy: the file is the only problem reported
    assert [c.name for c in rep.checks if c.status == "fail"] == ["discovery_file"]


def test_verify_prometheus_down():
    res = CliRunner().invoke(app, ["verify", "--prometheus-url", f"http://127.0.0.1:{free_port()}"])
    assert res.exit_code == 1
    assert "FAIL prometheus" in res.output and "fix: start Prometheus" in res.output


def test_run_record_has_reconciliation_lag_and_whole_run_counts(live):
    _, out = live
    s = out.summary
    rec = s["reconciliation"]
    assert rec["requests_whole_run_vs_engine_requests"]["agree"], rec
    assert rec["requests_whole_run_vs_serve_requests"]["agree"], rec
    assert "ttft_p50_ms" in rec and "bucket_ms" in rec["ttft_p50_ms"]
    run = json.loads((out.run_dir / "run.json").read_text())
    assert run["scrape"]["settled"] and run["scrape"]["lag_s"] is not None
    assert "server_ttft.mean" in run["scrape"]["notes"]  # Ray's _sum is approximate


def test_python_histogram_math_matches_promql_within_a_bucket(live):
    st, out = live
    run = json.loads((out.run_dir / "run.json").read_text())
    t = run["timeline"]
    start, end = t["warmup_end_at"], t["scrape_ended_at"]
    prom = Prom(st.prometheus_url)
    w = int(round(end - start))
    py = out.summary["server"]["server_ttft"]
    les = run["scrape"]["histograms"]["server_ttft"]["le"]
    rows = []
    for q, k in ((0.5, "p50"), (0.9, "p90"), (0.95, "p95"), (0.99, "p99")):
        pq = prom.scalar(
            f"histogram_quantile({q}, sum by (le)(increase(ray_vllm_time_to_first_token_seconds_bucket[{w}s])))", end
        )
        assert pq is not None
        pq *= 1000
        lo, hi = bucket_around(les, py[k])
        rows.append((k, round(py[k], 2), round(pq, 2), (lo, hi)))
        assert abs(pq - py[k]) <= hi - lo, rows
    cnt = prom.scalar(f"sum(increase(ray_vllm_request_success_total[{w}s]))", end)
    print(
        "live TTFT python vs PromQL (ms):",
        rows,
        f"| requests after warmup python {out.summary['server']['engine_requests']['total']:.0f} PromQL {cnt:.2f}",
    )
