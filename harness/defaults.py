"""Defaults shared by the code and the CLI's help text (which must not import the numeric stack to show them)."""

from __future__ import annotations

# Default gates: central statistics with thresholds above the run-to-run noise measured here. Over 10 pairs of
# identical smoke runs one after the other on a shared 2-core box, medians moved by up to +16 % (tpot, itl, e2e)
# and +26 % (ttft), throughput by up to -17 %; tails moved by up to +108 % (ttft.p95), so tail gates at +10 % fired
# on half the pairs. With these gates and the block bootstrap: 0/10 false alarms, and a x1.5 sim slowdown was
# caught against every one of 11 baselines (bench/README.md). Gate tails yourself where runs are quiet and long
# (e.g. --fail-on ttft.p95:+10%).
DEFAULT_RULES = ("tpot.p50:+25%", "itl.p50:+25%", "e2e.p50:+25%", "ttft.p50:+35%", "throughput:-20%", "error_rate:+1pp")
DEFAULT_SEED = 20240601  # compare's bootstrap seed
DEFAULT_RESAMPLES = 1000  # compare's bootstrap resamples
HISTORY_WINDOW = 5  # history: a run is compared with the median of this many previous runs
HISTORY_THRESHOLD = 0.10  # history: relative jump that counts as moved
