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
SCALARS = {  # key -> (summary.client field, unit, worse direction)
    "error_rate": ("error_rate", "fraction", "up"),
    "throughput": ("output_tokens_per_s", "per_s", "down"),
    "request_rate": ("requests_per_s", "per_s", "down"),
}
# server signals where a higher value is worse (latencies, queues, preemptions); others get no direction
_SERVER_UP_IS_WORSE = ("server_ttft", "server_itl", "server_tpot", "server_e2e", "queue_time", "queue_waiting",
                       "preemptions", "serve_latency", "serve_errors", "scale_up_time")
_SKIP_SERVER_STATS = ("samples", "count")

Worse = Literal["up", "down", ""]


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
            unit = "ms" if sig.startswith("server_") or sig in ("queue_time", "serve_latency", "scale_up_time") else (
                "fraction" if sig == "kv_cache_usage" else "")
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


@dataclass
class Values:
    """Values of one signal with the request each came from (ITL: many gaps per request)."""

    values: np.ndarray  # float
    groups: np.ndarray  # int, request index of each value, 0..n_groups-1
    n_groups: int


def measured(samples: pd.DataFrame) -> pd.DataFrame:
    """Post-warmup rows (what the summary's client stats cover)."""
    return samples[~samples["warmup"].astype(bool)] if "warmup" in samples else samples


def signal_values(samples: pd.DataFrame, signal: str) -> Values | None:
    df = measured(samples)
    if signal == "error_rate":
        v = (~df["ok"].astype(bool)).to_numpy(dtype=float)
        return Values(v, np.arange(v.size), v.size) if v.size else None
    ok = df[df["ok"].astype(bool)]
    if signal == "itl":
        lists = [np.asarray(x, dtype=float) if x is not None else np.empty(0) for x in ok["itl_ms"]]
        if not lists:
            return None
        v = np.concatenate(lists)
        g = np.repeat(np.arange(len(lists)), [len(x) for x in lists])
        keep = ~np.isnan(v)
        return Values(v[keep], g[keep], len(lists)) if keep.any() else None
    col = f"{signal}_ms"
    if col not in ok:
        return None
    v = ok[col].to_numpy(dtype=float)
    v = v[~np.isnan(v)]
    return Values(v, np.arange(v.size), v.size) if v.size else None


def per_request(samples: pd.DataFrame, signal: str) -> np.ndarray | None:
    """One value per request (ITL: the request's mean gap), for rank tests."""
    ok = measured(samples)
    ok = ok[ok["ok"].astype(bool)]
    col = "itl_mean_ms" if signal == "itl" else f"{signal}_ms"
    if col not in ok:
        return None
    v = ok[col].to_numpy(dtype=float)
    v = v[~np.isnan(v)]
    return v if v.size else None


def rate_bins(samples: pd.DataFrame, start: float | None, end: float | None, what: str, bin_s: float = 1.0) -> np.ndarray | None:
    """Per-second rate of `what` (output tokens | requests) in whole bins of the measured window, by completion time."""
    if start is None or end is None or end - start < 5 * bin_s:
        return None
    df = measured(samples)
    ok = df[df["ok"].astype(bool)]
    done = ok["t_start_s"].to_numpy(dtype=float) + ok["e2e_ms"].to_numpy(dtype=float) / 1000.0
    n = int((end - start) // bin_s)
    idx = np.floor((done - start) / bin_s).astype(int)
    keep = (idx >= 0) & (idx < n)
    w = ok["output_tokens"].to_numpy(dtype=float) if what == "tokens" else np.ones(len(ok))
    return np.bincount(idx[keep], weights=np.nan_to_num(w[keep]), minlength=n) / bin_s


def cdf_points(values: np.ndarray, n: int = 100) -> dict:
    """Quantiles for an overlaid CDF plot: evenly spaced plus a finer tail (p99..max)."""
    p = np.unique(np.concatenate([np.linspace(0, 0.99, n), np.linspace(0.99, 1.0, 11)]))
    x = np.quantile(values, p)
    return {"x": [round(float(v), 4) for v in x], "p": [round(float(v), 4) for v in p]}
