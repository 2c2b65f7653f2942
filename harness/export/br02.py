"""llm-d's Benchmark Report v0.2 from a run's record: a pure function of run.json + summary.json.

Field names, required keys and unit categories follow the published schema (llm-d-benchmark,
`llmdbenchmark/analysis/benchmark_report/br_v0_2_json_schema.json` and `schema_v0_2.py`). What the harness does not
measure is left out rather than guessed: the schema makes nearly everything optional.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from typing import Any

from harness.record.schema import DistStats, RunRecord, ServerStat, Summary

VERSION = "0.2"
TOOL = "harness"

# DistStats key → Statistics key (the report spells p99.9 as p99p9)
_STATS = {"p50": "p50", "p90": "p90", "p95": "p95", "p99": "p99", "p99.9": "p99p9", "min": "min", "max": "max"}


def _cfg_id(obj: Any) -> str:
    """A configuration's hash, as the report's `cfg_id` asks: equal settings give equal ids across runs."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _iso(t: float | None) -> str | None:
    return dt.datetime.fromtimestamp(t, tz=dt.UTC).isoformat() if t is not None else None


def _iso_duration(s: float) -> str:
    return f"PT{s:.3f}S"


def _stats(d: DistStats | ServerStat | None, units: str) -> dict[str, Any] | None:
    """A distribution as `Statistics` (units + mean required); None without a mean."""
    if d is None:
        return None
    raw = d.model_dump(by_alias=True)
    if raw.get("mean") is None:
        return None
    out: dict[str, Any] = {"units": units, "mean": raw["mean"]}
    out.update({dst: raw[src] for src, dst in _STATS.items() if raw.get(src) is not None})
    return out


def _scalar(v: float | None, units: str) -> dict[str, Any] | None:
    return {"units": units, "mean": v} if v is not None else None


def _seq_len(dist: dict[str, Any] | None) -> dict[str, Any] | None:
    if not dist or dist.get("mean") is None:
        return None
    out: dict[str, Any] = {"distribution": "gaussian" if dist.get("stddev") else "fixed", "value": dist["mean"]}
    if dist.get("stddev"):
        out["std_dev"] = dist["stddev"]
    if dist.get("min") is not None:
        out["min"] = int(dist["min"])
    if dist.get("max") is not None:
        out["max"] = int(dist["max"])
    return out


def _drop_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


def _engine_component(run: RunRecord, summary: Summary | None) -> dict[str, Any]:
    sc, env = run.scenario, run.environment
    target = sc.get("target") or {}
    engine = target.get("engine") or "unknown"
    vllm = target.get("vllm") or {}
    placement = target.get("placement") or {}
    tp = int(vllm.get("tensor_parallel_size") or placement.get("tensor_parallel_size") or 1)
    pp = int(vllm.get("pipeline_parallel_size") or placement.get("pipeline_parallel_size") or 1)
    device = vllm.get("device") or placement.get("device") or ("cpu" if engine == "sim" else "gpu")
    accel = vllm.get("accelerator_type") or placement.get("accelerator_type")
    cluster = env.get("cluster") or {}
    if not accel and cluster.get("accelerators"):
        accel = next(iter(cluster["accelerators"]))
    replicas = None
    if summary is not None and (rep := summary.server.get("replicas")) is not None and rep.max is not None:
        replicas = int(rep.max)
    if replicas is None:
        replicas = int((target.get("autoscaling") or {}).get("min_replicas") or 1)
    tool_version = {"vllm": env.get("vllm"), "sim": run.harness_version}.get(engine) or "unknown"
    per_replica = tp * pp if device == "gpu" else 0
    return {
        "metadata": {
            "label": f"{engine}-engine",
            "cfg_id": _cfg_id(target),
            "description": f"target.engine {engine} served on Ray Serve {env.get('ray') or ''}".strip(),
        },
        "standardized": {
            "kind": "inference_engine",
            "tool": engine if engine != "sim" else "harness-sim",
            "tool_version": str(tool_version),
            "role": "replica",
            "replicas": replicas,
            "model": {"name": target.get("model") or (run.deployment.get("model") or "unknown")},
            "accelerator": {
                "model": accel or ("cpu" if device == "cpu" else "unknown"),
                "count": per_replica * replicas,
                "parallelism": {"tp": tp, "pp": pp},
            },
        },
        "native": {"config": target},
    }


