"""`harness history` in the terminal: a Rich table per scenario, moved statistics marked."""

from __future__ import annotations


def print_history(hist: dict, console) -> None:
    from rich.table import Table

    for sc in hist["scenarios"]:
        flagged = {(f["index"], f["metric"]) for f in sc["flags"]}
        t = Table(title=f"{sc['scenario']}: {len(sc['runs'])} runs", title_justify="left")
        for col in ["when", "run", "labels", "verdict"] + hist["metrics"]:
            t.add_column(col, justify="left" if col in ("when", "run", "labels", "verdict") else "right")
        for i, r in enumerate(sc["runs"]):
            cells = []
            for m in hist["metrics"]:
                v = r["stats"][m]
                s = "—" if v is None else (f"{v * 100:.2f}%" if m == "error_rate" else f"{v:.4g}")
                cells.append(f"[red]{s} ◀[/]" if (i, m) in flagged else s)
            verdict = r["verdict"] if r["verdict"] in ("pass", "measured") else f"[red]{r['verdict']}[/]"
            if r.get("load_failure"):
                verdict = f"[red]{r['verdict']}, broken[/]"
            t.add_row(r["when"], r["run_id"], " ".join(f"{k}={v}" for k, v in r["labels"].items()), verdict, *cells)
        console.print(t)
        for f in sc["flags"]:
            console.print(f"[{'red' if f['assessment'] == 'worse' else 'green'}]moved:[/] {f['message']}")
        for b in sc.get("broken", []):
            console.print(f"[red]broken:[/] {b['message']}")
        if not sc["flags"]:
            console.print("no statistic moved beyond noise")
