"""Logical server signals → the series that carry them in each naming era of Ray, Ray Serve and vLLM.

Candidates are tried in order (newest era first); the first one present in Prometheus answers the signal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

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
    hold_s: float = 0.0  # gauges exported only when set (per health check): hold each series' last value this long


def _vllm(name: str) -> tuple[str, ...]:
    # through Ray (current, then pre-late-2025), then plain `vllm serve`
    return (f"ray_vllm_{name}", f"ray_vllm:{name}", f"vllm:{name}")


CATALOG: dict[str, MetricSignal] = {
    s.name: s
    for s in [
        MetricSignal("kv_cache_usage", "gauge", _vllm("kv_cache_usage_perc") + _vllm("gpu_cache_usage_perc"), agg="max"),
        MetricSignal("requests_running", "gauge", _vllm("num_requests_running")),
        MetricSignal("queue_waiting", "gauge", _vllm("num_requests_waiting")),
        MetricSignal("server_ttft", "histogram", _vllm("time_to_first_token_seconds"), scale=1000.0),
        MetricSignal("server_itl", "histogram", _vllm("inter_token_latency_seconds") + _vllm("time_per_output_token_seconds"), scale=1000.0),
        MetricSignal("server_tpot", "histogram", _vllm("request_time_per_output_token_seconds"), scale=1000.0),
        MetricSignal("server_e2e", "histogram", _vllm("e2e_request_latency_seconds"), scale=1000.0),
        MetricSignal("queue_time", "histogram", _vllm("request_queue_time_seconds"), scale=1000.0),
        MetricSignal("preemptions", "counter", _vllm("num_preemptions_total"), zero_if_absent=True),
        MetricSignal("prompt_tokens", "counter", _vllm("prompt_tokens_total"), zero_if_absent=True),
        MetricSignal("generation_tokens", "counter", _vllm("generation_tokens_total"), zero_if_absent=True),
        MetricSignal("engine_requests", "counter", _vllm("request_success_total"), zero_if_absent=True),
        MetricSignal("prefix_cache_queries", "counter", _vllm("prefix_cache_queries_total"), zero_if_absent=True),
        MetricSignal("prefix_cache_hits", "counter", _vllm("prefix_cache_hits_total"), zero_if_absent=True),
        MetricSignal("replicas", "gauge", ("ray_serve_deployment_replica_healthy",), scope="app", hold_s=15.0),
        MetricSignal("desired_replicas", "gauge", ("ray_serve_autoscaling_desired_replicas",), scope="app"),
        MetricSignal("target_replicas", "gauge", ("ray_serve_autoscaling_target_replicas",), scope="app"),
        MetricSignal("replica_starts", "counter", ("ray_serve_deployment_replica_starts_total",), scope="app", zero_if_absent=True),
        MetricSignal("serve_requests", "counter", ("ray_serve_num_router_requests_total",), scope="app", zero_if_absent=True),
        MetricSignal("serve_http_requests", "counter", ("ray_serve_num_http_requests_total",), scope="app", zero_if_absent=True),
        MetricSignal("serve_errors", "counter", ("ray_serve_num_http_error_requests_total",), scope="app", zero_if_absent=True),
        MetricSignal("serve_latency", "histogram", ("ray_serve_http_request_latency_ms",), scope="app"),
        MetricSignal("cluster_nodes", "gauge", ("ray_cluster_active_nodes",), scope="cluster"),
    ]
}

# What `harness run` scrapes by default: everything the SLOs and the report use.
DEFAULT_SIGNALS = tuple(CATALOG)


def series_name(sig: MetricSignal, metric: str) -> str:
    return f"{metric}_bucket" if sig.kind == "histogram" else metric


def resolve(names: set[str], signals=DEFAULT_SIGNALS) -> dict[str, str | None]:
    """Pick, per signal, the first candidate whose series exists in `names` (Prometheus's __name__ values)."""
    out: dict[str, str | None] = {}
    for s in signals:
        sig = CATALOG[s]
        out[s] = next((c for c in sig.candidates if series_name(sig, c) in names), None)
    return out
