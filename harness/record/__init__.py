"""Record stage: the run folder and its files."""

from __future__ import annotations

import time
from pathlib import Path

from harness.record.schema import RunRecord, Summary
from harness.record.store import RUN_FILE, SUMMARY_FILE, load_json, new_run_dir, owner_info, upgrade, write_json


class Recorder:
    """Owns one run folder; `save()` after every stage so a crash leaves what was measured."""

    def __init__(self, run_dir: Path, record: RunRecord):
        self.dir = run_dir
        self.record = record

    @classmethod
    def create(cls, results_dir: Path, scenario_name: str, **fields) -> Recorder:
        d = new_run_dir(results_dir, scenario_name)
        rec = RunRecord(run_id=d.name, owner=owner_info(), **fields)
        rec.timeline.created_at = time.time()
        r = cls(d, rec)
        r.save()
        return r

    def save(self) -> None:
        write_json(self.dir / RUN_FILE, self.record.model_dump(mode="json"))

    def write_summary(self, summary: Summary) -> None:
        write_json(self.dir / SUMMARY_FILE, summary.model_dump(mode="json"))


def read_run(run_dir: Path) -> tuple[dict, dict | None]:
    """(run.json, summary.json or None), upgraded to the current schema."""
    run = upgrade(load_json(run_dir / RUN_FILE))
    sp = run_dir / SUMMARY_FILE
    return run, (upgrade(load_json(sp)) if sp.exists() else None)
