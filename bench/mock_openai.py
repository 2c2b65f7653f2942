"""A low-latency OpenAI-compatible streaming mock for load-generator tests and benchmarks.

    python bench/mock_openai.py --port 0 --ttft-ms 20 --itl-ms 5      # prints "LISTENING http://127.0.0.1:<port>"

Serves POST /v1/chat/completions and /v1/completions (streamed SSE or not), GET /v1/models and /health.
Tokens are sent on an absolute schedule (t_recv + ttft + i*itl), so client-side gaps average exactly itl_ms;
each request's server-side send timestamps are recorded (GET /mock/records, POST /mock/reset) so a test
can compare what the client measured with what the server did. Binds to loopback by default.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class MockConfig:
    ttft_ms: float = 20.0  # time from request received to first content chunk
    itl_ms: float = 5.0  # time between content chunks
    tokens: int = 0  # chunks per answer; 0 → the request's max_tokens (else 16)
    error_rate: float = 0.0  # fraction answered with HTTP 500
    seed: int = 0
    record_tokens: bool = True  # keep every send timestamp (off for long benchmarks: memory)
    api_key: str | None = None  # when set, requests without `Authorization: Bearer <key>` get 401
    coalesce: int = 1  # tokens per SSE event: tokens stay on their per-token schedule, an event goes out with its last
    records: list[dict[str, Any]] = field(default_factory=list)


def _sse(obj: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


def make_app(cfg: MockConfig) -> web.Application:
    rng = random.Random(cfg.seed)
    seq = iter(range(1, 1 << 62))

    async def completions(request: web.Request) -> web.StreamResponse:
        t_recv = time.time()
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        if cfg.api_key is not None and request.headers.get("Authorization") != f"Bearer {cfg.api_key}":
            return web.json_response({"error": {"message": "bad api key", "code": 401}}, status=401)
        body = await request.json()
        rid = next(seq)
        chat = request.path.endswith("/chat/completions")
        n = cfg.tokens or int(body.get("max_tokens") or 16)
        prompt = body["messages"][-1]["content"] if chat else body.get("prompt", "")
        usage = {"prompt_tokens": len(str(prompt).split()), "completion_tokens": n, "total_tokens": 0}
        usage["total_tokens"] = usage["prompt_tokens"] + n
        if cfg.error_rate and rng.random() < cfg.error_rate:
            cfg.records.append({"id": rid, "t_recv": t_recv, "status": 500})
            return web.json_response({"error": {"message": "injected failure", "code": 500}}, status=500)
        model = body.get("model", "mock")
        head = {"id": f"cmpl-{rid}", "created": int(t_recv), "model": model}
        if not body.get("stream"):
            await asyncio.sleep(max(0.0, t0 + (cfg.ttft_ms + (n - 1) * cfg.itl_ms) / 1000 - loop.time()))
            text = " tok" * n
            choice = (
                {"index": 0, "message": {"role": "assistant", "content": text}} if chat else {"index": 0, "text": text}
            )
            cfg.records.append({"id": rid, "t_recv": t_recv, "status": 200, "n": n, "t_end": time.time()})
            return web.json_response(
                {
                    **head,
                    "object": "chat.completion" if chat else "text_completion",
                    "choices": [{**choice, "finish_reason": "length"}],
                    "usage": usage,
                }
            )
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await resp.prepare(request)
        obj = "chat.completion.chunk" if chat else "text_completion"
        if chat:  # like vLLM: an immediate role chunk with empty content (must not count as the first token)
            await resp.write(
                _sse({**head, "object": obj, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]})
            )
        # Pre-render the token chunk: the mock must stay cheap so the client is what gets measured.
        if chat:
            mid = _sse(
                {**head, "object": obj, "choices": [{"index": 0, "delta": {"content": " tok"}, "finish_reason": None}]}
            )
            last = _sse(
                {
                    **head,
                    "object": obj,
                    "choices": [{"index": 0, "delta": {"content": " tok"}, "finish_reason": "length"}],
                }
            )
        else:
            mid = _sse({**head, "object": obj, "choices": [{"index": 0, "text": " tok", "finish_reason": None}]})
            last = _sse({**head, "object": obj, "choices": [{"index": 0, "text": " tok", "finish_reason": "length"}]})
        sends: list[float] = []
        opts = body.get("stream_options") or {}
        k = max(1, cfg.coalesce)
        continuous = bool(opts.get("include_usage") and opts.get("continuous_usage_stats"))
        if k == 1 and not continuous:
            for i in range(n):
                delay = t0 + (cfg.ttft_ms + i * cfg.itl_ms) / 1000 - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                await resp.write(last if i == n - 1 else mid)
                if cfg.record_tokens or i == 0:
                    sends.append(time.time())
        else:  # events of k tokens (the last may be shorter), optionally with cumulative usage in each
            for i in range(0, n, k):
                j = min(i + k, n)  # tokens i..j-1, the event leaves when token j-1 is due
                delay = t0 + (cfg.ttft_ms + (j - 1) * cfg.itl_ms) / 1000 - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                c = {"index": 0, "finish_reason": "length" if j == n else None}
                c.update({"delta": {"content": " tok" * (j - i)}} if chat else {"text": " tok" * (j - i)})
                ev = {**head, "object": obj, "choices": [c]}
                if continuous:
                    ev["usage"] = {**usage, "completion_tokens": j, "total_tokens": usage["prompt_tokens"] + j}
                await resp.write(_sse(ev))
                if cfg.record_tokens or i == 0:
                    sends.append(time.time())
        if opts.get("include_usage"):
            await resp.write(_sse({**head, "object": obj, "choices": [], "usage": usage}))
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        cfg.records.append({"id": rid, "t_recv": t_recv, "status": 200, "n": n, "sends": sends, "tokens_per_event": k})
        return resp

    async def models(_: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "mock", "object": "model"}]})

    async def health(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def records(_: web.Request) -> web.Response:
        return web.json_response(cfg.records)

    async def reset(_: web.Request) -> web.Response:
        cfg.records.clear()
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", completions)
    app.router.add_post("/v1/completions", completions)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/health", health)
    app.router.add_get("/mock/records", records)
    app.router.add_post("/mock/reset", reset)
    return app


async def _serve(
    cfg: MockConfig, host: str, port: int, ready: threading.Event | None = None, box: list | None = None
) -> None:
    runner = web.AppRunner(make_app(cfg), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]  # port 0 → the real port
    url = f"http://{host}:{bound}"
    if box is not None:
        box.append(url)
    if ready is not None:
        ready.set()
    else:
        print(f"LISTENING {url}", flush=True)
    await asyncio.Event().wait()


def serve_in_thread(cfg: MockConfig, host: str = "127.0.0.1", port: int = 0) -> str:
    """Start the mock on a daemon thread (own event loop); returns its base URL. For in-process use."""
    ready, box = threading.Event(), []
    threading.Thread(target=lambda: asyncio.run(_serve(cfg, host, port, ready, box)), daemon=True).start()
    if not ready.wait(10):
        raise RuntimeError("mock server did not start")
    return box[0]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--ttft-ms", type=float, default=20.0)
    ap.add_argument("--itl-ms", type=float, default=5.0)
    ap.add_argument("--tokens", type=int, default=0, help="chunks per answer (0: the request's max_tokens)")
    ap.add_argument("--error-rate", type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--api-key", default=None, help="require this Bearer token")
    ap.add_argument("--no-record-tokens", action="store_true", help="keep only the first send time per request")
    ap.add_argument("--coalesce", type=int, default=1, help="tokens per SSE event (each on its per-token schedule)")
    a = ap.parse_args(argv)
    cfg = MockConfig(
        ttft_ms=a.ttft_ms,
        itl_ms=a.itl_ms,
        tokens=a.tokens,
        error_rate=a.error_rate,
        seed=a.seed,
        record_tokens=not a.no_record_tokens,
        api_key=a.api_key,
        coalesce=a.coalesce,
    )
    try:
        asyncio.run(_serve(cfg, a.host, a.port))
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
