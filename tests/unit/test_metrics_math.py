"""Sparse-gauge bridging, whole-run vs post-warmup counters, bucket lookup, derived signals."""

import math

from harness.metrics.catalog import CATALOG
from harness.metrics.mathx import bridge_gaps, bucket_around, histogram_quantile, increase_since
from harness.metrics.scrape import ScrapeResult, Window, _counter, _derived, _gauge


def test_bridge_fills_interior_gaps_up_to_hold():
    # Serve's replica_healthy as seen on Ray 2.60: two scrapes, then ~8 s staleness gap
    pts = [(20, 1), (21, 1), (30, 1), (31, 1)]
    out = dict(bridge_gaps(pts, 15, 1, end=31))
    assert [out.get(t) for t in range(20, 32)] == [1] * 12


def test_bridge_never_extends_a_series_that_ended():
    pts = [(20, 1), (21, 1)]  # replica gone at ~21; the query runs until 60
    assert bridge_gaps(pts, 15, 1, end=60) == [(20, 1), (21, 1)]
    # ...but a series seen just before the query end may still be alive: carried to the end
    assert bridge_gaps([(50, 1)], 15, 1, end=53)[-1] == (53, 1)


def test_bridge_keeps_long_gaps_open():
    out = bridge_gaps([(0, 1), (40, 1)], 15, 1)
    assert out == [(0, 1), (40, 1)]


def test_counter_whole_run_and_after_warmup():
    # router counter born at 18 (value 8: increments between load start 16.5 and its first export)
    pts = [(18, 8), (20, 20), (22, 26), (40, 224), (50, 224)]
    old = [(t, 1.0) for t in range(0, 52, 2)]  # /v1/models: one request before the load, none during
    res = ScrapeResult({}, None, 0, True, {})
    _counter(res, "serve_requests", CATALOG["serve_requests"], [pts, old], Window(16.5, 21.5, 45), 50)
    st = res.stats["serve_requests"]
    assert st["total_run"] == 224  # born in the window: counted from zero (a born-grace rule would lose the 8)
    assert st["total"] == 224 - 20  # baseline: the value as of the stats start (last sample at or before it)
    assert increase_since([(0, 5), (1, 7), (2, 1), (3, 4)], 0) == 2 + 1 + 3  # reset


def test_gauge_with_hold_counts_replicas_continuously():
    a = [(t, 1.0) for t in (20, 21, 30, 31, 40, 41)]
    b = [(t, 1.0) for t in (25, 26, 35, 36)]  # second replica, truly gone after 36
    res = ScrapeResult({}, None, 0, True, {})
    _gauge(res, "replicas", CATALOG["replicas"], [a, b], Window(20, 20, 41), 60, 1.0)  # queried until 60
    st = res.stats["replicas"]
    assert st["max"] == 2 and st["min"] == 1 and st["last"] == 1


def test_bucket_around_and_quantile_agree():
    les = [1, 2, 5, 10, 20, 50]
    assert bucket_around(les, 7) == (5, 10)
    assert bucket_around(les, 1) == (0, 1)
    assert bucket_around(les, 99) == (50, math.inf)
    q = histogram_quantile(0.5, {1: 0, 2: 0, 5: 10, 10: 20, math.inf: 20})
    assert 2 <= q <= 5


def test_derived_counter_ratio_and_no_data():
    res = ScrapeResult(
        {},
        None,
        0,
        True,
        {"prefix_cache_hits": {"total": 30, "total_run": 40}, "prefix_cache_queries": {"total": 120, "total_run": 160}},
    )
    _derived(res, "prefix_cache_hit_rate", Window(0, 0, 1))
    assert res.stats["prefix_cache_hit_rate"] == {"value": 0.25, "value_run": 0.25}
    empty = ScrapeResult(
        {},
        None,
        0,
        True,
        {"prefix_cache_hits": {"total": 0, "total_run": 0}, "prefix_cache_queries": {"total": 0, "total_run": 0}},
    )
    _derived(empty, "prefix_cache_hit_rate", Window(0, 0, 1))
    assert "prefix_cache_hit_rate" not in empty.stats  # no queries: no data, not 0


def test_derived_gauge_ratio():
    res = ScrapeResult({}, None, 0, True, {"node_mem_used": {"max": 2}, "node_mem_total": {"max": 8}})
    res.rows = [{"signal": "node_mem_used", "t": t, "value": 2.0 * (1 + t)} for t in range(3)] + [
        {"signal": "node_mem_total", "t": t, "value": 8.0} for t in range(3)
    ]
    _derived(res, "node_mem_usage", Window(0, 0, 2))
    assert res.stats["node_mem_usage"]["max"] == 0.75 and res.stats["node_mem_usage"]["min"] == 0.25
