"""The one reader of run folders, repeat groups and their files. Nothing a damaged or foreign file holds gets past
it as anything but a `RecordError` (a `HarnessError`: exit 2) naming the file, what is wrong with it and the fix.

Every command that reads a finished run (`compare`, `report`, `history`, `store sync`, `matrix`, `sweep`,
`--baseline`) reads through here; listings catch `RecordError` per folder, warn in one line and go on.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness.errors import HarnessError

RUN_FILE = "run.json"
SUMMARY_FILE = "summary.json"
SAMPLES_FILE = "samples.parquet"
GROUP_FILE = "repeat.json"
MAX_JSON_DEPTH = 64  # a record nests ~6 levels; deeper is not ours (and would overflow recursive readers)
MAX_JSON_BYTES = 256 * 1024 * 1024
# Python-level failures a malformed file can provoke in json, pydantic, pandas/pyarrow or the upgrade steps
_READ_ERRORS = (ValueError, TypeError, KeyError, AttributeError, IndexError, RecursionError, OverflowError, OSError)
_FIX_RECORD = "give a folder `harness run` wrote (its files unedited), or re-run the scenario"


class RecordError(HarnessError):
    """A file of a run folder or repeat group is missing, unreadable or not what `harness run` writes."""


def bad(path: Path, what: str, fix: str = _FIX_RECORD) -> RecordError:
    return RecordError(f"{path}: {what}", fix=fix)


def _depth(o: Any) -> int:
    """Nesting depth of a JSON value, without recursion."""
    deepest, stack = 0, [(o, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, (dict, list)):
            deepest = max(deepest, d)
            if d > MAX_JSON_DEPTH:
                return d
            stack.extend((x, d + 1) for x in (v.values() if isinstance(v, dict) else v))
    return deepest


def read_json_object(path: Path) -> dict:
    """A JSON file that must hold one object (run.json, summary.json, repeat.json)."""
    path = Path(path)
    try:
        if not path.is_file():
            raise bad(path, "missing or not a regular file" if not path.exists() else "not a regular file")
        if path.stat().st_size > MAX_JSON_BYTES:
            raise bad(path, f"larger than {MAX_JSON_BYTES // 2**20} MiB: not a record")
        doc = json.loads(path.read_text(encoding="utf-8"))
    except RecordError:
        raise
    except RecursionError:
        raise bad(path, f"JSON nested deeper than {MAX_JSON_DEPTH} levels: not a record") from None
    except UnicodeDecodeError as e:
        raise bad(path, f"not UTF-8 text ({e.reason} at byte {e.start})") from None
    except json.JSONDecodeError as e:
        raise bad(path, f"not valid JSON (line {e.lineno} column {e.colno}: {e.msg})") from None
    except OSError as e:
        raise bad(path, f"cannot read: {e.strerror or e}", fix="check the file's permissions") from None
    if not isinstance(doc, dict):
        raise bad(path, f"holds a JSON {type(doc).__name__.replace('list', 'array')}, not an object")
    if _depth(doc) > MAX_JSON_DEPTH:
        raise bad(path, f"JSON nested deeper than {MAX_JSON_DEPTH} levels: not a record")
    return doc


def schema_version(doc: dict, path: Path) -> int:
    """The record's integer schema_version (0 when absent: the first layout), checked before any upgrade."""
    from harness.record.store import SCHEMA_VERSION

    v = doc.get("schema_version", 0)
    if isinstance(v, bool) or not isinstance(v, int):
        raise bad(path, f"schema_version is {json.dumps(v)}, not an integer")
    if v < 0:
        raise bad(path, f"schema_version is {v}, below 0")
    if v > SCHEMA_VERSION:
        raise RecordError(
            f"{path}: schema_version {v}, newer than this harness understands ({SCHEMA_VERSION})",
            fix="upgrade the harness (pip install -U harness) to read it",
        )
    return v


