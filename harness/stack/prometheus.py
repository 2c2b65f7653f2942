"""A local Prometheus server on loopback that discovers Ray's targets from Ray's file_sd output."""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from harness.errors import StackError
from harness.stack.net import LOOPBACK, free_port, http_get, http_json
from harness.stack.procs import stop_groups
from harness.stack.prom_config import LOCAL_SCRAPE_INTERVAL_S, LOCAL_SD_REFRESH, RAY_JOB, prometheus_config

INSTALL_HINT = "apt-get update && apt-get install -y prometheus   (or put a `prometheus` binary on PATH)"


@dataclass
class LocalPrometheus:
    port: int
    data_dir: str
    config_file: str
    pid: int | None = None

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def to_dict(self) -> dict:
        return asdict(self)


def start_prometheus(
    state_dir: Path,
    sd_file: Path | None,
    *,
    scrape_interval_s: float = LOCAL_SCRAPE_INTERVAL_S,
    timeout_s: float = 30.0,
    extra_jobs: list | None = None,
    rule_files: list[str] | None = None,
    alertmanager: str | None = None,
) -> LocalPrometheus:
    """Start on a free loopback port and wait until ready. `sd_file` may not exist yet (Ray writes it ~7 s
    after its start): Prometheus re-reads it every LOCAL_SD_REFRESH, so it can start alongside Ray."""
    exe = shutil.which("prometheus")
    if not exe:
        raise StackError("the `prometheus` binary was not found on PATH", fix=INSTALL_HINT)
    port = free_port()
    data = state_dir / "prometheus-data"
    data.mkdir(parents=True, exist_ok=True)
    cfg = state_dir / "prometheus.yml"
    listen = f"{LOOPBACK}:{port}"
    cfg.write_text(
        yaml.safe_dump(
            prometheus_config(
                str(sd_file) if sd_file else None,
                listen,
                f"{scrape_interval_s:g}s",
                extra_jobs,
                rule_files=rule_files,
                alertmanager=alertmanager,
                sd_refresh=LOCAL_SD_REFRESH,
            ),
            sort_keys=False,
        )
    )
    log = (state_dir / "prometheus.log").open("w")
    proc = subprocess.Popen(
        [
            exe,
            f"--config.file={cfg}",
            f"--storage.tsdb.path={data}",
            f"--web.listen-address={listen}",
            "--web.enable-lifecycle",
            "--storage.tsdb.retention.time=7d",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    prom = LocalPrometheus(port=port, data_dir=str(data), config_file=str(cfg), pid=proc.pid)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = Path(log.name).read_text(errors="replace")[-1500:]
            raise StackError(f"prometheus exited at start (code {proc.returncode}):\n{tail}", fix=f"see {log.name}")
        try:
            if http_get(f"{prom.url}/-/ready", 1.0)[0] == 200:
                return prom
        except OSError:
            pass
        time.sleep(0.1)
    stop_prometheus(prom)
    raise StackError(f"prometheus did not become ready on {listen} within {timeout_s:.0f} s", fix=f"see {log.name}")


def stop_prometheus(prom: LocalPrometheus, grace_s: float = 5.0) -> None:
    if prom.pid:  # Prometheus exits ~20 ms after SIGTERM (measured); the wait ends as soon as it has
        stop_groups([prom.pid], grace_s, kill_wait_s=2.0)


def ray_targets(prom_url: str, job: str = RAY_JOB) -> list[dict]:
    """Prometheus's view of one scrape job (default: `ray`): [{url, health, last_error}]."""
    data = http_json(f"{prom_url}/api/v1/targets?state=active", 5.0)
    return [
        {"url": t.get("scrapeUrl"), "health": t.get("health"), "last_error": t.get("lastError") or ""}
        for t in data["data"]["activeTargets"]
        if t.get("labels", {}).get("job") == job
    ]


def wait_for_ray_targets(
    prom_url: str,
    sd_file: str | None,
    *,
    timeout_s: float = 60.0,
    min_targets: int = 1,
    poll_s: float = 0.25,
    job: str = RAY_JOB,
) -> list[dict]:
    """Bounded wait until Prometheus scrapes Ray's discovered targets successfully."""
    deadline = time.monotonic() + timeout_s
    targets: list[dict] = []
    while time.monotonic() < deadline:
        try:
            targets = ray_targets(prom_url) if job == RAY_JOB else ray_targets(prom_url, job)
        except OSError:
            targets = []
        up = [t for t in targets if t["health"] == "up"]
        if len(up) >= min_targets and len(up) == len(targets):
            return targets
        time.sleep(poll_s)
    from harness.stack.discovery import TROUBLESHOOTING

    detail = (
        "; ".join(f"{t['url']} {t['health']} {t['last_error']}".strip() for t in targets)
        or f"no targets for job {job!r}"
    )
    raise StackError(
        f"Prometheus at {prom_url} did not see the {job!r} job's targets UP within {timeout_s:.0f} s "
        f"(discovery file: {sd_file or 'unknown'}): {detail}",
        fix=TROUBLESHOOTING,
    )
