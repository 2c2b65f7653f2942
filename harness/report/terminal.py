"""Terminal output: stage lines, a live progress line during load, the verdict table."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from harness.report.fmt import fmt_value

if TYPE_CHECKING:
    from rich.live import Live


def _console(stderr: bool = False, file=None) -> Console:
    # Not a terminal (CI logs, pipes): Rich would wrap at 80 columns; log lines must stay one line each.
    stream = file or (sys.stderr if stderr else sys.stdout)
    tty = hasattr(stream, "isatty") and stream.isatty()
    width = None if tty or os.environ.get("COLUMNS") else 200
    return Console(file=file, stderr=stderr, highlight=False, width=width, soft_wrap=not tty)


console = _console()
err_console = _console(stderr=True)
NON_TTY_PROGRESS_EVERY_S = 10.0


class RichUI:
    def __init__(self, quiet: bool = False, stream=None):
        self.quiet = quiet
        self.c = _console(file=stream) if stream else console
        self._live: Live | None = None
        self._last_line_t = 0.0

    def run_dir(self, path: Path) -> None:
        if not self.quiet:
            self.c.print(f"run folder: {path}")

    def stage_start(self, name: str) -> None:
        if not self.quiet:
            self.c.print(f"[bold]▶ {name}[/]")
        if name == "load" and not self.quiet and self.c.is_terminal:
            from rich.live import Live

            self._live = Live("", console=self.c, refresh_per_second=4, transient=True)
            self._live.start()

    def stage_done(self, name: str, seconds: float) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None
        if not self.quiet:
            self.c.print(f"  {name} done in {seconds:.1f} s")

    def progress(self, p: dict) -> None:
        if self.quiet:
            return
        line = progress_line(p)
        if self._live is not None:
            self._live.update(line)
        elif time.monotonic() - self._last_line_t >= NON_TTY_PROGRESS_EVERY_S:  # CI logs: one short line per interval
            self._last_line_t = time.monotonic()
            self.c.print(line, soft_wrap=True)

    def warn(self, msg: str) -> None:
        err_console.print(f"[yellow]warning:[/] {escape(msg)}")


def progress_line(p: dict) -> str:
    ttft = f"TTFT p50/p95 {p.get('ttft_p50_ms') or 0:.0f}/{p.get('ttft_p95_ms') or 0:.0f} ms"
    return (
        f"  {p.get('elapsed_s', 0):.0f}/{p.get('total_s', 0):.0f} s  {p.get('stage', '-')}  users {p.get('users', 0)}  "
        f"req {p.get('requests', 0)} ({p.get('rps', 0):.1f}/s)  err {p.get('errors', 0)}  {ttft}"
        + (f"  replicas {p['replicas']:g}" if p.get("replicas") is not None else "")
    )  # when a poller provides it


def _observed(s: dict) -> str:
    return fmt_value(s["observed"], s["unit"]) if s["observed"] is not None else "no data"


def print_verdict(summary: dict | None, run_dir: Path, quiet: bool = False) -> None:
    """The SLO table (failed first, with why), warnings, then the one verdict line; quiet: failures + verdict."""
    if summary is None:
        console.print(f"no verdict (run did not reach evaluation); record: {run_dir}")
        return
    slos = sorted(summary["slos"], key=lambda s: s["passed"])
    if quiet:
        for s in slos:
            if not s["passed"]:
                console.print(
                    escape(
                        f"FAIL {s['slo']} (observed {_observed(s)})" + (f": {s['reason']}" if s.get("reason") else "")
                    )
                )
    else:
        t = Table(title_justify="left")
        for col in ("", "SLO", "observed", "threshold", "source", "why"):
            t.add_column(col, overflow="fold")
        for s in slos:
            t.add_row(
                "PASS" if s["passed"] else "[red]FAIL[/]",
                escape(s["slo"]),
                _observed(s),
                escape(f"{s['op']} {fmt_value(s['threshold'], s['unit'])}"),
                escape(s["source"]),
                "" if s["passed"] else escape(s.get("reason") or ""),
            )
        console.print(t)
        for w in summary.get("warnings", []):
            console.print(f"[yellow]warning:[/] {escape(w)}")
    verdict = summary["verdict"].upper()
    what = " — measure-only run: no SLOs judged" if summary.get("measure_only") else ""
    if summary.get("load_failure"):
        what += f" — the load failed: {summary['load_failure']}"
    if se := summary.get("stopped_early"):
        what += f" — stopped early at {se['at_s']:.1f} s ({se['trigger']})"
    color = "[green]" if verdict == "PASS" else "[red]" if verdict == "FAIL" else "[yellow]"
    console.print(f"verdict: {color}{verdict}[/] ({summary['status']}){escape(what)}  {run_dir}")
