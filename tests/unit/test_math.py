"""Percentile and Prometheus-series math on known inputs."""

import math

import numpy as np
import pandas as pd
import pytest

from harness.metrics.mathx import aggregate_instants, counter_increase, gauge_stats, histogram_quantile, percentile
from harness.slo.evaluate import client_stats, dist_stats, evaluate


def test_percentiles_on_known_samples():
    vals = list(range(1, 101))  # 1..100
    d = dist_stats(vals)
    assert d["p50"] == pytest.approx(50.5)
    assert d["p90"] == pytest.approx(90.1)
    assert d["p99"] == pytest.approx(99.01)
    assert d["max"] == 100 and d["min"] == 1 and d["mean"] == pytest.approx(50.5)
    assert percentile(sorted(vals), 0.95) == pytest.approx(np.percentile(vals, 95))


def test_dist_stats_ignores_nan_and_empty():
    assert dist_stats([]) is None
    assert dist_stats([math.nan, 3.0])["p50"] == 3.0


def test_counter_increase_series_present_at_start():
    pts = [(100, 10), (101, 12), (102, 15)]
    assert counter_increase(pts, 100, 1.5) == 5


def test_counter_increase_born_in_window_counts_first_value():
    pts = [(105, 4), (106, 9)]  # first appeared after the window start: started from zero
    assert counter_increase(pts, 100, 1.5) == 9


def test_counter_increase_handles_reset():
    pts = [(100, 10), (101, 20), (102, 3), (103, 5)]  # restart after 20
    assert counter_increase(pts, 100, 1.5) == 10 + 3 + 2


def test_histogram_quantile_linear_in_bucket():
    b = {0.1: 0, 0.2: 50, 0.5: 100, math.inf: 100}
    assert histogram_quantile(0.5, b) == pytest.approx(0.2)
    assert histogram_quantile(0.25, b) == pytest.approx(0.15)
    assert histogram_quantile(0.75, b) == pytest.approx(0.35)


def test_histogram_quantile_in_inf_bucket_returns_last_bound():
    b = {1.0: 1, 2.0: 2, math.inf: 10}
    assert histogram_quantile(0.99, b) == 2.0


def test_histogram_quantile_empty():
    assert histogram_quantile(0.5, {}) is None
    assert histogram_quantile(0.5, {1.0: 0, math.inf: 0}) is None


def test_aggregate_and_gauge_stats():
    agg = aggregate_instants([[(1, 1), (2, 2)], [(1, 3), (2, 1)]], "sum")
    assert agg == [(1, 4.0), (2, 3.0)]
    assert aggregate_instants([[(1, 1)], [(1, 3)]], "max") == [(1, 3.0)]
    st = gauge_stats([(1, 1.0), (2, 3.0), (3, 2.0)])
    assert st["max"] == 3 and st["min"] == 1 and st["last"] == 2 and st["mean"] == 2


def _samples():
    rows = []
    for i in range(10):
        rows.append(
            dict(
                t_start_s=i,
                ttft_ms=10.0 * (i + 1),
                e2e_ms=100.0 + i,
                tpot_ms=5.0,
                itl_ms=[4.0, 6.0],
                output_tokens=3,
                ok=True,
                error=None,
                warmup=i < 2,
            )
        )
    rows.append(
        dict(
            t_start_s=11,
            ttft_ms=None,
            e2e_ms=1.0,
            tpot_ms=None,
            itl_ms=[],
            output_tokens=0,
            ok=False,
            error="http_500",
            warmup=False,
        )
    )
    return pd.DataFrame(rows)


def test_client_stats_exclude_warmup_and_count_errors():
    c = client_stats(_samples(), duration_s=9.0)
    assert c["requests"] == 9 and c["errors"] == 1 and c["warmup_requests"] == 2
    assert c["error_rate"] == pytest.approx(1 / 9)
    assert c["ttft_ms"]["min"] == 30.0  # warmup rows (10, 20) excluded
    assert c["itl_ms"]["p50"] == pytest.approx(5.0) and c["itl_ms"]["count"] == 16
    assert c["errors_by_class"] == {"http_500": 1}
    assert c["output_tokens_per_s"] == pytest.approx(24 / 9)


def test_evaluate_verdicts_and_no_data():
    c = client_stats(_samples(), duration_s=9.0)
    v = evaluate(
        ["ttft.p50 <= 100ms", "error_rate <= 1%", "kv_cache_usage.max < 0.9", "replicas.max >= 1"],
        c,
        {"replicas": {"max": 2.0}},
        {"replicas": "ray_serve_deployment_replica_healthy", "kv_cache_usage": None},
    )
    by = {x.slo: x for x in v}
    assert by["ttft.p50 <= 100ms"].passed
    assert not by["error_rate <= 1%"].passed and "is not <=" in by["error_rate <= 1%"].reason
    kv = by["kv_cache_usage.max < 0.9"]
    assert not kv.passed and kv.observed is None and kv.reason.startswith("no data")  # no data never passes
    assert by["replicas.max >= 1"].passed and "ray_serve_deployment_replica_healthy" in by["replicas.max >= 1"].source
