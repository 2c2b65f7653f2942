"""`harness run --repeat 3` on the real stack (sim engine), then `harness compare GROUP GROUP` between runs:
two identical groups are noise (exit 0); a x1.3 slowdown injected through the sim's timing config (ground
truth: slowdown_factor) is a regression (exit 1). Also: the prefix cache is reset before each repeat and the
repeats share one deployment."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = ROOT / "scenarios" / "repeat-compare.yaml"
GATE = ["--fail-on", "itl.p50:+15%", "--fail-on", "tpot.p50:+20%"]  # slowdown x1.3 = +30 %


def _cli(env: dict, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


def _group(env: dict, scenario: Path, out: Path, repeat: int = 3, *extra: str) -> dict:
    r = _cli(env, "run", str(scenario), "--repeat", str(repeat), "-o", str(out), "--store", "none", "--json", *extra)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    return json.loads(r.stdout)


def test_repeated_compare_calls_noise_noise_and_slowdown_a_regression(shared_stack, tmp_path):
    slow = tmp_path / "slow.yaml"
    d = yaml.safe_load(SCENARIO.read_text())
    d["target"]["sim"]["slowdown_factor"] = 1.3
    slow.write_text(yaml.safe_dump(d))
    a = _group(shared_stack, SCENARIO, tmp_path / "a")
    # b asks for up to 5 and stops once itl.p50's between-run interval is narrower than 200 % of its mean: never
    # before 3 runs (two runs of ~3 % spread already are, t(0.975, 1) = 12.7), so it stops right at 3
    b = _group(shared_stack, SCENARIO, tmp_path / "b", 5, "--repeat-until-width", "2", "--fail-on", GATE[1])
    c = _group(shared_stack, slow, tmp_path / "c")
    assert (b["count"], b["gated"], b["intervals"]["itl.p50"]["n"]) == (5, ["itl.p50"], 3)
    assert b["stopped"].startswith("converged after 3 repeats"), b["stopped"]

    for g in (a, b, c):
        assert (g["ran"], g["mode"], g["exit_code"]) == (3, "same_deployment", 0)
        resets = [r["cache_reset"] for r in g["runs"]]
        assert all(x["attempted"] and x["done"] and x["method"] == "http" for x in resets), resets
        # repeats 2 and 3 run on the replica repeat 1 filled: the reset really dropped its cached blocks
        assert all(json.loads(x["detail"][x["detail"].index("{") :])["dropped_blocks"] > 0 for x in resets[1:]), resets
        runs = [json.loads((Path(r["run_dir"]) / "run.json").read_text()) for r in g["runs"]]
        assert [r["repeat"]["index"] for r in runs] == [1, 2, 3]
        assert [bool(r["deployment"]["details"].get("reused")) for r in runs] == [False, True, True]

    noise = _cli(shared_stack, "compare", a["group_dir"], b["group_dir"], *GATE, "--json", str(tmp_path / "n.json"))
    assert noise.returncode == 0, noise.stdout[-3000:] + noise.stderr[-2000:]
    assert "between-run" in noise.stdout
    reg = _cli(shared_stack, "compare", a["group_dir"], c["group_dir"], *GATE, "--md", str(tmp_path / "r.md"))
    assert reg.returncode == 1, reg.stdout[-3000:] + reg.stderr[-2000:]
    n = json.loads((tmp_path / "n.json").read_text())
    assert n["method"]["kind"] == "between-run" and n["method"]["runs_per_side"] == [3, 3]
    md = (tmp_path / "r.md").read_text()
    assert "REGRESSION" in md and "Welch t-test" in md and "itl.p50" in md
