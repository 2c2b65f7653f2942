"""Artifacts CI systems show: the run's Markdown where the CI displays it, when its variable is set.

GitHub Actions: $GITHUB_STEP_SUMMARY (a file the job appends Markdown to; shown on the run's page).
"""

from __future__ import annotations

import os
from pathlib import Path

SUMMARY_VARS = ("GITHUB_STEP_SUMMARY",)


def step_summary(report_md: str, gate: dict | None = None, store: dict | None = None) -> str:
    """The Markdown appended for one run (pure): its report, the baseline gate's outcome, where it was indexed."""
    parts = [report_md.rstrip(), ""]
    if gate is not None:
        from harness.report.compare_md import render_compare_markdown

        b = gate.get("baseline") or {}
        parts += [
            f"## Baseline gate: {'REGRESSION' if gate['exit_code'] else 'no regression'} "
            f"(baseline `{b.get('run_id')}`)",
            "",
            render_compare_markdown(gate).rstrip(),
            "",
        ]
    if store is not None:
        parts.append(
            f"Results store: `{store.get('store')}` — "
            + (
                "indexed."
                if store.get("indexed")
                else f"**not indexed** ({store.get('error')}); `harness store sync` adds it later."
            )
        )
    return "\n".join(parts) + "\n"


def publish(text: str) -> list[str]:
    """Append to every CI summary file whose variable is set; returns the paths written."""
    out = []
    for var in SUMMARY_VARS:
        path = os.environ.get(var)
        if path:
            try:
                with open(Path(path), "a", encoding="utf-8") as f:
                    f.write(text + "\n")
                out.append(path)
            except OSError:
                pass
    return out
