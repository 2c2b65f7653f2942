"""Did the load itself work? A run whose requests (mostly) failed measured failures, not serving: its latency
statistics describe a few survivors, so it is no baseline and no candidate (`harness compare`, `history`,
`matrix` refuse or flag it) and a measure-only run of it does not pass.

Pure: reads a summary.json dict (old layouts too: missing fields count as unknown, not as broken).
"""

from __future__ import annotations

# Above this share of failed requests (after warmup) the run's statistics are not about serving any more.
# 50 %: a deliberate fault-injection scenario (sim error_rate 0.1, a killed replica) stays comparable.
MAX_ERROR_RATE = 0.5


def load_failure(summary: dict | None, max_error_rate: float = MAX_ERROR_RATE) -> str | None:
    """Why the run's load failed (one sentence), or None when its numbers are about a working load."""
    if not summary:
        return "no summary.json (the run stopped before evaluation)"
    status = summary.get("status") or "completed"
    if status != "completed":
        return f"the run {status} (status {status!r} in summary.json)"
    c = summary.get("client") or {}
    n, errors = c.get("requests"), c.get("errors")
    if n is None:
        return None  # an old record without counts: nothing to judge
    n = int(n)
    if n == 0:
        return "no request was measured after warmup"
    errors = int(errors) if errors is not None else round((c.get("error_rate") or 0.0) * n)
    top = _top_errors(c.get("errors_by_class") or {})
    if errors >= n:
        return f"every request failed ({errors} of {n}){top}"
    if errors / n > max_error_rate:
        return f"{errors / n:.0%} of requests failed ({errors} of {n}; bound {max_error_rate:.0%}){top}"
    return None


def _top_errors(by_class: dict) -> str:
    if not by_class:
        return ""
    worst = sorted(by_class.items(), key=lambda kv: -int(kv[1]))[:2]
    return "; most common: " + ", ".join(f"{_short(str(k))} ×{v}" for k, v in worst)


def _short(s: str, n: int = 120) -> str:
    s = " ".join(s.split())
    return s if len(s) <= n else s[: n - 1] + "…"
