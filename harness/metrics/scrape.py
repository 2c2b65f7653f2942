"""Scrape stage: wait out metric lag, resolve the catalog against Prometheus, range-query the run window."""

from __future__ import annotations

import math
import re
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC

from harness.metrics.catalog import CATALOG, DEFAULT_SIGNALS, DERIVED, MetricSignal, base_signals, resolve, series_name
from harness.metrics.mathx import (
    aggregate_instants,
    bridge_gaps,
    gauge_stats,
    histogram_quantile,
    increase_since,
    quantile_bucket,
    sum_by_le,
)

QUANTILES = {"p50": 0.5, "p90": 0.9, "p95": 0.95, "p99": 0.99, "p99.9": 0.999}


@dataclass
class Window:
    start: float  # epoch seconds: load start
    stats_start: float  # warmup end: statistics start here
    end: float  # stats end: the last stage's end, or the cooldown's start (never the drain's end)


# Ray 2.60's exporter rebuilds a histogram's _sum from bucket midpoints, not from the observed values.
LOOKBACK_S = 30.0  # how far before the load range queries reach, to see which counters already existed

MEAN_NOTE = "approximate: from _sum/_count, and Ray re-records every observation at its bucket's midpoint"


@dataclass
class ScrapeResult:
    resolved: dict[str, str | None]  # signal → series that answered (None: no series in this Prometheus)
    session: str | None
    settle_s: float  # how long we waited for the final counters to stop moving
    settled: bool
    stats: dict[str, dict[str, float]]  # signal → {stat: value} in canonical units
    lag_s: float | None = None  # load end → last observed change of the final counters (upper bound, poll resolution)
    histograms: dict[str, dict] = field(
        default_factory=dict
    )  # signal → {"le": [...], "counts": [...]} post-warmup, canonical units
    notes: dict[str, str] = field(default_factory=dict)  # "signal.stat" → caveat (e.g. approximate means)
    rows: list[dict] = field(default_factory=list)  # tidy time series: signal, t, value
    errors: list[str] = field(default_factory=list)
    session_source: str | None = None  # "cluster" (asked the connected cluster) | "newest sample" (fallback)
    export_interval_s: float | None = None  # Ray's metric export interval in force
    scrape_interval_s: float | None = None  # Prometheus's scrape interval for Ray's targets
    window_shift_s: float = 0.0  # server stats window = client stats window shifted by this (metric lag)
    ray_job: str | None = None  # Prometheus job Ray's series were read from (the discovery-file job), None: any
    # several models: model id → stats of the signals whose series carry model_name (engine series), that model's
    by_model: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)

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
        from datetime import datetime

        return self.api.custom_query_range(
            q,
            start_time=datetime.fromtimestamp(start, UTC),
            end_time=datetime.fromtimestamp(end, UTC),
            step=f"{step_s:g}",  # plain seconds: Prometheus rejects "0.5s" as a duration
        )


@dataclass(frozen=True)
class Scope:
    """Which series are ours: the model (engine series), the Serve app and its engine deployments, Ray's session."""

    model: str
    app: str | None = None
    session: str | None = None
    deployments: tuple[str, ...] = ()
    models: tuple[str, ...] = ()  # several served models: engine series of any of them (model_name=~"a|b")
    job: str | None = None  # the job that scrapes Ray's discovered targets (others may scrape the same nodes again)

    def selector(self, sig: MetricSignal, metric: str) -> str:
        labels = []
        if sig.scope == "model" and len(self.models) > 1:
            alts = "|".join(re.escape(m).replace("\\", "\\\\") for m in self.models)
            labels.append(f'model_name=~"{alts}"')
        elif sig.scope == "model":
            labels.append(f'model_name="{self.model}"')
        elif sig.scope == "app" and self.app:
            labels.append(f'application="{self.app}"')
            if self.deployments:  # an LLM app has ingress + engine deployments: count the engine's only
                # regex-escaped, then escaped again for the PromQL string literal ("\-" alone is a parse error)
                alts = "|".join(re.escape(d).replace("\\", "\\\\") for d in self.deployments)
                labels.append(f'deployment=~"{alts}"')
        if self.session and metric.startswith("ray_"):
            labels.append(f'SessionName="{self.session}"')
        if self.job and metric.startswith("ray_"):
            labels.append(f'job="{self.job}"')
        name = series_name(sig, metric)
        if ":" in name:  # colon names are valid PromQL identifiers, but quote them for safety with __name__
            return f'{{__name__="{name}",{",".join(labels)}}}' if labels else f'{{__name__="{name}"}}'
        return f"{name}{{{','.join(labels)}}}"


