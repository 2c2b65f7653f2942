"""The walking skeleton for real: local Ray + Prometheus, sim engine on Serve, Locust, scrape, verdict."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration


def harness(*args, env, timeout=600):
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    state = tmp_path_factory.mktemp("state")
    return {**os.environ, "HARNESS_STATE_DIR": str(state)}


def only_run_dir(results: Path) -> Path:
    dirs = [d for d in results.iterdir() if d.is_dir()]
    assert len(dirs) == 1, dirs
    return dirs[0]


def test_smoke_end_to_end_on_a_fresh_local_stack(env, tmp_path):
    r = harness("run", "scenarios/smoke.yaml", "--results-dir", str(tmp_path), env=env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    run_dir = only_run_dir(tmp_path)
    for f in ("run.json", "summary.json", "samples.parquet", "series.parquet", "report.md", "junit.xml"):
        assert (run_dir / f).exists(), f
    # the terminal's SLO table names each verdict beside its SLO (cells separated by spaces or box lines)
    assert re.search(r"PASS\W+ttft\.p95 <= 2s", r.stdout) and "verdict: PASS" in r.stdout, r.stdout[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    run = json.loads((run_dir / "run.json").read_text())
    assert summary["verdict"] == "pass" and run["status"] == "completed"
    # server signals came through Prometheus from Ray's discovered targets, with real data
    series = summary["server_series"]
    assert series["kv_cache_usage"] == "ray_vllm_kv_cache_usage_perc"
    assert series["replicas"] == "ray_serve_deployment_replica_healthy"
    assert summary["server"]["kv_cache_usage"]["max"] > 0
    assert summary["server"]["replicas"]["max"] >= 1
    assert summary["server"]["server_ttft"]["count"] > 0
    assert summary["server"]["generation_tokens"]["total"] > 0
    assert run["scrape"]["session"].startswith("session_")
    # a fresh stack: Prometheus found Ray's targets while the app deployed; the run waited only for the rest, before
    # the load (so the window is scraped), and the stack counts as ready from then on
    timings = run["stack"]["timings_s"]
    assert not run["stack"]["targets_pending"] and "metrics_ready_s" in run["stage_durations_s"]
    assert timings["targets_wait_s"] <= timings["targets_up_s"]
    assert run["timeline"]["stack_ready_at"] <= run["timeline"]["load_started_at"], run["timeline"]
    # the reports say what the summary says (not merely that the files exist)
    md, junit = (run_dir / "report.md").read_text(), (run_dir / "junit.xml").read_text()
    assert "**Verdict: PASS**" in md and all(f"`{s['slo']}`" in md for s in summary["slos"])
    assert f'tests="{len(summary["slos"])}" failures="0"' in junit
    rows = pd.read_parquet(run_dir / "series.parquet")
    assert {"kv_cache_usage", "replicas"} <= set(rows["signal"]) and (rows[rows.signal == "replicas"].value >= 1).any()
    # every request is one sample, and the count matches Locust's own
    samples = pd.read_parquet(run_dir / "samples.parquet")
    assert len(samples) == run["load"]["locust_requests"] == run["load"]["requests"] > 50
    # the stats window: after warmup, started before the last stage's end (the drain's requests are not counted)
    counted = (~samples["warmup"]) & (samples["t_start_s"] < run["load"]["stats_end"])
    assert summary["client"]["requests"] == int(counted.sum())
    assert {"light", "busier"} <= set(samples["stage"])
    # the local stack is gone again: nothing listens on the Prometheus port the run used
    from harness.stack.net import port_in_use

    assert not port_in_use(run["stack"]["prometheus"]["port"])
    assert not port_in_use(int(run["stack"]["ray_address"].rsplit(":", 1)[1]))


@pytest.fixture
def up_stack(shared_stack):
    return shared_stack  # the session's `harness up` stack (tests/conftest.py): later runs reuse one stack


IMPOSSIBLE = """
name: impossible
description: SLOs no engine can meet; the gate must say which failed.
target: {engine: sim, model: sim-imp, sim: {ttft_ms: 30, itl_ms: 5}}
workload: {prompt_tokens: {mean: 32}, output_tokens: {mean: 8}}
load: {warmup_s: 2, stages: [{duration_s: 10, users: 2, spawn_rate: 2}]}
slos:
  - ttft.p50 <= 1ms
  - error_rate <= 1%
  - kv_cache_usage.max < 0.9
