"""Output correctness as a gate (workload.correctness): scenario rules and bad input (exit 2), the shipped default
set, the probes against a loopback HTTP endpoint, the `outputs` SLO signal, the sim engine's seeded replies, and
`harness compare` on two record fixtures (identical outputs: exit 0; one changed: exit 1, shown side by side)."""

from __future__ import annotations

import hashlib
import json
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from harness.cli import app
from harness.errors import ScenarioError
from harness.load.correctness import load_prompts, outputs_signal, run_probes
from harness.load.prepare import check_inputs
from harness.record.schema import Correctness, Probe, RunRecord
from harness.scenario import Scenario
from harness.slo.evaluate import evaluate
from harness.slo.parse import parse_slo

CMP = Path(__file__).resolve().parents[1] / "fixtures" / "records" / "compare"
BASE = {
    "name": "probe",
    "target": {"engine": "sim", "model": "sim-tiny"},
    "load": {"stages": [{"duration_s": 5, "users": 1}]},
    "slos": ["error_rate <= 1%"],
}


def _sc(correctness: dict | None, slos: list[str] | None = None) -> Scenario:
    doc = json.loads(json.dumps(BASE))
    if correctness is not None:
        doc["workload"] = {"correctness": correctness}
    if slos is not None:
        doc["slos"] = slos
    return Scenario.model_validate(doc)


def _validate_cli(tmp_path: Path, correctness: dict | None, slos: list[str]) -> tuple[int, str]:
    doc = json.loads(json.dumps(BASE))
    doc["slos"] = slos
    if correctness is not None:
        doc["workload"] = {"correctness": correctness}
    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump(doc))
    r = CliRunner().invoke(app, ["scenarios", "validate", str(f)])
    return r.exit_code, r.output


def test_outputs_slos_need_probes_and_changed_needs_a_baseline(tmp_path: Path) -> None:
    code, out = _validate_cli(tmp_path, {"max_tokens": 8}, ["outputs.changed == 0"])
    assert code == 2 and "slos[0]" in out and "needs a baseline" in out and "workload.correctness.baseline" in out
    code, out = _validate_cli(tmp_path, None, ["outputs.empty == 0"])
    assert code == 2 and "needs `workload.correctness`" in out
    code, out = _validate_cli(tmp_path, {"prompts": ["a"], "prompts_file": "p.txt"}, ["outputs.empty == 0"])
    assert code == 2 and "not both" in out
    code, out = _validate_cli(tmp_path, {"max_tokens": 0}, ["outputs.empty == 0"])
    assert code == 2 and "max_tokens" in out
    assert _validate_cli(tmp_path, {}, ["outputs.empty == 0"])[0] == 0
    assert parse_slo("outputs.changed == 0").signal == "outputs"


def test_default_set_and_prompts_file_errors(tmp_path: Path) -> None:
    prompts, source = load_prompts(_sc({}).workload.correctness)  # type: ignore[arg-type]
    assert len(prompts) == 8 and prompts[0] == "What is the capital of France?" and source.startswith("default")
    with pytest.raises(ScenarioError, match="file not found") as e:
        check_inputs(_sc({"prompts_file": str(tmp_path / "nope.txt")}), "s.yaml")
    assert e.value.exit_code == 2 and "s.yaml: workload.correctness.prompts_file" in e.value.message
    empty = tmp_path / "empty.txt"
    empty.write_text("# only a comment\n\n")
    with pytest.raises(ScenarioError, match="no prompts"):
        check_inputs(_sc({"prompts_file": str(empty)}), "s.yaml")
    good = tmp_path / "p.txt"
    good.write_text("one\n# skip\n\ntwo\n")
    assert load_prompts(_sc({"prompts_file": str(good)}).workload.correctness)[0] == ["one", "two"]  # type: ignore[arg-type]
    with pytest.raises(ScenarioError, match="no run.json"):
        check_inputs(_sc({"baseline": str(tmp_path)}), "s.yaml")
    with pytest.raises(ScenarioError, match="recorded no correctness probes"):
        check_inputs(_sc({"baseline": str(CMP / "ray-2.59a")}), "s.yaml")


class _Engine(BaseHTTPRequestHandler):
    """A greedy engine stand-in: the answer is a function of the prompt and of `reply_salt` (the "build")."""

    reply_salt = ""
    seen: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).seen.append(body)
        prompt = body["messages"][0]["content"]
        text = "" if prompt == "silent" else f"{prompt[::-1]}{self.reply_salt}"
        doc = {"choices": [{"message": {"content": text}, "finish_reason": "stop"}], "usage": {"completion_tokens": 3}}
        data = json.dumps(doc).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *a: object) -> None:
        pass


@pytest.fixture()
def engine():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Engine)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    _Engine.seen, _Engine.reply_salt = [], ""
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def _as_baseline(tmp_path: Path, rec: Correctness) -> Path:
    d = shutil.copytree(CMP / "ray-2.59a", tmp_path / "baseline")
    run = json.loads((d / "run.json").read_text())
    run["correctness"] = rec.model_dump(mode="json")
    (d / "run.json").write_text(json.dumps(run))
    return d


