"""compare.html and history.html: pure functions of the data; interactive Plotly charts with plotly.js inlined
(one self-contained file that opens offline)."""

from __future__ import annotations

import html

import plotly.graph_objects as go

from harness.report import plot
from harness.report.compare_md import (
    fmt_change,
    fmt_ci,
    fmt_cv,
    fmt_obs,
    fmt_p,
    fmt_runs_ci,
    footer,
    method_line,
    row_p,
    title,
    verdict_cell,
)
from harness.report.plot import FAIL, PASS, Chart

_LABELS = {
    "ttft": "TTFT (ms)",
    "itl": "ITL: gap between tokens (ms)",
    "tpot": "TPOT (ms)",
    "e2e": "end-to-end latency (ms)",
}
_UNITS = {"ms": " ms", "tokens/s": " tok/s", "fraction": ""}


_NUM_CSS = "td{text-align:right;font-variant-numeric:tabular-nums}td:first-child{text-align:left}"


def _e(s) -> str:
    return html.escape(str(s))


def cdf_chart(signal: str, curves: list[dict]) -> Chart:
    """Overlaid CDFs of one signal; log x when the data spans more than 30x, x range to the data."""
    xs = [x for c in curves for x in c["x"] if x is not None and x > 0]
    log = bool(xs) and max(xs) / max(min(xs), 1e-9) > 30
    fig = plot.figure(
        _LABELS.get(signal, signal) + (" — log scale" if log else ""),
        "fraction of requests ≤ x" if signal != "itl" else "fraction of gaps ≤ x",
        hover="closest",
    )
    dup = len({c["label"] for c in curves}) < len(curves)  # two runs with the same labels: name them by run id too
    for i, c in enumerate(curves):
        name = f"{c['label']} ({c['run_id']})" if dup and c["label"] != c["run_id"] else c["label"]
        fig.add_trace(
            go.Scatter(
                x=c["x"],
                y=c["p"],
                mode="lines",
                name=name,
                line=dict(color=plot.PALETTE[i % len(plot.PALETTE)], width=2),
                hovertemplate="%{x:,.2f} ms: %{y:.3f}<extra>" + _e(name) + "</extra>",
            )
        )
    if log:
        fig.update_xaxes(type="log")
    fig.update_yaxes(range=[0, 1.02], tickformat=".0%", rangemode="normal")
    return Chart(f"{signal.upper()} CDF", fig, "From each run's raw samples (warmup excluded).", key=f"cdf-{signal}")


def _rows_html(rows: list[dict]) -> str:
    between = bool(rows) and "p_welch" in rows[0]
    extra = "<th>base 95% t-interval</th><th>base CV</th><th>new 95% t-interval</th><th>new CV</th>" if between else ""
    out = [
        f"<table><tr><th>metric</th><th>base</th><th>new</th>{extra}<th>change</th><th>95% CI of change</th>"
        f"<th>{'Welch p' if between else 'MWU p'}</th><th>rule</th><th></th></tr>"
    ]
    for r in rows:
        cls = "bad" if r.get("regression") else ""
        mark = r.get("assessment", "")
        cells = (
            "".join(
                f"<td>{_e(x)}</td>"
                for x in (fmt_runs_ci(r, "base"), fmt_cv(r, "base"), fmt_runs_ci(r, "new"), fmt_cv(r, "new"))
            )
            if between
            else ""
        )
        out.append(
            f'<tr class="{cls}"><td><code>{_e(r["key"])}</code></td><td>{_e(fmt_obs(r, "base"))}</td>'
            f'<td>{_e(fmt_obs(r, "new"))}</td>{cells}<td class="{_e(mark)}">{_e(fmt_change(r))}</td>'
            f"<td>{_e(fmt_ci(r))}</td><td>{_e(fmt_p(row_p(r)))}</td><td>{_e(r.get('rule') or '')}</td>"
            f'<td class="{_e(mark)}">{_e(verdict_cell(r))}</td></tr>'
        )
    return "".join(out) + "</table>"


def render_compare_html(result: dict) -> str:
    runs = {r["run_id"]: r for r in result["runs"]}
    parts = [
        f"<h1>Comparison — {_e(title(result))}</h1>",
        "<div class='tablewrap'><table><tr><th></th><th>run</th><th>labels</th><th>environment</th><th>verdict</th>"
        "<th>requests</th></tr>",
    ]
    for i, r in enumerate(result["runs"]):
        labels = ", ".join(f"{k}={v}" for k, v in r["labels"].items()) or "—"
        parts.append(
            f"<tr><td>{'base' if i == 0 else f'new {i}'}</td><td><code>{_e(r['run_id'])}</code></td>"
            f"<td>{_e(labels)}</td><td>{_e(r['environment'])}</td><td>{_e((r.get('verdict') or '?').upper())}</td>"
            f"<td>{_e(r.get('requests'))}</td></tr>"
        )
    parts.append("</table></div>")
    rules = ", ".join(r["text"] for r in result["rules"]) or "none (not gated)"
    parts.append(f"<p>Gate (fires when beyond the threshold AND significant): <code>{_e(rules)}</code></p>")
    parts.append(f"<p>{_e(method_line(result).replace('**', ''))}</p>")
    if result.get("cdf"):
        parts.append("<h2>Latency distributions</h2>")
        parts.append(plot.grid([cdf_chart(sig, curves) for sig, curves in result["cdf"].items()], "cdf"))
    for c in result["comparisons"]:
        parts.append(f"<h2>{_e(runs[c['new']]['label'])} vs {_e(runs[c['base']]['label'])}</h2>")
        parts.append(
            "<p><b>Regressions:</b></p><ul>"
            + "".join(f"<li class='worse'>{_e(x)}</li>" for x in c["regressions"])
            + "</ul>"
            if c["regressions"]
            else "<p>No regression.</p>"
        )
        parts.append("<h3>Client (raw samples)</h3>" + _rows_html([r for r in c["rows"] if r["source"] == "client"]))
        server = [r for r in c["rows"] if r["source"] == "server"]
        if server:
            parts.append("<h3>Server (Prometheus, by logical signal; no significance test)</h3>" + _rows_html(server))
        if c["notes"]:
            parts.append(
                "<p>Series naming differs (compared by logical signal):</p><ul>"
                + "".join(f"<li>{_e(n)}</li>" for n in c["notes"])
                + "</ul>"
            )
        if c["warnings"]:
            parts.append(
                "<h3>Warnings</h3><ul>" + "".join(f"<li class='warn'>{_e(w)}</li>" for w in c["warnings"]) + "</ul>"
            )
    parts.append(f"<hr><p><small>{_e(footer(result))}</small></p>")
    return plot.page(f"Comparison — {title(result)}", parts, _NUM_CSS)


