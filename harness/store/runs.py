"""Store-backed run references for `compare`, `history` and `run --baseline`.

A reference is a run folder, a run id in the store, or a selector (`latest-pass[:key=value...]`). A stored run
whose folder is on this machine is used as is (samples included: significance tests run); one from another
machine is materialised from its stored run.json/summary.json into a temporary folder (compared without
significance tests, which `compare` says in its warnings).
"""

from __future__ import annotations

import json
import socket
import tempfile
import time
from pathlib import Path

from harness.errors import HarnessError
from harness.store import Selector, Store


def folder_for(row: dict, scratch: Path) -> Path:
    """The run's folder here, or a stand-in written from the stored documents."""
    p = Path(row.get("path") or "")
    if p.is_dir() and (p / "run.json").is_file() and (row.get("host") in (None, socket.gethostname()) or p.exists()):
        return p
    if not row.get("run_doc") or not row.get("summary_doc"):
        raise HarnessError(
            f"stored run {row['run_id']}: its folder {row.get('host')}:{p} is not here and the store "
            "holds no summary for it",
            fix="copy the folder here and pass its path",
        )
    d = scratch / row["run_id"]
    d.mkdir(parents=True, exist_ok=True)
    (d / "run.json").write_text(json.dumps(row["run_doc"]))
    (d / "summary.json").write_text(json.dumps(row["summary_doc"]))
    return d


def resolve(ref: str, store: Store | None, scenario: str | None, scratch: Path) -> Path:
    """A compare argument → a folder."""
    p = Path(ref)
    if p.is_dir():
        return p
    if store is None:
        raise HarnessError(
            f"{ref}: no such run folder (and no results store to look it up in)",
            fix="give run folders, or a run id / latest-pass selector with a store (--store URL)",
        )
    sel = Selector.parse(ref)
    row = store.find(sel, scenario)
    if row is not None and sel.kind == "id":
        row = store.get(row["run_id"])
    if row is None:
        where = f" of scenario {scenario!r}" if scenario and sel.kind != "id" else ""
        raise HarnessError(
            f"{ref}: no such run folder, and no stored run{where} matches it in {store.shown}",
            fix="`harness history --store URL` lists the stored runs; run ids are folder names",
        )
    return folder_for(row, scratch)


def scratch_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="harness-stored-"))


def history_runs(store: Store, scenario: str | None, labels: dict[str, str], limit: int = 500) -> list[dict]:
    """Stored runs as `harness.commands.history` rows (oldest first), across every machine that wrote to the store."""
    from harness.compare.history import METRICS

    rows = store.query(scenario, labels, limit=100_000)
    rows = [r for r in rows if r.get("verdict") is not None][-limit:]
    out = []
    for r in rows:
        s, user = r.get("stats") or {}, {k: v for k, v in (r.get("labels") or {}).items()}
        shown = {k: v for k, v in user.items() if k not in ("commit", "runner", "branch")}
        out.append(
            {
                "run_id": r["run_id"],
                "dir": r.get("path"),
                "location": f"{r.get('host')}:{r.get('path')}",
                "scenario": r["scenario"],
                "created_at": r["created_at"],
                "when": time.strftime("%Y-%m-%d %H:%M", time.gmtime(r["created_at"])),
                "when_iso": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(r["created_at"])),
                "verdict": r["verdict"],
                "status": r["status"],
                "labels": user,
                "label": " ".join(f"{k}={v}" for k, v in shown.items()) or r.get("ray_version") or r["run_id"][-4:],
                "ray": r.get("ray_version"),
                "stats": {k: _stat(s, path) for k, (path, _, _) in METRICS.items()},
                "load_failure": s.get("load_failure"),
            }
        )
    return out


_STAT_OF = {
    ("client", "ttft_ms", "p95"): "ttft_p95_ms",
    ("client", "itl_ms", "p95"): "itl_p95_ms",
    ("client", "e2e_ms", "p95"): "e2e_p95_ms",
    ("client", "ttft_ms", "p50"): "ttft_p50_ms",
    ("client", "error_rate"): "error_rate",
    ("client", "output_tokens_per_s"): "output_tokens_per_s",
}


def _stat(stats: dict, path: tuple) -> float | None:
    return stats.get(_STAT_OF.get(tuple(path), ""))


def resolve_refs(refs: list[str], store_url: str | None, results_dir: Path) -> list[Path]:
    """compare's arguments → folders. The store is opened only when an argument is not a folder."""
    from harness.store import open_read_only

    if all(Path(r).is_dir() for r in refs):
        return [Path(r) for r in refs]
    store, _ = open_read_only(store_url, results_dir)  # compare writes nothing
    scenario = None
    for r in refs:  # selectors pick runs of the scenario the given folders ran
        if Path(r).is_dir() and (Path(r) / "summary.json").is_file():
            from harness.record.read import read_json_object

            scenario = read_json_object(Path(r) / "summary.json").get("scenario")  # malformed: exit 2 naming it
            break
    scratch = scratch_dir()
    try:
        return [resolve(r, store, scenario, scratch) for r in refs]
    finally:
        if store is not None:
            store.close()
