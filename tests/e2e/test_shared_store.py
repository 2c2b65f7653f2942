"""The shared results store for real: a PostgreSQL server on loopback, runs of the sim engine from two working
directories (as if two CI runners), `history` across both, the one-command baseline gate, and a store outage."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from pgserver import PASSWORD, server_or_skip

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration

SCENARIO = {
    "name": "store-gate",
    "description": "Short sim run for the store and baseline-gate test.",
    "target": {
        "engine": "sim",
        "model": "sim-tiny",
        "autoscaling": {"min_replicas": 1, "max_replicas": 1},
        "sim": {"ttft_ms": 120, "itl_ms": 20, "max_num_seqs": 32, "kv_blocks": 512, "block_size": 16},
    },
    "workload": {"api": "chat", "stream": True, "prompt_tokens": {"mean": 64}, "output_tokens": {"mean": 16}},
    "load": {"warmup_s": 2, "stages": [{"name": "steady", "duration_s": 8, "users": 4, "spawn_rate": 4}]},
    # a median: this test gates on the store's baseline, not on latency; a p95 of 7 s (sim TTFT 40 ms) came from
    # a few seconds' stall of the whole box while another worker started vLLM
    "slos": ["ttft.p50 <= 5s", "error_rate <= 1%"],
}
# Medians, and sim times long enough that a busy box's extra milliseconds stay well inside +100 %: with TTFT 40 ms /
# ITL 8 ms and +50 %, the same build was a significant regression in a CI run (runner B's run overlapped a vLLM start).
# The slowed build below (×5 TTFT, ×3 ITL) is +400 % / +200 %.
GATE = ["--fail-on", "ttft.p50:+100%", "--fail-on", "itl.p50:+100%"]


def harness(*args, cwd: Path, env: dict, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def pg():
    s = server_or_skip()
    yield s
    s.cleanup()


@pytest.fixture(scope="module")
def env(shared_stack):
    e = {**shared_stack, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    e.pop("HARNESS_STORE_URL", None)
    e.pop("GITHUB_STEP_SUMMARY", None)
    return e  # the session's `harness up` stack (tests/conftest.py): every run deploys its own app on it


def _scenario(d: Path, name: str, **sim) -> Path:
    sc = json.loads(json.dumps(SCENARIO))
    sc["target"]["sim"].update(sim)
    p = d / name
    p.write_text(yaml.safe_dump(sc))
    return p


def _one_new(results: Path, before: set) -> Path:
    (new,) = {d for d in results.iterdir() if d.is_dir()} - before
    return new


def test_two_runners_one_store_history_gate_and_outage(pg, env, tmp_path):
    a, b, c = tmp_path / "runner-a", tmp_path / "runner-b", tmp_path / "elsewhere"
    for d in (a, b, c):
        d.mkdir()
    base_sc, slow_sc = _scenario(tmp_path, "gate.yaml"), _scenario(tmp_path, "gate-slow.yaml", ttft_ms=600, itl_ms=60)
    env_a = {**env, "HARNESS_STORE_URL": pg.url(with_password=True), "HARNESS_RUNNER": "runner-a"}  # URL with password
    env_b = {**env, "PGPASSWORD": PASSWORD, "HARNESS_RUNNER": "runner-b"}  # password from libpq's environment
    gh_summary = tmp_path / "step-summary.md"

    # runner A's first run meets a store that is down: the run completes and says so; a later sync adds it
    pg.stop()
    try:
        r = harness("run", base_sc, "--quiet", cwd=a, env=env_a)  # results/ relative to its own working directory
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        assert "results store unreachable" in r.stderr and "harness store sync" in r.stderr
        run_a = _one_new(a / "results", set())
        mark = json.loads((run_a / "store.json").read_text())
        assert mark["indexed"] is False and "***" in mark["store"]
    finally:
        pg.start()
    r = harness("store", "sync", cwd=a, env=env_a)
    assert r.returncode == 0 and "added 1 run(s)" in r.stdout and run_a.name in r.stdout, r.stdout + r.stderr
    assert json.loads((run_a / "store.json").read_text())["indexed"] is True

    # runner B, another folder: same build, gated against the stored baseline in one command -> 0
    r = harness(
        "run",
        base_sc,
        "--quiet",
        "--store",
        pg.url(),
        "--baseline",
        "latest-pass",
        *GATE,
        cwd=b,
        env={**env_b, "GITHUB_STEP_SUMMARY": str(gh_summary)},
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    run_b = _one_new(b / "results", set())
    assert json.loads((run_b / "store.json").read_text())["indexed"] is True  # indexed as it finished
    gate_b = json.loads((run_b / "baseline-compare.json").read_text())
    assert gate_b["baseline"]["run_id"] == run_a.name and gate_b["exit_code"] == 0
    summary_md = gh_summary.read_text()
    assert "Baseline gate: no regression" in summary_md and run_a.name in summary_md and "indexed." in summary_md

    # runner B with the sim engine slowed (ttft 120 -> 600 ms, itl 20 -> 60 ms): the SLOs still pass, the gate fires
    r = harness(
        "run",
        slow_sc,
        "--quiet",
        "--store",
        pg.url(),
        "--baseline",
        "latest-pass:runner=runner-a",
        *GATE,
        cwd=b,
        env=env_b,
    )
    assert r.returncode == 1, r.stdout[-3000:] + r.stderr[-3000:]
    run_slow = _one_new(b / "results", {run_b})
    assert json.loads((run_slow / "summary.json").read_text())["verdict"] == "pass"  # exit 1 is the gate's
    gate = json.loads((run_slow / "baseline-compare.json").read_text())
    assert gate["baseline"]["run_id"] == run_a.name and gate["exit_code"] == 1
    assert any(x.startswith("ttft.p50") for x in gate["comparisons"][0]["regressions"])
    assert "REGRESSION" in r.stderr

    # history from a third folder: every runner's runs, from the one store
    hj = c / "h.json"
    r = harness(
        "history",
        "--store",
        pg.url(),
        "--scenario",
        "store-gate",
        "--json",
        hj,
        "--html",
        c / "h.html",
        cwd=c,
        env=env_b,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    (sc,) = json.loads(hj.read_text())["scenarios"]
    assert [x["run_id"] for x in sc["runs"]] == [run_a.name, run_b.name, run_slow.name]
    assert {x["labels"]["runner"] for x in sc["runs"]} == {"runner-a", "runner-b"}
    assert "Plotly.newPlot(" in (c / "h.html").read_text()

    # the password is nowhere: not in any results file, log, terminal output or the store's rows
    for d in (a, b, c):
        for f in d.rglob("*"):
            if f.is_file() and f.suffix not in (".parquet",):
                assert PASSWORD not in f.read_text(errors="replace"), f
    for f in Path(env["HARNESS_STATE_DIR"]).rglob("*.log"):
        assert PASSWORD not in f.read_text(errors="replace"), f
    assert PASSWORD not in r.stdout + r.stderr
    import psycopg

    with psycopg.connect(pg.url(), password=PASSWORD) as conn:
        dump = json.dumps([list(map(str, row)) for row in conn.execute("SELECT * FROM harness_runs").fetchall()])
        dump += json.dumps([list(row) for row in conn.execute("SELECT * FROM harness_run_labels").fetchall()])
    assert run_a.name in dump and PASSWORD not in dump
