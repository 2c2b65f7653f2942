"""`harness k8s render`: the manifests checked as a cluster would check them, without a cluster (none runs here).

- custom resources against the CRDs' own openAPIV3Schema (KubeRay v1.7.0 RayService, Prometheus Operator v0.93.0
  PodMonitor and PrometheusRule; trimmed copies in tests/fixtures/k8s_crds/), strictly: an unknown field fails,
  as `kubectl apply` (strict field validation) would refuse it;
- the RayService's pod templates against Kubernetes' own schema (kubernetes-validate ships it: no network);
- KubeRay's own admission rules that a schema cannot express (harness/deploy/k8s.py cites them);
- what the objects mean: serveConfigV2 is serve_config(...), GPUs match TP x PP x replicas, the PodMonitors select
  the labels KubeRay puts on the pods, the PrometheusRule holds alerts.yml's groups.
"""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from harness.cli import app
from harness.deploy import k8s
from harness.deploy.serve_config import serve_config
from harness.deploy.vllm import describe_placement
from harness.errors import HarnessError
from harness.scenario import load_scenario, parse_scenario, resolve_scenario_path

REPO = Path(__file__).resolve().parents[2]
CRDS = REPO / "tests" / "fixtures" / "k8s_crds"
ALERTS = REPO / "docker" / "prometheus" / "rules" / "alerts.yml"
K8S_VERSION = "1.33"  # a Kubernetes release KubeRay 1.7 supports; kubernetes-validate ships its schema


def _strict(s):
    """Objects with listed properties accept no others (the API server's strict field validation), unless the
    schema keeps unknown fields (x-kubernetes-preserve-unknown-fields) or declares additionalProperties."""
    if isinstance(s, dict):
        s = {k: _strict(v) for k, v in s.items()}
        if "properties" in s and "additionalProperties" not in s and not s.get("x-kubernetes-preserve-unknown-fields"):
            s["additionalProperties"] = False
        return s
    if isinstance(s, list):
        return [_strict(x) for x in s]
    return s


def _validator(kind: str):
    f = {
        "RayService": "rayservice.ray.io.v1.json",
        "PodMonitor": "podmonitor.monitoring.coreos.com.v1.json",
        "PrometheusRule": "prometheusrule.monitoring.coreos.com.v1.json",
    }[kind]
    crd = json.loads((CRDS / f).read_text())
    assert crd["kind"] == kind
    return crd, jsonschema.Draft7Validator(_strict(crd["openAPIV3Schema"]))


VALIDATORS = {k: _validator(k) for k in ("RayService", "PodMonitor", "PrometheusRule")}


def _crd_errors(obj: dict) -> list[str]:
    crd, v = VALIDATORS[obj["kind"]]
    assert obj["apiVersion"] == f"{crd['group']}/{crd['version']}"
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in v.iter_errors(obj)]


def _sc(name: str):
    return (
        load_scenario(REPO / "scenarios" / f"{name}.yaml")
        if "/" in name
        else load_scenario(resolve_scenario_path(name))
    )


def _vllm(**vllm) -> object:
    base = {
        "name": "vllm-x",
        "target": {
            "engine": "vllm",
            "model": "m",
            "autoscaling": {"min_replicas": 1, "max_replicas": 3},
            "vllm": {"model_source": "org/model", "accelerator_type": "L4", **vllm},
        },
        "load": {"stages": [{"duration_s": 5, "users": 1}]},
        "slos": ["ttft.p95 <= 1s"],
    }
    return parse_scenario(base)


SCENARIOS = ["smoke", "two-models", "steady-chat", "gpu/llama-70b-tp4", "gpu/autoscale-ramp", "multinode/placement-tp2"]


def _groups(rs: dict) -> tuple[dict, list[dict]]:
    c = rs["spec"]["rayClusterConfig"]
    return c["headGroupSpec"], c["workerGroupSpecs"]


def _containers(group: dict) -> list[dict]:
    return group["template"]["spec"]["containers"]


