"""report.html: one self-contained, interactive page (Plotly; plotly.js inlined, so it opens offline).

Pure function of the record: run.json, summary.json, and the per-request samples / scraped series as DataFrames
(either may be None). Every chart says what it measures, its axes carry units, thresholds are legend entries
(hover, toggle) rather than text drawn over the data, and latency axes are scaled to the data.
"""

from __future__ import annotations

from html import escape

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from harness.report import plot
from harness.report.fmt import fmt_ms, fmt_value
from harness.report.markdown import SLICE_HEAD, reconciliation_rows, slice_rows
from harness.report.plot import FAIL, PASS, STAGE, Chart

BIN_S = 5.0
MAX_BINS = (
    20_000  # bins per time chart at most (5 s bins up to ~28 h): a stray timestamp widens them, never loops for ever
)
MAX_DOTS = 6000  # per-request dots drawn; above this every k-th request (the caption says so)
TIME_X = "time since load start (s)"


def _t0(run: dict) -> float | None:
    return (run.get("timeline") or {}).get("load_started_at")


def _stages(run: dict) -> list[dict]:
    out, t = [], 0.0
    for s in (run.get("scenario", {}).get("load") or {}).get("stages", []):
        level = (
            f"{s['users']} users"
            if s.get("users") is not None
            else f"{s.get('rate_rps')} req/s"
            if s.get("rate_rps") is not None
            else "trace replay"
        )
        d = float(s.get("duration_s", 0))
        out.append({"name": str(s.get("name")), "level": level, "start": t, "end": t + d})
        t += d
    return out


def _time_range(run: dict) -> tuple[float, float] | None:
    st = _stages(run)
    return (0.0, st[-1]["end"] + 5.0) if st else None


def _stage_caption(run: dict) -> str:
    st = _stages(run)
    return (
        "Stages: "
        + "; ".join(f"{i + 1} {s['name']} {s['start']:g}–{s['end']:g} s ({s['level']})" for i, s in enumerate(st))
        + "."
        if st
        else ""
    )


def _decorate_time(fig: go.Figure, run: dict) -> None:
    """Shared x extent for every time chart, stage bands shaded alternately and named above the plot when the
    name fits its band (else its number; the caption lists them all)."""
    xr = _time_range(run)
    if xr:
        fig.update_xaxes(range=list(xr), ticksuffix=" s")
    total = (xr[1] - xr[0]) if xr else 0
    for i, s in enumerate(_stages(run)):
        if i % 2:
            fig.add_vrect(x0=s["start"], x1=s["end"], fillcolor="#000", opacity=0.04, line_width=0, layer="below")
        if i:
            fig.add_vline(x=s["start"], line=dict(color=STAGE, width=1, dash="dot"), layer="below")
        frac = (s["end"] - s["start"]) / total if total else 0
        text = s["name"] if len(s["name"]) * 7 < frac * 480 else (str(i + 1) if frac * 480 > 10 else "")
        if text:
            fig.add_annotation(
                text=text,
                x=(s["start"] + s["end"]) / 2,
                xref="x",
                y=1,
                yref="paper",
                yanchor="bottom",
                showarrow=False,
                font=dict(size=10, color="#777"),
                hovertext=f"{s['name']}: {s['level']}",
            )


def _slos(summary: dict | None, signal: str) -> list[dict]:
    return [s for s in (summary or {}).get("slos", []) if s["signal"] == signal]


def _slo_name(s: dict) -> str:
    return f"SLO {s['slo']} ({'PASS' if s['passed'] else 'FAIL'})"


def _y_thresholds(
    fig: go.Figure,
    summary: dict | None,
    signals: list[str],
    span: tuple[float, float] | None,
    scale: float = 1.0,
    unit: str = "",
) -> None:
    """Horizontal SLO lines. The y axis is fitted to the data; a threshold within 1.5x of it stretches the axis,
    one far above is named at the top edge instead of squashing the data into the floor."""
    top = plot.data_max(fig)
    span = span or (0.0, 1.0)
    hi = top or 0.0
    for sig in signals:
        for s in _slos(summary, sig):
            v, color = s["threshold"] * scale, (PASS if s["passed"] else FAIL)
            plot.ref_line(fig, "y", v, _slo_name(s), color, span)
            if top is not None and v > 1.5 * top:
                plot.off_scale(fig, "y", f"↑ {escape(s['slo'])} at {v:g}{unit}: above this range", color)
            else:
                hi = max(hi, v)
    if hi > 0:
        fig.update_yaxes(range=[0, hi * 1.08])


