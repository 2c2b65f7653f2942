"""Real runs whose every request failed (sim error_rate 1.0) never compare as "no regression", and a measure-only
run says `measured` only when its load worked. On the session's shared `harness up` stack (tests/conftest.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]
ROOT = Path(__file__).resolve().parents[2]

SCENARIO = """\
name: broken-it
target:
  engine: sim
  model: sim-broken
  autoscaling: {{min_replicas: 1, max_replicas: 1}}
  sim: {{ttft_ms: 20, itl_ms: 4, error_rate: {error_rate}}}
workload: {{prompt_tokens: {{mean: 32}}, output_tokens: {{mean: 8}}}}
load:
  stages: [{{name: s, duration_s: 4, users: 2, spawn_rate: 2}}]
scrape: {{settle_timeout_s: 8, settle_quiet_s: 1}}
{tail}
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
    tmp = tmp_path_factory.mktemp("broken-it")
    env = {**shared_stack, "COLUMNS": "300"}
    res = tmp / "results"
    t0 = time.monotonic()
    out = {}
    for name, rate, tail, flags, code in (
        ("failed-a", 1.0, "slos: [ttft.p95 <= 5s]", [], 1),
        ("failed-b", 1.0, "measure_only: true", [], 1),  # measure-only, load broken: not a pass
        ("ok-measured", 0.0, "", ["--measure-only"], 0),  # measure-only, load worked: exit 0, verdict measured
    ):
        sc = tmp / f"{name}.yaml"
        sc.write_text(SCENARIO.format(error_rate=rate, tail=tail))
        before = set(res.iterdir()) if res.exists() else set()
        r = harness("run", sc, "--results-dir", res, *flags, env=env)
        assert r.returncode == code, (name, r.stdout[-3000:] + r.stderr[-3000:])
        (d,) = {p for p in set(res.iterdir()) - before if p.is_dir()}  # not the results store (harness.db)
        out[name] = (d, json.loads((d / "summary.json").read_text()), r.stdout)
    print(f"three runs in {time.monotonic() - t0:.0f} s")
    return out, env, tmp


def test_runs_record_why_their_load_failed(runs):
    out, _, _ = runs
    _, a, _ = out["failed-a"]
    assert a["client"]["error_rate"] == 1.0 and a["load_failure"].startswith("every request failed")
    _, b, stdout = out["failed-b"]
    assert b["verdict"] == "fail" and b["measure_only"] and "measure-only run, but the load failed" in b["warnings"][0]
    assert "the load failed" in stdout
    _, m, stdout = out["ok-measured"]
    assert m["verdict"] == "measured" and m["slos"] == [] and m["load_failure"] is None
    assert "verdict: MEASURED" in stdout and "measure-only run" in stdout


def test_two_runs_with_every_request_failed_are_not_comparable(runs):
    out, env, _ = runs
    a, b = out["failed-a"][0], out["failed-b"][0]
    r = harness("compare", a, b, env=env)
    assert r.returncode == 2, r.stdout[-3000:] + r.stderr[-3000:]
    assert "every request failed" in r.stderr and "--force" in r.stderr and "no regression" not in r.stdout
    ok = out["ok-measured"][0]
    r = harness("compare", ok, a, env=env)  # a healthy base against a broken candidate: still exit 2, naming it
    assert r.returncode == 2 and str(a) in r.stderr and str(ok) not in r.stderr.split("fix:")[0], r.stderr


def test_history_marks_the_broken_runs(runs, tmp_path):
    out, env, tmp = runs
    js = tmp_path / "h.json"
    r = harness("history", "--results-dir", tmp / "results", "--json", js, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    (sc,) = json.loads(js.read_text())["scenarios"]
    assert {b["run_id"] for b in sc["broken"]} == {out["failed-a"][0].name, out["failed-b"][0].name}
    assert "broken:" in r.stdout
