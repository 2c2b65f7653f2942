"""report.html: one self-contained page (inline CSS and SVG, no script, no network). Pure function of the record:
run.json, summary.json, and the per-request samples / scraped series as DataFrames (either may be None)."""

from __future__ import annotations

from html import escape
import numpy as np
import pandas as pd

from harness.report import svg
from harness.report.fmt import fmt_ms, fmt_value

BIN_S = 5.0


def _t0(run: dict) -> float | None:
    tl = run.get("timeline") or {}
    return tl.get("load_started_at")


def _stage_refs(run: dict) -> list[svg.Ref]:
    refs, t = [], 0.0
    for s in (run.get("scenario", {}).get("load") or {}).get("stages", []):
        level = f"{s['users']} users" if s.get("users") is not None else f"{s.get('rate_rps')} req/s"
        refs.append(svg.Ref("x", t, f"{s.get('name')} ({level})", color="#888"))
        t += float(s.get("duration_s", 0))
    return refs


def _slo_refs(summary: dict | None, signal: str, axis: str = "y", scale: float = 1.0) -> list[svg.Ref]:
    out = []
    for s in (summary or {}).get("slos", []):
        if s["signal"] == signal:
            color = "#2e7d32" if s["passed"] else "#b00020"
            out.append(svg.Ref(axis, s["threshold"] * scale, f"SLO {s['slo']}", color=color))
    return out


def _ok_samples(samples: pd.DataFrame | None) -> pd.DataFrame | None:
    if samples is None or not len(samples):
        return None
    return samples[samples["ok"].astype(bool)] if "ok" in samples else samples


def _binned(t: np.ndarray, v: np.ndarray, q: float, width: float = BIN_S) -> list[tuple[float, float]]:
    if not len(t):
        return []
    edges = np.arange(np.floor(t.min() / width) * width, t.max() + width, width)
    out = []
    for a in edges:
        m = (t >= a) & (t < a + width)
        if m.any():
            out.append((float(a + width / 2), float(np.percentile(v[m], q))))
    return out


def _cdf(values: np.ndarray, max_points: int = 400) -> list[tuple[float, float]]:
    v = np.sort(values[~np.isnan(values)])
    if not len(v):
        return []
    idx = np.unique(np.linspace(0, len(v) - 1, min(len(v), max_points)).astype(int))
    return [(float(v[i]), float((i + 1) / len(v))) for i in idx]


def _all_itl(ok: pd.DataFrame, t0: float) -> tuple[np.ndarray, np.ndarray]:
    ts, vs = [], []
    for start, gaps in zip(ok["t_start_s"], ok["itl_ms"]):
        if gaps is None or not len(gaps):
            continue
        g = np.asarray(gaps, dtype=float)
        ts.append(np.full(len(g), start - t0))
        vs.append(g)
    return (np.concatenate(ts), np.concatenate(vs)) if ts else (np.array([]), np.array([]))


def latency_charts(run: dict, summary: dict | None, samples: pd.DataFrame | None) -> list[svg.Chart]:
    ok, t0 = _ok_samples(samples), _t0(run)
    if ok is None or t0 is None:
        return []
    stages = _stage_refs(run)
    t = (ok["t_start_s"].to_numpy(float) - t0)
    charts = []
    for col, sig, label in (("ttft_ms", "ttft", "TTFT"), ("e2e_ms", "e2e", "E2E latency")):
        v = ok[col].to_numpy(float)
        charts.append(svg.Chart(
            f"{label} over time (each dot a request by start time; line: p95 per {BIN_S:g} s)",
            [svg.Series(f"{label} per request", list(zip(t, v)), style="dots"),
             svg.Series(f"p95 per {BIN_S:g} s", _binned(t, v, 95), color="#000")],
            "seconds since load start", "ms", stages + _slo_refs(summary, sig)))
    it, iv = _all_itl(ok, t0)
    charts.append(svg.Chart(
        f"Inter-token latency over time (every gap; p50 and p95 per {BIN_S:g} s)",
        [svg.Series("p50", _binned(it, iv, 50)), svg.Series("p95", _binned(it, iv, 95))],
        "seconds since load start", "ms", stages + _slo_refs(summary, "itl")))
    post = ok[~ok["warmup"].astype(bool)] if "warmup" in ok else ok
    for vals, sig, label in ((post["ttft_ms"].to_numpy(float), "ttft", "TTFT"),
                             (_all_itl(post, t0)[1], "itl", "ITL"),
                             (post["e2e_ms"].to_numpy(float), "e2e", "E2E latency")):
        charts.append(svg.Chart(f"{label} CDF (after warmup)", [svg.Series(label, _cdf(vals), style="step")],
                                "ms", "fraction of requests" if sig != "itl" else "fraction of gaps",
                                _slo_refs(summary, sig, axis="x"), y_max=1.0))
    return charts


