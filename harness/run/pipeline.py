"""The whole run, in the order data flows: scenario → stack → deploy → load → scrape → evaluate → record → report."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import deploy as deploy_stage
from harness import stack as stack_stage
from harness.deploy.cache import reset_prefix_cache
from harness.errors import EXIT_BAD_INPUT
from harness.load.correctness import run_probes
from harness.load.runner import run_load
from harness.metrics.scrape import ScrapeResult, Window, scrape_run
from harness.record.environment import environment
from harness.record.schema import CacheReset, RepeatGroup
from harness.run.context import UI, RunContext
from harness.run.evaluate import EvaluateInputs, evaluate_stage
from harness.run.faults import start_faults
from harness.run.recorder import Recorder
from harness.scenario import Scenario
from harness.stack import ray_client
from harness.stack.alerts import start_receiver
from harness.store import index_run, origin


@dataclass
class RunOptions:
    results_dir: Path = Path("results")
    ray_address: str | None = None
    prometheus_url: str | None = None
    endpoint_url: str | None = None
    dashboard_url: str | None = None  # attached over HTTP (Serve REST API): no Ray Client, any cluster environment
    replace_app: bool = False  # attached: replace a same-named app the harness did not deploy
    keep_up: bool = False
    keep_app: bool = False
    scenario_file: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    store_url: str | None = None  # results store the finished run is indexed in (None: not indexed)
    cache_reset: bool = False  # reset the engine's prefix cache after deploy, before the load (sweep, --repeat)
    repeat: RepeatGroup | None = None  # this run's place in a repeat group (harness/commands/repeat.py)
    reuse_app: bool = False  # keep the running app's replicas (a later repeat or sweep step of the same target)
    stay_connected: bool = False  # keep this driver's Ray connection for the next run (repeats)
    mlflow_uri: str | None = None  # MLflow tracking URI the finished run is logged to (None: not logged)


@dataclass
class RunOutcome:
    run_dir: Path
    exit_code: int
    summary: dict | None
    store: dict | None = None  # {"store": URL with the password masked, "indexed": bool, "error": str | None}


def run(scenario: Scenario, opts: RunOptions, ui: UI) -> RunOutcome:
    # absolute: Locust runs in another working directory, a relative run folder would break it
    rec = Recorder.create(
        Path(opts.results_dir).absolute(),
        scenario.name,
        scenario=scenario.model_dump(mode="json"),
        scenario_file=opts.scenario_file,
        labels=opts.labels,
        origin=origin(),
        repeat=opts.repeat,
    )
    ui.run_dir(rec.dir)
    ray_client.set_driver_log(rec.dir / "logs" / "driver.log")  # Ray/Serve/vLLM log lines: there, not the terminal
    try:
        ctx = _run_stages(scenario, opts, ui, rec)
    finally:  # index: every finished run, whatever its status; an unreachable store never fails the run
        ray_client.set_driver_log(None)
        indexed = index_run(rec.dir, opts.store_url) if opts.store_url else None
        if indexed and not indexed["indexed"]:
            ui.warn(
                f"results store unreachable, run not indexed: {indexed['error']}; "
                f"`harness store sync` adds it later (the run folder is complete)"
            )
        if opts.mlflow_uri:  # like the store: an unreachable MLflow warns, the folder can be exported later
            _log_mlflow(rec.dir, opts.mlflow_uri, ui)
    return RunOutcome(rec.dir, ctx.exit_code if ctx.exit_code is not None else EXIT_BAD_INPUT, ctx.summary, indexed)


def _log_mlflow(run_dir: Path, uri: str, ui: UI) -> None:
    from harness.export.mlflow_log import log_run_dir

    res = log_run_dir(run_dir, uri)
    if not res["logged"]:
        ui.warn(
            f"MLflow {res['uri']} unreachable, run not logged: {res['error']}; "
            f"`harness export --mlflow URI {run_dir}` logs it later (the run folder is complete)"
        )


def _run_stages(scenario: Scenario, opts: RunOptions, ui: UI, rec: Recorder) -> RunContext:
    """The eight stages; each result is recorded (run.json saved) before the next stage starts. RunContext times
    the stages and, on a failure or an interrupt, finalises the record and renders the reports itself."""
    with RunContext(rec, ui, reap=not opts.keep_up) as ctx:
        stack = ctx.stage("stack", lambda: open_stack(opts, scenario))
        rec.record_stack(stack)
        ctx.cleanup(lambda: close_stack(stack, opts))

        dep = ctx.stage(
            "deploy",
            lambda: deploy_stage.deploy(
                scenario, stack, rec.dir / "logs" / "ray", reuse=opts.reuse_app, replace_app=opts.replace_app
            ),
        )
        rec.record_deploy(dep)
        if not opts.keep_app and not stops_stack(stack, opts):  # a stack torn down takes its apps along (~3 s)
            ctx.cleanup(lambda: deploy_stage.undeploy(dep))
        if opts.cache_reset:  # optional: a failed reset is recorded (cache_reset.done false), the run goes on
            reset = ctx.stage(
                "cache_reset",
                lambda: reset_prefix_cache(scenario.target, dep.base_url, dep.app_name, dep.engine_deployments),
                optional=True,
            )
            if reset is not None:
                rec.record_cache_reset(CacheReset(**reset))
        probes = None  # workload.correctness: greedy probes before the load (their outputs are the gate's input)
        if scenario.workload.correctness is not None:
            probes = ctx.stage("correctness", lambda: run_probes(scenario, dep.base_url))
            rec.record_correctness(probes)
        rec.record_environment(environment(dep.details.get("nodes")))  # attached over HTTP: the dashboard's nodes
        if stack.targets_pending:  # a fresh local stack: Prometheus found Ray's targets while the app deployed
            ctx.stage("metrics_ready", lambda: stack_stage.wait_targets(stack))
            rec.record_stack(stack)

        alerts = start_receiver(stack, rec.dir)  # None without a local Alertmanager
        if alerts is not None:
            ctx.cleanup(alerts.stop)
        faults = start_faults(
            scenario, dep.app_name, rec.dir, stack.cluster, dep.details.get("dashboard_url")
        )  # `faults:`, beside the load
        ctx.cleanup(faults.stop)
        head_ip = (stack.cluster or {}).get("head_ip")
        load = ctx.stage(
            "load",
            lambda: run_load(
                scenario, dep.base_url, rec.dir, on_progress=ui.progress, stop_event=ctx.stop_event, master_host=head_ip
            ),
            graceful=True,  # Ctrl-C drains the load and the run records what was measured
        )
        rec.record_load(load)

        window = Window(load.started_at, load.warmup_end, load.stats_end or load.ended_at)  # stats end at the cooldown
        scraped = None  # an interrupted run is not scraped; a lost Prometheus (optional stage) leaves client verdicts
        if not load.interrupted:
            scraped = ctx.stage(
                "scrape", lambda: scrape_run(stack.prometheus_url, scenario, dep, window), optional=True
            )
        if scraped is not None:
            rec.record_scrape(scraped, _node_stats(stack, scraped, window))

        inputs = EvaluateInputs(
            scenario,
            rec.record.run_id,
            load,
            window,
            scraped,
            ctx.stage_errors.get("scrape"),
            faults=faults,
            alerts=alerts,
            correctness=probes,
        )
        ev = ctx.stage("evaluate", lambda: evaluate_stage(inputs))
        rec.record_evaluation(ev.summary, ev.alerts, ev.faults)
        ctx.conclude(ev.summary, load)  # final status and exit code: the record is complete

        ctx.stage("report", ctx.render_reports, optional=True)  # a renderer's failure never fails the run
    return ctx


def _node_stats(stack: stack_stage.Stack, scraped: ScrapeResult, window: Window) -> dict[str, Any]:
    """Node-level signals per node (harness/metrics/per_node.py); best effort, {} when Prometheus cannot say."""
    from harness.metrics.per_node import per_gpu_stats, per_node_stats

    try:
        out = per_node_stats(stack.prometheus_url, scraped.resolved, scraped.session, window.start, window.end)
        out["gpus"] = per_gpu_stats(stack.prometheus_url, scraped.resolved, scraped.session, window.start, window.end)
        return out
    except Exception:  # noqa: BLE001 — a per-node view must never fail the run
        return {}


def open_stack(opts: RunOptions, scenario: Scenario | None = None) -> stack_stage.Stack:
    cluster = scenario.cluster if scenario is not None else None
    if opts.ray_address or opts.prometheus_url or opts.dashboard_url:
        return stack_stage.attach(
            opts.ray_address or "", opts.prometheus_url or "", opts.endpoint_url, dashboard_url=opts.dashboard_url
        )
    if scenario is not None and scenario.target.engine == "external" and scenario.target.url:
        return stack_stage.start_external_stack(scenario.target.url)  # nothing runs on Ray: start none
    current = stack_stage.load_current()  # a stack from `harness up`
    if cluster is not None:  # scenario `cluster:`: a local multi-node stack (harness/stack/multinode.py)
        from harness.stack import multinode

        if current is not None and (why := multinode.matches(current, cluster)):
            from harness.errors import StackError

            raise StackError(
                f"the scenario's `cluster:` asks for {cluster.workers} worker(s) x {cluster.gpus_per_worker} "
                f"GPU(s), but {why}",
                fix="`harness down`, then run again (or `harness up` with matching --workers)",
            )
        started = current or multinode.start_for(cluster)
        assert isinstance(started, stack_stage.Stack)
        return started
    return current or stack_stage.start_local_stack(wait_targets=False)


def stops_stack(stack: stack_stage.Stack, opts: RunOptions) -> bool:
    """The run started this stack for itself and stops it at the end (not a `harness up` one, not --keep-up)."""
    current = stack_stage.load_current()
    return stack.local and not opts.keep_up and not (current and current.state_dir == stack.state_dir)


def close_stack(stack: stack_stage.Stack, opts: RunOptions) -> None:
    if not opts.stay_connected:
        ray_client.disconnect()
    if stops_stack(stack, opts):
        stack_stage.stop_local_stack(stack)
    elif stack.local and opts.keep_up and not stack.ray:  # an external endpoint's Prometheus: nothing to reuse
        stack_stage.stop_local_stack(stack)
    elif stack.local and opts.keep_up:
        stack_stage.save_current(stack)
