"""Numbers against the bench mock's known timing (real Locust, loopback): coordinated omission in open loop, and
per-token ITL when the server puts several tokens in one SSE event."""

from __future__ import annotations

import pandas as pd
import pytest

from harness.load.runner import run_load
from harness.metrics.scrape import Window
from harness.record.schema import ClientStats
from harness.run.evaluate import evaluate_run, stream_warnings
from harness.scenario import parse_scenario
from harness.slo.evaluate import client_stats

pytestmark = [pytest.mark.integration, pytest.mark.exclusive, pytest.mark.timeout(300)]


def _verdicts(sc, res):
    samples = pd.read_parquet(res.samples_path)
    client = client_stats(samples, res.stats_end - res.warmup_end)
    window = Window(res.started_at, res.warmup_end, res.stats_end)
    verdicts = evaluate_run(sc, samples, None, ClientStats.model_validate(client), {}, {}, window).verdicts
    return samples, client, {v.slo: v for v in verdicts}


def test_open_loop_overload_fails_latency_and_goodput(mock_server, tmp_path):
    """~4 req/s of capacity (cap 1, 250 ms per request) against 12 arrivals/s: from the send every request looks
    fine (TTFT ~100 ms); from the schedule the queue behind the cap shows, and the arrivals never sent fail."""
    url = mock_server("--ttft-ms", "100", "--itl-ms", "10", "--tokens", "16")
    sc = parse_scenario(
        {
            "name": "overload",
            "target": {"engine": "external", "model": "mock", "url": url},
            "workload": {"prompt_tokens": {"mean": 20}, "output_tokens": {"mean": 16}, "request_timeout_s": 5},
            "load": {
                "warmup_s": 0,
                "stages": [{"duration_s": 4, "rate_rps": 12}],
                "arrival": {"process": "constant", "max_concurrency": 1},
            },
            "goodput": {"ttft_ms": 500},
            "slos": [
                "ttft.p95 <= 500ms",
                "goodput.attainment >= 0.9",
                "error_rate <= 1%",
                "dropped_arrivals.total == 0",
            ],
        }
    )
    res = run_load(sc, url, tmp_path)
    samples, client, v = _verdicts(sc, res)
    assert res.requests == res.locust_requests  # dropped arrivals are samples and Locust events too
    assert client["latency_from"] == "scheduled arrival"
    assert client["ttft_from_send_ms"]["p95"] < 300  # what the old numbers said: a pass
    assert client["ttft_ms"]["p95"] > 1000
    assert client["dropped_arrivals"] > 10 and client["errors_by_class"]["dropped"] == client["dropped_arrivals"]
    for slo in ("ttft.p95 <= 500ms", "goodput.attainment >= 0.9", "error_rate <= 1%", "dropped_arrivals.total == 0"):
        assert not v[slo].passed, (slo, v[slo])
    assert client["error_rate"] == pytest.approx(client["dropped_arrivals"] / client["requests"])
    assert any("lateness p99" in w and "max_concurrency" in w for w in res.warnings), res.warnings


def test_per_token_itl_against_coalesced_events(mock_server, tmp_path):
    """4 tokens per event every 40 ms (10 ms per token): per-token ITL is ~10 ms, the inter-chunk gap ~40 ms."""
    url = mock_server("--ttft-ms", "20", "--itl-ms", "10", "--tokens", "16", "--coalesce", "4")
    out = {}
    for cont in (True, False):
        sc = parse_scenario(
            {
                "name": "coalesced",
                "target": {"engine": "external", "model": "mock", "url": url},
                "workload": {
                    "prompt_tokens": {"mean": 20},
                    "output_tokens": {"mean": 16},
                    "request_timeout_s": 5,
                    "continuous_usage_stats": cont,
                },
                "load": {"warmup_s": 0, "stages": [{"duration_s": 3, "users": 2, "spawn_rate": 10}]},
            }
        )
        res = run_load(sc, url, tmp_path / str(cont))
        out[cont] = _verdicts(sc, res)[1]
    c = out[True]
    assert c["itl_ms"]["p50"] == pytest.approx(10.0, abs=1.5) and c["chunk_gap_ms"]["p50"] == pytest.approx(40.0, abs=3)
    assert c["stream_bunching"]["token_count_source"] == "usage" and c["stream_bunching"]["bunched"]
    assert "itl is per token" in stream_warnings(ClientStats.model_validate(c))[0]
    # without token counts (and no tokenizer for `mock`): one token per event, ITL is the chunk gap
    assert out[False]["itl_ms"]["p50"] == pytest.approx(40.0, abs=3)