def _ok(samples: pd.DataFrame | None) -> pd.DataFrame | None:
    if samples is None or not len(samples):
        return None
    return samples[samples["ok"].astype(bool)] if "ok" in samples else samples


def _binned(t: np.ndarray, v: np.ndarray, q: float, width: float = BIN_S) -> tuple[list[float], list[float]]:
    keep = np.isfinite(t)
    t, v = t[keep], v[keep]
    if not len(t):
        return [], []
    width = max(width, float(t.max() - t.min()) / MAX_BINS)
    xs, ys = [], []
    for a in np.arange(np.floor(t.min() / width) * width, t.max() + width, width):
        m = (t >= a) & (t < a + width)
        if m.any():
            xs.append(float(a + width / 2))
            ys.append(float(np.percentile(v[m], q)))
    return xs, ys


def _cdf(values: np.ndarray, max_points: int = 500) -> tuple[list[float], list[float]]:
    v = np.sort(values[~np.isnan(values)])
    if not len(v):
        return [], []
    idx = np.unique(np.linspace(0, len(v) - 1, min(len(v), max_points)).astype(int))
    return [float(v[i]) for i in idx], [float((i + 1) / len(v)) for i in idx]


def _all_itl(ok: pd.DataFrame, t0: float) -> tuple[np.ndarray, np.ndarray]:
    ts, vs = [], []
    for start, gaps in zip(ok["t_start_s"], ok["itl_ms"]):
        if gaps is None or not len(gaps):
            continue
        g = np.asarray(gaps, dtype=float)
        ts.append(np.full(len(g), start - t0))
        vs.append(g)
    return (np.concatenate(ts), np.concatenate(vs)) if ts else (np.array([]), np.array([]))


def _span(run: dict) -> tuple[float, float]:
    return _time_range(run) or (0.0, 1.0)


def latency_charts(run: dict, summary: dict | None, samples: pd.DataFrame | None) -> list[Chart]:
    ok, t0 = _ok(samples), _t0(run)
    if ok is None or t0 is None:
        return []
    t = ok["t_start_s"].to_numpy(float) - t0
    charts = []
    for col, sig, label in (("ttft_ms", "ttft", "TTFT"), ("e2e_ms", "e2e", "E2E latency")):
        v = ok[col].to_numpy(float)
        step = max(1, int(np.ceil(len(t) / MAX_DOTS)))
        fig = plot.figure(TIME_X, f"{label} (ms)", hover="closest")
        fig.add_trace(
            go.Scatter(
                x=t[::step],
                y=v[::step],
                mode="markers",
                name=f"{label} of a request",
                marker=dict(size=4, color=plot.PALETTE[0], opacity=0.45),
                hovertemplate="start %{x:.1f} s<br>%{y:,.1f} ms<extra></extra>",
            )
        )
        bx, by = _binned(t, v, 95)
        fig.add_trace(
            go.Scatter(
                x=bx,
                y=by,
                mode="lines+markers",
                name=f"p95 per {BIN_S:g} s",
                line=dict(color="#222", width=2),
                marker=dict(size=4),
                hovertemplate="p95 %{y:,.1f} ms<extra></extra>",
            )
        )
        _decorate_time(fig, run)
        _y_thresholds(fig, summary, [sig], _span(run), unit=" ms")
        shown = "" if step == 1 else f" Every {step}th request is drawn ({len(t)} in all); the p95 line uses all."
        charts.append(
            Chart(
                f"{label} over time",
                fig,
                f"Each dot is one successful request at its start time; the line "
                f"is the p95 per {BIN_S:g}-s bin (warmup included).{shown} {_stage_caption(run)}",
                key=f"{sig}-time",
            )
        )
    it, iv = _all_itl(ok, t0)
    fig = plot.figure(TIME_X, "inter-token gap (ms)")
    for q, color in ((50, plot.PALETTE[0]), (95, plot.PALETTE[1])):
        bx, by = _binned(it, iv, q)
        fig.add_trace(
            go.Scatter(
                x=bx,
                y=by,
                mode="lines+markers",
                name=f"p{q} per {BIN_S:g} s",
                line=dict(color=color),
                marker=dict(size=4),
                hovertemplate=f"p{q} %{{y:,.2f}} ms<extra></extra>",
            )
        )
    _decorate_time(fig, run)
    _y_thresholds(fig, summary, ["itl"], _span(run), unit=" ms")
    charts.append(
        Chart(
            "Inter-token latency over time",
            fig,
            f"Every gap between streamed tokens, binned by the "
            f"request's start time ({BIN_S:g} s). {_stage_caption(run)}",
            key="itl-time",
        )
    )
    post = ok[~ok["warmup"].astype(bool)] if "warmup" in ok else ok
    for vals, sig, label, what in (
        (post["ttft_ms"].to_numpy(float), "ttft", "TTFT", "requests"),
        (_all_itl(post, t0)[1], "itl", "ITL", "gaps"),
        (post["e2e_ms"].to_numpy(float), "e2e", "E2E latency", "requests"),
    ):
        charts.append(_cdf_chart(vals, sig, label, what, summary))
    return charts


