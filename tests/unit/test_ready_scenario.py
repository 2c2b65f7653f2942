"""Issue 25/26: one function turns a scenario argument into a ready-to-run Scenario (harness/run/ready.py), and
`run`, `sweep` and `matrix` call it (before anything starts); a scenario in another folder with a dataset path
relative to it gets an absolute one."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from harness.cli import app
from harness.errors import HarnessError

SC = """name: far
target: {engine: sim, model: m}
workload: {dataset: {path: data/chat.jsonl, format: sharegpt}, output_tokens: {mean: 8}}
load: {stages: [{duration_s: 1, users: 1}]}
slos: ["ttft.p95 <= 1s"]
"""


def _far(tmp_path):
    d = tmp_path / "elsewhere"
    (d / "data").mkdir(parents=True, exist_ok=True)
    turn = [{"from": "human", "value": "hello there"}, {"from": "gpt", "value": "hi"}]
    (d / "data" / "chat.jsonl").write_text(
        "\n".join(json.dumps({"id": f"c{i}", "conversations": turn}) for i in range(5)) + "\n"
    )
    (d / "s.yaml").write_text(SC)
    return d / "s.yaml"


def test_a_scenario_in_another_folder_gets_absolute_inputs(tmp_path, monkeypatch):
    from harness.run.ready import ready_scenario

    p = _far(tmp_path)
    monkeypatch.chdir(tmp_path)
    sc, path = ready_scenario(str(p.relative_to(tmp_path)))
    assert path.is_absolute() and sc.workload.dataset is not None
    assert sc.workload.dataset.path == str(p.parent / "data" / "chat.jsonl")


def test_missing_input_fails_in_the_function(tmp_path):
    from harness.run.ready import ready_scenario

    p = _far(tmp_path)
    (p.parent / "data" / "chat.jsonl").unlink()
    with pytest.raises(HarnessError):
        ready_scenario(str(p))


@pytest.mark.parametrize(
    "args",
    [["run", "SC"], ["sweep", "SC", "--rates", "1"], ["matrix", "SC", "--ray-version", "2.60.0"]],
    ids=["run", "sweep", "matrix"],
)
def test_each_command_goes_through_ready_scenario(tmp_path, monkeypatch, args):
    import harness.run.ready as ready

    seen = []

    def fake(arg, **kw):
        seen.append(arg)
        raise HarnessError("stop here", fix="(test)")

    monkeypatch.setattr(ready, "ready_scenario", fake)
    res = CliRunner().invoke(app, [a.replace("SC", str(_far(tmp_path))) for a in args])
    assert res.exit_code == 2 and "stop here" in res.output and seen == [str(_far(tmp_path))], res.output
