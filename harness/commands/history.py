"""`harness history`: key statistics across runs, from the store (default: RESULTS_DIR/harness.db) or a folder scan."""

from __future__ import annotations

from pathlib import Path

from harness.compare.history import build, collect
from harness.errors import HarnessError
from harness.store.runs import history_runs


def stored_history(
    store_url: str | None, results_dir: Path, scenario: str | None, labels: dict[str, str], **detect
) -> dict:
    """`harness history` from the store. The default store (RESULTS_DIR/harness.db) indexes that folder's runs, so
    the folder itself is read (into an index in memory: history writes nothing); a shared store is only read.
    `skipped` lists the folders whose record is malformed ("folder: what is wrong"), left out of the listing."""
    from harness.store import is_default, open_read_only, resolve_url

    url = resolve_url(store_url, results_dir)
    skipped: list[str] = []
    if url is None:  # store off: the folder scan
        runs = collect(results_dir, scenario, skipped=skipped)
        runs = [r for r in runs if all(r["labels"].get(k) == v for k, v in labels.items())]
        return {**build(runs, str(results_dir), scenario, **detect), "skipped": skipped}
    if is_default(url, results_dir) and not Path(results_dir).is_dir():
        raise HarnessError(
            f"{results_dir}: no such folder",
            fix="pass --results-dir where `harness run` wrote its runs, or --store URL of a shared store",
        )
    store, skipped = open_read_only(store_url, results_dir)
    assert store is not None, "the store is on and its folder exists"
    try:
        runs = history_runs(store, scenario, labels)
        return {**build(runs, store.shown, scenario, **detect), "store": store.shown, "skipped": skipped}
    finally:
        store.close()
