"""Evaluate stage: client stats from the samples, server stats, SLO verdicts → the summary (typed, not yet written).

The statistics and verdicts are pure functions (harness/slo); this module gathers their inputs from the stages
before (`EvaluateInputs`) and assembles the typed result (`Evaluation`), which the pipeline hands to the Recorder.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from harness.load.correctness import outputs_signal
from harness.load.images import image_stats
from harness.load.prepare import workload_server_stats
from harness.load.runner import LoadResult
from harness.metrics.scrape import ScrapeResult, Window
from harness.record.schema import (
    ClientStats,
    Correctness,
    Goodput,
    ModelStats,
    ScopeStats,
    ServerStat,
    SliceStats,
    Status,
    Summary,
)
from harness.record.summary import build_summary, reconcile
from harness.run.faults import FaultInjector, recovery_series, recovery_signal
from harness.scenario import Scenario
from harness.slo import autoscaling as autoscaling_mod
from harness.slo.evaluate import (
    EvalContext,
    Verdict,
    client_stats,
    evaluate,
    goodput_stats,
    model_scope_stats,
    scoped_stats,
    split_stats,
)
from harness.slo.parse import parse_slo
from harness.stack.alerts import AlertReceiver


@dataclass(frozen=True)
class EvaluateInputs:
    """What the evaluate stage reads from the stages before it."""

    scenario: Scenario
    run_id: str
    load: LoadResult
    window: Window  # the client stats window (load start, warmup end, stats end)
    scraped: ScrapeResult | None  # None: scrape skipped (interrupted) or failed (`scrape_error`)
    scrape_error: str | None = None
    faults: FaultInjector | None = None  # scenario `faults:` running beside the load
    alerts: AlertReceiver | None = None  # local Alertmanager's receiver (None without one)
    correctness: Correctness | None = None  # workload.correctness probes (None: none sent)


@dataclass(frozen=True)
class Evaluation:
    summary: Summary
    alerts: list[dict[str, Any]] | None  # alerts delivered during the run (None: no local Alertmanager)
    faults: list[dict[str, Any]] = field(default_factory=list)  # fault report ([] without `faults:`)


@dataclass(frozen=True)
class RunEvaluation:
    """`evaluate_run`'s result: the verdicts and what the summary carries beyond them."""

    verdicts: list[Verdict]
    client: ClientStats  # the input stats, with `goodput` when the scenario sets criteria
    autoscaling: dict[str, Any] | None  # harness/slo/autoscaling.py analyze(); None without replica series
    scopes: dict[str, ScopeStats] | None  # per SLO scope; None without scoped SLOs


def measure_client(samples: pd.DataFrame, window: Window) -> ClientStats:
    """Client statistics over the window's measured part (typed)."""
    return ClientStats.model_validate(client_stats(samples, max(window.end - window.stats_start, 0.0)))


def server_resolution(scraped: ScrapeResult | None) -> dict[str, dict[str, Any]]:
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


def stream_warnings(client: ClientStats) -> list[str]:
    b = client.stream_bunching
    if b is None or not b.bunched:
        return []
    src = {
        "usage": "usage in every event",
        "tokenizer": "the tokenizer",
        "events": "nothing: one token per event assumed",
    }.get(b.token_count_source or "", "nothing")
    return [
        f"streams arrived bunched: {b.multi_token_event_frac:.0%} of SSE events carried several tokens and "
        f"{b.sub_ms_gap_frac:.0%} of gaps between events were under 0.5 ms (engine or Serve coalescing, or a "
        f"lagging client). itl is per token (tokens per SSE event counted from {src}); chunk_gap is per event"
    ]


def reconcile_context(scenario: Scenario, load: LoadResult) -> dict[str, float | None]:
    """What the reconciliation can name as causes of a client/server gap."""
    vllm = scenario.target.vllm
    return {
        "generator_lag_p99_ms": load.generator.get("lag_p99_ms_max"),
        "stream_batching_interval_ms": vllm.stream_batching_interval_ms
        if scenario.target.engine == "vllm" and vllm is not None
        else None,
    }


def _dicts(server: Mapping[str, ServerStat]) -> dict[str, dict[str, float]]:
    return {k: v.model_dump() for k, v in server.items()}


def evaluate_run(
    scenario: Scenario,
    samples: pd.DataFrame,
    rows: pd.DataFrame | None,
    client: ClientStats,
    server: Mapping[str, ServerStat],
    server_series: Mapping[str, str | None],
    window: Window,
    server_by_model: Mapping[str, dict[str, Any]] | None = None,
) -> RunEvaluation:
    """Verdicts for the whole record, plus goodput, the autoscaling analysis and the scoped stats (pure).

    `rows`: the scraped series (signal, t, value) or None; `window`: load start, warmup end, stats end;
    `server_by_model`: model id → server stats of its model_name-labelled series (several models)."""
    stages = [s.model_dump(mode="json") for s in scenario.load.stages]
    windows = autoscaling_mod.stage_windows(stages, window.start)
    goodput = scenario.goodput.model_dump(mode="json") if scenario.goodput is not None else {}
    criteria = {k: v for k, v in goodput.items() if v is not None}
    if criteria:
        g = goodput_stats(samples, criteria, client.duration_s or 0.0)
        client = client.model_copy(update={"goodput": Goodput.model_validate(g)})
    auto = (
        autoscaling_mod.analyze(rows, stages, window.start, window.stats_start, window.end)
        if rows is not None and len(rows)
        else None
    )
    parsed = [parse_slo(t) for t in scenario.slos]
    scope_names = sorted({s.scope for s in parsed if s.scope and s.model is None})
    scoped = {sc: scoped_stats(sc, samples, rows, windows, window.stats_start, criteria or None) for sc in scope_names}
    for s in parsed:  # `@model:<id>`: that model's requests over the whole window, and its series
        if s.model is not None and s.scope is not None and s.scope not in scoped:
            by_model = (server_by_model or {}).get(s.model)
            scoped[s.scope] = model_scope_stats(s.model, samples, client.duration_s or 0.0, by_model, criteria or None)
    ctx = EvalContext(autoscaling=auto, scoped=scoped, max_replicas=scenario.target.autoscaling.max_replicas)
    verdicts = evaluate(scenario.slos, client.model_dump(), _dicts(server), dict(server_series), ctx)
    scopes = {k: ScopeStats.model_validate(v) for k, v in scoped.items()} or None
    return RunEvaluation(verdicts, client, auto, scopes)


