"""Significance from raw samples: bootstrap confidence interval of the difference in a statistic.

Resampling is by block of time (a block bootstrap over the groups in `Values`): the requests that started in
one block, with all their ITL gaps, and runs of consecutive throughput bins are drawn together. Stretches of a
run move together (autoscaling, a shared CPU), so treating requests or seconds as independent made intervals
falsely narrow and the gate cried wolf on identical runs. Deterministic: a fixed seed and a bounded number of
resamples (fewer when the sample is large, so one comparison stays well under a few seconds).
A Mann-Whitney U p-value (one value per request) is added when scipy is installed; decisions use the bootstrap.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harness.compare.stats import Values
from harness.defaults import DEFAULT_RESAMPLES, DEFAULT_SEED

__all__ = ["DEFAULT_RESAMPLES", "DEFAULT_SEED", "diff_intervals", "mann_whitney_p"]
MIN_RESAMPLES = 200
WORK_BUDGET = 60_000_000  # values touched per signal per run across all resamples
_CHUNK_CELLS = 2_000_000  # resamples x values held in memory at once


@dataclass
class Interval:
    low: float
    high: float
    resamples: int

    @property
    def significant(self) -> bool:
        return self.low > 0 or self.high < 0


def _stat_from_weights(sorted_vals: np.ndarray, w: np.ndarray, stat: str, cw: np.ndarray | None = None) -> np.ndarray:
    """Row-wise statistic of `sorted_vals` under integer weights w (resamples x values); cw: cumsum of w."""
    total = w.sum(axis=1) if cw is None else cw[:, -1]
    if stat in ("mean", "value"):
        return (w @ sorted_vals) / np.maximum(total, 1)
    q = float(stat[1:]) / 100.0  # p95 -> 0.95; inverted-CDF percentile under the weights
    cw = np.cumsum(w, axis=1) if cw is None else cw
    target = np.maximum(np.ceil(q * total), 1)
    # one searchsorted over all rows: shift each row above the previous one (rows are non-decreasing)
    b, n = cw.shape
    shift = np.arange(b, dtype=np.int64) * (int(cw[:, -1].max()) + 1)
    idx = np.searchsorted((cw + shift[:, None]).ravel(), target + shift) - np.arange(b) * n
    return sorted_vals[np.clip(idx, 0, n - 1)]


def bootstrap_stats(v: Values, stats: list[str], resamples: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    order = np.argsort(v.values, kind="stable")
    sv, sg = v.values[order], v.groups[order]
    out: dict[str, list[np.ndarray]] = {s: [] for s in stats}
    chunk = max(1, min(resamples, _CHUNK_CELLS // max(sv.size, 1)))
    done = 0
    while done < resamples:
        b = min(chunk, resamples - done)
        picks = rng.integers(0, v.n_groups, size=(b, v.n_groups))
        flat = (picks + (np.arange(b) * v.n_groups)[:, None]).ravel()
        counts = np.bincount(flat, minlength=b * v.n_groups).reshape(b, v.n_groups)
        w = counts[:, sg]
        cw = np.cumsum(w, axis=1) if any(s.startswith("p") for s in stats) else None
        for s in stats:
            out[s].append(_stat_from_weights(sv, w, s, cw))
        done += b
    return {s: np.concatenate(a) for s, a in out.items()}


def resamples_for(n_values: int, requested: int) -> int:
    return int(max(MIN_RESAMPLES, min(requested, WORK_BUDGET // max(n_values, 1))))


def diff_intervals(
    base: Values,
    new: Values,
    stats: list[str],
    *,
    seed: int = DEFAULT_SEED,
    resamples: int = DEFAULT_RESAMPLES,
    confidence: float = 0.95,
) -> dict[str, Interval]:
    """CI of stat(new) - stat(base) for each stat; base and new are resampled independently."""
    b = resamples_for(max(base.values.size, new.values.size), resamples)
    rng = np.random.default_rng(seed)
    sb = bootstrap_stats(base, stats, b, rng)
    sn = bootstrap_stats(new, stats, b, rng)
    a = (1 - confidence) / 2
    out = {}
    for s in stats:
        d = sn[s] - sb[s]
        lo, hi = np.quantile(d, [a, 1 - a])
        out[s] = Interval(float(lo), float(hi), b)
    return out


def mann_whitney_p(base: np.ndarray | None, new: np.ndarray | None) -> float | None:
    if base is None or new is None or base.size < 3 or new.size < 3:
        return None
    try:
        from scipy.stats import mannwhitneyu
    except ImportError:
        return None
    return float(mannwhitneyu(base, new, alternative="two-sided").pvalue)
