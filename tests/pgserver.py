"""A real, throw-away PostgreSQL server on 127.0.0.1 for store tests (Debian's `postgresql`, installed by .ci/setup).

initdb into a temp dir (as the `postgres` user when we are root: PostgreSQL refuses to run as root), password
authentication over TCP, a free port. `stop()` / `start()` simulate the store going down and coming back.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

PASSWORD = "s3cr3t-pg-pw-" + os.urandom(4).hex()  # a value to look for: it must never be written anywhere


def bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    exe = shutil.which("pg_ctl")
    return Path(exe).parent if exe else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    def __init__(self):
        self.bin = bindir()
        if self.bin is None:
            raise RuntimeError("PostgreSQL is not installed (apt-get install -y postgresql; .ci/setup does it)")
        self.root = Path(tempfile.mkdtemp(prefix="harness-pg-"))
        self.data, self.sock = self.root / "data", self.root / "sock"
        self.sock.mkdir()
        self.port = _free_port()
        self.user = "harness"
        self._as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        pw = self.root / "pw"
        pw.write_text(PASSWORD + "\n")
        if self._as:
            shutil.chown(self.root, "postgres")
            shutil.chown(self.sock, "postgres")
            shutil.chown(pw, "postgres")
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            self.user,
            f"--pwfile={pw}",
            "--auth-host=scram-sha-256",
            "--auth-local=trust",
            "-E",
            "UTF8",
            "--no-sync",
        )
        pw.unlink()

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run(
            [*self._as, str(self.bin / tool), *args], check=True, capture_output=True, text=True, timeout=120
        )

    def start(self) -> None:
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.root / "log"),
            "-w",
            "-t",
            "60",
            "start",
            "-o",
            f"-p {self.port} -k {self.sock} -c listen_addresses=127.0.0.1 -c fsync=off",
        )

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def url(self, with_password: bool = False) -> str:
        auth = f"{self.user}:{PASSWORD}" if with_password else self.user
        return f"postgresql://{auth}@127.0.0.1:{self.port}/postgres"

    def cleanup(self) -> None:
        try:
            self.stop()
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.root, ignore_errors=True)


def server_or_skip():
    """A started server; outside CI a missing PostgreSQL skips, under CI=true it fails (setup must install it)."""
    import pytest

    if bindir() is None:
        if os.environ.get("CI") == "true":
            pytest.fail("PostgreSQL is missing but CI=true: .ci/setup installs it")
        pytest.skip("PostgreSQL is not installed (apt-get install -y postgresql)")
    s = PostgresServer()
    s.start()
    return s
