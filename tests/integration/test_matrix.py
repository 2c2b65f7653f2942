"""A real `harness matrix` on CPU across two Ray releases with the simulated engine.

Slow (several minutes of pip installs on first use; the environments under ~/.cache/harness/envs are reused
afterwards): marked `slow`, so `.ci/run` (`-m "not slow"`) leaves it out and `.ci/slow` runs it (nightly).
Set HARNESS_MATRIX_RAY="A,B" to choose the releases.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(3600)]

SCENARIO = """\
name: vshort
description: Short sim run for the version matrix test.
target:
  engine: sim
  model: sim-tiny
  autoscaling: {min_replicas: 1, max_replicas: 1}
  sim: {ttft_ms: 40, itl_ms: 8, max_num_seqs: 32, kv_blocks: 512, block_size: 16}
workload:
  api: chat
  stream: true
  prompt_tokens: {mean: 64, stddev: 16}
  output_tokens: {mean: 16}
load:
  warmup_s: 3
  stages:
    - {name: steady, duration_s: 15, users: 4, spawn_rate: 4}
slos:
  - ttft.p95 <= 2s
  - error_rate <= 1%
"""


def test_matrix_two_ray_releases(tmp_path):
    versions = os.environ.get("HARNESS_MATRIX_RAY", "2.59.0,2.60.0").split(",")
    sc = tmp_path / "vshort.yaml"
    sc.write_text(SCENARIO)
    res = tmp_path / "results"
    env = {**os.environ, "HARNESS_STATE_DIR": str(tmp_path / "state")}
    cmd = [sys.executable, "-m", "harness.cli", "matrix", str(sc), "--results-dir", str(res)]
    for v in versions:
        cmd += ["--ray-version", v]
    t0 = time.monotonic()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=3500)
    print(p.stdout[-6000:], p.stderr[-3000:], f"\nwall {time.monotonic() - t0:.0f} s")
    assert p.returncode in (0, 1), p.stderr  # 2: a release failed to install or run
    (mdir,) = res.glob("matrix-vshort-*")
    print((mdir / "compare.md").read_text()[:3000], (mdir / "matrix.json").read_text())
    m = json.loads((mdir / "matrix.json").read_text())
    assert [e["ray"] for e in m["entries"]] == versions
    for e in m["entries"]:
        assert e["error"] is None and e["run_exit_code"] == 0  # the short scenario's SLOs hold on every release
        run = json.loads((Path(e["run_dir"]) / "run.json").read_text())
        assert run["environment"]["ray"] == e["ray"]  # the run really used that release
        assert run["labels"]["ray"] == e["ray"]
        summary = json.loads((Path(e["run_dir"]) / "summary.json").read_text())
        assert summary["client"]["errors"] < summary["client"]["requests"] / 10, summary["client"]  # the app served
    cmp = json.loads((mdir / "compare.json").read_text())
    # exit 1 means the comparison found a regression between the releases: the process says what compare says
    assert p.returncode == m["exit_code"] == cmp["exit_code"], (p.returncode, m["exit_code"], cmp["exit_code"])
    assert (
        len(cmp["comparisons"]) == 1
        and (mdir / "compare.md").exists()
        and "Plotly.newPlot(" in (mdir / "compare.html").read_text()
    )
    print(
        json.dumps(
            {e["name"]: {"env_s": e["env_s"], "reused": e["env_reused"], "run_s": e["run_s"]} for e in m["entries"]}
        ),
        "compare_s",
        m["compare_s"],
        "total_s",
        m["total_s"],
    )
