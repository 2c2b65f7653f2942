"""`harness history`: key statistics across runs, from the store (default: RESULTS_DIR/harness.db) or a folder scan."""

from __future__ import annotations

from pathlib import Path

from harness.compare.history import build, collect
from harness.errors import HarnessError
from harness.store.runs import history_runs


def stored_history(
    store_url: str | None, results_dir: Path, scenario: str | None, labels: dict[str, str], **detect
) -> dict:
    """`harness history` from the store. The default store (RESULTS_DIR/harness.db) first indexes that folder's runs,
    so folders from before the store existed (or from a copy) show up; a shared store is only read."""
    from harness.store import Store, is_default, resolve_url, sync

    url = resolve_url(store_url, results_dir)
    if url is None:  # store off: the folder scan
        runs = collect(results_dir, scenario)
        runs = [r for r in runs if all(r["labels"].get(k) == v for k, v in labels.items())]
        return build(runs, str(results_dir), scenario, **detect)
    if is_default(url, results_dir) and not Path(results_dir).is_dir():
        raise HarnessError(
            f"{results_dir}: no such folder",
            fix="pass --results-dir where `harness run` wrote its runs, or --store URL of a shared store",
        )
    store = Store(url)  # the resolved URL (not None: the store is on)
    try:
        if is_default(url, results_dir):
            sync(results_dir, store)
        runs = history_runs(store, scenario, labels)
        hist = build(runs, store.shown, scenario, **detect)
        hist["store"] = store.shown
        return hist
    finally:
        store.close()
