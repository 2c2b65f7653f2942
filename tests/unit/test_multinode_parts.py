"""Pure parts of the multi-node path: placement feasibility, bundles, privileges message, alert rules and signals."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml
from typer.testing import CliRunner

from harness.deploy.placement import infeasible_reason
from harness.stack.alerts import alert_signals, local_rules, merge
from serve_apps.sim.placement import bundles


def _node(ip, gpus, cpus=2, accel="H100"):
    res = {"CPU": float(cpus), "GPU": float(gpus)}
    if accel:
        res[f"accelerator_type:{accel}"] = 1.0
    return {"node_ip": ip, "node_id": ip, "resources": res}


NODES = [_node("10.0.0.1", 0, 4, None), _node("10.0.0.10", 2), _node("10.0.0.11", 2)]


def test_bundles_like_ray_serve_llm():
    b = bundles({"tensor_parallel_size": 2, "pipeline_parallel_size": 2, "accelerator_type": "H100"}, 0.5)
    assert len(b) == 4
    assert b[0] == {"GPU": 1.0, "accelerator_type:H100": 0.001, "CPU": 0.5}  # the replica actor merged into bundle 0
    assert b[1:] == [{"GPU": 1.0, "accelerator_type:H100": 0.001}] * 3
    assert bundles({"device": "cpu", "tensor_parallel_size": 2}, 0.5) == [{"CPU": 1.5}, {"CPU": 1.0}]


def test_feasibility():
    b = bundles({"tensor_parallel_size": 2, "accelerator_type": "H100"}, 0.5)
    assert infeasible_reason(b, "PACK", 2, NODES) is None
    why = infeasible_reason(b, "PACK", 3, NODES)
    assert why.startswith("pending placement: replica 3 cannot be placed") and "10.0.0.10: GPU 2" in why
    assert infeasible_reason(b, "STRICT_PACK", 1, [_node("a", 1), _node("b", 1)]).startswith("pending placement")
    assert infeasible_reason(b, "SPREAD", 1, [_node("a", 1), _node("b", 1)]) is None
    assert infeasible_reason(b, "STRICT_SPREAD", 1, [_node("a", 2)]) is not None
    other = bundles({"tensor_parallel_size": 1, "accelerator_type": "A100"}, 0.5)
    assert "no node has room" in infeasible_reason(other, "PACK", 1, NODES)


def test_up_workers_without_root_says_how(monkeypatch):
    from harness.cli import app
    from harness.stack import multinode

    monkeypatch.setattr(multinode.os, "geteuid", lambda: 1000)
    r = CliRunner().invoke(app, ["up", "--workers", "2"])
    assert r.exit_code == 2
    assert "which need root" in r.output and "CAP_NET_ADMIN" in r.output and "Traceback" not in r.output


def test_node_faults_need_cluster():
    from harness.errors import ScenarioError
    from harness.scenario import parse_scenario

    sc = {
        "name": "x",
        "target": {"engine": "sim", "model": "m"},
        "load": {"stages": [{"duration_s": 10, "users": 1}]},
        "faults": [{"at_s": 2, "action": "kill_node"}],
    }
    with pytest.raises(ScenarioError) as e:
        parse_scenario(sc, "f.yaml")
    assert "needs a local multi-node cluster" in e.value.problems[0]
    sc["cluster"] = {"workers": 2}
    assert parse_scenario(sc).faults[0].action == "kill_node"
    sc["target"]["engine"], sc["target"]["url"] = "external", "http://x"
    sc.pop("faults")
    sc["target"]["placement"] = {"tensor_parallel_size": 2}
    with pytest.raises(ScenarioError):
        parse_scenario(sc)


@pytest.mark.skipif(not shutil.which("promtool"), reason="needs promtool")
def test_local_rules_cap_for_and_stay_valid(tmp_path):
    p = local_rules(tmp_path, for_cap_s=3)
    rules = {r["alert"]: r for g in yaml.safe_load(p.read_text())["groups"] for r in g["rules"]}
    assert rules["RayNodeDown"]["for"] == "3s" and rules["KVCacheHigh"]["for"] == "3s"
    assert rules["RayNodeDown"]["expr"].strip() == 'up{job="ray"} == 0'  # the project's expression, unchanged
    r = subprocess.run(["promtool", "check", "rules", str(p)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_alert_signals():
    ev = [
        {
            "received_at": 105.0,
            "fingerprint": "a",
            "status": "firing",
            "labels": {"alertname": "RayNodeDown", "instance": "10.0.0.10:58080"},
            "startsAt": "1970-01-01T00:01:44Z",
            "endsAt": "0001-01-01T00:00:00Z",
        },
        {
            "received_at": 130.0,
            "fingerprint": "a",
            "status": "resolved",
            "labels": {"alertname": "RayNodeDown", "instance": "10.0.0.10:58080"},
            "startsAt": "1970-01-01T00:01:44Z",
            "endsAt": "1970-01-01T00:02:10Z",
        },
    ]
    alerts = merge(ev)
    assert alerts == [
        {
            "name": "RayNodeDown",
            "labels": ev[0]["labels"],
            "starts_at": 104.0,
            "ends_at": 130.0,
            "notified_at": 105.0,
            "status": "resolved",
        }
    ]
    faults = [{"action": "kill_node", "node": "10.0.0.10", "fired_at": 98.0}]
    sig = alert_signals(alerts, faults, 90.0, 140.0)
    assert sig["alerts_fired"] == {"total": 1.0}
    assert sig["node_down_alert_delay"]["max"] == pytest.approx(6000.0)
    assert "node_down_alert_delay" not in alert_signals(
        alerts, [{"action": "kill_node", "node": "10.0.0.11", "fired_at": 98.0}], 90, 140
    )


def test_verify_nodes_groups_targets_by_host():
    from harness.commands.verify import _check_nodes

    t = [
        {"address": "10.0.0.1:1", "health": "up"},
        {"address": "10.0.0.1:2", "health": "up"},
        {"address": "10.0.0.10:58080", "health": "down", "last_error": "connection refused"},
    ]
    c = _check_nodes("http://p", t, None, 1.0)
    assert c.status == "fail" and "10.0.0.10 0/1 UP (connection refused)" in c.detail
    assert [n["node"] for n in c.data["nodes"]] == ["10.0.0.1", "10.0.0.10"]
    assert _check_nodes("http://p", t[:2], None, 1.0).status == "ok"
    assert _check_nodes("http://p", [], None, 1.0).status == "skip"


def test_running_stack_shape_must_match_scenario_cluster():
    from harness.scenario import ClusterSpec
    from harness.stack import Stack
    from harness.stack.multinode import matches

    st = Stack("a", "b", cluster={"workers": [{}, {}], "gpus_per_worker": 2, "accelerator_type": "H100"})
    assert matches(st, ClusterSpec(workers=2, gpus_per_worker=2, accelerator_type="H100")) is None
    assert "1 worker" not in (matches(st, ClusterSpec(workers=3, gpus_per_worker=2)) or "")
    assert matches(st, ClusterSpec(workers=3, gpus_per_worker=2)).startswith("the running stack has 2 worker(s)")
    assert matches(Stack("a", "b"), ClusterSpec(workers=1)) == "the running stack is single-node"
