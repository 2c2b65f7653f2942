"""`harness run SCENARIO --baseline latest-pass[:key=value...]`: gate a finished run against a stored baseline.

The baseline is chosen before the run starts (so the new run can never be its own baseline), the comparison is
`harness compare BASE NEW` with its rules and significance, and its reports land in the new run's folder.
"""

from __future__ import annotations

from pathlib import Path

from harness.errors import HarnessError
from harness.store import Selector, Store
from harness.store.runs import folder_for, scratch_dir

FILES = ("baseline-compare.md", "baseline-compare.html", "baseline-compare.json")


def choose(store: Store | None, selector: str, scenario: str) -> dict | None:
    """The stored baseline row (with documents), or None when nothing matches yet."""
    if store is None:
        raise HarnessError("--baseline needs a results store", fix="drop --store none, or give --store URL")
    sel = Selector.parse(selector)
    row = store.find(sel, scenario)
    if row is not None and sel.kind == "id":
        row = store.get(row["run_id"])
    if row is None and sel.kind == "id":  # a run id names one run: its absence is a typo, not "no baseline yet"
        raise HarnessError(
            f"--baseline {selector}: no stored run has this id in {store.shown}",
            fix="`harness history` lists the stored runs (run ids are folder names); or use latest-pass",
        )
    return row


def compare_with(baseline: dict, run_dir: Path, fail_on: list[str]) -> dict:
    """compare_runs([baseline, new]) with the reports written into the new run's folder."""
    from harness.compare import compare_runs
    from harness.record.store import write_json, write_text
    from harness.report.compare_html import render_compare_html
    from harness.report.compare_md import render_compare_markdown

    base_dir = folder_for(baseline, scratch_dir())
    result = compare_runs([base_dir, Path(run_dir)], fail_on=fail_on)
    result["baseline"] = {
        "run_id": baseline["run_id"],
        "host": baseline.get("host"),
        "path": baseline.get("path"),
        "labels": baseline.get("labels") or {},
    }
    write_text(Path(run_dir) / FILES[0], render_compare_markdown(result))
    write_text(Path(run_dir) / FILES[1], render_compare_html(result))
    write_json(Path(run_dir) / FILES[2], result)
    return result
