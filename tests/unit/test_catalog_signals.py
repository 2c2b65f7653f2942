"""Catalog completeness: node/GPU/derived signals, every naming era, and resolution against reference exposition."""

from test_catalog import names_in  # same exposition parser as the era tests

from harness.metrics.catalog import CATALOG, DEFAULT_SIGNALS, DERIVED, base_signals, resolve


def test_node_signals_resolve_on_ray_260_and_gpu_is_absent_on_cpu():
    r = resolve(names_in("ray-2.60_serve-and-core-metrics.prom"))
    assert r["node_cpu_utilization"] == "ray_node_cpu_utilization"
    assert r["node_mem_used"] == "ray_node_mem_used" and r["node_mem_total"] == "ray_node_mem_total"
    assert r["node_mem_usage"] == "ray_node_mem_used / ray_node_mem_total"
    assert r["gpu_utilization"] is None and r["gpu_memory_used"] is None  # CPU box: no data, never 0
    assert resolve({"ray_node_gpus_utilization", "ray_node_gram_used"})["gpu_memory_used"] == "ray_node_gram_used"


def test_prefix_cache_hit_rate_is_derived_in_every_era():
    cur = resolve(names_in("ray-2.60_vllm-0.32_engine-metrics-via-ray.prom"))
    assert cur["prefix_cache_hit_rate"] == "ray_vllm_prefix_cache_hits_total / ray_vllm_prefix_cache_queries_total"
    old = resolve({"vllm:gpu_prefix_cache_hits_total", "vllm:gpu_prefix_cache_queries_total"})
    assert old["prefix_cache_hit_rate"] == "vllm:gpu_prefix_cache_hits_total / vllm:gpu_prefix_cache_queries_total"
    assert resolve({"vllm:prefix_cache_hits_total"})["prefix_cache_hit_rate"] is None  # half a ratio is no data


def test_every_engine_signal_has_all_three_prefix_eras():
    for s in CATALOG.values():
        if s.scope != "model":
            continue
        for c in s.candidates:
            if c.startswith("ray_vllm_"):
                base = c.removeprefix("ray_vllm_")
                assert f"ray_vllm:{base}" in s.candidates and f"vllm:{base}" in s.candidates, (s.name, base)


def test_renamed_vllm_metrics_map_to_the_same_signal():
    assert resolve({"ray_vllm:gpu_cache_usage_perc"})["kv_cache_usage"] == "ray_vllm:gpu_cache_usage_perc"
    assert resolve({"vllm:time_per_output_token_seconds_bucket"})["server_itl"] == "vllm:time_per_output_token_seconds"
    # newest name wins when a transition release exports both
    both = {"vllm:gpu_cache_usage_perc", "vllm:kv_cache_usage_perc"}
    assert resolve(both)["kv_cache_usage"] == "vllm:kv_cache_usage_perc"


def test_default_signals_and_base_signals():
    assert set(DERIVED) <= set(DEFAULT_SIGNALS)
    b = base_signals(("prefix_cache_hit_rate", "prefix_cache_hits", "ttft" if "ttft" in CATALOG else "server_ttft"))
    assert b == ("prefix_cache_hits", "prefix_cache_queries", "server_ttft")
    for d in DERIVED.values():
        assert d.num in CATALOG and d.den in CATALOG


def test_units_are_canonical():
    for s in CATALOG.values():
        assert s.unit in ("ms", "fraction", "bytes", "count", "watts", "mhz"), s.name  # W, MHz: GPU power, clock
        if s.kind == "histogram" and s.candidates[0].endswith("_seconds"):
            assert s.scale == 1000.0 and s.unit == "ms"
