"""Record stage: one new folder per run, files written as each stage finishes, atomically."""

from __future__ import annotations

import json
import math
import os
import re
import secrets
import time
from pathlib import Path
from typing import Any

from harness.errors import HarnessError

SCHEMA_VERSION = 1
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


def write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(_clean(data), indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)  # readers never see a half-written file


def write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def new_run_dir(results_dir: Path, scenario_name: str) -> Path:
    """Create results_dir/<scenario>-<utc time>-<random>/; never reuses a folder."""
    try:
        results_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise HarnessError(f"cannot create results dir {results_dir}: {e.strerror}", fix="pass --results-dir to a writable folder") from None
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
    raise HarnessError(f"could not create a new run folder in {results_dir}")


def load_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def upgrade(record: dict) -> dict:
    """Bring an older run.json/summary.json up to SCHEMA_VERSION (no older versions exist yet)."""
    v = record.get("schema_version", 0)
    if v > SCHEMA_VERSION:
        raise HarnessError(
            f"record has schema_version {v}, newer than this harness understands ({SCHEMA_VERSION})",
            fix="upgrade the harness (pip install -U harness)",
        )
    if v < 1:
        record = {**record, "schema_version": 1}
    return record
