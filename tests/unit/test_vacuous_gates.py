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
    "slo", ["ttft.p95 >= 1ms", "ttft.p95 <= 0ms", "error_rate < 100%", "replicas.max <= 1", "ttft.p95 <= 1s @a"]
)
def test_gates_that_can_go_either_way_stay(tmp_path, slo):
    p = tmp_path / "s.yaml"
    p.write_text(GOOD.replace("SLO", slo))
    res = CliRunner().invoke(app, ["scenarios", "validate", str(p)])
    assert res.exit_code == 0, res.output
