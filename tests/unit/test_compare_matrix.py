"""harness matrix orchestration with a fake environment builder and runner (no pip, no Ray)."""

from __future__ import annotations

import json
import shutil
import stat
from pathlib import Path

import pytest

from harness.commands.matrix import MARKER, Entry, build_env, env_recipe, matrix, run_in_env
from harness.errors import HarnessError

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "records" / "compare"
BY_VERSION = {"2.59.0": "ray-2.59a", "2.59.1": "ray-2.59b", "2.60.0": "ray-2.60-slow"}


class Fake:
    def __init__(self, fail: set[str] = frozenset()):
        self.built, self.ran, self.fail = [], [], fail

    def builder(self, e: Entry, env_dir: Path, log: Path) -> bool:
        self.built.append((e.name, env_dir))
        reused = env_dir.exists()
        env_dir.mkdir(parents=True, exist_ok=True)
        return reused

    def runner(
        self, e: Entry, env_dir: Path, scenario: str, results_dir: Path, state_dir: Path, log: Path, timeout_s: float
    ):
        self.ran.append((e.name, e.labels, state_dir))
        if e.ray in self.fail:
            return None, 2
        dst = results_dir / f"run-{e.name}"
        shutil.copytree(FIX / BY_VERSION[e.ray], dst)
        return str(dst), 0


def test_matrix_runs_each_version_and_compares(tmp_path):
    f = Fake()
    res = matrix(
        "fixture-chat",
        ["2.59.0", "2.60.0"],
        results_dir=tmp_path / "res",
        envs_dir=tmp_path / "envs",
        builder=f.builder,
        runner=f.runner,
    )
    assert [n for n, _ in f.built] == ["ray-2.59.0", "ray-2.60.0"]
    assert [lb for _, lb, _ in f.ran] == [{"ray": "2.59.0"}, {"ray": "2.60.0"}]
    assert len({s for _, _, s in f.ran}) == 2  # a private state dir per run: never a shared `harness up` stack
    assert res.exit_code == 1  # 2.60 fixture is 25 % slower
    out = Path(res.out_dir)
    m = json.loads((out / "matrix.json").read_text())
    assert m["verdict"] == "regression" and m["compare_s"] >= 0 and m["total_s"] >= m["compare_s"]
    assert all("env_s" in e and "run_s" in e for e in m["entries"])
    assert "REGRESSION" in (out / "compare.md").read_text() and (out / "compare.html").exists()
    # second matrix: environments reused
    res2 = matrix(
        "fixture-chat",
        ["2.59.0", "2.59.1"],
        results_dir=tmp_path / "res2",
        envs_dir=tmp_path / "envs",
        builder=f.builder,
        runner=f.runner,
    )
    assert [e.env_reused for e in res2.entries] == [True, False] and res2.exit_code == 0


def test_matrix_with_vllm_versions_names_envs(tmp_path):
    f = Fake()
    with pytest.raises(HarnessError):  # one combination is not a matrix
        matrix(
            "s",
            ["2.59.0"],
            vllm_versions=["0.32.0"],
            results_dir=tmp_path,
            envs_dir=tmp_path / "e",
            builder=f.builder,
            runner=f.runner,
        )
    res = matrix(
        "s",
        ["2.59.0", "2.60.0"],
        vllm_versions=["0.32.0"],
        results_dir=tmp_path / "r",
        envs_dir=tmp_path / "e",
        builder=f.builder,
        runner=f.runner,
        force=True,
    )
    assert [e.name for e in res.entries] == ["ray-2.59.0-vllm-0.32.0", "ray-2.60.0-vllm-0.32.0"]
    assert f.ran[0][1] == {"ray": "2.59.0", "vllm": "0.32.0"}


def test_matrix_failed_run_is_reported(tmp_path):
    f = Fake(fail={"2.60.0"})
    with pytest.raises(HarnessError) as e:
        matrix(
            "s", ["2.59.0", "2.60.0"], results_dir=tmp_path, envs_dir=tmp_path / "e", builder=f.builder, runner=f.runner
        )
    assert "ray-2.60.0: run exited 2" in e.value.render()
    f = Fake(fail={"2.60.0"})
    res = matrix(
        "s",
        ["2.59.0", "2.59.1", "2.60.0"],
        results_dir=tmp_path / "b",
        envs_dir=tmp_path / "e",
        builder=f.builder,
        runner=f.runner,
    )
    assert res.exit_code == 2 and res.comparison is not None  # compared what ran, but the matrix is incomplete


def test_bad_versions_are_bad_input(tmp_path):
    with pytest.raises(HarnessError):
        matrix("s", ["2.59.0", "latest; rm -rf"], results_dir=tmp_path, envs_dir=tmp_path)


def test_build_env_reuses_a_finished_env(tmp_path):
    env = tmp_path / "ray-2.59.0"
    (env / "bin").mkdir(parents=True)
    (env / "bin" / "harness").write_text("")
    (env / MARKER).write_text(json.dumps(env_recipe(Entry("2.59.0"))[0]))
    assert build_env(Entry("2.59.0"), env, tmp_path / "log") is True
    pins = env_recipe(Entry("2.59.0"))[1]
    assert "fastapi==" in pins and not any(line.startswith(("ray==", "harness==")) for line in pins.splitlines())


def test_run_in_env_uses_the_venv_and_a_private_state_dir(tmp_path):
    env = tmp_path / "venv"
    (env / "bin").mkdir(parents=True)
    exe = env / "bin" / "harness"
    # a stand-in `harness` that records what it was given, creates a run folder and prints its summary (--json)
    exe.write_text(
        "#!/bin/sh\n"
        'd="$4/fake-run"; mkdir -p "$d"; echo \'{}\' > "$d/run.json"\n'
        'echo "$@" > "$d/args"; echo "$HARNESS_STATE_DIR|$(command -v harness)" > "$d/env"\n'
        'echo "run folder: $d" >&2; echo \'{"run_id": "fake-run", "verdict": "fail"}\'; exit 1\n'
    )
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    res = tmp_path / "results"
    res.mkdir()
    run_dir, code = run_in_env(Entry("2.59.0", "0.32.0"), env, "smoke", res, tmp_path / "state", tmp_path / "log", 60)
    assert code == 1 and run_dir == str(res / "fake-run")
    assert (res / "fake-run" / "args").read_text().split() == [
        "run",
        "smoke",
        "--results-dir",
        str(res),
        "--json",
        "--label",
        "ray=2.59.0",
        "--label",
        "vllm=0.32.0",
    ]
    assert (res / "fake-run" / "env").read_text().strip() == f"{tmp_path / 'state'}|{exe}"
