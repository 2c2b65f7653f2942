"""Scenario → Ray Serve config: the one description of what a run deploys, whatever applies it.

The same document is applied by the Ray Client on a stack the harness starts, PUT to an attached cluster's
dashboard (`/api/serve/applications/`), printed for `serve deploy` (`harness serve-config`), and carried by a
KubeRay RayService as `serveConfigV2` (`harness k8s render`). Pure: no Ray, no cluster, no model files touched.
"""

from __future__ import annotations

from typing import Any

from harness.scenario import Scenario, Target

SIM_IMPORT_PATH = "serve_apps.sim.app:build_app"
# Ray Serve LLM's documented config-file builder: `args: {llm_configs: [LLMConfig as data, ...]}`
VLLM_IMPORT_PATH = "ray.serve.llm:build_openai_app"
# Marks an application as the harness's own (env vars of its runtime_env: inert for the app, kept by Serve's
# GET): an attached cluster's apps without it are someone else's and are never replaced or removed.
OWNER_ENV = "HARNESS_APP_OWNER"


def app_args(target: Target) -> dict[str, Any]:
    """The builder's `args`: plain data the app unpickles nowhere (it is JSON in the config)."""
    if target.engine == "sim":
        sim = target.sim
        assert sim is not None, "Target's validator fills `sim` for engine sim"
        return {
            "model": target.model,
            "sim": sim.model_dump(mode="json"),
            "autoscaling": target.autoscaling.model_dump(mode="json"),
            "replica_cpus": target.replica_cpus,
            "placement": target.placement.model_dump(mode="json") if target.placement else None,
            "models": {m.name: target.sim_for(m.name).model_dump(mode="json") for m in target.models} or None,
        }
    if target.engine == "vllm":
        from harness.deploy.vllm import llm_config_dicts

        return {"llm_configs": llm_config_dicts(target)}
    raise ValueError(f"engine {target.engine!r} deploys nothing: it has no Serve config")


def import_path(target: Target) -> str:
    return SIM_IMPORT_PATH if target.engine == "sim" else VLLM_IMPORT_PATH


def application(target: Target, *, runtime_env: dict[str, Any] | None = None, owner: str | None = None) -> dict:
    """One entry of the config's `applications` (Serve's ServeApplicationSchema as data).

    `runtime_env`: e.g. `{"working_dir": "gcs://_ray_pkg_<hash>.zip"}` when the cluster lacks `serve_apps`;
    `owner`: recorded in the app's env vars so a later run (or cleanup) can tell the harness's app from others.
    """
    app: dict[str, Any] = {
        "name": target.app_name,
        "route_prefix": target.route_prefix,
        "import_path": import_path(target),
        "args": app_args(target),
    }
    env = dict(runtime_env or {})
    if owner:
        env["env_vars"] = {**(env.get("env_vars") or {}), OWNER_ENV: owner}
    if env:
        app["runtime_env"] = env
    return app


def serve_config(
    scenario: Scenario,
    *,
    runtime_env: dict[str, Any] | None = None,
    owner: str | None = None,
    http_port: int = 8000,
) -> dict[str, Any]:
    """The whole Serve config document (ServeDeploySchema) that deploys the scenario's target and nothing else."""
    return {
        "proxy_location": "EveryNode",
        "http_options": {"host": "0.0.0.0", "port": http_port},
        "applications": [application(scenario.target, runtime_env=runtime_env, owner=owner)],
    }


def owner_of(app_config: dict[str, Any] | None) -> str | None:
    """Who deployed an app, from its deployed config: the harness's owner mark, or None (someone else)."""
    env = ((app_config or {}).get("runtime_env") or {}).get("env_vars") or {}
    owner = env.get(OWNER_ENV)
    return owner if isinstance(owner, str) and owner else None