def _cdf_chart(vals: np.ndarray, sig: str, label: str, what: str, summary: dict | None) -> Chart:
    fig = plot.figure(f"{label} (ms)", f"fraction of {what} ≤ x", hover="closest")
    xs, ps = _cdf(vals)
    caption = f"After warmup; {len(vals)} {what}."
    if not xs:
        plot.no_data(fig)
        return Chart(f"{label} CDF", fig, caption, key=f"{sig}-cdf")
    fig.add_trace(
        go.Scatter(
            x=xs,
            y=ps,
            mode="lines",
            line=dict(shape="hv", color=plot.PALETTE[0], width=2),
            name=label,
            hovertemplate="%{x:,.2f} ms: %{y:.3f}<extra></extra>",
        )
    )
    finite = vals[~np.isnan(vals)]
    lo, hi = float(finite.min()), float(np.percentile(finite, 99.9))
    right = hi * 1.1 if hi > 0 else 1.0
    for s in _slos(summary, sig):
        v, color = s["threshold"], (PASS if s["passed"] else FAIL)
        if v <= right * 1.5:
            right = max(right, v * 1.05)
            plot.ref_line(fig, "x", v, _slo_name(s), color, (0, 1))
        else:
            plot.ref_line(fig, "x", v, _slo_name(s), color, (0, 1))
            plot.off_scale(fig, "x", f"{escape(s['slo'])} at {v:g} ms →", color)
        q = s["stat"][1:] if s["stat"].startswith("p") else None
        if q and s.get("observed") is not None and not s.get("scope"):  # a scoped value is not on this curve
            fig.add_trace(
                go.Scatter(
                    x=[s["observed"]],
                    y=[min(float(q) / 100, 1.0)],
                    mode="markers",
                    name=f"observed {s['stat']}",
                    marker=dict(size=10, symbol="diamond", color=color, line=dict(color="#fff", width=1)),
                    hovertemplate=f"{s['stat']} %{{x:,.1f}} ms<extra></extra>",
                    meta={"ref": True},
                )
            )
    left = 0.0 if lo < 0.25 * right else lo * 0.95
    fig.update_xaxes(range=[left, right])
    fig.update_yaxes(range=[0, 1.02], tickformat=".0%", rangemode="normal")
    caption += " x axis to 1.1 × p99.9 (double-click the plot for the whole range)."
    return Chart(f"{label} CDF", fig, caption, key=f"{sig}-cdf")


