"""Reference client for the benchmarks: plain aiohttp, N concurrent closed-loop streams, per-token timestamps.

    python bench/ref_aiohttp.py URL --concurrency 64 --duration-s 8 --tokens 64

Prints one JSON line: requests, errors, its own CPU seconds during the load (after imports and warm-up of
the event loop), TTFT per request and every inter-token gap in ms. Does what the harness's Locust user does per
chunk (a timestamp and a content check), so CPU per request is comparable.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import time

import aiohttp


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def _worker(session: aiohttp.ClientSession, url: str, body: bytes, deadline: float, out: dict) -> None:
    perf = time.perf_counter
    while perf() < deadline:
        p0 = perf()
        times: list[float] = []
        try:
            async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as resp:
                if resp.status != 200:
                    await resp.read()
                    out["errors"] += 1
                    continue
                async for line in resp.content:
                    if line.startswith(b"data:") and b'"content":"' in line and b'"content":""' not in line:
                        times.append(perf())
        except aiohttp.ClientError:
            out["errors"] += 1
            continue
        if times:
            out["ttft_ms"].append((times[0] - p0) * 1000.0)
            out["itl_ms"].extend((b - a) * 1000.0 for a, b in zip(times, times[1:]))
        out["requests"] += 1


async def main_async(a: argparse.Namespace) -> dict:
    body = json.dumps(
        {
            "model": "mock",
            "messages": [{"role": "user", "content": "hello " * 32}],
            "max_tokens": a.tokens,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
    ).encode()
    url = a.url.rstrip("/") + "/v1/chat/completions"
    out: dict = {"requests": 0, "errors": 0, "ttft_ms": [], "itl_ms": []}
    conn = aiohttp.TCPConnector(limit=a.concurrency)
    async with aiohttp.ClientSession(connector=conn, timeout=aiohttp.ClientTimeout(total=60)) as s:
        c0, t0 = _cpu(), time.perf_counter()
        deadline = t0 + a.duration_s
        await asyncio.gather(*(_worker(s, url, body, deadline, out) for _ in range(a.concurrency)))
        out["cpu_s"] = _cpu() - c0
        out["wall_s"] = time.perf_counter() - t0
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--duration-s", type=float, default=8.0)
    ap.add_argument("--tokens", type=int, default=64)
    a = ap.parse_args()
    print(json.dumps(asyncio.run(main_async(a))))


if __name__ == "__main__":
    main()
