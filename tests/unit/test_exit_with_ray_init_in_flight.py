"""A SIGTERM during the deploy's ray.init leaves that connection attempt running in its thread; once the run has
written everything, the CLI exits with the run's code at once instead of waiting on it (Ray's core worker would
retry the stopped GCS for 60 s, then abort the process with exit code 1: seen on CI)."""

import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROG = """
import sys, threading
from harness.stack import ray_client
from harness.cli import app
# stands in for a ray.init that never returns; not a daemon, so a normal exit would wait for it forever
ray_client._init_thread = threading.Thread(target=threading.Event().wait, name="ray-init")
ray_client._init_thread.start()
app(["scenarios", "validate", sys.argv[1]], prog_name="harness")
"""


def test_exits_with_its_code_while_a_ray_init_is_still_under_way(tmp_path):
    t0 = time.monotonic()
    r = subprocess.run(
        [sys.executable, "-c", PROG, str(tmp_path / "missing.yaml")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2, r.stdout + r.stderr  # bad input: the command's own exit code, not 1
    assert "missing.yaml" in r.stderr
    assert time.monotonic() - t0 < 30


INTERRUPTED = """
import threading
import ray  # noqa: F401 - loaded, as in any run that reached the deploy
import typer
from harness.cli import cli_errors
# stands in for what Ray's exit hooks wait on once the interrupted run's cluster is stopped (CI: 60 s, then exit 1)
threading.Thread(target=threading.Event().wait, name="gcs-client").start()

@cli_errors
def run() -> None:
    raise KeyboardInterrupt

typer.run(run)
"""


def test_interrupted_run_with_ray_loaded_exits_130_at_once():
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-c", INTERRUPTED], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 130, r.stdout + r.stderr
    assert "interrupted" in r.stderr and time.monotonic() - t0 < 30
