"""Open-loop arrival schedules: when each request (or session) is due, in seconds after the load starts.

Pure (no gevent) so it is unit-testable. A schedule is a unit-rate renewal process (exponential, gamma or
constant gaps with mean 1) mapped through the inverse of the cumulative rate Λ(t) = ∫ rate: exact for rate
steps between stages and linear ramps within a stage (`ramp_to_rps`), and a zero-rate stage is a pause.

With P load-generator processes each runs the same process at rate/P with its own seed (a superposition
of Poisson processes is Poisson; constant schedules are phase-shifted by index/P so they interleave).
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence
from typing import Any


def _segments(stages: Sequence[dict[str, Any]], share: float) -> list[tuple[float, float, float, float]]:
    """(t_start, duration, r0, r1) per stage, rates scaled by `share`."""
    out, t = [], 0.0
    for s in stages:
        d = float(s["duration_s"])
        r0 = float(s.get("rate_rps") or 0.0) * share
        r1 = float(s["ramp_to_rps"]) * share if s.get("ramp_to_rps") is not None else r0
        out.append((t, d, r0, r1))
        t += d
    return out


def _invert(seg: tuple[float, float, float, float], u: float) -> float:
    """τ in [0, d] with ∫_0^τ rate = u, for rate linear from r0 to r1 over d (assumes u <= the stage's area)."""
    _, d, r0, r1 = seg
    if u <= 0.0:
        return 0.0
    a = (r1 - r0) / (2.0 * d)
    if abs(a) < 1e-12:
        return u / r0
    # a τ² + r0 τ - u = 0, the root in [0, d]; written to avoid cancellation when a is small
    disc = max(r0 * r0 + 4.0 * a * u, 0.0)
    return 2.0 * u / (r0 + math.sqrt(disc))


def unit_gaps(process: str, rng: random.Random, burstiness: float = 1.0) -> Iterator[float]:
    """Inter-arrival gaps of a rate-1 renewal process."""
    if process == "poisson":
        while True:
            yield rng.expovariate(1.0)
    elif process == "gamma":
        k = float(burstiness)
        while True:
            yield rng.gammavariate(k, 1.0 / k)
    elif process == "constant":
        while True:
            yield 1.0
    else:
        raise ValueError(f"unknown arrival process {process!r}")


def arrival_offsets(
    stages: Sequence[dict[str, Any]],
    *,
    process: str,
    burstiness: float = 1.0,
    seed: int = 0,
    share: float = 1.0,
    phase: float = 0.0,
    limit: int = 10_000_000,
) -> Iterator[float]:
    """Arrival times (seconds after t=0, increasing) over the stages; at most `limit` of them.

    `share`: this process's fraction of the rate; `phase` in [0, 1): offset of the first arrival in units of
    one mean gap (constant schedules of several processes interleave with phase = index/P)."""
    segs = _segments(stages, share)
    rng = random.Random(f"harness-arrivals:{seed}")
    gaps = unit_gaps(process, rng, burstiness)
    # operational time: the first arrival comes after `phase` of a gap for constant, a full random gap otherwise
    u = phase if process == "constant" else next(gaps)
    n = 0
    for seg in segs:
        t0, d, r0, r1 = seg
        area = (r0 + r1) / 2.0 * d
        while u <= area and n < limit:
            yield t0 + _invert(seg, u)
            n += 1
            u += next(gaps)
        if n >= limit:
            return
        u -= area  # carry the remaining operational time into the next stage


def expected_arrivals(stages: Sequence[dict[str, Any]]) -> float:
    """∫ rate over the whole schedule: the mean number of arrivals."""
    return sum((r0 + r1) / 2.0 * d for _, d, r0, r1 in _segments(stages, 1.0))
