"""report.md: a pure function of the record (run.json + summary.json)."""

from __future__ import annotations

from harness.report.fmt import fmt_ms, fmt_value


def render_markdown(run: dict, summary: dict | None) -> str:
    sc = run.get("scenario", {})
    env = run.get("environment", {})
    lines = [f"# {sc.get('name', '?')} — run `{run.get('run_id')}`", ""]
    if summary is None:
        lines += [
            f"**Status: {run.get('status')}** — no summary was written"
            + (f": {run['error']}" if run.get("error") else "."),
            "",
        ]
        return "\n".join(lines)
    verdict = summary["verdict"].upper()
    failed = [s for s in summary["slos"] if not s["passed"]]
    lines += [
        f"**Verdict: {verdict}** ({len(summary['slos']) - len(failed)}/{len(summary['slos'])} SLOs passed; "
        f"status {summary['status']})"
        + (" — measure-only run: no SLOs judged" if summary.get("measure_only") else "")
        + (f" — the load failed: {summary['load_failure']}" if summary.get("load_failure") else ""),
        "",
    ]
    if sc.get("description"):
        lines += [f"> {sc['description']}", ""]
    lines += ["## SLOs", "", "| | SLO | observed | threshold | source | why |", "|---|---|---|---|---|---|"]
    for s in sorted(summary["slos"], key=lambda s: s["passed"]):  # failed first
        mark = "✅" if s["passed"] else "❌"
        obs = fmt_value(s["observed"], s["unit"]) if s["observed"] is not None else "no data"
        why = (s.get("reason") or "").replace("|", "\\|")
        lines.append(
            f"| {mark} | `{s['slo']}` | {obs} | {s['op']} {fmt_value(s['threshold'], s['unit'])} "
            f"| {s['source']} | {why} |"
        )
    if summary.get("autoscaling"):
        lines += ["", "## Autoscaling", ""] + autoscaling_lines(summary["autoscaling"])
    c = summary.get("client", {})
    lines += [
        "",
        "## Client (raw samples, warmup excluded)",
        "",
        "| metric | p50 | p90 | p95 | p99 | max | mean |",
        "|---|---|---|---|---|---|---|",
    ]
    sched = " (from scheduled arrival)" if c.get("latency_from") == "scheduled arrival" else ""
    for k, label in (
        ("ttft_ms", "TTFT" + sched),
        ("ttft_from_send_ms", "TTFT from send"),
        ("ttft_content_ms", "TTFT, first content token"),
        ("itl_ms", "ITL (per token)"),
        ("chunk_gap_ms", "gap between SSE events"),
        ("tpot_ms", "TPOT"),
        ("e2e_ms", "E2E" + sched),
        ("e2e_from_send_ms", "E2E from send"),
    ):
        d = c.get(k)
        if d:
            lines.append(
                f"| {label} | "
                + " | ".join(fmt_ms(d.get(s)) for s in ("p50", "p90", "p95", "p99", "max", "mean"))
                + " |"
            )
    if c.get("dropped_arrivals"):
        lines += ["", f"{c['dropped_arrivals']} open-loop arrivals were never sent (counted as failed requests)."]
    lines += [
        "",
        f"Requests {c.get('requests', 0)} (errors {c.get('errors', 0)}"
        + (
            f": {', '.join(f'{k} {v}' for k, v in c.get('errors_by_class', {}).items())}"
            if c.get("errors_by_class")
            else ""
        )
        + f"), {c.get('requests_per_s') or 0:.1f} req/s, "
        f"{c.get('output_tokens_per_s') or 0:.1f} output tok/s over {c.get('duration_s', 0):.1f} s.",
    ]
    g = c.get("goodput")
    if g:
        crit = ", ".join(f"{k} ≤ {v:g}" for k, v in g.get("criteria", {}).items())
        att = "—" if g.get("attainment") is None else f"{100 * g['attainment']:.1f}%"
        lines += [
            "",
            f"Goodput ({crit}): {g['rate']:.2f} req/s, attainment {att} "
            f"({g['total']:.0f} of {g['requests']} requests).",
        ]
    for key, title in (("models", "Per model"), ("request_kinds", "Per request kind")):
        rows = slice_rows(summary.get(key) or {})
        if rows:
            lines += ["", f"## {title} (raw samples, warmup excluded)", "", "| " + " | ".join(SLICE_HEAD) + " |"]
            lines += ["|" + "---|" * len(SLICE_HEAD)] + ["| " + " | ".join(r) + " |" for r in rows]
    srv = summary.get("server", {})
    if srv:
        lines += [
            "",
            "## Server (Prometheus, through Ray's discovered targets)",
            "",
            "| signal | series | stats |",
            "|---|---|---|",
        ]
        for name, st in sorted(srv.items()):
            series = summary.get("server_series", {}).get(name) or "—"
            res = (summary.get("server_resolution") or {}).get(name) or {}
            shown = ", ".join(f"{k} {v:.4g}{_bucket_text(res, k)}" for k, v in st.items() if k != "samples")
            lines.append(f"| {name} | `{series}` | {shown} |")
    missing = [k for k, v in summary.get("server_series", {}).items() if v is None]
    if missing:
        lines += ["", f"No series in Prometheus for: {', '.join(sorted(missing))}."]
    rows = reconciliation_rows(summary.get("reconciliation") or {})
    if rows:
        lines += [
            "",
            "## Client vs server",
            "",
            "| check | client | server | difference | agrees |",
            "|---|---|---|---|---|",
        ]
        lines += [f"| {r[0]} | {r[1]} | {r[2]} | {r[3]} | {r[4]} |" for r in rows]
    if summary.get("warnings"):
        lines += ["", "## Warnings", ""] + [f"- {w}" for w in summary["warnings"]]
    dur = run.get("stage_durations_s", {})
    lines += [
        "",
        "## Run",
        "",
        f"- harness {env.get('harness')} ({env.get('git_commit') or 'no git'}), Ray {env.get('ray')}, "
        f"vLLM {env.get('vllm') or '—'}, Python {env.get('python')}",
        f"- target: {sc.get('target', {}).get('engine')} `{sc.get('target', {}).get('model')}` "
        f"at {run.get('deployment', {}).get('base_url', '?')}",
        "- stages: " + ", ".join(f"{k} {v:.1f} s" for k, v in dur.items()),
    ]
    return "\n".join(lines) + "\n"


