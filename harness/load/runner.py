"""Load stage: run Locust as a subprocess against base_url and turn its sample files into samples.parquet.

Locust never runs in this process (gevent monkey-patches the stdlib); we talk to it through files in
run_dir/locust/ (config in, started_at/done counter out, `stop` to ask for a graceful stop) and signals.

Layout written under run_dir:
  locust/locust.pid             the Locust master's pid (its session also holds the local workers)
  locust/config.json            what the locustfile reads (no secrets: the API key travels in an env var)
  locust/locust_stats.csv ...   Locust's own CSV outputs, locust.log, stdout.txt, stderr.txt
  samples/samples-<pid>.jsonl   raw samples per Locust process (kept after the merge: they are the raw record)
  samples.parquet               merged samples (see harness.load.samples.SCHEMA)
"""

from __future__ import annotations

import csv
import importlib.util
import json
import logging
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import LoadError
from harness.load.monitor import GeneratorMonitor, generator_report
from harness.load.prepare import Prepared, prepare_workload
from harness.load.samples import SAMPLE_GLOB, Progress, SampleTail, merge_samples
from harness.load.shape import stage_ends, stage_index
from harness.load.stop import StopTrigger, StopWatch
from harness.paths import child_env, import_root
from harness.scenario import Scenario

log = logging.getLogger(__name__)

LOCUSTFILE = Path(__file__).resolve().parent / "locustfile.py"
_REPO_ROOT = import_root()

STARTUP_TIMEOUT_S = 60.0  # locust import + (with workers) all workers connected
STOP_GRACE_S = 10.0  # SIGTERM → SIGKILL


@dataclass
class LoadResult:
    started_at: float  # epoch seconds when the load shape started (t=0 of stages)
    warmup_end: float  # started_at + warmup_s
    ended_at: float  # epoch seconds when load stopped
    samples_path: Path  # run_dir/samples.parquet
    requests: int  # sample rows written
    errors: int
    locust_requests: int  # Locust's own request count (from its stats CSV), for reconciliation; -1 unknown
    locust_failures: int
    exit_code: int
    interrupted: bool
    message: str | None = None  # why the run ended abnormally (Locust died, wall-clock bound hit), else None
    stats_end: float = 0.0  # epoch seconds where statistics end: the last stage's end or the cooldown's start
    workload: dict = field(default_factory=dict)  # what was sent: kind, prompt_length_unit, tokenizer, dataset ...
    generator: dict = field(default_factory=dict)  # the load generator's own health: CPU, scheduling lag, lateness
    warnings: list = field(default_factory=list)  # e.g. the generator was the bottleneck: its timings are suspect
    remote_workers: list = field(default_factory=list)  # worker_hosts ray: node, pid and exit code per Locust worker
    # load.stop_when fired: {trigger, at, at_s, detail, evidence} (harness/load/stop.py); None: ran to its end
    stopped_early: dict | None = None
    stop_windows: list = field(default_factory=list)  # load.stop_when.saturation: every window the detector judged


def build_config(scenario: Scenario, run_dir: Path, prepared: Prepared | None = None) -> dict[str, Any]:
    w, ld = scenario.workload, scenario.load
    pool_path = None
    if prepared is not None and prepared.pool:
        pool_path = run_dir / "locust" / "pool.json"
        pool_path.write_text(json.dumps(prepared.pool, separators=(",", ":")))
    open_loop = None
    if ld.arrival is not None:
        open_loop = {
            **ld.arrival.model_dump(mode="json"),
            "stages": [
                {"duration_s": s.duration_s, "rate_rps": s.rate_rps, "ramp_to_rps": s.ramp_to_rps} for s in ld.stages
            ],
        }
    images_path = None
    if prepared is not None and prepared.images:
        images_path = run_dir / "locust" / "images.json"  # data URLs, one per distinct image (encoded once)
        images_path.write_text(json.dumps([p["url"] for p in prepared.images], separators=(",", ":")))
    trace_path = None
    if prepared is not None and prepared.trace is not None and w.trace is not None:
        trace_path = run_dir / "locust" / "trace.json"  # rows to send: {t (s), in, out, [blocks, shared, model]}
        trace_path.write_text(json.dumps(prepared.trace, separators=(",", ":")))
        open_loop = {
            "process": "trace",
            "burstiness": 1.0,
            "max_concurrency": w.trace.max_concurrency,
            "stages": [{"duration_s": s.duration_s, "rate_rps": None, "ramp_to_rps": None} for s in ld.stages],
        }
    return {
        "trace_path": str(trace_path) if trace_path else None,
        "images_path": str(images_path) if images_path else None,
        "count_sent": ld.stop_when is not None,  # sent.cnt is read only by load.stop_when's detector
        "trace_block_tokens": w.trace.block_tokens if w.trace is not None else None,
        "open_loop": open_loop,
        "workers": ld.workers,
        "pool_path": str(pool_path) if pool_path else None,
        "vocab": prepared.vocab if prepared is not None else None,
        "tokenizer_path": str(prepared.tokenizer_path)
        if prepared is not None and getattr(prepared, "tokenizer_path", None)
        else None,
        "model": scenario.target.model,
        # None: one model, or the trace's model column (RequestMix)
        "models": w.model_weights(scenario.target.model) if w.models else None,
        "request_kinds": [{"kind": k.label, "weight": k.weight, "fields": k.body_fields()} for k in w.request_kinds]
        or None,
        "workload": w.model_dump(mode="json"),
        "stages": [s.model_dump(mode="json") for s in ld.stages],
        "warmup_s": ld.warmup_s,
        "max_requests": ld.max_requests,
        "think_time_s": ld.think_time_s,
        "drain_timeout_s": w.request_timeout_s + 15.0,
        "locust_dir": str(run_dir / "locust"),
        "samples_dir": str(run_dir / "samples"),
    }


