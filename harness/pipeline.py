"""The whole run, in the order data flows: scenario → stack → deploy → load → scrape → evaluate → record → report."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from harness import deploy as deploy_stage
from harness import stack as stack_stage
from harness.faults import recovery_series, recovery_signal, start_faults
from harness.load.prepare import workload_server_stats
from harness.load.runner import run_load
from harness.metrics.scrape import Window, scrape
from harness.record import Recorder
from harness.record.environment import environment
from harness.record.summary import build_summary, reconcile
from harness.runctx import RunContext, UI
from harness.scenario import Scenario
from harness.slo.evaluate import client_stats, evaluate_run


@dataclass
class RunOptions:
    results_dir: Path = Path("results")
    ray_address: str | None = None
    prometheus_url: str | None = None
    endpoint_url: str | None = None
    keep_up: bool = False
    keep_app: bool = False
    scenario_file: str | None = None
    labels: dict[str, str] = field(default_factory=dict)


@dataclass
class RunOutcome:
    run_dir: Path
    exit_code: int
    summary: dict | None


def run(scenario: Scenario, opts: RunOptions, ui: UI) -> RunOutcome:
    rec = Recorder.create(opts.results_dir, scenario.name, scenario=scenario.model_dump(mode="json"),
                          scenario_file=opts.scenario_file, labels=opts.labels)
    ui.run_dir(rec.dir)
    with RunContext(rec, ui, reap=not opts.keep_up) as ctx:
        stack = ctx.stage("stack", lambda: open_stack(opts), on_done=lambda s: {"stack": s.to_dict()})
        ctx.cleanup(lambda: close_stack(stack, opts))
        dep = ctx.stage("deploy", lambda: deploy_stage.deploy(scenario, stack), on_done=lambda d: {"deployment": d.to_dict()})
        if not opts.keep_app:
            ctx.cleanup(lambda: deploy_stage.undeploy(dep))
        rec.record.environment = environment()
        faults = start_faults(scenario, dep.app_name, rec.dir)  # scenario `faults:`, on a thread beside the load
        ctx.cleanup(faults.stop)
        load = ctx.stage("load", lambda: run_load(scenario, dep.base_url, rec.dir, api_key=deploy_stage.api_headers(scenario.target).get("Authorization", "").removeprefix("Bearer ") or None,
                                                  on_progress=ui.progress, stop_event=ctx.stop_event),
                         on_done=lambda l: {"load": asdict(l)})
        window = Window(load.started_at, load.warmup_end, load.stats_end or load.ended_at)  # stats end at the cooldown
        scraped = None if load.interrupted else ctx.stage(
            "scrape", lambda: scrape(stack.prometheus_url, window, model=scenario.target.model, app=dep.app_name, deployments=dep.engine_deployments,
                                     step_s=scenario.scrape.step_s, scrape_interval_s=2.0,
                                     settle_timeout_s=scenario.scrape.settle_timeout_s, settle_quiet_s=scenario.scrape.settle_quiet_s),
            on_done=lambda s: {"scrape": s.to_dict()}, optional=True)  # Prometheus lost: client verdicts still count
        ctx.stage("evaluate", lambda: summarize(scenario, rec, load, scraped, window, faults, ctx.stage_errors.get("scrape")))
        # report: RunContext renders every report from the final record on exit, whatever the status
    return RunOutcome(rec.dir, ctx.exit_code, ctx.summary)


def open_stack(opts: RunOptions) -> stack_stage.Stack:
    if opts.ray_address or opts.prometheus_url:
        return stack_stage.attach(opts.ray_address or "", opts.prometheus_url or "", opts.endpoint_url)
    current = stack_stage.load_current()  # a stack from `harness up`
    return current or stack_stage.start_local_stack()


def close_stack(stack: stack_stage.Stack, opts: RunOptions) -> None:
    deploy_stage.disconnect()
    current = stack_stage.load_current()
    if stack.local and not opts.keep_up and not (current and current.state_dir == stack.state_dir):
        stack_stage.stop_local_stack(stack)
    elif stack.local and opts.keep_up:
        stack_stage.save_current(stack)


def summarize(scenario: Scenario, rec: Recorder, load, scraped, window: Window, faults=None, scrape_error: str | None = None):
    samples = pd.read_parquet(load.samples_path)
    client = client_stats(samples, max(window.end - window.stats_start, 0.0))
    server = scraped.stats if scraped else {}
    series = scraped.resolved if scraped else {}
    recon, warnings = reconcile(client, server, load.locust_requests, load.requests, scraped.histograms if scraped else None)
    why = f"scrape failed: {scrape_error}" if scrape_error else "run interrupted"
    warnings = (scraped.errors if scraped else [f"server metrics were not scraped ({why}): server SLOs have no data"]) + warnings
    fault_results = faults.finish(samples, load) if faults is not None else []  # [] without `faults:`
    if load.message:
        warnings.insert(0, f"load: {load.message}")
    server, notes = workload_server_stats(getattr(load, "workload", {}), server)  # e.g. prefix-cache hit rate
    warnings += [f"load: {w}" for w in [*getattr(load, "warnings", []), *notes]]
    rows = pd.DataFrame(scraped.rows) if scraped and scraped.rows else None
    verdicts, extra = evaluate_run(scenario.model_dump(mode="json"), samples, rows, client, {**server, **recovery_signal(fault_results)}, {**series, **recovery_series(fault_results)},
                                   load_start=window.start, warmup_end=window.stats_start, load_end=window.end)
    status = "interrupted" if load.interrupted else ("failed" if load.exit_code != 0 else "completed")  # Locust died
    summary = build_summary(run_id=rec.record.run_id, scenario=scenario.name, status=status, verdicts=verdicts,
                            client=client, server=server, server_series=series, reconciliation=recon, warnings=warnings)
    for k, v in extra.items():  # autoscaling analysis, scoped stats
        setattr(summary, k, v)
    if fault_results:
        summary.faults = rec.record.faults = fault_results
    rec.write_summary(summary)
    if scraped and scraped.rows:
        pd.DataFrame(scraped.rows).to_parquet(rec.dir / "series.parquet", index=False)
    return summary
