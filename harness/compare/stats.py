"""Which statistics a comparison shows, where each value comes from, and which direction is worse.

Metric keys are `<signal>.<stat>` with the signal names SLOs use (`ttft.p95`, `kv_cache_usage.max`); the
scalar client signals have no stat (`error_rate`, `throughput`, `request_rate`). Server signals are the
metric catalog's logical names, so records from different naming eras line up.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

DIST_SIGNALS = ("ttft", "itl", "tpot", "e2e")  # client latency distributions from raw samples
DIST_STATS = ("p50", "p90", "p95", "p99", "mean")
Worse = Literal["up", "down", ""]
SCALARS: dict[str, tuple[str, str, Worse]] = {  # key -> (summary.client field, unit, worse direction)
    "error_rate": ("error_rate", "fraction", "up"),
    "throughput": ("output_tokens_per_s", "per_s", "down"),
    "request_rate": ("requests_per_s", "per_s", "down"),
}
# server signals where a higher value is worse (latencies, queues, preemptions); others get no direction
_SERVER_UP_IS_WORSE = (
    "server_ttft",
    "server_itl",
    "server_tpot",
    "server_e2e",
    "queue_time",
    "queue_waiting",
    "preemptions",
    "serve_latency",
    "serve_errors",
    "scale_up_time",
)
_SKIP_SERVER_STATS = ("samples", "count")


@dataclass(frozen=True)
class Metric:
    key: str  # ttft.p95 | error_rate | server_ttft.p95
    signal: str
    stat: str  # p95, mean, value, max, ...
    unit: str  # ms | fraction | per_s | ''
    worse: Worse
    source: Literal["client", "server"]


def client_metrics() -> list[Metric]:
    out = [Metric(f"{s}.{st}", s, st, "ms", "up", "client") for s in DIST_SIGNALS for st in DIST_STATS]
    out += [Metric(k, k, "value", unit, worse, "client") for k, (_, unit, worse) in SCALARS.items()]
    return out


def server_metrics(summaries: list[dict]) -> list[Metric]:
    """Server signal stats present in every summary (a signal one run lacks cannot be compared)."""
    servers = [s.get("server") or {} for s in summaries]
    if not servers:
        return []
    out = []
    for sig in sorted(set.intersection(*(set(s) for s in servers))):
        stats = set.intersection(*(set(s[sig] or {}) for s in servers)) - set(_SKIP_SERVER_STATS)
        for st in sorted(stats):
            unit = (
                "ms"
                if sig.startswith("server_") or sig in ("queue_time", "serve_latency", "scale_up_time")
                else ("fraction" if sig == "kv_cache_usage" else "")
            )
            out.append(Metric(f"{sig}.{st}", sig, st, unit, "up" if sig in _SERVER_UP_IS_WORSE else "", "server"))
    return out


def observed(metric: Metric, summary: dict) -> float | None:
    """The stored value of a metric in a summary (canonical units)."""
    if metric.source == "server":
        v = ((summary.get("server") or {}).get(metric.signal) or {}).get(metric.stat)
    elif metric.signal in SCALARS:
        v = (summary.get("client") or {}).get(SCALARS[metric.signal][0])
    else:
        v = ((summary.get("client") or {}).get(f"{metric.signal}_ms") or {}).get(metric.stat)
    return None if v is None or (isinstance(v, float) and np.isnan(v)) else float(v)


# ---------- per-request values from samples.parquet (the source of significance) ----------

BLOCK_S = 5.0  # resampling block: requests (and rate bins) within one block of time move together
MIN_BLOCKS = 8


@dataclass
class Values:
    """Values of one signal with the resampling group each came from: a block of time (all values of the
    requests that started in it), so stretches of a run that moved together are resampled together."""

    values: np.ndarray  # float
    groups: np.ndarray  # int, block index of each value, 0..n_groups-1
    n_groups: int


def measured(samples: pd.DataFrame) -> pd.DataFrame:
    """Exactly the rows the summary's client stats and the SLO evaluation use (warmup and cooldown dropped)."""
    from harness.slo.evaluate import measured as slo_measured

    return slo_measured(samples)