def current_session(prom: Prom, at: float, errors: list[str]) -> str | None:
    """Ray's SessionName whose series were fresh at `at`: keeps a restarted cluster's series apart.

    Reads raw samples of the last 5 minutes: Ray exports these gauges in bursts, so an instant query can land
    in a staleness gap.
    """
    q = '{__name__=~"ray_cluster_active_nodes|ray_serve_num_router_requests_total"}[5m]'
    try:
        res = [r for r in prom.instant(q, at) if r["metric"].get("SessionName")]
    except Exception as e:
        errors.append(f"could not determine Ray's SessionName: {e}")
        return None
    if not res:
        errors.append("no Ray series carry a SessionName: series of several Ray sessions may be mixed")
        return None
    return max(res, key=lambda r: max(float(t) for t, _ in r["values"]))["metric"]["SessionName"]


@dataclass
class Settle:
    waited_s: float
    settled: bool
    last_change_at: float | None  # epoch seconds of the last change seen (the first poll if nothing moved)


# Ray's processes export every 1 s on the local stack (RAY_metrics_report_interval_ms=1000; lag measured
# ≤ 1.1 s): a scrape taken this long after the load ended holds the final counters.
FINAL_AFTER_S = 1.5


def settle(
    prom: Prom,
    queries: list[str],
    *,
    timeout_s: float,
    quiet_s: float,
    poll_s: float = 0.25,
    final_after_s: float = FINAL_AFTER_S,
) -> Settle:
    """Wait until the final counters are in Prometheus (bounded by timeout_s), called right after the load.

    Final as soon as every counter's newest sample was scraped `final_after_s` after the wait began and the
    values did not move since the previous poll; or else once the values stayed unchanged for `quiet_s`.
    """
    t0, t0_epoch = time.monotonic(), time.time()
    last, since, changed_at = None, t0, None
    for _ in range(int(timeout_s / max(poll_s, 0.05)) + 2):
        now = time.monotonic()
        try:
            vals = tuple(prom.scalar(f"sum({q})") for q in queries)
            # newest scrape time of each counter (the timestamp() of an instant vector is its sample's)
            scraped = [prom.scalar(f"min(timestamp({q}))") for q in queries]
        except Exception:
            vals, scraped = None, []
        # a counter with no series yet (e.g. no request has finished) does not hold the wait up
        present = [s for s in scraped if s is not None]
        fresh = bool(present) and all(s >= t0_epoch + final_after_s for s in present)
        if vals != last:  # moved (or the first poll): look again
            last, since, changed_at = vals, now, time.time()
        elif vals is not None and (fresh or now - since >= quiet_s):
            return Settle(round(now - t0, 2), True, changed_at)
        if now - t0 >= timeout_s:
            break
        time.sleep(poll_s)
    return Settle(round(time.monotonic() - t0, 2), False, changed_at)


def _points(res: dict) -> list[tuple[float, float]]:
    return [(float(t), float(v)) for t, v in res["values"]]


def _inside(points, start: float, end: float):
    return [(t, v) for t, v in points if start <= t <= end]


def scrape_interval_s(prom: Prom) -> float | None:
    """Prometheus's scrape interval for its active targets (the longest, when jobs differ)."""
    try:
        import requests

        r = requests.get(prom.url.rstrip("/") + "/api/v1/targets", params={"state": "active"}, timeout=prom.timeout_s)
        vals = [_duration_s(t.get("scrapeInterval", "")) for t in r.json()["data"]["activeTargets"]]
    except Exception:
        return None
    known = [v for v in vals if v]
    return max(known) if known else None


