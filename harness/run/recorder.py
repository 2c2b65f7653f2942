"""Record stage: one method per stage result, each saving run.json at once (a crash leaves what was measured).

The record's layout is harness/record/schema.py; this module is the only writer of run.json and summary.json.
Adding a section to run.json: declare it on `RunRecord`, then set it here in the `record_*` method of the stage
that produces it (the pipeline calls that method right after the stage).
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pandas as pd

from harness.deploy import Deployment
from harness.load.runner import LoadResult
from harness.metrics.scrape import ScrapeResult
from harness.record.schema import CacheReset, Correctness, Owner, RunRecord, RunStatus, Summary
from harness.record.store import RUN_FILE, SUMMARY_FILE, new_run_dir, owner_info, write_json
from harness.stack import Stack

SERIES_FILE = "series.parquet"


class Recorder:
    """Owns one run folder and its typed record."""

    def __init__(self, run_dir: Path, record: RunRecord):
        self.dir = run_dir
        self.record = record

    @classmethod
    def create(cls, results_dir: Path, scenario_name: str, **fields: Any) -> Recorder:
        """A new run folder with a `running` record (provenance fields: see `RunRecord`)."""
        d = new_run_dir(results_dir, scenario_name)
        rec = RunRecord(run_id=d.name, owner=Owner(**owner_info()), **fields)
        rec.timeline.created_at = time.time()
        r = cls(d, rec)
        r.save()
        return r

    def save(self) -> None:
        write_json(self.dir / RUN_FILE, self.record.model_dump(mode="json"))

    # ---- what every stage leaves, called by RunContext ----
    def record_stage(self, name: str, seconds: float, error: str | None = None) -> None:
        self.record.stage_durations_s[f"{name}_s"] = round(seconds, 2)
        if error is not None:
            self.record.stage_errors[name] = error
        self.save()

    # ---- one method per stage result, called by the pipeline ----
    def record_stack(self, stack: Stack) -> None:
        self.record.stack = stack.to_dict()
        if not stack.targets_pending:  # a fresh stack is ready once Prometheus scrapes Ray (recorded again then)
            self.record.timeline.stack_ready_at = time.time()
        self.save()

    def record_deploy(self, dep: Deployment) -> None:
        self.record.deployment = dep.to_dict()
        self.record.timeline.deployed_at = time.time()
        self.save()

    def record_cache_reset(self, reset: CacheReset) -> None:
        self.record.cache_reset = reset
        self.save()

    def record_correctness(self, probes: Correctness) -> None:
        self.record.correctness = probes
        self.save()

    def record_environment(self, environment: dict[str, Any]) -> None:
        self.record.environment = environment
        self.save()

    def record_load(self, load: LoadResult) -> None:
        self.record.load = asdict(load)
        t = self.record.timeline
        t.load_started_at, t.warmup_end_at, t.load_ended_at = load.started_at, load.warmup_end, load.ended_at
        self.save()

    def record_scrape(self, scraped: ScrapeResult, node_stats: dict[str, Any]) -> None:
        """The scrape's section and its time series (series.parquet) as soon as the stage ends."""
        if scraped.rows:
            pd.DataFrame(scraped.rows).to_parquet(self.dir / SERIES_FILE, index=False)
        self.record.scrape = scraped.to_dict()
        self.record.node_stats = node_stats
        self.record.timeline.scrape_ended_at = time.time()
        self.save()

    def record_evaluation(
        self, summary: Summary, alerts: list[dict[str, Any]] | None, faults: list[dict[str, Any]]
    ) -> None:
        """summary.json, and what the evaluate stage gathered from the monitors beside the load."""
        write_json(self.dir / SUMMARY_FILE, summary.model_dump(mode="json"))
        self.record.files[SUMMARY_FILE] = "summary"
        if alerts is not None:
            self.record.alerts = alerts
        if faults:
            self.record.faults = faults
        self.save()

    def record_reports(self, written: list[str]) -> None:
        """The caller saves (the report stage's runner, or the fallback in RunContext.__exit__)."""
        self.record.files.update({name: "report" for name in written})

    # ---- the end ----
    def finish(self, status: RunStatus, error: str | None = None) -> None:
        """Final status (the record is complete once it is not `running`); the caller saves."""
        r = self.record
        r.status = status
        if error is not None:
            r.error = error
        r.timeline.finished_at = time.time()