def _kuberay_pod_labels(group: dict, node_type: str, cluster: str = "svc-abcde") -> dict[str, str]:
    """The labels KubeRay v1.7 puts on a pod (ray-operator/controllers/ray/common/pod.go labelPod): the template's
    labels, then its own, of which node-type, group and cluster cannot be overridden."""
    own = {
        "ray.io/is-ray-node": "yes",
        "ray.io/cluster": cluster,
        "ray.io/node-type": node_type,
        "ray.io/group": group.get("groupName", "headgroup"),
        "ray.io/identifier": f"{cluster}-{node_type}",
        "app.kubernetes.io/name": "kuberay",
        "app.kubernetes.io/created-by": "kuberay-operator",
    }
    labels = dict(group["template"].get("metadata", {}).get("labels", {}))
    labels.update(own)
    return labels


@pytest.mark.parametrize("name", SCENARIOS)
def test_every_object_fits_its_crd_schema(name):
    r = k8s.render(_sc(name))
    assert [o["kind"] for o in r.manifests] == ["RayService", "PodMonitor", "PodMonitor", "PrometheusRule"]
    for obj in r.manifests:
        assert _crd_errors(obj) == [], obj["kind"]


def test_schema_check_can_fail():
    rs = k8s.render(_sc("smoke")).files["rayservice.yaml"]
    bad = json.loads(json.dumps(rs))
    bad["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["maxReplica"] = 3  # typo
    del bad["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["groupName"]  # required
    bad["spec"]["rayClusterConfig"]["headGroupSpec"]["rayStartParams"]["num-cpus"] = 0  # must be a string
    errs = "\n".join(_crd_errors(bad))
    assert "maxReplica" in errs and "groupName" in errs and "num-cpus" in errs
    pm = k8s.render(_sc("smoke")).files["podmonitor-head.yaml"]
    del pm["spec"]["selector"]
    assert any("selector" in e for e in _crd_errors(pm))


@pytest.mark.parametrize("name", SCENARIOS)
def test_pod_templates_are_valid_core_objects_offline(name, monkeypatch):
    def no_network(*a, **k):
        raise AssertionError("kubernetes-validate tried the network")

    monkeypatch.setattr(socket, "socket", no_network)
    head, workers = _groups(k8s.render(_sc(name)).files["rayservice.yaml"])
    for g in [head, *workers]:
        pt = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "t"}, "template": g["template"]}
        kubernetes_validate.validate(pt, K8S_VERSION, strict=True)
    broken = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "t"}, "template": head["template"]}
    broken = json.loads(json.dumps(broken))
    broken["template"]["spec"]["containers"][0]["port"] = 1
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


@pytest.mark.parametrize("name", SCENARIOS)
def test_kuberay_admission_rules(name):
    """What KubeRay v1.7's validation.go refuses and a schema does not express."""
    rs = k8s.render(_sc(name)).files["rayservice.yaml"]
    n = rs["metadata"]["name"]
    assert len(n) <= 47 and re.fullmatch(r"[a-z]([a-z0-9-]*[a-z0-9])?", n)
    head, workers = _groups(rs)
    assert not rs["spec"]["rayClusterConfig"].get("enableInTreeAutoscaling") or any(
        w["maxReplicas"] > w["minReplicas"] for w in workers
    )
    for g in [head, *workers]:
        assert _containers(g), "at least one container"
        assert "labels" not in g["rayStartParams"] and not g.get("resources"), "resources in one place only"
        ports = [p["name"] for c in _containers(g) for p in c["ports"]]
        assert len(set(ports)) == len(ports) and all(len(p) <= 15 for p in ports)
    for w in workers:
        assert 0 <= w["minReplicas"] <= w["replicas"] <= w["maxReplicas"]


@pytest.mark.parametrize("name", SCENARIOS)
def test_serve_config_v2_is_the_serve_config(name):
    sc = _sc(name)
    rs = k8s.render(sc).files["rayservice.yaml"]
    assert yaml.safe_load(rs["spec"]["serveConfigV2"]) == serve_config(sc)
    url = "https://example.org/harness-serve-apps.zip"
    rs = k8s.render(sc, k8s.K8sOptions(working_dir=url)).files["rayservice.yaml"]
    assert yaml.safe_load(rs["spec"]["serveConfigV2"]) == serve_config(sc, runtime_env={"working_dir": url})
    assert yaml.safe_load(rs["spec"]["serveConfigV2"])["applications"][0]["runtime_env"] == {"working_dir": url}