def _modality(samples: pd.DataFrame) -> pd.DataFrame:
    """`modality` per sample (text | image) for an image workload; unchanged without one."""
    if "images" not in samples or samples["images"].isna().all():
        return samples
    return samples.assign(modality=samples["images"].map(lambda n: None if pd.isna(n) else ("image" if n else "text")))


def evaluate_stage(inp: EvaluateInputs) -> Evaluation:
    scenario, load, scraped, window = inp.scenario, inp.load, inp.scraped, inp.window
    samples = pd.read_parquet(load.samples_path)
    client = measure_client(samples, window)
    server: dict[str, Any] = dict(scraped.stats) if scraped else {}
    series: dict[str, str | None] = dict(scraped.resolved) if scraped else {}
    recon, warnings = reconcile(
        client.model_dump(),
        server,
        load.locust_requests,
        load.requests,
        scraped.histograms if scraped else None,
        reconcile_context(scenario, load),
    )
    why = f"scrape failed: {inp.scrape_error}" if inp.scrape_error else "run interrupted"
    warnings = (
        scraped.errors if scraped else [f"server metrics were not scraped ({why}): server SLOs have no data"]
    ) + warnings
    if load.message:
        warnings.insert(0, f"load: {load.message}")
    server, notes = workload_server_stats(load.workload, server)  # e.g. prefix-cache hit rate
    warnings += [f"load: {w}" for w in [*load.warnings, *notes]]
    warnings += stream_warnings(client)
    fault_results = inp.faults.finish(samples, load) if inp.faults is not None else []  # [] without `faults:`
    server.update(recovery_signal(fault_results))
    series.update(recovery_series(fault_results))
    outputs = outputs_signal(inp.correctness)  # `outputs.changed` / `outputs.empty`
    server.update(outputs)
    if inp.correctness is not None:
        series["outputs"] = f"correctness probes: {len(inp.correctness.probes)} greedy prompt(s) before the load"
        if inp.correctness.changed:
            warnings.append(
                f"outputs: {len(inp.correctness.changed)} of {len(inp.correctness.probes)} correctness probe(s) "
                f"answered differently from the baseline {inp.correctness.baseline} (run.json correctness)"
            )
    fired = None
    if inp.alerts is not None:  # live alerts (local stack with Alertmanager)
        from harness.stack.alerts import ALERT_SOURCE, alert_signals, wait_node_alerts

        fired = wait_node_alerts(inp.alerts, fault_results)
        sig = alert_signals(fired, fault_results, window.start, window.end)
        server.update(sig)
        series.update({k: ALERT_SOURCE for k in sig})
    typed_server = {k: ServerStat.model_validate(v) for k, v in server.items()}
    rows = pd.DataFrame(scraped.rows) if scraped and scraped.rows else None
    by_model = (scraped.by_model if scraped else None) or {}
    ev = evaluate_run(scenario, samples, rows, client, typed_server, series, window, by_model)
    why_not = [f["no_recovery_reason"] for f in fault_results if f.get("no_recovery_reason")]
    for v in ev.verdicts:  # a node fault without recovery: say why (e.g. pending placement), not "no series"
        if v.signal == "recovery_time" and v.observed is None and why_not:
            v.reason = f"no recovery: {why_not[0]}"
    status: Status = "interrupted" if load.interrupted else ("failed" if load.exit_code != 0 else "completed")
    summary = build_summary(
        run_id=inp.run_id,
        scenario=scenario.name,
        status=status,
        verdicts=ev.verdicts,
        client=ev.client,
        server=typed_server,
        server_series=series,
        reconciliation=recon,
        warnings=warnings,
        measure_only=scenario.measure_only,
        server_resolution=server_resolution(scraped),
        autoscaling=ev.autoscaling,
        scopes=ev.scopes,
        faults=fault_results or None,
        models={
            m: ModelStats.model_validate({**SliceStats.of(c).model_dump(), "server": by_model.get(m, {})})
            for m, c in split_stats(samples, "model", client.duration_s or 0.0).items()
        },
        request_kinds={k: SliceStats.of(c) for k, c in split_stats(samples, "kind", client.duration_s or 0.0).items()},
        stopped_early=load.stopped_early,
        images=image_stats(samples),
        modalities={
            k: SliceStats.of(c)
            for k, c in split_stats(_modality(samples), "modality", client.duration_s or 0.0).items()
        },
    )
    return Evaluation(summary, fired, fault_results)
