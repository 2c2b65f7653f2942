"""compare.md: a pure function of the comparison (harness.compare.compare_runs output)."""

from __future__ import annotations

from harness.report.fmt import fmt_value

# rows the terminal shows for server signals (Markdown and HTML show all)
KEY_SERVER = (
    "server_ttft.p95",
    "server_itl.p95",
    "server_e2e.p95",
    "kv_cache_usage.max",
    "queue_waiting.max",
    "replicas.max",
    "preemptions.total",
)
MARK = {
    "worse": "▲ worse",
    "better": "▼ better",
    "within noise": "≈",
    "changed": "changed",
    "untested": "n/a",
    "no data": "no data",
    "too few samples": "too few samples",
    "too few runs": "too few runs",
}


def fmt_change(row: dict) -> str:
    ch, unit = row.get("change"), row.get("unit")
    if ch is None:
        return "—"
    if unit == "fraction" and row["signal"] == "error_rate":
        return f"{ch * 100:+.2f} pp"
    if unit == "ms":
        s = f"{ch:+.1f} ms" if abs(ch) < 1000 else f"{ch / 1000:+.2f} s"
    elif unit == "per_s":
        s = f"{ch:+.1f}/s"
    else:
        s = f"{ch:+.4g}"
    return s + (f" ({row['rel_change'] * 100:+.1f}%)" if row.get("rel_change") is not None else "")


def fmt_ci(row: dict) -> str:
    ci = row.get("ci")
    if not ci:
        return "—"
    if row["signal"] == "error_rate":
        return f"[{ci[0] * 100:+.2f}, {ci[1] * 100:+.2f}] pp"
    return f"[{ci[0]:+.3g}, {ci[1]:+.3g}]"


def fmt_p(p: float | None) -> str:
    return "—" if p is None else ("<1e-4" if p < 1e-4 else f"{p:.3g}")


def fmt_cv(row: dict, side: str) -> str:
    g = row.get(f"{side}_runs") or {}
    return "—" if g.get("cv") is None else f"{g['cv'] * 100:.1f}%"


def fmt_runs_ci(row: dict, side: str) -> str:
    """A group's t-interval of the mean (between-run comparisons)."""
    g = row.get(f"{side}_runs") or {}
    if not g.get("ci"):
        return "—"
    unit = row.get("unit") or ""
    return f"[{fmt_value(g['ci'][0], unit)}, {fmt_value(g['ci'][1], unit)}]"


def row_p(row: dict) -> float | None:
    return row.get("p_welch") if "p_welch" in row else row.get("p_mwu")


def method_line(result: dict) -> str:
    m = result.get("method") or {"kind": "within-run", "reason": "one run per side"}
    return f"Significance: **{m['kind']}** — {m['reason']}."


def footer(result: dict) -> str:
    st = result["settings"]
    if st.get("resamples") is None:  # between-run
        return f"Method: {st['method']}. CV: coefficient of variation of the per-run values (sd / mean)."
    return (
        f"Method: {st['method']}; {st['confidence'] * 100:.0f}% CI, seed {st['seed']}, "
        f"up to {st['resamples']} resamples. MWU p: Mann-Whitney U on per-request values (informational)."
    )


def fmt_obs(row: dict, key: str) -> str:
    return fmt_value(row.get(key), row.get("unit") or "")


def verdict_cell(row: dict) -> str:
    if row.get("regression"):
        return "❌ REGRESSION"
    return MARK.get(row.get("assessment", ""), row.get("assessment", ""))


def title(result: dict) -> str:
    sc = result["runs"][0].get("scenario")
    return f"{sc}: {'REGRESSION' if result['exit_code'] else 'no regression'}"


