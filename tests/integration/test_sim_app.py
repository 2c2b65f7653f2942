"""The sim Serve app on a real in-process Ray (loopback only): OpenAI routes, SSE, errors, Ray metrics."""

from __future__ import annotations

import json
import os
import random
import re
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
REFERENCE = REPO / "tests" / "fixtures" / "ray-2.60_vllm-0.32_engine-metrics-via-ray.prom"  # copy of shared/reference
MODEL = "sim-test"
SIM = {
    "ttft_ms": 30,
    "prefill_ms_per_token": 0.0,
    "itl_ms": 10,
    "itl_ms_per_seq": 0.0,
    "jitter_frac": 0.0,
    "max_num_seqs": 8,
    "kv_blocks": 64,
    "block_size": 16,
}


def _free_port(lo: int = 20000, hi: int = 60000) -> int:
    # above Ray's worker port range (10002-19999): Ray refuses a metrics port inside it
    for _ in range(200):
        port = random.randint(lo, hi)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    raise RuntimeError("no free port")


@pytest.fixture(scope="module")
def cluster():
    # must be set before Ray starts: single-node loopback cluster, 1 s metric export
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    os.environ["RAY_metrics_report_interval_ms"] = "1000"
    import ray
    from ray import serve

    from serve_apps.sim.app import build_app

    metrics_port, http_port = _free_port(), _free_port()
    ray.init(
        num_cpus=4,
        include_dashboard=False,
        _metrics_export_port=metrics_port,
        runtime_env={"env_vars": {"PYTHONPATH": str(REPO)}},
    )
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": http_port})
        serve.run(
            build_app(
                {"model": MODEL, "sim": SIM, "autoscaling": {"min_replicas": 1, "max_replicas": 1}, "replica_cpus": 0.5}
            ),
            name="sim",
            route_prefix="/",
        )
        serve.run(build_app({"model": MODEL, "sim": {**SIM, "error_rate": 1.0}}), name="sim-err", route_prefix="/err")
        yield {"base": f"http://127.0.0.1:{http_port}", "metrics": f"http://127.0.0.1:{metrics_port}/metrics"}
    finally:
        try:
            serve.shutdown()
        finally:
            ray.shutdown()


def _post(url: str, body: dict, timeout: float = 30):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    return urllib.request.urlopen(req, timeout=timeout)


def _sse(url: str, body: dict) -> tuple[list[dict | str], list[float], float]:
    """Returns parsed events ('[DONE]' kept as a string), each event's arrival time, and the send time."""
    events, times = [], []
    t0 = time.perf_counter()
    with _post(url, body) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        deadline = time.monotonic() + 30
        buf = b""
        while time.monotonic() < deadline:
            line = resp.readline()
            if not line:
                break
            buf += line
            if line == b"\n":  # blank line ends one event
                text = buf.decode().strip()
                buf = b""
                assert text.startswith("data: "), text
                payload = text[len("data: ") :]
                events.append(payload if payload == "[DONE]" else json.loads(payload))
                times.append(time.perf_counter())
        assert buf == b"", f"trailing bytes without event terminator: {buf!r}"
    return events, times, t0


def test_models_and_health(cluster):
    with urllib.request.urlopen(cluster["base"] + "/health", timeout=10) as r:
        assert r.status == 200
    with urllib.request.urlopen(cluster["base"] + "/v1/models", timeout=10) as r:
        data = json.load(r)
    assert [m["id"] for m in data["data"]] == [MODEL]


