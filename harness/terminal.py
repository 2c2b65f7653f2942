"""Terminal output: stage lines, a live progress line during load, the verdict table."""

from __future__ import annotations

import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from harness.report.fmt import fmt_value

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


class RichUI:
    def __init__(self, quiet: bool = False, stream=None):
        self.quiet = quiet
        self.c = Console(file=stream, highlight=False) if stream else console
        self._live = None

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
        line = (
            f"  {p.get('elapsed_s', 0):5.0f}/{p.get('total_s', 0):.0f} s  stage {p.get('stage', '-')}  users {p.get('users', 0)}  "
            f"req {p.get('requests', 0)}  {p.get('rps', 0):.1f} req/s  errors {p.get('errors', 0)}  "
            f"TTFT p50 {p.get('ttft_p50_ms') or 0:.0f} ms p95 {p.get('ttft_p95_ms') or 0:.0f} ms"
            + (f"  replicas {p['replicas']:g}" if p.get("replicas") is not None else "")  # when a poller provides it
        )
        if self._live is not None:
            self._live.update(line)
        elif int(p.get("elapsed_s", 0)) % 10 == 0:  # not a terminal (CI logs): a line every ~10 s
            self.c.print(line)

    def warn(self, msg: str) -> None:
        err_console.print(f"[yellow]warning:[/] {msg}")


def print_verdict(summary: dict | None, run_dir: Path, quiet: bool = False) -> None:
    if summary is None:
        console.print(f"no verdict (run did not reach evaluation); record: {run_dir}")
        return
    if not quiet:
        t = Table(title=f"{summary['scenario']}: {summary['verdict'].upper()}", title_justify="left")
        for col in ("", "SLO", "observed", "threshold", "source"):
            t.add_column(col)
        for s in sorted(summary["slos"], key=lambda s: s["passed"]):
            t.add_row("PASS" if s["passed"] else "[red]FAIL[/]", s["slo"],
                      fmt_value(s["observed"], s["unit"]) if s["observed"] is not None else "no data",
                      f"{s['op']} {fmt_value(s['threshold'], s['unit'])}", s["source"])
        console.print(t)
        for w in summary.get("warnings", []):
            console.print(f"[yellow]warning:[/] {w}")
    for s in summary["slos"]:
        obs = fmt_value(s["observed"], s["unit"]) if s["observed"] is not None else "no data"
        why = f": {s['reason']}" if not s["passed"] and s.get("reason") else ""
        sys.stdout.write(f"{'PASS' if s['passed'] else 'FAIL'} {s['slo']} (observed {obs}){why}\n")
    what = " — measure-only run: no SLOs judged" if summary.get("measure_only") else ""
    if summary.get("load_failure"):
        what += f" — the load failed: {summary['load_failure']}"
    sys.stdout.write(f"verdict: {summary['verdict'].upper()} ({summary['status']}){what}  {run_dir}\n")