def discovery_jobs(prom: Prom) -> list[str]:
    """Jobs whose targets come from Ray's discovery file (file_sd on prom_metrics_service_discovery.json).

    A Prometheus may scrape the same Ray node in a second job too (the compose stack's `ray-head-static`): its
    counters would count every request twice. Ray's series are read from the discovery job alone when there is
    exactly one."""
    try:
        import requests

        r = requests.get(prom.url.rstrip("/") + "/api/v1/targets", params={"state": "active"}, timeout=prom.timeout_s)
        targets = r.json()["data"]["activeTargets"]
    except Exception:
        return []
    jobs = {
        str(t.get("scrapePool") or (t.get("labels") or {}).get("job"))
        for t in targets
        if "prom_metrics_service_discovery" in str((t.get("discoveredLabels") or {}).get("__meta_filepath", ""))
    }
    return sorted(jobs)


def _duration_s(text: str) -> float | None:
    m = re.fullmatch(r"(?:(\d+)m)?(?:(\d+(?:\.\d+)?)s)?(?:(\d+)ms)?", text or "")
    if not m or not any(m.groups()):
        return None
    return int(m[1] or 0) * 60 + float(m[2] or 0) + int(m[3] or 0) / 1000.0


def scrape(
    prom_url: str,
    window: Window,
    *,
    model: str,
    app: str | None,
    step_s: float,
    settle_timeout_s: float,
    settle_quiet_s: float,
    signals=DEFAULT_SIGNALS,
    deployments: list[str] | None = None,
    session: str | None = None,
    export_interval_s: float | None = None,
    models: list[str] | None = None,
) -> ScrapeResult:
    """`session`: the connected cluster's SessionName (else the newest session in Prometheus is assumed);
    `export_interval_s`: Ray's metric export interval in force. Server statistics cover the client's stats
    window shifted by the metric lag those intervals imply. `models`: several served models: engine signals
    cover all of them, and `by_model` holds each one's own (series labelled model_name=<id>)."""
    from harness.metrics.cluster import server_window_shift_s

    prom = Prom(prom_url)
    errors: list[str] = []
    names = prom.names()
    resolved = resolve(names, signals)
    has_ray = any(n.startswith("ray_") for n in names)
    session_source = "cluster" if session else None
    if session is None and has_ray:  # plain `vllm serve` has no Ray series, hence no sessions to keep apart
        session = current_session(prom, time.time(), errors)
        session_source = "newest sample" if session else None
    si = scrape_interval_s(prom)
    shift = server_window_shift_s(export_interval_s if has_ray else None, si)
    raw_window = window
    window = Window(window.start, window.stats_start + shift, window.end + shift)
    jobs = discovery_jobs(prom) if has_ray else []
    ray_job = jobs[0] if len(jobs) == 1 else None
    scope = Scope(model, app, session, tuple(deployments or ()), tuple(models or ()), job=ray_job)
    if app is None:  # external endpoint: nothing of ours runs in Serve
        resolved = {k: (v if k in DERIVED or CATALOG[k].scope != "app" else None) for k, v in resolved.items()}
    parts = resolve(names, base_signals(signals)) | {k: v for k, v in resolved.items() if k in CATALOG}

    settle_on = [
        scope.selector(CATALOG[s], metric_name)
        for s in ("serve_requests", "generation_tokens", "engine_requests")
        if (metric_name := parts.get(s))
    ]
    st = (
        settle(prom, settle_on, timeout_s=settle_timeout_s, quiet_s=settle_quiet_s)
        if settle_on
        else Settle(0.0, False, None)
    )
    end = time.time()
    if not st.settled and settle_on:
        errors.append(f"server counters still moving after {st.waited_s:.0f} s; server totals may be short")
    lag = None if st.last_change_at is None else round(max(st.last_change_at - raw_window.end, 0.0), 2)

    out = ScrapeResult(
        resolved=resolved,
        session=session,
        settle_s=st.waited_s,
        settled=st.settled,
        stats={},
        lag_s=lag,
        errors=errors,
        session_source=session_source,
        export_interval_s=export_interval_s if has_ray else None,
        scrape_interval_s=si,
        window_shift_s=shift,
        ray_job=ray_job,
    )
    _query_all(out, prom, scope, parts, signals, window, end, step_s)
    if models and len(models) > 1:
        per_signals = tuple(s for s in signals if s in DERIVED or CATALOG[s].scope == "model")
        per_parts = {k: v for k, v in parts.items() if CATALOG[k].scope == "model"}
        for m in models:
            sub = ScrapeResult(resolved={}, session=session, settle_s=0.0, settled=True, stats={}, errors=errors)
            _query_all(sub, prom, Scope(m, app, session, job=ray_job), per_parts, per_signals, window, end, step_s)
            out.by_model[m] = sub.stats
    return out


