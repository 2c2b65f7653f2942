"""Scrape stage: wait out metric lag, resolve the catalog against Prometheus, range-query the run window."""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field

from harness.metrics.catalog import CATALOG, DEFAULT_SIGNALS, MetricSignal, resolve, series_name
from harness.metrics.mathx import (
    aggregate_instants, counter_increase, gauge_stats, histogram_quantile, sum_by_le,
)

QUANTILES = {"p50": 0.5, "p90": 0.9, "p95": 0.95, "p99": 0.99, "p99.9": 0.999}


@dataclass
class Window:
    start: float  # epoch seconds: load start
    stats_start: float  # warmup end: statistics start here
    end: float  # load end


@dataclass
class ScrapeResult:
    resolved: dict[str, str | None]  # signal → series that answered (None: no series in this Prometheus)
    session: str | None
    settle_s: float
    settled: bool
    stats: dict[str, dict[str, float]]  # signal → {stat: value} in canonical units
    rows: list[dict] = field(default_factory=list)  # tidy time series: signal, t, value
    errors: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("rows")
        return d


class Prom:
    """Thin wrapper over prometheus-api-client with the few calls we need."""

    def __init__(self, url: str, timeout_s: float = 15.0):
        from prometheus_api_client import PrometheusConnect

        self.url = url
        self.api = PrometheusConnect(url=url, disable_ssl=True)
        self.timeout_s = timeout_s

    def names(self) -> set[str]:
        return set(self.api.all_metrics())

    def instant(self, q: str, at: float | None = None) -> list[dict]:
        params = {"time": at} if at is not None else None
        return self.api.custom_query(q, params=params)

    def scalar(self, q: str, at: float | None = None) -> float | None:
        res = self.instant(q, at)
        return float(res[0]["value"][1]) if res else None

    def range(self, q: str, start: float, end: float, step_s: float) -> list[dict]:
        from datetime import datetime, timezone

        return self.api.custom_query_range(
            q, start_time=datetime.fromtimestamp(start, timezone.utc), end_time=datetime.fromtimestamp(end, timezone.utc),
            step=f"{step_s:g}s",
        )


def _selector(sig: MetricSignal, metric: str, model: str, app: str | None, session: str | None) -> str:
    labels = []
    if sig.scope == "model":
        labels.append(f'model_name="{model}"')
    elif sig.scope == "app" and app:
        labels.append(f'application="{app}"')
    if session and metric.startswith("ray_"):
        labels.append(f'SessionName="{session}"')
    name = series_name(sig, metric)
    if ":" in name:  # colon names are valid PromQL identifiers, but quote them for safety with __name__
        return f'{{__name__="{name}",{",".join(labels)}}}' if labels else f'{{__name__="{name}"}}'
    return f"{name}{{{','.join(labels)}}}"


def current_session(prom: Prom, at: float, errors: list[str]) -> str | None:
    """Ray's SessionName whose series were fresh at `at`: keeps a restarted cluster's series apart."""
    q = "max by (SessionName) (timestamp({__name__=~\"ray_cluster_active_nodes|ray_serve_num_router_requests_total\"}))"
    try:
        res = [r for r in prom.instant(q, at) if r["metric"].get("SessionName")]
    except Exception as e:
        errors.append(f"could not determine Ray's SessionName: {e}")
        return None
    if not res:
        errors.append("no Ray series carry a SessionName: series of several Ray sessions may be mixed")
        return None
    return max(res, key=lambda r: float(r["value"][1]))["metric"]["SessionName"]


def settle(prom: Prom, queries: list[str], *, timeout_s: float, quiet_s: float, poll_s: float = 1.0) -> tuple[float, bool]:
    """Wait until the final counters stop moving (bounded). Returns (seconds waited, settled?)."""
    t0 = time.monotonic()
    last, since = None, t0
    while True:
        now = time.monotonic()
        try:
            vals = tuple(prom.scalar(f"sum({q})") for q in queries)
        except Exception:
            vals = None
        if vals != last:
            last, since = vals, now
        elif vals is not None and now - since >= quiet_s:
            return round(now - t0, 2), True
        if now - t0 >= timeout_s:
            return round(now - t0, 2), False
        time.sleep(poll_s)


