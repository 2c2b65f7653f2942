"""Measure the load generator's own CPU cost per request and per token against the in-process mock.

    python bench/load_overhead.py --users 16 --tokens 64 --itl-ms 2 --duration-s 10 [--workers 0]

Locust's CPU is read from RUSAGE_CHILDREN after it exits (it and its forked workers are our only children);
the mock runs on a thread of this process, so its CPU is not counted.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]

from mock_openai import MockConfig, serve_in_thread  # noqa: E402

from harness.load.runner import run_load  # noqa: E402
from harness.scenario import parse_scenario  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=16)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--ttft-ms", type=float, default=5.0)
    ap.add_argument("--itl-ms", type=float, default=2.0)
    ap.add_argument("--duration-s", type=float, default=10.0)
    ap.add_argument("--workers", type=int, default=0)
    a = ap.parse_args()
    url = serve_in_thread(MockConfig(ttft_ms=a.ttft_ms, itl_ms=a.itl_ms, record_tokens=False))
    sc = parse_scenario(
        {
            "name": "overhead",
            "target": {"engine": "external", "model": "mock", "url": url},
            "workload": {"output_tokens": {"mean": a.tokens}, "prompt_tokens": {"mean": 128}},
            "load": {
                "workers": a.workers,
                "stages": [{"duration_s": a.duration_s, "users": a.users, "spawn_rate": 100}],
            },
        }
    )
    with tempfile.TemporaryDirectory() as d:
        res = run_load(sc, url, Path(d))
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = ru.ru_utime + ru.ru_stime
    n = max(res.requests, 1)
    print(
        f"requests={res.requests} locust={res.locust_requests} errors={res.errors} "
        f"rps={res.requests / a.duration_s:.1f} tokens/s={res.requests * a.tokens / a.duration_s:.0f}"
    )
    print(
        f"locust cpu={cpu:.2f}s (incl. ~0.6 s start-up + drain baseline on this box) "
        f"per_request={cpu / n * 1000:.2f}ms "
        f"per_token={cpu / (n * a.tokens) * 1e6:.1f}us"
    )


if __name__ == "__main__":
    main()
