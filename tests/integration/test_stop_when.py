"""load.stop_when against the sim engine on a real in-process Ray + Serve, driven by real Locust (run_load).

The sim's capacity follows from its own step timing (serve_apps/sim/engine.py): with max_num_seqs B, itl_ms s per
decode step (itl_ms_per_seq 0), O output tokens and ttft_ms p per admitting step (prefill_ms_per_token 0),
  C_max = B / (O * s)            (admissions free: every step decodes a full batch)
  C_min = 1 / (O * s / B + p)    (every request admitted in a step of its own, stalling the batch)
times (1 +- jitter_frac). Overload runs well above C_max, "under capacity" well below C_min.
"""

from __future__ import annotations

import os
import random
import socket
import time
from pathlib import Path

import pandas as pd
import pytest

from harness.load.runner import run_load
from harness.load.stop import detection_bound_s
from harness.scenario import parse_scenario

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

REPO = Path(__file__).resolve().parents[2]
MODEL = "sim-stop"
B, ITL_MS, TTFT_MS, OUT, JIT = 4, 20.0, 20.0, 32, 0.05
SIM = {
    "ttft_ms": TTFT_MS,
    "prefill_ms_per_token": 0.0,
    "itl_ms": ITL_MS,
    "itl_ms_per_seq": 0.0,
    "jitter_frac": JIT,
    "max_num_seqs": B,
    "kv_blocks": 4096,
    "block_size": 16,
}
C_MAX = B / (OUT * ITL_MS / 1000) * (1 + JIT)  # 6.6 req/s
C_MIN = 1 / (OUT * ITL_MS / 1000 / B + TTFT_MS / 1000) * (1 - JIT)  # 5.3 req/s
OVER_RPS = 2.5 * C_MAX
UNDER_RPS = 0.4 * C_MIN
RULE = {"window_s": 2, "windows": 3}


def _free_port() -> int:
    for _ in range(200):
        port = random.randint(20000, 60000)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    raise RuntimeError("no free port")


@pytest.fixture(scope="module")
def base():
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    import ray
    from ray import serve

    from serve_apps.sim.app import build_app

    http_port = _free_port()
    ray.init(num_cpus=4, include_dashboard=False, runtime_env={"env_vars": {"PYTHONPATH": str(REPO)}})
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": http_port})
        one = {"min_replicas": 1, "max_replicas": 1}
        serve.run(build_app({"model": MODEL, "sim": SIM, "autoscaling": one}), name="sat", route_prefix="/")
        serve.run(
            build_app({"model": MODEL, "sim": {**SIM, "error_rate": 0.3, "seed": 7}, "autoscaling": one}),
            name="err",
            route_prefix="/err",
        )
        yield f"http://127.0.0.1:{http_port}"
    finally:
        try:
            serve.shutdown()
        finally:
            ray.shutdown()


def _scenario(stages, stop_when):
    return parse_scenario(
        {
            "name": "stop-it",
            "target": {"engine": "sim", "model": MODEL},
            "workload": {
                "prompt_tokens": {"mean": 16, "stddev": 0},
                "output_tokens": {"mean": OUT, "stddev": 0},
                "request_timeout_s": 30,
            },
            "load": {"arrival": {"process": "poisson"}, "stages": stages, "stop_when": stop_when},
        },
        "stop-it",
    )


def test_overloaded_sim_stops_within_the_bound(base, tmp_path):
    base_s = 6.0
    sc = _scenario(
        [
            {"name": "under", "duration_s": base_s, "rate_rps": UNDER_RPS},
            {"name": "over", "duration_s": 30, "rate_rps": OVER_RPS},
        ],
        {"saturation": RULE},
    )
    t0 = time.time()
    res = run_load(sc, base, tmp_path)
    se = res.stopped_early
    assert se is not None and se["trigger"] == "saturation", res.stop_windows
    latency = se["at_s"] - base_s  # the sim saturates when the overload stage starts
    bound = detection_bound_s(sc.load.stop_when.saturation)
    print(f"saturation stop {latency:.2f} s after the overload began (bound {bound:.1f} s); {se['detail']}")
    assert 0 < latency <= bound, se
    cap = se["evidence"]["capacity_rps"]
    assert cap <= C_MAX * 1.1, se  # it cannot finish more than its step timing allows
    assert not res.interrupted and res.stats_end == pytest.approx(se["at"])
    # the drain: the requests in flight at the stop finish at the sim's capacity (plus Locust's exit)
    in_flight = se["evidence"]["windows"][-1]["in_flight"]
    assert res.ended_at - se["at"] <= in_flight / C_MIN + 10, (res.ended_at - se["at"], in_flight)
    assert res.ended_at - t0 < base_s + 30 + 30
    df = pd.read_parquet(res.samples_path)
    assert df[df.t_start_s >= se["at"]].cooldown.all()  # sent after the stop request: not counted
    assert df.ok.all() and len(df) > 0  # drained: every request sent was answered


@pytest.mark.parametrize("i", range(5))
def test_under_capacity_never_stops(base, tmp_path, i):
    sc = _scenario([{"duration_s": 10, "rate_rps": UNDER_RPS * 1.5}], {"saturation": RULE})
    res = run_load(sc, base, tmp_path)
    assert res.stopped_early is None, (res.stopped_early, res.stop_windows)
    assert res.requests > 0 and res.errors == 0


def test_max_errors_stops_at_the_count(base, tmp_path):
    rate = 10.0  # error_rate 0.3: ~3 errors/s; the count is reached after ~3.3 s of 20
    sc = _scenario([{"duration_s": 20, "rate_rps": rate}], {"max_errors": 10})
    res = run_load(sc, base + "/err", tmp_path)
    se = res.stopped_early
    assert se is not None and se["trigger"] == "max_errors", res
    ev = se["evidence"]
    # the rule fires on the 10th error, read from the sample files (flushed every 0.5 s) within one 0.2 s poll
    assert ev["nth_error_at_s"] <= se["at_s"] <= ev["nth_error_at_s"] + 1.5, se
    assert 10 <= ev["errors"] <= 10 + 3 * 0.3 * rate, se
    assert se["at_s"] < 10 and res.requests < rate * 20 / 2, res