def read_doc(path: Path, model: Any) -> Any:
    """run.json or summary.json: parsed, version-checked, upgraded and validated against its model."""
    from harness.record.store import upgrade

    doc = read_json_object(path)
    schema_version(doc, path)
    try:
        return model.model_validate(upgrade(doc))
    except HarnessError as e:
        raise bad(path, e.message, e.fix or _FIX_RECORD) from None
    except _READ_ERRORS as e:
        raise bad(path, f"not a valid {path.name}: {_first_line(e)}") from None


def _first_line(e: BaseException) -> str:
    """pydantic lists every problem; one or two lines name the field."""
    lines = [ln for ln in str(e).splitlines() if ln.strip()]
    return "; ".join(lines[:3]) if lines else type(e).__name__


def read_record(run_dir: Path):
    """(RunRecord, Summary or None) of a run folder, upgraded to the current schema and validated."""
    from harness.record.schema import RunRecord, Summary

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        what = f"not a folder (no {RUN_FILE} here)" if run_dir.exists() else f"no such folder (no {RUN_FILE} here)"
        raise bad(run_dir, what, fix="give a run folder `harness run` created (results/<run-id>)")
    if not (run_dir / RUN_FILE).exists():
        raise bad(run_dir, f"no {RUN_FILE} here", fix="give a run folder `harness run` created (results/<run-id>)")
    run = read_doc(run_dir / RUN_FILE, RunRecord)
    sp = run_dir / SUMMARY_FILE
    return run, (read_doc(sp, Summary) if sp.exists() else None)


# after upgrade_samples: every layout the harness ever wrote has these, and readers of samples use them
_NEEDED = ("t_start_s", "ttft_ms", "e2e_ms", "itl_ms", "output_tokens", "ok")
_LATENCY = ("ttft_ms", "e2e_ms", "tpot_ms", "itl_mean_ms", "t_start_s", "output_tokens")


def read_samples(path: Path, columns: list[str] | None = None) -> pd.DataFrame | None:
    """samples.parquet upgraded to the current columns and checked; None when the file is absent."""
    from harness.record.legacy import upgrade_samples

    path = Path(path)
    if not path.exists():
        return None
    if not path.is_file():
        raise bad(path, "not a regular file")
    try:
        df = upgrade_samples(pd.read_parquet(path, columns=columns))
    except _READ_ERRORS as e:  # pyarrow's errors derive from these
        raise bad(path, f"not a samples file: {_first_line(e)}") from None
    missing = [c for c in _NEEDED if c not in df.columns and (columns is None or c in columns)]
    if missing:
        raise bad(path, f"not a samples file: no column {', '.join(missing)} (has {', '.join(map(str, df.columns))})")
    for c in [c for c in _LATENCY if c in df.columns]:
        if not pd.api.types.is_numeric_dtype(df[c]):
            raise bad(path, f"column {c} holds {df[c].dtype}, not numbers")
    for c in [c for c in ("itl_ms", "chunk_gap_ms") if c in df.columns]:  # per-request lists of gaps
        if not df[c].map(lambda x: x is None or isinstance(x, (list, np.ndarray))).all():
            raise bad(path, f"column {c} holds {df[c].dtype} values, not a list of gaps per request")
    ok = df[df["ok"].astype(bool)] if "ok" in df.columns else df
    for c in ("t_start_s", "e2e_ms"):  # every finished request has both
        if c in ok.columns and len(ok) and not np.isfinite(ok[c].to_numpy(dtype=float)).any():
            raise bad(path, f"column {c} has no finite value among {len(ok)} successful requests")
    return df


def read_group(path: Path) -> dict:
    """repeat.json of a repeat group: an object whose `runs` is a list of objects."""
    doc = read_json_object(Path(path) / GROUP_FILE)
    runs = doc.get("runs", [])
    if not isinstance(runs, list) or not all(isinstance(r, dict) for r in runs):
        raise bad(Path(path) / GROUP_FILE, "`runs` is not a list of objects")
    for r in runs:
        if not isinstance(r.get("run_dir", ""), (str, type(None))):
            raise bad(Path(path) / GROUP_FILE, f"`run_dir` {r.get('run_dir')!r} is not a string")
    return doc