def _gpus(workers: list[dict]) -> tuple[int, int]:
    """(GPUs per pod from the limits, GPUs at maxReplicas pods) of the single worker group."""
    (w,) = workers
    lim = int(_containers(w)[0]["resources"]["limits"].get("nvidia.com/gpu", 0))
    assert int(w["rayStartParams"].get("num-gpus", 0)) == lim
    return lim, lim * w["maxReplicas"]


def test_gpus_match_tp_pp_and_replicas():
    # 70B, TP 4, one replica: one pod of 4 H100s
    _, workers = _groups(k8s.render(_sc("gpu/llama-70b-tp4")).files["rayservice.yaml"])
    assert _gpus(workers) == (4, 4)
    assert workers[0]["minReplicas"] == workers[0]["maxReplicas"] == 1
    # 8B autoscaled 1 -> 4 single-GPU replicas: 1..4 pods of 1 GPU, KubeRay's autoscaler on
    rs = k8s.render(_sc("gpu/autoscale-ramp")).files["rayservice.yaml"]
    _, workers = _groups(rs)
    assert _gpus(workers) == (1, 4)
    assert (workers[0]["minReplicas"], workers[0]["replicas"], workers[0]["maxReplicas"]) == (1, 1, 4)
    assert rs["spec"]["rayClusterConfig"]["enableInTreeAutoscaling"] is True
    # TP 2 x PP 2, up to 3 replicas: 4 GPUs a replica, 12 at most
    sc = _vllm(tensor_parallel_size=2, pipeline_parallel_size=2)
    _, workers = _groups(k8s.render(sc).files["rayservice.yaml"])
    assert _gpus(workers) == (4, 12)
    # the same on 2-GPU nodes: a replica spans 2 pods
    _, workers = _groups(k8s.render(sc, k8s.K8sOptions(gpus_per_worker=2)).files["rayservice.yaml"])
    assert _gpus(workers) == (2, 12) and workers[0]["minReplicas"] == 2
    # two replicas on 8-GPU nodes: 2 per pod
    _, workers = _groups(k8s.render(sc, k8s.K8sOptions(gpus_per_worker=8)).files["rayservice.yaml"])
    assert _gpus(workers) == (8, 16) and workers[0]["maxReplicas"] == 2
    # the sim's TP 2 placement on the scenario's 2-GPU workers: 2 replicas, 2 pods of 2 GPUs
    _, workers = _groups(k8s.render(_sc("multinode/placement-tp2")).files["rayservice.yaml"])
    assert _gpus(workers) == (2, 4)
    # several vLLM models: one deployment (and its replicas) each
    two = parse_scenario(
        {
            **_vllm().model_dump(mode="json", exclude_unset=True),
            "target": {
                **_vllm().target.model_dump(mode="json", exclude_unset=True),
                "models": [{"name": "m"}, {"name": "n"}],
            },
        }
    )
    _, workers = _groups(k8s.render(two).files["rayservice.yaml"])
    assert _gpus(workers) == (1, 6)


def test_cpu_replicas_and_logical_gpus():
    _, workers = _groups(k8s.render(_sc("smoke")).files["rayservice.yaml"])
    assert "nvidia.com/gpu" not in _containers(workers[0])[0]["resources"]["limits"]
    assert "num-gpus" not in workers[0]["rayStartParams"]
    _, workers = _groups(
        k8s.render(_sc("multinode/placement-tp2"), k8s.K8sOptions(logical_gpus=True)).files["rayservice.yaml"]
    )
    assert workers[0]["rayStartParams"]["num-gpus"] == "2"
    assert "nvidia.com/gpu" not in _containers(workers[0])[0]["resources"]["limits"]


def test_accelerator_type_resource_covers_what_replicas_ask():
    sc = _sc("gpu/llama-70b-tp4")
    head, workers = _groups(k8s.render(sc).files["rayservice.yaml"])
    res = k8s.custom_resources(workers[0]["rayStartParams"]["resources"])
    assert res == {"accelerator_type:H100": 1}
    asked = {k for b in describe_placement(sc.target)["bundles"] for k in b if k.startswith("accelerator_type:")}
    assert asked == set(res)
    assert head["rayStartParams"] == {"dashboard-host": "0.0.0.0", "metrics-export-port": "8080", "num-cpus": "0"}
    assert "resources" not in _groups(k8s.render(_sc("smoke")).files["rayservice.yaml"])[1][0]["rayStartParams"]


