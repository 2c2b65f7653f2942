"""The local stack's Prometheus config: 1 s discovery refresh and scrape for Ray; for an external endpoint no Ray
job, only the endpoint's own /metrics. promtool (installed by .ci/setup) checks both files."""

import shutil
import subprocess

import pytest
import yaml

from harness.stack.prom_config import (
    ENDPOINT_JOB,
    LOCAL_SCRAPE_INTERVAL_S,
    LOCAL_SD_REFRESH,
    RAY_JOB,
    SD_REFRESH,
    endpoint_job,
    prometheus_config,
)


def _promtool_check(tmp_path, cfg: dict) -> None:
    if not shutil.which("promtool"):
        pytest.skip("promtool not installed (apt-get install -y prometheus); CI installs it")
    f = tmp_path / "prometheus.yml"
    f.write_text(yaml.safe_dump(cfg, sort_keys=False))
    r = subprocess.run(["promtool", "check", "config", str(f)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def test_local_ray_config_refreshes_and_scrapes_every_second(tmp_path):
    interval = f"{LOCAL_SCRAPE_INTERVAL_S:g}s"
    cfg = prometheus_config("/tmp/x/sd.json", "127.0.0.1:9", interval, sd_refresh=LOCAL_SD_REFRESH)
    (ray,) = [j for j in cfg["scrape_configs"] if j["job_name"] == RAY_JOB]
    assert ray["file_sd_configs"] == [{"files": ["/tmp/x/sd.json"], "refresh_interval": "1s"}]
    assert cfg["global"]["scrape_interval"] == "1s"
    assert (
        prometheus_config("/tmp/x/sd.json", "127.0.0.1:9")["scrape_configs"][0]["file_sd_configs"][0][
            "refresh_interval"
        ]
        == SD_REFRESH
        == "10s"
    )  # docker/ and attached stacks keep Prometheus's usual pace
    _promtool_check(tmp_path, cfg)


def test_external_endpoint_config_scrapes_its_metrics_path_and_no_ray(tmp_path):
    cfg = prometheus_config(None, "127.0.0.1:9", "1s", [endpoint_job("https://10.0.0.5:8443/serve/metrics")])
    jobs = {j["job_name"]: j for j in cfg["scrape_configs"]}
    assert RAY_JOB not in jobs
    assert jobs[ENDPOINT_JOB] == {
        "job_name": "endpoint",
        "scheme": "https",
        "metrics_path": "/serve/metrics",
        "static_configs": [{"targets": ["10.0.0.5:8443"]}],
    }
    _promtool_check(tmp_path, cfg)
