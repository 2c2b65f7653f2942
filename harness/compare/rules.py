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

from harness.defaults import DEFAULT_RULES  # the CLI's help shows them without importing this package
from harness.errors import HarnessError

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


_UNITS_OF_KIND = {"time": ("%", "ms", "s"), "ratio": ("%", "pp")}  # other kinds (counts, rates): relative only
_CATALOG_KIND = {"ms": "time", "fraction": "ratio"}


def signal_kind(metric: str, text: str = "") -> tuple[str, tuple[str, ...], str | None]:
    """(kind, allowed stats, default stat) of a rule's signal, from the SLO signals and the metric catalog."""
    from harness.metrics.catalog import CATALOG
    from harness.slo.signals import SIGNALS

    sig = metric.split(".")[0]
    if sig in SIGNALS:
        s = SIGNALS[sig]
        return s.kind, s.stats, s.default_stat
    if sig in CATALOG:
        return _CATALOG_KIND.get(CATALOG[sig].unit, "count"), tuple(_STATS.replace("\\", "").split("|")), None
    known = sorted(set(SIGNALS) | set(CATALOG))
    raise HarnessError(
        f"--fail-on {text or metric}: unknown signal {sig!r}", fix=f"use one of {', '.join(known)} (e.g. ttft.p95:+10%)"
    )


def check_rule(r: Rule) -> None:
    """A rule that can fire: a known signal, a stat it has, a unit that fits it (ms on a time, pp on a fraction)."""
    kind, allowed, default = signal_kind(r.metric, r.text)
    sig, _, stat = r.metric.partition(".")
    stat = stat or (default or "")
    if stat not in allowed:
        raise HarnessError(
            f"--fail-on {r.text}: {sig} has no statistic {stat!r}" if stat else f"--fail-on {r.text}: give a statistic",
            fix=f"use {sig}.<stat> with one of {', '.join(allowed)} (e.g. {sig}.{allowed[0]}:+10%)",
        )
    unit = (_RE.match(r.text) or {"unit": None})["unit"]
    units = _UNITS_OF_KIND.get(kind, ("%",))
    if unit not in units:
        raise HarnessError(
            f"--fail-on {r.text}: {unit} does not fit {sig} (a {kind}; it takes {' or '.join(units)})",
            fix=FIX,
        )


def check_rules(texts: list[str] | None) -> list[Rule]:
    """`parse_rules` plus `check_rule` on each: what `run`, `compare` and `matrix` call before anything starts."""
    rules = parse_rules(texts)
    for r in rules:
        check_rule(r)
    return rules


def parse_rules(texts: list[str] | None) -> list[Rule]:
    """The given rules, or the defaults when none are given; `none` disables gating."""
    texts = list(texts or DEFAULT_RULES)
    if [t.strip().lower() for t in texts] == ["none"]:
        return []
    return [parse_rule(t) for t in texts]