def _num(v) -> str:
    return "—" if v is None else f"{v:.4g}"


def history_chart(sc: dict, metric: str, unit: str) -> Chart | None:
    """One statistic over time: runs in time order (x = when it was created), pass green / fail red, moves circled;
    hover names the run, its labels and where it ran."""
    runs = sc["runs"]
    ys = [r["stats"].get(metric) for r in runs]
    if all(y is None for y in ys):
        return None
    pct = unit == "fraction"
    fig = plot.figure(
        "run started (UTC)",
        f"{metric}" + (" (% of requests)" if pct else f" ({unit})" if unit else ""),
        hover="closest",
    )
    when = [r.get("when_iso") or r.get("when") for r in runs]
    text = [f"{r['run_id']}<br>{_e(r['verdict'])} · {_e(r.get('label') or '')}" for r in runs]
    fig.add_trace(
        go.Scatter(
            x=when,
            y=ys,
            mode="lines",
            line=dict(color="#90a4ae", width=1.5),
            name=metric,
            hoverinfo="skip",
            showlegend=False,
            connectgaps=True,
        )
    )
    for verdict, color in (("pass", PASS), ("fail", FAIL)):
        idx = [i for i, r in enumerate(runs) if (r["verdict"] == "pass") == (verdict == "pass") and ys[i] is not None]
        fig.add_trace(
            go.Scatter(
                x=[when[i] for i in idx],
                y=[ys[i] for i in idx],
                mode="markers",
                name=f"verdict {verdict}",
                marker=dict(size=9, color=color),
                text=[text[i] for i in idx],
                hovertemplate="%{text}<br>%{y:" + (".2%" if pct else ",.4g") + "}<extra></extra>",
            )
        )
    marks = [f["index"] for f in sc["flags"] if f["metric"] == metric]
    if marks:
        fig.add_trace(
            go.Scatter(
                x=[when[i] for i in marks],
                y=[ys[i] for i in marks],
                mode="markers",
                name="moved beyond noise",
                marker=dict(size=18, color="rgba(0,0,0,0)", line=dict(color=FAIL, width=2.5)),
                hoverinfo="skip",
            )
        )
    fig.update_xaxes(type="date" if all(w for w in when) else "category", exponentformat="none")
    if pct:
        fig.update_yaxes(tickformat=".2%")
    return Chart(metric, fig, f"{len(runs)} runs of {sc['scenario']}, oldest left.", key=f"{sc['scenario']}-{metric}")


def render_history_html(hist: dict) -> str:
    """history.html: one chart per statistic and scenario; failed verdicts red, flagged moves circled."""
    src = hist.get("store") or hist.get("results_dir") or ""
    parts = [f"<h1>Run history</h1><p class='note'>From {_e(src)}.</p>"]
    for n, sc in enumerate(hist["scenarios"]):
        runs = sc["runs"]
        parts.append(f"<h2>{_e(sc['scenario'])} — {len(runs)} runs</h2>")
        if sc["flags"]:
            parts.append("<ul>" + "".join(f"<li class='worse'>{_e(f['message'])}</li>" for f in sc["flags"]) + "</ul>")
        if sc.get("broken"):
            parts.append(
                "<ul>" + "".join(f"<li class='worse'>broken: {_e(b['message'])}</li>" for b in sc["broken"]) + "</ul>"
            )
        charts = [c for m in hist["metrics"] if (c := history_chart(sc, m, hist["units"].get(m, ""))) is not None]
        parts.append(plot.grid(charts, f"h{n}"))
        parts.append(
            "<div class='tablewrap'><table><tr><th>run</th><th>when</th><th>verdict</th><th>labels</th><th>where</th>"
            + "".join(f"<th class='num'>{_e(m)}</th>" for m in hist["metrics"])
            + "</tr>"
        )
        flagged = {(f["index"], f["metric"]) for f in sc["flags"]}
        for i, r in enumerate(runs):
            cells = "".join(
                f"<td class='num {'bad' if (i, m) in flagged else ''}'>{_num(r['stats'].get(m))}</td>"
                for m in hist["metrics"]
            )
            labels = " ".join(f"{k}={v}" for k, v in (r.get("labels") or {}).items())
            parts.append(
                f"<tr><td><code>{_e(r['run_id'])}</code></td><td>{_e(r.get('when') or '')}</td>"
                f"<td>{_e(r['verdict'] + (', broken' if r.get('load_failure') else ''))}</td><td>{_e(labels)}</td>"
                f"<td><code>{_e(r.get('location') or r.get('dir') or '')}</code></td>"
                f"{cells}</tr>"
            )
        parts.append("</table></div>")
    return plot.page("harness history", parts)
