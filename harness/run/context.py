"""Stage mechanics for the pipeline: timing, saving the record after every stage, cleanup, Ctrl-C/SIGTERM.

First Ctrl-C or SIGTERM: during the load, stop it gracefully (in-flight requests finish); in any other stage,
abort that stage. Either way: record what was measured, mark the run `interrupted`, stop what the harness
started, exit 130. A second Ctrl-C forces it (aborts the graceful drain or the cleanup step in progress; the
remaining teardown kills hard). A third one writes the record and exits at once, after SIGKILLing what we
started.

The record is final when run.json carries a status other than `running`: it is written atomically after every
data file (samples, summary) exists, and before cleanup, so a run killed during teardown is still readable.
"""

from __future__ import annotations

import os
import re
import signal
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from harness.errors import EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_PASS, EXIT_SLO_FAILED, HarnessError
from harness.record import Recorder
from harness.report import write_reports


class UI(Protocol):
    def run_dir(self, path: Path) -> None: ...
    def stage_start(self, name: str) -> None: ...
    def stage_done(self, name: str, seconds: float) -> None: ...
    def progress(self, p: dict) -> None: ...
    def warn(self, msg: str) -> None: ...


class NullUI:
    def run_dir(self, path):
        pass

    def stage_start(self, name):
        pass

    def stage_done(self, name, seconds):
        pass

    def progress(self, p):
        pass

    def warn(self, msg):
        pass


_TIMELINE = {"stack": "stack_ready_at", "deploy": "deployed_at", "scrape": "scrape_ended_at"}
TEARDOWN = "teardown"


class RunContext:
    def __init__(self, rec: Recorder, ui: UI, *, reap: bool = True):
        self.rec, self.ui = rec, ui
        self.stop_event = threading.Event()
        self.current: str | None = None
        self.results: dict[str, Any] = {}
        self.stage_errors: dict[str, str] = {}  # optional stages that failed (the run went on)
        self._cleanups: list[Callable[[], None]] = []
        self._old: dict = {}
        self.status = "running"
        self.exit_code: int | None = None
        self.signals = 0
        self.forced = False
        self.reap = reap  # SIGKILL leftovers of processes this run started (not with --keep-up)

    # ---- signals ----
    def _on_signal(self, signum, frame):
        self.signals += 1
        self.stop_event.set()
        if self.signals >= 3:
            self._emergency_exit()
        if self.signals == 1 and self.current == "load":
            self.ui.warn("interrupt: stopping the load and recording what was measured (press Ctrl-C again to force)")
            return
        if self.current == TEARDOWN:
            if self.signals == 1:
                self.ui.warn("interrupt: already finishing the run (press Ctrl-C again to force)")
                return
            self.ui.warn("interrupt: forcing: skipping the graceful stop of what the harness started")
        self.forced = self.signals >= 2
        raise KeyboardInterrupt  # a stage that cannot stop gracefully, or a second press

    def _emergency_exit(self) -> None:
        try:
            self.ui.warn("interrupt: third press: killing what the harness started and exiting now")
            r = self.rec.record
            if r.status == "running":
                r.status, r.error = "interrupted", f"interrupted (forced) during stage {self.current or TEARDOWN}"
                r.timeline.finished_at = time.time()
                self.rec.save()
            if self.reap:
                reap_leftovers(self.rec.dir)
        finally:
            os._exit(EXIT_INTERRUPTED)

    def __enter__(self) -> RunContext:
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                self._old[s] = signal.signal(s, self._on_signal)
        return self

    # ---- stages ----
    def stage(
        self, name: str, fn: Callable[[], Any], on_done: Callable[[Any], dict] | None = None, optional: bool = False
    ) -> Any:
        """Run one stage and save the record. `optional`: a failure (not an interrupt) is recorded in
        `stage_errors`, warned about, and the stage returns None so the run goes on."""
        self.current = name
        self.ui.stage_start(name)
        t0 = time.monotonic()
        try:
            result = fn()
        except (HarnessError, Exception) as e:
            if not optional:
                raise
            self.stage_errors[name] = f"{e.__class__.__name__}: {e.render() if isinstance(e, HarnessError) else e}"
            self.ui.warn(f"{name} failed, the run goes on without it: {self.stage_errors[name]}")
            result = None
        dt = time.monotonic() - t0
        r = self.rec.record
        r.stage_durations_s[f"{name}_s"] = round(dt, 2)
        if result is not None and name in _TIMELINE:
            setattr(r.timeline, _TIMELINE[name], time.time())
        if name == "load":
            r.timeline.load_started_at, r.timeline.warmup_end_at, r.timeline.load_ended_at = (
                result.started_at,
                result.warmup_end,
                result.ended_at,
            )
        if result is not None:
            for k, v in (on_done(result) if on_done else {}).items():
                setattr(r, k, v)
        if self.stage_errors:
            r.stage_errors = dict(self.stage_errors)
        self.rec.save()  # every stage's results are on disk before the next stage starts
        self.results[name] = result
        self.ui.stage_done(name, dt)
        self.current = None
        return result

    def cleanup(self, fn: Callable[[], None]) -> None:
        self._cleanups.append(fn)

    @property
    def summary(self) -> dict | None:
        s = self.results.get("evaluate")
        return s.model_dump(mode="json") if s is not None else None

    @property
    def summary_verdict(self) -> str | None:
        s = self.results.get("evaluate")
        return s.verdict if s is not None else None

    def _finish_status(self, exc_type, exc, tb) -> None:
        r = self.rec.record
        load, summ = self.results.get("load"), self.results.get("evaluate")
        if exc_type is None:
            if summ is not None and summ.status != "completed":
                self.status = summ.status  # e.g. the load generator died: `failed`
            elif (load is not None and load.interrupted) or self.stop_event.is_set():
                self.status = "interrupted"
            else:
                self.status = "completed"
            if self.status == "failed" and load is not None and load.message:
                r.error = f"load: {load.message}"
        elif issubclass(exc_type, KeyboardInterrupt):
            self.status = "interrupted"
            r.error = f"interrupted during stage {self.current or TEARDOWN}"
        elif issubclass(exc_type, HarnessError):
            self.status = "failed"
            r.error = f"stage {self.current}: {exc.render()}"
        else:
            self.status = "failed"
            r.error = f"stage {self.current}: {exc_type.__name__}: {exc} (traceback in crash.log)"
            (self.rec.dir / "crash.log").write_text("".join(traceback.format_exception(exc_type, exc, tb)))
            self.ui.warn(f"internal error: {r.error}")
        if self.status == "interrupted":
            self.exit_code = EXIT_INTERRUPTED
        elif self.status == "failed":
            self.exit_code = exc.exit_code if isinstance(exc, HarnessError) else EXIT_BAD_INPUT
        else:
            self.exit_code = EXIT_PASS if self.summary_verdict in ("pass", "measured") else EXIT_SLO_FAILED

    def __exit__(self, exc_type, exc, tb) -> bool:
        r = self.rec.record
        failed_stage = self.current
        self._finish_status(exc_type, exc, tb)
        self.current = TEARDOWN
        # final status first (every data file already exists): a run killed during teardown is still readable
        r.status = self.status
        r.timeline.finished_at = time.time()
        self._save_quietly()
        # stop what we started even if a cleanup step itself fails or is interrupted (a second Ctrl-C aborts a step)
        for fn in reversed(self._cleanups):
            try:
                fn()
            except BaseException as e:  # noqa: BLE001 — teardown must go on
                if isinstance(e, KeyboardInterrupt):
                    self.forced = True
                self.ui.warn(f"cleanup step failed: {e.__class__.__name__}: {e}")
        if self.reap or self.forced:
            try:
                killed = reap_leftovers(self.rec.dir)
                if killed:
                    self.ui.warn(f"killed {killed} leftover process group(s) started by this run")
            except BaseException as e:  # noqa: BLE001
                self.ui.warn(f"could not check for leftover processes: {e}")
        try:  # report stage: rendered last, from the final record, whatever the status
            t0 = time.monotonic()
            write_reports(self.rec.dir, r.model_dump(mode="json"), self.summary)
            r.stage_durations_s["report_s"] = round(time.monotonic() - t0, 2)
        except BaseException as e:  # noqa: BLE001 — the record itself is already saved
            self.ui.warn(f"could not render reports: {e}")
        self._save_quietly()
        for s, h in self._old.items():
            signal.signal(s, h)
        self.current = failed_stage
        # harness errors go up to the CLI for the message; interrupts and crashes are recorded and mapped
        return exc_type is not None and not issubclass(exc_type, HarnessError)

    def _save_quietly(self) -> None:
        for _ in range(2):  # a Ctrl-C landing inside the save: write again (the write itself is atomic)
            try:
                self.rec.save()
                return
            except KeyboardInterrupt:
                self.forced = True


