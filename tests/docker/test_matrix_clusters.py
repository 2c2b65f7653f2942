"""`harness matrix` across two real clusters whose images carry different Ray releases, gated by one install over
HTTP (slow tier: two image builds on first use, two compose stacks)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow
RELEASES = {"2.59.0": "fastapi<0.140", "2.60.0": ""}  # Ray 2.59's Serve breaks on the newest FastAPI


def cli(*args: str, env: dict, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


def test_matrix_compares_two_clusters_of_different_ray_releases(tmp_path):
    env = {**os.environ, "HARNESS_STATE_DIR": str(tmp_path / "state")}
    stacks = {}
    try:
        for i, (ver, extra) in enumerate(RELEASES.items()):
            project = f"harness-matrix-{os.getpid()}-{i}"
            r = cli(
                "docker",
                "up",
                "--cpu",
                "--workers",
                "0",
                "--project",
                project,
                "--ray-version",
                ver,
                "--pip-extra",
                extra,
                "--json",
                env=env,
                timeout=1500,
            )
            assert r.returncode == 0, r.stderr[-3000:]
            stacks[ver] = json.loads(r.stdout)
        doc = yaml.safe_load((ROOT / "scenarios" / "smoke.yaml").read_text())
        doc["load"]["stages"] = [{"name": "steady", "duration_s": 15, "users": 4, "spawn_rate": 4}]
        sc = tmp_path / "short.yaml"
        sc.write_text(yaml.safe_dump(doc))
        args = []
        for ver, st in stacks.items():
            args += [
                "--cluster",
                f"ray{ver.replace('.', '')}={st['dashboard_url']},{st['prometheus_url']},{st['serve_url']}",
            ]
        r = cli("matrix", str(sc), *args, "--results-dir", str(tmp_path / "res"), env=env, timeout=1200)
        assert r.returncode in (0, 1), r.stdout[-3000:] + r.stderr[-3000:]
        (mdir,) = [p for p in (tmp_path / "res").iterdir() if p.name.startswith("matrix-")]
        m = json.loads((mdir / "matrix.json").read_text())
        assert [e["ray"] for e in m["entries"]] == list(RELEASES), m["entries"]
        for e in m["entries"]:
            rec = json.loads((Path(e["run_dir"]) / "run.json").read_text())
            assert rec["deployment"]["details"]["cluster_env"]["ray"] == e["ray"]  # each cluster's own Ray ran it
        assert (mdir / "compare.md").exists()
    finally:
        for st in stacks.values():
            cli("docker", "down", "--project", st["project"], env=env, timeout=300)
