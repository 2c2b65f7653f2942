"""The one definition of the Prometheus scrape jobs for Ray. The local stack and docker/ both use it."""

from __future__ import annotations

from typing import Any

RAY_JOB = "ray"
SD_REFRESH = "10s"
# The harness's own local stack: Ray writes its discovery file every ~5 s and exports metrics every 1 s
# (LOCAL_RAY_ENV), so a 1 s refresh and scrape find the targets and the final counters within a second or two.
LOCAL_SD_REFRESH = "1s"
LOCAL_SCRAPE_INTERVAL_S = 1.0


def ray_job(sd_file: str, refresh: str = SD_REFRESH) -> dict[str, Any]:
    """Every Ray node's metrics agent, autoscaler and dashboard, discovered from Ray's file_sd output."""
    return {"job_name": RAY_JOB, "file_sd_configs": [{"files": [sd_file], "refresh_interval": refresh}]}


ENDPOINT_JOB = "endpoint"


def endpoint_job(metrics_url: str) -> dict[str, Any]:
    """An external endpoint's own /metrics (a plain `vllm serve` exposes `vllm:*` there), scraped directly."""
    from urllib.parse import urlsplit

    u = urlsplit(metrics_url)
    return {
        "job_name": ENDPOINT_JOB,
        "scheme": u.scheme or "http",
        "metrics_path": u.path or "/metrics",
        "static_configs": [{"targets": [u.netloc]}],
    }


def self_job(listen: str) -> dict[str, Any]:
    return {"job_name": "prometheus", "static_configs": [{"targets": [listen]}]}


def prometheus_config(
    sd_file: str | None,
    listen: str,
    scrape_interval: str = "5s",
    extra_jobs: list | None = None,
    rule_files: list[str] | None = None,
    alertmanager: str | None = None,
    sd_refresh: str = SD_REFRESH,
) -> dict:
    """`sd_file` None: no Ray job (an external endpoint is scraped through `extra_jobs` only)."""
    ray = [ray_job(sd_file, sd_refresh)] if sd_file else []
    cfg = {
        "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
        "scrape_configs": [*ray, self_job(listen), *(extra_jobs or [])],
    }
    if rule_files:
        cfg["rule_files"] = list(rule_files)
    if alertmanager:  # host:port
        cfg["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]}
    return cfg
