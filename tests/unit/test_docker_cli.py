"""`harness docker …`, `--cluster`, `--dashboard-url` bad input: exit 2 with the install line or fix, no traceback."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from harness.commands.matrix import Cluster
from harness.errors import HarnessError
from harness.stack import docker as dk

ROOT = Path(__file__).resolve().parents[2]


def cli(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def fake_docker(tmp_path: Path, script: str) -> dict:
    """A PATH whose only `docker` is this script (the rest of PATH without any docker)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    exe = bin_dir / "docker"
    exe.write_text("#!/bin/sh\n" + script)
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    path = [bin_dir] + [Path(p) for p in os.environ["PATH"].split(os.pathsep) if not (Path(p) / "docker").exists()]
    return {**os.environ, "PATH": os.pathsep.join(map(str, path)), "HARNESS_STATE_DIR": str(tmp_path / "state")}


@pytest.mark.parametrize(
    ("script", "expect"),
    [
        ("exit 127\n", None),  # replaced below by a PATH with no docker at all
        ('[ "$1" = info ] && { echo "Cannot connect to the Docker daemon" >&2; exit 1; }\nexit 0\n', "not reachable"),
        ('[ "$1" = info ] && { echo 20.10; exit 0; }\n[ "$1" = compose ] && exit 1\nexit 0\n', "Compose v2 plugin"),
        ('[ "$1" = info ] && { echo 20.10; exit 0; }\n[ "$1" = compose ] && { echo 1.29.2; exit 0; }\n', "too old"),
    ],
)
def test_missing_docker_daemon_or_compose_is_exit_2_with_the_install_line(tmp_path, script, expect):
    env = fake_docker(tmp_path, script)
    if expect is None:
        (tmp_path / "bin" / "docker").unlink()
        expect = "`docker` command was not found"
    for args in (["docker", "up", "--cpu"], ["docker", "build"], ["docker", "down"]):
        r = cli(*args, env=env)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert expect in r.stderr and "fix:" in r.stderr and "Traceback" not in r.stderr, r.stderr
        assert "install-docker" in r.stderr or "apt-get install" in r.stderr or "dockerd" in r.stderr, r.stderr


def test_cluster_option_is_parsed_before_anything_starts():
    c = Cluster.parse("a=http://127.0.0.1:8265,http://127.0.0.1:9090")
    assert c.args() == ["--dashboard-url", "http://127.0.0.1:8265", "--prometheus-url", "http://127.0.0.1:9090"]
    for bad in ("a", "a=http://x:1", "=http://x:1,http://y:2", "a=ftp://x:1,http://y:2", "a=http://x:1,http://y:2,z,w"):
        with pytest.raises(HarnessError):
            Cluster.parse(bad)


def test_dashboard_url_that_answers_nothing_is_exit_2_fast(tmp_path):
    from harness.stack.net import free_port

    port = free_port()  # nothing listens there
    r = cli(
        "run",
        "smoke",
        "--dashboard-url",
        f"http://127.0.0.1:{port}",
        "--prometheus-url",
        f"http://127.0.0.1:{port}",
        "-o",
        str(tmp_path),
        env=os.environ.copy(),
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr and "fix:" in r.stderr, r.stderr
    r = cli("verify", "--dashboard-url", "not-a-url", "--prometheus-url", "http://127.0.0.1:9", env=os.environ.copy())
    assert r.returncode == 2 and "--dashboard-url" in r.stderr, r.stderr


def test_image_tags_follow_their_inputs():
    a = dk.image_tag("ray", "FROM x\n", "sha256:1", RAY_VERSION="2.60.0")
    assert a.startswith("harness-ray:2.60.0-")
    assert a == dk.image_tag("ray", "FROM x\n", "sha256:1", RAY_VERSION="2.60.0")
    assert a != dk.image_tag("ray", "FROM y\n", "sha256:1", RAY_VERSION="2.60.0")  # the Dockerfile
    assert a != dk.image_tag("ray", "FROM x\n", "sha256:2", RAY_VERSION="2.60.0")  # the base image
    assert a != dk.image_tag("ray", "FROM x\n", "sha256:1", RAY_VERSION="2.60.0", PIP_EXTRA="fastapi<1")
