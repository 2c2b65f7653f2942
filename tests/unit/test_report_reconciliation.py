from harness.report.markdown import reconciliation_rows


def test_reconciliation_renders_as_rows():
    rows = reconciliation_rows(
        {
            "samples_vs_locust": {"samples": 10, "locust": 9, "diff": 1},
            "requests_whole_run_vs_serve_requests": {"client": 10, "server": 10.0, "diff": 0.0, "agree": True},
            "ttft_p95_ms": {
                "client": 228.36,
                "server": 239.76,
                "client_minus_server": -11.4,
                "bucket_ms": [100.0, 250.0],
                "agree": False,
            },
        }
    )
    assert rows[0] == ("samples vs Locust's count", "10", "9 (Locust)", "1", "**no**")
    assert rows[1] == ("requests whole run vs serve requests", "10", "10", "+0", "yes")
    assert rows[2] == ("TTFT p95 (ms)", "228.4", "239.8 (bucket 100–250 ms)", "-11.4", "**no**")
