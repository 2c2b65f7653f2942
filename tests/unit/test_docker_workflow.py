"""The example scheduled GPU workflow (.github/workflows/gpu-benchmark.yml): structure and shell syntax."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
WORKFLOW = REPO / ".github" / "workflows" / "gpu-benchmark.yml"


@pytest.fixture(scope="module")
def wf() -> dict:
    return yaml.safe_load(WORKFLOW.read_text())


def _triggers(wf: dict) -> dict:
    return wf.get("on", wf.get(True))  # YAML 1.1 reads the bare key `on` as True


def _job(wf: dict) -> dict:
    [job] = wf["jobs"].values()
    return job


def _runs(wf: dict) -> str:
    return "\n".join(step.get("run", "") for step in _job(wf)["steps"])


def test_scheduled_and_manual(wf):
    triggers = _triggers(wf)
    [cron] = [c["cron"] for c in triggers["schedule"]]
    assert len(cron.split()) == 5
    assert "workflow_dispatch" in triggers


def test_runs_on_a_self_hosted_gpu_runner_one_at_a_time(wf):
    job = _job(wf)
    assert {"self-hosted", "gpu"} <= set(job["runs-on"])
    assert job["strategy"]["max-parallel"] == 1
    assert wf["concurrency"]["cancel-in-progress"] is False


def test_brings_up_the_compose_stack_and_always_tears_it_down(wf):
    job = _job(wf)
    assert job["env"]["COMPOSE_FILE"] == "docker/compose.yaml"
    assert (REPO / job["env"]["COMPOSE_FILE"]).is_file()
    assert "docker compose up -d --wait" in _runs(wf)
    [down] = [s for s in job["steps"] if "docker compose down" in s.get("run", "")]
    assert down["if"] == "always()"


def test_verifies_then_runs_gpu_scenarios_against_the_stack(wf):
    job, runs = _job(wf), _runs(wf)
    assert "harness verify" in runs
    assert "scenarios/gpu/*.yaml" in runs
    run_cmd = re.search(r"harness run .*?--results-dir \"\$RESULTS_DIR\"", runs, re.S).group(0)
    assert "--ray-address" in run_cmd and "--prometheus-url" in run_cmd
    assert job["env"]["RESULTS_DIR"] == "results"
    # the URLs are the compose defaults (ports bound to 127.0.0.1)
    assert job["env"]["RAY_ADDRESS_URL"] == "ray://127.0.0.1:10001"
    assert job["env"]["PROMETHEUS_URL"] == "http://127.0.0.1:19090"
    compose = (REPO / "docker" / "compose.yaml").read_text()
    assert "${PROMETHEUS_PORT:-19090}" in compose and "${RAY_CLIENT_PORT:-10001}" in compose


def test_fails_the_job_on_a_fail_verdict(wf):
    runs = _runs(wf)
    assert re.search(r"1\)\s*echo \"::error::\$\{scenario\}: verdict fail\"; failed=1", runs)
    assert 'if [ "$failed" -ne 0 ]; then exit 1; fi' in runs


def test_uploads_results_and_junit_even_on_failure(wf):
    uploads = [s for s in _job(wf)["steps"] if str(s.get("uses", "")).startswith("actions/upload-artifact")]
    paths = {s["with"]["path"] for s in uploads}
    assert "results/" in paths and "results/**/junit.xml" in paths
    assert all(s["if"] == "always()" for s in uploads)


def test_grafana_password_is_never_a_literal(wf):
    text = WORKFLOW.read_text()
    assert "secrets.GRAFANA_ADMIN_PASSWORD" in text and "::add-mask::" in text


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash not found")
def test_run_scripts_parse_in_bash(wf):
    for step in _job(wf)["steps"]:
        if "run" in step:
            script = re.sub(r"\$\{\{[^}]*\}\}", "x", step["run"])
            res = subprocess.run(["bash", "-n"], input=script, capture_output=True, text=True)
            assert res.returncode == 0, f"{step.get('name')}: {res.stderr}"


def _check_jsonschema(builtin: str, path: Path) -> subprocess.CompletedProcess:
    pytest.importorskip("check_jsonschema", reason="pip install check-jsonschema (ships SchemaStore/compose schemas)")
    return subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", builtin, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_workflow_matches_github_workflow_schema():
    res = _check_jsonschema("vendor.github-workflows", WORKFLOW)
    assert res.returncode == 0, res.stdout + res.stderr


def test_compose_matches_check_jsonschema_compose_schema():
    """A second, newer copy of the Compose schema (draft 2020-12, from compose-go), via check-jsonschema."""
    res = _check_jsonschema("vendor.compose-spec", REPO / "docker" / "compose.yaml")
    assert res.returncode == 0, res.stdout + res.stderr
