"""Signals SLOs can name: what users think in, with the source (client samples or Prometheus) fixed per signal."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

PCTS = ("p50", "p90", "p95", "p99", "p99.9")
DIST_STATS = PCTS + ("max", "min", "mean")
GAUGE_STATS = ("max", "min", "mean", "p50", "p95", "last")

Kind = Literal["time", "ratio", "count", "rate"]


@dataclass(frozen=True)
class Signal:
    name: str
    source: Literal["client", "server"]
    kind: Kind  # time: canonical ms; ratio: fraction 0..1; count: plain; rate: per second
    stats: tuple[str, ...]
    default_stat: str | None  # used when the SLO has no `.stat` (e.g. `error_rate <= 1%`)
    description: str


SIGNALS: dict[str, Signal] = {
    s.name: s
    for s in [
        Signal("ttft", "client", "time", DIST_STATS, None, "time to first token per request, client-measured"),
        Signal("itl", "client", "time", DIST_STATS, None, "gap between streamed tokens (every gap of every request)"),
        Signal("tpot", "client", "time", DIST_STATS, None, "per-request mean time per output token after the first"),
        Signal("e2e", "client", "time", DIST_STATS, None, "end-to-end request latency, client-measured"),
        Signal("error_rate", "client", "ratio", ("value",), "value", "failed requests / all requests"),
        Signal("requests", "client", "count", ("total", "rate"), "total", "completed requests after warmup"),
        Signal("throughput", "client", "rate", ("value",), "value", "output tokens per second after warmup"),
        Signal("request_rate", "client", "rate", ("value",), "value", "completed requests per second after warmup"),
        Signal("kv_cache_usage", "server", "ratio", GAUGE_STATS, None, "engine KV-cache usage (0..1), max over replicas"),
        Signal("queue_waiting", "server", "count", GAUGE_STATS, None, "requests waiting in the engine, summed over replicas"),
        Signal("requests_running", "server", "count", GAUGE_STATS, None, "requests running in the engine, summed"),
        Signal("replicas", "server", "count", GAUGE_STATS, None, "healthy Serve replicas of the deployment"),
        Signal("desired_replicas", "server", "count", GAUGE_STATS, None, "replicas Serve's autoscaler asks for"),
        Signal("replica_starts", "server", "count", ("total",), "total", "replica starts during the run"),
        Signal("server_ttft", "server", "time", PCTS + ("mean",), None, "engine TTFT histogram over the run window"),
        Signal("server_itl", "server", "time", PCTS + ("mean",), None, "engine inter-token latency histogram"),
        Signal("server_e2e", "server", "time", PCTS + ("mean",), None, "engine end-to-end latency histogram"),
        Signal("preemptions", "server", "count", ("total",), "total", "engine preemptions during the run"),
        Signal("scale_up_time", "server", "time", ("max", "min", "mean"), None,
               "time from a load step to Serve reaching the replicas it asked for"),
    ]
}
