"""SLO strings → SLO objects.

Grammar: `<signal>[.<stat>] <op> <value>[unit] [@<scope>]`
  op     < <= > >= (and == for counts, e.g. `flaps.total == 0`)
  unit   ms or s for times, % (or a plain fraction) for ratios, none for counts and rates
  scope  optional: `@steady` (the steady part of every stage: after warmup and after the stage's user ramp),
         `@<stage name>` (one stage of `load.stages`) or `@model:<model id>` (the requests sent to one model, and
         the server series labelled with its model_name); without it, the whole run after warmup.
Examples: `ttft.p95 <= 500ms`, `ttft.p95 <= 500ms @steady`, `e2e.p99 <= 3s @step`, `goodput.attainment >= 95%`,
`ttft.p95 <= 300ms @model:chat-8b`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from harness.slo.signals import EQ_OK_KINDS, SIGNALS, Signal

OPS = ("<=", ">=", "<", ">", "==")
STEADY = "steady"
MODEL_SCOPE = "model:"  # `@model:<id>`: one served model's requests and model_name-labelled series
_RE = re.compile(
    r"^\s*(?P<signal>[a-z][a-z0-9_]*)(?:\.(?P<stat>[a-z0-9.]+?))?\s*(?P<op><=|>=|==|!=|=<|=>|<|>|=)\s*"
    r"(?P<num>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*(?P<unit>ms|s|%)?"
    r"(?:\s*@\s*(?P<scope>model:[A-Za-z0-9][A-Za-z0-9_./:-]*|[A-Za-z0-9][A-Za-z0-9_.-]*))?\s*$"
)
_UNITS_FOR = {"time": ("ms", "s"), "ratio": ("%", None), "count": (None,), "rate": (None,)}
_SYNTAX = (
    "expected '<signal>[.<stat>] <op> <value>[unit] [@scope]' with op one of < <= > >= (== for counts), "
    "unit ms, s or % and an optional scope @steady, @<stage name> or @model:<model id> (e.g. "
    "'ttft.p95 <= 500ms @steady')"
)


@dataclass(frozen=True)
class SLO:
    text: str
    signal: str
    stat: str
    op: str
    threshold: float  # canonical units: ms for time, fraction for ratio
    source: str
    kind: str = "count"
    scope: str | None = None  # None: whole run after warmup; "steady"; or a stage name

    @property
    def model(self) -> str | None:
        """The model of a `@model:<id>` scope (None: not model-scoped)."""
        return self.scope[len(MODEL_SCOPE) :] if self.scope and self.scope.startswith(MODEL_SCOPE) else None

    @property
    def key(self) -> str:
        return f"{self.signal}.{self.stat}" + (f"@{self.scope}" if self.scope else "")


def _valid_list() -> str:
    return ", ".join(sorted(SIGNALS))


def describe_signals() -> str:
    """One line per signal: name, stats, source, meaning (for errors and docs)."""
    return "\n".join(f"  {s.name}.{{{','.join(s.stats)}}}  [{s.source}] {s.description}" for s in SIGNALS.values())


def model_scopable(sig: Signal) -> bool:
    """Client signals, and server signals whose series carry `model_name` (engine series), split by model."""
    if sig.source == "client":
        return True
    if sig.source != "server":
        return False
    from harness.metrics.catalog import CATALOG, DERIVED

    parts = (DERIVED[sig.name].num, DERIVED[sig.name].den) if sig.name in DERIVED else (sig.name,)
    return all(p in CATALOG and CATALOG[p].scope == "model" for p in parts)


def parse_slo(text: str, stage_names: Sequence[str] | None = None, model_names: Sequence[str] | None = None) -> SLO:
    """Parse one SLO; with `stage_names`, a `@scope` must be `steady` or one of them; with `model_names`, a
    `@model:<id>` must name one of them. Errors are ValueError whose message says what is valid."""
    if not isinstance(text, str):
        raise ValueError(f"an SLO must be a string like 'ttft.p95 <= 500ms', got {type(text).__name__}")
    m = _RE.match(text)
    if not m:
        raise ValueError(f"cannot parse SLO {text!r}: {_SYNTAX}")
    name, stat, op, num, unit, scope = m["signal"], m["stat"], m["op"], float(m["num"]), m["unit"], m["scope"]
    if op in ("!=", "=<", "=>", "="):
        better = {"=<": "<=", "=>": ">=", "=": "=="}.get(op)
        raise ValueError(
            f"operator {op!r} is not supported in {text!r}; use one of < <= > >= (== for counts)"
            + (f" — did you mean {better!r}?" if better else "")
        )
    sig: Signal | None = SIGNALS.get(name)
    if sig is None:
        raise ValueError(f"unknown signal {name!r} in {text!r}; valid signals: {_valid_list()}")
    if stat is None:
        if sig.default_stat is None:
            raise ValueError(
                f"{text!r}: signal {name!r} needs a stat, one of {', '.join(sig.stats)} (e.g. {name}.{sig.stats[0]})"
            )
        stat = sig.default_stat
    if stat not in sig.stats:
        raise ValueError(f"{text!r}: stat {stat!r} is not valid for {name!r}; valid: {', '.join(sig.stats)}")
    kind = sig.kind_of(stat)
    if op == "==" and kind not in EQ_OK_KINDS:
        raise ValueError(
            f"{text!r}: '==' is only for counts (e.g. 'flaps.total == 0'); "
            f"{name}.{stat} is a {kind}: use <=, >=, < or >"
        )
    allowed = _UNITS_FOR[kind]
    if unit not in allowed:
        shown = ", ".join(u or "no unit" for u in allowed)
        raise ValueError(f"{text!r}: unit {unit or 'none'!r} does not fit {name}.{stat} ({kind}); use {shown}")
    if kind == "time":
        value = num * 1000.0 if unit == "s" else num
    elif kind == "ratio":
        value = num / 100.0 if unit == "%" else num
        if not 0 <= value <= 1:
            raise ValueError(f"{text!r}: a ratio must lie in 0..1 (or 0..100%)")
    else:
        value = num
    why = vacuous(name, stat, op, value, kind, f"{m['num']}{unit or ''}")
    if why:
        raise ValueError(f"{text!r}: {why}")
    if scope is not None and scope.startswith(MODEL_SCOPE):
        if not model_scopable(sig):
            ok = ", ".join(s.name for s in SIGNALS.values() if model_scopable(s))
            raise ValueError(
                f"{text!r}: signal {name!r} is not split by model, so it takes no @model: scope; signals that do: {ok}"
            )
        m_name = scope[len(MODEL_SCOPE) :]
        if model_names is not None and m_name not in model_names:
            raise ValueError(
                f"{text!r}: @model:{m_name}: no request goes to that model; models of this run: "
                + ", ".join(model_names)
            )
    elif scope is not None:
        if not sig.scopable:
            scopable = ", ".join(s.name for s in SIGNALS.values() if s.scopable)
            raise ValueError(
                f"{text!r}: signal {name!r} covers the whole run and takes no @scope; signals that take one: {scopable}"
            )
        if stage_names is not None and scope != STEADY and scope not in stage_names:
            raise ValueError(
                f"{text!r}: unknown scope '@{scope}'; valid: @{STEADY}, " + ", ".join(f"@{s}" for s in stage_names)
            )
    return SLO(
        text=text.strip(), signal=name, stat=stat, op=op, threshold=value, source=sig.source, kind=kind, scope=scope
    )


def vacuous(name: str, stat: str, op: str, value: float, kind: str, given: str) -> str | None:
    """Why a bound can never fail or never pass from the signal's range alone (every signal is >= 0, a ratio
    <= 1, a count compared with == is a whole number), or None. Such a gate checks nothing."""
    import math

    what = f"{name}.{stat}"
    if not math.isfinite(value):
        return f"threshold {given} is not a finite number (it overflows); give a real bound"
    if value < 0:
        return f"a negative threshold never {'passes' if op in ('<', '<=', '==') else 'fails'}; thresholds are >= 0"
    if op == ">=" and value == 0:
        return f"{what} is never below 0, so '>= 0' can never fail; give a bound above 0 (or drop the SLO)"
    if op == "<" and value == 0:
        return f"{what} is never below 0, so '< 0' can never pass; did you mean '<= 0'?"
    if kind == "ratio" and value >= 1 and op in ("<=", ">"):
        never = "fail" if op == "<=" else "pass"
        return f"{what} is a fraction (at most 1 = 100%), so '{op} {given}' can never {never}; give a bound below 1"
    if op == "==" and value != int(value):
        return f"{what} counts whole things, so '== {given}' can never pass; give a whole number"
    return None


def check_slos(
    slos: Sequence[str], stage_names: Sequence[str], has_goodput: bool, model_names: Sequence[str] | None = None
) -> list[str]:
    """Meaning checks that need the rest of the scenario: scopes name a stage (or steady), goodput SLOs have
    criteria. One message per problem, prefixed `slos[i]:`."""
    errs = []
    for i, text in enumerate(slos):
        try:
            s = parse_slo(text, stage_names, model_names)
        except ValueError as e:
            errs.append(f"slos[{i}]: {e}")
            continue
        if s.signal == "goodput" and not has_goodput:
            errs.append(
                f"slos[{i}]: {text!r} needs per-request criteria: add e.g. `goodput: {{ttft_ms: 300, tpot_ms: 50}}` "
                "to the scenario (keys ttft_ms, tpot_ms, e2e_ms, itl_max_ms)"
            )
    return errs
