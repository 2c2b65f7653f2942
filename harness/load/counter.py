"""A cross-process counter for local Locust processes, one syscall per increment (no locks, no IPC)."""

from __future__ import annotations

import os
from pathlib import Path


class AppendCounter:
    """Each `bump` appends one byte. O_APPEND writes are atomic and leave the fd offset right after *our*
    byte, so the returned offset is a unique, gap-free ticket across all processes sharing the file;
    the file size is the total count."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._fd: int | None = None
        self._pid = 0

    def bump(self) -> int:
        if self._fd is None or self._pid != os.getpid():  # re-open after fork: the fd offset would be shared
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            self._pid = os.getpid()
        os.write(self._fd, b".")
        return os.lseek(self._fd, 0, os.SEEK_CUR)

    def value(self) -> int:
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0