def test_ports_image_env():
    head, workers = _groups(k8s.render(_sc("gpu/llama-70b-tp4")).files["rayservice.yaml"])
    ports = {p["name"]: p["containerPort"] for p in _containers(head)[0]["ports"]}
    assert ports == {
        "gcs-server": 6379,
        "dashboard": 8265,
        "client": 10001,
        "serve": 8000,
        "metrics": 8080,
        "as-metrics": 44217,
        "dash-metrics": 44227,
    }
    assert {p["name"]: p["containerPort"] for p in _containers(workers[0])[0]["ports"]} == {
        "serve": 8000,
        "metrics": 8080,
    }
    for g in [head, *workers]:
        c = _containers(g)[0]
        assert c["image"] == "rayproject/ray-llm:2.60.0-py311-cu128"
        assert {"name": "RAY_metrics_report_interval_ms", "value": "1000"} in c["env"]
    assert _containers(_groups(k8s.render(_sc("smoke")).files["rayservice.yaml"])[0])[0]["image"] == (
        "rayproject/ray:2.60.0-py311"
    )
    opts = k8s.K8sOptions(image="reg.example/ray:mine", ray_version="2.59.0")
    rs = k8s.render(_sc("smoke"), opts).files["rayservice.yaml"]
    assert rs["spec"]["rayClusterConfig"]["rayVersion"] == "2.59.0"
    assert _containers(_groups(rs)[0])[0]["image"] == "reg.example/ray:mine"


@pytest.mark.parametrize("name", ["smoke", "gpu/llama-70b-tp4"])
def test_pod_monitors_select_kuberay_pods_on_metrics_ports(name):
    r = k8s.render(_sc(name))
    head, workers = _groups(r.files["rayservice.yaml"])
    pods = {"head": _kuberay_pod_labels(head, "head"), "worker": _kuberay_pod_labels(workers[0], "worker")}
    other = _kuberay_pod_labels({**workers[0], "template": {"metadata": {"labels": {}}}}, "worker", "someone-else")
    port_names = {
        "head": {p["name"] for p in _containers(head)[0]["ports"]},
        "worker": {p["name"] for p in _containers(workers[0])[0]["ports"]},
    }
    for fname, node_type in (("podmonitor-head.yaml", "head"), ("podmonitor-workers.yaml", "worker")):
        pm = r.files[fname]
        want = pm["spec"]["selector"]["matchLabels"]
        selects = {t for t, labels in pods.items() if want.items() <= labels.items()}
        assert selects == {node_type}
        assert not want.items() <= other.items(), "another RayCluster's pods are not scraped"
        ports = [e["port"] for e in pm["spec"]["podMetricsEndpoints"]]
        assert set(ports) <= port_names[node_type]
        assert "namespaceSelector" not in pm["spec"]  # its own namespace: the RayService's
        for e in pm["spec"]["podMetricsEndpoints"]:
            assert {"action": "replace", "targetLabel": "job", "replacement": "ray"} in e["relabelings"]
    assert [e["port"] for e in r.files["podmonitor-head.yaml"]["spec"]["podMetricsEndpoints"]] == [
        "metrics",
        "as-metrics",
        "dash-metrics",
    ]


def test_prometheus_rule_is_alerts_yml():
    r = k8s.render(_sc("smoke"), k8s.K8sOptions(monitor_labels={"release": "prometheus"}, namespace="llm"))
    pr = r.files["prometheusrule.yaml"]
    assert pr["spec"]["groups"] == yaml.safe_load(ALERTS.read_text())["groups"]
    assert all('job="ray"' in rule["expr"] for g in pr["spec"]["groups"] for rule in g["rules"])
    for obj in r.manifests:
        assert obj["metadata"]["namespace"] == "llm"
    for f in ("podmonitor-head.yaml", "podmonitor-workers.yaml", "prometheusrule.yaml"):
        assert r.files[f]["metadata"]["labels"] == {"release": "prometheus"}


