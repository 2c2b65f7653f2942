"""Stack stage: find or start Ray and Prometheus. `Stack` is what the later stages need to reach them."""

from __future__ import annotations

import json
import os
import shutil
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from harness.errors import StackError
from harness.stack.net import LOOPBACK, free_port, http_get
from harness.stack.prometheus import LocalPrometheus, start_prometheus, stop_prometheus, wait_for_ray_targets
from harness.stack.ray_head import SD_FILENAME, LocalRay, new_temp_dir, ray_alive, start_ray, stop_ray


def state_root() -> Path:
    return Path(os.environ.get("HARNESS_STATE_DIR", Path.home() / ".cache" / "harness"))


@dataclass
class Stack:
    ray_address: str
    prometheus_url: str
    serve_port: int = 8000
    endpoint_url: str | None = None  # where load goes; None: http://127.0.0.1:<serve_port>
    sd_file: str | None = None
    local: bool = False  # started by the harness (and so stopped by it)
    state_dir: str | None = None
    ray: dict | None = None
    prometheus: dict | None = None
    timings_s: dict = field(default_factory=dict)
    ray_env: dict = field(default_factory=dict)  # env a driver needs to join (local stacks: loopback + auth token)
    metrics_url: str | None = None  # external endpoint: its own /metrics, scraped by our Prometheus (None: none)
    alerting: dict | None = None  # local Alertmanager + rules (harness/stack/alerts.py); the run owns the receiver
    cluster: dict | None = None  # local multi-node cluster (harness/stack/multinode.py): bridge, namespaces, workers
    targets_pending: bool = False  # Prometheus may not scrape Ray's targets yet: `wait_targets` before the load
    dashboard_url: str | None = None  # attached over HTTP: deploy, facts and faults through the dashboard's REST API

    @property
    def base_url(self) -> str:
        return (self.endpoint_url or f"http://{LOOPBACK}:{self.serve_port}").rstrip("/")

    def to_dict(self) -> dict:
        return asdict(self)


def _new_state_dir() -> Path:
    # <time>-<pid>: runctx's leftover reaper recognises our Prometheus by this path in its command line
    state_dir = state_root() / "stacks" / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise StackError(
            f"cannot create the stack state dir {state_dir}: {e.strerror or e}",
            fix="set HARNESS_STATE_DIR to a writable folder",
        ) from None
    return state_dir


def start_local_stack(*, num_cpus: int = 8, targets_timeout_s: float = 60.0, wait_targets: bool = True) -> Stack:
    """Loopback Ray head + Prometheus whose file_sd reads Ray's discovery file; waits for targets UP, or with
    `wait_targets=False` leaves that to `wait_targets(stack)` (a run deploys meanwhile: Ray writes its discovery
    file ~5 s after `ray start` returns, about as long as a deploy takes)."""
    if not shutil.which("prometheus"):  # before starting Ray: fail in a second, not after Ray's ~15 s start
        from harness.stack.prometheus import INSTALL_HINT

        raise StackError(
            "the `prometheus` binary was not found on PATH (needed for the local stack)",
            fix=f"{INSTALL_HINT}; or pass --ray-address and --prometheus-url of an existing stack",
        )
    state_dir = _new_state_dir()
    t0 = time.monotonic()
    temp_dir = new_temp_dir()
    # Prometheus starts alongside Ray (it re-reads the discovery file until Ray writes it): `ray start` takes
    # ~10 s, Prometheus ~1 s, so its start costs nothing and it scrapes Ray's targets the moment they appear.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="prometheus-start") as pool:
        prom_future = pool.submit(start_prometheus, state_dir, temp_dir / SD_FILENAME)
        try:
            ray = start_ray(state_dir, num_cpus=num_cpus, temp_dir=temp_dir)
        except BaseException:
            _stop_started_prometheus(prom_future)
            raise
    t_ray = time.monotonic()
    try:
        prom = prom_future.result()
        stack = Stack(
            ray_address=ray.address,
            prometheus_url=prom.url,
            serve_port=free_port(),
            sd_file=str(ray.sd_file),
            local=True,
            state_dir=str(state_dir),
            ray=ray.to_dict(),
            prometheus=prom.to_dict(),
            ray_env=ray.driver_env,
        )
        if wait_targets:
            wait_for_ray_targets(prom.url, str(ray.sd_file), timeout_s=targets_timeout_s, min_targets=2)
    except BaseException:
        stop_ray(ray)
        _stop_started_prometheus(prom_future)
        raise
    stack.timings_s = {"ray_start_s": round(t_ray - t0, 2)}
    if wait_targets:
        stack.timings_s["targets_up_s"] = round(time.monotonic() - t_ray, 2)
    else:
        stack.targets_pending = True
        stack.timings_s["ray_started_at"] = round(time.time() - (time.monotonic() - t_ray), 3)  # epoch s
    (state_dir / "stack.json").write_text(json.dumps(stack.to_dict(), indent=2))
    return stack


def wait_targets(stack: Stack, *, timeout_s: float = 60.0) -> None:
    """Bounded wait until Prometheus scrapes Ray's targets, for a stack started with `wait_targets=False`: before
    the load, so the run window is covered. Records `targets_up_s` (since Ray started) and the part of it the
    run waited for here (`targets_wait_s`; the rest overlapped the deploy)."""
    if not stack.targets_pending:
        return
    t0 = time.monotonic()
    # Ray lists all three targets (metrics agent, autoscaler, dashboard) within ~12 s of start.
    wait_for_ray_targets(stack.prometheus_url, stack.sd_file, timeout_s=timeout_s, min_targets=2)
    stack.targets_pending = False
    started = stack.timings_s.pop("ray_started_at", None)
    if started is not None:
        stack.timings_s["targets_up_s"] = round(time.time() - started, 2)
    stack.timings_s["targets_wait_s"] = round(time.monotonic() - t0, 2)