def throughput_chart(run: dict, summary: dict | None, samples: pd.DataFrame | None) -> list[svg.Chart]:
    t0 = _t0(run)
    if samples is None or not len(samples) or t0 is None:
        return []
    end = samples["t_start_s"].to_numpy(float) + np.nan_to_num(samples["e2e_ms"].to_numpy(float)) / 1000.0 - t0
    ok = samples["ok"].to_numpy(bool)
    toks = np.nan_to_num(samples["output_tokens"].to_numpy(float))
    edges = np.arange(0.0, max(end.max(), BIN_S) + BIN_S, BIN_S)
    req, err, tok = [], [], []
    for a in edges:
        m = (end >= a) & (end < a + BIN_S)
        mid = float(a + BIN_S / 2)
        req.append((mid, float((m & ok).sum()) / BIN_S))
        err.append((mid, float((m & ~ok).sum()) / BIN_S))
        tok.append((mid, float(toks[m & ok].sum()) / BIN_S))
    stages = _stage_refs(run)
    return [svg.Chart(f"Requests completed per second ({BIN_S:g}-s bins, by completion time)",
                      [svg.Series("ok req/s", req, style="step"), svg.Series("errors/s", err, style="step")],
                      "seconds since load start", "req/s", stages),
            svg.Chart(f"Output tokens per second ({BIN_S:g}-s bins)", [svg.Series("tok/s", tok, style="step")],
                      "seconds since load start", "tok/s", stages + _slo_refs(summary, "throughput"))]


def _series_pts(series: pd.DataFrame | None, signal: str, t0: float) -> list[tuple[float, float]]:
    if series is None or not len(series):
        return []
    d = series[series["signal"] == signal].sort_values("t")
    return list(zip(d["t"].to_numpy(float) - t0, d["value"].to_numpy(float)))


def _time_range(run: dict) -> tuple[float, float] | None:
    stages = (run.get("scenario", {}).get("load") or {}).get("stages", [])
    total = sum(float(s.get("duration_s", 0)) for s in stages)
    return (0.0, total + 5.0) if total > 0 else None


def _users_pts(run: dict) -> list[tuple[float, float]]:
    """The load shape exactly: linear ramps at spawn_rate between stages."""
    pts, t, prev = [(0.0, 0.0)], 0.0, 0
    for s in (run.get("scenario", {}).get("load") or {}).get("stages", []):
        if s.get("users") is None:  # open loop: the offered rate (req/s), stepped or ramped within the stage
            r0 = float(s.get("rate_rps") or 0)
            pts += [(t, r0), (t + s["duration_s"], float(s["ramp_to_rps"] if s.get("ramp_to_rps") is not None else r0))]
            t += s["duration_s"]
            continue
        ramp = min(abs(s["users"] - prev) / max(float(s.get("spawn_rate") or 1), 1e-9), s["duration_s"])
        pts += [(t + ramp, s["users"]), (t + s["duration_s"], s["users"])]
        t, prev = t + s["duration_s"], s["users"]
    return pts + [(t, 0.0)]


