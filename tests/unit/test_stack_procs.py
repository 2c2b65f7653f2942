"""Stopping process groups ends as soon as they have exited, zombies or not (harness/stack/procs.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from harness.stack.procs import group_alive, stop_groups

# A parent that never reaps: its child, once killed, stays a zombie (as Ray's daemons do under a slow PID 1).
NEGLECTFUL_PARENT = (
    "import subprocess, sys, time\n"
    "p = subprocess.Popen(['sleep', '60'], start_new_session=True)\n"
    "print(p.pid, flush=True)\n"
    "time.sleep(60)\n"
)


@pytest.fixture
def zombie_group():
    parent = subprocess.Popen([sys.executable, "-c", NEGLECTFUL_PARENT], stdout=subprocess.PIPE, text=True)
    pid = int(parent.stdout.readline())
    yield pid
    parent.kill()
    parent.wait(10)


def _wait_zombie(pid: int) -> None:
    import psutil

    deadline = time.monotonic() + 10
    while psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, "the child did not become a zombie"
        time.sleep(0.02)


def test_a_group_of_zombies_is_not_alive(zombie_group):
    assert group_alive(zombie_group)
    os.killpg(zombie_group, signal.SIGKILL)
    _wait_zombie(zombie_group)
    os.killpg(zombie_group, 0)  # the kernel still knows the group: a signal-0 check would call it alive
    assert not group_alive(zombie_group)


def test_stop_ends_when_the_group_has_exited_not_after_the_grace(zombie_group):
    t0 = time.monotonic()
    stop_groups([zombie_group], grace_s=5.0, kill_wait_s=5.0)
    assert time.monotonic() - t0 < 2.0  # `sleep` dies on SIGTERM at once; its zombie does not hold the wait
    assert not group_alive(zombie_group)


def test_own_child_is_reaped_and_a_term_ignoring_group_is_killed():
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); "
            "time.sleep(60)",
        ],
        start_new_session=True,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout.readline().strip() == "ready"  # SIGTERM is ignored from here on
    t0 = time.monotonic()
    stop_groups([child.pid], grace_s=0.5, kill_wait_s=5.0)
    took = time.monotonic() - t0
    assert 0.5 <= took < 3.0, took  # the grace, then SIGKILL, then done (our own zombie reaped)
    assert child.poll() is not None and not group_alive(child.pid)
