"""Signals SLOs can name: what users think in, with the source (client samples or Prometheus) fixed per signal."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

PCTS = ("p50", "p90", "p95", "p99", "p99.9")
DIST_STATS = PCTS + ("max", "min", "mean")
GAUGE_STATS = ("max", "min", "mean", "p50", "p95", "last")

Kind = Literal["time", "ratio", "count", "rate"]
# client: raw samples; server: a Prometheus series; autoscaling: derived from the replica series + load shape
Source = Literal["client", "server", "autoscaling"]


@dataclass(frozen=True)
class Signal:
    name: str
    source: Source
    kind: Kind  # time: canonical ms; ratio: fraction 0..1; count: plain; rate: per second
    stats: tuple[str, ...]
    default_stat: str | None  # used when the SLO has no `.stat` (e.g. `error_rate <= 1%`)
    description: str
    stat_kinds: dict[str, Kind] = field(default_factory=dict)  # stats whose kind differs from `kind`
    scopable: bool = True  # may carry `@stage` / `@steady`

    def kind_of(self, stat: str) -> Kind:
        return self.stat_kinds.get(stat, self.kind)


SIGNALS: dict[str, Signal] = {
    s.name: s
    for s in [
        Signal(
            "ttft",
            "client",
            "time",
            DIST_STATS,
            None,
            "time to first token per request, client-measured (open loop: from the scheduled arrival)",
        ),
        Signal(
            "itl",
            "client",
            "time",
            DIST_STATS,
            None,
            "gap between streamed tokens, per token (every gap of every request)",
        ),
        Signal("tpot", "client", "time", DIST_STATS, None, "per-request mean time per output token after the first"),
        Signal(
            "chunk_gap",
            "client",
            "time",
            DIST_STATS,
            None,
            "gap between streamed SSE events (itl is per token: an event carrying k tokens is k gaps of 1/k)",
        ),
        Signal(
            "ttft_content",
            "client",
            "time",
            DIST_STATS,
            None,
            "time to the first content token (ttft: first token of any kind, reasoning and tool calls included)",
        ),
        Signal(
            "dropped_arrivals",
            "client",
            "count",
            ("total", "fraction"),
            "total",
            "open-loop arrivals never sent (queued at max_concurrency when the stages ended); also failed "
            "requests in error_rate and goodput",
            stat_kinds={"fraction": "ratio"},
        ),
        Signal("e2e", "client", "time", DIST_STATS, None, "end-to-end request latency, client-measured"),
        Signal("error_rate", "client", "ratio", ("value",), "value", "failed requests / all requests"),
        Signal(
            "errors",
            "client",
            "count",
            ("total", "rate"),
            "total",
            "failed requests after warmup",
            stat_kinds={"rate": "rate"},
        ),
        Signal(
            "requests",
            "client",
            "count",
            ("total", "rate"),
            "total",
            "completed requests after warmup",
            stat_kinds={"rate": "rate"},
        ),
        Signal("throughput", "client", "rate", ("value",), "value", "output tokens per second after warmup"),
        Signal("request_rate", "client", "rate", ("value",), "value", "completed requests per second after warmup"),
        Signal(
            "goodput",
            "client",
            "rate",
            ("rate", "attainment", "total"),
            "rate",
            "requests meeting the scenario's `goodput:` criteria: rate per second, attainment (share of all "
            "requests), total",
            stat_kinds={"attainment": "ratio", "total": "count"},
        ),
        Signal(
            "kv_cache_usage", "server", "ratio", GAUGE_STATS, None, "engine KV-cache usage (0..1), max over replicas"
        ),
        Signal(
            "queue_waiting",
            "server",
            "count",
            GAUGE_STATS,
            None,
            "requests waiting in the engine, summed over replicas",
        ),
        Signal("requests_running", "server", "count", GAUGE_STATS, None, "requests running in the engine, summed"),
        Signal("replicas", "server", "count", GAUGE_STATS, None, "healthy Serve replicas of the deployment"),
        Signal("desired_replicas", "server", "count", GAUGE_STATS, None, "replicas Serve's autoscaler asks for"),
        Signal("target_replicas", "server", "count", GAUGE_STATS, None, "Serve's target replica count"),
        Signal(
            "replica_starts", "server", "count", ("total",), "total", "replica starts during the run", scopable=False
        ),
        Signal(
            "server_ttft",
            "server",
            "time",
            PCTS + ("mean",),
            None,
            "engine TTFT histogram over the run window",
            scopable=False,
        ),
        Signal(
            "server_itl",
            "server",
            "time",
            PCTS + ("mean",),
            None,
            "engine inter-token latency histogram",
            scopable=False,
        ),
        Signal(
            "server_e2e",
            "server",
            "time",
            PCTS + ("mean",),
            None,
            "engine end-to-end latency histogram",
            scopable=False,
        ),
        Signal(
            "preemptions", "server", "count", ("total",), "total", "engine preemptions during the run", scopable=False
        ),
        Signal(
            "recovery_time",
            "server",
            "time",
            ("max", "min", "mean"),
            None,
            "time from an injected fault (scenario `faults:`) until replicas and requests recovered",
            scopable=False,
        ),
        Signal(
            "alerts_fired",
            "server",
            "count",
            ("total",),
            "total",
            "alerts that fired during the run (local stack: Alertmanager's webhook to the run)",
            scopable=False,
        ),
        Signal(
            "node_down_alert_delay",
            "server",
            "time",
            ("max", "min", "mean"),
            None,
            "per node fault (kill_node/partition_node): until the RayNodeDown alert for that node fired",
            scopable=False,
        ),
        Signal(
            "scale_up_time",
            "autoscaling",
            "time",
            ("max", "min", "mean"),
            None,
            "time from a load step up to the replica count reaching what the autoscaler asked for",
            scopable=False,
        ),
        Signal(
            "scale_down_time",
            "autoscaling",
            "time",
            ("max", "min", "mean"),
            None,
            "time from a load step down to the replica count reaching what the autoscaler asked for",
            scopable=False,
        ),
        Signal(
            "churn", "autoscaling", "count", ("value",), "value", "replica starts per minute of load", scopable=False
        ),
        Signal(
            "outputs",
            "server",
            "count",
            ("changed", "empty", "total"),
            None,
            "workload.correctness probes (greedy, before the load): outputs that differ from the baseline run's, "
            "empty or failed outputs, probes sent",
            scopable=False,
        ),
        Signal(
            "flaps",
            "autoscaling",
            "count",
            ("total",),
            "total",
            "scale-downs (healthy replicas dropping) while the load was not stepping down",
            scopable=False,
        ),
    ]
}

# `==` makes sense for whole counts only (`flaps.total == 0`)
EQ_OK_KINDS = ("count",)
