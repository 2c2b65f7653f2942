"""A local Ray head as a loopback single-node cluster, started with `ray start` and stopped by process group."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from harness.errors import StackError
from harness.paths import child_env
from harness.stack.net import LOOPBACK, free_port, port_in_use
from harness.stack.procs import stop_groups

SD_FILENAME = "prom_metrics_service_discovery.json"

# RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 makes Ray a loopback cluster (targets advertised on 127.0.0.1);
# a 1 s metrics report interval cuts Serve's metric lag from ~10 s to ~1 s.
LOCAL_RAY_ENV = {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_metrics_report_interval_ms": "1000",
    "RAY_USAGE_STATS_ENABLED": "0",
}


@dataclass
class LocalRay:
    temp_dir: str
    gcs_port: int
    dashboard_port: int
    metrics_port: int
    client_port: int
    autoscaler_metrics_port: int
    dashboard_metrics_port: int
    num_cpus: int
    auth_token_path: str = ""
    pgid: int | None = None
    host: str = LOOPBACK  # the head's node IP (a bridge address for a local multi-node cluster)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.gcs_port}"

    @property
    def sd_file(self) -> Path:
        # Ray keeps this symlink pointing at the current session's discovery file.
        return Path(self.temp_dir) / SD_FILENAME

    @property
    def driver_env(self) -> dict[str, str]:
        """Env a driver needs to join this cluster: loopback resolution and our auth token."""
        env = {**LOCAL_RAY_ENV, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": self.auth_token_path}
        if self.host != LOOPBACK:  # multi-node: nodes must advertise their own addresses
            env.pop("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER")
        return env

    def to_dict(self) -> dict:
        return asdict(self)


def ray_cli() -> list[str]:
    """`ray` of the interpreter running the harness, whether or not its venv is activated.

    `shutil.which("ray")` finds whatever is first on PATH: another Python's Ray then runs the cluster with other
    package versions than the driver, and replicas die unpickling (e.g. `ModuleNotFoundError: fastapi.telemetry`).
    """
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        raise StackError(
            f"Ray is not installed for {sys.executable}", fix='pip install "ray[serve]" (or `pip install .`)'
        )
    return [sys.executable, "-m", "ray.scripts.scripts"]


def new_temp_dir() -> Path:
    # Short temp dir: Ray puts unix sockets under it and socket paths are limited to ~107 bytes.
    temp_dir = Path("/tmp/harness-ray") / f"{os.getpid()}-{int(time.time())}"
    temp_dir.mkdir(parents=True, exist_ok=True)
    return temp_dir


def start_ray(
    state_dir: Path,
    *,
    num_cpus: int = 8,
    timeout_s: float = 90.0,
    host: str = LOOPBACK,
    extra_args: tuple[str, ...] = (),
    extra_env: dict[str, str] | None = None,
    temp_dir: Path | None = None,
) -> LocalRay:
    """`temp_dir` from new_temp_dir(): known before the start, so Prometheus can watch the discovery file early."""
    temp_dir = temp_dir or new_temp_dir()
    ray = LocalRay(
        temp_dir=str(temp_dir),
        gcs_port=free_port(),
        dashboard_port=free_port(),
        metrics_port=free_port(),
        client_port=free_port(),
        autoscaler_metrics_port=free_port(),
        dashboard_metrics_port=free_port(),
        num_cpus=num_cpus,
        host=host,
    )
    cmd = [
        *ray_cli(),
        "start",
        "--head",
        f"--port={ray.gcs_port}",
        f"--node-ip-address={host}",
        f"--dashboard-host={host}",
        f"--dashboard-port={ray.dashboard_port}",
        f"--metrics-export-port={ray.metrics_port}",
        f"--ray-client-server-port={ray.client_port}",
        f"--num-cpus={num_cpus}",
        f"--temp-dir={temp_dir}",
        "--disable-usage-stats",
        *extra_args,
    ]
    # Token auth on, with a token of our own: Ray 2.60 otherwise picks ~/.ray/auth_token up or not
    # depending on who created it first, and drivers then fail with InvalidAuthToken.
    token = state_dir / "ray_auth_token"
    token.write_text(secrets.token_hex(32))
    token.chmod(0o600)
    ray.auth_token_path = str(token)
    log = (state_dir / "ray-start.log").open("w")
    # Free ports instead of the fixed 44217/44227 so two stacks on one machine do not collide.
    env = child_env(
        {
            **ray.driver_env,
            "AUTOSCALER_METRIC_PORT": str(ray.autoscaler_metrics_port),
            "DASHBOARD_METRIC_PORT": str(ray.dashboard_metrics_port),
            **(extra_env or {}),
        }
    )
    if host != LOOPBACK:  # multi-node: a loopback flag left in our own env must not reach the head
        env.pop("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", None)
    # New session: every Ray daemon inherits this process group, so stop_ray can end exactly our cluster
    # (`ray stop` would kill every Ray on the machine).
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    ray.pgid = proc.pid
    try:
        rc = proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        stop_ray(ray)
        raise StackError(f"`ray start` did not finish within {timeout_s:.0f} s", fix=f"see {log.name}") from None
    if rc != 0:
        tail = Path(log.name).read_text(errors="replace")[-1500:]
        stop_ray(ray)
        raise StackError(
            f"`ray start` failed (exit {rc}):\n{tail}", fix=f"see {log.name}; is another Ray using the ports?"
        )
    return ray


# Measured here (Ray 2.60): on SIGTERM everything but gcs_server, the autoscaler monitor, the runtime-env agent and
# the raylet exits within 0.2 s; those four are still there 10 s later. A short grace, then SIGKILL: the temp dir
# goes with the stack, so there is nothing a graceful stop would save.
STOP_GRACE_S = 1.0


def stop_ray(ray: LocalRay, grace_s: float = STOP_GRACE_S) -> None:
    """SIGTERM the cluster's process group(s), then SIGKILL what is left after `grace_s`."""
    pgids = {ray.pgid} if ray.pgid else set()
    stop_groups(pgids | _pgids_with(ray.temp_dir), grace_s)


def _pgids_with(marker: str) -> set[int]:
    """Process groups of processes whose command line names our temp dir (safety net for strays)."""
    out: set[int] = set()
    try:
        import psutil
    except ImportError:
        return out
    for p in psutil.process_iter(["pid", "cmdline"]):
        try:
            if any(marker in a for a in (p.info["cmdline"] or [])):
                g = os.getpgid(p.info["pid"])
                if g != os.getpgid(0):  # never signal our own group
                    out.add(g)
        except (psutil.Error, ProcessLookupError, OSError):
            continue
    return out


def ray_alive(ray: LocalRay) -> bool:
    return port_in_use(ray.gcs_port, ray.host)