def time_blocks(t: np.ndarray, block_s: float = BLOCK_S, min_blocks: int = MIN_BLOCKS) -> tuple[np.ndarray, int]:
    """Block index per start time: blocks of block_s, shorter when the run is too short for min_blocks."""
    if t.size == 0:
        return np.zeros(0, dtype=int), 0
    span = float(t.max() - t.min())
    width = min(block_s, span / min_blocks) if span > 0 else 1.0
    raw = np.floor((t - t.min()) / max(width, 1e-9)).astype(int)
    uniq, idx = np.unique(raw, return_inverse=True)  # empty blocks dropped
    return idx.astype(int), int(uniq.size)


def signal_values(samples: pd.DataFrame, signal: str) -> Values | None:
    from harness.slo.evaluate import latency_column

    df = measured(samples)
    if signal == "error_rate":
        v = (~df["ok"].astype(bool)).to_numpy(dtype=float)
        g, n = time_blocks(df["t_start_s"].to_numpy(dtype=float))
        return Values(v, g, n) if v.size else None
    ok = df[df["ok"].astype(bool)]
    g_req, n_blocks = time_blocks(ok["t_start_s"].to_numpy(dtype=float))
    if signal in ("itl", "chunk_gap"):
        col = f"{signal}_ms" if f"{signal}_ms" in ok else "itl_ms"
        lists = [np.asarray(x, dtype=float) if x is not None else np.empty(0) for x in ok[col]]
        if not lists:
            return None
        v = np.concatenate(lists)
        g = np.repeat(g_req, [len(x) for x in lists])
        keep = ~np.isnan(v)
        return Values(v[keep], g[keep], n_blocks) if keep.any() else None
    col = latency_column(samples, signal)
    if col not in ok:
        return None
    v = ok[col].to_numpy(dtype=float)
    keep = ~np.isnan(v)
    return Values(v[keep], g_req[keep], n_blocks) if keep.any() else None


def per_request(samples: pd.DataFrame, signal: str) -> np.ndarray | None:
    """One value per request (ITL: the request's mean gap), for rank tests."""
    from harness.slo.evaluate import latency_column

    ok = measured(samples)
    ok = ok[ok["ok"].astype(bool)]
    col = "itl_mean_ms" if signal == "itl" else latency_column(samples, signal)
    if col not in ok:
        return None
    v = ok[col].to_numpy(dtype=float)
    v = v[~np.isnan(v)]
    return v if v.size else None


def rate_bins(
    samples: pd.DataFrame, start: float | None, end: float | None, what: str, bin_s: float = 1.0
) -> np.ndarray | None:
    """Rate of `what` (output tokens | requests of ok requests) per bin of the stats window, by start time: the
    same requests the summary's throughput and request rate count, so the bins' mean is the reported value. The
    window [start, end) is cut into whole bins of about bin_s."""
    if start is None or end is None or end - start < 5 * bin_s:
        return None
    df = measured(samples)
    ok = df[df["ok"].astype(bool)]
    n = max(int(round((end - start) / bin_s)), 1)
    width = (end - start) / n
    idx = np.floor((ok["t_start_s"].to_numpy(dtype=float) - start) / width).astype(int)
    keep = (idx >= 0) & (idx < n)
    w = ok["output_tokens"].to_numpy(dtype=float) if what == "tokens" else np.ones(len(ok))
    return np.bincount(idx[keep], weights=np.nan_to_num(w[keep]), minlength=n) / width


def bin_blocks(
    n_bins: int, bin_s: float = 1.0, block_s: float = BLOCK_S, min_blocks: int = MIN_BLOCKS
) -> tuple[np.ndarray, int]:
    """Consecutive rate bins grouped into blocks (a moving stretch of throughput is resampled as one)."""
    per = max(1, min(int(round(block_s / bin_s)), n_bins // min_blocks))
    g = np.arange(n_bins) // per
    return g, int(g.max()) + 1 if n_bins else 0


def cdf_points(values: np.ndarray, n: int = 100) -> dict:
    """Quantiles for an overlaid CDF plot: evenly spaced plus a finer tail (p99..max)."""
    p = np.unique(np.concatenate([np.linspace(0, 0.99, n), np.linspace(0.99, 1.0, 11)]))
    x = np.quantile(values, p)
    return {"x": [round(float(v), 4) for v in x], "p": [round(float(v), 4) for v in p]}