def _query_all(
    out: ScrapeResult, prom: Prom, scope: Scope, parts: dict, signals, window: Window, end: float, step_s: float
) -> None:
    """Range-query every signal of `signals` that resolved (`parts`) into `out`."""
    # Range queries reach LOOKBACK_S before the load: a counter with no sample there was born during the run
    for name in base_signals(signals):
        metric = parts.get(name)
        if metric is None:
            continue
        sig = CATALOG[name]
        sel = scope.selector(sig, metric)
        try:
            res = prom.range(sel, window.start - LOOKBACK_S, end, step_s)
        except Exception as e:
            out.errors.append(f"{name}: query {sel} failed: {e}")
            continue
        if not res and not sig.zero_if_absent:
            continue
        series = [_points(r) for r in res]
        if sig.kind == "gauge":
            _gauge(out, name, sig, series, window, end, step_s)
        elif sig.kind == "counter":
            _counter(out, name, sig, series, window, end)
        else:
            _histogram(out, prom, name, sig, metric, res, window, end, scope)
    _absent_counters(out, parts)
    for name in signals:
        if name in DERIVED:
            _derived(out, name, window)
    out.stats = {k: v for k, v in out.stats.items() if k in signals}


def _absent_counters(out: ScrapeResult, parts: dict[str, str | None]) -> None:
    """Zero where zero is the truth: a counter without series while its source (engine / Serve app) exports others."""
    for name, metric in parts.items():
        sig = CATALOG[name]
        if (
            metric is None
            and sig.zero_if_absent
            and name not in out.stats
            and any(parts.get(o) and CATALOG[o].scope == sig.scope and CATALOG[o].kind != "counter" for o in parts)
        ):
            out.stats[name] = {"total": 0.0, "total_run": 0.0, "rate": 0.0}
            out.notes[name] = (
                "no series: 0 (counters appear only after their first increment; the source's other series exist)"
            )


def _gauge(out: ScrapeResult, name, sig: MetricSignal, series, window: Window, end: float, step_s: float) -> None:
    if sig.hold_s:  # sparse per-replica gauges: bridge short staleness gaps, never past a series' true end
        series = [bridge_gaps(pts, sig.hold_s, step_s, end) for pts in series]
    agg = [(t, v * sig.scale) for t, v in aggregate_instants(series, sig.agg)]
    out.rows += [{"signal": name, "t": t, "value": v} for t, v in agg]
    st = gauge_stats(_inside(agg, window.stats_start, window.end))
    if st:
        out.stats[name] = st


def _counter(out: ScrapeResult, name, sig: MetricSignal, series, window: Window, end: float) -> None:
    """`total`: post-warmup increase to the scrape's end; `total_run`: from load start (same span as all client
    samples); `rate`: increase within the stats window / its length (the drain after it is not counted)."""
    inc = sum(increase_since(_inside(p, -math.inf, end), window.stats_start) for p in series)
    run = sum(increase_since(_inside(p, -math.inf, end), window.start) for p in series)
    win = sum(increase_since(_inside(p, -math.inf, window.end), window.stats_start) for p in series)
    out.stats[name] = {
        "total": inc,
        "total_run": run,
        "total_stats_window": win,
        "rate": win / max(window.end - window.stats_start, 1e-9),
    }
    cum = aggregate_instants(series, "sum")
    out.rows += [{"signal": name, "t": t, "value": v} for t, v in cum]


