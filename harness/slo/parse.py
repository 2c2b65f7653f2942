"""SLO strings → SLO objects. Grammar: `<signal>[.<stat>] <op> <value>[unit]`; ops < <= > >=; units ms, s, %."""

from __future__ import annotations

import re
from dataclasses import dataclass

from harness.slo.signals import SIGNALS, Signal

OPS = ("<=", ">=", "<", ">")
_RE = re.compile(
    r"^\s*(?P<signal>[a-z][a-z0-9_]*)(?:\.(?P<stat>[a-z0-9.]+?))?\s*(?P<op><=|>=|<|>|==)\s*"
    r"(?P<num>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*(?P<unit>ms|s|%)?\s*$"
)
_UNITS_FOR = {"time": ("ms", "s"), "ratio": ("%", None), "count": (None,), "rate": (None,)}


@dataclass(frozen=True)
class SLO:
    text: str
    signal: str
    stat: str
    op: str
    threshold: float  # canonical units: ms for time, fraction for ratio
    source: str

    @property
    def key(self) -> str:
        return f"{self.signal}.{self.stat}"


def _valid_list() -> str:
    return ", ".join(sorted(SIGNALS))


def parse_slo(text: str) -> SLO:
    if not isinstance(text, str):
        raise ValueError(f"an SLO must be a string like 'ttft.p95 <= 500ms', got {type(text).__name__}")
    m = _RE.match(text)
    if not m:
        raise ValueError(
            f"cannot parse SLO {text!r}: expected '<signal>[.<stat>] <op> <value>[unit]' "
            "with op one of < <= > >= and unit ms, s or % (e.g. 'ttft.p95 <= 500ms')"
        )
    name, stat, op, num, unit = m["signal"], m["stat"], m["op"], float(m["num"]), m["unit"]
    sig: Signal | None = SIGNALS.get(name)
    if sig is None:
        raise ValueError(f"unknown signal {name!r} in {text!r}; valid signals: {_valid_list()}")
    if op == "==":
        raise ValueError(f"operator '==' is not supported in {text!r}; use <=, >=, < or >")
    if stat is None:
        if sig.default_stat is None:
            raise ValueError(f"{text!r}: signal {name!r} needs a stat, one of {', '.join(sig.stats)} (e.g. {name}.{sig.stats[0]})")
        stat = sig.default_stat
    if stat not in sig.stats:
        raise ValueError(f"{text!r}: stat {stat!r} is not valid for {name!r}; valid: {', '.join(sig.stats)}")
    allowed = _UNITS_FOR[sig.kind]
    if unit not in allowed:
        shown = ", ".join(u or "no unit" for u in allowed)
        raise ValueError(f"{text!r}: unit {unit or 'none'!r} does not fit {name!r} ({sig.kind}); use {shown}")
    if sig.kind == "time":
        value = num * 1000.0 if unit == "s" else num
    elif sig.kind == "ratio":
        value = num / 100.0 if unit == "%" else num
        if not 0 <= value <= 1:
            raise ValueError(f"{text!r}: a ratio must lie in 0..1 (or 0..100%)")
    else:
        value = num
    return SLO(text=text.strip(), signal=name, stat=stat, op=op, threshold=value, source=sig.source)