def throughput_charts(run: dict, summary: dict | None, samples: pd.DataFrame | None) -> list[Chart]:
    t0 = _t0(run)
    if samples is None or not len(samples) or t0 is None:
        return []
    end = samples["t_start_s"].to_numpy(float) + np.nan_to_num(samples["e2e_ms"].to_numpy(float)) / 1000.0 - t0
    ok = samples["ok"].to_numpy(bool)
    toks = np.nan_to_num(samples["output_tokens"].to_numpy(float))
    fin = np.isfinite(end)
    end, ok, toks = end[fin], ok[fin], toks[fin]
    if not len(end):
        return []
    width = max(BIN_S, float(end.max()) / MAX_BINS)
    mids, req, err, tok = [], [], [], []
    for a in np.arange(0.0, max(end.max(), width) + width, width):
        m = (end >= a) & (end < a + width)
        mids.append(float(a + width / 2))
        req.append(float((m & ok).sum()) / width)
        err.append(float((m & ~ok).sum()) / width)
        tok.append(float(toks[m & ok].sum()) / width)
    f1 = plot.figure(TIME_X, "requests per second")
    f1.add_trace(
        go.Scatter(
            x=mids,
            y=req,
            mode="lines",
            line=dict(shape="hv", color=plot.PALETTE[0]),
            name="completed ok",
            hovertemplate="%{y:.2f} req/s<extra>ok</extra>",
        )
    )
    f1.add_trace(
        go.Scatter(
            x=mids,
            y=err,
            mode="lines",
            line=dict(shape="hv", color=FAIL),
            name="errors",
            hovertemplate="%{y:.2f} req/s<extra>errors</extra>",
        )
    )
    _decorate_time(f1, run)
    _y_thresholds(f1, summary, ["request_rate"], _span(run))
    f2 = plot.figure(TIME_X, "output tokens per second")
    f2.add_trace(
        go.Scatter(
            x=mids,
            y=tok,
            mode="lines",
            line=dict(shape="hv", color=plot.PALETTE[2]),
            name="output tok/s",
            hovertemplate="%{y:,.0f} tok/s<extra></extra>",
        )
    )
    _decorate_time(f2, run)
    _y_thresholds(f2, summary, ["throughput"], _span(run))
    cap = f"Client side, {BIN_S:g}-s bins by completion time. {_stage_caption(run)}"
    return [
        Chart("Requests completed per second", f1, cap, key="request-rate"),
        Chart("Output tokens per second", f2, cap, key="throughput"),
    ]


def _series(series: pd.DataFrame | None, signal: str, t0: float) -> tuple[list[float], list[float]]:
    if series is None or not len(series):
        return [], []
    d = series[series["signal"] == signal].sort_values("t")
    return list(d["t"].to_numpy(float) - t0), list(d["value"].to_numpy(float))


def _users_pts(run: dict) -> tuple[list[float], list[float]]:
    """The load shape exactly: linear ramps at spawn_rate between stages (open loop: the offered rate)."""
    pts, t, prev = [(0.0, 0.0)], 0.0, 0
    wl = (run.get("load") or {}).get("workload") or {}
    if wl.get("kind") == "trace" and wl.get("sends_per_bin"):  # the trace's offered rate, per bin
        b = float(wl["rate_bin_s"])
        for i, n in enumerate(wl["sends_per_bin"]):
            pts += [(i * b, n / b), ((i + 1) * b, n / b)]
        pts.append((len(wl["sends_per_bin"]) * b, 0.0))
        return [p[0] for p in pts], [float(p[1]) for p in pts]
    for s in (run.get("scenario", {}).get("load") or {}).get("stages", []):
        if s.get("users") is None:
            r0 = float(s.get("rate_rps") or 0)
            pts += [(t, r0), (t + s["duration_s"], float(s["ramp_to_rps"] if s.get("ramp_to_rps") is not None else r0))]
            t += s["duration_s"]
            continue
        ramp = min(abs(s["users"] - prev) / max(float(s.get("spawn_rate") or 1), 1e-9), s["duration_s"])
        pts += [(t + ramp, s["users"]), (t + s["duration_s"], s["users"])]
        t, prev = t + s["duration_s"], s["users"]
    pts.append((t, 0.0))
    return [p[0] for p in pts], [float(p[1]) for p in pts]


