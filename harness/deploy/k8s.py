"""Scenario → Kubernetes manifests: a KubeRay RayService, Prometheus Operator PodMonitors, a PrometheusRule.

`render(scenario, options)` is pure (no cluster, no files): it returns the objects as dicts, each with the file
name it is written to, and the sizing it chose; `write_manifests` writes them. Nothing here has been applied to a
cluster on this machine (none can run here): the objects are checked against KubeRay's and the Prometheus
Operator's CRD schemas and Kubernetes' own schemas in tests/unit/test_k8s.py.

Field names follow KubeRay v1.7 (`ray.io/v1` RayService: `serveConfigV2` is the Serve config as a YAML string,
`rayClusterConfig` a RayClusterSpec) and the Prometheus Operator v0.93 (`monitoring.coreos.com/v1`).

Sizing (per worker group; one group, GPU or CPU):
- a replica asks for G = TP x PP GPUs (vLLM on gpu, or a sim `placement` on gpu) and C CPUs (`replica_cpus`, plus
  one per rank for CPU placements); vLLM runs one deployment per model (`target.models`), the sim one for all;
- a worker pod holds W GPUs: `--gpus-per-worker`, else `cluster.gpus_per_worker`, else G (one replica per pod);
  W >= G packs W // G replicas into a pod, W < G spreads a replica over ceil(G / W) pods (not for STRICT_PACK);
- the group's minReplicas / replicas / maxReplicas are the pods that min / initial / max Serve replicas need;
  when max > min, KubeRay's in-tree autoscaler is on (Ray's autoscaler adds pods as Serve adds replicas);
- the head gets `num-cpus: 0`, so no replica lands on it (KubeRay's LLM sample does the same).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from harness.deploy.serve_config import serve_config
from harness.errors import HarnessError
from harness.paths import asset_dir
from harness.scenario import Scenario, Target

DEFAULT_RAY_VERSION = "2.60.0"
RAYSERVICE_API = "ray.io/v1"
MONITORING_API = "monitoring.coreos.com/v1"
# The pod label the PodMonitors select on: KubeRay names a RayService's cluster `<name>-<random>` (so
# `ray.io/cluster` is unknown before it exists) and copies pod-template labels onto the pods it creates.
INSTANCE_LABEL = "harness/rayservice"
MAX_NAME_LEN = 47  # KubeRay's MaxRayServiceNameLength (a RayCluster name, 53, minus its 6-character suffix)

# Container ports (KubeRay's defaults and names; a port name is at most 15 characters)
PORTS = {"gcs-server": 6379, "dashboard": 8265, "client": 10001, "serve": 8000, "metrics": 8080}
AUTOSCALER_METRICS = ("as-metrics", 44217)  # Ray's autoscaler metrics (head only), as KubeRay's Prometheus docs
DASHBOARD_METRICS = ("dash-metrics", 44227)  # Ray's dashboard metrics (head only)
# The metric job name the alert rules (docker/prometheus/rules/alerts.yml) and dashboards filter on
PROM_JOB = "ray"
RAY_ENV = {"RAY_metrics_report_interval_ms": "1000"}  # as the local stack: 1 s metric export, not Ray's 10 s

ALERTS_FILE = asset_dir("docker") / "prometheus" / "rules" / "alerts.yml"


def default_image(engine: str, ray_version: str = DEFAULT_RAY_VERSION) -> str:
    if engine == "vllm":
        return f"rayproject/ray-llm:{ray_version}-py311-cu128"
    return f"rayproject/ray:{ray_version}-py311"


@dataclass(frozen=True)
class K8sOptions:
    name: str | None = None  # RayService name (default: from the scenario's name)
    namespace: str | None = None  # metadata.namespace of every object (default: kubectl's current namespace)
    image: str | None = None  # default_image(engine, ray_version)
    ray_version: str = DEFAULT_RAY_VERSION
    working_dir: str | None = None  # runtime_env working_dir URL with serve_apps (https zip, gcs://, s3://...)
    gpus_per_worker: int | None = None
    worker_cpus: int | None = None
    worker_memory: str | None = None
    head_cpus: int | None = None
    head_memory: str = "8Gi"
    monitor_labels: dict[str, str] = field(default_factory=dict)  # e.g. release=prometheus (kube-prometheus-stack)
    logical_gpus: bool = False  # declare GPUs to Ray only (no nvidia.com/gpu limit): a sim on CPU nodes


@dataclass(frozen=True)
class ReplicaShape:
    gpus: int  # G: GPUs per replica (0: a CPU replica)
    cpus: float  # C: logical CPUs per replica
    accelerator_type: str | None
    strategy: str  # placement-group strategy of the replica's bundles
    deployments: int  # Serve deployments that each scale to the autoscaling bounds


@dataclass(frozen=True)
class WorkerSizing:
    group_name: str
    gpus_per_pod: int
    cpus_per_pod: int
    memory_per_pod: str
    replicas_per_pod: int
    pods_per_replica: int
    min_pods: int
    initial_pods: int
    max_pods: int

    @property
    def autoscaling(self) -> bool:
        return self.max_pods > self.min_pods


@dataclass
class Rendered:
    name: str
    files: dict[str, dict[str, Any]]  # file name → object, in apply order
    sizing: WorkerSizing
    warnings: list[str]

    @property
    def manifests(self) -> list[dict[str, Any]]:
        return list(self.files.values())


def resource_name(scenario_name: str) -> str:
    """A DNS-1035 label (lowercase letters, digits, `-`; starts with a letter), as KubeRay requires."""
    n = re.sub(r"[^a-z0-9-]+", "-", scenario_name.lower())
    n = re.sub(r"^[^a-z]+", "", n)[:MAX_NAME_LEN].rstrip("-")
    return n


def name_problem(name: str) -> str | None:
    if len(name) > MAX_NAME_LEN:
        return f"is {len(name)} characters; KubeRay allows at most {MAX_NAME_LEN} for a RayService"
    if not re.fullmatch(r"[a-z]([a-z0-9-]*[a-z0-9])?", name):
        return "is not a DNS-1035 label (lowercase letters, digits and '-', starting with a letter)"
    return None


def replica_shape(target: Target) -> ReplicaShape:
    if target.engine == "vllm":
        v = target.vllm
        assert v is not None
        ranks = v.tensor_parallel_size * v.pipeline_parallel_size
        gpu = v.device == "gpu"
        return ReplicaShape(
            gpus=ranks if gpu else 0,
            cpus=target.replica_cpus + (0 if gpu else ranks),
            accelerator_type=v.accelerator_type,
            strategy="PACK",  # Ray Serve LLM's, and what harness/deploy/vllm.py asks for
            deployments=max(1, len(target.models)),
        )
    p = target.placement
    if p is None:
        return ReplicaShape(0, target.replica_cpus, None, "PACK", 1)
    ranks = p.tensor_parallel_size * p.pipeline_parallel_size
    gpu = p.device == "gpu"
    return ReplicaShape(
        gpus=ranks if gpu else 0,
        cpus=target.replica_cpus + (0 if gpu else ranks),
        accelerator_type=p.accelerator_type,
        strategy=p.strategy,
        deployments=1,
    )


def size_workers(scenario: Scenario, shape: ReplicaShape, opts: K8sOptions) -> WorkerSizing:
    a = scenario.target.autoscaling
    cl = scenario.cluster
    initial = a.initial_replicas if a.initial_replicas is not None else a.min_replicas
    # a `cluster:` section's sizes only when the scenario sets them (its defaults are for the local sim cluster)
    cpus_opt = opts.worker_cpus or (cl.cpus_per_worker if cl and "cpus_per_worker" in cl.model_fields_set else None)
    if shape.gpus == 0:
        gpus_per_pod, pods_per_replica = 0, 1
        cpus = cpus_opt or max(2, math.ceil(shape.cpus) + 1)  # +1: raylet and agents share the pod
        if cpus < shape.cpus:
            raise HarnessError(
                f"a replica needs {shape.cpus:g} CPUs but a worker pod has {cpus}",
                fix="raise --worker-cpus (or cluster.cpus_per_worker), or lower target.replica_cpus",
            )
        per_pod = max(1, int(cpus // shape.cpus)) if shape.cpus > 0 else 1
    else:
        w = opts.gpus_per_worker or (cl.gpus_per_worker if cl and cl.gpus_per_worker else None)
        w = w or (1 if shape.strategy == "STRICT_SPREAD" else shape.gpus)
        if w >= shape.gpus:
            per_pod, pods_per_replica = w // shape.gpus, 1
            if shape.strategy == "STRICT_SPREAD" and shape.gpus > 1:
                per_pod, pods_per_replica = 1, shape.gpus  # one bundle per node
        elif shape.strategy == "STRICT_PACK":
            raise HarnessError(
                f"placement strategy STRICT_PACK puts a replica's {shape.gpus} GPUs on one node, but a worker pod "
                f"has {w}",
                fix=f"use --gpus-per-worker {shape.gpus} (or more), or strategy PACK",
            )
        else:
            per_pod, pods_per_replica = 1, math.ceil(shape.gpus / w)
        gpus_per_pod = w
        cpus = cpus_opt or max(8 * w, math.ceil(per_pod * shape.cpus) + 1)
    memory = opts.worker_memory or (f"{16 * gpus_per_pod}Gi" if gpus_per_pod else f"{2 * cpus}Gi")

    def pods(replicas: int) -> int:
        total = replicas * shape.deployments
        return math.ceil(total / per_pod) * pods_per_replica

    return WorkerSizing(
        group_name="gpu-workers" if gpus_per_pod else "cpu-workers",
        gpus_per_pod=gpus_per_pod,
        cpus_per_pod=int(cpus),
        memory_per_pod=memory,
        replicas_per_pod=per_pod,
        pods_per_replica=pods_per_replica,
        min_pods=pods(a.min_replicas),
        initial_pods=pods(initial),
        max_pods=pods(a.max_replicas),
    )


def _quoted_resources(resources: dict[str, float]) -> str:
    # KubeRay passes rayStartParams to `ray start --resources=<value>` in a shell: the JSON goes in double quotes
    return '"' + json.dumps(resources).replace('"', '\\"') + '"'


def custom_resources(value: str) -> dict[str, float]:
    """The inverse of the quoting above: rayStartParams `resources` → the dict Ray receives."""
    return json.loads(value[1:-1].replace('\\"', '"'))


def _ports(names: list[str]) -> list[dict[str, Any]]:
    extra = dict([AUTOSCALER_METRICS, DASHBOARD_METRICS])
    return [{"containerPort": {**PORTS, **extra}[n], "name": n, "protocol": "TCP"} for n in names]


def _container(name: str, image: str, ports: list[str], cpus: int, memory: str, gpus: int) -> dict[str, Any]:
    res: dict[str, Any] = {"cpu": str(cpus), "memory": memory}
    limits = dict(res)
    if gpus:
        limits["nvidia.com/gpu"] = str(gpus)  # an extended resource: its request defaults to the limit
    return {
        "name": name,
        "image": image,
        "env": [{"name": k, "value": v} for k, v in RAY_ENV.items()],
        "ports": _ports(ports),
        "resources": {"limits": limits, "requests": res},
    }


def _template(labels: dict[str, str], container: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"labels": dict(labels)}, "spec": {"containers": [container]}}


def _meta(name: str, opts: K8sOptions, labels: dict[str, str]) -> dict[str, Any]:
    m: dict[str, Any] = {"name": name}
    if labels:
        m["labels"] = dict(labels)
    if opts.namespace:
        m["namespace"] = opts.namespace
    return m


def rayservice(scenario: Scenario, name: str, sizing: WorkerSizing, shape: ReplicaShape, opts: K8sOptions) -> dict:
    image = opts.image or default_image(scenario.target.engine, opts.ray_version)
    labels = {INSTANCE_LABEL: name}
    runtime_env = {"working_dir": opts.working_dir} if opts.working_dir else None
    config = serve_config(scenario, runtime_env=runtime_env)
    cl = scenario.cluster
    head_cpus = opts.head_cpus or (cl.head_cpus if cl and "head_cpus" in cl.model_fields_set else 2)
    head = {
        "rayStartParams": {"dashboard-host": "0.0.0.0", "metrics-export-port": str(PORTS["metrics"]), "num-cpus": "0"},
        "template": _template(
            labels,
            _container(
                "ray-head",
                image,
                ["gcs-server", "dashboard", "client", "serve", "metrics", "as-metrics", "dash-metrics"],
                head_cpus,
                opts.head_memory,
                0,
            ),
        ),
    }
    start: dict[str, str] = {"metrics-export-port": str(PORTS["metrics"]), "num-cpus": str(sizing.cpus_per_pod)}
    if sizing.gpus_per_pod:
        start["num-gpus"] = str(sizing.gpus_per_pod)
    accel = shape.accelerator_type or (cl.accelerator_type if cl else None)
    if accel:
        # Ray's accelerator-type resource: Serve LLM (and the sim's placement) ask for 0.001 of it per bundle
        start["resources"] = _quoted_resources({f"accelerator_type:{accel}": 1})
    worker = {
        "groupName": sizing.group_name,
        "replicas": sizing.initial_pods,
        "minReplicas": sizing.min_pods,
        "maxReplicas": sizing.max_pods,
        "rayStartParams": start,
        "template": _template(
            labels,
            _container(
                "ray-worker",
                image,
                ["serve", "metrics"],
                sizing.cpus_per_pod,
                sizing.memory_per_pod,
                0 if opts.logical_gpus else sizing.gpus_per_pod,
            ),
        ),
    }
    cluster: dict[str, Any] = {"rayVersion": opts.ray_version, "headGroupSpec": head, "workerGroupSpecs": [worker]}
    if sizing.autoscaling:
        cluster["enableInTreeAutoscaling"] = True
    return {
        "apiVersion": RAYSERVICE_API,
        "kind": "RayService",
        "metadata": _meta(name, opts, {"app.kubernetes.io/name": name, "app.kubernetes.io/managed-by": "harness"}),
        "spec": {
            "serveConfigV2": yaml.safe_dump(config, sort_keys=False),
            "rayClusterConfig": cluster,
        },
    }


def _endpoint(port: str) -> dict[str, Any]:
    return {
        "port": port,
        "relabelings": [
            # Ray's Grafana dashboards on KubeRay filter on ray_io_cluster (KubeRay's Prometheus guide)
            {
                "action": "replace",
                "sourceLabels": ["__meta_kubernetes_pod_label_ray_io_cluster"],
                "targetLabel": "ray_io_cluster",
            },
            # the alert rules select job="ray" (the discovery job's name on the compose and local stacks)
            {"action": "replace", "targetLabel": "job", "replacement": PROM_JOB},
        ],
    }


def pod_monitors(name: str, opts: K8sOptions) -> list[dict[str, Any]]:
    """One PodMonitor per node type, as KubeRay's Prometheus guide: workers on `metrics`, the head also on the
    autoscaler and dashboard metrics ports. No namespaceSelector: a PodMonitor selects pods in its own namespace."""
    out = []
    for node_type, ports in (("head", ["metrics", "as-metrics", "dash-metrics"]), ("worker", ["metrics"])):
        out.append(
            {
                "apiVersion": MONITORING_API,
                "kind": "PodMonitor",
                "metadata": _meta(f"{name}-{node_type}", opts, opts.monitor_labels),
                "spec": {
                    "selector": {"matchLabels": {INSTANCE_LABEL: name, "ray.io/node-type": node_type}},
                    "podMetricsEndpoints": [_endpoint(p) for p in ports],
                },
            }
        )
    return out


def alert_groups(path: Path = ALERTS_FILE) -> list[dict[str, Any]]:
    return yaml.safe_load(path.read_text())["groups"]


def prometheus_rule(name: str, opts: K8sOptions, groups: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": MONITORING_API,
        "kind": "PrometheusRule",
        "metadata": _meta(f"{name}-alerts", opts, opts.monitor_labels),
        "spec": {"groups": groups},
    }


def _warnings(scenario: Scenario, opts: K8sOptions) -> list[str]:
    t = scenario.target
    out = []
    if t.engine == "sim" and not opts.working_dir and not opts.image:
        out.append(
            f"the sim app imports serve_apps, which {default_image('sim', opts.ray_version)} lacks: give "
            "--working-dir URL (a zip of serve_apps, e.g. --apps-zip), or --image with serve_apps on its PYTHONPATH"
        )
    if t.engine == "vllm":
        v = t.vllm
        assert v is not None
        if v.model_source == "tiny" or v.model_source.startswith((".", "/", "~")):
            out.append(
                f"vllm.model_source {v.model_source!r} is a path on this machine; the pods need it at the same path "
                "(a volume in the pod templates) or a Hugging Face id"
            )
        if v.device == "cpu":
            out.append("vllm.device is cpu: the ray-llm image is built for CUDA; give --image with vLLM's CPU build")
    return out


def render(scenario: Scenario, opts: K8sOptions | None = None, *, alerts: Path = ALERTS_FILE) -> Rendered:
    """The scenario's manifests, in apply order (file name → object). Pure but for reading the alert rules file."""
    opts = opts or K8sOptions()
    if scenario.target.engine == "external":
        raise HarnessError(
            f"scenario {scenario.name}: engine external deploys nothing, so there is nothing to run on Kubernetes",
            fix="use a scenario whose target.engine is sim or vllm",
        )
    name = opts.name or resource_name(scenario.name)
    why = name_problem(name)
    if why:
        raise HarnessError(f"RayService name {name!r} {why}", fix="give --name NAME (e.g. llm-bench)")
    shape = replica_shape(scenario.target)
    sizing = size_workers(scenario, shape, opts)
    heads, workers = pod_monitors(name, opts)
    files = {
        "rayservice.yaml": rayservice(scenario, name, sizing, shape, opts),
        "podmonitor-head.yaml": heads,
        "podmonitor-workers.yaml": workers,
        "prometheusrule.yaml": prometheus_rule(name, opts, alert_groups(alerts)),
    }
    return Rendered(name=name, files=files, sizing=sizing, warnings=_warnings(scenario, opts))