def server_charts(run: dict, summary: dict | None, series: pd.DataFrame | None) -> list[svg.Chart]:
    t0 = _t0(run)
    if t0 is None:
        return []
    stages = _stage_refs(run)
    auto = (summary or {}).get("autoscaling") or {}
    users = _users_pts(run)
    asc = run.get("scenario", {}).get("target", {}).get("autoscaling") or {}
    per = float(asc.get("target_ongoing_requests") or 0)
    scale_refs = []
    for e in auto.get("scale_ups", []) + auto.get("scale_downs", []):
        if e.get("reached"):
            scale_refs.append(svg.Ref("x", e["at_s"] + e["time_s"], f"{e['wanted']:g} replicas after {e['time_s']:.1f} s",
                                      color="#6a1b9a"))
    rep = [svg.Series("healthy replicas", _series_pts(series, "replicas", t0), style="step", color="#1f77b4"),
           svg.Series("desired", _series_pts(series, "desired_replicas", t0), style="step", color="#ff7f0e", dashed=True),
           svg.Series("target", _series_pts(series, "target_replicas", t0), style="step", color="#2ca02c", dashed=True)]
    if per > 0:
        rep.append(svg.Series(f"users ÷ {per:g} (load's need)", [(t, u / per) for t, u in users], color="#999",
                              dashed=True))
    cap = [svg.Ref("y", float(asc["max_replicas"]), f"max_replicas {asc['max_replicas']}", color="#555")] \
        if asc.get("max_replicas") else []
    charts = [
        svg.Chart("Users (load shape)", [svg.Series("users", users, color="#444")], "seconds since load start",
                  "users", stages, height=200),
        svg.Chart("Replicas: healthy vs desired vs target", rep, "seconds since load start", "replicas",
                  stages + scale_refs + cap + _slo_refs(summary, "replicas") + _slo_refs(summary, "desired_replicas")),
        svg.Chart("KV-cache usage (max over replicas)", [svg.Series("kv_cache_usage", _series_pts(series, "kv_cache_usage", t0))],
                  "seconds since load start", "fraction", stages + _slo_refs(summary, "kv_cache_usage"), y_max=1.0),
        svg.Chart("Engine queue: waiting and running requests",
                  [svg.Series("waiting", _series_pts(series, "queue_waiting", t0)),
                   svg.Series("running", _series_pts(series, "requests_running", t0))],
                  "seconds since load start", "requests", stages + _slo_refs(summary, "queue_waiting")),
    ]
    return charts


def _slo_table(summary: dict) -> str:
    rows = []
    for s in sorted(summary["slos"], key=lambda s: s["passed"]):  # failed first
        obs = fmt_value(s["observed"], s["unit"]) if s["observed"] is not None else "no data"
        cls, mark = ("pass", "PASS") if s["passed"] else ("fail", "FAIL")
        rows.append(f'<tr class="{cls}"><td>{mark}</td><td><code>{escape(s["slo"])}</code></td><td>{escape(obs)}</td>'
                    f'<td>{escape(s["op"])} {escape(fmt_value(s["threshold"], s["unit"]))}</td>'
                    f'<td>{escape(s["source"])}</td><td>{escape(s.get("reason") or "")}</td></tr>')
    return ('<table class="slos"><tr><th></th><th>SLO</th><th>observed</th><th>threshold</th><th>source</th>'
            '<th>why</th></tr>' + "".join(rows) + "</table>")


def _autoscaling_html(auto: dict) -> str:
    parts = [f"<p>Replicas {auto.get('replicas_min'):g}–{auto.get('replicas_max'):g} during the load"
             + (f"; the autoscaler asked for up to {auto['wanted_max']:g} ({escape(auto.get('wanted_series') or '')})"
                if auto.get("wanted_max") is not None else "")
             + (f"; {auto['replica_starts']:g} replica starts ({auto['churn_per_min']:.2f}/min)"
                if auto.get("replica_starts") is not None else "")
             + f"; {auto.get('flaps', 0)} flap(s).</p>"]
    evs = [("up", e) for e in auto.get("scale_ups", [])] + [("down", e) for e in auto.get("scale_downs", [])]
    if evs:
        parts.append("<table><tr><th>step</th><th>at</th><th>users</th><th>replicas</th><th>time to reach</th></tr>")
        for d, e in evs:
            took = f"{e['time_s']:.1f} s" if e["reached"] else f"not reached in {e['stage_s']:g} s (best {e['best']:g})"
            parts.append(f"<tr><td>scale-{d} ({escape(e['stage'])})</td><td>{e['at_s']:.0f} s</td>"
                         f"<td>{e['users_from']} → {e['users_to']}</td><td>{e['replicas_from']:g} → {e['wanted']:g}</td>"
                         f"<td>{took}</td></tr>")
        parts.append("</table>")
    for k, note in (auto.get("notes") or {}).items():
        parts.append(f"<p class='note'>{escape(k)}: {escape(note)}</p>")
    return "".join(parts)


def _client_table(c: dict) -> str:
    rows = []
    for k, label in (("ttft_ms", "TTFT"), ("itl_ms", "ITL"), ("tpot_ms", "TPOT"), ("e2e_ms", "E2E")):
        d = c.get(k)
        if d:
            rows.append(f"<tr><td>{label}</td>" + "".join(f"<td>{fmt_ms(d.get(s))}</td>" for s in
                                                        ("p50", "p90", "p95", "p99", "max", "mean")) + "</tr>")
    g = c.get("goodput")
    gp = (f"<p>Goodput ({escape(', '.join(f'{k} ≤ {v:g}' for k, v in g['criteria'].items()))}): "
          f"{g['rate']:.2f} req/s, attainment {100 * (g['attainment'] or 0):.1f}%.</p>") if g else ""
    return ("<table><tr><th>metric</th><th>p50</th><th>p90</th><th>p95</th><th>p99</th><th>max</th><th>mean</th></tr>"
            + "".join(rows) + "</table>"
            + f"<p>Requests {c.get('requests', 0)} (errors {c.get('errors', 0)}), "
              f"{c.get('requests_per_s') or 0:.1f} req/s, {c.get('output_tokens_per_s') or 0:.1f} "
              f"output tok/s over {c.get('duration_s', 0):.1f} s after warmup.</p>" + gp)


