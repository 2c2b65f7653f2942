"""Pure math on scraped series: counter increases (resets, series born mid-window), histogram quantiles, gauges.

Computed from raw per-series samples rather than PromQL's increase(), which extrapolates and misses the
first increment of a series that appears inside the window (Ray exports counters only after they move).
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Iterable, Sequence

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
        "max": s[-1], "min": s[0], "mean": sum(s) / len(s), "p50": percentile(s, 0.5),
        "p95": percentile(s, 0.95), "last": vals[-1], "samples": float(len(vals)),
    }
