"""compare.html and history.html: pure functions of the data; charts are inline SVG (no scripts, no network)."""

from __future__ import annotations

import html
import math

from harness.report.compare_md import fmt_change, fmt_ci, fmt_obs, fmt_p, title, verdict_cell

COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf")
CSS = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:13px}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
td:first-child,th:first-child{text-align:left}.bad{background:#fdd}.worse{color:#b00}.better{color:#070}
.warn{color:#a60}svg{margin:.5em 1em .5em 0;border:1px solid #eee}code{font-size:12px}"""
_LABELS = {"ttft": "TTFT (ms)", "itl": "ITL: gap between tokens (ms)", "tpot": "TPOT (ms)", "e2e": "end-to-end latency (ms)"}


def _e(s) -> str:
    return html.escape(str(s))


def _ticks(lo: float, hi: float, log: bool, n: int = 5) -> list[float]:
    if log:
        a, b = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
        return [10.0 ** k * m for k in range(a, b + 1) for m in (1, 2, 5) if lo <= 10.0 ** k * m <= hi]
    if hi <= lo:
        return [lo]
    step = 10 ** math.floor(math.log10((hi - lo) / n))
    step *= next((m for m in (1, 2, 5, 10) if (hi - lo) / (step * m) <= n), 10)
    return [k * step for k in range(math.ceil(lo / step), math.floor(hi / step) + 1)]


def svg_chart(series: list[dict], *, title: str, x_label: str, y_label: str, log_x: bool = False, y_range=None,
              x_ticks_labels: list[str] | None = None, width: int = 520, height: int = 300) -> str:
    """Line chart. series: [{name, x, y, color?, marks?: [i...] (highlighted points), bad?: [i...]}]."""
    pts = [(x, y) for s in series for x, y in zip(s["x"], s["y"]) if x is not None and y is not None and (not log_x or x > 0)]
    if not pts:
        return ""
    x0, x1 = min(p[0] for p in pts), max(p[0] for p in pts)
    y0, y1 = y_range or (min(p[1] for p in pts), max(p[1] for p in pts))
    if y1 <= y0:
        y0, y1 = y0 - 1, y1 + 1
    if x1 <= x0:
        x0, x1 = x0 - 1, x1 + 1
    L, R, T, B = 60, 10, 24, 42
    fx = (lambda x: math.log10(x)) if log_x else (lambda x: x)
    sx = lambda x: L + (fx(x) - fx(x0)) / (fx(x1) - fx(x0)) * (width - L - R)  # noqa: E731
    sy = lambda y: height - B - (y - y0) / (y1 - y0) * (height - T - B)  # noqa: E731
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-size="11">',
           f'<text x="{L}" y="15" font-weight="bold">{_e(title)}</text>']
    for t in _ticks(y0, y1, False):
        out.append(f'<line x1="{L}" x2="{width - R}" y1="{sy(t):.1f}" y2="{sy(t):.1f}" stroke="#eee"/>'
                   f'<text x="{L - 4}" y="{sy(t) + 4:.1f}" text-anchor="end">{t:g}</text>')
    if x_ticks_labels:
        step = max(1, len(x_ticks_labels) // 8)
        for i in range(0, len(x_ticks_labels), step):
            out.append(f'<text x="{sx(i):.1f}" y="{height - B + 14}" text-anchor="middle">{_e(x_ticks_labels[i])}</text>')
    else:
        for t in _ticks(x0, x1, log_x):
            out.append(f'<line x1="{sx(t):.1f}" x2="{sx(t):.1f}" y1="{T}" y2="{height - B}" stroke="#f3f3f3"/>'
                       f'<text x="{sx(t):.1f}" y="{height - B + 14}" text-anchor="middle">{t:g}</text>')
    out.append(f'<text x="{(L + width - R) / 2}" y="{height - 6}" text-anchor="middle">{_e(x_label)}</text>'
               f'<text x="12" y="{(T + height - B) / 2}" transform="rotate(-90 12 {(T + height - B) / 2})" '
               f'text-anchor="middle">{_e(y_label)}</text>'
               f'<rect x="{L}" y="{T}" width="{width - L - R}" height="{height - T - B}" fill="none" stroke="#999"/>')
    for i, s in enumerate(series):
        c = s.get("color") or COLORS[i % len(COLORS)]
        xy = [(sx(x), sy(y)) for x, y in zip(s["x"], s["y"]) if x is not None and y is not None and (not log_x or x > 0)]
        out.append(f'<polyline fill="none" stroke="{c}" stroke-width="1.8" points="'
                   + " ".join(f"{a:.1f},{b:.1f}" for a, b in xy) + '"/>')
        for j in s.get("bad", []):
            if s["y"][j] is not None:
                out.append(f'<circle cx="{sx(s["x"][j]):.1f}" cy="{sy(s["y"][j]):.1f}" r="3" fill="#d62728"/>')
        for j in s.get("marks", []):
            if s["y"][j] is not None:
                out.append(f'<circle cx="{sx(s["x"][j]):.1f}" cy="{sy(s["y"][j]):.1f}" r="6" fill="none" '
                           f'stroke="#d62728" stroke-width="2"/>')
        out.append(f'<rect x="{L + 8}" y="{T + 6 + 14 * i}" width="10" height="3" fill="{c}"/>'
                   f'<text x="{L + 22}" y="{T + 10 + 14 * i}">{_e(s["name"])}</text>')
    out.append("</svg>")
    return "".join(out)


def cdf_svg(signal: str, curves: list[dict]) -> str:
    xs = [x for c in curves for x in c["x"] if x > 0]
    log = bool(xs) and max(xs) / max(min(xs), 1e-9) > 30
    series = [{"name": c["label"], "x": c["x"], "y": c["p"]} for c in curves]
    return svg_chart(series, title=f"{signal.upper()} CDF", x_label=_LABELS.get(signal, signal) + (" (log)" if log else ""),
                     y_label="fraction of requests" if signal != "itl" else "fraction of gaps", log_x=log, y_range=(0, 1))


def _rows_html(rows: list[dict]) -> str:
    out = ["<table><tr><th>metric</th><th>base</th><th>new</th><th>change</th><th>95% CI of change</th>"
           "<th>MWU p</th><th>rule</th><th></th></tr>"]
    for r in rows:
        cls = "bad" if r.get("regression") else ""
        mark = r.get("assessment", "")
        out.append(f'<tr class="{cls}"><td><code>{_e(r["key"])}</code></td><td>{_e(fmt_obs(r, "base"))}</td>'
                   f'<td>{_e(fmt_obs(r, "new"))}</td><td class="{_e(mark)}">{_e(fmt_change(r))}</td>'
                   f'<td>{_e(fmt_ci(r))}</td><td>{_e(fmt_p(r.get("p_mwu")))}</td><td>{_e(r.get("rule") or "")}</td>'
                   f'<td class="{_e(mark)}">{_e(verdict_cell(r))}</td></tr>')
    return "".join(out) + "</table>"


def render_compare_html(result: dict) -> str:
    runs = {r["run_id"]: r for r in result["runs"]}
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{_e(title(result))}</title>"
             f"<style>{CSS}</style></head><body><h1>Comparison — {_e(title(result))}</h1>",
             "<table><tr><th></th><th>run</th><th>labels</th><th>environment</th><th>verdict</th><th>requests</th></tr>"]
    for i, r in enumerate(result["runs"]):
        labels = ", ".join(f"{k}={v}" for k, v in r["labels"].items()) or "—"
        parts.append(f"<tr><td>{'base' if i == 0 else f'new {i}'}</td><td><code>{_e(r['run_id'])}</code></td>"
                     f"<td>{_e(labels)}</td><td>{_e(r['environment'])}</td><td>{_e((r.get('verdict') or '?').upper())}</td>"
                     f"<td>{_e(r.get('requests'))}</td></tr>")
    parts.append("</table>")
    rules = ", ".join(r["text"] for r in result["rules"]) or "none (not gated)"
    parts.append(f"<p>Gate (fires when beyond the threshold AND significant): <code>{_e(rules)}</code></p>")
    if result.get("cdf"):
        parts.append("<h2>Latency distributions</h2><div>")
        parts += [cdf_svg(sig, curves) for sig, curves in result["cdf"].items()]
        parts.append("</div>")
    for c in result["comparisons"]:
        parts.append(f"<h2>{_e(runs[c['new']]['label'])} vs {_e(runs[c['base']]['label'])}</h2>")
        parts.append("<p><b>Regressions:</b></p><ul>" + "".join(f"<li class='worse'>{_e(x)}</li>" for x in c["regressions"])
                     + "</ul>" if c["regressions"] else "<p>No regression.</p>")
        parts.append("<h3>Client (raw samples)</h3>" + _rows_html([r for r in c["rows"] if r["source"] == "client"]))
        server = [r for r in c["rows"] if r["source"] == "server"]
        if server:
            parts.append("<h3>Server (Prometheus, by logical signal; no significance test)</h3>" + _rows_html(server))
        if c["notes"]:
            parts.append("<p>Series naming differs (compared by logical signal):</p><ul>"
                         + "".join(f"<li>{_e(n)}</li>" for n in c["notes"]) + "</ul>")
        if c["warnings"]:
            parts.append("<h3>Warnings</h3><ul>" + "".join(f"<li class='warn'>{_e(w)}</li>" for w in c["warnings"]) + "</ul>")
    st = result["settings"]
    parts.append(f"<hr><p><small>Method: {_e(st['method'])}; {st['confidence'] * 100:.0f}% CI, seed {st['seed']}, "
                 f"up to {st['resamples']} resamples. MWU p: Mann-Whitney U on per-request values (informational).</small></p>")
    return "".join(parts) + "</body></html>\n"


def _num(v) -> str:
    return "—" if v is None else f"{v:.4g}"


def render_history_html(hist: dict) -> str:
    """history.html: one chart per statistic and scenario; failed verdicts dotted red, flagged moves circled."""
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>harness history</title><style>{CSS}</style>"
             "</head><body><h1>Run history</h1>"]
    for sc in hist["scenarios"]:
        runs = sc["runs"]
        parts.append(f"<h2>{_e(sc['scenario'])} — {len(runs)} runs</h2>")
        if sc["flags"]:
            parts.append("<ul>" + "".join(f"<li class='worse'>{_e(f['message'])}</li>" for f in sc["flags"]) + "</ul>")
        if sc.get("broken"):
            parts.append("<ul>" + "".join(f"<li class='worse'>broken: {_e(b['message'])}</li>" for b in sc["broken"]) + "</ul>")
        names = [r["label"] for r in runs]
        bad = [i for i, r in enumerate(runs) if r["verdict"] not in ("pass", "measured") or r.get("load_failure")]
        parts.append("<div>")
        for m in hist["metrics"]:
            ys = [r["stats"].get(m) for r in runs]
            if all(y is None for y in ys):
                continue
            marks = [f["index"] for f in sc["flags"] if f["metric"] == m]
            parts.append(svg_chart([{"name": m, "x": list(range(len(runs))), "y": ys, "marks": marks, "bad": bad}],
                                   title=m, x_label="run (oldest → newest)", y_label=hist["units"].get(m, ""),
                                   x_ticks_labels=names, width=460, height=240))
        parts.append("</div><table><tr><th>run</th><th>when</th><th>verdict</th>"
                     + "".join(f"<th>{_e(m)}</th>" for m in hist["metrics"]) + "</tr>")
        flagged = {(f["index"], f["metric"]) for f in sc["flags"]}
        for i, r in enumerate(runs):
            cells = "".join(f"<td class='{'bad' if (i, m) in flagged else ''}'>{_num(r['stats'].get(m))}</td>"
                            for m in hist["metrics"])
            parts.append(f"<tr><td><code>{_e(r['run_id'])}</code> {_e(r['label'] if r['label'] != r['run_id'] else '')}</td>"
                         f"<td>{_e(r.get('when') or '')}</td><td>{_e(r['verdict'] + (', broken' if r.get('load_failure') else ''))}</td>{cells}</tr>")
        parts.append("</table>")
    return "".join(parts) + "</body></html>\n"