_CSS = svg.CSS + """
body{font-family:system-ui,sans-serif;margin:24px;max-width:1600px;color:#222}
h1{font-size:22px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd}
.verdict{display:inline-block;padding:4px 12px;border-radius:4px;color:#fff;font-weight:700}
.verdict.pass{background:#2e7d32}.verdict.fail{background:#b00020}.verdict.measured{background:#455a64}
table{border-collapse:collapse;font-size:13px;margin:8px 0}td,th{border:1px solid #ddd;padding:4px 8px;text-align:left}
tr.fail td{background:#fdecea}tr.pass td:first-child{color:#2e7d32}tr.fail td:first-child{color:#b00020;font-weight:700}
.grid2{display:flex;flex-wrap:wrap;gap:8px}.note{color:#666;font-size:13px}
"""


def render_html(run: dict, summary: dict | None, samples: pd.DataFrame | None = None,
                series: pd.DataFrame | None = None) -> str:
    sc = run.get("scenario", {})
    title = f"{sc.get('name', '?')} — run {run.get('run_id')}"
    body = [f"<h1>{escape(title)}</h1>"]
    if summary is None:
        body.append(f"<p><b>Status: {escape(str(run.get('status')))}</b> — no summary was written"
                    + (f": {escape(run['error'])}" if run.get("error") else ".") + "</p>")
    else:
        v = summary["verdict"]
        failed = sum(1 for s in summary["slos"] if not s["passed"])
        body.append(f'<p><span class="verdict {v}">{v.upper()}</span> {len(summary["slos"]) - failed}/'
                    f'{len(summary["slos"])} SLOs passed; status {escape(summary["status"])}'
                    + (" — measure-only run: no SLOs judged" if summary.get("measure_only") else "")
                    + (f" — the load failed: {escape(summary['load_failure'])}" if summary.get("load_failure") else "") + "</p>")
        if sc.get("description"):
            body.append(f"<p><i>{escape(sc['description'])}</i></p>")
        body += ["<h2>SLOs (failed first)</h2>", _slo_table(summary)]
        if summary.get("autoscaling"):
            body += ["<h2>Autoscaling</h2>", _autoscaling_html(summary["autoscaling"])]
    charts = server_charts(run, summary, series)
    lat = latency_charts(run, summary, samples)
    thr = throughput_chart(run, summary, samples)
    xr = _time_range(run)
    for c in charts + lat + thr:  # time charts share one x extent, so they line up
        if c.x_label == "seconds since load start" and xr:
            c.x_range = xr
    body += ["<h2>Load and replicas</h2>", '<div class="grid2">' + "".join(svg.render(c) for c in charts[:2]) + "</div>"]
    if lat:
        body += ["<h2>Latency</h2>", '<div class="grid2">' + "".join(svg.render(c) for c in lat) + "</div>"]
    body += ["<h2>Throughput and engine</h2>", '<div class="grid2">'
             + "".join(svg.render(c) for c in thr + charts[2:]) + "</div>"]
    if summary is not None:
        body += ["<h2>Client (raw samples, warmup excluded)</h2>", _client_table(summary.get("client", {}))]
        if summary.get("warnings"):
            body += ["<h2>Warnings</h2><ul>"] + [f"<li>{escape(w)}</li>" for w in summary["warnings"]] + ["</ul>"]
    env = run.get("environment", {})
    body.append(f"<h2>Run</h2><p>harness {escape(str(env.get('harness')))} ({escape(str(env.get('git_commit') or 'no git'))}), "
                f"Ray {escape(str(env.get('ray')))}, vLLM {escape(str(env.get('vllm') or '—'))}, "
                f"Python {escape(str(env.get('python')))}; target {escape(str(sc.get('target', {}).get('engine')))} "
                f"<code>{escape(str(sc.get('target', {}).get('model')))}</code>.</p>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>" + escape(title)
            + "</title><style>" + _CSS + "</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")