"""


def short(text: str) -> str:  # these tests check reports and attach mode, not statistics: 5 s of load is enough
    return text.replace("duration_s: 10,", "duration_s: 5,")


def test_impossible_slo_exits_1_and_names_it(up_stack, tmp_path):
    sc = tmp_path / "impossible.yaml"
    sc.write_text(IMPOSSIBLE)
    r = harness("run", str(sc), "--results-dir", str(tmp_path / "res"), env=up_stack)
    assert r.returncode == 1, r.stdout[-3000:] + r.stderr[-3000:]
    assert re.search(r"FAIL\W+ttft\.p50 <= 1ms", r.stdout) and re.search(r"PASS\W+error_rate <= 1%", r.stdout), (
        r.stdout[-3000:]
    )
    run_dir = only_run_dir(tmp_path / "res")
    summary = json.loads((run_dir / "summary.json").read_text())
    failed = [s["slo"] for s in summary["slos"] if not s["passed"]]
    assert failed == ["ttft.p50 <= 1ms"]
    junit = (run_dir / "junit.xml").read_text()
    assert 'failures="1"' in junit and "ttft.p50 &lt;= 1ms: observed" in junit


def test_reports_rerender_from_record(up_stack, tmp_path):
    # reuse the up stack: a second run works against the same Ray/Prometheus, then `harness report` re-renders
    sc = tmp_path / "imp.yaml"
    sc.write_text(short(IMPOSSIBLE.replace("ttft.p50 <= 1ms", "ttft.p50 <= 10s")))
    r = harness("run", str(sc), "--results-dir", str(tmp_path / "res"), "--json", env=up_stack)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert json.loads(r.stdout)["verdict"] == "pass"
    run_dir = only_run_dir(tmp_path / "res")
    md, html = (run_dir / "report.md").read_text(), (run_dir / "report.html").read_text()
    (run_dir / "report.md").unlink()
    (run_dir / "report.html").unlink()
    r = harness("report", str(run_dir), env=up_stack)
    assert r.returncode == 0, r.stderr
    assert (run_dir / "report.html").read_text() == html
    # the record gains report_s after the run's own render, so only the stage-times line may differ
    strip = lambda t: [ln for ln in t.splitlines() if not ln.startswith("- stages:")]
    assert strip((run_dir / "report.md").read_text()) == strip(md) and md.startswith("# impossible")


def test_existing_cluster_is_used_and_nothing_is_started(up_stack, tmp_path):
    stack = json.loads((Path(up_stack["HARNESS_STATE_DIR"]) / "current-stack.json").read_text())
    sc = tmp_path / "attached.yaml"
    sc.write_text(short(IMPOSSIBLE.replace("ttft.p50 <= 1ms", "ttft.p50 <= 10s")).replace("impossible", "attached"))
    # a fresh state dir: the harness cannot find the `up` stack by itself, only through the flags
    env = {**up_stack, **stack["ray_env"], "HARNESS_STATE_DIR": str(tmp_path / "other-state")}
    r = harness(
        "run",
        str(sc),
        "--results-dir",
        str(tmp_path / "res"),
        "--ray-address",
        stack["ray_address"],
        "--prometheus-url",
        stack["prometheus_url"],
        "--endpoint-url",
        f"http://127.0.0.1:{stack['serve_port']}",
        env=env,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    # no stack state was created: a started Ray or Prometheus would have its folder under <state>/stacks/
    # (robust on a shared box, where other people's Prometheus processes come and go)
    assert not (tmp_path / "other-state" / "stacks").exists()
    run = json.loads((only_run_dir(tmp_path / "res") / "run.json").read_text())
    assert run["stack"]["local"] is False and run["stack"]["prometheus_url"] == stack["prometheus_url"]
    summary = json.loads((only_run_dir(tmp_path / "res") / "summary.json").read_text())
    # scraped from the existing Prometheus. Counters, not the KV gauge's max: 2 users with tiny requests leave the
    # engine idle at many 1 s samples, and on a contended box at all of them (CI saw max 0.0 with 5 points)
    server = summary["server"]
    assert server["server_ttft"]["count"] > 0 and server["generation_tokens"]["total"] > 0, server
    assert server["kv_cache_usage"]["samples"] >= 2, server["kv_cache_usage"]  # the gauge series is there too
    # the connected cluster said which session is ours and which export interval is in force (the local stack's 1 s)
    facts = run["deployment"]["details"]["ray_metrics"]
    assert facts["export_interval_s"] == 1.0 and facts["session_name"].startswith("session_"), facts
    assert run["scrape"]["session"] == facts["session_name"] and run["scrape"]["session_source"] == "cluster"
    assert run["scrape"]["export_interval_s"] == 1.0 and run["scrape"]["window_shift_s"] > 0