def _points(res: dict) -> list[tuple[float, float]]:
    return [(float(t), float(v)) for t, v in res["values"]]


def _inside(points, start: float, end: float):
    return [(t, v) for t, v in points if start <= t <= end]


def scrape(
    prom_url: str, window: Window, *, model: str, app: str | None, step_s: float, scrape_interval_s: float,
    settle_timeout_s: float, settle_quiet_s: float, signals=DEFAULT_SIGNALS,
) -> ScrapeResult:
    prom = Prom(prom_url)
    errors: list[str] = []
    resolved = resolve(prom.names(), signals)
    session = current_session(prom, time.time(), errors)
    if app is None:  # external endpoint: nothing of ours runs in Serve
        resolved = {k: (v if CATALOG[k].scope != "app" else None) for k, v in resolved.items()}

    settle_on = [
        _selector(CATALOG[s], resolved[s], model, app, session)
        for s in ("serve_requests", "generation_tokens", "engine_requests") if resolved.get(s)
    ]
    settle_s, settled = settle(prom, settle_on, timeout_s=settle_timeout_s, quiet_s=settle_quiet_s) if settle_on else (0.0, False)
    end = time.time()
    if not settled and settle_on:
        errors.append(f"server counters still moving after {settle_s:.0f} s; server totals may be short")

    # born_grace: a series present at the window start shows up within one scrape interval of it
    grace = 1.5 * scrape_interval_s
    stats: dict[str, dict[str, float]] = {}
    rows: list[dict] = []
    for name in signals:
        metric = resolved.get(name)
        if metric is None:
            continue
        sig = CATALOG[name]
        sel = _selector(sig, metric, model, app, session)
        if sig.kind == "gauge" and sig.hold_s:  # Ray 2.60 exports the per-replica healthy gauge only at health checks
            sel = f"last_over_time({sel}[{sig.hold_s:g}s])"
        try:
            res = prom.range(sel, window.start - 2 * scrape_interval_s, end, step_s)
        except Exception as e:
            errors.append(f"{name}: query {sel} failed: {e}")
            continue
        if not res and not sig.zero_if_absent:
            continue
        if sig.kind == "gauge":
            agg = aggregate_instants([_points(r) for r in res], sig.agg)
            rows += [{"signal": name, "t": t, "value": v * sig.scale} for t, v in agg]
            st = gauge_stats([(t, v * sig.scale) for t, v in _inside(agg, window.stats_start, window.end)])
            if st:
                stats[name] = st
        elif sig.kind == "counter":
            inc = sum(counter_increase(_inside(_points(r), window.stats_start, end), window.stats_start, grace) for r in res)
            stats[name] = {"total": inc, "rate": inc / max(window.end - window.stats_start, 1e-9)}
            cum = aggregate_instants([_points(r) for r in res], "sum")
            rows += [{"signal": name, "t": t, "value": v} for t, v in cum]
        else:  # histogram: per-bucket increase over the stats window, summed by le
            per = [(r["metric"], counter_increase(_inside(_points(r), window.stats_start, end), window.stats_start, grace)) for r in res]
            buckets = sum_by_le(per)
            count = buckets.get(math.inf, 0.0)
            st = {k: v * sig.scale for k, q in QUANTILES.items() if (v := histogram_quantile(q, buckets)) is not None}
            if count > 0:
                st["count"] = count
                mean = _histogram_mean(prom, sig, metric, model, app, session, window, end, grace)
                if mean is not None:
                    st["mean"] = mean * sig.scale
                stats[name] = st
    return ScrapeResult(resolved=resolved, session=session, settle_s=settle_s, settled=settled, stats=stats, rows=rows, errors=errors)


def _histogram_mean(prom: Prom, sig, metric, model, app, session, window: Window, end: float, grace: float) -> float | None:
    parts = {}
    for suffix in ("sum", "count"):
        hs = MetricSignal(sig.name, "gauge", (), scope=sig.scope)
        sel = _selector(hs, f"{metric}_{suffix}", model, app, session)
        try:
            res = prom.range(sel, window.start, end, 1.0)
        except Exception:
            return None
        parts[suffix] = sum(counter_increase(_inside(_points(r), window.stats_start, end), window.stats_start, grace) for r in res)
    return parts["sum"] / parts["count"] if parts.get("count") else None