def server_charts(run: dict, summary: dict | None, series: pd.DataFrame | None) -> list[Chart]:
    t0 = _t0(run)
    if t0 is None:
        return []
    open_loop = any(s.get("users") is None for s in (run.get("scenario", {}).get("load") or {}).get("stages", []))
    auto = (summary or {}).get("autoscaling") or {}
    asc = run.get("scenario", {}).get("target", {}).get("autoscaling") or {}
    per = float(asc.get("target_ongoing_requests") or 0)
    ux, uy = _users_pts(run)
    span = _span(run)

    fu = plot.figure(TIME_X, "offered req/s" if open_loop else "users", height=260)
    fu.add_trace(
        go.Scatter(
            x=ux,
            y=uy,
            mode="lines",
            line=dict(color="#444", width=2),
            name="offered rate" if open_loop else "users",
            hovertemplate="%{y:g}<extra></extra>",
        )
    )
    _decorate_time(fu, run)

    fr = plot.figure(TIME_X, "replicas")
    for sig, name, color, dash in (
        ("replicas", "healthy replicas", plot.PALETTE[0], "solid"),
        ("desired_replicas", "desired (autoscaler)", plot.PALETTE[1], "dash"),
        ("target_replicas", "target (autoscaler)", plot.PALETTE[2], "dot"),
    ):
        x, y = _series(series, sig, t0)
        fr.add_trace(
            go.Scatter(
                x=x,
                y=y,
                mode="lines",
                line=dict(shape="hv", color=color, dash=dash, width=2),
                name=name,
                hovertemplate="%{y:g}<extra>" + name + "</extra>",
            )
        )
    if per > 0 and not open_loop:
        fr.add_trace(
            go.Scatter(
                x=ux,
                y=[u / per for u in uy],
                mode="lines",
                line=dict(color="#aaa", dash="dash"),
                name=f"users ÷ {per:g} (the load's need)",
                hovertemplate="%{y:.2f}<extra>need</extra>",
                meta={"ref": True},
            )
        )
    ev = [e for e in auto.get("scale_ups", []) + auto.get("scale_downs", []) if e.get("reached")]
    if ev:
        fr.add_trace(
            go.Scatter(
                x=[e["at_s"] + e["time_s"] for e in ev],
                y=[e["wanted"] for e in ev],
                mode="markers",
                name="scale step reached",
                marker=dict(symbol="star", size=12, color="#6a1b9a"),
                text=[f"{e['wanted']:g} replicas after {e['time_s']:.1f} s ({e['stage']})" for e in ev],
                hovertemplate="%{text}<extra></extra>",
                meta={"ref": True},
            )
        )
    if asc.get("max_replicas"):
        plot.ref_line(
            fr, "y", float(asc["max_replicas"]), f"max_replicas {asc['max_replicas']}", "#555", span, dash="dot"
        )
    _decorate_time(fr, run)
    _y_thresholds(fr, summary, ["replicas", "desired_replicas"], span)
    if not any(t.x is not None and len(t.x) for t in fr.data if not (t.meta or {}).get("ref")):
        plot.no_data(fr, "no replica series from Prometheus")

    fk = plot.figure(TIME_X, "KV cache in use")
    x, y = _series(series, "kv_cache_usage", t0)
    fk.add_trace(
        go.Scatter(
            x=x,
            y=y,
            mode="lines",
            name="kv_cache_usage (max over replicas)",
            line=dict(color=plot.PALETTE[3], width=2),
            hovertemplate="%{y:.1%}<extra></extra>",
        )
    )
    _decorate_time(fk, run)
    for s in _slos(summary, "kv_cache_usage"):
        plot.ref_line(fk, "y", s["threshold"], _slo_name(s), PASS if s["passed"] else FAIL, span)
    fk.update_yaxes(range=[0, 1.02], tickformat=".0%", rangemode="normal")
    if not x:
        plot.no_data(fk, "no KV-cache series from Prometheus")

    fq = plot.figure(TIME_X, "requests in the engine")
    for sig, name, color in (
        ("queue_waiting", "waiting", plot.PALETTE[1]),
        ("requests_running", "running", plot.PALETTE[0]),
    ):
        x, y = _series(series, sig, t0)
        fq.add_trace(
            go.Scatter(
                x=x,
                y=y,
                mode="lines",
                name=name,
                line=dict(color=color, width=2),
                hovertemplate="%{y:g}<extra>" + name + "</extra>",
            )
        )
    _decorate_time(fq, run)
    _y_thresholds(fq, summary, ["queue_waiting", "requests_running"], span)
    if not any(t.x is not None and len(t.x) for t in fq.data if not (t.meta or {}).get("ref")):
        plot.no_data(fq, "no engine queue series from Prometheus")
    src = "Prometheus (Serve / engine series, see summary.json → server_series)"
    return [
        Chart("Load shape", fu, f"From the scenario. {_stage_caption(run)}", key="users"),
        Chart(
            "Replicas: healthy vs desired vs target",
            fr,
            f"{src}. Stars: a scale step reached its wanted count.",
            key="replicas",
        ),
        Chart("KV-cache usage", fk, f"{src}; max over replicas.", key="kv-cache"),
        Chart("Engine queue: waiting and running requests", fq, f"{src}.", key="queue"),
    ]


