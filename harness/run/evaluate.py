"""Evaluate stage with its records: client stats from the samples, server stats, SLO verdicts → summary.json.

The statistics and verdicts are pure functions (harness/slo); this module only gathers their inputs from the
stages before and writes the results into the run folder.
"""

from __future__ import annotations

import pandas as pd

from harness.load.prepare import workload_server_stats
from harness.metrics.scrape import ScrapeResult, Window
from harness.record import Recorder
from harness.record.schema import ModelStats, SliceStats, Summary
from harness.record.summary import build_summary, reconcile
from harness.run.faults import recovery_series, recovery_signal
from harness.scenario import Scenario
from harness.slo.evaluate import client_stats, evaluate_run, split_stats


def record_scrape(rec: Recorder, scraped: ScrapeResult) -> dict:
    """Scrape results into the record as soon as the stage ends: run.json section + series.parquet."""
    if scraped.rows:
        pd.DataFrame(scraped.rows).to_parquet(rec.dir / "series.parquet", index=False)
    return {"scrape": scraped.to_dict()}


def server_resolution(scraped: ScrapeResult | None) -> dict:
    """What each server histogram quantile really says: the bucket it lies in; means built from midpoints flagged."""
    if scraped is None:
        return {}
    out = {}
    for name, h in (scraped.histograms or {}).items():
        entry = {"quantile_buckets_ms": h.get("quantile_buckets") or {}}
        if f"{name}.mean" in (scraped.notes or {}):
            entry["mean_note"] = scraped.notes[f"{name}.mean"]
        out[name] = entry
    return out


def stream_warnings(client: dict) -> list[str]:
    b = client.get("stream_bunching") or {}
    if not b.get("bunched"):
        return []
    src = {
        "usage": "usage in every event",
        "tokenizer": "the tokenizer",
        "events": "nothing: one token per event assumed",
    }.get(b.get("token_count_source") or "", "nothing")
    return [
        f"streams arrived bunched: {b['multi_token_event_frac']:.0%} of SSE events carried several tokens and "
        f"{b['sub_ms_gap_frac']:.0%} of gaps between events were under 0.5 ms (engine or Serve coalescing, or a "
        f"lagging client). itl is per token (tokens per event counted from {src}); chunk_gap is per event"
    ]


def reconcile_context(scenario: Scenario, load) -> dict:
    """What the reconciliation can name as causes of a client/server gap."""
    vllm = getattr(scenario.target, "vllm", None)
    return {
        "generator_lag_p99_ms": (getattr(load, "generator", None) or {}).get("lag_p99_ms_max"),
        "stream_batching_interval_ms": getattr(vllm, "stream_batching_interval_ms", None)
        if scenario.target.engine == "vllm"
        else None,
    }


def evaluate_stage(
    scenario: Scenario,
    rec: Recorder,
    load,
    scraped: ScrapeResult | None,
    window: Window,
    faults=None,
    scrape_error: str | None = None,
    alerts=None,
) -> Summary:
    samples = pd.read_parquet(load.samples_path)
    client = client_stats(samples, max(window.end - window.stats_start, 0.0))
    server = dict(scraped.stats) if scraped else {}
    series = dict(scraped.resolved) if scraped else {}
    recon, warnings = reconcile(
        client,
        server,
        load.locust_requests,
        load.requests,
        scraped.histograms if scraped else None,
        reconcile_context(scenario, load),
    )
    why = f"scrape failed: {scrape_error}" if scrape_error else "run interrupted"
    warnings = (
        scraped.errors if scraped else [f"server metrics were not scraped ({why}): server SLOs have no data"]
    ) + warnings
    if load.message:
        warnings.insert(0, f"load: {load.message}")
    server, notes = workload_server_stats(getattr(load, "workload", {}), server)  # e.g. prefix-cache hit rate
    warnings += [f"load: {w}" for w in [*getattr(load, "warnings", []), *notes]]
    warnings += stream_warnings(client)
    fault_results = faults.finish(samples, load) if faults is not None else []  # [] without `faults:`
    server.update(recovery_signal(fault_results))
    series.update(recovery_series(fault_results))
    if alerts is not None:  # live alerts (local stack with Alertmanager)
        from harness.stack.alerts import ALERT_SOURCE, alert_signals, wait_node_alerts

        fired = wait_node_alerts(alerts, fault_results)
        rec.record.alerts = fired
        sig = alert_signals(fired, fault_results, window.start, window.end)
        server.update(sig)
        series.update({k: ALERT_SOURCE for k in sig})
    rows = pd.DataFrame(scraped.rows) if scraped and scraped.rows else None
    verdicts, extra = evaluate_run(
        scenario.model_dump(mode="json"),
        samples,
        rows,
        client,
        server,
        series,
        load_start=window.start,
        warmup_end=window.stats_start,
        load_end=window.end,
        server_by_model=scraped.by_model if scraped else None,
    )
    why_not = [f["no_recovery_reason"] for f in fault_results if f.get("no_recovery_reason")]
    for v in verdicts:  # a node fault without recovery: say why (e.g. pending placement), not "no series"
        if v.signal == "recovery_time" and v.observed is None and why_not:
            v.reason = f"no recovery: {why_not[0]}"
    status = "interrupted" if load.interrupted else ("failed" if load.exit_code != 0 else "completed")  # Locust died
    summary = build_summary(
        run_id=rec.record.run_id,
        scenario=scenario.name,
        status=status,
        verdicts=verdicts,
        client=client,
        server=server,
        server_series=series,
        reconciliation=recon,
        warnings=warnings,
        measure_only=scenario.measure_only,
    )
    summary.server_resolution = server_resolution(scraped)
    for k, v in extra.items():  # autoscaling analysis, scoped stats
        setattr(summary, k, v)
    dur = client.get("duration_s") or 0.0
    by_model = (scraped.by_model if scraped else None) or {}
    summary.models = {
        m: ModelStats.model_validate({**SliceStats.of(c).model_dump(), "server": by_model.get(m, {})})
        for m, c in split_stats(samples, "model", dur).items()
    }
    summary.request_kinds = {k: SliceStats.of(c) for k, c in split_stats(samples, "kind", dur).items()}
    if fault_results:
        summary.faults = rec.record.faults = fault_results
    rec.write_summary(summary)
    return summary