SLICE_HEAD = (
    "",
    "requests",
    "errors",
    "TTFT p50",
    "TTFT p95",
    "TTFT content p95",
    "ITL p95",
    "E2E p95",
    "output tok/s",
    "reasoning tok",
    "tool-call replies",
    "server TTFT p95",
)


def slice_rows(slices: dict) -> list[list[str]]:
    """One row per model (or request kind) of `summary.models` / `summary.request_kinds` (shown when > 1)."""
    if len(slices) < 2:
        return []

    def p(d: dict | None, stat: str) -> str:
        return fmt_ms((d or {}).get(stat))

    rows = []
    for name, st in slices.items():
        srv = ((st.get("server") or {}).get("server_ttft") or {}).get("p95")
        rows.append(
            [
                f"`{name}`",
                str(st.get("requests", 0)),
                str(st.get("errors", 0)),
                p(st.get("ttft_ms"), "p50"),
                p(st.get("ttft_ms"), "p95"),
                p(st.get("ttft_content_ms"), "p95"),
                p(st.get("itl_ms"), "p95"),
                p(st.get("e2e_ms"), "p95"),
                f"{st.get('output_tokens_per_s') or 0:.1f}",
                f"{st.get('reasoning_tokens') or 0:.0f}",
                str(st.get("tool_call_replies", 0)),
                fmt_ms(srv) if srv is not None else "—",
            ]
        )
    return rows


