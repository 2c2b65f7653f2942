"""Node-level signals per node: the cluster-wide stats in summary.json sum or max over nodes; this keeps the node
(Ray's `ip` label) so a multi-node run shows which node was hot, full or gone."""

from __future__ import annotations

from harness.metrics.catalog import CATALOG

NODE_SIGNALS = ("node_cpu_utilization", "node_mem_used", "node_mem_total", "gpu_utilization", "gpu_memory_used")
GPU_SIGNALS = ("gpu_utilization", "gpu_memory_used", "gpu_power", "gpu_sm_clock")
# The node and the GPU of a series: Ray's node series carry `ip` and `GpuIndex`, DCGM's `Hostname` and `gpu`
_NODE_LABELS, _GPU_LABELS = ("ip", "Hostname"), ("GpuIndex", "gpu")
NO_GPU = "no GPU series in this Prometheus (a CPU cluster, or GPU nodes not scraped): no data, never 0"


def per_node_stats(
    prom_url: str, resolved: dict[str, str | None], session: str | None, start: float, end: float
) -> dict:
    """{signal: {ip: {max, mean, last}}} over [start, end] in the signal's canonical unit; signals without a
    series are left out."""
    from harness.metrics.scrape import Prom

    prom = Prom(prom_url)
    rng = max(1, int(round(end - start)))
    sel = f'{{SessionName="{session}"}}' if session else ""
    out: dict[str, dict] = {}
    for name in NODE_SIGNALS:
        metric = resolved.get(name)
        if not metric:
            continue
        scale = getattr(CATALOG[name], "scale", 1.0) or 1.0
        stats: dict[str, dict] = {}
        for stat, fn in (("max", "max_over_time"), ("mean", "avg_over_time"), ("last", "last_over_time")):
            for r in prom.instant(f"max by (ip) ({fn}({metric}{sel}[{rng}s]))", end):
                ip = r["metric"].get("ip", "?")
                stats.setdefault(ip, {})[stat] = float(r["value"][1]) * scale
        if stats:
            out[name] = dict(sorted(stats.items()))
    return out


def gpu_key(metric: dict[str, str]) -> tuple[str, str]:
    """(node, gpu index) of one GPU series, whichever exporter wrote it."""
    node = next((metric[k] for k in _NODE_LABELS if metric.get(k)), "?")
    gpu = next((metric[k] for k in _GPU_LABELS if metric.get(k)), "?")
    return node, gpu


def per_gpu_stats(
    prom_url: str, resolved: dict[str, str | None], session: str | None, start: float, end: float
) -> dict:
    """{"nodes": {node: {gpu: {signal: {max, mean, last}}}}, "series": {signal: metric}}, or {"no_data": why}
    when no GPU series answered (on CPU, the record says so instead of holding zeros)."""
    from harness.metrics.scrape import Prom

    prom = Prom(prom_url)
    rng = max(1, int(round(end - start)))
    by = ", ".join(_NODE_LABELS + _GPU_LABELS)
    nodes: dict[str, dict[str, dict]] = {}
    series = {}
    for name in GPU_SIGNALS:
        metric = resolved.get(name)
        if not metric:
            continue
        sel = f'{{SessionName="{session}"}}' if session and metric.startswith("ray_") else ""
        scale = getattr(CATALOG[name], "scale", 1.0) or 1.0
        for stat, fn in (("max", "max_over_time"), ("mean", "avg_over_time"), ("last", "last_over_time")):
            for r in prom.instant(f"max by ({by}) ({fn}({metric}{sel}[{rng}s]))", end):
                node, gpu = gpu_key(r["metric"])
                nodes.setdefault(node, {}).setdefault(gpu, {}).setdefault(name, {})[stat] = float(r["value"][1]) * scale
        series[name] = metric
    if not nodes:
        return {"no_data": NO_GPU}
    return {"nodes": {n: dict(sorted(g.items())) for n, g in sorted(nodes.items())}, "series": series}
