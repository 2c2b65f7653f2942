"""Server quantiles are intervals: each comes with the bucket it lies in; means built from midpoints are flagged."""

import math

from harness.metrics.mathx import histogram_quantile, quantile_bucket
from harness.metrics.scrape import ScrapeResult
from harness.report.markdown import render_markdown
from harness.run.evaluate import server_resolution

# vLLM's ITL histogram: lowest bucket 10 ms; 90 of 100 observations below it
BUCKETS = {0.01: 90.0, 0.025: 95.0, 0.05: 99.0, math.inf: 100.0}


def test_quantile_bucket_bounds_the_interpolated_value():
    assert quantile_bucket(0.5, BUCKETS) == (0.0, 0.01)  # "5.4 ms" means somewhere in 0-10 ms
    assert 0.0 < histogram_quantile(0.5, BUCKETS) < 0.01
    assert quantile_bucket(0.95, BUCKETS) == (0.01, 0.025)
    assert quantile_bucket(0.999, BUCKETS) == (0.05, math.inf)  # past the last bound: no upper limit
    assert quantile_bucket(0.5, {}) is None


def _summary(res):
    return {
        "run_id": "r",
        "scenario": "s",
        "status": "completed",
        "verdict": "pass",
        "slos": [],
        "warnings": [],
        "client": {},
        "server": {"server_itl": {"p50": 5.4, "p99.9": 50.0, "mean": 6.1, "count": 100.0}},
        "server_series": {"server_itl": "ray_vllm_inter_token_latency_seconds"},
        "reconciliation": {},
        "server_resolution": res,
    }


def test_summary_and_report_show_bounds_and_flag_midpoint_means():
    scraped = ScrapeResult(
        {},
        None,
        0.0,
        True,
        {},
        histograms={
            "server_itl": {
                "le": [10.0, 25.0, 50.0],
                "counts": [90, 95, 99],
                "count": 100,
                "quantile_buckets": {"p50": [0.0, 10.0], "p99.9": [50.0, None]},
            }
        },
        notes={
            "server_itl.mean": "approximate: from _sum/_count, and Ray re-records every observation at its "
            "bucket's midpoint"
        },
    )
    res = server_resolution(scraped)
    assert (
        res["server_itl"]["quantile_buckets_ms"]["p50"] == [0.0, 10.0] and "midpoint" in res["server_itl"]["mean_note"]
    )
    md = render_markdown({"run_id": "r"}, _summary(res))
    assert "p50 5.4 [0–10]" in md and "p99.9 50 [50–∞]" in md and "mean 6.1 (from bucket midpoints)" in md
