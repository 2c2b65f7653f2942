"""`--fail-on` thresholds: `<metric>:<+|-><amount><unit>`.

  ttft.p99:+10%     relative increase beyond 10 %
  throughput:-10%   relative decrease beyond 10 %
  error_rate:+1pp   absolute increase beyond 1 percentage point
  e2e.p95:+50ms     absolute increase beyond 50 ms (also `s`)
`ttft_p99` is accepted for `ttft.p99`. A rule fires when the change is beyond the threshold AND significant.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

from harness.errors import HarnessError

# Default gates: central statistics with thresholds above the run-to-run noise measured here. Over 10 pairs of
# identical smoke runs one after the other on a shared 2-core box, medians moved by up to +16 % (tpot, itl, e2e)
# and +26 % (ttft), throughput by up to -17 %; tails moved by up to +108 % (ttft.p95), so tail gates at +10 % fired
# on half the pairs. With these gates and the block bootstrap: 0/10 false alarms, and a x1.5 sim slowdown was
# caught against every one of 11 baselines (bench/README.md). Gate tails yourself where runs are quiet and long
# (e.g. --fail-on ttft.p95:+10%).
DEFAULT_RULES = ("tpot.p50:+25%", "itl.p50:+25%", "e2e.p50:+25%", "ttft.p50:+35%", "throughput:-20%", "error_rate:+1pp")
_STATS = r"p50|p90|p95|p99\.9|p99|mean|max|min|value|total|rate|last"
_RE = re.compile(
    r"^\s*(?P<metric>[a-z][a-z0-9_.]*?)\s*:\s*(?P<sign>[+-])\s*(?P<num>\d+(?:\.\d+)?)\s*(?P<unit>%|pp|ms|s)?\s*$"
)
_SCALARS = ("error_rate", "throughput", "request_rate")
FIX = "write --fail-on like ttft.p99:+10%, throughput:-10%, error_rate:+1pp or e2e.p95:+50ms"


@dataclass(frozen=True)
class Rule:
    text: str
    metric: str  # ttft.p99 | error_rate
    sign: int  # +1: an increase is bad; -1: a decrease is bad
    amount: float  # relative fraction (kind rel) or canonical units (ms, fraction)
    kind: str  # rel | abs

    def to_dict(self) -> dict:
        return asdict(self)

    def beyond(self, base: float | None, new: float | None) -> bool:
        if base is None or new is None:
            return False
        change = (new - base) * self.sign
        if self.kind == "abs":
            return change > self.amount
        if base == 0:
            return change > 0
        return change / abs(base) > self.amount


def normalize_metric(m: str) -> str:
    m = m.strip()
    if m in _SCALARS:
        return m
    for scalar in _SCALARS:
        if m in (f"{scalar}.value", f"{scalar}_value"):
            return scalar
    hit = re.match(rf"^(?P<sig>[a-z][a-z0-9_]*?)[._](?P<stat>{_STATS})$", m)
    return f"{hit['sig']}.{hit['stat']}" if hit else m


def parse_rule(text: str) -> Rule:
    m = _RE.match(text)
    if not m:
        raise HarnessError(f"--fail-on {text!r}: cannot parse", fix=FIX)
    metric, sign, num, unit = normalize_metric(m["metric"]), 1 if m["sign"] == "+" else -1, float(m["num"]), m["unit"]
    if unit == "%":
        return Rule(text, metric, sign, num / 100.0, "rel")
    if unit == "pp":
        return Rule(text, metric, sign, num / 100.0, "abs")
    if unit in ("ms", "s"):
        return Rule(text, metric, sign, num * (1000.0 if unit == "s" else 1.0), "abs")
    raise HarnessError(f"--fail-on {text!r}: give a unit (% relative, pp percentage points, ms or s absolute)", fix=FIX)


def parse_rules(texts: list[str] | None) -> list[Rule]:
    """The given rules, or the defaults when none are given; `none` disables gating."""
    texts = list(texts or DEFAULT_RULES)
    if [t.strip().lower() for t in texts] == ["none"]:
        return []
    return [parse_rule(t) for t in texts]
