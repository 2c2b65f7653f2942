"""Shared Plotly plumbing for the HTML reports (report.html, compare.html, history.html).

Pure: figures in, one self-contained HTML page out. plotly.js ships inside the `plotly` Python package and is
inlined once per page, so a report opens offline and from an artifact store alike.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from html import escape

import plotly.graph_objects as go
import plotly.io as pio
from plotly.io.json import to_json_plotly
from plotly.offline import get_plotlyjs

PASS, FAIL, STAGE = "#2e7d32", "#c62828", "#9e9e9e"
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#17becf", "#e377c2", "#7f7f7f")
CONFIG = {
    "responsive": True,
    "displaylogo": False,
    "scrollZoom": False,
    "modeBarButtonsToRemove": ["select2d", "lasso2d"],
    "toImageButtonOptions": {"format": "png", "scale": 2},
}
HEIGHT = 340


@dataclass
class Chart:
    """One figure with its title (drawn as HTML, so it never collides with plot labels) and a caption."""

    title: str
    fig: go.Figure
    caption: str = ""
    key: str = ""
    wide: bool = False


@dataclass
class Page:
    title: str
    sections: list[str] = field(default_factory=list)  # HTML fragments, in order


def figure(x_title: str, y_title: str, *, height: int = HEIGHT, hover: str = "x unified") -> go.Figure:
    fig = go.Figure()
    fig.update_layout(
        # template "none": the page's one copy of plotly_white is merged in when drawn (JS side)
        template="none",
        height=height,
        hovermode=hover,
        margin=dict(l=64, r=16, t=44, b=8),
        legend=dict(orientation="h", yanchor="top", y=-0.2, x=0, xanchor="left", font=dict(size=11)),
        font=dict(family="system-ui, -apple-system, Segoe UI, sans-serif", size=12),
        xaxis=dict(
            title=dict(text=x_title, standoff=6),
            exponentformat="none",
            separatethousands=True,
            showline=True,
            linecolor="#bbb",
            zeroline=False,
        ),
        yaxis=dict(
            title=dict(text=y_title, standoff=6),
            exponentformat="none",
            separatethousands=True,
            showline=True,
            linecolor="#bbb",
            rangemode="tozero",
            zeroline=False,
        ),
    )
    return fig


def finite(values: Sequence[float]) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(float(v))]


def data_max(fig: go.Figure, axis: str = "y") -> float | None:
    """Largest finite value the data traces (not reference lines) put on an axis."""
    vals = []
    for t in fig.data:
        if (t.meta or {}).get("ref"):
            continue
        v = getattr(t, axis)
        vals += finite(list(v) if v is not None else [])
    return max(vals) if vals else None


def no_data(fig: go.Figure, text: str = "no data") -> None:
    fig.add_annotation(
        text=text, xref="paper", yref="paper", x=0.5, y=0.5, showarrow=False, font=dict(size=16, color="#999")
    )
    fig.update_xaxes(showticklabels=False)
    fig.update_yaxes(showticklabels=False)


def ref_line(
    fig: go.Figure, axis: str, value: float, name: str, color: str, span: tuple[float, float], dash: str = "dash"
) -> None:
    """A threshold drawn as a legend entry (hover, toggle) instead of a text label over the data."""
    a, b = span
    x, y = ([value, value], [a, b]) if axis == "x" else ([a, b], [value, value])
    fig.add_trace(
        go.Scatter(
            x=x,
            y=y,
            mode="lines",
            name=name,
            line=dict(color=color, width=1.6, dash=dash),
            hovertemplate=f"{escape(name)}<extra></extra>",
            meta={"ref": True},
        )
    )


def off_scale(fig: go.Figure, axis: str, text: str, color: str) -> None:
    """A threshold beyond the data's range: say so at the plot's edge, with an arrow pointing off the plot."""
    if axis == "y":
        fig.add_annotation(
            text=text,
            xref="paper",
            yref="paper",
            x=1,
            y=1,
            xanchor="right",
            yanchor="top",
            showarrow=False,
            font=dict(size=11, color=color),
            bgcolor="rgba(255,255,255,0.85)",
        )
    else:
        fig.add_annotation(
            text=text,
            xref="paper",
            yref="paper",
            x=1,
            y=0.06,
            xanchor="right",
            yanchor="bottom",
            showarrow=False,
            font=dict(size=11, color=color),
            bgcolor="rgba(255,255,255,0.85)",
        )


@lru_cache(maxsize=1)
def _template_json() -> str:
    return _js(pio.templates["plotly_white"].to_plotly_json())


def _js(o) -> str:
    return to_json_plotly(o).replace("</", "<\\/")  # a label holding "</script>" must not end the script


def div(chart: Chart, div_id: str) -> str:
    """The chart's div and the script that draws it; the page's one copy of the template is merged in (JS side)."""
    spec = chart.fig.to_plotly_json()
    spec["layout"].pop("template", None)
    h = chart.fig.layout.height or HEIGHT
    body = (
        f'<div id="{div_id}" class="plotly-graph-div" style="height:{h}px;width:100%"></div>'
        f'<script>Plotly.newPlot("{div_id}", {_js(spec["data"])}, '
        f"Object.assign({{template: HARNESS_TEMPLATE}}, {_js(spec['layout'])}), {json.dumps(CONFIG)});</script>"
    )
    cap = f'<p class="caption">{escape(chart.caption)}</p>' if chart.caption else ""
    return (
        f'<figure class="chart{" wide" if chart.wide else ""}" data-chart="{escape(chart.key or div_id)}">'
        f"<figcaption>{escape(chart.title)}</figcaption>{body}{cap}</figure>"
    )


def grid(charts: list[Chart], prefix: str) -> str:
    return '<div class="grid">' + "".join(div(c, f"{prefix}-{i}") for i, c in enumerate(charts)) + "</div>"


CSS = """
*{box-sizing:border-box}
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:0 auto;padding:20px 28px;max-width:1800px;
 color:#222;line-height:1.4}
