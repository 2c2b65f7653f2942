"""The shipped load scenarios (open loop, dataset, shared prefix) run for real through the CLI on the sim engine,
on the session's shared `harness up` stack (tests/conftest.py). ~2 min on the 2-core box."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]


def _harness(args: list[str], env: dict, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture
def stack_env(shared_stack):
    return shared_stack


def _run(name: str, env: dict, results: Path) -> tuple[dict, dict, pd.DataFrame]:
    p = _harness(["run", name, "-o", str(results), "--json"], env, 240)
    assert p.returncode == 0, (p.stdout[-1500:], p.stderr[-3000:])
    run_dir = next(results.iterdir())
    return (json.loads((run_dir / "summary.json").read_text()), json.loads((run_dir / "run.json").read_text()),
            pd.read_parquet(run_dir / "samples.parquet"))


def test_open_loop(stack_env, tmp_path):
    summary, run, df = _run("open-loop", stack_env, tmp_path)
    assert summary["verdict"] == "pass"
    gen = run["load"]["generator"]
    assert gen["processes"] and gen["processes"][0]["lag_ms"]["count"] > 100  # the lag probe ran
    assert gen["lateness_ms"]["count"] == len(df)  # every open-loop sample has its scheduled time
    assert df["sched_s"].notna().all() and df["lateness_ms"].notna().all()
    assert set(df["stage"]) == {"base", "step", "ramp"} and df["cooldown"].any()
    # ~4/s, 8/s, 8→12/s: about 24 + 40 + 40 = 104 arrivals (Poisson: wide bounds)
    assert 60 <= len(df) <= 160, len(df)
    assert not any("cooldown" in w or "from load start" in w for w in summary["warnings"]), summary["warnings"]


def test_dataset_multi_turn(stack_env, tmp_path):
    summary, run, df = _run("dataset-chat", stack_env, tmp_path)
    assert summary["verdict"] == "pass"
    wl = run["load"]["workload"]
    assert wl["kind"] == "dataset" and wl["items"] == 16 and wl["prompt_length_unit"] == "words"
    assert df["turn"].max() >= 1  # conversations replayed turn by turn
    later = df[df.turn > 0]
    assert (later.prompt_words > df[df.turn == 0].prompt_words.median()).mean() > 0.8  # history grows


def test_shared_prefix(stack_env, tmp_path):
    summary, run, df = _run("shared-prefix", stack_env, tmp_path)
    assert summary["verdict"] == "pass"
    assert run["load"]["workload"]["prompts"] == 32
    assert df["prompt_words"].min() >= 256
    # the sim engine has no prefix cache: the hit rate is reported as no data, never invented
    assert "prefix_cache_hit_rate" not in summary["server"] or not summary["server"]["prefix_cache_hit_rate"]
    assert any("prefix-cache hit rate: no data" in w for w in summary["warnings"])
