"""Evaluate stage: client statistics from raw samples and SLO verdicts. Pure functions, no I/O."""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from harness.metrics.mathx import gauge_stats
from harness.slo import autoscaling as autoscaling_mod
from harness.slo.parse import SLO, STEADY, parse_slo
from harness.slo.signals import SIGNALS

PCTS = {"p50": 50, "p90": 90, "p95": 95, "p99": 99, "p99.9": 99.9}
_OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge, "==": operator.eq}
# goodput criteria (scenario `goodput:` keys) → the per-request sample column they bound
GOODPUT_COLUMNS = {"ttft_ms": "ttft_ms", "tpot_ms": "tpot_ms", "e2e_ms": "e2e_ms", "itl_max_ms": "itl_max_ms"}
BUNCHED_EVENT_FRAC = 0.05  # more multi-token events than this: the stream arrived bunched
BUNCHED_GAP_FRAC = 0.2  # or more sub-millisecond gaps between events than this (several events per network read)
_SUB_MS = 0.5


def open_loop(samples: pd.DataFrame) -> bool:
    """Open-loop samples carry the arrival's scheduled time (sched_s)."""
    return "ttft_sched_ms" in samples and "sched_s" in samples and bool(samples["sched_s"].notna().any())


def latency_column(samples: pd.DataFrame, signal: str) -> str:
    """The column a latency signal reads: in open loop TTFT and e2e count from the *scheduled* arrival, so time
    spent waiting behind a concurrency cap or a late generator is not omitted (coordinated omission); from-send
    figures stay in `<signal>_ms` and are reported beside them."""
    if signal in ("ttft", "e2e") and open_loop(samples):
        return f"{signal}_sched_ms"
    return f"{signal}_ms"


def dist_stats(values) -> dict[str, float] | None:
    a = np.asarray(values, dtype=float)
    a = a[~np.isnan(a)]
    if a.size == 0:
        return None
    out = {k: float(np.percentile(a, q)) for k, q in PCTS.items()}  # linear interpolation between ranks
    out.update(max=float(a.max()), min=float(a.min()), mean=float(a.mean()), count=float(a.size))
    return out


def measured(samples: pd.DataFrame) -> pd.DataFrame:
    """Samples that count: not in the warmup, not in the cooldown (load.cooldown_s)."""
    keep = pd.Series(True, index=samples.index)
    for col in ("warmup", "cooldown"):
        if col in samples:
            keep &= ~samples[col].fillna(False).astype(bool)
    return samples[keep]


def _flat(ok: pd.DataFrame, col: str) -> np.ndarray:
    if col not in ok or not len(ok):
        return np.array([])
    parts = [np.asarray(x, dtype=float) for x in ok[col] if x is not None and len(x)]
    return np.concatenate(parts) if parts else np.array([])


def bunching(ok: pd.DataFrame) -> dict | None:
    """How bunched the streams arrived: multi-token SSE events, and sub-millisecond gaps between events."""
    if "events" not in ok or not len(ok) or ok["events"].isna().all():
        return None
    events = float(ok["events"].fillna(0).sum())
    multi = float(ok["multi_token_events"].fillna(0).sum()) if "multi_token_events" in ok else 0.0
    gaps = _flat(ok, "chunk_gap_ms")
    src = ok["token_count_source"].dropna().value_counts() if "token_count_source" in ok else pd.Series(dtype=int)
    out = {
        "events": int(events),
        "multi_token_event_frac": multi / events if events else 0.0,
        "sub_ms_gap_frac": float((gaps < _SUB_MS).mean()) if gaps.size else 0.0,
        "token_count_source": str(src.index[0]) if len(src) else None,
    }
    out["bunched"] = out["multi_token_event_frac"] > BUNCHED_EVENT_FRAC or out["sub_ms_gap_frac"] > BUNCHED_GAP_FRAC
    return out