def start_external_stack(endpoint_url: str, *, targets_timeout_s: float = 15.0) -> Stack:
    """For an external endpoint: no Ray, only a local Prometheus, which scrapes the endpoint's own /metrics
    when it has one (a plain vLLM server does), so server signals still arrive."""
    from harness.stack.prom_config import ENDPOINT_JOB, endpoint_job

    if not shutil.which("prometheus"):
        from harness.stack.prometheus import INSTALL_HINT

        raise StackError(
            "the `prometheus` binary was not found on PATH (needed to scrape the endpoint's /metrics)",
            fix=f"{INSTALL_HINT}; or pass --prometheus-url of a Prometheus that scrapes the endpoint",
        )
    state_dir = _new_state_dir()
    t0 = time.monotonic()
    probe = endpoint_url.rstrip("/").removesuffix("/v1") + "/metrics"
    metrics_url = probe if _exposes_metrics(probe) else None
    prom = start_prometheus(state_dir, None, extra_jobs=[endpoint_job(metrics_url)] if metrics_url else [])
    t_prom = time.monotonic()
    stack = Stack(
        ray_address="",
        prometheus_url=prom.url,
        endpoint_url=endpoint_url,
        local=True,
        state_dir=str(state_dir),
        prometheus=prom.to_dict(),
        metrics_url=metrics_url,
    )
    if metrics_url:
        try:
            wait_for_ray_targets(prom.url, None, timeout_s=targets_timeout_s, min_targets=1, job=ENDPOINT_JOB)
        except BaseException:
            stop_prometheus(prom)
            raise
    stack.timings_s = {"prometheus_start_s": round(t_prom - t0, 2), "targets_up_s": round(time.monotonic() - t_prom, 2)}
    (state_dir / "stack.json").write_text(json.dumps(stack.to_dict(), indent=2))
    return stack


def _exposes_metrics(url: str) -> bool:
    """Prometheus text at `url`: 200 and a `# TYPE` line (an OpenAI server without metrics answers 404)."""
    try:
        status, body = http_get(url, 3.0)
    except (OSError, ValueError):
        return False
    return status == 200 and b"# TYPE " in body[:200_000]


def _stop_started_prometheus(fut: Future) -> None:
    try:
        stop_prometheus(fut.result())
    except BaseException:  # noqa: BLE001 — it failed to start: nothing to stop
        pass


def stop_local_stack(stack: Stack) -> None:
    if not stack.local:
        return
    if stack.cluster:  # worker nodes first: they would otherwise try to reconnect to a dying head
        from harness.stack.multinode import teardown

        teardown(stack.cluster)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="prometheus-stop") as pool:  # both at once
        if stack.prometheus:
            pool.submit(stop_prometheus, LocalPrometheus(**stack.prometheus))
        if stack.alerting:
            from harness.stack.alerts import stop_alertmanager

            stop_alertmanager(stack.alerting)
        if stack.ray:
            stop_ray(LocalRay(**stack.ray))
            shutil.rmtree(stack.ray["temp_dir"], ignore_errors=True)


def attach(
    ray_address: str,
    prometheus_url: str,
    endpoint_url: str | None = None,
    timeout_s: float = 10.0,
    dashboard_url: str | None = None,
) -> Stack:
    """Use an existing Ray and Prometheus; check Prometheus answers (and the dashboard, when given: a URL that is
    not a Ray dashboard fails here, within `timeout_s`; Ray over the Ray Client is checked when deploying)."""
    url = prometheus_url.rstrip("/")
    try:
        status, _ = http_get(f"{url}/-/ready", timeout_s)
    except (OSError, ValueError) as e:  # ValueError: not a URL (e.g. no http:// scheme)
        raise StackError(
            f"Prometheus at {url} is not reachable ({e.__class__.__name__}: {e})",
            fix="check --prometheus-url (scheme, host, port) and that Prometheus is running",
        ) from None
    if status != 200:
        raise StackError(
            f"Prometheus at {url} answered /-/ready with HTTP {status}", fix="wait until it is ready, or check the URL"
        )
    if dashboard_url:
        from harness.stack.dashboard import Dashboard

        dash = Dashboard(dashboard_url, timeout_s=timeout_s)
        dash.version()
        dashboard_url = dash.url
        if endpoint_url is None:  # Serve's proxy on the dashboard's host, at Serve's default port
            from urllib.parse import urlparse

            endpoint_url = f"http://{urlparse(dash.url).hostname}:8000"
    return Stack(ray_address=ray_address, prometheus_url=url, endpoint_url=endpoint_url, dashboard_url=dashboard_url)


# ---------- a long-lived stack for repeated runs (`harness up` / `harness down`) ----------


def _pointer() -> Path:
    return state_root() / "current-stack.json"


def save_current(stack: Stack) -> Path:
    p = _pointer()
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(stack.to_dict(), indent=2))
    return p


def load_current() -> Stack | None:
    p = _pointer()
    if not p.exists():
        return None
    try:
        stack = Stack(**json.loads(p.read_text()))
    except (OSError, ValueError, TypeError):
        return None
    if stack.ray and not ray_alive(LocalRay(**stack.ray)):
        return None  # left behind by a stack that died: ignore it
    return stack


def clear_current() -> None:
    _pointer().unlink(missing_ok=True)