class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper: yaml.SafeDumper, s: str) -> yaml.ScalarNode:
    # multi-line strings (serveConfigV2, PromQL) as `|` blocks, as KubeRay's samples write serveConfigV2
    return dumper.represent_scalar("tag:yaml.org,2002:str", s, style="|" if "\n" in s else None)


_Dumper.add_representer(str, _str)


def to_yaml(obj: dict[str, Any]) -> str:
    return yaml.dump(obj, Dumper=_Dumper, sort_keys=False, allow_unicode=True)


def write_manifests(rendered: Rendered, out_dir: Path, *, force: bool = False, apps_zip: bool = False) -> list[Path]:
    """Write one YAML file per object (and `serve_apps.zip` with `apps_zip`). Refuses a non-empty folder unless
    `force` (then only the files it writes are replaced)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise HarnessError(f"{out_dir} exists and is not a folder", fix="give -o a folder path")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not force:
        raise HarnessError(
            f"{out_dir} exists and is not empty", fix="give -o a new or empty folder, or --force to overwrite"
        )
    written = []
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        for fname, obj in rendered.files.items():
            p = out_dir / fname
            p.write_text(to_yaml(obj))
            written.append(p)
        if apps_zip:
            p = out_dir / "serve_apps.zip"
            p.write_bytes(remote_apps_zip())
            written.append(p)
    except OSError as e:
        raise HarnessError(
            f"cannot write the manifests to {out_dir}: {e.strerror or e}", fix="give -o a folder you can write to"
        ) from None
    return written


def remote_apps_zip() -> bytes:
    """serve_apps laid out for a remote working_dir URL (https, s3, gs): Ray strips the zip's single top-level
    folder of such URIs, so serve_apps/ sits one folder down (the gcs:// package the harness uploads does not)."""
    import io
    import zipfile

    from harness.deploy.package import serve_apps_zip

    src = zipfile.ZipFile(io.BytesIO(serve_apps_zip()))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for info in src.infolist():
            new = zipfile.ZipInfo(f"harness-serve-apps/{info.filename}", date_time=info.date_time)
            new.external_attr = info.external_attr
            new.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(new, src.read(info))
    return buf.getvalue()
