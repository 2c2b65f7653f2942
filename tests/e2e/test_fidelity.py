"""The harness measures what the engine did: client TTFT/ITL against the sim engine's own recorded timeline.

The sim records every request's arrival, first-token and token times (`GET /sim/requests`). The client sees the
same tokens later by Serve's proxy and the network (tens of ms on a loaded 2-core box), never earlier. Margins:
client TTFT p50 within [sim p50 - 2 ms, 1.5 x sim p50] and client ITL mean within ±25 % of the sim's, with the
sim slow enough (TTFT ~150 ms, ITL 20 ms) that Serve's overhead fits: a harness that reported 2x the truth fails.
One ~10 s run on the session's shared stack (~40 s in all).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from harness.stack.net import http_json

pytestmark = [pytest.mark.integration, pytest.mark.exclusive]
ROOT = Path(__file__).resolve().parents[2]


def harness_cli(*args: str, env: dict, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


SCENARIO = """\
name: fidelity
description: Sim engine slow enough that the harness's own overhead is small against its timeline.
target:
  engine: sim
  model: sim-fid
  app_name: fidelity          # kept up after the run (--keep-app) to read its timeline; own route beside `llm`
  route_prefix: /fidelity
  autoscaling: {min_replicas: 1, max_replicas: 1}
  sim: {ttft_ms: 150, itl_ms: 20, max_num_seqs: 16, kv_blocks: 512, block_size: 16}
workload:
  {api: chat, stream: true, prompt_tokens: {mean: 32, stddev: 4}, output_tokens: {mean: 16, max: 16}, ignore_eos: true}
load: {warmup_s: 2, stages: [{name: s, duration_s: 10, users: 4, spawn_rate: 4}]}
slos: [error_rate <= 1%]
"""


@pytest.fixture(scope="module")
def run(shared_stack, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fidelity")
    (tmp / "fid.yaml").write_text(SCENARIO)
    r = harness_cli(
        "run", str(tmp / "fid.yaml"), "-o", str(tmp / "res"), "--keep-app", "--json", env=shared_stack, timeout=300
    )
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    (run_dir,) = [d for d in (tmp / "res").iterdir() if d.is_dir()]
    rec = json.loads((run_dir / "run.json").read_text())
    truth = http_json(f"{rec['deployment']['base_url']}/sim/requests?limit=10000", 10.0)["requests"]
    return pd.read_parquet(run_dir / "samples.parquet"), truth, json.loads(r.stdout)


def test_every_request_the_client_counted_is_one_the_engine_served(run):
    samples, truth, summary = run
    assert summary["client"]["errors"] == 0
    assert len(samples) == len(truth) > 20, (len(samples), len(truth))  # ~60 on an idle 2-core box
    assert sorted(samples["output_tokens"]) == sorted(t["output_tokens"] for t in truth)


def test_client_ttft_is_the_engines_plus_a_bounded_transport_overhead(run):
    samples, truth, _ = run
    sim_ms = statistics.median(t["ttft_s"] * 1000 for t in truth)
    client_ms = float(samples["ttft_ms"].median())
    print(f"TTFT p50: sim {sim_ms:.1f} ms, client {client_ms:.1f} ms (+{client_ms - sim_ms:.1f} ms)")
    assert sim_ms >= 0.95 * 150  # one prefill step is at least ttft_ms (less the ±5 % jitter)
    assert sim_ms - 2 <= client_ms <= 1.5 * sim_ms, (sim_ms, client_ms)


def test_client_itl_matches_the_engines_token_gaps(run):
    samples, truth, _ = run
    gaps = [b - a for t in truth for a, b in zip(t["token_times"], t["token_times"][1:])]
    sim_ms = statistics.fmean(gaps) * 1000
    client_ms = float((samples["itl_mean_ms"] * samples["itl_count"]).sum() / samples["itl_count"].sum())
    print(f"ITL mean: sim {sim_ms:.2f} ms, client {client_ms:.2f} ms")
    assert sim_ms >= 0.95 * 20
    assert abs(client_ms - sim_ms) <= 0.25 * sim_ms, (sim_ms, client_ms)
