"""`--mlflow URI` against a real MLflow tracking server (`mlflow server`, SQLite backend, proxied artifacts) started
on 127.0.0.1 by this module; everything is read back through MLflow's own client."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from typer.testing import CliRunner

from harness.cli import app
from harness.export.mlflow_log import log_run_dir

pytestmark = pytest.mark.integration
mlflow = pytest.importorskip("mlflow", reason="mlflow is in the test extra (pip install -e .[test])")
from mlflow.tracking import MlflowClient  # noqa: E402

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "records"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    d = tmp_path_factory.mktemp("mlflow")
    port = _free_port()
    log = open(d / "server.log", "w")
    exe = Path(sys.executable).parent / "mlflow"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "mlflow"]
    proc = subprocess.Popen(
        [*cmd, "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
        + ["--backend-store-uri", f"sqlite:///{d / 'mlflow.db'}", "--artifacts-destination", str(d / "artifacts")],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its uvicorn worker goes with it: the group is killed at the end
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},  # no background job runners
    )
    url = f"http://127.0.0.1:{port}"
    t0 = time.monotonic()
    try:
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() - t0 > 120:
                pytest.fail(f"mlflow server did not come up: {(d / 'server.log').read_text()[-2000:]}")
            time.sleep(0.5)
        print(f"mlflow server up in {time.monotonic() - t0:.1f} s")
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
        log.close()


def _run_folder(tmp_path: Path, name: str = "step-autoscale") -> Path:
    d = shutil.copytree(FIX / name, tmp_path / name)
    (d / "report.html").write_text("<html><body>report</body></html>")
    (d / "junit.xml").write_text('<testsuites name="harness"/>')
    run = json.loads((d / "run.json").read_text())
    run["labels"] = {"ray": "2.60", "runner": "ci-1"}
    (d / "run.json").write_text(json.dumps(run))
    return d


def test_export_logs_params_metrics_verdict_and_artifacts(server: str, tmp_path: Path) -> None:
    d = _run_folder(tmp_path)
    r = CliRunner().invoke(app, ["export", str(d), "--mlflow", server, "--experiment", "it-export"])
    assert r.exit_code == 0, r.output
    assert "View run" not in r.stdout  # MLflow's own URL line stays off stdout (run --json prints there)
    client = MlflowClient(tracking_uri=server)
    exp = client.get_experiment_by_name("it-export")
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1
    mr = runs[0]
    summary = json.loads((d / "summary.json").read_text())
    assert mr.info.run_name == summary["run_id"] and mr.info.status == "FINISHED"
    assert mr.data.tags["verdict"] == summary["verdict"] == "pass"
    assert mr.data.tags["harness.run_id"] == summary["run_id"] and mr.data.tags["label.ray"] == "2.60"
    p = mr.data.params
    assert (p["target.engine"], p["target.sim.ttft_ms"], p["target.autoscaling.max_replicas"]) == ("sim", "50.0", "3")
    assert (p["load.stages.1.users"], p["workload.prompt_tokens.mean"]) == ("16", "256.0")
    assert (p["version.ray"], p["version.vllm"], p["label.runner"]) == ("2.60.0", "0.32.0", "ci-1")
    assert p["scenario.slos.0"] == "replicas.max >= 3"
    m = mr.data.metrics
    by_slo = {(s["signal"], s["stat"], s["scope"]): s["observed"] for s in summary["slos"]}
    assert m["slo.ttft.p99"] == by_slo[("ttft", "p99", None)]
    assert m["slo.ttft.p95.low"] == by_slo[("ttft", "p95", "low")]
    assert m["slo.passed"] == sum(s["passed"] for s in summary["slos"]) and m["slo.failed"] == 0
    assert m["client.ttft_ms.p99.9"] == summary["client"]["ttft_ms"]["p99.9"]
    assert m["client.requests"] == 431 and m["server.kv_cache_usage.max"] == 0.98828125
    assert sorted(a.path for a in client.list_artifacts(mr.info.run_id)) == ["junit.xml", "report.html", "summary.json"]
    got = Path(client.download_artifacts(mr.info.run_id, "summary.json", str(tmp_path / "dl")))
    assert json.loads(got.read_text()) == summary
    marker = json.loads((d / "mlflow.json").read_text())
    assert marker["logged"] and marker["mlflow_run_id"] == mr.info.run_id

    # again: the same MLflow run is updated, not a second one made
    r = CliRunner().invoke(app, ["export", str(d), "--mlflow", server, "--experiment", "it-export"])
    assert r.exit_code == 0 and "(updated)" in r.output
    assert len(client.search_runs([exp.experiment_id])) == 1


def test_unreachable_then_exported_later(server: str, tmp_path: Path) -> None:
    """The run's path: an unreachable server is a result, not an exception; the folder logs later as it is."""
    d = _run_folder(tmp_path, "autoscale-capped")
    t0 = time.monotonic()
    res = log_run_dir(d, f"http://127.0.0.1:{_free_port()}", "it-later")
    assert not res["logged"] and "Connection refused" in res["error"]
    assert time.monotonic() - t0 < 30  # bounded retries, not MLflow's ~2 min default
    assert json.loads((d / "mlflow.json").read_text())["logged"] is False
    res = log_run_dir(d, server, "it-later")
    assert res["logged"], res
    mr = MlflowClient(tracking_uri=server).get_run(res["mlflow_run_id"])
    assert mr.data.tags["verdict"] == json.loads((d / "summary.json").read_text())["verdict"]