def stats_end_at(started_at: float, ended_at: float, total_s: float, cooldown_s: float) -> float:
    """Where statistics end: the last stage's end (or the cooldown's start), never the drain or Locust's exit
    after it; an earlier end (interrupted run) cuts it short. Rates divide by the window up to here."""
    return min(ended_at, started_at + total_s - cooldown_s)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def locust_command(
    scenario: Scenario, base_url: str, locust_dir: Path, master: tuple[str, int] | None = None
) -> list[str]:
    cmd = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(LOCUSTFILE),
        "--headless",
        "--host",
        base_url,
        "--csv",
        str(locust_dir / "locust"),
        "--only-summary",
        "--logfile",
        str(locust_dir / "locust.log"),
        "--loglevel",
        "INFO",
        # In-flight requests finish when users stop (stage ramp-down, drain), bounded by the request timeout.
        "--stop-timeout",
        str(math.ceil(scenario.workload.request_timeout_s)),  # Locust wants whole seconds
        # Request failures are data, not a Locust failure: a non-zero exit then means Locust itself broke.
        "--exit-code-on-error",
        "0",
    ]
    n = scenario.load.workers
    if master is not None:  # workers elsewhere (Ray actors on the cluster's nodes) connect to this master
        cmd += [
            "--master",
            "--master-bind-host",
            master[0],
            "--master-bind-port",
            str(master[1]),
            "--expect-workers",
            str(n),
            "--expect-workers-max-wait",
            "60",
        ]
    elif n > 0:
        port = _free_port()
        cmd += [
            "--processes",
            str(n),
            "--master-bind-host",
            "127.0.0.1",
            "--master-bind-port",
            str(port),
            "--master-host",
            "127.0.0.1",
            "--master-port",
            str(port),
            "--expect-workers-max-wait",
            "30",
        ]
    return cmd


