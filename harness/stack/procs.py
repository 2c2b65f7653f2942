"""Stopping the process groups the local stack started (Ray, Prometheus, Alertmanager), without waiting on zombies.

A process that has exited stays a zombie until its parent reaps it: Prometheus is our own child, and Ray's daemons
are re-parented to PID 1, which on this machine kind reaps them only every few seconds. `os.killpg(g, 0)` succeeds
on a group of zombies, so a wait that trusts it always runs to its timeout (measured: 7 s per stack teardown).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterable


def _reap_children(pgid: int) -> None:
    """Reap our own exited children in the group (a no-op for groups that are not our children)."""
    while True:
        try:
            pid, _ = os.waitpid(-pgid, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def group_alive(pgid: int) -> bool:
    """True while a process of the group is still running (zombies do not count)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    _reap_children(pgid)
    try:
        import psutil
    except ImportError:  # cannot tell zombies apart: trust the signal
        return True
    for p in psutil.process_iter(["status"]):
        try:
            if p.info["status"] != psutil.STATUS_ZOMBIE and os.getpgid(p.pid) == pgid:
                return True
        except (psutil.Error, OSError):
            continue
    return False


def stop_groups(pgids: Iterable[int], grace_s: float, kill_wait_s: float = 3.0, poll_s: float = 0.05) -> None:
    """SIGTERM every group, wait up to `grace_s` for them to exit, then SIGKILL what is left (bounded wait)."""
    groups = {g for g in pgids if g}
    for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, kill_wait_s)):
        for g in groups:
            try:
                os.killpg(g, sig)
            except (ProcessLookupError, PermissionError):
                pass
        deadline = time.monotonic() + wait
        while any(group_alive(g) for g in groups):
            if time.monotonic() >= deadline:
                break
            time.sleep(poll_s)
        else:
            return
