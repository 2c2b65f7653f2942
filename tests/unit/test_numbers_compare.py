"""compare tests the data it shows: the SLO evaluation's sample selection, the stats window, and a block
bootstrap in time (stretches of a run move together)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from harness.compare import stats
from harness.compare.significance import diff_intervals
from harness.slo.evaluate import client_stats


def _frame(seed: int, blocks: int = 10, per_block: int = 40, block_s: float = 5.0, sd_block: float = 3.0):
    """Requests whose latency has a per-stretch offset (a shared CPU, autoscaling) plus small per-request noise."""
    rng = np.random.default_rng(seed)
    rows = []
    for b in range(blocks):
        off = rng.normal(0, sd_block)
        for i in range(per_block):
            t = 1000.0 + b * block_s + i * block_s / per_block
            rows.append(
                {
                    "t_start_s": t,
                    "ttft_ms": 50 + off + rng.normal(0, 0.5),
                    "e2e_ms": 200.0,
                    "tpot_ms": 8.0,
                    "ok": True,
                    "warmup": False,
                    "cooldown": False,
                    "output_tokens": 10,
                    "itl_ms": [8.0],
                    "error": None,
                }
            )
    return pd.DataFrame(rows)


def test_block_bootstrap_does_not_call_stretch_noise_significant():
    base, new = _frame(1), _frame(2)  # the same process twice
    vb, vn = stats.signal_values(base, "ttft"), stats.signal_values(new, "ttft")
    assert vb.n_groups == 10  # 5 s blocks, not 400 independent requests
    ci = diff_intervals(vb, vn, ["p50"])["p50"]
    assert not ci.significant, ci
    # the same values resampled per request look (falsely) certain
    per_req = diff_intervals(
        stats.Values(vb.values, np.arange(vb.values.size), vb.values.size),
        stats.Values(vn.values, np.arange(vn.values.size), vn.values.size),
        ["p50"],
    )["p50"]
    assert per_req.significant and per_req.high - per_req.low < ci.high - ci.low


def test_compare_drops_cooldown_samples_like_the_slo_evaluation():
    df = _frame(3)
    df.loc[df.index[-80:], "cooldown"] = True
    df.loc[df.index[-80:], "ttft_ms"] = 5000.0  # the cooldown is not in the reported numbers
    v = stats.signal_values(df, "ttft")
    assert v.values.max() < 1000 and v.values.size == client_stats(df, 50.0)["ttft_ms"]["count"]


def test_rate_bins_cover_the_stats_window_and_average_to_the_reported_throughput():
    df = _frame(4)
    start, end = 1000.0, 1050.0
    bins = stats.rate_bins(df, start, end, "tokens")
    assert bins.size == 50 and np.isclose(bins.mean(), client_stats(df, end - start)["output_tokens_per_s"])
    g, n = stats.bin_blocks(bins.size)
    assert n == 10 and (np.bincount(g) == 5).all()  # 5 consecutive seconds move together


def test_compare_window_is_the_stats_window():
    from harness.compare import RunData

    r = RunData(None, {"load": {"warmup_end": 10.0, "stats_end": 40.0, "ended_at": 55.0}}, {}, None)
    assert r.window() == (10.0, 40.0)