# ---------- the safety net: processes this run started that are still there ----------


def _markers(pid: int) -> list[re.Pattern]:
    # local Ray: --temp-dir=/tmp/harness-ray/<pid>-<time>; local Prometheus: <state>/stacks/<time>-<pid>/prometheus.yml
    return [re.compile(rf"/tmp/harness-ray/{pid}-\d+"), re.compile(rf"/stacks/[0-9-]+-{pid}/")]


def leftover_pgids(run_dir: Path | None = None, pid: int | None = None) -> set[int]:
    """Process groups (never ours) of processes started by this harness process: Ray, Prometheus, Locust."""
    import psutil

    pid = pid or os.getpid()
    pats = _markers(pid)
    own = os.getpgid(0)
    groups: set[int] = set()
    if run_dir is not None:
        pf = Path(run_dir) / "locust" / "locust.pid"
        try:
            lp = psutil.Process(int(pf.read_text().strip()))
            if (
                str(Path(run_dir) / "locust") in " ".join(lp.cmdline()) and os.getpgid(lp.pid) != own
            ):  # not a reused pid
                groups.add(os.getpgid(lp.pid))
        except (OSError, ValueError, psutil.Error):
            pass
    for p in psutil.process_iter(["pid", "cmdline"]):
        try:
            cmd = " ".join(p.info["cmdline"] or [])
            if cmd and any(m.search(cmd) for m in pats):
                g = os.getpgid(p.info["pid"])
                if g != own:
                    groups.add(g)
        except (psutil.Error, OSError):
            continue
    return groups


def reap_leftovers(run_dir: Path | None = None, pid: int | None = None) -> int:
    """SIGKILL the process groups from `leftover_pgids`; returns how many there were."""
    groups = leftover_pgids(run_dir, pid)
    for g in groups:
        try:
            os.killpg(g, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    return len(groups)