def test_names():
    assert k8s.resource_name("Steady_Chat.v2") == "steady-chat-v2"
    assert k8s.resource_name("2fast") == "fast"
    assert k8s.render(_sc("smoke"), k8s.K8sOptions(name="bench")).name == "bench"
    with pytest.raises(HarnessError, match="DNS-1035"):
        k8s.render(_sc("smoke"), k8s.K8sOptions(name="Bench_1"))
    with pytest.raises(HarnessError, match="at most 47"):
        k8s.render(_sc("smoke"), k8s.K8sOptions(name="a" * 48))


def test_strict_pack_that_does_not_fit_is_refused():
    sc = _sc("multinode/placement-tp2")
    sc.target.placement.strategy = "STRICT_PACK"  # type: ignore[union-attr]
    with pytest.raises(HarnessError, match="STRICT_PACK"):
        k8s.render(sc, k8s.K8sOptions(gpus_per_worker=1))


def test_write_files_round_trip(tmp_path):
    r = k8s.render(_sc("gpu/llama-70b-tp4"))
    out = tmp_path / "m"
    paths = k8s.write_manifests(r, out)
    assert sorted(p.name for p in out.iterdir()) == sorted(r.files)
    for p in paths:
        docs = list(yaml.safe_load_all(p.read_text()))
        assert docs == [r.files[p.name]]  # one object per file, the same after YAML
    assert "serveConfigV2: |" in (out / "rayservice.yaml").read_text()  # readable block, as KubeRay's samples


def test_apps_zip_layout_for_remote_working_dir(tmp_path):
    import zipfile

    k8s.write_manifests(k8s.render(_sc("smoke")), tmp_path / "m", apps_zip=True)
    names = zipfile.ZipFile(tmp_path / "m" / "serve_apps.zip").namelist()
    # Ray strips a remote zip's single top-level folder: serve_apps/ must be one level down
    assert {n.split("/")[0] for n in names} == {"harness-serve-apps"}
    assert "harness-serve-apps/serve_apps/sim/app.py" in names


def _err(res) -> str:
    return res.output + (res.stderr if res.stderr_bytes is not None else "")


def test_cli_render_and_bad_input(runner, tmp_path):
    out = tmp_path / "k"
    res = runner.invoke(app, ["k8s", "render", "smoke", "-o", str(out), "--monitor-label", "release=prometheus"])
    assert res.exit_code == 0, _err(res)
    assert "--working-dir" in _err(res)  # the sim image lacks serve_apps: say what to do
    assert sorted(p.name for p in out.iterdir()) == [
        "podmonitor-head.yaml",
        "podmonitor-workers.yaml",
        "prometheusrule.yaml",
        "rayservice.yaml",
    ]
    res = runner.invoke(app, ["k8s", "render", "smoke", "-o", str(out)])
    assert res.exit_code == 2 and "not empty" in _err(res) and "--force" in _err(res)
    assert "Traceback" not in _err(res)
    res = runner.invoke(app, ["k8s", "render", "smoke", "-o", str(out), "--force"])
    assert res.exit_code == 0, _err(res)
    (tmp_path / "file").write_text("x")
    res = runner.invoke(app, ["k8s", "render", "smoke", "-o", str(tmp_path / "file" / "sub")])
    assert res.exit_code == 2 and "cannot write" in _err(res)
    ext = tmp_path / "ext.yaml"
    ext.write_text(
        "name: ext\ntarget: {engine: external, model: m, url: 'http://127.0.0.1:9/v1'}\n"
        "load: {stages: [{duration_s: 5, users: 1}]}\nslos: [ttft.p95 <= 1s]\n"
    )
    res = runner.invoke(app, ["k8s", "render", str(ext), "-o", str(tmp_path / "e")])
    assert res.exit_code == 2 and "external" in _err(res) and "fix:" in _err(res)
    assert not (tmp_path / "e").exists()
    res = runner.invoke(app, ["k8s", "render", "smoke", "-o", str(tmp_path / "n"), "--name", "Bad_Name"])
    assert res.exit_code == 2 and "--name" in _err(res)