def client_stats(samples: pd.DataFrame, duration_s: float) -> dict:
    """Statistics over the post-warmup samples. `duration_s`: the measured (post-warmup) window length.

    Open loop: `ttft_ms` and `e2e_ms` count from the scheduled arrival (`*_from_send_ms`: from the send);
    dropped arrivals (never sent) are failed requests. `itl_ms` is per token, `chunk_gap_ms` per SSE event."""
    df = measured(samples)
    ok = df[df["ok"]] if len(df) else df
    n, n_err = int(len(df)), int((~df["ok"]).sum()) if len(df) else 0
    itl = _flat(ok, "itl_ms")
    is_open = open_loop(samples)
    n_drop = int((df["error"] == "dropped").sum()) if len(df) and "error" in df else 0
    out_tokens = float(ok["output_tokens"].sum()) if len(ok) else 0.0
    dur = max(duration_s, 1e-9)
    errors_by_class = {str(k): int(v) for k, v in df.loc[~df["ok"], "error"].value_counts().items()} if n_err else {}
    extra: dict = {}
    if is_open:
        extra = {
            "ttft_from_send_ms": dist_stats(ok["ttft_ms"]) if len(ok) else None,
            "e2e_from_send_ms": dist_stats(ok["e2e_ms"]) if len(ok) else None,
        }
    return {
        "latency_from": "scheduled arrival" if is_open else "send",
        "ttft_ms": dist_stats(ok[latency_column(samples, "ttft")]) if len(ok) else None,
        "ttft_content_ms": dist_stats(ok["ttft_content_ms"]) if len(ok) and "ttft_content_ms" in ok else None,
        "itl_ms": dist_stats(itl),
        "chunk_gap_ms": dist_stats(_flat(ok, "chunk_gap_ms")),
        "tpot_ms": dist_stats(ok["tpot_ms"]) if len(ok) else None,
        "e2e_ms": dist_stats(ok[latency_column(samples, "e2e")]) if len(ok) else None,
        **extra,
        "stream_bunching": bunching(ok),
        "dropped_arrivals": n_drop,
        "dropped_fraction": n_drop / n if n else None,
        "requests": n,
        "errors": n_err,
        "errors_by_class": errors_by_class,
        "error_rate": n_err / n if n else None,
        "output_tokens": out_tokens,
        "output_tokens_per_s": out_tokens / dur,
        "requests_per_s": (n - n_err) / dur,
        "duration_s": duration_s,
        **reply_kinds(ok),
        "warmup_requests": int(samples["warmup"].sum()) if "warmup" in samples else 0,
        "cooldown_requests": int(samples["cooldown"].fillna(False).astype(bool).sum()) if "cooldown" in samples else 0,
    }


def reply_kinds(ok: pd.DataFrame) -> dict:
    """Reasoning tokens and tool-call replies of the successful requests (columns absent in older samples)."""
    r = ok["reasoning_tokens"].dropna() if "reasoning_tokens" in ok else pd.Series(dtype=float)
    tc = ok["tool_call"].fillna(False).astype(bool) if "tool_call" in ok else pd.Series(dtype=bool)
    return {
        "reasoning_tokens": float(r.sum()) if len(r) else 0.0,
        "reasoning_tokens_per_request": dist_stats(r) if len(r) and r.any() else None,
        "tool_call_replies": int(tc.sum()),
    }


def model_names(samples: pd.DataFrame) -> list[str]:
    """Models the samples went to, most requests first (none recorded: [])."""
    if "model" not in samples or not len(samples):
        return []
    return [str(m) for m in samples["model"].dropna().value_counts().index]


def by_column(samples: pd.DataFrame, col: str, value: str) -> pd.DataFrame:
    return samples[samples[col] == value] if col in samples else samples.iloc[0:0]


def split_stats(samples: pd.DataFrame, col: str, duration_s: float) -> dict[str, dict]:
    """client_stats per value of `col` (model, kind) over the same measured window; {} when there is one value."""
    if col not in samples:
        return {}
    values = [str(v) for v in samples[col].dropna().unique()]
    if len(values) < 2:
        return {}
    return {v: client_stats(by_column(samples, col, v), duration_s) for v in sorted(values)}


def goodput_stats(samples: pd.DataFrame, criteria: dict[str, float], duration_s: float) -> dict:
    """Requests that succeeded AND met every criterion (`ttft_ms`, `tpot_ms`, `e2e_ms`, `itl_max_ms`: upper
    bounds, as `vllm bench serve --goodput`): rate per second, attainment (share of all post-warmup requests)."""
    df = measured(samples)
    good = df["ok"].astype(bool) if len(df) else pd.Series([], dtype=bool)
    for key, limit in criteria.items():
        if limit is None or not len(df):
            continue
        c = GOODPUT_COLUMNS[key]
        col = df[latency_column(samples, c[:-3]) if c in ("ttft_ms", "e2e_ms") else c].astype(float)
        good &= col.notna() & (col <= float(limit))
    n_good, n = int(good.sum()) if len(df) else 0, int(len(df))
    return {
        "criteria": {k: v for k, v in criteria.items() if v is not None},
        "total": float(n_good),
        "rate": n_good / max(duration_s, 1e-9),
        "attainment": (n_good / n) if n else None,
        "requests": n,
    }