def _ray_component(run: RunRecord) -> dict[str, Any]:
    env = run.environment
    return {
        "metadata": {"label": "ray-serve", "cfg_id": _cfg_id({"ray": env.get("ray"), "stack": run.stack.get("local")})},
        "standardized": {"kind": "generic", "tool": "ray-serve", "tool_version": str(env.get("ray") or "unknown")},
        "native": {"config": {"local_stack": run.stack.get("local"), "cluster": env.get("cluster")}},
    }


def _load(run: RunRecord) -> dict[str, Any]:
    sc = run.scenario
    wl, load = sc.get("workload") or {}, sc.get("load") or {}
    stages = load.get("stages") or []
    arrival = load.get("arrival") or {}
    rates = [s.get("rate_rps") for s in stages if s.get("rate_rps")] + (
        [arrival["rate_rps"]] if arrival.get("rate_rps") else []
    )
    users = [s.get("users") for s in stages if s.get("users")]
    source = "sampled" if wl.get("dataset") or wl.get("trace") else "random"
    std = _drop_none(
        {
            "tool": TOOL,
            "tool_version": str(run.harness_version or "unknown"),
            "parallelism": max(1, int(load.get("workers") or 0)),
            "source": source,
            "input_seq_len": _seq_len(wl.get("prompt_tokens")) or {"distribution": "other", "value": 0},
            "output_seq_len": _seq_len(wl.get("output_tokens")),
            "rate_qps": max(rates) if rates else None,
            "concurrency": None if rates else (max(users) if users else None),
        }
    )
    return {
        "metadata": {"cfg_id": _cfg_id({"workload": wl, "load": load}), "description": sc.get("description") or None},
        "standardized": std,
        "native": {"config": {"workload": wl, "load": load}},
    }


def _request_performance(summary: Summary) -> dict[str, Any]:
    c = summary.client
    ok = (c.requests or 0) - (c.errors or 0)
    requests = _drop_none(
        {
            "total": int(c.requests or 0),
            "failures": c.errors,
            "output_length": _scalar(c.output_tokens / ok, "count") if c.output_tokens is not None and ok > 0 else None,
        }
    )
    latency = _drop_none(
        {
            "time_to_first_token": _stats(c.ttft_ms, "ms"),
            "time_per_output_token": _stats(c.tpot_ms, "ms/token"),
            "inter_token_latency": _stats(c.itl_ms, "ms/token"),
            "request_latency": _stats(c.e2e_ms, "ms"),
        }
    )
    prompt = summary.server.get("prompt_tokens")
    throughput = _drop_none(
        {
            "output_token_rate": _scalar(c.output_tokens_per_s, "tokens/s"),
            "input_token_rate": _scalar(prompt.rate if prompt else None, "tokens/s"),
            "request_rate": _scalar(c.requests_per_s, "queries/s"),
        }
    )
    return {
        "aggregate": _drop_none({"requests": requests, "latency": latency or None, "throughput": throughput or None})
    }


def _observability(summary: Summary, label: str) -> dict[str, Any] | None:
    s = summary.server
    metrics = _drop_none(
        {
            "kv_cache_usage": _stats(s.get("kv_cache_usage"), "fraction"),
            "running_requests": _stats(s.get("requests_running"), "count"),
            "waiting_requests": _stats(s.get("queue_waiting"), "count"),
        }
    )
    return {"components": [{"component_label": label, "aggregate": metrics}]} if metrics else None


def to_br02(run: RunRecord, summary: Summary | None) -> dict[str, Any]:
    """The Benchmark Report v0.2 document of a run (a dict ready for json/yaml)."""
    tl = run.timeline
    start, end = tl.load_started_at or tl.created_at, tl.load_ended_at or tl.finished_at
    time = _drop_none(
        {
            "start": _iso(start),
            "end": _iso(end),
            "duration": _iso_duration(end - start) if start is not None and end is not None else None,
        }
    )
    keywords = [f"{k}={v}" for k, v in sorted(run.labels.items())]
    engine = _engine_component(run, summary)
    results: dict[str, Any] = {}
    if summary is not None:
        results["request_performance"] = _request_performance(summary)
        if (obs := _observability(summary, engine["metadata"]["label"])) is not None:
            results["observability"] = obs
    return {
        "version": VERSION,
        "run": _drop_none(
            {
                "uid": run.run_id,
                "eid": run.repeat.group_id if run.repeat else None,
                "pid": (f"{run.owner.host}:{run.owner.pid}" if run.owner.host else None),
                "time": time or None,
                "description": (run.scenario.get("description") or run.scenario.get("name") or None),
                "keywords": keywords or None,
            }
        ),
        "scenario": {"stack": [engine, _ray_component(run)], "load": _load(run)},
        "results": results,
    }