def _slo_table(summary: dict) -> str:
    rows = []
    for s in sorted(summary["slos"], key=lambda s: s["passed"]):  # failed first
        obs = fmt_value(s["observed"], s["unit"]) if s["observed"] is not None else "no data"
        cls, mark = ("pass", "PASS") if s["passed"] else ("fail", "FAIL")
        rows.append(
            f'<tr class="{cls}"><td>{mark}</td><td><code>{escape(s["slo"])}</code></td><td>{escape(obs)}</td>'
            f"<td>{escape(s['op'])} {escape(fmt_value(s['threshold'], s['unit']))}</td>"
            f"<td>{escape(s['source'])}</td><td>{escape(s.get('reason') or '')}</td></tr>"
        )
    return (
        '<table class="slos"><tr><th></th><th>SLO</th><th>observed</th><th>threshold</th><th>source</th>'
        "<th>why</th></tr>" + "".join(rows) + "</table>"
    )


def _autoscaling_html(auto: dict) -> str:
    parts = [
        f"<p>Replicas {auto.get('replicas_min'):g}–{auto.get('replicas_max'):g} during the load"
        + (
            f"; the autoscaler asked for up to {auto['wanted_max']:g} ({escape(auto.get('wanted_series') or '')})"
            if auto.get("wanted_max") is not None
            else ""
        )
        + (
            f"; {auto['replica_starts']:g} replica starts ({auto['churn_per_min']:.2f}/min)"
            if auto.get("replica_starts") is not None
            else ""
        )
        + f"; {auto.get('flaps', 0)} flap(s).</p>"
    ]
    evs = [("up", e) for e in auto.get("scale_ups", [])] + [("down", e) for e in auto.get("scale_downs", [])]
    if evs:
        parts.append("<table><tr><th>step</th><th>at</th><th>users</th><th>replicas</th><th>time to reach</th></tr>")
        for d, e in evs:
            took = f"{e['time_s']:.1f} s" if e["reached"] else f"not reached in {e['stage_s']:g} s (best {e['best']:g})"
            parts.append(
                f"<tr><td>scale-{d} ({escape(e['stage'])})</td><td>{e['at_s']:.0f} s</td>"
                f"<td>{e['users_from']} → {e['users_to']}</td><td>{e['replicas_from']:g} → {e['wanted']:g}</td>"
                f"<td>{took}</td></tr>"
            )
        parts.append("</table>")
    for k, note in (auto.get("notes") or {}).items():
        parts.append(f"<p class='note'>{escape(k)}: {escape(note)}</p>")
    return "".join(parts)


def _client_table(c: dict) -> str:
    rows = []
    for k, label in (("ttft_ms", "TTFT"), ("itl_ms", "ITL"), ("tpot_ms", "TPOT"), ("e2e_ms", "E2E")):
        d = c.get(k)
        if d:
            rows.append(
                f"<tr><td>{label}</td>"
                + "".join(f"<td>{fmt_ms(d.get(s))}</td>" for s in ("p50", "p90", "p95", "p99", "max", "mean"))
                + "</tr>"
            )
    g = c.get("goodput")
    gp = (
        (
            f"<p>Goodput ({escape(', '.join(f'{k} ≤ {v:g}' for k, v in g['criteria'].items()))}): "
            f"{g['rate']:.2f} req/s, attainment {100 * (g['attainment'] or 0):.1f}%.</p>"
        )
        if g
        else ""
    )
    return (
        "<table><tr><th>metric</th><th>p50</th><th>p90</th><th>p95</th><th>p99</th><th>max</th><th>mean</th></tr>"
        + "".join(rows)
        + "</table>"
        + f"<p>Requests {c.get('requests', 0)} (errors {c.get('errors', 0)}), "
        f"{c.get('requests_per_s') or 0:.1f} req/s, {c.get('output_tokens_per_s') or 0:.1f} "
        f"output tok/s over {c.get('duration_s', 0):.1f} s after warmup.</p>" + gp
    )


