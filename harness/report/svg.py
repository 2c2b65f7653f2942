"""Tiny inline-SVG charts (pure string building, no dependencies, no network): lines, steps, dots, reference lines.

Every drawn series is a `<path class="series" data-n="N">` (N = points drawn) so tests can check a plot was drawn.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from html import escape
from typing import Sequence

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#17becf")


@dataclass
class Series:
    label: str
    points: Sequence[tuple[float, float]]
    color: str | None = None
    style: str = "line"  # line | step | dots
    dashed: bool = False


@dataclass
class Ref:
    """A reference line: horizontal (axis 'y', e.g. an SLO threshold) or vertical (axis 'x', e.g. a stage start)."""

    axis: str
    value: float
    label: str
    color: str = "#b00020"


@dataclass
class Chart:
    title: str
    series: list[Series]
    x_label: str = ""
    y_label: str = ""
    refs: list[Ref] = field(default_factory=list)
    y_min: float | None = 0.0
    y_max: float | None = None
    x_range: tuple[float, float] | None = None  # fixed x extent (time charts share one); points outside are dropped
    x_log: bool = False
    width: int = 760
    height: int = 280
    note: str = ""


def _nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if not math.isfinite(lo) or not math.isfinite(hi) or hi <= lo:
        return [lo]
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step) * step
    return [round(first + i * step, 10) for i in range(int((hi - first) / step) + 1)]


def _fmt(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 10_000:
        return f"{v / 1000:g}k"
    return f"{v:.3g}"


def _bounds(chart: Chart) -> tuple[float, float, float, float]:
    xs = [x for s in chart.series for x, _ in s.points] + [r.value for r in chart.refs if r.axis == "x"]
    ys = [y for s in chart.series for _, y in s.points] + [r.value for r in chart.refs if r.axis == "y"]
    xs = [x for x in xs if math.isfinite(x) and (x > 0 or not chart.x_log)]
    ys = [y for y in ys if math.isfinite(y)]
    x0, x1 = chart.x_range if chart.x_range else ((min(xs), max(xs)) if xs else (0.0, 1.0))
    y0 = chart.y_min if chart.y_min is not None else (min(ys) if ys else 0.0)
    y1 = chart.y_max if chart.y_max is not None else (max(ys) if ys else 1.0)
    if x1 <= x0:
        x1 = x0 + 1.0
    if y1 <= y0:
        y1 = y0 + 1.0
    else:
        y1 = y1 + 0.05 * (y1 - y0)  # headroom so a line at the top stays visible
    return x0, x1, y0, y1


def render(chart: Chart) -> str:
    W, H = chart.width, chart.height
    L, R, T, B = 62, 16, 30, 44
    pw, ph = W - L - R, H - T - B
    x0, x1, y0, y1 = _bounds(chart)
    lx0, lx1 = (math.log10(x0), math.log10(x1)) if chart.x_log else (x0, x1)

    def sx(x: float) -> float:
        v = math.log10(max(x, x0)) if chart.x_log else x
        return L + (v - lx0) / (lx1 - lx0) * pw

    def sy(y: float) -> float:
        return T + ph - (min(max(y, y0), y1) - y0) / (y1 - y0) * ph

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{W}" height="{H}" viewBox="0 0 {W} {H}" '
           f'role="img" aria-label="{escape(chart.title)}">',
           f'<text x="{L}" y="18" class="title">{escape(chart.title)}</text>',
           f'<rect x="{L}" y="{T}" width="{pw}" height="{ph}" class="plot"/>']
    for v in _nice_ticks(y0, y1):
        y = sy(v)
        out.append(f'<line x1="{L}" x2="{L + pw}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
                   f'<text x="{L - 6}" y="{y + 4:.1f}" class="tick" text-anchor="end">{_fmt(v)}</text>')
    xt = [10 ** e for e in range(math.floor(lx0), math.ceil(lx1) + 1) if x0 <= 10 ** e <= x1] if chart.x_log \
        else _nice_ticks(x0, x1, 8)
    for v in xt:
        x = sx(v)
        out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{T}" y2="{T + ph}" class="grid"/>'
                   f'<text x="{x:.1f}" y="{T + ph + 16}" class="tick" text-anchor="middle">{_fmt(v)}</text>')
    out.append(f'<text x="{L + pw / 2}" y="{H - 6}" class="axis" text-anchor="middle">{escape(chart.x_label)}</text>'
               f'<text x="14" y="{T + ph / 2}" class="axis" text-anchor="middle" '
               f'transform="rotate(-90 14 {T + ph / 2})">{escape(chart.y_label)}</text>')
    for i, s in enumerate(chart.series):
        color = s.color or PALETTE[i % len(PALETTE)]
        pts = [(sx(x), sy(y)) for x, y in s.points if math.isfinite(x) and math.isfinite(y) and (x > 0 or not chart.x_log)
               and x0 <= x <= x1]
        if not pts:
            continue
        if s.style == "dots":
            d = "".join(f"M{x:.1f} {y:.1f}h0.01" for x, y in pts)
            out.append(f'<path class="series dots" data-n="{len(pts)}" d="{d}" stroke="{color}" '
                       f'stroke-width="3" stroke-linecap="round" fill="none" opacity="0.55"/>')
            continue
        d = f"M{pts[0][0]:.1f} {pts[0][1]:.1f}"
        for (px, py), (x, y) in zip(pts, pts[1:]):
            d += f"H{x:.1f}V{y:.1f}" if s.style == "step" else f"L{x:.1f} {y:.1f}"
        dash = ' stroke-dasharray="6 3"' if s.dashed else ""
        out.append(f'<path class="series" data-n="{len(pts)}" d="{d}" stroke="{color}" stroke-width="1.8" '
                   f'fill="none"{dash}/>')
    for r in chart.refs:
        if r.axis == "y" and y0 <= r.value <= y1:
            y = sy(r.value)
            out.append(f'<line x1="{L}" x2="{L + pw}" y1="{y:.1f}" y2="{y:.1f}" class="ref" stroke="{r.color}"/>'
                       f'<text x="{L + 4}" y="{y - 4:.1f}" class="reflabel" fill="{r.color}">'
                       f'{escape(r.label)}</text>')
        elif r.axis == "x" and x0 <= r.value <= x1:
            x = sx(r.value)
            right = x > L + 0.7 * pw  # label on the left of a line near the right edge
            anchor = ' text-anchor="end"' if right else ""
            out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{T}" y2="{T + ph}" class="ref" stroke="{r.color}"/>'
                       f'<text x="{x - 3 if right else x + 3:.1f}" y="{T + 11}" class="reflabel" fill="{r.color}"'
                       f'{anchor}>{escape(r.label)}</text>')
    for i, s in enumerate(chart.series):  # legend along the top right
        color = s.color or PALETTE[i % len(PALETTE)]
        out.append(f'<rect x="{W - R - 150}" y="{T + 6 + 15 * i}" width="10" height="10" fill="{color}"/>'
                   f'<text x="{W - R - 136}" y="{T + 15 + 15 * i}" class="legend">{escape(s.label)}</text>')
    if not any(s.points for s in chart.series):
        out.append(f'<text x="{L + pw / 2}" y="{T + ph / 2}" class="empty" text-anchor="middle">no data</text>')
    out.append("</svg>")
    return "".join(out)


CSS = """
svg.chart{background:#fff;font-family:system-ui,sans-serif;margin:6px 0}
svg .title{font-size:14px;font-weight:600}svg .plot{fill:#fafafa;stroke:#ccc}
svg .grid{stroke:#e4e4e4}svg .tick{font-size:10px;fill:#555}svg .axis{font-size:11px;fill:#333}
svg .ref{stroke-width:1.4;stroke-dasharray:5 4}svg .reflabel{font-size:10px}
svg .legend{font-size:11px;fill:#333}svg .empty{font-size:14px;fill:#999}
"""
