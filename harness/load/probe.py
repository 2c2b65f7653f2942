"""Scheduling-lag probe, run inside each Locust process: a greenlet sleeps 10 ms and records how late it woke.

A loaded event loop (CPU-bound generator, too many greenlets) wakes late; the same delay then lands on every
timestamp the process takes, so lag is a direct bound on the generator's timing error. Written at test stop
to `locust/probe-<pid>.json` (percentiles in ms, over at most the last MAX_SAMPLES wake-ups).
"""

from __future__ import annotations

import json
import os
import time
from collections import deque
from pathlib import Path

import gevent

INTERVAL_S = 0.010
MAX_SAMPLES = 120_000  # 20 minutes of wake-ups


def lag_stats(lags_ms: list[float]) -> dict[str, float] | None:
    if not lags_ms:
        return None
    a = sorted(lags_ms)

    def q(p: float) -> float:
        return round(a[min(len(a) - 1, int(p * (len(a) - 1) + 0.5))], 3)

    return {
        "p50": q(0.50),
        "p90": q(0.90),
        "p99": q(0.99),
        "max": round(a[-1], 3),
        "mean": round(sum(a) / len(a), 3),
        "count": len(a),
    }


class LagProbe:
    def __init__(self, out_dir: Path) -> None:
        self.out_dir = Path(out_dir)
        self.lags: deque[float] = deque(maxlen=MAX_SAMPLES)
        self._g: gevent.Greenlet | None = None
        self._pid = 0

    def start(self) -> None:
        if self._g is not None and self._pid == os.getpid():
            return
        self._pid = os.getpid()
        self.lags.clear()
        self._g = gevent.spawn(self._loop)

    def _loop(self) -> None:
        perf, sleep, lags = time.perf_counter, gevent.sleep, self.lags
        while True:
            t = perf()
            sleep(INTERVAL_S)
            lags.append((perf() - t - INTERVAL_S) * 1000.0)

    def write(self) -> None:
        if self._g is None or self._pid != os.getpid():
            return
        st = lag_stats(list(self.lags))
        if st is None:
            return
        tmp = self.out_dir / f"probe-{os.getpid()}.json.tmp"
        tmp.write_text(json.dumps({"pid": os.getpid(), "lag_ms": st}))
        tmp.replace(self.out_dir / f"probe-{os.getpid()}.json")