def _stat(d: dict | None, stat: str) -> float | None:
    if not d:
        return None
    v = d.get(stat)
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def observed_value(slo: SLO, client: dict, server: dict, derived: dict | None = None) -> float | None:
    """Look up the statistic an SLO names. None means no data (which never passes)."""
    s = slo.signal
    if s in ("ttft", "itl", "tpot", "e2e", "chunk_gap", "ttft_content"):
        return _stat(client.get(f"{s}_ms"), slo.stat)
    if s == "dropped_arrivals":
        return float(client.get("dropped_arrivals") or 0) if slo.stat == "total" else client.get("dropped_fraction")
    if s == "error_rate":
        return client.get("error_rate")
    if s == "requests":
        return float(client["requests"]) if slo.stat == "total" else client.get("requests_per_s")
    if s == "errors":
        n = client.get("errors")
        dur = client.get("duration_s") or 0.0
        return None if n is None else (float(n) if slo.stat == "total" else n / max(dur, 1e-9))
    if s == "throughput":
        return client.get("output_tokens_per_s")
    if s == "request_rate":
        return client.get("requests_per_s")
    if s == "goodput":
        return _stat(client.get("goodput"), slo.stat)
    if SIGNALS[s].source == "autoscaling" or (derived and s in derived and s not in server):
        return _stat((derived or {}).get(s), slo.stat)
    return _stat(server.get(s), slo.stat)


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
    scope: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


_UNIT = {"time": "ms", "ratio": "fraction", "count": "", "rate": "per_s"}


@dataclass
class EvalContext:
    """Everything beyond the whole-run stats that verdicts may need (all optional)."""

    autoscaling: dict | None = None  # autoscaling.analyze() output
    scoped: dict[str, dict] = field(
        default_factory=dict
    )  # scope → {"client": stats, "server": stats, "windows_s": ...}
    max_replicas: int | None = None  # scenario cap, to explain replica SLOs that cannot pass


def _source(slo: SLO, server_series: dict, ctx: EvalContext) -> str:
    if slo.source == "client":
        src = "client samples"
    elif slo.source == "autoscaling":
        w = (ctx.autoscaling or {}).get("wanted_series") or "desired"
        src = f"prometheus: replicas vs {w}, aligned with the load stages"
    else:
        src = f"prometheus: {server_series.get(slo.signal) or 'no series'}"
    return src + (f" @{slo.scope}" if slo.scope else "")


def _no_data_reason(slo: SLO, ctx: EvalContext) -> str:
    if slo.source == "autoscaling" or slo.signal == "replica_starts":
        if ctx.autoscaling is None:
            return "no data (no replica series in Prometheus: autoscaling cannot be judged)"
        note = ctx.autoscaling.get("notes", {}).get(slo.signal)
        return f"no data: {note}" if note else "no data"
    if slo.signal == "goodput":
        return "no data (no post-warmup requests)"
    if slo.scope:
        return f"no data in scope @{slo.scope}"
    return "no data" + (" (no matching series in Prometheus)" if slo.source == "server" else "")


def _fail_reason(slo: SLO, obs: float, ctx: EvalContext) -> str:
    reason = f"observed {obs:.4g} is not {slo.op} {slo.threshold:.4g}"
    if (
        slo.signal in ("replicas", "desired_replicas", "target_replicas")
        and slo.op in (">", ">=")
        and ctx.max_replicas is not None
        and slo.threshold > ctx.max_replicas - (0 if slo.op == ">=" else 1)
    ):
        reason += (
            f": the scenario caps target.autoscaling.max_replicas at {ctx.max_replicas}, so this SLO cannot "
            f"pass; raise max_replicas or lower the SLO"
        )
    return reason


def evaluate(
    slos: list[str],
    client: dict,
    server: dict,
    server_series: dict[str, str | None] | None = None,
    ctx: EvalContext | None = None,
) -> list[Verdict]:
    ctx = ctx or EvalContext()
    derived = (ctx.autoscaling or {}).get("stats", {})
    out = []
    for text in slos:
        slo = parse_slo(text)
        kind = SIGNALS[slo.signal].kind_of(slo.stat)
        if slo.scope:
            sc = ctx.scoped.get(slo.scope) or {}
            obs = observed_value(slo, sc.get("client") or {}, sc.get("server") or {}) if sc else None
        else:
            obs = observed_value(slo, client, server, derived)
        if obs is None:
            passed, reason = False, _no_data_reason(slo, ctx)
        else:
            passed = _OPS[slo.op](obs, slo.threshold)
            reason = "" if passed else _fail_reason(slo, obs, ctx)
        out.append(
            Verdict(
                slo.text,
                slo.signal,
                slo.stat,
                slo.op,
                slo.threshold,
                obs,
                passed,
                _source(slo, server_series or {}, ctx),
                _UNIT[kind],
                reason,
                slo.scope,
            )
        )
    return out


