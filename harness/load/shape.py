"""Stage arithmetic shared by the Locust shape (master side) and the sample merge (stage labels)."""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from itertools import accumulate
from typing import Any


def stage_ends(stages: Sequence[dict[str, Any]]) -> list[float]:
    return list(accumulate(float(s["duration_s"]) for s in stages))


def stage_index(ends: Sequence[float], t: float) -> int | None:
    """Index of the stage running at `t` seconds after shape start; None once all stages are over."""
    i = bisect.bisect_right(ends, t)
    return i if i < len(ends) else None


def stage_tick(
    stages: Sequence[dict[str, Any]], t: float, ends: Sequence[float] | None = None
) -> tuple[int, float] | None:
    """What LoadTestShape.tick() returns at run time `t`: (users, spawn_rate) of the current stage, else None."""
    i = stage_index(ends if ends is not None else stage_ends(stages), t)
    if i is None:
        return None
    return int(stages[i]["users"]), float(stages[i]["spawn_rate"])


def stage_label(names: Sequence[str], ends: Sequence[float], t: float) -> str:
    """Stage a request belongs to by its start time; requests before t=0 go to the first stage and
    requests started during the drain after the last stage to the last one."""
    i = stage_index(ends, t)
    return names[-1] if i is None else names[i]


def open_tick(ends: Sequence[float], t: float, users: int) -> tuple[int, float] | None:
    """Open loop: one arrival-scheduling user per Locust process while the stages run, else None."""
    return (users, 1000.0) if stage_index(ends, t) is not None else None
