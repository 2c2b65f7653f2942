"""Record: the run folder's files, their schema (harness/record/schema.py) and the upgrade of older layouts.

The writer is `harness.run.recorder.Recorder` (it knows every stage's result type); this package only reads."""

from __future__ import annotations

from pathlib import Path

from harness.record.schema import RunRecord, Summary
from harness.record.store import RUN_FILE, SUMMARY_FILE, load_json, upgrade


def read_record(run_dir: Path) -> tuple[RunRecord, Summary | None]:
    """(run.json, summary.json or None) of a run folder, upgraded to the current schema and validated."""
    run = RunRecord.model_validate(upgrade(load_json(run_dir / RUN_FILE)))
    sp = run_dir / SUMMARY_FILE
    return run, (Summary.model_validate(upgrade(load_json(sp))) if sp.exists() else None)


def read_run(run_dir: Path) -> tuple[dict, dict | None]:
    """`read_record` as JSON-shaped dicts (for code that reads a record as data, e.g. the results store)."""
    run, summary = read_record(run_dir)
    return run.model_dump(mode="json"), (summary.model_dump(mode="json") if summary is not None else None)
