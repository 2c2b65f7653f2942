"""Logical server signals → the series that carry them in each naming era of Ray, Ray Serve and vLLM.

Candidates are tried in order (newest era first); the first one present in Prometheus answers the signal.
Naming eras covered (see tests/integration/test_catalog_eras.py, which proves each against a real Prometheus):

- vLLM through Ray Serve, current (Ray >= late 2025): `ray_vllm_<name>`
- vLLM through Ray Serve, before: `ray_vllm:<name>` (Ray 2.60 drops custom metric names containing ':', so
  this era exists only in older clusters' Prometheus data)
- plain `vllm serve`: `vllm:<name>` on its own /metrics
- vLLM renames inside each prefix: `gpu_cache_usage_perc` → `kv_cache_usage_perc` (removed 0.12),
  `time_per_output_token_seconds` → `inter_token_latency_seconds`, `gpu_prefix_cache_{queries,hits}` →
  `prefix_cache_{queries,hits}` (0.10)
- Ray node metrics: `ray_node_mem_used`/`ray_node_mem_total` (all eras) and the newer `*_host` pair; GPU
  series (`ray_node_gpus_utilization` in percent, `ray_node_gram_used` in MiB) exist only on GPU nodes.

Derived signals (`DERIVED`) combine two resolved signals, e.g. the prefix-cache hit rate = hits / queries.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, TypedDict

Kind = Literal["gauge", "counter", "histogram"]


@dataclass(frozen=True)
class MetricSignal:
    name: str
    kind: Kind
    candidates: tuple[str, ...]
    agg: Literal["sum", "max"] = "sum"  # across series at one instant (replicas sum; usage takes the max)
    scale: float = 1.0  # to canonical units: seconds → ms for latency histograms
    scope: Literal["model", "app", "cluster"] = "model"  # which labels select our deployment
    zero_if_absent: bool = False  # counters that only appear after their first increment
    hold_s: float = 0.0  # gauges exported only when set (per health check): bridge gaps in a series up to this long
    unit: str = ""  # canonical unit after `scale`: ms | fraction | bytes | count


@dataclass(frozen=True)
class DerivedSignal:
    """`num / den` of two catalog signals: counters → ratio of their increases; gauges → point-wise ratio."""

    name: str
    num: str
    den: str
    how: Literal["counter_ratio", "gauge_ratio"]
    unit: str = "fraction"


def _vllm(name: str) -> tuple[str, ...]:
    # through Ray (current, then pre-late-2025), then plain `vllm serve`
    return (f"ray_vllm_{name}", f"ray_vllm:{name}", f"vllm:{name}")


# NVIDIA DCGM exporter, newest naming first: `DCGM_FI_DEV_*` (dcgm-exporter 2.x and later, field names of DCGM's
# own field ids) and `dcgm_*` (the 1.x exporter). Same units in both: utilisation in percent, framebuffer in MiB,
# power in W, SM clock in MHz. Labels: `gpu` (index), `UUID`, `modelName`, `Hostname` (no SessionName: the
# session filter applies to ray_* series only). Ray's own node series come first where both exist.
_DCGM_UTIL = ("DCGM_FI_DEV_GPU_UTIL", "dcgm_gpu_utilization")
_DCGM_FB_USED = ("DCGM_FI_DEV_FB_USED", "dcgm_fb_used")
_DCGM_POWER = ("DCGM_FI_DEV_POWER_USAGE", "dcgm_power_usage")
_DCGM_SM_CLOCK = ("DCGM_FI_DEV_SM_CLOCK", "dcgm_sm_clock")


class _Units(TypedDict):
    scale: float
    unit: str


_MS: _Units = {"scale": 1000.0, "unit": "ms"}  # vLLM histograms are in seconds

CATALOG: dict[str, MetricSignal] = {
    s.name: s
    for s in [
        MetricSignal(
            "kv_cache_usage",
            "gauge",
            _vllm("kv_cache_usage_perc") + _vllm("gpu_cache_usage_perc"),
            agg="max",
            unit="fraction",
        ),
        MetricSignal("requests_running", "gauge", _vllm("num_requests_running"), unit="count"),
        MetricSignal("queue_waiting", "gauge", _vllm("num_requests_waiting"), unit="count"),
        MetricSignal("server_ttft", "histogram", _vllm("time_to_first_token_seconds"), **_MS),
        MetricSignal(
            "server_itl",
            "histogram",
            _vllm("inter_token_latency_seconds") + _vllm("time_per_output_token_seconds"),
            **_MS,
        ),
        MetricSignal("server_tpot", "histogram", _vllm("request_time_per_output_token_seconds"), **_MS),
        MetricSignal("server_e2e", "histogram", _vllm("e2e_request_latency_seconds"), **_MS),
        MetricSignal("queue_time", "histogram", _vllm("request_queue_time_seconds"), **_MS),
        MetricSignal("preemptions", "counter", _vllm("num_preemptions_total"), zero_if_absent=True, unit="count"),
        MetricSignal("prompt_tokens", "counter", _vllm("prompt_tokens_total"), zero_if_absent=True, unit="count"),
        MetricSignal(
            "generation_tokens", "counter", _vllm("generation_tokens_total"), zero_if_absent=True, unit="count"
        ),
        MetricSignal("engine_requests", "counter", _vllm("request_success_total"), zero_if_absent=True, unit="count"),
        MetricSignal(
            "prefix_cache_queries",
            "counter",
            _vllm("prefix_cache_queries_total") + _vllm("gpu_prefix_cache_queries_total"),
            zero_if_absent=True,
            unit="count",
        ),
        MetricSignal(
            "prefix_cache_hits",
            "counter",
            _vllm("prefix_cache_hits_total") + _vllm("gpu_prefix_cache_hits_total"),
            zero_if_absent=True,
            unit="count",
        ),
        MetricSignal(
            "replicas", "gauge", ("ray_serve_deployment_replica_healthy",), scope="app", hold_s=15.0, unit="count"
        ),
        MetricSignal(
            "desired_replicas", "gauge", ("ray_serve_autoscaling_desired_replicas",), scope="app", unit="count"
        ),
        MetricSignal("target_replicas", "gauge", ("ray_serve_autoscaling_target_replicas",), scope="app", unit="count"),
        MetricSignal(
            "replica_starts",
            "counter",
            ("ray_serve_deployment_replica_starts_total",),
            scope="app",
            zero_if_absent=True,
            unit="count",
        ),
        MetricSignal(
            "serve_requests",
            "counter",
            ("ray_serve_num_router_requests_total",),
            scope="app",
            zero_if_absent=True,
            unit="count",
        ),
        MetricSignal(
            "serve_http_requests",
            "counter",
            ("ray_serve_num_http_requests_total",),
            scope="app",
            zero_if_absent=True,
            unit="count",
        ),
        MetricSignal(
            "serve_errors",
            "counter",
            ("ray_serve_num_http_error_requests_total",),
            scope="app",
            zero_if_absent=True,
            unit="count",
        ),
        MetricSignal("serve_latency", "histogram", ("ray_serve_http_request_latency_ms",), scope="app", unit="ms"),
        MetricSignal(
            "cluster_nodes", "gauge", ("ray_cluster_active_nodes",), scope="cluster", hold_s=15.0, unit="count"
        ),
        # node hardware (cluster-wide): CPU in percent per node → fraction, busiest node. Ray 2.60's agent exports
        # these (and cluster_nodes) in bursts: 2 of every 5 scrapes at 2 s, hence hold_s
        MetricSignal(
            "node_cpu_utilization",
            "gauge",
            ("ray_node_cpu_utilization",),
            agg="max",
            scale=0.01,
            scope="cluster",
            hold_s=15.0,
            unit="fraction",
        ),
        MetricSignal(
            "node_mem_used",
            "gauge",
            ("ray_node_mem_used", "ray_node_mem_used_host"),
            scope="cluster",
            hold_s=15.0,
            unit="bytes",
        ),
        MetricSignal(
            "node_mem_total",
            "gauge",
            ("ray_node_mem_total", "ray_node_mem_total_host"),
            scope="cluster",
            hold_s=15.0,
            unit="bytes",
        ),
        # GPU series exist only on GPU nodes (a CPU cluster records `no data`, never 0)
        MetricSignal(
            "gpu_utilization",
            "gauge",
            ("ray_node_gpus_utilization",) + _DCGM_UTIL,
            agg="max",
            scale=0.01,
            scope="cluster",
            hold_s=15.0,
            unit="fraction",
        ),
        MetricSignal(
            "gpu_memory_used",
            "gauge",
            ("ray_node_gram_used",) + _DCGM_FB_USED,
            scale=1024.0 * 1024.0,
            scope="cluster",
            hold_s=15.0,
            unit="bytes",
        ),
        # DCGM exporter only (where Prometheus scrapes it): Ray exports no power or clock series
        MetricSignal("gpu_power", "gauge", _DCGM_POWER, agg="max", scope="cluster", hold_s=15.0, unit="watts"),
        MetricSignal("gpu_sm_clock", "gauge", _DCGM_SM_CLOCK, agg="max", scope="cluster", hold_s=15.0, unit="mhz"),
    ]
}

DERIVED: dict[str, DerivedSignal] = {
    d.name: d
    for d in [
        DerivedSignal("prefix_cache_hit_rate", "prefix_cache_hits", "prefix_cache_queries", "counter_ratio"),
        DerivedSignal("node_mem_usage", "node_mem_used", "node_mem_total", "gauge_ratio"),
    ]
}

# What `harness run` scrapes by default: everything the SLOs and the report use.
DEFAULT_SIGNALS = tuple(CATALOG) + tuple(DERIVED)


def series_name(sig: MetricSignal, metric: str) -> str:
    return f"{metric}_bucket" if sig.kind == "histogram" else metric


def resolve(names: set[str], signals=DEFAULT_SIGNALS) -> dict[str, str | None]:
    """Pick, per signal, the first candidate whose series exists in `names` (Prometheus's __name__ values).

    A derived signal resolves to "<num series> / <den series>" when both parts resolve.
    """
    out: dict[str, str | None] = {}
    for s in signals:
        if s in DERIVED:
            d = DERIVED[s]
            num, den = resolve(names, (d.num, d.den)).values()
            out[s] = f"{num} / {den}" if num and den else None
            continue
        sig = CATALOG[s]
        out[s] = next((c for c in sig.candidates if series_name(sig, c) in names), None)
    return out


def base_signals(signals) -> tuple[str, ...]:
    """The catalog signals to query for `signals` (derived ones replaced by their parts), order kept."""
    out: list[str] = []
    for s in signals:
        for b in (DERIVED[s].num, DERIVED[s].den) if s in DERIVED else (s,):
            if b not in out:
                out.append(b)
    return tuple(out)
