"""docker/prometheus/prometheus.yml has one source: harness.stack.prom_config (via docker/gen_prometheus_config.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import yaml

from harness.stack.prom_config import RAY_JOB, SD_REFRESH, ray_job, self_job

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"
CONFIG = DOCKER / "prometheus" / "prometheus.yml"
SD_FILE = "/tmp/ray/prom_metrics_service_discovery.json"


def _generator():
    spec = importlib.util.spec_from_file_location("gen_prometheus_config", DOCKER / "gen_prometheus_config.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _config() -> dict:
    return yaml.safe_load(CONFIG.read_text())


def _job(cfg: dict, name: str) -> dict:
    [job] = [j for j in cfg["scrape_configs"] if j["job_name"] == name]
    return job


def test_docker_ray_job_is_prom_config_ray_job():
    assert _job(_config(), RAY_JOB) == ray_job(SD_FILE)


def test_ray_job_discovers_from_ray_file_every_10s():
    sd = _job(_config(), "ray")["file_sd_configs"]
    assert sd == [{"files": [SD_FILE], "refresh_interval": "10s"}]
    assert SD_REFRESH == "10s"


def test_committed_config_is_up_to_date():
    gen = _generator()
    assert CONFIG.read_text() == gen.render(), "stale: run python docker/gen_prometheus_config.py"
    assert gen.main(["--check"]) == 0


def test_three_jobs_self_monitoring_and_legacy_head():
    cfg = _config()
    assert [j["job_name"] for j in cfg["scrape_configs"]] == ["ray", "prometheus", "ray-head-static"]
    assert _job(cfg, "prometheus") == self_job("localhost:9090")
    assert _job(cfg, "ray-head-static")["static_configs"][0]["targets"] == ["ray-head:8080"]


def test_rule_files_exist_and_exclude_rule_tests():
    cfg = _config()
    assert cfg["rule_files"] == ["rules/alerts.yml"]
    for rel in cfg["rule_files"]:
        assert (CONFIG.parent / rel).is_file()
