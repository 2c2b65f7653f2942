"""The one definition of the Prometheus scrape jobs for Ray. The local stack and docker/ both use it."""

from __future__ import annotations

from typing import Any

RAY_JOB = "ray"
SD_REFRESH = "10s"


def ray_job(sd_file: str, refresh: str = SD_REFRESH) -> dict[str, Any]:
    """Every Ray node's metrics agent, autoscaler and dashboard, discovered from Ray's file_sd output."""
    return {"job_name": RAY_JOB, "file_sd_configs": [{"files": [sd_file], "refresh_interval": refresh}]}


def self_job(listen: str) -> dict[str, Any]:
    return {"job_name": "prometheus", "static_configs": [{"targets": [listen]}]}


def prometheus_config(sd_file: str, listen: str, scrape_interval: str = "5s", extra_jobs: list | None = None,
                      rule_files: list[str] | None = None, alertmanager: str | None = None) -> dict:
    cfg = {
        "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
        "scrape_configs": [ray_job(sd_file), self_job(listen), *(extra_jobs or [])],
    }
    if rule_files:
        cfg["rule_files"] = list(rule_files)
    if alertmanager:  # host:port
        cfg["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]}
    return cfg
