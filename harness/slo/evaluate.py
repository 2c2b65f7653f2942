"""Evaluate stage: client statistics from raw samples and SLO verdicts. Pure functions, no I/O."""

from __future__ import annotations

import math
import operator
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from harness.slo.parse import SLO, parse_slo
from harness.slo.signals import SIGNALS

PCTS = {"p50": 50, "p90": 90, "p95": 95, "p99": 99, "p99.9": 99.9}
_OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}


def dist_stats(values) -> dict[str, float] | None:
    a = np.asarray(values, dtype=float)
    a = a[~np.isnan(a)]
    if a.size == 0:
        return None
    out = {k: float(np.percentile(a, q)) for k, q in PCTS.items()}  # linear interpolation between ranks
    out.update(max=float(a.max()), min=float(a.min()), mean=float(a.mean()), count=float(a.size))
    return out


def client_stats(samples: pd.DataFrame, duration_s: float) -> dict:
    """Statistics over the post-warmup samples. `duration_s`: the measured (post-warmup) window length."""
    df = samples[~samples["warmup"]] if "warmup" in samples else samples
    ok = df[df["ok"]] if len(df) else df
    n, n_err = int(len(df)), int((~df["ok"]).sum()) if len(df) else 0
    itl = np.concatenate([np.asarray(x, dtype=float) for x in ok["itl_ms"] if x is not None and len(x)]) if len(ok) else np.array([])
    out_tokens = float(ok["output_tokens"].sum()) if len(ok) else 0.0
    dur = max(duration_s, 1e-9)
    errors_by_class = {str(k): int(v) for k, v in df.loc[~df["ok"], "error"].value_counts().items()} if n_err else {}
    return {
        "ttft_ms": dist_stats(ok["ttft_ms"]) if len(ok) else None,
        "itl_ms": dist_stats(itl),
        "tpot_ms": dist_stats(ok["tpot_ms"]) if len(ok) else None,
        "e2e_ms": dist_stats(ok["e2e_ms"]) if len(ok) else None,
        "requests": n,
        "errors": n_err,
        "errors_by_class": errors_by_class,
        "error_rate": n_err / n if n else None,
        "output_tokens": out_tokens,
        "output_tokens_per_s": out_tokens / dur,
        "requests_per_s": (n - n_err) / dur,
        "duration_s": duration_s,
        "warmup_requests": int(samples["warmup"].sum()) if "warmup" in samples else 0,
    }


def observed_value(slo: SLO, client: dict, server: dict) -> float | None:
    """Look up the statistic an SLO names. None means no data (which never passes)."""
    s = slo.signal
    if s in ("ttft", "itl", "tpot", "e2e"):
        d = client.get(f"{s}_ms")
        return None if d is None else d.get(slo.stat)
    if s == "error_rate":
        return client.get("error_rate")
    if s == "requests":
        return float(client["requests"]) if slo.stat == "total" else client.get("requests_per_s")
    if s == "throughput":
        return client.get("output_tokens_per_s")
    if s == "request_rate":
        return client.get("requests_per_s")
    d = server.get(s)
    if not d:
        return None
    v = d.get(slo.stat)
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


@dataclass
class Verdict:
    slo: str
    signal: str
    stat: str
    op: str
    threshold: float
    observed: float | None
    passed: bool
    source: str
    unit: str
    reason: str

    def to_dict(self) -> dict:
        return asdict(self)


_UNIT = {"time": "ms", "ratio": "fraction", "count": "", "rate": "per_s"}


def evaluate(slos: list[str], client: dict, server: dict, server_series: dict[str, str | None] | None = None) -> list[Verdict]:
    out = []
    for text in slos:
        slo = parse_slo(text)
        kind = SIGNALS[slo.signal].kind
        obs = observed_value(slo, client, server)
        source = "client samples" if slo.source == "client" else f"prometheus: {(server_series or {}).get(slo.signal) or 'no series'}"
        if obs is None:
            passed, reason = False, "no data" + (" (no matching series in Prometheus)" if slo.source == "server" else "")
        else:
            passed = _OPS[slo.op](obs, slo.threshold)
            reason = "" if passed else f"observed {obs:.4g} is not {slo.op} {slo.threshold:.4g}"
        out.append(Verdict(slo.text, slo.signal, slo.stat, slo.op, slo.threshold, obs, passed, source, _UNIT[kind], reason))
    return out
