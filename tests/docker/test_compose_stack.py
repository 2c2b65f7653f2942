"""The seed's compose stack for real (Docker Engine, images built here) gated by this harness install over HTTP.

The cluster's Python, FastAPI and Pydantic differ from this test's own (Debian's python3 3.11.2 and the newest
FastAPI pip resolves in the image): the run must not care. Someone else's app deployed before the runs must be
RUNNING and unchanged (same config, same replica actors) after a pass, a failed deploy, an interrupt and a refusal.
Traffic goes only to ports the stack publishes on 127.0.0.1; the compose network has a subnet of the project's own.
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

from harness.deploy import rest
from harness.deploy.serve_config import application
from harness.scenario import load_scenario
from harness.stack import docker as dk
from harness.stack.dashboard import Dashboard

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "scenarios" / "smoke.yaml"
FOREIGN = "someone-elses"  # an app the harness did not deploy: no owner mark


def cli(*args: str, env: dict | None = None, timeout: float = 400) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", *args],
        cwd=ROOT,
        env=env or os.environ.copy(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """Images built (or found by their input hash), then `harness docker up --cpu --json`; down after the module."""
    if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        pytest.skip("Docker daemon not running (bash .ci/install-docker.sh starts it)")
    state = tmp_path_factory.mktemp("docker-state")
    env = {**os.environ, "HARNESS_STATE_DIR": str(state)}
    project = f"harness-test-{os.getpid()}"
    t0 = time.monotonic()
    r = cli("docker", "build", "--json", env=env, timeout=1500)
    assert r.returncode == 0, r.stderr[-3000:]
    build_s = time.monotonic() - t0
    r = cli("docker", "up", "--cpu", "--workers", "1", "--project", project, "--json", env=env, timeout=400)
    assert r.returncode == 0, r.stderr[-3000:]
    info = json.loads(r.stdout)
    print(
        f"\ndocker build {build_s:.1f} s ({json.loads(cli('docker', 'build', '--json', env=env).stdout)['built']}), "
        f"up {info['up_s']} s"
    )
    yield {**info, "env": env}
    r = cli("docker", "down", "--project", project, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert dk.project_resources(project) == {"containers": [], "networks": [], "volumes": []}


def run_dir_in(results: Path) -> Path:
    (d,) = [p for p in results.iterdir() if p.is_dir()]
    return d


def attach_args(st: dict) -> list[str]:
    return [
        "--dashboard-url",
        st["dashboard_url"],
        "--prometheus-url",
        st["prometheus_url"],
        "--endpoint-url",
        st["serve_url"],
    ]


def test_stack_is_healthy_through_the_discovery_file_on_a_read_only_volume(stack):
    r = cli("verify", "--dashboard-url", stack["dashboard_url"], "--prometheus-url", stack["prometheus_url"], "--json")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    checks = {c["name"]: c for c in json.loads(r.stdout)["checks"]}
    assert checks["nodes"]["status"] == "ok", checks["nodes"]  # Prometheus's nodes == the State API's node list
    assert "2 node(s)" in checks["nodes"]["detail"]
    assert checks["ray_cluster_active_nodes"]["status"] == "ok"
    # every target Prometheus found is an address of this stack's own subnet (from Ray's discovery file)
    import ipaddress

    net = ipaddress.ip_network(stack["subnet"])
    targets = checks["prometheus_targets"]["data"]["targets"]
    assert targets and all(ipaddress.ip_address(t["address"].split(":")[0]) in net for t in targets), targets
    prom = f"{stack['project']}-prometheus-1"
    w = subprocess.run(["docker", "exec", prom, "sh", "-c", "touch /tmp/ray/x"], capture_output=True, text=True)
    assert w.returncode != 0 and "Read-only file system" in w.stderr, w.stderr


def test_not_a_dashboard_is_bad_input_within_seconds(stack):
    t0 = time.monotonic()
    r = cli(
        "run",
        str(SMOKE),
        "--dashboard-url",
        stack["prometheus_url"],
        "--prometheus-url",
        stack["prometheus_url"],
        "--results-dir",
        "/nonexistent-never-created",
    )
    assert r.returncode == 2 and "/api/version" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert time.monotonic() - t0 < 15


@pytest.fixture(scope="module")
def foreign_app(stack):
    """A sim app deployed declaratively by 'someone else' (no owner mark), before any harness run."""
    dash = Dashboard(stack["dashboard_url"])
    sc = load_scenario(SMOKE)
    target = sc.target.model_copy(update={"app_name": FOREIGN, "route_prefix": "/theirs"})
    app = application(target, runtime_env={"working_dir": rest.ship_serve_apps(dash)})
    dash.put_serve_config({"applications": [app]})
    rest.wait_running(dash, FOREIGN, 120)
    yield dash
    details = dash.serve_details()
    dash.put_serve_config(rest.without_app(details, FOREIGN))


def snapshot(dash: Dashboard) -> dict:
    """What 'unchanged' means: same status, same deployed config, the same replica actors (none restarted).
    Not `last_deployed_time_s`: Serve stamps every app named in a PUT with a new one, although an app whose config
    did not change keeps its replicas (checked here by their actor names)."""
    app = dash.serve_details()["applications"][FOREIGN]
    return {
        "status": app["status"],
        "config": app["deployed_app_config"],
        "replicas": sorted(rest.replicas_by_node(dash, FOREIGN).items()),
        "deployments": {n: d["status"] for n, d in app["deployments"].items()},
    }


def test_run_from_another_environment_passes_and_leaves_the_foreign_app_alone(stack, foreign_app, tmp_path):
    before = snapshot(foreign_app)
    r = cli("run", str(SMOKE), *attach_args(stack), "--results-dir", str(tmp_path), "--json", env=stack["env"])
    s = json.loads(r.stdout) if r.stdout.strip() else {}
    assert r.returncode == 0, [v for v in s.get("slos", []) if not v["passed"]] or r.stderr[-3000:]
    run_dir = run_dir_in(tmp_path)
    rec = json.loads((run_dir / "run.json").read_text())
    details = rec["deployment"]["details"]
    cluster = details["cluster_env"]
    import fastapi
    import pydantic

    mine = {"python": sys.version.split()[0], "fastapi": fastapi.__version__, "pydantic": pydantic.__version__}
    assert {k: cluster[k] for k in mine} != mine, "the cluster must run another environment than this driver"
    assert details["applied_by"].startswith("dashboard REST API")
    server = s["server"]
    assert server["kv_cache_usage"]["max"] > 0 and server["replicas"]["max"] >= 1, server
    # Serve's request counter read once per request: the compose Prometheus also scrapes the head in a static job,
    # and only the discovery-file job may be counted
    assert rec["scrape"]["ray_job"] == "ray"
    assert not [w for w in s["warnings"] if "server Serve router requests counted" in w], s["warnings"]
    assert rec["environment"]["cluster"]["nodes"] == 2
    assert snapshot(foreign_app) == before
    assert "llm" not in foreign_app.serve_details()["applications"]  # our app removed, theirs kept


def test_failed_deploy_shows_the_clusters_message_and_leaves_the_foreign_app_alone(stack, foreign_app, tmp_path):
    before = snapshot(foreign_app)
    doc = yaml.safe_load(SMOKE.read_text())
    doc["target"]["sim"]["startup_error"] = "planted failure for the test"
    bad = tmp_path / "broken.yaml"
    bad.write_text(yaml.safe_dump(doc))
    r = cli("run", str(bad), *attach_args(stack), "--results-dir", str(tmp_path / "res"), env=stack["env"])
    assert r.returncode == 2, r.stdout[-2000:] + r.stderr[-3000:]
    assert "failed to deploy on the cluster" in r.stderr and "planted failure for the test" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    assert snapshot(foreign_app) == before
    assert "llm" not in foreign_app.serve_details()["applications"]


def test_interrupted_run_removes_only_its_own_app(stack, foreign_app, tmp_path):
    before = snapshot(foreign_app)
    p = subprocess.Popen(
        [sys.executable, "-m", "harness.cli", "run", str(SMOKE), *attach_args(stack), "--results-dir", str(tmp_path)],
        cwd=ROOT,
        env=stack["env"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 120
    assert p.stdout is not None
    for line in p.stdout:  # bounded: the run prints each stage; interrupt once the load runs
        if "▶ load" in line or time.monotonic() > deadline:
            break
    assert "llm" in foreign_app.serve_details()["applications"]  # ours was deployed beside theirs
    time.sleep(3)
    p.send_signal(signal.SIGINT)
    out, _ = p.communicate(timeout=120)
    assert p.returncode == 130, out[-3000:]
    rec = json.loads(run_dir_in(tmp_path).joinpath("run.json").read_text())
    assert rec["status"] == "interrupted"
    assert snapshot(foreign_app) == before
    assert "llm" not in foreign_app.serve_details()["applications"]


def test_engine_the_image_lacks_is_named(stack, tmp_path):
    """The CPU image has Ray Serve but no vLLM: a vLLM scenario fails at deploy with the cluster's own message and
    a fix that says so, and leaves nothing behind."""
    r = cli(
        "run",
        str(ROOT / "scenarios" / "vllm-cpu-smoke.yaml"),
        *attach_args(stack),
        "--results-dir",
        str(tmp_path),
        env={**stack["env"], "HARNESS_MODEL_DIR": str(tmp_path / "model")},
    )
    assert r.returncode == 2, r.stdout[-2000:] + r.stderr[-3000:]
    assert "has no vLLM" in r.stderr.split("fix:")[-1], r.stderr
    assert "llm" not in Dashboard(stack["dashboard_url"]).serve_details().get("applications", {})


def test_same_named_foreign_app_is_refused_untouched(stack, foreign_app, tmp_path):
    before = snapshot(foreign_app)
    doc = yaml.safe_load(SMOKE.read_text())
    doc["target"]["app_name"] = FOREIGN
    clash = tmp_path / "clash.yaml"
    clash.write_text(yaml.safe_dump(doc))
    r = cli("run", str(clash), *attach_args(stack), "--results-dir", str(tmp_path / "res"), env=stack["env"])
    assert r.returncode == 2 and "did not deploy" in r.stderr and "--replace-app" in r.stderr, r.stderr
    assert snapshot(foreign_app) == before


def test_repeat_and_sweep_against_the_attached_cluster(stack, foreign_app, tmp_path):
    """`run --repeat` keeps its app between repeats (same replicas), removes it after; `sweep` steps run there too."""
    before = snapshot(foreign_app)
    doc = yaml.safe_load(SMOKE.read_text())
    doc["load"] = {"warmup_s": 1, "stages": [{"name": "s", "duration_s": 6, "users": 2, "spawn_rate": 2}]}
    sc = tmp_path / "short.yaml"
    sc.write_text(yaml.safe_dump(doc))
    r = cli(
        "run",
        str(sc),
        *attach_args(stack),
        "--repeat",
        "2",
        "--results-dir",
        str(tmp_path / "rep"),
        "--json",
        env=stack["env"],
    )
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    (group,) = [p for p in (tmp_path / "rep").iterdir() if p.is_dir()]
    runs = sorted(p for p in group.iterdir() if (p / "run.json").exists())
    reps = [json.loads((p / "run.json").read_text())["deployment"]["details"] for p in runs]
    assert [d["reused"] for d in reps] == [False, True] and reps[0]["replicas"] == reps[1]["replicas"], reps
    r = cli(
        "sweep",
        str(sc),
        "--concurrency",
        "1,2",
        "--step-duration-s",
        "5",
        "--refine",
        "0",
        "--dashboard-url",
        stack["dashboard_url"],
        "--prometheus-url",
        stack["prometheus_url"],
        "--endpoint-url",
        stack["serve_url"],
        "--results-dir",
        str(tmp_path / "sw"),
        env=stack["env"],
    )
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    assert snapshot(foreign_app) == before
    assert "llm" not in foreign_app.serve_details()["applications"]


def test_replica_kill_fault_over_the_jobs_api(stack, tmp_path):
    doc = yaml.safe_load((ROOT / "scenarios" / "fault-replica-kill.yaml").read_text())
    doc["load"]["stages"] = [{"name": "steady", "duration_s": 20, "users": 4, "spawn_rate": 4}]
    doc["faults"][0]["at_s"] = 6
    sc = tmp_path / "fault.yaml"
    sc.write_text(yaml.safe_dump(doc))
    r = cli("run", str(sc), *attach_args(stack), "--results-dir", str(tmp_path / "res"), "--json", env=stack["env"])
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    (ev,) = json.loads(r.stdout)["faults"]
    assert ev["error"] is None and len(ev["killed"]) == 1 and ev["replicas_before"] == 2, ev
    assert ev["min_replicas_seen"] == 1 and ev["recovery_s"] is not None and ev["recovery_s"] <= 30, ev


def test_prometheus_without_the_shared_volume_is_named_by_verify(stack):
    """The seed's first troubleshooting case: a Prometheus that cannot see Ray's discovery file has no Ray targets;
    verify fails and its fix names the mount."""
    from harness.stack.net import free_port

    name, port = f"{stack['project']}-prom-novolume", free_port()
    cfg = dk.compose_files()[0].parent / "prometheus"
    subprocess.run(
        [
            "docker",
            "run",
            "-d",
            "--rm",
            "--name",
            name,
            "--network",
            f"{stack['project']}_default",
            "-p",
            f"127.0.0.1:{port}:9090",
            "-v",
            f"{cfg}:/etc/prometheus:ro",
            stack["images"]["prometheus"],
            "--config.file=/etc/prometheus/prometheus.yml",
            "--storage.tsdb.path=/prometheus",
        ],
        check=True,
        capture_output=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        r = cli("verify", "--prometheus-url", url, "--json")
        while "not reachable" in r.stdout and time.monotonic() < deadline:  # Prometheus starting
            time.sleep(1)
            r = cli("verify", "--prometheus-url", url, "--json")
        assert r.returncode == 1, r.stdout[-2000:]
        (chk,) = [c for c in json.loads(r.stdout)["checks"] if c["name"] == "prometheus_targets"]
        assert chk["status"] == "fail" and "no targets" in chk["detail"] and "volume" in chk["fix"], chk
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)


def test_worker_added_during_a_run_is_discovered_and_recorded(stack, tmp_path, monkeypatch):
    """Scale 1 → 2 workers while the load runs: Ray lists the node, rewrites its discovery file (every 5 s),
    Prometheus re-reads it (every 10 s) and scrapes it (every 1 s): UP within 5 + 10 + 2 = 17 s of Ray listing it."""
    monkeypatch.setenv("HARNESS_STATE_DIR", stack["env"]["HARNESS_STATE_DIR"])
    doc = yaml.safe_load(SMOKE.read_text())
    doc["load"]["stages"] = [{"name": "steady", "duration_s": 40, "users": 4, "spawn_rate": 4}]
    sc = tmp_path / "long.yaml"
    sc.write_text(yaml.safe_dump(doc))
    dash = Dashboard(stack["dashboard_url"])
    before = {n["node_ip"] for n in dash.nodes() if n["state"] == "ALIVE"}
    p = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "harness.cli",
            "run",
            str(sc),
            *attach_args(stack),
            "--results-dir",
            str(tmp_path / "r"),
        ],
        cwd=ROOT,
        env=stack["env"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert p.stdout is not None
    deadline = time.monotonic() + 120
    for line in p.stdout:
        if "▶ load" in line or time.monotonic() > deadline:
            break
    dk.scale_workers(stack["project"], 2)
    new: set[str] = set()
    while not new and time.monotonic() < deadline:
        new = {n["node_ip"] for n in dash.nodes() if n["state"] == "ALIVE"} - before
        time.sleep(0.5)
    assert len(new) == 1, new
    listed = time.monotonic()
    from harness.stack.net import http_json

    def up() -> bool:
        t = http_json(f"{stack['prometheus_url']}/api/v1/targets?state=active")["data"]["activeTargets"]
        return any(x["labels"].get("instance", "").startswith(f"{next(iter(new))}:") and x["health"] == "up" for x in t)

    while not up() and time.monotonic() - listed < 30:
        time.sleep(0.5)
    found_s = time.monotonic() - listed
    print(f"\nnew node {new} UP in Prometheus {found_s:.1f} s after Ray listed it")
    assert up() and found_s <= 17, found_s
    out, _ = p.communicate(timeout=240)
    assert p.returncode == 0, out[-3000:]
    rec = json.loads(run_dir_in(tmp_path / "r").joinpath("run.json").read_text())
    seen = {ip for per_ip in rec["node_stats"].values() for ip in per_ip}
    assert new <= seen, (new, seen)  # the new node's own series are in the record


def test_lost_worker_goes_down_in_prometheus_and_verify_names_the_fix(stack):
    """Last: it takes a node away. Its targets go DOWN, RayNodeDown starts in the stack's own rules."""
    worker = f"{stack['project']}-ray-worker-1"
    ip = subprocess.run(
        ["docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", worker],
        capture_output=True,
        text=True,
    ).stdout.strip()
    assert ip
    subprocess.run(["docker", "kill", worker], check=True, capture_output=True)
    from harness.stack.net import http_json

    prom = stack["prometheus_url"]

    def down() -> bool:
        t = http_json(f"{prom}/api/v1/targets?state=active")["data"]["activeTargets"]
        return any(x["labels"].get("instance", "").startswith(ip) and x["health"] == "down" for x in t)

    deadline = time.monotonic() + 30  # scrape every 5 s, timeout 10 s
    while not down() and time.monotonic() < deadline:
        time.sleep(1)
    assert down(), f"{ip}'s targets never went DOWN"
    r = cli("verify", "--dashboard-url", stack["dashboard_url"], "--prometheus-url", prom, "--json")
    assert r.returncode == 1, r.stdout[-3000:]
    checks = {c["name"]: c for c in json.loads(r.stdout)["checks"]}
    bad = [c for c in checks.values() if c["status"] == "fail"]
    assert bad and any(ip in (c["detail"] + json.dumps(c.get("data"))) for c in bad), bad
    assert all(c["fix"] for c in bad)
    alerts = http_json(f"{prom}/api/v1/alerts")["data"]["alerts"]
    deadline = time.monotonic() + 20
    while not any(a["labels"]["alertname"] == "RayNodeDown" for a in alerts) and time.monotonic() < deadline:
        time.sleep(1)
        alerts = http_json(f"{prom}/api/v1/alerts")["data"]["alerts"]
    assert any(a["labels"]["alertname"] == "RayNodeDown" and a["state"] in ("pending", "firing") for a in alerts)
