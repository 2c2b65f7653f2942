"""Unreachable things fail clearly and in bounded time, naming what was tried: Prometheus, Ray (dead port and a
port that is not Ray), the target endpoint, the prometheus binary, a taken port, Ray's discovery file."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from harness.errors import DeployError, StackError

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

SC = {
    "name": "u",
    "target": {"engine": "sim", "model": "m"},
    "load": {"stages": [{"duration_s": 5, "users": 1}]},
    "slos": ["error_rate <= 1%"],
}


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when we return


def _cli(tmp_path: Path, *args: str, env_extra=None, scenario=SC, timeout=90) -> tuple[int, str, float]:
    p = tmp_path / "s.yaml"
    p.write_text(yaml.safe_dump(scenario))
    env = {**os.environ, "HARNESS_STATE_DIR": str(tmp_path / "state"), **(env_extra or {})}
    t0 = time.monotonic()
    r = subprocess.run(
        [sys.executable, "-m", "harness.cli", "run", str(p), "--results-dir", str(tmp_path / "res"), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )
    return r.returncode, r.stdout + r.stderr, time.monotonic() - t0


@pytest.fixture(scope="module")
def prom(tmp_path_factory):
    from harness.stack.net import free_port, http_get

    d = tmp_path_factory.mktemp("prom")
    port = free_port()
    (d / "p.yml").write_text("global: {scrape_interval: 5s}\n")
    p = subprocess.Popen(
        [
            "prometheus",
            f"--config.file={d / 'p.yml'}",
            f"--storage.tsdb.path={d / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(100):
        try:
            if http_get(f"http://127.0.0.1:{port}/-/ready", 1.0)[0] == 200:
                break
        except OSError:
            time.sleep(0.2)
    yield port
    p.kill()
    p.wait(10)


def test_prometheus_not_answering(tmp_path):
    port = _closed_port()
    rc, out, dt = _cli(tmp_path, "--ray-address", "127.0.0.1:1", "--prometheus-url", f"http://127.0.0.1:{port}")
    assert rc == 2 and "Traceback" not in out and f"127.0.0.1:{port}" in out and "--prometheus-url" in out, out


def test_prometheus_url_without_scheme(tmp_path):
    rc, out, _ = _cli(tmp_path, "--ray-address", "127.0.0.1:1", "--prometheus-url", "localhost:9090")
    assert rc == 2 and "Traceback" not in out and "localhost:9090" in out, out


def test_ray_address_dead(tmp_path, prom):
    port = _closed_port()
    rc, out, dt = _cli(tmp_path, "--ray-address", f"127.0.0.1:{port}", "--prometheus-url", f"http://127.0.0.1:{prom}")
    assert rc == 2 and "Traceback" not in out and f"127.0.0.1:{port}" in out and "not reachable" in out, out
    run = next((tmp_path / "res").glob("*/run.json"))
    assert '"status": "failed"' in run.read_text()


def test_ray_address_is_not_ray(tmp_path, prom):
    """A port that accepts TCP but is not a GCS (here: Prometheus): ray.init would retry for minutes."""
    rc, out, dt = _cli(
        tmp_path,
        "--ray-address",
        f"127.0.0.1:{prom}",
        "--prometheus-url",
        f"http://127.0.0.1:{prom}",
        env_extra={"HARNESS_RAY_CONNECT_TIMEOUT_S": "6"},
    )
    assert rc == 2 and "Traceback" not in out and f"127.0.0.1:{prom}" in out, out
    assert "within 6 s" in out or "cannot connect to Ray" in out, out
    assert dt < 60, dt  # bounded (6 s deadline + interpreter and Ray import; generous for a loaded CI box)


def test_target_endpoint_not_answering():
    from harness.deploy import wait_healthy

    url = f"http://127.0.0.1:{_closed_port()}"
    t0 = time.monotonic()
    with pytest.raises(DeployError) as e:
        wait_healthy(url, "m", {}, timeout_s=2.0)
    assert url in e.value.render() and time.monotonic() - t0 < 20


def test_prometheus_binary_absent_fails_before_starting_ray(tmp_path):
    rc, out, dt = _cli(tmp_path, env_extra={"PATH": str(tmp_path / "empty-bin")})
    assert rc == 2 and "Traceback" not in out and "prometheus" in out and "apt-get" in out, out
    assert not (tmp_path / "state" / "stacks").exists() or not any((tmp_path / "state" / "stacks").iterdir())


def test_port_already_taken(tmp_path, monkeypatch):
    from harness.stack import prometheus as prom_mod

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        taken = s.getsockname()[1]
        monkeypatch.setattr(prom_mod, "free_port", lambda: taken)
        t0 = time.monotonic()
        with pytest.raises(StackError) as e:
            prom_mod.start_prometheus(tmp_path, tmp_path / "sd.json", timeout_s=20)
    msg = e.value.render()
    assert "address already in use" in msg or f"{taken}" in msg, msg
    assert time.monotonic() - t0 < 30


def test_discovery_file_missing_or_stale_is_explained(tmp_path, monkeypatch):
    from harness.stack import prometheus as prom_mod
    from harness.stack.discovery import STALE_AFTER_S, TROUBLESHOOTING, read_discovery

    missing = read_discovery(tmp_path / "nope.json")
    assert not missing.ok and "does not exist" in missing.error
    f = tmp_path / "sd.json"
    f.write_text('[{"targets": ["127.0.0.1:1"]}]')
    old = time.time() - STALE_AFTER_S - 60
    os.utime(f, (old, old))
    assert read_discovery(f).stale and not read_discovery(f).ok
    monkeypatch.setattr(prom_mod, "ray_targets", lambda url: [])
    with pytest.raises(StackError) as e:
        prom_mod.wait_for_ray_targets("http://127.0.0.1:1", str(f), timeout_s=0.5)
    msg = e.value.render()
    assert str(f) in msg and TROUBLESHOOTING in msg
