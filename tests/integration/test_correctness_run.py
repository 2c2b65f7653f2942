"""workload.correctness on the real stack (sim engine): identical builds give 0 changed outputs, a changed
sim seed is caught by `outputs.changed == 0` (exit 1) and by `harness compare` (exit 1)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def _scenario(tmp: Path, name: str, seed: int, baseline: Path | None) -> Path:
    sc = yaml.safe_load((ROOT / "scenarios" / "correctness.yaml").read_text())
    sc["target"]["sim"]["seed"] = seed
    sc["load"] = {"warmup_s": 1, "stages": [{"duration_s": 3, "users": 1, "spawn_rate": 1}]}
    if baseline is not None:
        sc["workload"]["correctness"]["baseline"] = str(baseline)
        sc["slos"] = ["outputs.changed == 0", *sc["slos"]]
    p = tmp / f"{name}.yaml"
    p.write_text(yaml.safe_dump(sc))
    return p


def test_same_build_no_change_other_seed_caught(tmp_path: Path, run_on_shared_stack) -> None:
    r, base = run_on_shared_stack(_scenario(tmp_path, "base", 0, None), tmp_path / "base", "-q")
    assert r.returncode == 0 and base is not None, r.stdout[-2000:] + r.stderr[-2000:]
    probes = json.loads((base / "run.json").read_text())["correctness"]["probes"]
    assert len(probes) == 8 and all(p["output"] and p["error"] is None for p in probes)
    assert {p["output_tokens"] for p in probes} == {16}  # the sim generates exactly max_tokens

    r, same = run_on_shared_stack(_scenario(tmp_path, "same", 0, base), tmp_path / "same", "-q")
    assert r.returncode == 0 and same is not None, r.stdout[-2000:] + r.stderr[-2000:]
    slo = json.loads((same / "summary.json").read_text())["slos"][0]
    assert (slo["slo"], slo["observed"], slo["passed"]) == ("outputs.changed == 0", 0.0, True)
    again = json.loads((same / "run.json").read_text())["correctness"]["probes"]
    assert [p["sha256"] for p in again] == [p["sha256"] for p in probes]  # deterministic for the seed

    r, other = run_on_shared_stack(_scenario(tmp_path, "other", 1, base), tmp_path / "other", "-q")
    assert r.returncode == 1 and other is not None, r.stdout[-2000:] + r.stderr[-2000:]
    slo = json.loads((other / "summary.json").read_text())["slos"][0]
    assert slo["observed"] > 0 and not slo["passed"]

    cmp = subprocess.run(
        [sys.executable, "-m", "harness.cli", "compare", str(base), str(other), "--force", "--fail-on", "none"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert cmp.returncode == 1, cmp.stdout[-3000:] + cmp.stderr[-2000:]
    assert "correctness probe(s) changed" in cmp.stdout
