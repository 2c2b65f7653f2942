"""`harness history`: key statistics and verdicts across stored runs, flagging the first run where one moved.

A statistic "moved" at run i when it differs from the median of the previous `window` runs by more than
both `rel_threshold` (relative) and `mad_sigmas` robust standard deviations (1.4826 x MAD) of those runs:
a jump beyond the run-to-run noise seen so far. Needs `min_history` earlier runs.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from harness.defaults import HISTORY_THRESHOLD, HISTORY_WINDOW
from harness.errors import HarnessError
from harness.record.health import load_failure

METRICS = {  # key -> (how to read it from summary.json, unit, worse direction)
    "ttft.p95": (("client", "ttft_ms", "p95"), "ms", "up"),
    "itl.p95": (("client", "itl_ms", "p95"), "ms", "up"),
    "e2e.p95": (("client", "e2e_ms", "p95"), "ms", "up"),
    "ttft.p50": (("client", "ttft_ms", "p50"), "ms", "up"),
    "error_rate": (("client", "error_rate"), "fraction", "up"),
    "throughput": (("client", "output_tokens_per_s"), "tokens/s", "down"),
}


def _get(d: dict, path: tuple) -> float | None:
    v: Any = d
    for k in path:
        v = (v or {}).get(k) if isinstance(v, dict) else None
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def collect(
    results_dir: Path, scenario: str | None = None, limit: int = 500, skipped: list[str] | None = None
) -> list[dict]:
    """Runs with a summary, oldest first (by creation time). A malformed folder is skipped, not fatal: its
    "folder: what is wrong" line goes to `skipped`."""
    from harness.record import RecordError, read_run

    if not results_dir.is_dir():
        raise HarnessError(
            f"{results_dir}: no such folder", fix="pass --results-dir where `harness run` wrote its runs"
        )
    out: list[dict[str, Any]] = []
    for d in sorted(p for p in results_dir.iterdir() if (p / "run.json").is_file()):
        try:
            run, summary = read_run(d)
        except RecordError as e:
            if skipped is not None:
                skipped.append(e.message)
            continue
        if summary is None or (scenario and summary.get("scenario") != scenario):
            continue
        created = (run.get("timeline") or {}).get("created_at") or (d / "run.json").stat().st_mtime
        labels = run.get("labels") or {}
        out.append(
            {
                "run_id": run.get("run_id") or d.name,
                "dir": str(d),
                "scenario": summary.get("scenario"),
                "created_at": created,
                "when": time.strftime("%Y-%m-%d %H:%M", time.gmtime(created)),
                "when_iso": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(created)),
                "verdict": summary.get("verdict"),
                "status": summary.get("status"),
                "labels": labels,
                "label": " ".join(f"{k}={v}" for k, v in labels.items())
                or (run.get("environment") or {}).get("ray")
                or d.name[-4:],
                "ray": (run.get("environment") or {}).get("ray"),
                "stats": {k: _get(summary, path) for k, (path, _, _) in METRICS.items()},
                "load_failure": load_failure(summary),  # its stats are shown but are no baseline and never "moved"
            }
        )
    out.sort(key=lambda r: r["created_at"])
    return out[-limit:]


def change_points(
    values: list[float | None],
    *,
    window: int = HISTORY_WINDOW,
    min_history: int = 3,
    rel_threshold: float = HISTORY_THRESHOLD,
    mad_sigmas: float = 3.0,
    abs_floor: float = 0.0,
) -> list[tuple[int, float, float]]:
    """(index, value, baseline median) of every run that moved beyond noise vs its previous `window` runs."""
    out = []
    for i, v in enumerate(values):
        prev = [x for x in values[max(0, i - window) : i] if x is not None]
        if v is None or len(prev) < min_history:
            continue
        med = float(np.median(prev))
        mad = 1.4826 * float(np.median(np.abs(np.asarray(prev) - med)))
        jump = abs(v - med)
        if jump > max(rel_threshold * abs(med), mad_sigmas * mad, abs_floor):
            out.append((i, v, med))
    return out


def history(results_dir: Path, scenario: str | None = None, **detect) -> dict:
    """From the run folders of one results folder."""
    return build(collect(results_dir, scenario), str(results_dir), scenario, **detect)


def build(runs: list[dict], source: str, scenario: str | None = None, **detect) -> dict:
    """Trend and change points of runs (oldest first) from a results folder or the results store."""
    if not runs:
        raise HarnessError(
            f"{source}: no completed runs" + (f" of scenario {scenario!r}" if scenario else ""),
            fix="run `harness run SCENARIO --results-dir DIR` first, or check --scenario / --label",
        )
    scenarios = []
    for name in sorted({r["scenario"] for r in runs}):
        rs = [r for r in runs if r["scenario"] == name]
        flags = []
        for m, (_, _unit, worse) in METRICS.items():
            floor = 0.005 if m == "error_rate" else 0.0  # error rate: half a percentage point at least
            cps = change_points([None if r["load_failure"] else r["stats"][m] for r in rs], abs_floor=floor, **detect)
            if cps:
                i, v, med = cps[0]
                direction = "up" if v > med else "down"
                what = "worse" if direction == worse else "better"
                rel = f" ({(v - med) / abs(med) * 100:+.0f}%)" if med else ""
                flags.append(
                    {
                        "metric": m,
                        "index": i,
                        "run_id": rs[i]["run_id"],
                        "value": v,
                        "baseline": med,
                        "direction": direction,
                        "assessment": what,
                        "later": len(cps) - 1,
                        "message": f"{m} moved {direction} ({what}) at {rs[i]['run_id']} [{rs[i]['label']}]: "
                        f"{v:.4g} vs median {med:.4g} of the previous runs{rel}",
                    }
                )
        broken = [
            {
                "index": i,
                "run_id": r["run_id"],
                "reason": r["load_failure"],
                "message": f"{r['run_id']} [{r['label']}]: the load failed: {r['load_failure']} (not comparable: "
                "left out of the baselines)",
            }
            for i, r in enumerate(rs)
            if r.get("load_failure")
        ]
        scenarios.append({"scenario": name, "runs": rs, "flags": flags, "broken": broken})
    return {
        "results_dir": source,
        "source": source,
        "metrics": list(METRICS),
        "units": {k: u for k, (_, u, _) in METRICS.items()},
        "scenarios": scenarios,
        "detector": {
            "window": HISTORY_WINDOW,
            "min_history": 3,
            "rel_threshold": HISTORY_THRESHOLD,
            "mad_sigmas": 3.0,
            **detect,
        },
    }
