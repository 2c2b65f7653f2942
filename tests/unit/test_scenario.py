"""Scenario validation: one line per problem with file and full path; YAML errors give the line."""

import pytest
from typer.testing import CliRunner

from harness.cli import app
from harness.errors import ScenarioError
from harness.scenario import list_scenarios, load_scenario, parse_scenario

BASE = {
    "name": "t",
    "target": {"engine": "sim", "model": "m"},
    "load": {"stages": [{"duration_s": 5, "users": 1}]},
}


def problems(data, src="f.yaml"):
    with pytest.raises(ScenarioError) as ei:
        parse_scenario(data, src)
    return ei.value.problems


def test_every_shipped_scenario_validates():
    paths = list_scenarios()
    assert len(paths) >= 3
    for p in paths:
        load_scenario(p)


def test_defaults_fill_in():
    s = parse_scenario(BASE)
    assert s.target.sim is not None and s.target.sim.max_num_seqs == 32
    assert s.load.stages[0].name == "stage0"
    assert s.workload.api == "chat"


def test_unknown_key_has_full_path():
    d = {**BASE, "load": {"stages": [{"duration_s": 5, "users": 1, "userz": 3}]}}
    assert problems(d) == [
        "f.yaml: load.stages[0].userz: unknown key (check spelling; see `harness scenarios show` for the fields)"
    ]


def test_several_problems_one_line_each():
    d = {**BASE, "load": {"warmup_s": -1, "stages": [{"duration_s": 0, "users": -2}]}}
    ps = problems(d)
    assert any(p.startswith("f.yaml: load.warmup_s:") for p in ps)
    assert any(p.startswith("f.yaml: load.stages[0].duration_s:") for p in ps)
    assert any(p.startswith("f.yaml: load.stages[0].users:") for p in ps)


def test_bad_slo_is_reported_with_index():
    ps = problems({**BASE, "slos": ["ttft.p95 <= 500ms", "tfft.p95 < 3ms"]})
    assert len(ps) == 1 and ps[0].startswith("f.yaml: slos: [1] unknown signal 'tfft'")


def test_external_needs_url_and_sim_refuses_url():
    assert "needs `url`" in problems({**BASE, "target": {"engine": "external", "model": "m"}})[0]
    assert (
        "only for engine 'external'"
        in problems({**BASE, "target": {"engine": "sim", "model": "m", "url": "http://x"}})[0]
    )


def test_autoscaling_order():
    ps = problems(
        {**BASE, "target": {"engine": "sim", "model": "m", "autoscaling": {"min_replicas": 3, "max_replicas": 2}}}
    )
    assert "max_replicas (2) must be >= min_replicas (3)" in ps[0]


def test_warmup_shorter_than_stages():
    ps = problems({**BASE, "load": {"warmup_s": 10, "stages": [{"duration_s": 5, "users": 1}]}})
    assert "warmup_s (10.0) must be shorter" in ps[0]


def test_not_a_mapping():
    with pytest.raises(ScenarioError, match="must hold a mapping"):
        parse_scenario(["a"], "f.yaml")


def test_yaml_syntax_error_gives_line(write):
    p = write("bad.yaml", "name: x\ntarget: {engine: sim\nload: 3\n")
    with pytest.raises(ScenarioError) as ei:
        load_scenario(p)
    assert "line 3" in ei.value.message and "YAML syntax error" in ei.value.message


def test_missing_file_suggests_fix(tmp_path):
    with pytest.raises(ScenarioError) as ei:
        load_scenario(tmp_path / "nope.yaml")
    assert "not found" in ei.value.message and ei.value.fix


def test_cli_validate_exit_codes(write):
    good = write(
        "good.yaml",
        "name: g\ntarget: {engine: sim, model: m}\nload: {stages: [{duration_s: 5, users: 1}]}\n"
        "slos: [error_rate <= 1%]\n",
    )
    bad = write(
        "bad.yaml", "name: b\ntarget: {engine: simm, model: m}\nload: {stages: [{duration_s: 5, users: 1, x: 1}]}\n"
    )
    r = CliRunner().invoke(app, ["scenarios", "validate", str(good)])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(app, ["scenarios", "validate", str(good), str(bad)])
    assert r.exit_code == 2
    err = r.stderr
    assert f"{bad}: target.engine:" in err and f"{bad}: load.stages[0].x: unknown key" in err
    assert "Traceback" not in r.output + err


def test_cli_run_bad_scenario_exits_2_without_traceback(write):
    bad = write("bad.yaml", "name: b\ntarget: {engine: sim}\nload: {stages: []}\n")
    r = CliRunner().invoke(app, ["run", str(bad)])
    assert r.exit_code == 2
    assert "target.model: required field is missing" in r.stderr
    assert "Traceback" not in r.stderr


def test_cli_show_resolves_shipped_name():
    r = CliRunner().invoke(app, ["scenarios", "show", "smoke"])
    assert r.exit_code == 0 and "max_num_seqs: 32" in r.output
