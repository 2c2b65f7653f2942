"""Prefix-cache reset between sweep steps and repeats, where the engine supports it (recorded as run.json
`cache_reset`, see harness/record/schema.py CacheReset).

- sim: `SimLLM.reset_prefix_cache` (serve_apps/sim/app.py). One replica: POST /reset_prefix_cache on the
  endpoint (the only replica answers). Several replicas: a Serve handle broadcast (below).
- vllm (Ray Serve LLM): `LLMServer.reset_prefix_cache` → vLLM's engine `reset_prefix_cache()`, on every replica
  of each engine deployment through `ray.llm`'s handle broadcast (`ray.llm._internal.serve.utils.broadcast`,
  the call Ray's DevIngress makes for its own /reset_prefix_cache route; `build_openai_app` has no such route).
- external: POST <url>/reset_prefix_cache with {"model": ...}: the route of vLLM's dev mode
  (VLLM_SERVER_DEV_MODE=1) and of Ray's DevIngress. Whatever answers is recorded; only HTTP 200 counts as done.
"""

from __future__ import annotations

import json
import time

from harness.record.schema import CacheReset
from harness.scenario import Target
from harness.stack.net import http_post_json


def reset_prefix_cache(target: Target, base_url: str, app_name: str | None, engine_deployments: list[str]) -> dict:
    t0 = time.monotonic()
    try:
        if target.engine == "external" or (target.engine == "sim" and target.autoscaling.max_replicas == 1):
            res = _http(base_url, target.model, headers=_headers(target))
        else:
            res = _broadcast(app_name, engine_deployments or ["SimLLM"])
    except Exception as e:  # noqa: BLE001 — a failed reset is recorded, never fails the run
        res = CacheReset(attempted=True, done=False, detail=f"{e.__class__.__name__}: {e}"[:500])
    res.at, res.duration_s = time.time(), round(time.monotonic() - t0, 3)
    return res.model_dump(mode="json")


def not_attempted(why: str) -> dict:
    return CacheReset(attempted=False, detail=why).model_dump(mode="json")


def _headers(target: Target) -> dict:
    from harness.deploy import api_headers

    return api_headers(target)


def _http(base_url: str, model: str, headers: dict) -> CacheReset:
    status, body = http_post_json(f"{base_url}/reset_prefix_cache", {"model": model}, headers=headers)
    text = body[:300].decode(errors="replace")
    return CacheReset(
        attempted=True,
        done=status == 200,
        method="http",
        replicas=1 if status == 200 else None,
        detail=f"POST /reset_prefix_cache: HTTP {status} {text}".strip(),
    )


def _broadcast(app_name: str | None, deployments: list[str]) -> CacheReset:
    from ray import serve
    from ray.llm._internal.serve.utils.broadcast import broadcast

    answers, n = [], 0
    for name in deployments:
        results = broadcast(serve.get_deployment_handle(name, app_name=app_name), "reset_prefix_cache")
        n += len(results)
        answers += [json.dumps(r, default=str) if r is not None else "ok" for r in results]
    return CacheReset(
        attempted=True,
        done=n > 0,
        method="serve_handle_broadcast",
        replicas=n,
        detail=(f"{', '.join(deployments)}: " + "; ".join(answers))[:500] if n else "no running replica reached",
    )
