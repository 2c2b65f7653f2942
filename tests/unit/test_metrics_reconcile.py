"""Client/server reconciliation: whole-run counts, and TTFT judged against the bucket around the client value."""

from harness.record.summary import reconcile

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


def test_ttft_within_bucket_agrees():
    server = {"server_ttft": {"p50": 45.0, "p90": 85.0, "p95": 88.0, "p99": 99.0}}
    rec, warn = reconcile(_client(52.0, 92.0), server, None, None, HIST)
    assert rec["ttft_p50_ms"]["bucket_ms"] == [40, 60] and rec["ttft_p50_ms"]["agree"]
    assert not warn


def test_ttft_beyond_bucket_warns_with_explanation():
    server = {"server_ttft": {"p50": 136.0, "p90": 290.0, "p95": 1190.9, "p99": 2238.0}}
    rec, warn = reconcile(_client(246.5, 2540.1), server, None, None, HIST)
    assert rec["ttft_p50_ms"]["agree"] is True  # 246.5 lies in 100-250: a 110 ms gap is within that bucket
    assert rec["ttft_p95_ms"]["agree"] is False  # 2540 is past the last finite bound: unresolvable
    assert len(warn) == 1 and "p95 2540.1 vs 1190.9" in warn[0] and "proxy" in warn[0]


def test_ttft_without_buckets_still_shows_the_difference():
    rec, warn = reconcile(_client(50, 90), {"server_ttft": {"p50": 40.0}}, None, None, None)
    assert rec["ttft_p50_ms"]["client_minus_server"] == 10 and "agree" not in rec["ttft_p50_ms"] and not warn
