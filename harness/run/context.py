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
from types import FrameType, TracebackType
from typing import Any, Literal, Protocol, TypeVar, overload

from harness.errors import EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_PASS, EXIT_SLO_FAILED, HarnessError
from harness.load.runner import LoadResult
from harness.record.schema import RunStatus, Summary
from harness.report import write_reports
from harness.run.recorder import Recorder


class UI(Protocol):
    def run_dir(self, path: Path) -> None: ...
    def stage_start(self, name: str) -> None: ...
    def stage_done(self, name: str, seconds: float) -> None: ...
    def progress(self, p: dict) -> None: ...
    def warn(self, msg: str) -> None: ...


class NullUI:
    def run_dir(self, path: Path) -> None:
        pass

    def stage_start(self, name: str) -> None:
        pass

    def stage_done(self, name: str, seconds: float) -> None:
        pass

    def progress(self, p: dict) -> None:
        pass

    def warn(self, msg: str) -> None:
        pass


TEARDOWN = "teardown"
T = TypeVar("T")


class RunContext:
    """Runs stages (`stage`), concludes the run from what it measured (`conclude`), renders the reports
    (`render_reports`, the pipeline's report stage) and, on exit, tears down what the run started. On a failure
    or an interrupt the exit finalises the record and renders the reports itself: nothing is lost."""

    def __init__(self, rec: Recorder, ui: UI, *, reap: bool = True):
        self.rec, self.ui = rec, ui
        self.stop_event = threading.Event()
        self.current: str | None = None
        self.graceful = False  # the current stage stops itself on `stop_event` (first Ctrl-C: no exception)
        self.stage_errors: dict[str, str] = {}  # optional stages that failed (the run went on)
        self._cleanups: list[Callable[[], object]] = []
        self._old: dict[int, Any] = {}
        self.status: RunStatus = "running"
        self.exit_code: int | None = None
        self.signals = 0
        self.forced = False
        self.reap = reap  # SIGKILL leftovers of processes this run started (not with --keep-up)
        self._summary: Summary | None = None
        self._load: LoadResult | None = None
        self._concluded = False
        self._reported = False

    # ---- signals ----
    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.signals += 1
        self.stop_event.set()
        if self.signals >= 3:
            self._emergency_exit()
        if self.signals == 1 and self.graceful:
            self.ui.warn(
                f"interrupt: stopping the {self.current} and recording what was measured (press Ctrl-C again to force)"
            )
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
            if self.rec.record.status == "running":
                self.rec.finish("interrupted", f"interrupted (forced) during stage {self.current or TEARDOWN}")
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
    @overload
    def stage(
        self, name: str, fn: Callable[[], T], optional: Literal[False] = False, *, graceful: bool = False
    ) -> T: ...
    @overload
    def stage(self, name: str, fn: Callable[[], T], optional: Literal[True], *, graceful: bool = False) -> T | None: ...
    def stage(self, name: str, fn: Callable[[], T], optional: bool = False, *, graceful: bool = False) -> T | None:
        """Run one stage: its wall time (and, if `optional`, its failure) go into the record, saved before the
        next stage starts; what the stage produced is recorded by the pipeline (`Recorder.record_*`).
        `optional`: a failure (not an interrupt) is recorded in `stage_errors`, warned about, and the stage
        returns None so the run goes on. `graceful`: the stage watches `stop_event` and ends early by itself on
        the first Ctrl-C/SIGTERM (the load drains in-flight requests); other stages are aborted."""
        self.current, self.graceful = name, graceful
        self.ui.stage_start(name)
        t0 = time.monotonic()
        error = None
        result: T | None
        try:
            result = fn()
        except Exception as e:
            if not optional:
                raise
            error = f"{e.__class__.__name__}: {e.render() if isinstance(e, HarnessError) else e}"
            self.stage_errors[name] = error
            self.ui.warn(f"{name} failed, the run goes on without it: {error}")
            result = None
        dt = time.monotonic() - t0
        self.rec.record_stage(name, dt, error)
        self.ui.stage_done(name, dt)
        self.current, self.graceful = None, False
        return result

    def cleanup(self, fn: Callable[[], object]) -> None:
        self._cleanups.append(fn)

    def conclude(self, summary: Summary | None, load: LoadResult | None) -> None:
        """The run's final status and exit code from what it measured; the record is final from here on."""
        self._summary, self._load, self._concluded = summary, load, True
        self._finish_status(None, None, None)
        self.rec.finish(self.status)
        self.rec.save()

    def render_reports(self) -> list[str]:
        """The report stage: every report rendered from the record as it is now."""
        written = write_reports(self.rec.dir, self.rec.record, self._summary)
        self.rec.record_reports(written)
        self._reported = True
        return written

    @property
    def summary(self) -> dict | None:
        return self._summary.model_dump(mode="json") if self._summary is not None else None

    def _finish_status(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        r, load, summ = self.rec.record, self._load, self._summary
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
        elif isinstance(exc, HarnessError):
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
            verdict = self._summary.verdict if self._summary is not None else None
            self.exit_code = EXIT_PASS if verdict in ("pass", "measured") else EXIT_SLO_FAILED

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        failed_stage = self.current
        if exc_type is not None or not self._concluded:  # a failure or an interrupt: finalise here
            self._finish_status(exc_type, exc, tb)
            self.rec.finish(self.status)
            # final status first (every data file already exists): a run killed during teardown is still readable
            self._save_quietly()
        self.current = TEARDOWN
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
        if not self._reported:  # the fallback report stage: from the final record, whatever the status
            try:
                t0 = time.monotonic()
                self.render_reports()
                self.rec.record.stage_durations_s["report_s"] = round(time.monotonic() - t0, 2)
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
