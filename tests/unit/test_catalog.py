"""The catalog resolves each naming era from real exposition text captured on this machine kind."""

import re
from pathlib import Path

from harness.metrics.catalog import CATALOG, resolve

FIX = Path(__file__).resolve().parent.parent / "fixtures"


def names_in(*files: str) -> set[str]:
    out = set()
    for f in files:
        for line in (FIX / f).read_text().splitlines():
            m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ]", line)
            if m and not line.startswith("#"):
                out.add(m.group(1))
    return out


def test_current_ray_and_vllm_names_resolve():
    names = names_in("ray-2.60_vllm-0.32_engine-metrics-via-ray.prom", "ray-2.60_serve-and-core-metrics.prom")
    r = resolve(names)
    assert r["kv_cache_usage"] == "ray_vllm_kv_cache_usage_perc"
    assert r["server_ttft"] == "ray_vllm_time_to_first_token_seconds"
    assert r["server_itl"] == "ray_vllm_inter_token_latency_seconds"
    assert r["queue_waiting"] == "ray_vllm_num_requests_waiting"
    assert r["replicas"] == "ray_serve_deployment_replica_healthy"
    assert r["serve_requests"] == "ray_serve_num_router_requests_total"
    assert r["cluster_nodes"] == "ray_cluster_active_nodes"


def test_plain_vllm_names_resolve():
    r = resolve(names_in("vllm-0.32_plain-server.prom"))
    assert r["kv_cache_usage"] == "vllm:kv_cache_usage_perc"
    assert r["server_ttft"] == "vllm:time_to_first_token_seconds"
    assert r["replicas"] is None  # no Serve behind a plain vllm serve


def test_old_eras_resolve():
    old = {
        "ray_vllm:gpu_cache_usage_perc",
        "ray_vllm:time_per_output_token_seconds_bucket",
        "ray_vllm:time_to_first_token_seconds_bucket",
        "ray_vllm:num_requests_waiting",
    }
    r = resolve(old)
    assert r["kv_cache_usage"] == "ray_vllm:gpu_cache_usage_perc"
    assert r["server_itl"] == "ray_vllm:time_per_output_token_seconds"
    assert r["server_ttft"] == "ray_vllm:time_to_first_token_seconds"


def test_every_candidate_is_a_valid_metric_name():
    for sig in CATALOG.values():
        for c in sig.candidates:
            assert re.fullmatch(r"[a-zA-Z_:][a-zA-Z0-9_:]*", c), c
