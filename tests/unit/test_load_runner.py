import importlib.util
import json

import pytest

from harness.errors import LoadError
from harness.load import runner
from harness.scenario import parse_scenario


def _scenario(**load):
    return parse_scenario(
        {
            "name": "t",
            "target": {"engine": "external", "model": "m1", "url": "http://127.0.0.1:1", "api_key_env": "K"},
            "workload": {"request_timeout_s": 7.5},
            "load": {"stages": [{"duration_s": 2, "users": 1}, {"name": "hi", "duration_s": 3, "users": 4}], **load},
        }
    )


def test_config_is_plain_json_without_secrets(tmp_path, monkeypatch):
    monkeypatch.setenv("K", "sk-secret")
    cfg = runner.build_config(_scenario(max_requests=5), tmp_path)
    text = json.dumps(cfg)
    assert "sk-secret" not in text
    assert cfg["model"] == "m1" and cfg["max_requests"] == 5
    assert [s["name"] for s in cfg["stages"]] == ["stage0", "hi"]
    assert cfg["workload"]["request_timeout_s"] == 7.5


def test_command_is_headless_and_binds_workers_to_loopback(tmp_path):
    cmd = runner.locust_command(_scenario(), "http://127.0.0.1:9", tmp_path)
    assert "--headless" in cmd and "--processes" not in cmd
    assert cmd[cmd.index("--stop-timeout") + 1] == "8"  # whole seconds, rounded up
    cmd = runner.locust_command(_scenario(workers=2), "http://127.0.0.1:9", tmp_path)
    assert cmd[cmd.index("--processes") + 1] == "2"
    assert cmd[cmd.index("--master-bind-host") + 1] == "127.0.0.1"


def test_child_env_passes_key_only_by_env_and_drops_locust_overrides(tmp_path, monkeypatch):
    monkeypatch.setenv("LOCUST_USERS", "999")
    env = runner._child_env(tmp_path / "c.json", "sk-x")
    assert env["HARNESS_LOAD_API_KEY"] == "sk-x" and "LOCUST_USERS" not in env
    assert "HARNESS_LOAD_API_KEY" not in runner._child_env(tmp_path / "c.json", None)


def test_locust_totals_from_stats_csv(tmp_path):
    (tmp_path / "locust_stats.csv").write_text(
        "Type,Name,Request Count,Failure Count\nPOST,chat,10,2\n,Aggregated,10,2\n"
    )
    assert runner.read_locust_totals(tmp_path) == (10, 2)
    assert runner.read_locust_totals(tmp_path / "nope") == (-1, -1)


def test_missing_locust_is_a_load_error(tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "locust" else real(name, *a))
    with pytest.raises(LoadError) as e:
        runner.run_load(_scenario(), "http://127.0.0.1:9", tmp_path)
    assert "pip install locust" in e.value.render()
