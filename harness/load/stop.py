"""Early stop (`load.stop_when`): pure rules over live window statistics, and the watcher the runner feeds.

Saturation rule (parameters: `harness.scenario.SaturationRule`). Time after the load's start is cut into windows
of `window_s`; for each window the runner records
  offered  = requests sent in the window / window_s            (the `sent.cnt` counter at the window's edges)
  achieved = requests finished in the window / window_s        (sample rows by completion time)
  in_flight = requests sent but not finished at the window's end (sent.cnt - done.cnt: the server's running and
              waiting requests plus any the client holds at max_concurrency; the client's view of the queue)
  ttft_p50 = median TTFT of the requests finished in the window, from their scheduled arrival (ms)
A window is *saturated* when, against the window before it,
  achieved < (1 - rate_gap) x offered,  in_flight > previous in_flight,  ttft_p50 >= (1 + ttft_growth) x previous,
and at least `min_window_requests` were sent in it. `windows` saturated windows in a row stop the run.
A server under capacity finishes what it is sent (achieved ~ offered: both counts come from the same arrivals,
shifted by one request's latency), its queue and TTFT stay flat; past capacity all three conditions hold in every
window: the queue grows by (offered - capacity) x window_s and TTFT with it.

Worst-case detection time after saturation begins at t_sat: the first window wholly past t_sat ends within
2 x window_s, the `windows`-th one `windows - 1` windows later, and its rows are read `SETTLE_S` after its end:
  stop_at - t_sat <= (windows + 1) x window_s + SETTLE_S + poll interval.

max_errors: a count (failed requests since the load started) or a share over the last `errors_window_s`.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from harness.scenario import SaturationRule, StopWhen

SETTLE_S = 1.0  # a window is judged this long after it ends: sample files are flushed every 0.5 s


@dataclass(frozen=True)
class WindowStats:
    index: int
    start_s: float  # seconds after the load's start
    end_s: float
    sent: int
    finished: int
    errors: int
    in_flight: int  # at the window's end
    ttft_p50_ms: float | None

    @property
    def offered_rps(self) -> float:
        return self.sent / (self.end_s - self.start_s)

    @property
    def achieved_rps(self) -> float:
        return self.finished / (self.end_s - self.start_s)

    def evidence(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "offered_rps": round(self.offered_rps, 3),
            "achieved_rps": round(self.achieved_rps, 3),
        }


def window_saturated(prev: WindowStats, cur: WindowStats, rule: SaturationRule) -> bool:
    """The saturation rule for one window against the one before it (module docstring)."""
    if cur.sent < rule.min_window_requests or cur.ttft_p50_ms is None or prev.ttft_p50_ms is None:
        return False
    return (
        cur.achieved_rps < (1.0 - rule.rate_gap) * cur.offered_rps
        and cur.in_flight > prev.in_flight
        and cur.ttft_p50_ms >= (1.0 + rule.ttft_growth) * prev.ttft_p50_ms
    )


def saturation_trigger(windows: Sequence[WindowStats], rule: SaturationRule) -> list[WindowStats] | None:
    """The last `rule.windows` windows (plus the one they are compared with) when all are saturated, else None."""
    n = rule.windows
    if len(windows) < n + 1:
        return None
    tail = list(windows[-(n + 1) :])
    if all(window_saturated(a, b, rule) for a, b in zip(tail, tail[1:])):
        return tail
    return None


def detection_bound_s(rule: SaturationRule, poll_s: float = 0.2) -> float:
    """Longest time from the onset of saturation to the stop request (module docstring)."""
    return (rule.windows + 1) * rule.window_s + SETTLE_S + poll_s


@dataclass
class StopTrigger:
    trigger: str  # max_errors | saturation
    at: float  # epoch seconds of the stop request
    at_s: float  # seconds after the load's start
    detail: str  # one line for the verdict and the terminal
    evidence: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _median(xs: list[float]) -> float | None:
    return round(statistics.median(xs), 3) if xs else None


class StopWatch:
    """Live side of `load.stop_when`. The runner calls `feed` every poll with the new sample rows and the sent/done
    counters; it returns a StopTrigger once a rule fires (then never again)."""

    def __init__(self, stop_when: StopWhen, started_at: float) -> None:
        self.sw, self.started_at = stop_when, started_at
        self.rule = stop_when.saturation
        self.window_s = self.rule.window_s if self.rule else math.inf
        self.windows: list[WindowStats] = []
        self._edges: dict[int, tuple[int, int]] = {0: (0, 0)}  # window edge index → (sent, done) there
        self._done_rows: list[tuple[float, float | None, bool]] = []  # (finished_at, ttft_sched_ms, error)
        self.errors = 0
        self.finished = 0
        self._error_times: list[float] = []
        self._recent: deque[tuple[float, bool]] = deque()
        self.fired: StopTrigger | None = None

    def feed(self, rows: list[dict[str, Any]], now: float, sent: int, done: int) -> StopTrigger | None:
        if self.fired is not None:
            return None
        for r in rows:
            fin = float(r["t_start_s"]) + float(r.get("e2e_ms") or r.get("lateness_ms") or 0.0) / 1000.0
            err = r.get("error") is not None
            ttft = r.get("ttft_ms")
            if ttft is not None:
                ttft = float(ttft) + float(r.get("lateness_ms") or 0.0)
            self.finished += 1
            self._done_rows.append((fin, ttft, err))
            self._recent.append((fin, err))
            if err:
                self.errors += 1
                self._error_times.append(fin)
        self.fired = self._errors(now) or self._saturation(now, sent, done)
        return self.fired

    def _trigger(self, kind: str, now: float, detail: str, evidence: dict[str, Any]) -> StopTrigger:
        return StopTrigger(kind, now, round(now - self.started_at, 3), detail, evidence)

    def _errors(self, now: float) -> StopTrigger | None:
        count, share = self.sw.max_errors_count, self.sw.max_errors_share
        if count is not None and self.errors >= count:
            nth = sorted(self._error_times)[count - 1]
            return self._trigger(
                "max_errors",
                now,
                f"{self.errors} failed requests reached max_errors {count}",
                {
                    "errors": self.errors,
                    "finished": self.finished,
                    "max_errors": count,
                    "nth_error_at_s": round(nth - self.started_at, 3),
                },
            )
        if share is not None:
            w = self.sw.errors_window_s
            while self._recent and self._recent[0][0] < now - w:
                self._recent.popleft()
            n = len(self._recent)
            e = sum(err for _, err in self._recent)
            if n >= self.sw.errors_min_requests and e / n >= share:
                return self._trigger(
                    "max_errors",
                    now,
                    f"{e} of {n} requests failed in the last {w:g} s ({e / n:.0%} >= max_errors {share:.0%})",
                    {"errors": e, "finished": n, "window_s": w, "share": round(e / n, 4), "max_errors_share": share},
                )
        return None

    def _saturation(self, now: float, sent: int, done: int) -> StopTrigger | None:
        rule = self.rule
        if rule is None:
            return None
        edge = int((now - self.started_at) // self.window_s)  # edges passed so far
        for k in range(max(self._edges) + 1, edge + 1):
            self._edges[k] = (sent, done)  # read within one poll of the edge
        k = len(self.windows)  # next window to close: [k, k+1) x window_s
        while k + 1 in self._edges and now >= self.started_at + (k + 1) * self.window_s + SETTLE_S:
            t0, t1 = self.started_at + k * self.window_s, self.started_at + (k + 1) * self.window_s
            rows = [r for r in self._done_rows if t0 <= r[0] < t1]
            (s0, _), (s1, d1) = self._edges[k], self._edges[k + 1]
            self.windows.append(
                WindowStats(
                    index=k,
                    start_s=round(k * self.window_s, 3),
                    end_s=round((k + 1) * self.window_s, 3),
                    sent=s1 - s0,
                    finished=len(rows),
                    errors=sum(r[2] for r in rows),
                    in_flight=max(s1 - d1, 0),
                    ttft_p50_ms=_median([r[1] for r in rows if r[1] is not None]),
                )
            )
            self._done_rows = [r for r in self._done_rows if r[0] >= t1]
            k += 1
            hit = saturation_trigger(self.windows, rule)
            if hit is not None:
                last = hit[-1]
                return self._trigger(
                    "saturation",
                    now,
                    f"saturated for {rule.windows} windows of {rule.window_s:g} s: achieved "
                    f"{last.achieved_rps:.2f} req/s of {last.offered_rps:.2f} offered, {last.in_flight} in flight, "
                    f"TTFT p50 {last.ttft_p50_ms:.0f} ms",
                    {
                        "windows": [w.evidence() for w in hit],
                        "rule": rule.model_dump(),
                        "saturated_since_s": hit[1].start_s,
                        "capacity_rps": round(statistics.median(w.achieved_rps for w in hit[1:]), 3),
                    },
                )
        return None
