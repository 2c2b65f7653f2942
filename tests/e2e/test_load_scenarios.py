"""The shipped load scenarios (open loop, dataset, shared prefix, trace replay) run for real through the CLI on the
sim engine, on the session's shared `harness up` stack (tests/conftest.py). ~2.5 min on the 2-core box."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]


def _harness(args: list[str], env: dict, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture
def stack_env(shared_stack):
    return shared_stack


def _run(name: str, env: dict, results: Path) -> tuple[dict, dict, pd.DataFrame]:
    p = _harness(["run", name, "-o", str(results), "--json"], env, 240)
    assert p.returncode == 0, (p.stdout[-1500:], p.stderr[-3000:])
    run_dir = next(p for p in results.iterdir() if p.is_dir())  # results also holds the store (harness.db)
    return (
        json.loads((run_dir / "summary.json").read_text()),
        json.loads((run_dir / "run.json").read_text()),
        pd.read_parquet(run_dir / "samples.parquet"),
    )


def test_open_loop(stack_env, tmp_path):
    summary, run, df = _run("open-loop", stack_env, tmp_path)
    assert summary["verdict"] == "pass"
    gen = run["load"]["generator"]
    assert gen["processes"] and gen["processes"][0]["lag_ms"]["count"] > 100  # the lag probe ran
    # every open-loop sample has its scheduled time; lateness counts the arrivals sent. An arrival still queued at
    # max_concurrency when the stages end is a `dropped` sample (a busy box: CI had one of 108), counted apart
    dropped = df["error"] == "dropped"
    assert gen["lateness_ms"]["count"] == int((~dropped).sum()) and gen["dropped_arrivals"] == int(dropped.sum())
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


def test_trace_replay_sends_on_the_trace(stack_env, tmp_path):
    """Every row of the shipped Mooncake trace is sent once, at its recorded time (from the file, read here on its
    own) with its lengths; actual sends trail the schedule only by the generator's own scheduling lag."""
    summary, run, df = _run("trace-replay", stack_env, tmp_path)
    assert summary["verdict"] == "pass"
    wl = run["load"]["workload"]
    assert wl["kind"] == "trace" and wl["format"] == "mooncake" and wl["rows"] == len(df) == 89
    rows = [json.loads(x) for x in (ROOT / "datasets" / "trace-mooncake-mini.jsonl").read_text().splitlines() if x]
    t0 = min(r["timestamp"] for r in rows)
    want = sorted(((r["timestamp"] - t0) / 1000.0, r["input_length"], r["output_length"]) for r in rows)
    started = run["timeline"]["load_started_at"]
    got = sorted(zip(df.sched_s - started, df.prompt_words, df.max_tokens))
    assert [(w, i) for _, w, i in got] == [(w, i) for _, w, i in want]  # each row once, its lengths
    assert max(abs(g[0] - w[0]) for g, w in zip(got, want)) < 1e-4  # scheduled send = trace time (speedup 1)
    assert ((df.t_start_s - df.sched_s) * 1000 - df.lateness_ms).abs().max() < 5  # wall-clock send agrees
    late = df.lateness_ms.quantile(0.99)
    lag = run["load"]["generator"]["processes"][0]["lag_ms"]
    # a quiet box: a few ms; a box loaded by other jobs: no later than the event loop's own worst wake-up lag
    # "within a few ms": 10 ms on a quiet generator (measured 3.9-5.1 ms here), else bounded by its own lag
    limit = 10.0 if lag["p99"] < 2.0 else lag["max"] + 10.0
    print(
        f"trace replay: send lateness p50 {df.lateness_ms.median():.2f} ms p99 {late:.2f} ms max "
        f"{df.lateness_ms.max():.2f} ms; generator lag p99 {lag['p99']} ms max {lag['max']} ms"
    )
    assert late <= limit, (late, lag)
