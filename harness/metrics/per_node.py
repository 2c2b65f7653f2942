"""Node-level signals per node: the cluster-wide stats in summary.json sum or max over nodes; this keeps the node
(Ray's `ip` label) so a multi-node run shows which node was hot, full or gone."""

from __future__ import annotations

from harness.metrics.catalog import CATALOG

NODE_SIGNALS = ("node_cpu_utilization", "node_mem_used", "node_mem_total", "gpu_utilization", "gpu_memory_used")


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