def autoscaling_lines(a: dict) -> list[str]:
    """The scale-up/down story: replicas against the load steps, time to reach the wanted count, churn, flaps."""
    out = [
        f"Replicas {a['replicas_min']:g}–{a['replicas_max']:g} during the load"
        + (
            f"; the autoscaler asked for up to {a['wanted_max']:g} (`{a.get('wanted_series')}`)"
            if a.get("wanted_max") is not None
            else ""
        )
        + (
            f"; {a['replica_starts']:g} replica starts, churn {a['churn_per_min']:.2f}/min"
            if a.get("replica_starts") is not None
            else ""
        )
        + f"; {a.get('flaps', 0)} flap(s)"
        + (f" at {', '.join(f'{t:.0f} s' for t in a.get('flap_at_s', []))}" if a.get("flaps") else "")
        + ".",
        "",
    ]
    evs = [("up", e) for e in a.get("scale_ups", [])] + [("down", e) for e in a.get("scale_downs", [])]
    if evs:
        out += ["| step | at | users | replicas | time to reach |", "|---|---|---|---|---|"]
        for d, e in evs:
            took = f"{e['time_s']:.1f} s" if e["reached"] else f"not reached in {e['stage_s']:g} s (best {e['best']:g})"
            out.append(
                f"| scale-{d} (`{e['stage']}`) | {e['at_s']:.0f} s | {e['users_from']} → {e['users_to']} | "
                f"{e['replicas_from']:g} → {e['wanted']:g} | {took} |"
            )
        out.append("")
    if a.get("stages"):
        out += ["| stage | users | replicas min–max | autoscaler asked max |", "|---|---|---|---|"]
        for st in a["stages"]:
            rng = "—" if st["replicas_min"] is None else f"{st['replicas_min']:g}–{st['replicas_max']:g}"
            w = "—" if st["wanted_max"] is None else f"{st['wanted_max']:g}"
            out.append(f"| `{st['stage']}` ({st['start_s']:.0f}–{st['end_s']:.0f} s) | {st['users']} | {rng} | {w} |")
        out.append("")
    out += [f"- {k}: {v}" for k, v in (a.get("notes") or {}).items()]
    return out


def _bucket_text(res: dict, stat: str) -> str:
    """` [lo–hi]` after a server quantile (its histogram bucket), ` (midpoints)` after a midpoint-built mean."""
    b = (res.get("quantile_buckets_ms") or {}).get(stat)
    if b:
        return f" [{b[0]:g}–{'∞' if b[1] is None else format(b[1], 'g')}]"
    if stat == "mean" and res.get("mean_note"):
        return " (from bucket midpoints)"
    return ""


def reconciliation_rows(rec: dict) -> list[tuple[str, str, str, str, str]]:
    """(check, client, server, difference, agrees) per reconciliation entry.

    The server side of Locust's request count is Locust itself.
    """
    rows = []
    for key, v in rec.items():
        if not isinstance(v, dict):
            continue
        agrees = {True: "yes", False: "**no**"}.get(v.get("agree"), "—")
        if key == "samples_vs_locust":
            rows.append(
                (
                    "samples vs Locust's count",
                    str(v.get("samples")),
                    f"{v.get('locust')} (Locust)",
                    f"{v.get('diff')}",
                    "yes" if v.get("diff") == 0 else "**no**",
                )
            )
        elif key.startswith("requests_"):
            label = key.replace("requests_", "requests ").replace("_vs_", " vs ").replace("_", " ")
            rows.append((label, str(v.get("client")), f"{v.get('server'):g}", f"{v.get('diff'):+g}", agrees))
        elif key.startswith("ttft_"):
            b = v.get("bucket_ms")
            where = f" (bucket {b[0]:g}–{b[1]:g} ms)" if b else ""
            j = v.get("judgement")
            if j == "client_slower":
                agrees = "**no**: client slower than the server can resolve; likely " + "; ".join(
                    v.get("likely_causes") or []
                )
            elif j == "client_faster":
                agrees = "**no**: client faster than the engine (impossible: wrong series or window)"
            rows.append(
                (
                    f"TTFT {key.split('_')[1]} (ms)",
                    f"{v.get('client'):.1f}",
                    f"{v.get('server'):.1f}{where}",
                    f"{v.get('client_minus_server'):+.1f}",
                    agrees,
                )
            )
        else:
            rows.append((key, str(v.get("client", "")), str(v.get("server", "")), str(v.get("diff", "")), agrees))
    return rows
