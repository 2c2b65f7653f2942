"""Pure math on scraped series: counter increases (resets, series born mid-window), histogram quantiles, gauges.

Computed from raw per-series samples rather than PromQL's increase(), which extrapolates and misses the
first increment of a series that appears inside the window (Ray exports counters only after they move).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence

Points = Sequence[tuple[float, float]]  # (epoch seconds, value), ascending


def counter_increase(points: Points, window_start: float, born_grace_s: float) -> float:
    """Increase over the points inside the window.

    A series whose first point is later than window_start + born_grace_s was born inside the window, so
    its first value counts from zero. A drop in value is a reset: the counter restarted from zero.
    """
    pts = [p for p in points if not math.isnan(p[1])]
    if not pts:
        return 0.0
    first_t, first_v = pts[0]
    total = first_v if first_t > window_start + born_grace_s else 0.0
    prev = first_v
    for _, v in pts[1:]:
        total += v - prev if v >= prev else v
        prev = v
    return total


def increase_since(points: Points, start: float) -> float:
    """Counter increase from `start` to the last point: v(last) - v(start), resets handled.

    v(start) is the last sample at or before `start` (what an instant query at `start` returns), so the
    points must reach back before `start`. A series with no sample at or before `start` was born inside the
    window (Ray exports a counter only after its first increment) and counts from zero. Unlike PromQL's
    increase(), nothing is extrapolated and a born-in-window series keeps its first increments.
    """
    pts = sorted((t, v) for t, v in points if not math.isnan(v))
    prev = 0.0
    total = 0.0
    for t, v in pts:
        if t <= start:
            prev = v
            continue
        total += v - prev if v >= prev else v
        prev = v
    return total


def histogram_quantile(q: float, buckets: dict[float, float]) -> float | None:
    """Prometheus-style quantile from cumulative bucket counts {le: count}, linear within a bucket."""
    if not buckets:
        return None
    les = sorted(buckets)
    counts = [buckets[le] for le in les]
    # cumulative counts must be monotone; scrape skew between buckets can break that slightly
    for i in range(1, len(counts)):
        counts[i] = max(counts[i], counts[i - 1])
    total = counts[-1]
    if total <= 0:
        return None
    rank = q * total
    for i, le in enumerate(les):
        if counts[i] >= rank:
            if math.isinf(le):
                return les[i - 1] if i > 0 else None  # in the +Inf bucket: best answer is the last finite bound
            lo = les[i - 1] if i > 0 else 0.0
            below = counts[i - 1] if i > 0 else 0.0
            in_bucket = counts[i] - below
            if in_bucket <= 0:
                return le
            return lo + (le - lo) * (rank - below) / in_bucket
    return les[-1]


def sum_by_le(series: Iterable[tuple[dict, float]]) -> dict[float, float]:
    out: dict[float, float] = defaultdict(float)
    for labels, inc in series:
        out[float(labels["le"])] += inc
    return dict(out)


def aggregate_instants(series: Iterable[Points], how: str) -> list[tuple[float, float]]:
    """Combine several series point-wise by timestamp (sum or max)."""
    acc: dict[float, list[float]] = defaultdict(list)
    for pts in series:
        for t, v in pts:
            if not math.isnan(v):
                acc[t].append(v)
    f = max if how == "max" else sum
    return [(t, float(f(vs))) for t, vs in sorted(acc.items())]


def percentile(sorted_vals: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default), on pre-sorted values."""
    n = len(sorted_vals)
    if n == 0:
        return math.nan
    pos = q * (n - 1)
    lo = int(math.floor(pos))
    hi = min(lo + 1, n - 1)
    return sorted_vals[lo] + (sorted_vals[hi] - sorted_vals[lo]) * (pos - lo)


def gauge_stats(points: Points) -> dict[str, float]:
    vals = [v for _, v in points if not math.isnan(v)]
    if not vals:
        return {}
    s = sorted(vals)
    return {
        "max": s[-1],
        "min": s[0],
        "mean": sum(s) / len(s),
        "p50": percentile(s, 0.5),
        "p95": percentile(s, 0.95),
        "last": vals[-1],
        "samples": float(len(vals)),
    }


def bridge_gaps(points: Points, hold_s: float, step_s: float, end: float | None = None) -> list[tuple[float, float]]:
    """Carry a sparse gauge series' value across gaps up to `hold_s` long, on the `step_s` grid.

    Ray drops a gauge that was not set for ~2 export intervals, so Prometheus marks it stale between
    health checks (Serve's per-replica healthy gauge shows up every ~10 s). Interior gaps ≤ hold_s are
    filled with the earlier value. The tail is extended to `end` only when the last point lies within
    hold_s of it (the series may still be alive, we just have not seen its next export); a series that
    ended earlier really disappeared and is not extended. Unlike PromQL's last_over_time(x[hold]), this never
    adds values after a series' true end.
    """
    pts = [(t, v) for t, v in points if not math.isnan(v)]
    if not pts or hold_s <= 0 or step_s <= 0:
        return pts
    out: list[tuple[float, float]] = []
    for (t, v), nxt in zip(pts, pts[1:] + [None]):
        out.append((t, v))
        stop = nxt[0] if nxt is not None else (end if end is not None and end - t <= hold_s else None)
        if stop is None or stop - t > hold_s:
            continue
        limit = stop - 1e-9 if nxt is not None else stop + 1e-9  # interior: up to the next point; tail: up to end
        k = 1
        while t + k * step_s < limit and k < 100_000:
            out.append((t + k * step_s, v))
            k += 1
    return out


def bucket_around(les: Sequence[float], value: float) -> tuple[float, float]:
    """The histogram bucket (lower, upper bound) a value falls into; upper is inf beyond the last bound."""
    lo = 0.0
    for le in sorted(les):
        if value <= le:
            return lo, le
        lo = le
    return lo, math.inf


def bucket_neighbours(les: Sequence[float], value: float) -> tuple[float, float]:
    """The span from the bucket below the one holding `value` to the bucket above it (± one bucket)."""
    b = sorted(le for le in les if not math.isinf(le))
    lo, hi = bucket_around(b, value)
    below = [le for le in b if le < lo]
    above = [le for le in b if le > hi]
    return (below[-1] if below else 0.0), (above[0] if above else math.inf)


def quantile_bucket(q: float, buckets: dict[float, float]) -> tuple[float, float] | None:
    """(lower, upper) bounds of the bucket the q-quantile falls in: all a histogram knows about it (upper is inf
    in the +Inf bucket). histogram_quantile's number is a linear guess inside these bounds."""
    if not buckets:
        return None
    les = sorted(buckets)
    counts = [buckets[le] for le in les]
    for i in range(1, len(counts)):
        counts[i] = max(counts[i], counts[i - 1])
    if counts[-1] <= 0:
        return None
    rank = q * counts[-1]
    for i, le in enumerate(les):
        if counts[i] >= rank:
            return (les[i - 1] if i > 0 else 0.0), le
    return les[-1], math.inf
