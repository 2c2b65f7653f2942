"""Record stage: one new folder per run, files written as each stage finishes, atomically."""

from __future__ import annotations

import json
import math
import os
import re
import secrets
import socket
import time
from pathlib import Path
from typing import Any

from harness.errors import HarnessError

SCHEMA_VERSION = 2  # 2: every field declared (extra=forbid); 1 → 2 in legacy.upgrade_v1
RUN_FILE = "run.json"
SUMMARY_FILE = "summary.json"


def _clean(o: Any) -> Any:
    """JSON has no NaN/Infinity: write null instead."""
    if isinstance(o, float) and (math.isnan(o) or math.isinf(o)):
        return None
    if isinstance(o, dict):
        return {str(k): _clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    return o


def write_text(path: Path, text: str) -> None:
    """Atomic and durable: a temp file in the same folder, fsync, rename over the target, fsync the folder.
    Readers (and a machine that loses power) see the old file or the new one, never half of one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:  # a failed (or interrupted) write leaves the old file and no temp file
        tmp.unlink(missing_ok=True)
        raise
    try:
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass  # some filesystems cannot fsync a directory


def write_json(path: Path, data: Any) -> None:
    write_text(path, json.dumps(_clean(data), indent=2, default=str) + "\n")


def owner_info() -> dict:
    """Who writes a run folder: lets a reader tell a live run from one whose process died."""
    return {"pid": os.getpid(), "host": socket.gethostname()}


def run_state(run: dict) -> tuple[str, str]:
    """(state, explanation) of a run.json: its status, or `abandoned` for a `running` record nobody writes any more."""
    status = run.get("status") or "unknown"
    if status != "running":
        return status, ""
    owner = run.get("owner") or {}
    pid, host = owner.get("pid"), owner.get("host")
    if not pid or host != socket.gethostname():
        return "running", f"status is running (written by pid {pid} on {host}); cannot check that process from here"
    if _alive(int(pid)):
        return "running", f"the run is still in progress (pid {pid})"
    return "abandoned", (
        f"status is running but its process (pid {pid}) is gone: the run died before finishing "
        "(killed, out of memory, power loss); the files here are what it measured until then"
    )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def new_run_dir(results_dir: Path, scenario_name: str) -> Path:
    """Create results_dir/<scenario>-<utc time>-<random>/; never reuses a folder."""
    try:
        results_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise HarnessError(
            f"cannot create results dir {results_dir}: {e.strerror}", fix="pass --results-dir to a writable folder"
        ) from None
    if not os.access(results_dir, os.W_OK):
        raise HarnessError(f"results dir {results_dir} is not writable", fix="pass --results-dir to a writable folder")
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", scenario_name)
    for _ in range(10):
        run_id = f"{safe}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{secrets.token_hex(2)}"
        d = results_dir / run_id
        try:
            d.mkdir()
            return d
        except FileExistsError:
            continue
        except OSError as e:  # e.g. read-only file system, or no permission despite os.access (ACLs, root squash)
            raise HarnessError(
                f"cannot create a run folder in {results_dir}: {e.strerror}",
                fix="pass --results-dir to a writable folder",
            ) from None
    raise HarnessError(f"could not create a new run folder in {results_dir}")


def load_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def upgrade(record: dict) -> dict:
    """Bring an older run.json/summary.json up to SCHEMA_VERSION (layouts: harness/record/legacy.py)."""
    v = record.get("schema_version", 0)
    if v > SCHEMA_VERSION:
        raise HarnessError(
            f"record has schema_version {v}, newer than this harness understands ({SCHEMA_VERSION})",
            fix="upgrade the harness (pip install -U harness)",
        )
    from harness.record import legacy

    if v < 1:
        record = legacy.upgrade_v0(record)
    if v < 2:
        record = legacy.upgrade_v1(record)
    return record