def _histogram(
    out: ScrapeResult, prom: Prom, name, sig: MetricSignal, metric, res, window: Window, end, scope: Scope
) -> None:
    """Per-bucket increase over the stats window, summed by le, then Prometheus-style interpolation."""
    per = [(r["metric"], increase_since(_inside(_points(r), -math.inf, end), window.stats_start)) for r in res]
    per_run = [(r["metric"], increase_since(_inside(_points(r), -math.inf, end), window.start)) for r in res]
    buckets = sum_by_le(per)
    count = buckets.get(math.inf, 0.0)
    st = {k: v * sig.scale for k, q in QUANTILES.items() if (v := histogram_quantile(q, buckets)) is not None}
    if count <= 0:
        return
    bounds = {
        k: [lo * sig.scale, None if math.isinf(hi) else hi * sig.scale]  # JSON: null = +Inf
        for k, q in QUANTILES.items()
        if (b := quantile_bucket(q, buckets)) is not None
        for lo, hi in [b]
    }
    st["count"] = count
    st["count_run"] = sum_by_le(per_run).get(math.inf, 0.0)
    mean = _histogram_mean(prom, sig, metric, scope, window, end)
    if mean is not None:
        st["mean"] = mean * sig.scale
        if metric.startswith("ray_"):  # plain vLLM's _sum is exact; Ray's exporter rebuilds it from midpoints
            out.notes[f"{name}.mean"] = MEAN_NOTE
    out.stats[name] = st
    les = sorted(le for le in buckets if not math.isinf(le))  # JSON has no inf: the +Inf bucket is `count`
    out.histograms[name] = {
        "le": [le * sig.scale for le in les],
        "counts": [buckets[le] for le in les],
        "count": count,
        "quantile_buckets": bounds,
    }


def _derived(out: ScrapeResult, name: str, window: Window) -> None:
    d = DERIVED[name]
    num, den = out.stats.get(d.num), out.stats.get(d.den)
    if not num or not den:
        return
    if d.how == "counter_ratio":
        st = {}
        for k, key in (("value", "total"), ("value_run", "total_run")):
            if den.get(key):
                st[k] = num[key] / den[key]
        if st:
            out.stats[name] = st  # no queries in the window → no data, never 0
        return
    nums = {r["t"]: r["value"] for r in out.rows if r["signal"] == d.num}
    ratio = [
        (r["t"], nums[r["t"]] / r["value"]) for r in out.rows if r["signal"] == d.den and r["value"] and r["t"] in nums
    ]
    out.rows += [{"signal": name, "t": t, "value": v} for t, v in ratio]
    st = gauge_stats(_inside(ratio, window.stats_start, window.end))
    if st:
        out.stats[name] = st


def _histogram_mean(prom: Prom, sig, metric, scope: Scope, window: Window, end: float) -> float | None:
    parts = {}
    for suffix in ("sum", "count"):
        hs = MetricSignal(sig.name, "gauge", (), scope=sig.scope)
        sel = scope.selector(hs, f"{metric}_{suffix}")
        try:
            res = prom.range(sel, window.start - LOOKBACK_S, end, 1.0)
        except Exception:
            return None
        parts[suffix] = sum(increase_since(_points(r), window.stats_start) for r in res)
    return parts["sum"] / parts["count"] if parts.get("count") else None


def scrape_run(prom_url: str, scenario, dep, window: Window) -> ScrapeResult:
    """The scrape stage for one run: our model, our Serve app and its engine deployments, the scenario's settings,
    the connected cluster's SessionName and export interval (recorded by deploy)."""
    sc = scenario.scrape
    facts = (getattr(dep, "details", None) or {}).get("ray_metrics") or {}
    return scrape(
        prom_url,
        window,
        model=scenario.target.model,
        app=dep.app_name,
        deployments=dep.engine_deployments,
        step_s=sc.step_s,
        settle_timeout_s=sc.settle_timeout_s,
        settle_quiet_s=sc.settle_quiet_s,
        session=facts.get("session_name"),
        export_interval_s=facts.get("export_interval_s"),
        models=[m.name for m in scenario.target.models] or None,
    )