def _child_env(config_path: Path, api_key: str | None) -> dict[str, str]:
    # LOCUST_* variables would silently override our command line; the harness package must be importable.
    env = {k: v for k, v in child_env().items() if not k.startswith("LOCUST_") and k != "HARNESS_LOAD_API_KEY"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    env["HARNESS_LOAD_CONFIG"] = str(config_path)
    env["PYTHONUNBUFFERED"] = "1"
    if api_key:
        env["HARNESS_LOAD_API_KEY"] = api_key
    return env


def _tail(path: Path, n: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


def _why_dead(locust_dir: Path) -> str:
    out = _tail(locust_dir / "stderr.txt") or _tail(locust_dir / "locust.log")
    return out.strip() or "(no output)"


def read_locust_totals(locust_dir: Path) -> tuple[int, int]:
    """(requests, failures) from the Aggregated row of Locust's stats CSV; (-1, -1) if absent."""
    p = locust_dir / "locust_stats.csv"
    try:
        with open(p, newline="") as f:
            for row in csv.DictReader(f):
                if row.get("Name") == "Aggregated":
                    return int(row["Request Count"]), int(row["Failure Count"])
    except (OSError, KeyError, ValueError):
        pass
    return -1, -1


def _size(p: Path) -> int:
    try:
        return p.stat().st_size
    except OSError:
        return 0


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)  # our own session: master and its forked workers
    except (ProcessLookupError, PermissionError):
        pass


@dataclass
class LocustExit:
    """How the Locust process ended (what the merge needs besides the sample files)."""

    started_at: float  # epoch seconds of the shape's t=0 (the end, for a run interrupted before it started)
    ended_at: float
    exit_code: int
    interrupted: bool
    message: str | None  # why it ended abnormally, else None
    remote_workers: list = field(default_factory=list)
    stopped_early: StopTrigger | None = None  # load.stop_when fired
    stop_windows: list = field(default_factory=list)


class LocustProcess:
    """One Locust master (its local workers in its own session, or worker actors on the Ray cluster) driving one
    run's load shape: `start()`, then `wait()` until it exits; never leaves it running behind us.

    Bounded: startup within `startup_timeout_s`; the load within stages + drain + slack (then SIGTERM, SIGKILL);
    a stop request (`stop_event`) drains in-flight requests, then SIGTERM after the request timeout."""

    def __init__(
        self,
        scenario: Scenario,
        base_url: str,
        run_dir: Path,
        prepared: Prepared,
        *,
        api_key: str | None = None,
        startup_timeout_s: float = STARTUP_TIMEOUT_S,
        master_host: str | None = None,
    ):
        self.scenario, self.base_url, self.prepared = scenario, base_url, prepared
        self.locust_dir, self.samples_dir = run_dir / "locust", run_dir / "samples"
        self.api_key = api_key
        self.startup_timeout_s = startup_timeout_s
        ld = scenario.load
        self.stages = [s.model_dump() for s in ld.stages]
        self.names, self.ends = [s["name"] for s in self.stages], stage_ends(self.stages)
        # Hard bound: stages + drain (in-flight requests, stats catch-up) + slack; then SIGTERM, then SIGKILL.
        self.wall_s = ld.duration_s + scenario.workload.request_timeout_s + 15.0 + 30.0
        self.master: tuple[str, int] | None = None
        self.remote: Any = None  # RayLocustWorkers (harness/load/ray_workers.py) with load.worker_hosts: ray
        if ld.worker_hosts == "ray":  # load.worker_hosts: Locust workers as Ray actors on the cluster's nodes
            from harness.load.ray_workers import RayLocustWorkers

            self.master = (master_host or "127.0.0.1", _free_port())
            self.remote = RayLocustWorkers(ld.workers, ld.worker_nodes, master_host)
            self.startup_timeout_s = max(startup_timeout_s, 90.0)
        self.proc: subprocess.Popen | None = None
        self.monitor: GeneratorMonitor | None = None

    def start(self) -> None:
        run_dir = self.locust_dir.parent
        config_path = self.locust_dir / "config.json"
        config_path.write_text(json.dumps(build_config(self.scenario, run_dir, self.prepared), indent=2))
        env = _child_env(config_path, self.api_key)
        cmd = locust_command(self.scenario, self.base_url, self.locust_dir, self.master)
        (self.locust_dir / "command.txt").write_text(" ".join(cmd) + "\n")
        with open(self.locust_dir / "stdout.txt", "wb") as out, open(self.locust_dir / "stderr.txt", "wb") as err:
            try:
                proc = subprocess.Popen(
                    cmd,
                    cwd=self.locust_dir,
                    env=env,
                    stdout=out,
                    stderr=err,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
            except OSError as e:
                raise LoadError(
                    f"could not start Locust: {e}", fix=f"check that {sys.executable} can run `-m locust`"
                ) from None
        self.proc = proc
        (self.locust_dir / "locust.pid").write_text(f"{proc.pid}\n")
        self.monitor = GeneratorMonitor(proc.pid)
        if self.remote is not None and self.master is not None:
            try:
                self.remote.start(str(LOCUSTFILE), self.master[0], self.master[1], env, self.locust_dir)
            except BaseException:
                _signal_group(proc, signal.SIGKILL)
                self.remote.stop(timeout_s=1.0)
                raise

    def _read_started(self) -> float | None:
        f = self.locust_dir / "started_at"
        return float(f.read_text()) if f.exists() else None

    def wait(
        self, stop_event: threading.Event | None = None, on_progress: Callable[[dict], None] | None = None
    ) -> LocustExit:
        """Watch Locust until it exits (progress once a second, stop requests, the wall-clock bound)."""
        proc, monitor = self.proc, self.monitor
        assert proc is not None and monitor is not None, "start() first"
        timeout_s = self.scenario.workload.request_timeout_s
        t_launch = time.monotonic()
        tail, prog = SampleTail(self.samples_dir), Progress()
        started_at: float | None = None
        deadline = math.inf
        interrupted = False
        message: str | None = None
        stop_sent_at: float | None = None  # monotonic time of our first stop request
        term_sent_at: float | None = None
        last_progress = 0.0
        progress_failed = False
        watch: StopWatch | None = None
        stop_when = self.scenario.load.stop_when
        sent_cnt, done_cnt = self.locust_dir / "sent.cnt", self.locust_dir / "done.cnt"
        try:
            while proc.poll() is None:
                now_m = time.monotonic()
                if started_at is None:
                    started_at = self._read_started()
                    if started_at is not None:
                        deadline = now_m + self.wall_s
                    elif now_m - t_launch > self.startup_timeout_s:
                        _signal_group(proc, signal.SIGKILL)
                        proc.wait()
                        raise LoadError(
                            f"Locust did not start the load within {self.startup_timeout_s:.0f} s",
                            problems=[_why_dead(self.locust_dir)],
                            fix=f"see {self.locust_dir}/locust.log; with load.workers > 0 check that local worker "
                            "processes can connect",
                        )
                if stop_event is not None and stop_event.is_set() and stop_sent_at is None:
                    interrupted = True
                    stop_sent_at = now_m
                    (self.locust_dir / "stop").touch()  # graceful: the shape drains in-flight requests, then quits
                    if started_at is None:
                        _signal_group(proc, signal.SIGTERM)
                        term_sent_at = now_m
                if stop_sent_at is not None and term_sent_at is None and now_m - stop_sent_at > timeout_s + 10:
                    _signal_group(proc, signal.SIGTERM)
                    term_sent_at = now_m
                if started_at is not None and term_sent_at is None and now_m > deadline:
                    message = f"Locust exceeded the wall-clock bound of {self.wall_s:.0f} s and was terminated"
                    _signal_group(proc, signal.SIGTERM)
                    term_sent_at = now_m
                if term_sent_at is not None and now_m - term_sent_at > STOP_GRACE_S:
                    _signal_group(proc, signal.SIGKILL)
                if started_at is not None:
                    monitor.poll()  # CPU of the Locust processes, at most once a second
                if stop_when is not None and started_at is not None and stop_sent_at is None:
                    watch = watch or StopWatch(stop_when, started_at)
                    rows = tail.poll()
                    prog.add(rows)
                    if watch.feed(rows, time.time(), _size(sent_cnt), _size(done_cnt)) is not None:
                        stop_sent_at = now_m  # drain as for a stop request (bounded the same way), not interrupted
                        (self.locust_dir / "stop").touch()
                        log.info("load.stop_when: %s", watch.fired.detail if watch.fired else "")
                if on_progress is not None and started_at is not None and now_m - last_progress >= 1.0:
                    last_progress = now_m
                    if watch is None:
                        prog.add(tail.poll())
                    progress_failed = self._progress(on_progress, prog, started_at, progress_failed)
                time.sleep(0.2)
        except BaseException:
            # KeyboardInterrupt or our own LoadError: never leave Locust running behind us.
            if proc.poll() is None:
                _signal_group(proc, signal.SIGTERM)
                try:
                    proc.wait(STOP_GRACE_S)
                except subprocess.TimeoutExpired:
                    _signal_group(proc, signal.SIGKILL)
                    proc.wait()
            raise
        finally:
            remote_info = self.remote.stop() if self.remote is not None else []  # workers quit with the master
        ended_at = time.time()
        rc = proc.returncode
        if started_at is None:
            started_at = self._read_started()
        if started_at is None:
            if not interrupted:
                raise LoadError(
                    f"Locust exited (code {rc}) before starting the load",
                    problems=[_why_dead(self.locust_dir)],
                    fix=f"see {self.locust_dir}/locust.log and stderr.txt",
                )
            started_at = ended_at
        if rc != 0 and message is None:
            how = f"was killed by signal {-rc}" if rc < 0 else f"exited with code {rc}"
            message = (
                f"Locust {how} during the run; samples written until then were kept "
                f"(see {self.locust_dir}/locust.log, stderr.txt)"
            )
        if rc != 0:
            _signal_group(proc, signal.SIGKILL)  # stray forked workers, if the master died first
        fired = watch.fired if watch is not None else None
        windows = [w.evidence() for w in watch.windows] if watch is not None else []
        return LocustExit(started_at, ended_at, rc, interrupted, message, remote_info, fired, windows)

    def _progress(self, on_progress: Callable[[dict], None], prog: Progress, started_at: float, failed: bool) -> bool:
        """One progress snapshot to the callback; returns whether it has failed (logged once, then quietly)."""
        now = time.time()
        el = now - started_at
        i = stage_index(self.ends, el)
        snap = {
            "elapsed_s": round(el, 3),
            "total_s": self.scenario.load.duration_s,
            "stage": self.names[i] if i is not None else "drain",
            "users": self.stages[i]["users"] if i is not None else 0,  # the shape's target
            **prog.snapshot(now),
        }
        try:
            on_progress(snap)
        except Exception:  # a broken renderer must not kill the run
            if not failed:
                log.exception("on_progress callback failed; continuing without it")
            return True
        return failed


def merge_load(
    scenario: Scenario, run_dir: Path, prepared: Prepared, ended: LocustExit, monitor: GeneratorMonitor
) -> LoadResult:
    """The sample files of every Locust process → samples.parquet, with Locust's own totals and the generator's
    health beside them: the load stage's result."""
    ld = scenario.load
    stages = [s.model_dump() for s in ld.stages]
    samples_path = run_dir / "samples.parquet"
    n, errs = merge_samples(
        run_dir / "samples",
        samples_path,
        started_at=ended.started_at,
        warmup_s=ld.warmup_s,
        stage_names=[s["name"] for s in stages],
        stage_ends=stage_ends(stages),
        cooldown_s=ld.cooldown_s,
        stop_at=ended.stopped_early.at if ended.stopped_early is not None else None,
    )
    lreq, lfail = read_locust_totals(run_dir / "locust")
    generator, warnings = generator_report(
        monitor,
        run_dir / "locust",
        samples_path,
        capped=bool(
            (ld.arrival and ld.arrival.max_concurrency)
            or (scenario.workload.trace and scenario.workload.trace.max_concurrency)
        ),
    )
    return LoadResult(
        started_at=ended.started_at,
        warmup_end=ended.started_at + ld.warmup_s,
        ended_at=ended.ended_at,
        samples_path=samples_path,
        requests=n,
        errors=errs,
        locust_requests=lreq,
        locust_failures=lfail,
        exit_code=ended.exit_code,
        interrupted=ended.interrupted,
        message=ended.message,
        stats_end=stats_end_at(
            ended.started_at,
            ended.stopped_early.at if ended.stopped_early is not None else ended.ended_at,
            ld.duration_s,
            ld.cooldown_s,
        ),
        workload=prepared.info,
        generator=generator,
        warnings=warnings,
        remote_workers=ended.remote_workers,
        stopped_early=ended.stopped_early.to_dict() if ended.stopped_early is not None else None,
        stop_windows=ended.stop_windows,
    )


def run_load(
    scenario: Scenario,
    base_url: str,
    run_dir: Path,
    *,
    api_key: str | None = None,
    on_progress: Callable[[dict], None] | None = None,
    stop_event: threading.Event | None = None,
    startup_timeout_s: float = STARTUP_TIMEOUT_S,
    master_host: str | None = None,
) -> LoadResult:
    """Drive the scenario's load shape against base_url (an OpenAI-compatible server; with or without /v1).

    Blocks until Locust exits. Raises LoadError if Locust is missing or fails to start; a Locust that dies
    mid-run yields a LoadResult with exit_code != 0 and `message` (samples written so far are still merged).
    """
    if importlib.util.find_spec("locust") is None:  # find_spec: no import, so no monkey-patching here
        raise LoadError(
            "Locust is not installed in this Python environment", fix=f"{sys.executable} -m pip install locust"
        )
    run_dir = Path(run_dir)
    locust_dir, samples_dir = run_dir / "locust", run_dir / "samples"
    locust_dir.mkdir(parents=True, exist_ok=True)
    samples_dir.mkdir(parents=True, exist_ok=True)
    for stale in [
        *samples_dir.glob(SAMPLE_GLOB),
        *locust_dir.glob("probe-*.json"),
        *(locust_dir / n for n in ("started_at", "stop", "done.cnt", "sent.cnt", "tickets.cnt", "dropped.cnt")),
    ]:
        stale.unlink(missing_ok=True)  # a reused run_dir must not mix in an earlier run's samples
    prepared = prepare_workload(scenario)
    if api_key is None and scenario.target.api_key_env:
        api_key = os.environ.get(scenario.target.api_key_env)
    locust = LocustProcess(
        scenario,
        base_url,
        run_dir,
        prepared,
        api_key=api_key,
        startup_timeout_s=startup_timeout_s,
        master_host=master_host,
    )
    locust.start()
    ended = locust.wait(stop_event, on_progress)
    assert locust.monitor is not None
    return merge_load(scenario, run_dir, prepared, ended, locust.monitor)
