"""Faults during a real run.

- replica kill (scenarios/fault-replica-kill.yaml: 2 sim replicas on a local stack, one killed at t = 10 s): the run
  completes, the record shows the fault time, the errors in the gap and the recovery time, and the
  `recovery_time` SLO is evaluated;
- against the OpenAI mock (no Ray): Prometheus killed mid-run → client verdicts written, server SLOs `no data`;
  Locust killed mid-run → status `failed`, verdict fail, exit 2; and an API key never reaches the run folder or logs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from harness.run.context import reap_leftovers

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[2]
MOCK = ROOT / "bench" / "mock_openai.py"
SECRET = "sk-harness-test-7f3a9c1e5b-SECRET"


def _harness(args, tmp_path: Path, env_extra=None) -> subprocess.Popen:
    env = {**os.environ, "HARNESS_STATE_DIR": str(tmp_path / "state"), **(env_extra or {})}
    log = (tmp_path / "out.log").open("w")
    return subprocess.Popen(
        [sys.executable, "-m", "harness.cli", "run", *args],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )


def _run_dir(res: Path) -> Path:
    (d,) = [p.parent for p in res.glob("*/run.json")]
    return d


def _wait_load_started(res: Path, proc, timeout_s=120.0) -> Path:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        dirs = [p.parent.parent for p in res.glob("*/locust/started_at")] if res.exists() else []
        if dirs:
            return dirs[0]
        assert proc.poll() is None, "harness exited before the load started"
        time.sleep(0.3)
    raise AssertionError("load did not start")


@pytest.fixture
def mock(tmp_path):
    p = subprocess.Popen(
        [
            sys.executable,
            str(MOCK),
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--ttft-ms",
            "20",
            "--itl-ms",
            "5",
            "--api-key",
            SECRET,
            "--no-record-tokens",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    line = p.stdout.readline()
    assert line.startswith("LISTENING"), line
    yield line.split()[1]
    p.terminate()
    p.wait(10)


@pytest.fixture
def prometheus(tmp_path):
    """A throwaway Prometheus on loopback (nothing to scrape): enough for `attach` and the scrape stage."""
    from harness.stack.net import free_port, http_get

    port = free_port()
    cfg = tmp_path / "prom.yml"
    cfg.write_text("global: {scrape_interval: 5s}\n")
    p = subprocess.Popen(
        [
            "prometheus",
            f"--config.file={cfg}",
            f"--storage.tsdb.path={tmp_path / 'promdata'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(100):
        try:
            if http_get(f"http://127.0.0.1:{port}/-/ready", 1.0)[0] == 200:
                break
        except OSError:
            time.sleep(0.2)
    yield p, f"http://127.0.0.1:{port}"
    if p.poll() is None:
        p.kill()
        p.wait(10)


def _external_scenario(tmp_path: Path, url: str, duration_s: float = 12) -> Path:
    sc = {
        "name": "ext-faults",
        "target": {"engine": "external", "model": "mock", "url": url, "api_key_env": "HARNESS_TEST_API_KEY"},
        "workload": {"prompt_tokens": {"mean": 32}, "output_tokens": {"mean": 8}, "request_timeout_s": 5},
        "load": {"warmup_s": 1, "stages": [{"duration_s": duration_s, "users": 3, "spawn_rate": 10}]},
        "slos": ["ttft.p95 <= 2s", "error_rate <= 1%", "kv_cache_usage.max <= 0.95"],
    }
    p = tmp_path / "ext.yaml"
    p.write_text(yaml.safe_dump(sc))
    return p


def _grep_secret(tmp_path: Path) -> list[str]:
    hits = []
    for f in tmp_path.rglob("*"):
        if f.is_file() and "promdata" not in f.parts:
            try:
                if SECRET.encode() in f.read_bytes():
                    hits.append(str(f))
            except OSError:
                pass
    return hits


def test_prometheus_lost_mid_run_and_api_key_never_recorded(tmp_path, mock, prometheus):
    prom_proc, prom_url = prometheus
    res = tmp_path / "res"
    proc = _harness(
        [str(_external_scenario(tmp_path, mock)), "--results-dir", str(res), "--prometheus-url", prom_url],
        tmp_path,
        {"HARNESS_TEST_API_KEY": SECRET},
    )
    _wait_load_started(res, proc)
    time.sleep(3)
    prom_proc.kill()  # Prometheus lost mid-run
    rc = proc.wait(120)
    out = (tmp_path / "out.log").read_text()
    assert "Traceback" not in out, out[-3000:]
    assert rc == 1, out[-3000:]  # an SLO (the server one) failed; not a crash
    d = _run_dir(res)
    run, summary = json.loads((d / "run.json").read_text()), json.loads((d / "summary.json").read_text())
    assert run["status"] == "completed" and "scrape" in run.get("stage_errors", {})
    by = {s["slo"]: s for s in summary["slos"]}
    assert by["ttft.p95 <= 2s"]["passed"] and by["error_rate <= 1%"]["passed"]  # the key was sent: no 401s
    kv = by["kv_cache_usage.max <= 0.95"]
    assert kv["observed"] is None and kv["passed"] is False and "no data" in kv["reason"]
    assert summary["verdict"] == "fail"
    assert any("scrape failed" in w for w in summary["warnings"])
    assert summary["client"]["requests"] > 10 and summary["client"]["errors"] == 0
    assert not _grep_secret(tmp_path), "API key written to disk"  # run folder, locust logs, harness output, state


def test_load_generator_killed_mid_run_is_a_failed_run(tmp_path, mock, prometheus):
    _, prom_url = prometheus
    res = tmp_path / "res"
    proc = _harness(
        [
            str(_external_scenario(tmp_path, mock, duration_s=30)),
            "--results-dir",
            str(res),
            "--prometheus-url",
            prom_url,
        ],
        tmp_path,
        {"HARNESS_TEST_API_KEY": SECRET},
    )
    d = _wait_load_started(res, proc)
    time.sleep(3)
    os.killpg(int((d / "locust" / "locust.pid").read_text()), signal.SIGKILL)
    rc = proc.wait(120)
    out = (tmp_path / "out.log").read_text()
    assert "Traceback" not in out, out[-3000:]
    assert rc == 2, out[-3000:]
    run, summary = json.loads((d / "run.json").read_text()), json.loads((d / "summary.json").read_text())
    assert run["status"] == "failed" and "Locust" in run["error"]
    assert summary["status"] == "failed" and summary["verdict"] == "fail"
    assert summary["client"]["requests"] > 0  # what was measured before the death is kept
    assert any("Locust" in w for w in summary["warnings"])


def test_replica_kill_is_survived_and_recovery_measured(tmp_path):
    res = tmp_path / "res"
    proc = _harness(["fault-replica-kill", "--results-dir", str(res)], tmp_path)
    try:
        rc = proc.wait(280)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
            reap_leftovers(pid=proc.pid)
    out = (tmp_path / "out.log").read_text()
    assert "Traceback" not in out, out[-3000:]
    d = _run_dir(res)
    run, summary = json.loads((d / "run.json").read_text()), json.loads((d / "summary.json").read_text())
    assert run["status"] == "completed", run.get("error")
    (f,) = summary["faults"]
    assert f["error"] is None and len(f["killed"]) == 1 and f["replicas_before"] == 2
    assert f["fired_at"] - run["timeline"]["load_started_at"] == pytest.approx(10, abs=3)
    assert f["min_replicas_seen"] == 1  # the kill was visible
    assert f["recovered_at"] is not None and f["recovery_s"] >= f["replica_recovery_s"] > 0
    assert f["errors_in_gap"] == sum(f["errors_in_gap_by_class"].values())
    assert f["errors_in_gap"] <= summary["client"]["errors"] + summary["client"].get("warmup_errors", 0) + 50
    rt = next(s for s in summary["slos"] if s["signal"] == "recovery_time")
    assert rt["observed"] == pytest.approx(f["recovery_s"] * 1000, rel=1e-6)
    assert rt["passed"] == (rt["observed"] <= 30_000)
    assert rc in (0, 1)  # the run completed; the verdict is the SLOs' business
    assert run["faults"] == summary["faults"]
