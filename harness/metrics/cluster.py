"""Facts about the connected Ray cluster that decide how its metrics are read: its SessionName and the metric
export interval in force (Ray's default 10 s; the local stack sets 1 s). Read from the cluster itself, so an
attached cluster on a shared Prometheus is not confused with "the session with the newest sample"."""

from __future__ import annotations

RAY_DEFAULT_EXPORT_INTERVAL_S = 10.0  # Ray's metrics_report_interval_ms default


def cluster_metric_facts(timeout_s: float = 30.0) -> dict:
    """{"session_name", "export_interval_s", "source"} of the cluster this driver is connected to (best effort)."""
    import ray

    out: dict = {"session_name": None, "export_interval_s": None, "source": "unknown"}
    try:
        from ray._private import worker

        node = worker.global_worker.node
        if node is not None:
            out["session_name"] = node.session_name
    except Exception:
        pass

    @ray.remote(num_cpus=0)
    def _probe() -> dict:
        import ray as r
        from ray._private import worker as w

        sess = None
        try:
            node = w.global_worker.node
            if node is not None:
                sess = node.session_name
        except Exception:
            pass
        # Ray's OpenTelemetry recorder exports every max(metrics_report_interval_ms, 1000) ms
        return {
            "session_name": sess,
            "export_interval_s": max(int(r._config.metrics_report_interval_ms()), 1000) / 1000.0,
        }

    try:
        got = ray.get(_probe.remote(), timeout=timeout_s)
        out["export_interval_s"] = got["export_interval_s"]
        out["session_name"] = out["session_name"] or got["session_name"]
        out["source"] = "a task on the cluster (ray._config.metrics_report_interval_ms)"
    except Exception as e:  # a cluster without free workers: assume Ray's default, say so
        out["export_interval_s"] = RAY_DEFAULT_EXPORT_INTERVAL_S
        out["source"] = f"Ray's default (could not ask the cluster: {type(e).__name__})"
    return out


def server_window_shift_s(export_interval_s: float | None, scrape_interval_s: float | None) -> float:
    """How much later than the event a Prometheus sample shows it, on average: half an export interval plus half
    a scrape interval (a value read at t was exported up to one interval before and scraped up to one before)."""
    return round(0.5 * float(export_interval_s or 0.0) + 0.5 * float(scrape_interval_s or 0.0), 3)