def _reconciliation_table(summary: dict) -> str:
    rows = reconciliation_rows(summary.get("reconciliation") or {})
    if not rows:
        return ""
    body = "".join("<tr>" + "".join(f"<td>{escape(c.replace('**', ''))}</td>" for c in r) + "</tr>" for r in rows)
    return (
        "<h2>Client vs server</h2><p class='note'>Latency SLOs use client samples; Serve's and vLLM's histograms "
        "are cross-checks (their buckets are coarse).</p><div class='tablewrap'><table><tr><th>check</th>"
        "<th>client</th>"
        "<th>server</th><th>difference</th><th>agrees</th></tr>" + body + "</table></div>"
    )


def render_html(
    run: dict, summary: dict | None, samples: pd.DataFrame | None = None, series: pd.DataFrame | None = None
) -> str:
    sc = run.get("scenario", {})
    title = f"{sc.get('name', '?')} — run {run.get('run_id')}"
    body = [f"<h1>{escape(title)}</h1>"]
    if summary is None:
        body.append(
            f"<p><b>Status: {escape(str(run.get('status')))}</b> — no summary was written"
            + (f": {escape(run['error'])}" if run.get("error") else ".")
            + "</p>"
        )
    else:
        v = summary["verdict"]
        failed = sum(1 for s in summary["slos"] if not s["passed"])
        body.append(
            f'<p><span class="verdict {v}">{v.upper()}</span> {len(summary["slos"]) - failed}/'
            f"{len(summary['slos'])} SLOs passed; status {escape(summary['status'])}"
            + (" — measure-only run: no SLOs judged" if summary.get("measure_only") else "")
            + (f" — the load failed: {escape(summary['load_failure'])}" if summary.get("load_failure") else "")
            + (
                f" — stopped early at {summary['stopped_early']['at_s']:.1f} s "
                f"({escape(summary['stopped_early']['trigger'])}): {escape(summary['stopped_early']['detail'])}"
                if summary.get("stopped_early")
                else ""
            )
            + "</p>"
        )
        if sc.get("description"):
            body.append(f"<p><i>{escape(sc['description'])}</i></p>")
        body += ["<h2>SLOs (failed first)</h2>", "<div class='tablewrap'>" + _slo_table(summary) + "</div>"]
        if summary.get("autoscaling"):
            body += ["<h2>Autoscaling</h2>", _autoscaling_html(summary["autoscaling"])]
    srv = server_charts(run, summary, series)
    lat = latency_charts(run, summary, samples)
    thr = throughput_charts(run, summary, samples)
    if srv:
        body += ["<h2>Load and replicas</h2>", plot.grid(srv[:2], "load")]
    if lat:
        body += ["<h2>Latency</h2>", plot.grid(lat, "lat")]
    if thr or srv[2:]:
        body += ["<h2>Throughput and engine</h2>", plot.grid(thr + srv[2:], "thr")]
    if summary is not None:
        body += ["<h2>Client (raw samples, warmup excluded)</h2>", _client_table(summary.get("client", {}))]
        for key, h in (("models", "Per model"), ("request_kinds", "Per request kind")):
            rows = slice_rows(summary.get(key) or {})
            if rows:
                body.append(
                    f"<h2>{h}</h2><div class='tablewrap'><table><tr>"
                    + "".join(f"<th>{escape(c)}</th>" for c in SLICE_HEAD)
                    + "</tr>"
                    + "".join("<tr>" + "".join(f"<td>{escape(c.strip('`'))}</td>" for c in r) + "</tr>" for r in rows)
                    + "</table></div>"
                )
        body.append(_reconciliation_table(summary))
        if summary.get("warnings"):
            body += ["<h2>Warnings</h2><ul>"] + [f"<li>{escape(w)}</li>" for w in summary["warnings"]] + ["</ul>"]
    env = run.get("environment", {})
    body.append(
        f"<h2>Run</h2><p>harness {escape(str(env.get('harness')))} ({escape(str(env.get('git_commit') or 'no git'))}), "
        f"Ray {escape(str(env.get('ray')))}, vLLM {escape(str(env.get('vllm') or '—'))}, "
        f"Python {escape(str(env.get('python')))}; target {escape(str(sc.get('target', {}).get('engine')))} "
        f"<code>{escape(str(sc.get('target', {}).get('model')))}</code>.</p>"
    )
    return plot.page(title, body)