# ---------- scopes: one stage, or the steady part of the run ----------


def scope_windows(
    scope: str, windows: Sequence[autoscaling_mod.StageWindow], warmup_end: float
) -> list[tuple[float, float]]:
    if scope == STEADY:
        return autoscaling_mod.steady_windows(windows, warmup_end)
    return [(max(w.start, warmup_end), w.end) for w in windows if w.name == scope and max(w.start, warmup_end) < w.end]


def _in_windows(t: pd.Series, spans: list[tuple[float, float]]) -> pd.Series:
    m = pd.Series(False, index=t.index)
    for a, b in spans:
        m |= (t >= a) & (t < b)
    return m


def model_scope_stats(
    model: str, samples: pd.DataFrame, duration_s: float, server: dict | None, goodput: dict | None = None
) -> dict:
    """`@model:<id>`: the requests sent to that model over the whole measured window, and the server stats of
    the series labelled model_name=<id>."""
    sub = by_column(samples, "model", model)
    client = client_stats(sub, duration_s)
    if goodput:
        client["goodput"] = goodput_stats(sub, goodput, duration_s)
    return {"client": client, "server": dict(server or {}), "duration_s": duration_s}


def scoped_stats(
    scope: str,
    samples: pd.DataFrame,
    rows: pd.DataFrame | None,
    windows,
    warmup_end: float,
    goodput: dict | None = None,
) -> dict:
    """Client and server-gauge stats restricted to the scope's time spans (requests by start time)."""
    spans = scope_windows(scope, windows, warmup_end)
    dur = sum(b - a for a, b in spans)
    sub = samples[_in_windows(samples["t_start_s"], spans)] if len(samples) else samples
    sub = sub.assign(warmup=False) if "warmup" in sub else sub
    client = client_stats(sub, dur)
    if goodput:
        client["goodput"] = goodput_stats(sub, goodput, dur)
    server: dict[str, dict[str, float]] = {}
    if rows is not None and len(rows):
        for name in rows["signal"].unique():
            sig = SIGNALS.get(name)
            if sig is None or sig.source != "server" or not sig.scopable:
                continue
            r = rows[(rows["signal"] == name) & _in_windows(rows["t"], spans)]
            st = gauge_stats(list(zip(r["t"].astype(float), r["value"].astype(float))))
            if st:
                server[name] = st
    return {
        "client": client,
        "server": server,
        "spans_s": [(round(a, 3), round(b, 3)) for a, b in spans],
        "duration_s": dur,
    }


def evaluate_run(
    scenario: dict,
    samples: pd.DataFrame,
    rows: pd.DataFrame | None,
    client: dict,
    server: dict,
    server_series: dict,
    *,
    load_start: float,
    warmup_end: float,
    load_end: float,
    server_by_model: dict[str, dict] | None = None,
) -> tuple[list[Verdict], dict]:
    """Verdicts for the whole record, plus what the summary carries beyond them (goodput, autoscaling, scopes).

    `scenario`: the resolved scenario as a dict; `rows`: the scraped series (signal, t, value) or None;
    `server_by_model`: model id → server stats of its model_name-labelled series (several models)."""
    stages = scenario["load"]["stages"]
    windows = autoscaling_mod.stage_windows(stages, load_start)
    criteria = {k: v for k, v in (scenario.get("goodput") or {}).items() if v is not None}
    if criteria:
        client["goodput"] = goodput_stats(samples, criteria, client.get("duration_s") or 0.0)
    auto = (
        autoscaling_mod.analyze(rows, stages, load_start, warmup_end, load_end)
        if rows is not None and len(rows)
        else None
    )
    parsed = [parse_slo(t) for t in scenario.get("slos", [])]
    scopes = sorted({s.scope for s in parsed if s.scope and s.model is None})
    scoped = {sc: scoped_stats(sc, samples, rows, windows, warmup_end, criteria or None) for sc in scopes}
    dur = client.get("duration_s") or 0.0
    for s in parsed:
        if s.model is not None and s.scope is not None and s.scope not in scoped:
            scoped[s.scope] = model_scope_stats(
                s.model, samples, dur, (server_by_model or {}).get(s.model), criteria or None
            )
    ctx = EvalContext(
        autoscaling=auto,
        scoped=scoped,
        max_replicas=(scenario.get("target", {}).get("autoscaling") or {}).get("max_replicas"),
    )
    verdicts = evaluate(scenario.get("slos", []), client, server, server_series, ctx)
    extra: dict[str, Any] = {}
    if auto is not None:
        extra["autoscaling"] = auto
    if scoped:
        extra["scopes"] = scoped
    return verdicts, extra
