"""report.md: a pure function of the record (run.json + summary.json)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from harness.record.schema import ClientStats, DistStats, ImageStats, ModelStats, RunRecord, SliceStats, Summary
from harness.report.fmt import fmt_ms, fmt_value


def render_markdown(run: RunRecord, summary: Summary | None) -> str:
    sc, env = run.scenario, run.environment
    lines = [f"# {sc.get('name', '?')} — run `{run.run_id}`", ""]
    if summary is None:
        lines += [
            f"**Status: {run.status}** — no summary was written" + (f": {run.error}" if run.error else "."),
            "",
        ]
        return "\n".join(lines)
    failed = [s for s in summary.slos if not s.passed]
    lines += [
        f"**Verdict: {summary.verdict.upper()}** ({len(summary.slos) - len(failed)}/{len(summary.slos)} SLOs passed; "
        f"status {summary.status})"
        + (" — measure-only run: no SLOs judged" if summary.measure_only else "")
        + (f" — the load failed: {summary.load_failure}" if summary.load_failure else "")
        + (
            f" — stopped early at {summary.stopped_early.at_s:.1f} s ({summary.stopped_early.trigger}): "
            f"{summary.stopped_early.detail}"
            if summary.stopped_early
            else ""
        ),
        "",
    ]
    if sc.get("description"):
        lines += [f"> {sc['description']}", ""]
    lines += ["## SLOs", "", "| | SLO | observed | threshold | source | why |", "|---|---|---|---|---|---|"]
    for s in sorted(summary.slos, key=lambda s: s.passed):  # failed first
        mark = "✅" if s.passed else "❌"
        obs = fmt_value(s.observed, s.unit) if s.observed is not None else "no data"
        why = s.reason.replace("|", "\\|")
        lines.append(f"| {mark} | `{s.slo}` | {obs} | {s.op} {fmt_value(s.threshold, s.unit)} | {s.source} | {why} |")
    if summary.autoscaling:
        lines += ["", "## Autoscaling", ""] + autoscaling_lines(summary.autoscaling)
    lines += _client_lines(summary.client)
    for slices, title in (
        (summary.models, "Per model"),
        (summary.request_kinds, "Per request kind"),
        (summary.modalities, "Per modality"),
    ):
        srows = slice_rows(slices)
        if srows:
            lines += ["", f"## {title} (raw samples, warmup excluded)", "", "| " + " | ".join(SLICE_HEAD) + " |"]
            lines += ["|" + "---|" * len(SLICE_HEAD)] + ["| " + " | ".join(r) + " |" for r in srows]
    if summary.images:
        lines += image_lines(summary.images)
    if summary.server:
        lines += [
            "",
            "## Server (Prometheus, through Ray's discovered targets)",
            "",
            "| signal | series | stats |",
            "|---|---|---|",
        ]
        for name, st in sorted(summary.server.items()):
            series = summary.server_series.get(name) or "—"
            res = summary.server_resolution.get(name) or {}
            stats = st.model_dump().items()
            shown = ", ".join(
                f"{k} {v:.4g}{_bucket_text(res, k)}" for k, v in stats if k != "samples" and v is not None
            )
            lines.append(f"| {name} | `{series}` | {shown} |")
    missing = [k for k, v in summary.server_series.items() if v is None]
    if missing:
        lines += ["", f"No series in Prometheus for: {', '.join(sorted(missing))}."]
    rows = reconciliation_rows(summary.reconciliation)
    if rows:
        lines += [
            "",
            "## Client vs server",
            "",
            "| check | client | server | difference | agrees |",
            "|---|---|---|---|---|",
        ]
        lines += [f"| {r[0]} | {r[1]} | {r[2]} | {r[3]} | {r[4]} |" for r in rows]
    lines += gpu_lines(run.node_stats.get("gpus"))
    if summary.warnings:
        lines += ["", "## Warnings", ""] + [f"- {w}" for w in summary.warnings]
    target = sc.get("target", {})
    lines += [
        "",
        "## Run",
        "",
        f"- harness {env.get('harness')} ({env.get('git_commit') or 'no git'}), Ray {env.get('ray')}, "
        f"vLLM {env.get('vllm') or '—'}, Python {env.get('python')}",
        f"- target: {target.get('engine')} `{target.get('model')}` at {run.deployment.get('base_url', '?')}",
        "- stages: " + ", ".join(f"{k} {v:.1f} s" for k, v in run.stage_durations_s.items()),
    ]
    return "\n".join(lines) + "\n"


def gpu_lines(gpus: dict[str, Any] | None) -> list[str]:
    """run.json node_stats.gpus: one table, a row per node and GPU (Ray's or DCGM's series), or the stated no data."""
    if not gpus:
        return []
    if gpus.get("no_data"):
        return ["", "## GPUs", "", f"No data: {gpus['no_data']}."]
    lines = [
        "",
        "## GPUs (max / mean over the load)",
        "",
        "| node | GPU | utilisation | memory used | power | SM clock |",
    ]
    lines.append("|---|---|---|---|---|---|")

    def cell(s: dict | None, scale: float, unit: str) -> str:
        return f"{s['max'] * scale:.0f} / {s['mean'] * scale:.0f} {unit}" if s and "max" in s and "mean" in s else "—"

    for node, per_gpu in gpus.get("nodes", {}).items():
        for gpu, sig in per_gpu.items():
            lines.append(
                f"| {node} | {gpu} | {cell(sig.get('gpu_utilization'), 100, '%')} | "
                f"{cell(sig.get('gpu_memory_used'), 1 / 2**30, 'GiB')} | {cell(sig.get('gpu_power'), 1, 'W')} | "
                f"{cell(sig.get('gpu_sm_clock'), 1, 'MHz')} |"
            )
    return lines


def _client_lines(c: ClientStats) -> list[str]:
    lines = [
        "",
        "## Client (raw samples, warmup excluded)",
        "",
        "| metric | p50 | p90 | p95 | p99 | max | mean |",
        "|---|---|---|---|---|---|---|",
    ]
    sched = " (from scheduled arrival)" if c.latency_from == "scheduled arrival" else ""
    for d, label in (
        (c.ttft_ms, "TTFT" + sched),
        (c.ttft_from_send_ms, "TTFT from send"),
        (c.ttft_content_ms, "TTFT, first content token"),
        (c.itl_ms, "ITL (per token)"),
        (c.chunk_gap_ms, "gap between SSE events"),
        (c.tpot_ms, "TPOT"),
        (c.e2e_ms, "E2E" + sched),
        (c.e2e_from_send_ms, "E2E from send"),
    ):
        if d is not None:
            lines.append(
                f"| {label} | " + " | ".join(fmt_ms(v) for v in (d.p50, d.p90, d.p95, d.p99, d.max, d.mean)) + " |"
            )
    if c.dropped_arrivals:
        lines += ["", f"{c.dropped_arrivals} open-loop arrivals were never sent (counted as failed requests)."]
    by_class = c.errors_by_class or {}
    lines += [
        "",
        f"Requests {c.requests or 0} (errors {c.errors or 0}"
        + (f": {', '.join(f'{k} {v}' for k, v in by_class.items())}" if by_class else "")
        + f"), {c.requests_per_s or 0:.1f} req/s, "
        f"{c.output_tokens_per_s or 0:.1f} output tok/s over {c.duration_s or 0:.1f} s.",
    ]
    g = c.goodput
    if g is not None:
        crit = ", ".join(f"{k} ≤ {v:g}" for k, v in g.criteria.items())
        att = "—" if g.attainment is None else f"{100 * g.attainment:.1f}%"
        lines += [
            "",
            f"Goodput ({crit}): {g.rate:.2f} req/s, attainment {att} ({g.total:.0f} of {g.requests} requests).",
        ]
    return lines


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


def slice_rows(slices: Mapping[str, SliceStats] | Mapping[str, dict[str, Any]]) -> list[list[str]]:
    """One row per model (or request kind) of `summary.models` / `summary.request_kinds` (shown when > 1); typed
    slices, or their JSON form (report.html)."""
    if len(slices) < 2:
        return []
    typed = {
        k: v if isinstance(v, SliceStats) else (ModelStats if "server" in v else SliceStats).model_validate(v)
        for k, v in slices.items()
    }

    def p(d: DistStats | None, stat: str) -> str:
        return fmt_ms(getattr(d, stat) if d is not None else None)

    rows = []
    for name, st in typed.items():
        srv = ((st.server if isinstance(st, ModelStats) else {}).get("server_ttft") or {}).get("p95")
        rows.append(
            [
                f"`{name}`",
                str(st.requests),
                str(st.errors),
                p(st.ttft_ms, "p50"),
                p(st.ttft_ms, "p95"),
                p(st.ttft_content_ms, "p95"),
                p(st.itl_ms, "p95"),
                p(st.e2e_ms, "p95"),
                f"{st.output_tokens_per_s or 0:.1f}",
                f"{st.reasoning_tokens or 0:.0f}",
                str(st.tool_call_replies),
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
        agree = v.get("agree")
        agrees = "—" if agree is None else ("yes" if agree else "**no**")
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


def image_lines(im: ImageStats) -> list[str]:
    """workload.images: text vs image requests, image tokens, TTFT by image count."""
    tok = f"{im.image_tokens:.0f}" if im.image_tokens is not None else "not reported"
    per = f" ({im.image_tokens_per_image:.1f} per image)" if im.image_tokens_per_image is not None else ""
    b = im.request_bytes_mean

    def kb(x: float | None) -> str:
        return f"{x / 1024:.1f} KiB" if x is not None else "—"

    lines = [
        "",
        "## Images (raw samples, warmup excluded)",
        "",
        f"{im.image_requests} image requests, {im.text_requests} text-only; {im.images_sent} images sent; "
        f"image tokens (server usage): {tok}{per}; mean request body: image {kb(b.get('image'))}, "
        f"text {kb(b.get('text'))}",
        "",
        "| images per request | requests | TTFT p50 | TTFT p95 | TTFT mean |",
        "|---|---|---|---|---|",
    ]
    for c, d in im.ttft_ms_by_image_count.items():
        lines.append(
            f"| {c} | {d.get('count', 0):.0f} | {fmt_ms(d.get('p50'))} | {fmt_ms(d.get('p95'))} "
            f"| {fmt_ms(d.get('mean'))} |"
        )
    return lines
