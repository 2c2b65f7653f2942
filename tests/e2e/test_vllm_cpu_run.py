"""Real vLLM (CPU build) end to end through the CLI: `harness run scenarios/vllm-cpu-smoke.yaml`.

The session's shared Ray + Prometheus on loopback (tests/conftest.py `vllm_smoke_run`: the one vLLM start of the
session, whose app tests/integration/test_vllm_cpu.py then talks to), the tiny Llama built on first use (in a tmp
HARNESS_MODEL_DIR, so the "built on first use" path runs every time: ~10 s), Ray Serve LLM app, ~25 s of streamed
chat load, scrape, verdict. Server signals must come from vLLM through Ray's discovered targets (`ray_vllm_*`).
The measured numbers (deploy time, client vs server TTFT/ITL) are printed and attached as JUnit properties;
nothing here is a timed assertion. Typical time on a 2-core box: 2-3 min (most of it vLLM's startup).
"""

from __future__ import annotations

import json

import pytest

# the session's one vLLM start (tests/conftest.py `vllm_smoke_run`: shared stack, model build, deploy, 25 s load) is
# timed against the first test that asks for it
pytestmark = [pytest.mark.integration, pytest.mark.vllm, pytest.mark.timeout(1500)]

try:  # a broken vLLM install (e.g. CUDA torchvision present) fails with errors other than ImportError
    import ray.serve.llm  # noqa: F401
    import vllm  # noqa: F401
except Exception as e:  # noqa: BLE001
    pytest.skip(
        f"vLLM CPU path unavailable ({type(e).__name__}: {str(e)[:200]}); run bash .ci/install-vllm-cpu.sh",
        allow_module_level=True,
    )


def test_vllm_cpu_smoke_passes_with_ray_vllm_server_signals(vllm_smoke_run, record_property):
    r, results, model_dir = vllm_smoke_run["proc"], vllm_smoke_run["results"], vllm_smoke_run["model_dir"]
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    (run_dir,) = [d for d in results.iterdir() if d.is_dir()]
    summary = json.loads((run_dir / "summary.json").read_text())
    run = json.loads((run_dir / "run.json").read_text())
    assert summary["verdict"] == "pass" and run["status"] == "completed"

    # server signals: real vLLM series through Ray's metrics agent, with data
    series, server = summary["server_series"], summary["server"]
    for sig in ("kv_cache_usage", "requests_running", "queue_waiting", "server_ttft"):
        assert (series.get(sig) or "").startswith("ray_vllm_"), (sig, series.get(sig))
    assert server["kv_cache_usage"]["samples"] > 0 and server["kv_cache_usage"]["max"] > 0
    assert server["requests_running"]["max"] >= 1
    assert server["server_ttft"]["count"] > 0
    sent = run["load"]["requests"]  # vLLM finished (about) every request the client sent
    assert abs(server["engine_requests"]["total_run"] - sent) <= max(2, 0.02 * sent), (server["engine_requests"], sent)
    assert summary["client"]["errors"] == 0
    # Serve signals count the engine deployment only (the app also has an OpenAI ingress deployment)
    engines = run["deployment"]["engine_deployments"]
    assert engines and all(e.startswith("LLMServer") for e in engines), engines
    assert server["replicas"]["max"] == 1
    assert abs(server["serve_requests"]["total_run"] - sent) <= max(2, 0.02 * sent), (server["serve_requests"], sent)

    # provenance: vLLM version, placement, stream batching, the model built on first use
    details = run["deployment"]["details"]
    assert details["vllm"]["distribution"] in ("vllm-cpu", "vllm") and details["vllm"]["version"]
    assert run["environment"]["vllm"] == details["vllm"]["version"]
    assert details["placement"]["device"] == "cpu" and details["placement"]["bundles"] == [{"CPU": 1}]
    assert details["stream_batching"]["interval_ms"] == 0
    assert details["llm_config"]["experimental_configs"] == {"stream_batching_interval_ms": 0}
    assert details["llm_config"]["model_loading_config"]["model_source"] == str(model_dir)
    assert details["tiny_model"]["spec"]["hidden_size"] == 128

    # every TTFT quantile's client/server gap is judged one-sided against the server bucket, causes named
    rec = summary["reconciliation"]
    for q in ("p50", "p90", "p95", "p99"):
        e = rec[f"ttft_{q}_ms"]
        assert e["judgement"] in ("within_resolution", "client_slower", "client_faster"), e
        assert e["judgement"] != "client_faster", e  # the engine never sees more latency than the client
        if e["judgement"] == "client_slower":
            assert e["likely_causes"]
    assert "TTFT p50" in (run_dir / "report.md").read_text()
    # server quantiles carry their bucket; vLLM got the finer buckets through Ray Serve LLM's engine_kwargs
    res = summary["server_resolution"]
    lo, hi = res["server_itl"]["quantile_buckets_ms"]["p50"]
    assert hi is not None and hi - lo < 10.0, (lo, hi)  # vLLM's default lowest ITL bucket alone is 0-10 ms
    assert "midpoint" in res["server_ttft"]["mean_note"]
    assert details["llm_config"]["engine_kwargs"]["custom_histogram_buckets"]["inter_token_latency"][0] == 0.001

    c, s = summary["client"], server
    numbers = {
        "deploy_s": run["stage_durations_s"]["deploy_s"],
        "load_s": run["stage_durations_s"]["load_s"],
        "requests": c["requests"],
        "output_tokens_per_s": round(c["output_tokens_per_s"], 1),
        "client_ttft_p50_ms": round(c["ttft_ms"]["p50"], 1),
        "server_ttft_p50_ms": round(s["server_ttft"]["p50"], 1),
        "client_ttft_p95_ms": round(c["ttft_ms"]["p95"], 1),
        "server_ttft_p95_ms": round(s["server_ttft"]["p95"], 1),
        "client_itl_p50_ms": round(c["itl_ms"]["p50"], 3),
        "server_itl_p50_ms": round(s["server_itl"]["p50"], 2),
        "kv_cache_usage_max": s["kv_cache_usage"]["max"],
    }
    numbers["ttft_judgements"] = {q: rec[f"ttft_{q}_ms"]["judgement"] for q in ("p50", "p90", "p95", "p99")}
    numbers["server_itl_p50_bucket_ms"] = [lo, hi]
    print("\nvLLM CPU run:", json.dumps(numbers))
    print("reconciliation:", json.dumps(rec))
    for k, v in numbers.items():
        record_property(k, v)