def test_probes_are_greedy_recorded_and_judged_against_a_baseline(engine: str, tmp_path: Path) -> None:
    sc = _sc({"prompts": ["abc", "silent", "xyz"], "max_tokens": 5, "seed": 7})
    rec = run_probes(sc, engine)
    assert [b["temperature"] for b in _Engine.seen] == [0.0] * 3 and {b["seed"] for b in _Engine.seen} == {7}
    assert [b["max_tokens"] for b in _Engine.seen] == [5] * 3 and not any(b["stream"] for b in _Engine.seen)
    assert [p.output for p in rec.probes] == ["cba", "", "zyx"] and rec.probes[0].output_tokens == 3
    assert rec.probes[0].sha256 == hashlib.sha256(b"cba").hexdigest()
    assert outputs_signal(rec) == {"outputs": {"total": 3.0, "empty": 1.0}}  # no baseline: no `changed`
    RunRecord.model_validate({"run_id": "x", "scenario": {}, "correctness": rec.model_dump(mode="json")})

    base = _as_baseline(tmp_path, rec)
    same = run_probes(
        _sc({"prompts": ["abc", "silent", "xyz"], "max_tokens": 5, "seed": 7, "baseline": str(base)}), engine
    )
    assert same.changed == [] and outputs_signal(same)["outputs"]["changed"] == 0
    _Engine.reply_salt = "!"  # another build answers differently
    other = run_probes(
        _sc({"prompts": ["abc", "silent", "xyz"], "max_tokens": 5, "seed": 7, "baseline": str(base)}), engine
    )
    assert other.changed == [0, 2]
    verdicts = evaluate(["outputs.changed == 0", "outputs.empty == 0"], {}, outputs_signal(other))
    assert [(v.observed, v.passed) for v in verdicts] == [(2.0, False), (1.0, False)]
    assert [v.passed for v in evaluate(["outputs.changed == 0"], {}, outputs_signal(same))] == [True]
    assert not evaluate(["outputs.changed == 0"], {}, {})[0].passed  # no probes: no data, never a pass


def test_failed_probe_is_recorded_not_raised() -> None:
    rec = run_probes(_sc({"prompts": ["a"], "timeout_s": 2}), "http://127.0.0.1:9")
    assert rec.probes[0].error and rec.probes[0].sha256 is None and outputs_signal(rec)["outputs"]["empty"] == 1


def test_sim_replies_are_seeded_and_deterministic() -> None:
    import random

    from serve_apps.sim import app as sim
    from serve_apps.sim.engine import SimConfig

    def reply(seed: int, prompt: str) -> str:
        body = {"messages": [{"role": "user", "content": prompt}], "max_tokens": 6}
        p = sim.parse_request(body, chat=True, served_model="m", kv_capacity=1000)
        off = sim.text_offset(seed, sim.prompt_text(body, chat=True))
        plan = sim.reply_plan(p, SimConfig(seed=seed), random.Random(0), True, off)
        return "".join(plan.text(i) for i in range(6))

    prompts, _ = load_prompts(_sc({}).workload.correctness)  # type: ignore[arg-type]
    assert [reply(0, q) for q in prompts] == [reply(0, q) for q in prompts]  # same seed, same replies
    assert [reply(0, q) for q in prompts] != [reply(1, q) for q in prompts]  # another seed: caught
    assert len({reply(0, q) for q in prompts}) > 1  # the reply depends on the prompt too


def _with_outputs(tmp_path: Path, src: str, name: str, outputs: list[str]) -> Path:
    d = shutil.copytree(CMP / src, tmp_path / name)
    run = json.loads((d / "run.json").read_text())
    probes = [
        Probe(prompt=f"q{i}", output=o, sha256=hashlib.sha256(o.encode()).hexdigest(), output_tokens=2)
        for i, o in enumerate(outputs)
    ]
    rec = Correctness(api="chat", model="sim-tiny", max_tokens=8, seed=0, source="inline", probes=probes)
    run["correctness"] = rec.model_dump(mode="json")
    (d / "run.json").write_text(json.dumps(run))
    return d


def test_compare_identical_outputs_exit_0_changed_exit_1_side_by_side(tmp_path: Path) -> None:
    a = _with_outputs(tmp_path, "ray-2.59a", "a", ["Paris", "1 2 3"])
    b = _with_outputs(tmp_path, "ray-2.59b", "b", ["Paris", "1 2 3"])
    r = CliRunner().invoke(app, ["compare", str(a), str(b), "--json", str(tmp_path / "same.json")])
    assert r.exit_code == 0, r.output
    assert "2 correctness probe(s), none changed" in r.output
    assert json.loads((tmp_path / "same.json").read_text())["comparisons"][0]["outputs"]["changed"] == []
    c = _with_outputs(tmp_path, "ray-2.59b", "c", ["Lyon", "1 2 3"])
    r = CliRunner().invoke(
        app, ["compare", str(a), str(c), "--json", str(tmp_path / "diff.json"), "--md", str(tmp_path / "diff.md")]
    )
    assert r.exit_code == 1, r.output
    assert "1 of 2 correctness probe(s) changed" in r.output and "Paris" in r.output and "Lyon" in r.output
    ch = json.loads((tmp_path / "diff.json").read_text())["comparisons"][0]["outputs"]["changed"]
    assert ch == [{"index": 0, "prompt": "q0", "base": "Paris", "new": "Lyon", "base_tokens": 2, "new_tokens": 2}]
    md = (tmp_path / "diff.md").read_text()
    assert "1 of 2 correctness probe(s) changed" in md and "| 0 | q0 | Paris | Lyon |" in md