def test_stream_chat_with_usage(cluster):
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "x" * 400}],
        "max_tokens": 12,
        "stream": True,
        "stream_options": {"include_usage": True},
        "ignore_eos": True,
    }
    events, times, t0 = _sse(cluster["base"] + "/v1/chat/completions", body)
    assert events[-1] == "[DONE]"
    usage = events[-2]
    assert usage["choices"] == [] and usage["usage"] == {
        "prompt_tokens": 100,
        "completion_tokens": 12,
        "total_tokens": 112,
    }
    chunks = events[:-2]
    assert len(chunks) == 12
    assert all(c["object"] == "chat.completion.chunk" and c["model"] == MODEL for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert all(c["choices"][0]["delta"]["content"] for c in chunks)
    assert [c["choices"][0]["finish_reason"] for c in chunks] == [None] * 11 + ["length"]
    assert len({c["id"] for c in chunks}) == 1
    # tokens arrive as produced: TTFT >= 30 ms, and the stream is spread over ~11 x 10 ms of decoding
    assert times[0] - t0 >= 0.029
    assert times[11] - times[0] >= 0.09


@pytest.mark.exclusive  # the engine's own TTFT against its configured 30 ms: a starved event loop steps late
def test_stream_completion_and_ground_truth(cluster):
    body = {"model": MODEL, "prompt": "hello world " * 10, "max_tokens": 5, "stream": True}
    events, _, _ = _sse(cluster["base"] + "/v1/completions", body)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]  # no usage chunk unless asked
    assert len(chunks) == 5 and all(c["object"] == "text_completion" for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    rid = chunks[0]["id"].removeprefix("cmpl-")
    with urllib.request.urlopen(cluster["base"] + "/sim/requests?limit=50", timeout=10) as r:
        truth = {x["request_id"]: x for x in json.load(r)["requests"]}
    rec = truth[rid]
    assert rec["output_tokens"] == 5 and rec["prompt_tokens"] == 30 and len(rec["token_times"]) == 5
    assert rec["ttft_s"] == pytest.approx(0.030, abs=0.02)
    assert abs(rec["arrival"] - time.time()) < 60  # Unix times


def test_non_streaming(cluster):
    with _post(cluster["base"] + "/v1/completions", {"model": MODEL, "prompt": [1, 2, 3], "max_tokens": 3}) as r:
        data = json.load(r)
    assert data["object"] == "text_completion"
    assert data["usage"] == {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6}
    assert len(data["choices"][0]["text"]) == 12
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    with _post(cluster["base"] + "/v1/chat/completions", body) as r:
        data = json.load(r)
    assert data["choices"][0]["message"]["role"] == "assistant"
    assert data["usage"]["completion_tokens"] == 2


@pytest.mark.parametrize(
    "path,body,status",
    [
        ("/v1/completions", {"model": "nope", "prompt": "x"}, 404),
        ("/v1/completions", {"model": MODEL, "prompt": "x", "max_tokens": -1}, 400),
        ("/v1/chat/completions", {"model": MODEL, "messages": []}, 400),
        ("/v1/completions", {"model": MODEL, "prompt": "x", "max_tokens": 5000}, 400),  # beyond the KV cache
        (
            "/err/v1/chat/completions",
            {"model": MODEL, "messages": [{"role": "user", "content": "x"}], "stream": True},
            500,
        ),
    ],
)
def test_openai_style_errors(cluster, path, body, status):
    with pytest.raises(urllib.error.HTTPError) as ei:
        _post(cluster["base"] + path, body)
    assert ei.value.code == status
    err = json.load(ei.value)["error"]
    assert err["code"] == status and err["message"] and err["type"]


def _scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.read().decode()


def _buckets(text: str, name: str) -> list[str]:
    les = re.findall(rf'^{name}_bucket{{[^}}]*le="([^"]+)"', text, re.M)
    return list(dict.fromkeys(les))


def test_engine_metrics_reach_prometheus_with_vllm_names(cluster):
    want = [
        "ray_vllm_num_requests_running",
        "ray_vllm_num_requests_waiting",
        "ray_vllm_kv_cache_usage_perc",
        "ray_vllm_time_to_first_token_seconds_bucket",
        "ray_vllm_inter_token_latency_seconds_bucket",
        "ray_vllm_e2e_request_latency_seconds_bucket",
        "ray_vllm_request_queue_time_seconds_bucket",
        "ray_vllm_prompt_tokens_total",
        "ray_vllm_generation_tokens_total",
        "ray_vllm_request_success_total",
    ]
    # make sure there was traffic on the main app, then wait (bounded) for Ray's export
    _post(cluster["base"] + "/v1/completions", {"model": MODEL, "prompt": "x", "max_tokens": 3}).read()
    text, deadline = "", time.monotonic() + 45
    while time.monotonic() < deadline:
        text = _scrape(cluster["metrics"])
        if all(re.search(rf"^{n}{{", text, re.M) for n in want):
            break
        time.sleep(1)
    missing = [n for n in want if not re.search(rf"^{n}{{", text, re.M)]
    assert not missing, missing
    # gauges of an idle engine stay exported (Ray drops gauges that are not refreshed)
    time.sleep(4)
    idle = _scrape(cluster["metrics"])
    for g in want[:3]:
        assert re.search(rf"^{g}{{[^}}]*}} 0(\.0)?$", idle, re.M), g
    for line in re.findall(r"^ray_vllm_\w+{.*", text, re.M):
        assert f'model_name="{MODEL}"' in line and 'engine="0"' in line and "ReplicaId=" in line, line
    assert re.search(r'^ray_vllm_request_success_total{[^}]*finished_reason="length"', text, re.M)
    assert re.search(r"^# TYPE ray_vllm_prompt_tokens_total counter", text, re.M)
    assert re.search(r"^# TYPE ray_vllm_time_to_first_token_seconds histogram", text, re.M)
    if REFERENCE.exists():  # same bucket boundaries as real vLLM through Ray
        ref = REFERENCE.read_text()
        for h in [
            "time_to_first_token_seconds",
            "inter_token_latency_seconds",
            "e2e_request_latency_seconds",
            "request_queue_time_seconds",
            "request_time_per_output_token_seconds",
        ]:
            ours, theirs = _buckets(text, f"ray_vllm_{h}"), _buckets(ref, f"ray_vllm_{h}")
            assert [float(x) for x in ours] == [float(x) for x in theirs], h