h1{font-size:22px;margin:0 0 8px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
h3{font-size:15px;margin:18px 0 6px}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(min(100%,560px),1fr));gap:14px}
figure.chart{margin:0;border:1px solid #e6e6e6;border-radius:6px;padding:8px 8px 4px;background:#fff;min-width:0}
figure.chart.wide{grid-column:1/-1}
figure.chart figcaption{font-weight:600;font-size:14px;padding:0 4px}
.caption{color:#666;font-size:12px;margin:2px 4px 4px}
.verdict{display:inline-block;padding:3px 12px;border-radius:4px;color:#fff;font-weight:700}
.verdict.pass{background:#2e7d32}.verdict.fail{background:#c62828}.verdict.measured{background:#455a64}
.tablewrap{overflow-x:auto}
table{border-collapse:collapse;font-size:13px;margin:8px 0}td,th{border:1px solid #ddd;padding:4px 8px;text-align:left;
 vertical-align:top}th{background:#f6f6f6}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
tr.fail td{background:#fdecea}tr.pass td:first-child{color:#2e7d32;font-weight:600}
tr.fail td:first-child{color:#c62828;font-weight:700}
.bad{background:#fdecea}.worse{color:#c62828}.better{color:#2e7d32}.warn{color:#a15c00}
.note{color:#666;font-size:13px}code{font-size:12px}
"""


@lru_cache(maxsize=1)
def _plotlyjs() -> str:
    return get_plotlyjs()


def page(title: str, body: list[str], extra_css: str = "") -> str:
    """The whole document: plotly.js inline once (offline), then the body."""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{CSS}{extra_css}</style>"
        f'<script type="text/javascript">{_plotlyjs()}</script>'
        f"<script>const HARNESS_TEMPLATE = {_template_json()};</script></head><body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )
