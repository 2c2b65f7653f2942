"""Autoscaling analysis: the replica series set against the load shape. Pure functions, no I/O.

Inputs are the scraped series (rows of signal, t [epoch s], value) and the scenario's stages. Definitions:
- a *step* is a stage whose users differ from the stage before (the first stage steps up from 0 users);
- *wanted* replicas after a step up: the most the autoscaler asked for during that stage (`target_replicas`,
  else `desired_replicas`); after a step down, the fewest;
- *scale-up time*: from the step's start to the first moment the healthy replicas reach the wanted count
  (not reached inside the stage → no time, and a note saying how far it got);
- *replica starts*: increments of Serve's cumulative replica-start counter during the load; *churn*: starts
  per minute of load;
- a *flap*: the healthy replica count dropping while the load is not stepping down (inside a stage whose
  users are >= the previous stage's, before the load ends).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

Points = list[tuple[float, float]]


@dataclass(frozen=True)
class StageWindow:
    name: str
    start: float  # epoch s
    end: float
    users: float  # users, or the arrival rate (req/s) of an open-loop stage
    prev_users: float
    ramp_end: float  # when the user count reached `users` (spawn_rate)


def stage_windows(stages: Sequence[dict], load_start: float) -> list[StageWindow]:
    out: list[StageWindow] = []
    t = load_start
    prev: float = 0
    for i, s in enumerate(stages):
        users: float | None
        d, users, rate = float(s["duration_s"]), s.get("users"), float(s.get("spawn_rate") or 1.0)
        if users is None:  # open loop: the load level is the arrival rate, which steps at once
            users, rate = float(s.get("rate_rps") or 0.0), math.inf
        ramp = abs(users - prev) / rate if rate > 0 else 0.0
        out.append(StageWindow(s.get("name") or f"stage{i}", t, t + d, users, prev, min(t + ramp, t + d)))
        t, prev = t + d, users
    return out


def users_at(windows: Sequence[StageWindow], t: float) -> float:
    """Users the load shape asks for at epoch `t` (linear ramp at spawn_rate, 0 outside the load)."""
    for w in windows:
        if w.start <= t < w.end:
            if t >= w.ramp_end or w.ramp_end <= w.start:
                return float(w.users)
            frac = (t - w.start) / (w.ramp_end - w.start)
            return w.prev_users + (w.users - w.prev_users) * frac
    return 0.0


def steady_windows(windows: Sequence[StageWindow], warmup_end: float) -> list[tuple[float, float]]:
    """The steady part of the run: each stage after its user ramp and after warmup."""
    return [(max(w.ramp_end, warmup_end), w.end) for w in windows if max(w.ramp_end, warmup_end) < w.end]


def series_of(rows: Iterable[dict] | Any, signal: str) -> Points:
    """Points of one signal from rows (a list of dicts or a DataFrame with signal, t, value), by time."""
    if hasattr(rows, "to_dict"):
        rows = rows.to_dict("records")
    pts = [(float(r["t"]), float(r["value"])) for r in rows if r["signal"] == signal]
    return sorted(p for p in pts if not math.isnan(p[1]))


def value_at(points: Points, t: float) -> float | None:
    """Last value at or before `t` (None before the first point)."""
    v = None
    for pt, pv in points:
        if pt > t:
            break
        v = pv
    return v


def _within(points: Points, a: float, b: float) -> Points:
    return [(t, v) for t, v in points if a <= t <= b]


def step_events(windows: Sequence[StageWindow], replicas: Points, wanted: Points) -> tuple[list[dict], list[dict]]:
    ups: list[dict] = []
    downs: list[dict] = []
    for w in windows:
        if w.users == w.prev_users:
            continue
        up = w.users > w.prev_users
        asked = [v for _, v in _within(wanted, w.start, w.end)]
        r0 = value_at(replicas, w.start)
        if r0 is None:
            first = _within(replicas, w.start, w.end)
            r0 = first[0][1] if first else None
        if not asked or r0 is None:
            continue
        want = max(asked) if up else min(asked)
        if (up and want <= r0) or (not up and want >= r0):
            continue  # the autoscaler asked for no change
        seen = _within(replicas, w.start, w.end)
        hit = next((t for t, v in seen if (v >= want if up else v <= want)), None)
        reached_best = (max if up else min)((v for _, v in seen), default=r0)
        ev = {
            "stage": w.name,
            "at_s": w.start,
            "users_from": w.prev_users,
            "users_to": w.users,
            "replicas_from": r0,
            "wanted": want,
            "reached": hit is not None,
            "time_s": None if hit is None else round(hit - w.start, 3),
            "best": reached_best,
            "stage_s": round(w.end - w.start, 3),
        }
        (ups if up else downs).append(ev)
    return ups, downs


def replica_starts(cumulative: Points, load_start: float, load_end: float, grace_s: float) -> float | None:
    """Starts during the load from the summed cumulative counter: the sum of its increments (a drop is a
    series that went away, not negative starts); a counter first seen after the load began counts from 0."""
    pts = [(t, v) for t, v in cumulative if t <= load_end + grace_s]
    if not pts:
        return None
    before = [v for t, v in pts if t <= load_start]
    inside = [(t, v) for t, v in pts if t > load_start]
    prev = before[-1] if before else (0.0 if pts[0][0] > load_start + grace_s else pts[0][1])
    total = 0.0
    for _, v in inside:
        if v > prev:
            total += v - prev
        prev = v
    return total


def flaps(windows: Sequence[StageWindow], replicas: Points) -> list[float]:
    """Epoch times at which healthy replicas dropped while the load was not stepping down."""
    out = []
    for (_, a), (t, b) in zip(replicas, replicas[1:]):
        if b >= a:
            continue
        w = next((w for w in windows if w.start <= t < w.end), None)
        if w is not None and w.users >= w.prev_users:
            out.append(t)
    return out


def _time_stats(events: list[dict]) -> dict[str, float] | None:
    times = [e["time_s"] * 1000.0 for e in events if e["reached"]]
    if not events or len(times) < len(events):
        return None  # an unreached step has no time: never a pass
    return {"max": max(times), "min": min(times), "mean": sum(times) / len(times), "count": float(len(times))}


def _note(events: list[dict], direction: str, wanted_name: str) -> str | None:
    if not events:
        more = "more" if direction == "up" else "fewer"
        return f"no scale-{direction} happened: {wanted_name} never asked for {more} replicas at a load step"
    missed = [e for e in events if not e["reached"]]
    if missed:
        e = missed[0]
        return (
            f"replicas did not reach {e['wanted']:g} within stage '{e['stage']}' ({e['stage_s']:g} s); "
            f"{'most' if direction == 'up' else 'fewest'} seen {e['best']:g}"
        )
    return None


def analyze(
    rows,
    stages: Sequence[dict],
    load_start: float,
    warmup_end: float,
    load_end: float,
    *,
    grace_s: float = 3.0,
    timeline_step_s: float = 5.0,
) -> dict | None:
    """Everything the report and the SLOs need about autoscaling; None when no replica series was scraped."""
    replicas = series_of(rows, "replicas")
    if not replicas:
        return None
    target = series_of(rows, "target_replicas")
    desired = series_of(rows, "desired_replicas")
    wanted, wanted_name = (target, "target_replicas") if target else (desired, "desired_replicas")
    windows = stage_windows(stages, load_start)
    ups, downs = step_events(windows, replicas, wanted)
    starts = replica_starts(series_of(rows, "replica_starts"), load_start, load_end, grace_s)
    minutes = max(load_end - load_start, 1e-9) / 60.0
    flap_t = flaps(windows, _within(replicas, load_start, load_end))
    during = _within(replicas, load_start, load_end) or replicas
    per_stage = []
    for w in windows:
        rs = [v for _, v in _within(replicas, w.start, w.end)]
        ws = [v for _, v in _within(wanted, w.start, w.end)]
        per_stage.append(
            {
                "stage": w.name,
                "users": w.users,
                "start_s": round(w.start - load_start, 3),
                "end_s": round(w.end - load_start, 3),
                "replicas_min": min(rs) if rs else None,
                "replicas_max": max(rs) if rs else None,
                "wanted_max": max(ws) if ws else None,
            }
        )
    timeline = []
    n = int(math.ceil((load_end - load_start) / timeline_step_s)) + 1
    for i in range(min(n, 10_000)):
        t = load_start + i * timeline_step_s
        timeline.append(
            {
                "t_s": round(t - load_start, 3),
                "users": round(users_at(windows, t), 2),
                "replicas": value_at(replicas, t),
                "desired": value_at(desired, t),
                "target": value_at(target, t),
            }
        )
    stats: dict[str, dict[str, float]] = {"flaps": {"total": float(len(flap_t))}}
    if (s := _time_stats(ups)) is not None:
        stats["scale_up_time"] = s
    if (s := _time_stats(downs)) is not None:
        stats["scale_down_time"] = s
    if starts is not None:
        stats["churn"] = {"value": starts / minutes}
        stats["replica_starts"] = {"total": starts}
    notes = {
        k: v
        for k, v in (
            ("scale_up_time", _note(ups, "up", wanted_name)),
            ("scale_down_time", _note(downs, "down", wanted_name)),
        )
        if v
    }
    if starts is None:
        notes["churn"] = notes["replica_starts"] = "no replica-start series was scraped"
    return {
        "wanted_series": wanted_name if wanted else None,
        "replicas_max": max(v for _, v in during),
        "replicas_min": min(v for _, v in during),
        "wanted_max": max((v for _, v in _within(wanted, load_start, load_end)), default=None),
        "scale_ups": [{**e, "at_s": round(e["at_s"] - load_start, 3)} for e in ups],
        "scale_downs": [{**e, "at_s": round(e["at_s"] - load_start, 3)} for e in downs],
        "replica_starts": starts,
        "churn_per_min": None if starts is None else starts / minutes,
        "flaps": len(flap_t),
        "flap_at_s": [round(t - load_start, 3) for t in flap_t],
        "stages": per_stage,
        "timeline": timeline,
        "stats": stats,
        "notes": notes,
    }
