"""Bad input through every CLI command: one clear message (file, path, what, fix), exit 2, never a traceback."""

from __future__ import annotations

import json
import os

import pytest

from harness.cli import app

GOOD = """name: t
target: {engine: sim, model: m}
load:
  stages: [{duration_s: 5, users: 1}]
slos: [ttft.p95 <= 500ms]
"""

# (case, scenario text or None for "no file", words the message must contain)
BAD_SCENARIOS = [
    ("malformed yaml", "name: t\ntarget: {engine: sim\n", ["line", "YAML syntax error"]),
    ("not a mapping", "- just\n- a list\n", ["must hold a mapping"]),
    ("empty file", "", ["must hold a mapping"]),
    ("unknown key", GOOD + "lod: {}\n", ["lod", "unknown key"]),
    ("nested unknown key", GOOD.replace("users: 1", "users: 1, user: 2"), ["load.stages[0].user", "unknown key"]),
    ("wrong type", GOOD.replace("users: 1", "users: many"), ["load.stages[0].users"]),
    ("negative", GOOD.replace("users: 1", "users: -1"), ["load.stages[0].users"]),
    ("infinite", GOOD.replace("duration_s: 5", "duration_s: 1e400"), ["load.stages[0].duration_s", "finite"]),
    ("unit in a number field", GOOD.replace("duration_s: 5", "duration_s: 5s"), ["load.stages[0].duration_s"]),
    ("bad SLO string", GOOD.replace("ttft.p95 <= 500ms", "ttft p95 below 500"), ["slos", "cannot parse SLO"]),
    (
        "unknown signal",
        GOOD.replace("ttft.p95 <= 500ms", "latency.p95 <= 500ms"),
        ["slos", "unknown signal", "valid signals"],
    ),
    ("wrong SLO unit", GOOD.replace("ttft.p95 <= 500ms", "ttft.p95 <= 50%"), ["slos", "unit"]),
    ("bad stat", GOOD.replace("ttft.p95 <= 500ms", "ttft.p42 <= 5ms"), ["slos", "p42"]),
    ("missing required", "name: t\nload: {stages: [{duration_s: 5, users: 1}]}\n", ["target", "required"]),
    ("bad engine", GOOD.replace("engine: sim", "engine: tgi"), ["target.engine"]),
    ("fault outside the load", GOOD + "faults: [{at_s: 99, action: kill_replica}]\n", ["faults[0].at_s"]),
    ("unknown fault action", GOOD + "faults: [{at_s: 1, action: unplug}]\n", ["faults[0].action"]),
    (
        "fault on external",
        GOOD.replace("engine: sim", "engine: external, url: 'http://127.0.0.1:9'")
        + "faults: [{at_s: 1, action: kill_replica}]\n",
        ["faults[0]", "external"],
    ),
    ("binary file", None, ["cannot read"]),
]


def _assert_clean(res, *words):
    out = res.output + (res.stderr if hasattr(res, "stderr") and res.stderr_bytes is not None else "")
    assert res.exit_code == 2, (res.exit_code, out)
    assert "Traceback" not in out, out
    assert not isinstance(res.exception, Exception) or isinstance(res.exception, SystemExit), repr(res.exception)
    for w in words:
        assert w in out, (w, out)


@pytest.mark.parametrize("case,text,words", BAD_SCENARIOS, ids=[c[0] for c in BAD_SCENARIOS])
@pytest.mark.parametrize("command", ["run", "validate", "show"])
def test_bad_scenario_every_command(runner, tmp_path, case, text, words, command):
    p = tmp_path / "bad.yaml"
    if text is None:
        p.write_bytes(b"\xff\xfe\x00bad")
    else:
        p.write_text(text)
    args = {
        "run": ["run", str(p), "--results-dir", str(tmp_path / "res")],
        "validate": ["scenarios", "validate", str(p)],
        "show": ["scenarios", "show", str(p)],
    }[command]
    res = runner.invoke(app, args)
    _assert_clean(res, str(p), *words)
    assert not (tmp_path / "res").exists() or not any((tmp_path / "res").iterdir())  # nothing started, nothing written


@pytest.mark.parametrize("command", ["run", "validate", "show"])
def test_missing_scenario_file(runner, tmp_path, command):
    p = tmp_path / "nope.yaml"
    args = {
        "run": ["run", str(p)],
        "validate": ["scenarios", "validate", str(p)],
        "show": ["scenarios", "show", str(p)],
    }[command]
    _assert_clean(runner.invoke(app, args), "nope.yaml", "not found")


def test_scenario_is_a_directory(runner, tmp_path):
    _assert_clean(runner.invoke(app, ["run", str(tmp_path)]), "is a directory")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_scenario(runner, tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text(GOOD)
    p.chmod(0)
    _assert_clean(runner.invoke(app, ["run", str(p)]), "cannot read")


def test_results_dir_not_writable(runner, tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text(GOOD)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    _assert_clean(
        runner.invoke(app, ["run", str(p), "--results-dir", str(blocker / "res")]), "results dir", "--results-dir"
    )
    _assert_clean(runner.invoke(app, ["run", str(p), "--results-dir", str(blocker)]), "--results-dir")


def test_results_dir_read_only_as_any_user(runner, tmp_path):
    """/proc is read-only even for root."""
    p = tmp_path / "s.yaml"
    p.write_text(GOOD)
    _assert_clean(runner.invoke(app, ["run", str(p), "--results-dir", "/proc/harness-results"]), "--results-dir")


def test_bad_label_and_half_an_existing_stack(runner, tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text(GOOD)
    _assert_clean(
        runner.invoke(app, ["run", str(p), "--label", "novalue", "--results-dir", str(tmp_path)]), "key=value"
    )
    _assert_clean(
        runner.invoke(app, ["run", str(p), "--ray-address", "127.0.0.1:1", "--results-dir", str(tmp_path)]),
        "--prometheus-url",
    )


def test_report_bad_folders(runner, tmp_path):
    _assert_clean(runner.invoke(app, ["report", str(tmp_path / "nope")]), "no run.json")
    d = tmp_path / "corrupt"
    d.mkdir()
    (d / "run.json").write_text("{not json")
    _assert_clean(runner.invoke(app, ["report", str(d)]), "run.json", "not valid JSON")
    d2 = tmp_path / "future"
    d2.mkdir()
    (d2 / "run.json").write_text(json.dumps({"schema_version": 999, "run_id": "x", "scenario": {}}))
    _assert_clean(runner.invoke(app, ["report", str(d2)]), "schema_version")


def test_missing_model_dir_fails_before_anything_starts(runner, tmp_path):
    p = tmp_path / "v.yaml"
    p.write_text(
        GOOD.replace(
            "engine: sim, model: m", f"engine: vllm, model: m, vllm: {{model_source: {tmp_path}/no-model, device: cpu}}"
        )
    )
    _assert_clean(
        runner.invoke(app, ["run", str(p), "--results-dir", str(tmp_path / "res")]),
        "target.vllm.model_source",
        "no-model",
        "not found",
    )
    assert not (tmp_path / "res").exists()


def test_missing_dataset_fails_before_anything_starts(runner, tmp_path):
    p = tmp_path / "d.yaml"
    p.write_text(
        GOOD.replace("load:", f"workload: {{dataset: {{path: {tmp_path}/nope.jsonl, format: prompts}}}}\nload:")
    )
    _assert_clean(
        runner.invoke(app, ["run", str(p), "--results-dir", str(tmp_path / "res")]),
        "workload.dataset.path",
        "nope.jsonl",
        "not found",
    )
    assert not (tmp_path / "res").exists()
