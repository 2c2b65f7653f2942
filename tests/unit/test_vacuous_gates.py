"""Issue 26: an SLO that, from the scenario alone, can never fail, never pass or never have data is refused at
validate time (exit 2, the path, why, the fix)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from harness.cli import app

GOOD = """name: g
target: {engine: sim, model: m, autoscaling: {min_replicas: 1, max_replicas: 2}}
workload: {prompt_tokens: {mean: 16}, output_tokens: {mean: 8}}
load: {cooldown_s: 5, stages: [{name: a, duration_s: 10, users: 1}, {name: b, duration_s: 3, users: 1}]}
slos: [SLO]
"""

CASES = [
    ("ttft.p95 <= 1e400ms", "not a finite number"),
    ("ttft.p95 >= 0ms", "can never fail"),
    ("ttft.p95 < 0ms", "can never pass"),
    ("error_rate <= 100%", "can never fail"),
    ("kv_cache_usage.max > 1", "can never pass"),
    ("replica_starts.total == 2.5", "whole number"),
    ("replicas.max <= 2", "can never fail"),
    ("replicas.max >= 3", "can never pass"),
    ("replicas.max > 2", "can never pass"),
    ("recovery_time.max <= 10s", "needs a fault"),
    ("node_down_alert_delay.max <= 10s", "kill_node"),
    ("ttft.p95 <= 1s @b", "inside load.cooldown_s"),
]


@pytest.mark.parametrize("slo,words", CASES, ids=[c[0] for c in CASES])
def test_gate_that_checks_nothing_is_refused(tmp_path, slo, words):
    p = tmp_path / "s.yaml"
    p.write_text(GOOD.replace("SLO", slo))
    res = CliRunner().invoke(app, ["scenarios", "validate", str(p)])
    out = res.output + (res.stderr if res.stderr_bytes is not None else "")
    assert res.exit_code == 2, out
    assert "Traceback" not in out and "slos" in out and words in out, out


@pytest.mark.parametrize(
    "slo",
    [
        "ttft.p95 >= 1ms",
        "ttft.p95 <= 0ms",
        "error_rate < 100%",
        "replicas.max <= 1",
        "replicas.max >= 2",
        "ttft.p95 <= 1s @a",
    ],
)
def test_gates_that_can_go_either_way_stay(tmp_path, slo):
    p = tmp_path / "s.yaml"
    p.write_text(GOOD.replace("SLO", slo))
    res = CliRunner().invoke(app, ["scenarios", "validate", str(p)])
    assert res.exit_code == 0, res.output


# ---------- stages and the @steady scope ----------

STAGES = """name: g
target: {engine: sim, model: m}
load: {warmup_s: WARM, stages: STAGES}
slos: [SLO]
"""


def _validate(tmp_path, stages: str, slo: str = "ttft.p95 <= 1s", warmup: float = 0):
    p = tmp_path / "s.yaml"
    p.write_text(STAGES.replace("STAGES", stages).replace("SLO", slo).replace("WARM", str(warmup)))
    res = CliRunner().invoke(app, ["scenarios", "validate", str(p)])
    out = res.output + (res.stderr if res.stderr_bytes is not None and res.stderr not in res.output else "")
    assert "Traceback" not in out, out
    return res.exit_code, out


def test_a_spawn_rate_that_cannot_reach_the_users_within_the_stage(tmp_path):
    code, out = _validate(tmp_path, "[{name: a, duration_s: 10, users: 50, spawn_rate: 2}]")
    assert code == 2 and "load: " in out and "stages[0] (a)" in out and "takes 25 s" in out, out
    assert "spawn_rate >= 5" in out and "duration_s >= 25" in out, out
    # a step down counts too: 40 users stopped at 1/s take 40 s of a 20 s stage
    code, out = _validate(
        tmp_path, "[{name: a, duration_s: 60, users: 50, spawn_rate: 50}, {name: b, duration_s: 20, users: 10}]"
    )
    assert code == 2 and "stages[1] (b)" in out and "from 50 to 10 users" in out, out


def test_ramps_that_fit_stay(tmp_path):
    assert _validate(tmp_path, "[{duration_s: 10, users: 20, spawn_rate: 2}, {duration_s: 5, users: 20}]")[0] == 0


def test_steady_when_no_stage_has_a_steady_part(tmp_path):
    code, out = _validate(tmp_path, "[{duration_s: 10, users: 10, spawn_rate: 1}]", "ttft.p95 <= 1s @steady")
    assert code == 2 and "slos" in out and "no stage has a steady part" in out and "raise spawn_rate" in out, out
    # the ramp ends at 4 s, the warmup at 8 s: steady from 8 s to 10 s
    stages = "[{duration_s: 10, users: 4, spawn_rate: 1}]"
    assert _validate(tmp_path, stages, "ttft.p95 <= 1s @steady", warmup=8)[0] == 0
    assert _validate(tmp_path, "[{duration_s: 10, users: 10, spawn_rate: 1}]")[0] == 0  # no @steady: whole run


def test_a_stage_named_like_a_scope_keyword_with_that_scope(tmp_path):
    code, out = _validate(
        tmp_path, "[{name: steady, duration_s: 10, users: 2, spawn_rate: 2}]", "ttft.p95 <= 1s @steady"
    )
    assert code == 2 and "load.stages[0] is named 'steady'" in out and "rename the stage" in out, out
    # without the scope the name is harmless (shipped scenarios and old records use it)
    assert _validate(tmp_path, "[{name: steady, duration_s: 10, users: 2, spawn_rate: 2}]")[0] == 0
