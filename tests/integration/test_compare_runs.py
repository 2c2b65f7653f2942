"""Real runs compared: an injected sim slowdown (x1.5) is a significant regression (exit 1); the same scenario
run twice is not (exit 0). The session's shared `harness up` stack (tests/conftest.py) serves all three runs.

Both cases use the default gates: central statistics with thresholds above the run-to-run noise measured on this
machine kind (tails of two honest runs differ for real under CPU contention), resampled in blocks of time.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

# exclusive: "the same scenario twice is no regression" only holds when both runs get the same machine; beside the
# other xdist workers' runs, throughput between two identical runs moved by -30 % (a real change of the environment)
pytestmark = [pytest.mark.integration, pytest.mark.exclusive, pytest.mark.timeout(900)]
ROOT = Path(__file__).resolve().parents[2]

SCENARIO = """\
name: compare-it
description: Short sim run for the compare integration test.
target:
  engine: sim
  model: sim-cmp
  autoscaling: {{min_replicas: 1, max_replicas: 1}}
  sim: {{ttft_ms: 40, itl_ms: 8, max_num_seqs: 32, kv_blocks: 512, block_size: 16, slowdown_factor: {slowdown}}}
workload:
  prompt_tokens: {{mean: 64, stddev: 16}}
  output_tokens: {{mean: 16}}
load:
  warmup_s: 3
  stages:
    - {{name: steady, duration_s: 15, users: 4, spawn_rate: 4}}
slos:
  - ttft.p95 <= 5s
"""


def harness(*args, env, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", *map(str, args)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def runs(tmp_path_factory, shared_stack):
    tmp = tmp_path_factory.mktemp("compare-it")
    env = shared_stack
    out = {}
    for name, slowdown in (("base", 1.0), ("again", 1.0), ("slow", 1.5)):
        sc = tmp / f"{name}.yaml"
        sc.write_text(SCENARIO.format(slowdown=slowdown))
        res = tmp / f"results-{name}"
        r = harness("run", sc, "--results-dir", res, "--label", f"case={name}", "-q", env=env)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        (out[name],) = [d for d in res.iterdir() if d.is_dir()]
    return out, env, tmp


def test_injected_slowdown_is_a_significant_regression(runs):
    out, env, tmp = runs
    js = tmp / "slow.json"
    r = harness(
        "compare", out["base"], out["slow"], "--json", js, "--md", tmp / "slow.md", "--html", tmp / "slow.html", env=env
    )
    print(r.stdout[-4000:])
    assert r.returncode == 1, r.stdout[-4000:] + r.stderr[-2000:]
    c = json.loads(js.read_text())["comparisons"][0]
    rows = {row["key"]: row for row in c["rows"]}
    # ITL scales with the engine's step time (8 ms → ~12 ms per token): a default gate (central statistics) fires
    assert rows["itl.p50"]["regression"] and rows["itl.p50"]["rel_change"] > 0.3 and rows["itl.p50"]["ci"][0] > 0
    # TPOT also carries the Serve/Locust overhead that does not slow down (on CI: +19 % for the x1.5, under the +25 %
    # gate), so it is only required to be significantly worse
    assert rows["tpot.p50"]["significant"] and rows["tpot.p50"]["ci"][0] > 0
    assert any("slowdown_factor: 1.0 → 1.5" in w for w in c["warnings"])
    # server signals compared by logical name, both answered by the same series here
    assert rows["server_ttft.p95"]["new"] > rows["server_ttft.p95"]["base"]
    assert "Plotly.newPlot(" in (tmp / "slow.html").read_text()


def test_same_scenario_twice_is_not_a_regression(runs):
    out, env, tmp = runs
    r = harness("compare", out["base"], out["again"], env=env)  # the default gates
    print(r.stdout[-4000:])
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert "no regression" in r.stdout
