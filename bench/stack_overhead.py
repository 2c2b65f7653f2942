"""Time a run spends outside its load: `harness run` on a fresh local stack (a new state dir each time, so the
harness starts and stops its own Ray + Prometheus), stage by stage, from the run's own record.

    python bench/stack_overhead.py                    # 2 runs of a 10 s sim scenario
    python bench/stack_overhead.py --runs 3 --json out.json
    python bench/stack_overhead.py --scenario scenarios/smoke.yaml

Prints per-stage seconds (run.json `stage_durations_s`, stack sub-timings from `stack.timings_s`), the process's
wall time, overhead = wall - load, the time in no stage (process start-up + teardown), and ratios (overhead / wall,
each stage / overhead). Never asserts.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SCENARIO = """\
name: overhead
description: Short sim run to time the stages around the load.
target: {engine: sim, model: sim-overhead, sim: {ttft_ms: 20, itl_ms: 5}}
workload: {prompt_tokens: {mean: 32}, output_tokens: {mean: 16}}
load: {warmup_s: 1, stages: [{duration_s: 10, users: 2, spawn_rate: 2}]}
slos: [error_rate <= 1%, kv_cache_usage.max < 0.9]
"""


def one_run(scenario: Path, work: Path, i: int) -> dict:
    env = {**os.environ, "HARNESS_STATE_DIR": str(work / f"state-{i}")}  # no `harness up` stack: a fresh one
    results = work / f"results-{i}"
    t0 = time.monotonic()
    p = subprocess.run(
        [sys.executable, "-m", "harness.cli", "run", str(scenario), "-o", str(results), "--json"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    wall = time.monotonic() - t0
    run_dirs = [d for d in results.iterdir() if d.is_dir()] if results.exists() else []
    if not run_dirs:
        return {"exit_code": p.returncode, "wall_s": round(wall, 2), "error": p.stderr[-1500:]}
    run = json.loads((run_dirs[0] / "run.json").read_text())
    stages = dict(run.get("stage_durations_s") or {})
    stack_t = (run.get("stack") or {}).get("timings_s") or {}
    load_s = stages.get("load_s", 0.0)
    return {
        "exit_code": p.returncode,
        "wall_s": round(wall, 2),
        "overhead_s": round(wall - load_s, 2),
        # process start (imports) and teardown (undeploy, stopping Ray and Prometheus): in no stage's time
        "outside_stages_s": round(wall - sum(stages.values()), 2),
        "stages_s": stages,
        "stack_timings_s": stack_t,
        "settle_s": (run.get("scrape") or {}).get("settle_s"),
        "error": run.get("error"),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--scenario", type=Path, help="default: a built-in 10 s sim scenario")
    ap.add_argument("--json", type=Path, help="write the raw numbers here")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="stack-overhead-") as tmp:
        work = Path(tmp)
        sc = a.scenario.resolve() if a.scenario else work / "overhead.yaml"
        if not a.scenario:
            sc.write_text(SCENARIO)
        runs = [one_run(sc, work, i) for i in range(a.runs)]
    ok = [r for r in runs if "load_s" in r.get("stages_s", {})]
    print(
        f"{len(ok)}/{len(runs)} runs recorded (exit codes {[r['exit_code'] for r in runs]}); "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    )
    for r in runs:
        if r.get("error"):
            print("  failed:", r["error"][-1500:])
    if not ok:
        return
    keys = sorted(
        {k for r in ok for k in r["stages_s"]},
        key=lambda k: list(ok[0]["stages_s"]).index(k) if k in ok[0]["stages_s"] else 99,
    )
    med = lambda xs: statistics.median(xs) if xs else float("nan")
    overhead = med([r["overhead_s"] for r in ok])
    print(f"{'stage':<22}{'median s':>10}{'of overhead':>13}   per run")
    for k in keys:
        xs = [r["stages_s"].get(k, 0.0) for r in ok]
        share = "" if k == "load_s" else f"{med(xs) / overhead:>12.0%}"
        print(f"{k:<22}{med(xs):>10.2f}{share:>13}   {xs}")
    for k in sorted({k for r in ok for k in r["stack_timings_s"]}):
        xs = [r["stack_timings_s"].get(k, 0.0) for r in ok]
        print(f"  stack.{k:<14}{med(xs):>10.2f}{'':>13}   {xs}")
    xs = [r["settle_s"] for r in ok if r["settle_s"] is not None]
    print(f"  scrape.settle_s{'':<6}{med(xs):>10.2f}{'':>13}   {xs}")
    xs = [r["outside_stages_s"] for r in ok]
    print(f"{'outside stages':<22}{med(xs):>10.2f}{med(xs) / overhead:>12.0%}    {xs}  (start-up + teardown)")
    walls = [r["wall_s"] for r in ok]
    print(f"{'process wall':<22}{med(walls):>10.2f}{'':>13}   {walls}")
    print(
        f"{'overhead (wall-load)':<22}{overhead:>10.2f}{overhead / med(walls):>12.0%} of wall   "
        f"{[r['overhead_s'] for r in ok]}"
    )
    if a.json:
        a.json.write_text(json.dumps(runs, indent=2))


if __name__ == "__main__":
    main()