def _table(rows: list[dict]) -> list[str]:
    if rows and "p_welch" in rows[0]:  # between-run: group means, their t-intervals and CVs
        out = [
            "| metric | base (mean of runs) | base 95% t-interval | base CV | new (mean of runs) | new 95% t-interval "
            "| new CV | change | 95% CI of change | Welch p | rule | |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in rows:
            out.append(
                f"| `{r['key']}` | {fmt_obs(r, 'base')} | {fmt_runs_ci(r, 'base')} | {fmt_cv(r, 'base')} | "
                f"{fmt_obs(r, 'new')} | {fmt_runs_ci(r, 'new')} | {fmt_cv(r, 'new')} | {fmt_change(r)} | "
                f"{fmt_ci(r)} | {fmt_p(r['p_welch'])} | {r.get('rule') or ''} | {verdict_cell(r)} |"
            )
        return out
    out = ["| metric | base | new | change | 95% CI of change | MWU p | rule | |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        out.append(
            f"| `{r['key']}` | {fmt_obs(r, 'base')} | {fmt_obs(r, 'new')} | {fmt_change(r)} | {fmt_ci(r)} | "
            f"{fmt_p(r.get('p_mwu'))} | {r.get('rule') or ''} | {verdict_cell(r)} |"
        )
    return out


def render_compare_markdown(result: dict) -> str:
    runs = {r["run_id"]: r for r in result["runs"]}
    lines = [
        f"# Comparison — {title(result)}",
        "",
        "| | run | labels | environment | verdict | requests |",
        "|---|---|---|---|---|---|",
    ]
    for i, r in enumerate(result["runs"]):
        labels = ", ".join(f"{k}={v}" for k, v in r["labels"].items()) or "—"
        lines.append(
            f"| {'base' if i == 0 else f'new {i}'} | `{r['run_id']}` | {labels} | {r['environment']} | "
            f"{(r.get('verdict') or '?').upper()} | {r.get('requests')} |"
        )
    rules = ", ".join(f"`{r['text']}`" for r in result["rules"]) or "none (not gated)"
    lines += ["", f"Gate (fires when beyond the threshold AND significant): {rules}.", "", method_line(result), ""]
    for g in result.get("groups") or []:
        if g.get("group"):
            lines.append(f"- group `{g['name']}`: {g['n']} run(s) ({', '.join(g['runs'])})")
    lines.append("")
    for c in result["comparisons"]:
        base, new = runs[c["base"]], runs[c["new"]]
        lines += [f"## {new['label']} vs {base['label']}", ""]
        if c["regressions"]:
            lines += ["**Regressions:**", ""] + [f"- {x}" for x in c["regressions"]] + [""]
        else:
            lines += ["No regression.", ""]
        lines += _outputs(c.get("outputs"))
        client = [r for r in c["rows"] if r["source"] == "client"]
        server = [r for r in c["rows"] if r["source"] == "server"]
        src = "per-run summaries" if c.get("method") == "between-run" else "raw samples"
        lines += [f"### Client ({src})", ""] + _table(client)
        if server:
            lines += ["", "### Server (Prometheus, by logical signal; no significance test)", ""] + _table(server)
        if c["notes"]:
            lines += ["", "Series naming differs (compared by logical signal):", ""] + [f"- {n}" for n in c["notes"]]
        if c["warnings"]:
            lines += ["", "### Warnings", ""] + [f"- {w}" for w in c["warnings"]]
        lines.append("")
    lines += ["---", footer(result)]
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _outputs(out: dict | None) -> list[str]:
    """workload.correctness probes: each changed output side by side."""
    if not out:
        return []
    if not out["changed"]:
        lines = [f"Outputs: {out['compared']} correctness probe(s), none changed.", ""]
    else:
        lines = [f"### Outputs: {len(out['changed'])} of {out['compared']} correctness probe(s) changed", ""]
        lines += ["| # | prompt | base output | new output |", "|---|---|---|---|"]
        lines += [
            f"| {ch['index']} | {_cell(ch['prompt'])} | {_cell(ch['base'])} | {_cell(ch['new'])} |"
            for ch in out["changed"]
        ]
        lines.append("")
    return lines + [f"- {n}" for n in out["notes"]] + ([""] if out["notes"] else [])
