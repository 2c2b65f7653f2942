"""Formatting of canonical values for humans (renderers only; stored values stay canonical)."""

from __future__ import annotations


def fmt_ms(v: float | None) -> str:
    if v is None:
        return "—"
    if v >= 10_000:
        return f"{v / 1000:.1f} s"
    if v >= 100:
        return f"{v:.0f} ms"
    return f"{v:.1f} ms" if v >= 10 else f"{v:.2f} ms"


def fmt_value(v: float | None, unit: str) -> str:
    if v is None:
        return "no data"
    if unit == "ms":
        return fmt_ms(v)
    if unit == "fraction":
        return f"{v * 100:.2f}%" if v < 0.1 else f"{v * 100:.1f}%"
    if unit == "per_s":
        return f"{v:.1f}/s"
    return f"{v:.4g}"
