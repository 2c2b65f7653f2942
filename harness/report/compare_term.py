"""Terminal table for a comparison (rich): client rows, key server rows, anything a rule names or flags."""

from __future__ import annotations

from typing import Literal

from rich.console import Console
from rich.table import Table

from harness.report.compare_md import (
    KEY_SERVER,
    fmt_change,
    fmt_ci,
    fmt_cv,
    fmt_obs,
    fmt_p,
    method_line,
    row_p,
    title,
    verdict_cell,
)


def print_outputs(out: dict, console: Console) -> None:
    """workload.correctness probes: each changed output side by side (base | new)."""
    if not out["changed"]:
        console.print(f"outputs: {out['compared']} correctness probe(s), none changed", highlight=False)
    else:
        t = Table(
            title=f"outputs: {len(out['changed'])} of {out['compared']} correctness probe(s) changed",
            title_justify="left",
            title_style="red",
        )
        for col in ("#", "prompt", "base output", "new output"):
            t.add_column(col, overflow="fold")
        for ch in out["changed"]:
            t.add_row(str(ch["index"]), ch["prompt"], ch["base"], ch["new"])
        console.print(t)
    for n in out["notes"]:
        console.print(f"[yellow]outputs:[/] {n}", highlight=False)


def print_comparison(result: dict, console: Console) -> None:
    if not console.is_terminal and console.width < 140:  # CI logs and pipes: no wrapping of the table
        console = Console(width=140, highlight=False, file=console.file)
    runs = {r["run_id"]: r for r in result["runs"]}
    for i, r in enumerate(result["runs"]):
        labels = " ".join(f"{k}={v}" for k, v in r["labels"].items())
        reps = f" ({r['repeats']} runs)" if r.get("repeats") else ""
        console.print(
            f"{'base' if i == 0 else f'new {i}'}: {r['label'] if reps else r['run_id']}{reps} {labels}  "
            f"[dim]{r['environment']}[/]"
        )
    console.print(method_line(result).replace("**", ""), highlight=False)
    for c in result["comparisons"]:
        between = c.get("method") == "between-run"
        t = Table(title=f"{runs[c['new']]['label']} vs {runs[c['base']]['label']}", title_justify="left")
        cols: tuple[tuple[str, Literal["left", "right"]], ...] = (
            ("metric", "left"),
            ("base", "right"),
            ("new", "right"),
            ("change", "right"),
            ("95% CI of change", "right"),
            ("Welch p" if between else "MWU p", "right"),
            *((("CV base", "right"), ("CV new", "right")) if between else ()),
            ("gate", "left"),
            ("", "left"),
        )
        for col, j in cols:
            t.add_column(col, justify=j)
        for r in c["rows"]:
            if r["source"] == "server" and r["key"] not in KEY_SERVER and not r["rule"]:
                continue
            style = "red" if r["regression"] else ("yellow" if r["assessment"] == "worse" else None)
            t.add_row(
                r["key"],
                fmt_obs(r, "base"),
                fmt_obs(r, "new"),
                fmt_change(r),
                fmt_ci(r),
                fmt_p(row_p(r)),
                *((fmt_cv(r, "base"), fmt_cv(r, "new")) if between else ()),
                (r["rule"] or "").partition(":")[2],
                verdict_cell(r),
                style=style,
            )
        console.print(t)
        if c.get("outputs"):
            print_outputs(c["outputs"], console)
        for n in c["notes"]:
            console.print(f"[dim]naming era: {n}[/]")
        for w in c["warnings"]:
            console.print(f"[yellow]warning:[/] {w}")
        for x in c["regressions"]:
            console.print(f"[red]regression:[/] {x}")
    console.print(f"[bold]{title(result)}[/] (exit {result['exit_code']})")
