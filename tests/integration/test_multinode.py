"""A real multi-node Ray cluster on this machine (1 head + 2 workers in network namespaces, 2 declared H100 GPUs
each), shared by the tests of this module in order:

- `harness verify` sees every node's targets UP and as many nodes as Ray lists;
- 2 sim replicas x TP=2 place one per worker, both bundles of a replica on its worker with GPU ids 0 and 1;
- a replica set that needs more GPUs than exist fails in seconds with "pending placement" (exit 2);
- two Locust workers as Ray actors, one per worker host, master on the head: samples = Locust's = Serve's count;
- worker 0 killed mid-load: the lost replica, the errors, why it did not recover (pending placement) and the
  RayNodeDown alert delivered by Alertmanager to the run's receiver are recorded;
- `harness down` removes every namespace, link, registry entry and process the stack made.

Needs root (network namespaces), iproute2, prometheus and prometheus-alertmanager (`.ci/setup`).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]
SCEN = ROOT / "scenarios" / "multinode"


def _missing() -> list[str]:
    miss = [b for b in ("ip", "prometheus", "prometheus-alertmanager") if not shutil.which(b)]
    if os.geteuid() != 0:
        miss.append("root (network namespaces)")
    return miss


@pytest.fixture(scope="module")
def mn(tmp_path_factory):
    miss = _missing()
    if miss:
        if os.environ.get("CI") == "true":
            pytest.fail(f"multi-node tests need {', '.join(miss)} (installed by .ci/setup)")
        pytest.skip(f"needs {', '.join(miss)}")
    base = tmp_path_factory.mktemp("multinode")
    env = {**os.environ, "HARNESS_STATE_DIR": str(base / "state")}

    def cli(*args, timeout=600):
        t0 = time.monotonic()
        r = subprocess.run(
            [sys.executable, "-m", "harness.cli", *args], env=env, capture_output=True, text=True, timeout=timeout
        )
        r.wall_s = time.monotonic() - t0
        return r

    up = cli("up", "--workers", "2", "--gpus-per-worker", "2", "--accelerator-type", "H100", "--num-cpus", "4")
    assert up.returncode == 0, up.stdout + up.stderr
    stack = json.loads((base / "state" / "current-stack.json").read_text())
    print(f"\nmulti-node stack (1 head + 2 workers) up in {up.wall_s:.1f} s: {stack['timings_s']}")
    yield {"cli": cli, "base": base, "stack": stack}
    cli("down")  # also when a test failed; test_down_removes_everything checks what it leaves


def _run(mn, scenario: Path, name: str):
    res = mn["base"] / f"results-{name}"
    r = mn["cli"]("run", str(scenario), "--results-dir", str(res), "--quiet")
    dirs = [p.parent for p in res.glob("*/run.json")]
    run = json.loads((dirs[0] / "run.json").read_text()) if dirs else None
    summ = json.loads((dirs[0] / "summary.json").read_text()) if dirs and (dirs[0] / "summary.json").exists() else None
    r.run_dir = dirs[0] if dirs else None
    return r, run, summ


def test_verify_sees_every_node(mn):
    r = mn["cli"]("verify", "--json", timeout=60)
    rep = json.loads(r.stdout)
    nodes = next(c for c in rep["checks"] if c["name"] == "nodes")
    assert nodes["status"] == "ok", nodes
    workers = [w["ip"] for w in mn["stack"]["cluster"]["workers"]]
    head = mn["stack"]["cluster"]["head_ip"]
    assert sorted(nodes["data"]["ray_nodes_alive"]) == sorted([head, *workers])
    by = {n["node"]: n for n in nodes["data"]["nodes"]}
    assert set(by) == {head, *workers}
    assert all(n["up"] == n["targets"] >= 1 for n in by.values())


def test_two_tp2_replicas_one_per_worker(mn):
    r, run, summ = _run(mn, SCEN / "placement-tp2.yaml", "place")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    print(f"placement run: stages {run['stage_durations_s']}")
    assert run["environment"]["cluster"]["nodes"] == 3
    assert summ["server"]["cluster_nodes"]["max"] == 3
    workers = {w["ip"] for w in mn["stack"]["cluster"]["workers"]}
    reps = run["deployment"]["details"]["placement"]["replicas"]
    assert len(reps) == 2
    assert {rep["node_ip"] for rep in reps} == workers  # distinct workers, never the GPU-less head
    for rep in reps:
        assert rep["nodes"] == [rep["node_ip"]]  # PACK: both bundles on the replica's node
        assert sorted(rep["gpu_ids"]) == ["0", "1"]
        assert [b["index"] for b in rep["bundles"]] == [0, 1]
    assert run["deployment"]["details"]["placement"]["bundles"][0] == {
        "GPU": 1.0,
        "accelerator_type:H100": 0.001,
        "CPU": 0.5,
    }


def test_more_gpus_than_exist_fails_with_reason(mn, tmp_path):
    sc = yaml.safe_load((SCEN / "placement-tp2.yaml").read_text())
    sc["name"] = "multinode-too-big"
    sc["target"]["autoscaling"] = {"min_replicas": 3, "max_replicas": 3}  # 6 GPUs asked, 4 exist
    p = tmp_path / "too-big.yaml"
    p.write_text(yaml.safe_dump(sc))
    t0 = time.monotonic()
    r, run, _ = _run(mn, p, "too-big")
    assert r.returncode == 2, r.stdout[-2000:] + r.stderr[-2000:]
    assert "pending placement" in (r.stdout + r.stderr)
    assert "replica 3 cannot be placed" in run["error"]
    assert time.monotonic() - t0 < 120  # not a hang until the deploy timeout


def test_locust_workers_on_both_worker_hosts(mn):
    r, run, summ = _run(mn, SCEN / "distributed-load.yaml", "dist")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    print(f"distributed-load run: stages {run['stage_durations_s']}")
    load = run["load"]
    workers = {w["ip"] for w in mn["stack"]["cluster"]["workers"]}
    assert {w["node_ip"] for w in load["remote_workers"]} == workers
    assert all(w["exit_code"] == 0 for w in load["remote_workers"])
    for w in load["remote_workers"]:  # each host's Locust worker wrote samples of its own
        lines = (r.run_dir / "samples" / f"samples-{w['locust_pid']}.jsonl").read_text().splitlines()
        assert lines, w
    rec = summ["reconciliation"]
    assert load["requests"] == load["locust_requests"] > 0
    assert rec["requests_whole_run_vs_serve_requests"]["diff"] == 0, rec


def test_kill_node_records_loss_recovery_and_alert(mn):
    r, run, summ = _run(mn, SCEN / "kill-node.yaml", "kill")
    assert r.returncode == 1, r.stdout[-3000:] + r.stderr[-3000:]  # recovery_time fails: no GPUs left for it
    print(f"kill-node run: stages {run['stage_durations_s']}")
    w0 = mn["stack"]["cluster"]["workers"][0]["ip"]
    (f,) = run["faults"]
    assert f["action"] == "kill_node" and f["node"] == w0 and f["error"] is None
    assert len(f["lost_replicas"]) == 1 and f["replicas_before"] == 2
    assert f["recovered_at"] is None and "pending placement" in f["no_recovery_reason"]
    assert f["requests_in_gap"] > 0
    downs = [a for a in run["alerts"] if a["name"] == "RayNodeDown" and a["labels"]["instance"].startswith(w0 + ":")]
    assert downs, run["alerts"]
    v = {s["slo"]: s for s in summ["slos"]}
    assert v["node_down_alert_delay.max <= 30s"]["passed"], v
    rec = v["recovery_time.max <= 30s"]
    assert not rec["passed"] and "pending placement" in rec["reason"]
    assert (r.run_dir / "alerts.jsonl").exists()


def test_down_removes_everything(mn):
    from harness.stack import multinode

    k = mn["stack"]["cluster"]["k"]
    temp = mn["stack"]["ray"]["temp_dir"]
    r = mn["cli"]("down", timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    spaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    assert f"{multinode.PREFIX}{k}-" not in spaces
    assert f"{multinode.PREFIX}{k}:" not in links and f"{multinode.PREFIX}{k}w" not in links
    assert not (multinode.REGISTRY / f"{k}.json").exists()
    import psutil

    left = [p.pid for p in psutil.process_iter(["cmdline"]) if temp in " ".join(p.info["cmdline"] or [])]
    assert not left, left
