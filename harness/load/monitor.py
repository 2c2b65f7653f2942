"""Is the load generator itself the bottleneck? CPU of the Locust processes (psutil, sampled by the runner
about once a second), their scheduling lag (harness.load.probe files) and open-loop lateness (from samples).

A generator that is CPU-saturated or wakes late adds its own delay to every timestamp: its latency numbers are
then not to be trusted. `generator_report` returns the record (run.json: load.generator) and the warnings.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

CPU_LIMIT_PCT = 90.0  # of one core, mean over the load, per process
LAG_P99_LIMIT_MS = 20.0  # scheduling lag p99 of any Locust process
LATENESS_P99_LIMIT_MS = 50.0  # open loop without a concurrency cap: arrivals sent this late at p99


class GeneratorMonitor:
    def __init__(self, root_pid: int, interval_s: float = 1.0) -> None:
        self.root_pid = root_pid
        self.interval_s = interval_s
        self._procs: dict[int, Any] = {}
        self.cpu_pct: dict[int, list[float]] = {}
        self.cpu_s: dict[int, float] = {}
        self._last = 0.0
        try:
            import psutil

            self._psutil = psutil
            self._root = psutil.Process(root_pid)
        except Exception:  # psutil missing or the process already gone: no CPU data
            self._psutil = None

    def poll(self) -> None:
        now = time.monotonic()
        if self._psutil is None or now - self._last < self.interval_s:
            return
        self._last = now
        ps = self._psutil
        try:
            procs = [self._root, *self._root.children(recursive=True)]
        except ps.Error:
            return
        for p in procs:
            try:
                if p.pid not in self._procs:
                    self._procs[p.pid] = p
                    p.cpu_percent(None)  # first call only sets the baseline
                    continue
                self.cpu_pct.setdefault(p.pid, []).append(p.cpu_percent(None))
                t = p.cpu_times()
                self.cpu_s[p.pid] = t.user + t.system
            except ps.Error:
                continue

    def processes(self) -> list[dict[str, Any]]:
        out = []
        multi = len(self._procs) > 1
        for pid, vals in sorted(self.cpu_pct.items()):
            if not vals:
                continue
            srt = sorted(vals)
            out.append(
                {
                    "pid": pid,
                    "role": ("master" if pid == self.root_pid else "worker") if multi else "single",
                    "cpu_pct_mean": round(sum(vals) / len(vals), 1),
                    "cpu_pct_p90": round(srt[int(0.9 * (len(srt) - 1))], 1),
                    "cpu_s": round(self.cpu_s.get(pid, 0.0), 3),
                    "polls": len(vals),
                }
            )
        return out


def _lateness(samples_path: Path) -> dict[str, float] | None:
    try:
        import pyarrow.parquet as pq

        t = pq.read_table(samples_path, columns=["lateness_ms", "error"])
        col, err = t.column("lateness_ms").to_pylist(), t.column("error").to_pylist()
    except Exception:
        return None
    vals = sorted(v for v, e in zip(col, err) if v is not None and e != "dropped")  # sent arrivals only
    if not vals:
        return None

    def q(p: float) -> float:
        return round(vals[min(len(vals) - 1, int(p * (len(vals) - 1) + 0.5))], 3)

    return {
        "p50": q(0.5),
        "p90": q(0.9),
        "p99": q(0.99),
        "max": round(vals[-1], 3),
        "late_over_10ms_frac": round(sum(v > 10.0 for v in vals) / len(vals), 4),
        "count": len(vals),
    }


def generator_report(
    monitor: GeneratorMonitor, locust_dir: Path, samples_path: Path, capped: bool = False
) -> tuple[dict[str, Any], list[str]]:
    procs = monitor.processes()
    lags = {}
    for f in sorted(Path(locust_dir).glob("probe-*.json")):
        try:
            d = json.loads(f.read_text())
            lags[int(d["pid"])] = d["lag_ms"]
        except (OSError, ValueError, KeyError):
            continue
    for p in procs:
        if p["pid"] in lags:
            p["lag_ms"] = lags[p["pid"]]
    late = _lateness(samples_path)
    warnings = []
    hot = [p for p in procs if p["cpu_pct_mean"] > CPU_LIMIT_PCT]
    if hot:
        warnings.append(
            "load generator CPU-bound: "
            + ", ".join(f"{p['role']} {p['pid']} at {p['cpu_pct_mean']:.0f}% of a core" for p in hot)
            + "; latencies include generator delay (add load.workers)"
        )
    laggy = {pid: lag for pid, lag in lags.items() if lag.get("p99", 0) > LAG_P99_LIMIT_MS}
    if laggy:
        warnings.append(
            "load generator scheduling lag p99 "
            + ", ".join(f"{lag['p99']:.1f} ms (pid {pid})" for pid, lag in laggy.items())
            + f" > {LAG_P99_LIMIT_MS:.0f} ms: timestamps are late by about that much"
        )
    if late and late["p99"] > LATENESS_P99_LIMIT_MS:
        if capped:  # waiting at the cap is the server not keeping up, and it is in the latencies (from schedule)
            warnings.append(
                f"open-loop arrivals were sent late: lateness p99 {late['p99']:.1f} ms, waiting at "
                "arrival.max_concurrency (the server did not keep up with the rate) or behind a busy "
                "generator; TTFT and e2e count from the scheduled arrival, from-send figures are "
                "client.ttft_from_send_ms / e2e_from_send_ms"
            )
        else:
            warnings.append(
                f"open-loop arrivals were sent late: lateness p99 {late['p99']:.1f} ms: the generator did "
                "not keep the schedule (add load.workers or lower the rate)"
            )
    dropped = (locust_dir / "dropped.cnt").stat().st_size if (locust_dir / "dropped.cnt").exists() else 0
    if dropped:
        warnings.append(
            f"{dropped} open-loop arrivals were never sent: still queued at arrival.max_concurrency when "
            "the stages ended (the server could not keep up with the rate at that concurrency)"
        )
    worst_lag = max((lag.get("p99", 0.0) for lag in lags.values()), default=None)
    gen = {
        "processes": procs,
        "cpu_pct_max_mean": max((p["cpu_pct_mean"] for p in procs), default=None),
        "lag_p99_ms_max": worst_lag,
        "lateness_ms": late,
        "dropped_arrivals": dropped,
        "bottleneck": bool(warnings),
        "limits": {"cpu_pct": CPU_LIMIT_PCT, "lag_p99_ms": LAG_P99_LIMIT_MS, "lateness_p99_ms": LATENESS_P99_LIMIT_MS},
    }
    return gen, warnings
