"""Ctrl-C / SIGTERM on a real `harness run` (local Ray + Prometheus + sim app + Locust): exit 130, a readable record
marked `interrupted` with the samples so far, every process the run started gone. Also: everything the run
started listens on loopback only (checked on the live processes while the load runs)."""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest

from harness.run.context import leftover_pgids, reap_leftovers

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

SCENARIO = """name: interrupt-me
target:
  engine: sim
  model: sim-tiny
  replica_cpus: 0.25
workload: {prompt_tokens: {mean: 32}, output_tokens: {mean: 16}, request_timeout_s: 10}
load:
  stages: [{duration_s: 120, users: 4, spawn_rate: 4}]
slos: [ttft.p95 <= 2s, replicas.max >= 1]
"""


def _start(tmp_path: Path) -> tuple[subprocess.Popen, Path, Path]:
    sc = tmp_path / "s.yaml"
    sc.write_text(SCENARIO)
    res = tmp_path / "res"
    log = tmp_path / "out.log"
    env = {**os.environ, "HARNESS_STATE_DIR": str(tmp_path / "state")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness.cli", "run", str(sc), "--results-dir", str(res)],
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    return proc, res, log


def _wait_for(pred, timeout_s: float, what: str, proc: subprocess.Popen, log: Path):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        assert proc.poll() is None, (
            f"harness exited early ({proc.returncode}) waiting for {what}:\n{log.read_text()[-3000:]}"
        )
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}:\n{log.read_text()[-3000:]}")


def _run_dir(res: Path) -> Path | None:
    dirs = list(res.glob("*/run.json")) if res.exists() else []
    return dirs[0].parent if dirs else None


def _processes_of(pid: int, run_dir: Path) -> list[psutil.Process]:
    procs = {pid: psutil.Process(pid)}
    for c in psutil.Process(pid).children(recursive=True):
        procs[c.pid] = c
    groups = leftover_pgids(run_dir, pid=pid)
    for p in psutil.process_iter():
        try:
            if os.getpgid(p.pid) in groups:
                procs[p.pid] = p
        except (psutil.Error, OSError):
            pass
    return list(procs.values())


def _non_loopback_listeners(procs) -> list[str]:
    bad = []
    for p in procs:
        try:
            conns = p.net_connections(kind="inet")
        except (psutil.Error, OSError):
            continue
        for c in conns:
            ip = ipaddress.ip_address(c.laddr.ip)
            ip = getattr(ip, "ipv4_mapped", None) or ip  # ::ffff:127.0.0.1 is loopback too
            if c.status == psutil.CONN_LISTEN and not ip.is_loopback:
                bad.append(f"{p.pid} {' '.join(p.cmdline())[:120]} listens on {c.laddr.ip}:{c.laddr.port}")
    return bad


def _assert_interrupted_and_clean(proc, res, log, pid, stage):
    rc = proc.wait(90)
    out = log.read_text()
    assert rc == 130, out[-3000:]
    assert "Traceback" not in out, out[-3000:]
    run_dir = _run_dir(res)
    run = json.loads((run_dir / "run.json").read_text())
    assert run["status"] == "interrupted", run.get("error")
    assert stage in (run.get("error") or "") or stage == "load", run.get("error")
    assert (run_dir / "report.md").exists()
    time.sleep(1.0)
    assert not leftover_pgids(run_dir, pid=pid), "processes started by the run are still alive"
    strays = [
        p.pid
        for p in psutil.process_iter(["cmdline"])
        if f"/tmp/harness-ray/{pid}-" in " ".join(p.info["cmdline"] or [])
    ]
    assert not strays, strays
    return run_dir, run


def test_sigint_during_load_keeps_samples_and_stops_everything(tmp_path):
    proc, res, log = _start(tmp_path)
    try:
        run_dir = _wait_for(
            lambda: (d := _run_dir(res)) and (d / "locust" / "started_at").exists() and d,
            120,
            "the load to start",
            proc,
            log,
        )
        time.sleep(4.0)  # some requests finish
        bad = _non_loopback_listeners(_processes_of(proc.pid, run_dir))
        assert not bad, "\n".join(bad)  # safe default: loopback only
        proc.send_signal(signal.SIGINT)
        run_dir, run = _assert_interrupted_and_clean(proc, res, log, proc.pid, "load")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
            reap_leftovers(pid=proc.pid)
    samples = pd.read_parquet(run_dir / "samples.parquet")
    assert len(samples) > 0
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["verdict"] == "fail"
    assert summary["client"]["requests"] + summary["client"]["warmup_requests"] == len(samples)
    rec = summary["reconciliation"].get("samples_vs_locust")
    if rec is not None and rec["locust"] >= 0:
        assert rec["samples"] == rec["locust"], rec  # nothing lost at the cut: in-flight requests drained


def test_sigterm_during_deploy_stops_ray_and_prometheus(tmp_path):
    proc, res, log = _start(tmp_path)
    try:
        _wait_for(lambda: "▶ deploy" in log.read_text(), 120, "the deploy stage", proc, log)
        time.sleep(1.0)
        proc.send_signal(signal.SIGTERM)
        run_dir, run = _assert_interrupted_and_clean(proc, res, log, proc.pid, "deploy")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
            reap_leftovers(pid=proc.pid)
    assert run["stack"].get("local") is True  # the stack stage finished and was recorded before the interrupt
    assert not (run_dir / "samples.parquet").exists()
