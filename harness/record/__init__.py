"""Record: the run folder's files, their schema (harness/record/schema.py) and the upgrade of older layouts.

The writer is `harness.run.recorder.Recorder` (it knows every stage's result type); this package only reads,
through `harness.record.read` (the one reader: a malformed file is a `RecordError`, never a traceback)."""

from __future__ import annotations

from pathlib import Path

from harness.record.read import RecordError, read_record
from harness.record.schema import RunRecord, Summary

__all__ = ["RecordError", "RunRecord", "Summary", "read_record", "read_run"]


def read_run(run_dir: Path) -> tuple[dict, dict | None]:
    """`read_record` as JSON-shaped dicts (for code that reads a record as data, e.g. the results store)."""
    run, summary = read_record(run_dir)
    return run.model_dump(mode="json"), (summary.model_dump(mode="json") if summary is not None else None)
