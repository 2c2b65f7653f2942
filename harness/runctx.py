"""Stage mechanics for the pipeline: timing, saving the record after every stage, cleanup, Ctrl-C/SIGTERM.

First Ctrl-C or SIGTERM: stop the load gracefully (or abort the current stage), record what was measured,
mark the run `interrupted`, stop what the harness started, exit 130. A second Ctrl-C forces it.
"""

from __future__ import annotations

import signal
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Protocol

from harness.errors import EXIT_BAD_INPUT, EXIT_INTERRUPTED, HarnessError
from harness.record import Recorder
from harness.report import write_reports


class UI(Protocol):
    def run_dir(self, path: Path) -> None: ...
    def stage_start(self, name: str) -> None: ...
    def stage_done(self, name: str, seconds: float) -> None: ...
    def progress(self, p: dict) -> None: ...
    def warn(self, msg: str) -> None: ...


class NullUI:
    def run_dir(self, path): pass
    def stage_start(self, name): pass
    def stage_done(self, name, seconds): pass
    def progress(self, p): pass
    def warn(self, msg): pass


_TIMELINE = {"stack": "stack_ready_at", "deploy": "deployed_at", "scrape": "scrape_ended_at"}


class RunContext:
    def __init__(self, rec: Recorder, ui: UI):
        self.rec, self.ui = rec, ui
        self.stop_event = threading.Event()
        self.current: str | None = None
        self.results: dict[str, Any] = {}
        self._cleanups: list[Callable[[], None]] = []
        self._old: dict = {}
        self.status = "running"
        self.exit_code: int | None = None

    # ---- signals ----
    def _on_signal(self, signum, frame):
        if self.stop_event.is_set() or self.current != "load":
            self.stop_event.set()
            raise KeyboardInterrupt  # second press, or a stage that cannot stop gracefully
        self.stop_event.set()
        self.ui.warn("interrupt: stopping the load and recording what was measured (press Ctrl-C again to force)")

    def __enter__(self) -> "RunContext":
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                self._old[s] = signal.signal(s, self._on_signal)
        return self

    # ---- stages ----
    def stage(self, name: str, fn: Callable[[], Any], on_done: Callable[[Any], dict] | None = None) -> Any:
        self.current = name
        self.ui.stage_start(name)
        t0 = time.monotonic()
        result = fn()
        dt = time.monotonic() - t0
        r = self.rec.record
        r.stage_durations_s[f"{name}_s"] = round(dt, 2)
        if name in _TIMELINE:
            setattr(r.timeline, _TIMELINE[name], time.time())
        if name == "load":
            r.timeline.load_started_at, r.timeline.warmup_end_at, r.timeline.load_ended_at = (
                result.started_at, result.warmup_end, result.ended_at)
        for k, v in (on_done(result) if on_done else {}).items():
            setattr(r, k, v)
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

    def __exit__(self, exc_type, exc, tb) -> bool:
        r = self.rec.record
        load = self.results.get("load")
        if exc_type is None:
            self.status = "interrupted" if (load is not None and load.interrupted) or self.stop_event.is_set() else "completed"
        elif issubclass(exc_type, KeyboardInterrupt):
            self.status, self.exit_code = "interrupted", EXIT_INTERRUPTED
            r.error = f"interrupted during stage {self.current or 'teardown'}"
        elif issubclass(exc_type, HarnessError):
            self.status, self.exit_code = "failed", exc.exit_code
            r.error = f"stage {self.current}: {exc.render()}"
        else:
            self.status, self.exit_code = "failed", EXIT_BAD_INPUT
            r.error = f"stage {self.current}: {exc_type.__name__}: {exc}"
            (self.rec.dir / "crash.log").write_text("".join(traceback.format_exception(exc_type, exc, tb)))
        if self.status == "interrupted" and self.exit_code is None:
            self.exit_code = EXIT_INTERRUPTED
        # stop what we started even if a cleanup step itself fails or is interrupted
        for fn in reversed(self._cleanups):
            try:
                fn()
            except BaseException as e:  # noqa: BLE001 — teardown must go on
                self.ui.warn(f"cleanup step failed: {e.__class__.__name__}: {e}")
        for s, h in self._old.items():
            signal.signal(s, h)
        r.status = self.status
        r.timeline.finished_at = time.time()
        self.rec.save()
        try:  # report stage: rendered last, from the final record, whatever the status
            t0 = time.monotonic()
            write_reports(self.rec.dir, r.model_dump(mode="json"), self.summary)
            r.stage_durations_s["report_s"] = round(time.monotonic() - t0, 2)
            self.rec.save()
        except Exception as e:  # noqa: BLE001 — the record itself is already saved
            self.ui.warn(f"could not render reports: {e}")
        # harness errors go up to the CLI for the message; interrupts and crashes are recorded and mapped
        return exc_type is not None and not issubclass(exc_type, HarnessError) and issubclass(exc_type, KeyboardInterrupt)
