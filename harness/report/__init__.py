"""Report stage: render every output from the record. Renderers are pure; this module only reads the record's
data files (samples.parquet, series.parquet) and writes the outputs."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from harness.record.schema import RunRecord, Summary
from harness.record.store import write_text
from harness.report.html import render_html
from harness.report.junit import render_junit
from harness.report.markdown import render_markdown

SAMPLES_FILE = "samples.parquet"
SERIES_FILE = "series.parquet"


def _read(path: Path, columns: list[str] | None = None) -> pd.DataFrame | None:
    try:
        return pd.read_parquet(path, columns=columns) if path.exists() else None
    except Exception:  # noqa: BLE001 — a damaged data file must not stop the text reports
        return None


def _read_samples(path: Path) -> pd.DataFrame | None:
    from harness.errors import HarnessError
    from harness.record.read import read_samples

    try:
        return read_samples(path)  # upgraded to the current columns and checked, as every reader of samples
    except HarnessError:  # a damaged samples file must not stop the text reports (`report` names it first)
        return None


def load_data(run_dir: Path) -> tuple[pd.DataFrame | None, pd.DataFrame | None]:
    """(samples, series) of a run folder, None where missing or damaged."""
    return _read_samples(run_dir / SAMPLES_FILE), _read(run_dir / SERIES_FILE)


def render_all(
    run: RunRecord,
    summary: Summary | None,
    samples: pd.DataFrame | None = None,
    series: pd.DataFrame | None = None,
) -> dict[str, str]:
    """Every report as {file name: text} (pure). report.md and junit.xml read the typed record; report.html
    reads its JSON form (the same data, as the file has it)."""
    summary_d = summary.model_dump(mode="json") if summary is not None else None
    return {
        "report.md": render_markdown(run, summary),
        "junit.xml": render_junit(run, summary),
        "report.html": render_html(run.model_dump(mode="json"), summary_d, samples, series),
    }


def write_reports(run_dir: Path, run: RunRecord, summary: Summary | None) -> list[str]:
    """Render every report of a run folder from its typed record; returns the files written."""
    samples, series = load_data(run_dir)
    written = []
    for name, text in render_all(run, summary, samples, series).items():
        write_text(run_dir / name, text)
        written.append(name)
    return written
