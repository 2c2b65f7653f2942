"""Report stage: render every output from the record. Renderers are pure; this module only writes files."""

from __future__ import annotations

from pathlib import Path

from harness.record.store import write_text
from harness.report.junit import render_junit
from harness.report.markdown import render_markdown

RENDERERS = {"report.md": render_markdown, "junit.xml": render_junit}


def write_reports(run_dir: Path, run: dict, summary: dict | None) -> list[str]:
    written = []
    for name, render in RENDERERS.items():
        write_text(run_dir / name, render(run, summary))
        written.append(name)
    return written
